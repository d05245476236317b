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
        ]),
        .executableTarget(name: "replicafs", dependencies: [
            "ReplicaSystem", "ReplicaLog", "ReplicaSource", "ReplicaStore", "ReplicaEngine", "ReplicaControl",
            "ReplicaRecovery", "ReplicaMount",
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
        .target(name: "FuzzSupport", dependencies: ["CFuzzer", "ReplicaLog"], path: "Tools/fuzz/FuzzSupport"),
        .executableTarget(name: "FuzzHRLScan", dependencies: ["FuzzSupport", "ReplicaLog"], path: "Tools/fuzz/FuzzHRLScan"),
        .executableTarget(name: "FuzzHRLApply", dependencies: ["FuzzSupport", "ReplicaLog", "ReplicaSystem"], path: "Tools/fuzz/FuzzHRLApply"),
        .executableTarget(name: "FuzzStoreCommit", dependencies: ["FuzzSupport", "ReplicaLog", "ReplicaStore", "ReplicaSystem"],
                          path: "Tools/fuzz/FuzzStoreCommit"),
        .executableTarget(name: "FuzzControlDecode", dependencies: ["FuzzSupport", "ReplicaControl"], path: "Tools/fuzz/FuzzControlDecode"),
        .executableTarget(name: "FuzzPlanParse", dependencies: ["FuzzSupport", "ReplicaEngine", "ReplicaSystem"], path: "Tools/fuzz/FuzzPlanParse"),
    ]
}
