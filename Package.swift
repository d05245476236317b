// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "ReplicaFS",
    products: [
        .executable(name: "replicafs", targets: ["replicafs"]),
        .library(name: "ReplicaCore", targets: ["ReplicaCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // SHA-256 per block for resync (BoringSSL-backed on Linux).
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        // YAML for recovery plan files.
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.0"),
    ],
    targets: [
        // System libraries: libfuse3 (the kernel interface) and zlib (CRC-32 checksums, compression).
        .systemLibrary(name: "CFuse", pkgConfig: "fuse3",
                       providers: [.apt(["libfuse3-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib",
                       providers: [.apt(["zlib1g-dev"])]),
        // Linux calls the Glibc module does not expose to Swift (fallocate, flock, stat).
        .systemLibrary(name: "CLinux"),
        // The FUSE-free core: HRL format, change logs, disk sets, log apply, control protocol.
        .target(name: "ReplicaCore", dependencies: [
            "CZlib", "CLinux", .product(name: "Crypto", package: "swift-crypto"), .product(name: "Yams", package: "Yams"),
        ]),
        // The thin FUSE glue: a low-level libfuse session that routes I/O into ReplicaCore.
        .target(name: "ReplicaMount", dependencies: ["CFuse", "ReplicaCore"]),
        .executableTarget(name: "replicafs", dependencies: [
            "ReplicaCore", "ReplicaMount",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "ReplicaCoreTests", dependencies: ["ReplicaCore", "CLinux"]),
        .testTarget(name: "ReplicaMountTests", dependencies: ["ReplicaCore", "replicafs"]),
    ],
    swiftLanguageModes: [.v6]
)
