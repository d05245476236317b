import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Two test hosts on one machine for one test: network namespaces `<prefix>-a` (10.77.0.1)
/// and `<prefix>-b` (10.77.0.2) joined by a veth pair, made by `Tools/netns.sh` under a prefix
/// unique to this instance, so tests running at once never share them. Everything goes away in
/// `cleanup()`, which `deinit` also runs, so a test that fails half-way leaves nothing behind:
/// processes started with `spawn` are killed, then both namespaces are deleted.
///
/// A thread (not the process) can enter a namespace with `enter(_:)`: sockets it creates
/// afterwards live there, which puts an in-process server or client on either host. Give it
/// a thread of its own (a one-thread event loop group), never a shared one.
public final class NetworkNamespaces: @unchecked Sendable {
    // @unchecked: the spawned-process list is only touched under `lock`.
    public let prefix: String
    public var a: String { prefix + "-a" }
    public var b: String { prefix + "-b" }
    public let addressA = "10.77.0.1"
    public let addressB = "10.77.0.2"
    private let lock = NSLock()
    private var processes: [Process] = []
    private var removed = false
    /// The namespace the process started in, to bring threads back (`leave()`).
    private let home: Int32

    /// The script that does the work, found beside the sources.
    public static let script: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.appendingPathComponent("Tools/netns.sh").path
    }()

    /// Why namespaces cannot be made here (not root, no `ip`), or nil when they can.
    public static var unavailableReason: String? {
        if geteuid() != 0 { return "network namespaces need root" }
        if !FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") && !FileManager.default.isExecutableFile(atPath: "/sbin/ip") {
            return "network namespaces need iproute2 (ip)"
        }
        return nil
    }

    /// Whether the kernel has netem (latency, loss); this machine's may not.
    public static let netemAvailable: Bool = {
        // Ask the kernel for real: a namespace of our own, a netem qdisc on its loopback.
        guard NetworkNamespaces.unavailableReason == nil else { return false }
        let name = "rfsnetem\(getpid())"
        defer { _ = try? NetworkNamespaces.run(["/usr/sbin/ip", "netns", "del", name]) }
        guard (try? NetworkNamespaces.run(["/usr/sbin/ip", "netns", "add", name]))?.status == 0 else { return false }
        return (try? NetworkNamespaces.run(["/usr/sbin/ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]))?.status == 0
    }()

    /// Creates both namespaces under a new unique prefix.
    public init() throws {
        prefix = "rfs" + String(UInt32.random(in: 0...UInt32.max), radix: 36)
        home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC)
        let result = try Self.run([Self.script, "up", prefix])
        guard result.status == 0 else {
            _ = try? Self.run([Self.script, "down", prefix])
            throw NamespaceError("netns.sh up \(prefix) failed (\(result.status)): \(result.output)")
        }
    }

    deinit {
        cleanup()
        close(home)
    }

    /// Brings the calling thread back to the process's own namespace.
    public func leave() throws {
        guard Self.setns(home, Self.cloneNewNet) == 0 else { throw NamespaceError("setns back: \(String(cString: strerror(errno)))") }
    }

    /// Kills what `spawn` started and deletes both namespaces; safe to call more than once.
    public func cleanup() {
        let running: [Process] = lock.withLock {
            defer { processes = [] }
            return processes
        }
        for process in running where process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        let done = lock.withLock { () -> Bool in
            defer { removed = true }
            return removed
        }
        if !done { _ = try? Self.run([Self.script, "down", prefix]) }
    }

    /// Runs `command` inside `namespace` and waits: its exit status and output (both streams).
    @discardableResult
    public func run(in namespace: String, _ command: [String]) throws -> (status: Int32, output: String) {
        try Self.run(["/usr/sbin/ip", "netns", "exec", namespace] + command)
    }

    /// Starts `command` inside `namespace` in the background; killed by `cleanup()`.
    public func spawn(in namespace: String, _ command: [String], output: FileHandle? = nil) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        process.arguments = ["netns", "exec", namespace] + command
        process.standardOutput = output ?? FileHandle.nullDevice
        process.standardError = output ?? FileHandle.nullDevice
        try process.run()
        lock.withLock { processes.append(process) }
        return process
    }

    /// `tc ... netem ARGS` on both ends ("delay 5ms" is a 10 ms round trip); ["clear"] removes it.
    public func netem(_ arguments: [String]) throws {
        try script(["netem", prefix] + arguments)
    }

    /// A token-bucket rate limit on both ends ("100mbit"); "clear" removes it.
    public func rate(_ rate: String) throws {
        try script(["rate", prefix, rate])
    }

    /// Cuts (false) or restores (true) the link between the two.
    public func link(up: Bool) throws {
        try script(["link", prefix, up ? "up" : "down"])
    }

    /// Moves the calling thread into `namespace`: sockets it creates from now on live there.
    public func enter(_ namespace: String) throws {
        let fd = open("/var/run/netns/" + namespace, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw NamespaceError("open /var/run/netns/\(namespace): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard Self.setns(fd, Self.cloneNewNet) == 0 else {
            throw NamespaceError("setns \(namespace): \(String(cString: strerror(errno)))")
        }
    }

    /// Runs `body` on a new thread inside `namespace` and waits for it (a blocking call,
    /// for set-up code: binding a server socket there, for example).
    public func onThread<T>(in namespace: String, _ body: @escaping @Sendable () throws -> T) throws -> T {
        let box = ResultBox<T>()
        let done = DispatchSemaphore(value: 0)
        let thread = Thread { [self] in
            box.result = Result { try self.enter(namespace); defer { try? self.leave() }; return try body() }
            done.signal()
        }
        thread.start()
        done.wait()
        return try box.result!.get()
    }

    private func script(_ arguments: [String]) throws {
        let result = try Self.run([Self.script] + arguments)
        guard result.status == 0 else {
            throw NamespaceError("netns.sh \(arguments.joined(separator: " ")) failed (\(result.status)): \(result.output)")
        }
    }

    /// Runs a command and waits: exit status and both output streams.
    @discardableResult
    public static func run(_ command: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    static let cloneNewNet: Int32 = 0x4000_0000
    /// setns(2) from the C library (the Glibc module does not import it: it is a GNU extension).
    private static func setns(_ fd: Int32, _ type: Int32) -> Int32 {
        guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "setns") else { fatalError("setns not found in the C library") }
        return unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32) -> Int32).self)(fd, type)
    }
}

/// A failed namespace operation, with the command's own words.
public struct NamespaceError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

private final class ResultBox<T>: @unchecked Sendable {
    // @unchecked: written by the thread before it signals, read after the wait.
    var result: Result<T, any Error>?
}
