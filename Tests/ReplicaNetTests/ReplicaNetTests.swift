import Testing
@testable import ReplicaNet

@Suite(.timeLimit(.minutes(1)))
struct ReplicaNetTests {
    @Test func defaultPortIsTheSeedsReplicationPort() {
        #expect(ReplicaNet.defaultPort == 8084)
    }
}
