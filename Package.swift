// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "ReplicaFS",
    products: [
        .executable(name: "replicafs", targets: ["replicafs"]),
        .library(name: "ReplicaEngine", targets: ["ReplicaEngine"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // SHA-256 per block for resync (BoringSSL-backed on Linux).
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        // Daemon logs with timestamps and levels.
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        // Running hooks and plan commands.
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.0"),
        // YAML for recovery plan files.
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.0"),
        // The secondary site: TLS with mutual authentication, the receiver (HTTP server), the
        // sender and the object-store client (HTTP client), the site CA and host certificates; the metrics endpoint serves on swift-nio too.
        .package(url: "https://github.com/apple/swift-nio", from: "2.81.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.29.0"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.10.0"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.3.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.25.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.10.0"),
        // The mount daemon's Prometheus endpoint: the text format, and the HTTP server it is served by.
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
        // HTTP field names and statuses of the receiver's routes (what Hummingbird 2 speaks).
        .package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"),
    ],
    targets: [
        // System libraries: libfuse3 (the kernel interface) and zlib (compression of shipped logs).
        .systemLibrary(name: "CFuse", pkgConfig: "fuse3",
                       providers: [.apt(["libfuse3-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib",
                       providers: [.apt(["zlib1g-dev"])]),
        // Linux calls the Glibc module does not expose to Swift (fallocate, flock, stat).
        .systemLibrary(name: "CLinux"),
        // The system layer: typed wrappers over system calls (errno errors carrying the path),
        // the mount table, process spawning, the clock, the Unix socket.
        .target(name: "ReplicaSystem", dependencies: [
            "CLinux", .product(name: "Logging", package: "swift-log"),
            .product(name: "Subprocess", package: "swift-subprocess"),
        ]),
        // The HRL change-log format: header, records, checksums, scanner, applier, direct writer,
        // zlib frames of shipped logs.
        .target(name: "ReplicaLog", dependencies: ["ReplicaSystem", "CLinux", "CZlib"]),
        // The source write path: a protected image's journal and change log, the disk set.
        .target(name: "ReplicaSource", dependencies: ["ReplicaSystem", "ReplicaLog", "CLinux"]),
        // The target store: catalog, recovery points, redo overlay, block sync, retention.
        .target(name: "ReplicaStore", dependencies: [
            "ReplicaSystem", "ReplicaLog", "CLinux", .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // The engine: replication loop, initial copy, resync, health and retries, failover
        // disks, reverse replication, recovery plans.
        .target(name: "ReplicaEngine", dependencies: [
            "ReplicaSystem", "ReplicaLog", "ReplicaSource", "ReplicaStore", "CLinux", .product(name: "Yams", package: "Yams"),
        ]),
        // The secondary site over the network: the receiver (`serve`) in front of a local store,
        // the remote store the sender talks to, the site PKI and mutual TLS.
        .target(name: "ReplicaNet", dependencies: [
            "ReplicaSystem", "ReplicaLog", "ReplicaSource", "ReplicaStore", "CLinux",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "NIOTLS", package: "swift-nio"),
            .product(name: "X509", package: "swift-certificates"),
            .product(name: "SwiftASN1", package: "swift-asn1"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdCore", package: "hummingbird"),
            .product(name: "HummingbirdTLS", package: "hummingbird"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
        ]),
        // The object-storage target (S3 API, Ceph RGW): a bucket client with SigV4 signing and
        // a store laid out as immutable objects with a catalog written last.
        .target(name: "ReplicaObjectStore", dependencies: [
            "ReplicaSystem", "ReplicaLog", "ReplicaStore",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
        ]),
        // The control protocol between the commands and a running daemon: wire types, registry,
        // client with time limits, server.
        .target(name: "ReplicaControl", dependencies: ["ReplicaSystem", "ReplicaSource", "ReplicaStore", "ReplicaEngine"]),
        // Failover, failback, reprotect and recovery plans as library calls: the protocol steps
        // across the store, the engine and the running daemons (reached through the control protocol).
        .target(name: "ReplicaRecovery", dependencies: [
            "ReplicaSystem", "ReplicaLog", "ReplicaSource", "ReplicaStore", "ReplicaEngine", "ReplicaControl",
        ]),
        // The thin FUSE glue: a low-level libfuse session that routes I/O into the write path
        // and the failover disks.
        .target(name: "ReplicaMount", dependencies: [
            "CFuse", "CLinux", "ReplicaSystem", "ReplicaLog", "ReplicaSource", "ReplicaStore", "ReplicaEngine", "ReplicaControl",
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
        .executableTarget(name: "replicafs", dependencies: [
            "ReplicaSystem", "ReplicaLog", "ReplicaSource", "ReplicaStore", "ReplicaEngine", "ReplicaControl",
            "ReplicaRecovery", "ReplicaMount", "ReplicaNet", "ReplicaObjectStore",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // What several test targets share: seeded randomness that says how to repeat a run.
        .target(name: "ReplicaTestSupport", path: "Tests/ReplicaTestSupport"),
        // Tests without a mount, beside the layer they test.
        .testTarget(name: "ReplicaLogTests", dependencies: ["ReplicaTestSupport", "ReplicaSystem", "ReplicaLog", "ReplicaSource", "CLinux"]),
        .testTarget(name: "ReplicaStoreTests", dependencies: ["ReplicaTestSupport",
            "ReplicaSystem", "ReplicaLog", "ReplicaSource", "ReplicaStore", "ReplicaEngine", "ReplicaControl", "ReplicaRecovery",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .testTarget(name: "ReplicaEngineTests", dependencies: ["ReplicaSystem", "ReplicaLog", "ReplicaSource", "ReplicaStore", "ReplicaEngine"]),
        .testTarget(name: "ReplicaNetTests", dependencies: ["ReplicaTestSupport", "ReplicaSystem", "ReplicaLog", "ReplicaSource", "ReplicaStore", "ReplicaNet",
            .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
        ]),
        .testTarget(name: "ReplicaObjectStoreTests", dependencies: ["ReplicaTestSupport", "ReplicaSystem", "ReplicaLog", "ReplicaSource", "ReplicaStore",
            "ReplicaObjectStore", .product(name: "Crypto", package: "swift-crypto")]),
        .testTarget(name: "ReplicaMountTests", dependencies: ["ReplicaTestSupport", "ReplicaSystem", "ReplicaLog", "ReplicaStore", "ReplicaEngine", "replicafs"]),
    ],
    swiftLanguageModes: [.v6]
)

// Coverage-guided fuzz targets (libFuzzer, docs/fuzzing.md). They are in the manifest only when
// Tools/fuzz.sh builds them (REPLICAFS_FUZZ=1, with -sanitize=fuzzer,address and its own
// scratch path), so the ordinary build and test run never need the fuzzer runtime.
if Context.environment["REPLICAFS_FUZZ"] == "1" {
    package.targets += [
        .systemLibrary(name: "CFuzzer", path: "Tools/fuzz/CFuzzer"),
        .target(name: "FuzzSupport", dependencies: ["CFuzzer", "ReplicaLog", "ReplicaSystem"], path: "Tools/fuzz/FuzzSupport"),
        .executableTarget(name: "FuzzHRLScan", dependencies: ["FuzzSupport", "ReplicaLog"], path: "Tools/fuzz/FuzzHRLScan"),
        .executableTarget(name: "FuzzHRLApply", dependencies: ["FuzzSupport", "ReplicaLog", "ReplicaSystem"], path: "Tools/fuzz/FuzzHRLApply"),
        .executableTarget(name: "FuzzStoreCommit", dependencies: ["FuzzSupport", "ReplicaLog", "ReplicaStore", "ReplicaSystem"],
                          path: "Tools/fuzz/FuzzStoreCommit"),
        .executableTarget(name: "FuzzControlDecode", dependencies: ["FuzzSupport", "ReplicaControl"], path: "Tools/fuzz/FuzzControlDecode"),
        .executableTarget(name: "FuzzPlanParse", dependencies: ["FuzzSupport", "ReplicaEngine", "ReplicaSystem"], path: "Tools/fuzz/FuzzPlanParse"),
    ]
}
