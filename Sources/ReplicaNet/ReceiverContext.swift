import Hummingbird
import NIOCore

/// A receiver request's context: Hummingbird's core plus the connection, whose TLS handler
/// names the sender (its certificate), and the JSON size limit.
public struct ReceiverContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }

    public var maxUploadSize: Int { ReceiverAPI.maxJSONBytes }
}
