// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "spikerun",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "SpikeRun", targets: ["SpikeRun"]),
        .library(name: "SpikeRunServer", targets: ["SpikeRunServer"]),
        .executable(name: "spikerun", targets: ["spikerun"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
    ],
    targets: [
        // Minimal C runtime: quant/spike kernels, thread pool + NUMA, FPGA host backend.
        .target(
            name: "CSpikeRun",
            path: ".",
            sources: ["csrc"],
            publicHeadersPath: "include",
            cSettings: [.define("_GNU_SOURCE")],
            linkerSettings: [
                .linkedLibrary("numa", .when(platforms: [.linux])),
                .linkedLibrary("dl", .when(platforms: [.linux])),
                .linkedLibrary("m"),
            ]),
        .target(
            name: "SpikeRun",
            dependencies: [
                "CSpikeRun",
                .product(name: "Logging", package: "swift-log"),
            ]),
        // OpenAI-compatible HTTP layer over the SpikeRun scheduler (thin: decode, call, encode).
        .target(
            name: "SpikeRunServer",
            dependencies: [
                "SpikeRun",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .executableTarget(
            name: "spikerun",
            dependencies: [
                "SpikeRun",
                "SpikeRunServer",
                "CSpikeRun",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .testTarget(
            name: "SpikeRunTests",
            dependencies: ["SpikeRun", "CSpikeRun"]),
    ]
)
