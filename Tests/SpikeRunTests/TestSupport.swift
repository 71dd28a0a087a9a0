import CSpikeRun
import Foundation
import Testing
@testable import SpikeRun

/// Paths and shared fixtures for tests. The real model is fetched by `make model`; tests that
/// need it fail with a clear message when it is missing (they are part of `make test`).
enum TestPaths {
    static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static var fixtures: URL { root.appendingPathComponent("Tests/Fixtures") }
    static var modelPath: String { root.appendingPathComponent("models/SmolLM2-135M-Instruct.Q4_1.gguf").path }
    static func dataFile(_ rel: String) -> String { root.appendingPathComponent("data/" + rel).path }

    /// The built `spikerun` executable next to the test bundle (same configuration).
    static var executable: String {
        let candidates = [
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("spikerun").path,
            root.appendingPathComponent(".build/release/spikerun").path,
            root.appendingPathComponent(".build/debug/spikerun").path,
        ]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[1]
    }
}

/// One loaded default model shared by the tests of a process (loading maps 98 MB).
enum SharedModel {
    static let result: Result<Model, SpikeRunError> = {
        guard FileManager.default.fileExists(atPath: TestPaths.modelPath) else {
            return .failure(.io("default model missing at \(TestPaths.modelPath): run 'make model'"))
        }
        do throws(SpikeRunError) { return .success(try Model.load(TestPaths.modelPath, options: .init(threads: 2))) }
        catch { return .failure(error) }
    }()

    static func get() throws -> Model { try result.get() }
}

/// Runs a process and captures its output.
struct ProcessResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

func runProcess(_ path: String, _ args: [String], stdin: String? = nil, environment: [String: String]? = nil) throws -> ProcessResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    if let environment { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    let input = Pipe()
    p.standardInput = input
    try p.run()
    if let stdin { input.fileHandleForWriting.write(stdin.data(using: .utf8)!) }
    try input.fileHandleForWriting.close()
    // Read both pipes concurrently so a full pipe never blocks the child.
    nonisolated(unsafe) var errData = Data()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    p.waitUntilExit()
    return ProcessResult(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                         stderr: String(decoding: errData, as: UTF8.self))
}

/// SplitMix64: small, fast, seedable test data (so failures reproduce from the seed).
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 24 random bits.
    mutating func unit() -> Float { Float(next() >> 40) / Float(1 << 24) }

    /// Standard normal (Box–Muller).
    mutating func gauss() -> Float {
        let u = Double.random(in: 1e-12..<1, using: &self), v = Double.random(in: 0..<1, using: &self)
        return Float((-2 * log(u)).squareRoot() * cos(2 * Double.pi * v))
    }
}

/// Something a test needs from the machine (a package the README installs, a CPU feature, an
/// environment). Under CI (`CI=true`) everything the README installs is present, so an unmet
/// prerequisite is a failure there; elsewhere the test is disabled, which Swift Testing
/// reports as a skip with the reason. Use both halves:
///
///     @Test(.requires(.xrtNoopShim)) func f() { guard Prerequisite.xrtNoopShim.check() else { return } … }
struct Prerequisite: Sendable {
    /// What is missing and how to get it.
    let reason: String
    let isMet: Bool

    static let isCI = ProcessInfo.processInfo.environment["CI"] == "true"

    /// In the test body: true when met; otherwise (reached only under CI, where the trait does
    /// not disable the test) records a failure naming what is missing.
    func check(sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
        if isMet { return true }
        Issue.record("\(reason) (CI=true: every component the README installs must be present)",
                     sourceLocation: sourceLocation)
        return false
    }

    static let xrtNoopShim = Prerequisite(
        reason: "XRT's noop shim (/usr/lib/x86_64-linux-gnu/libxrt_noop.so.2) is missing: install Debian's libxrt-dev (make setup)",
        isMet: FileManager.default.fileExists(atPath: "/usr/lib/x86_64-linux-gnu/libxrt_noop.so.2"))
    static let xrtHeaders = Prerequisite(
        reason: "XRT headers (/usr/include/xrt) are missing: install Debian's libxrt-dev (make setup)",
        isMet: FileManager.default.fileExists(atPath: "/usr/include/xrt/xrt/xrt_kernel.h"))
    static let avx2 = Prerequisite(
        reason: "this CPU has no AVX2, so the AVX2 kernels cannot be compared with the portable ones",
        isMet: {
            let before = sr_simd_level()
            defer { sr_set_simd_level(before) }
            sr_set_simd_level(1)
            return sr_simd_level() >= 1
        }())
    static let noXilinxXRT = Prerequisite(
        reason: "XILINX_XRT is set in this environment; the check of the backend without XRT needs it unset",
        isMet: ProcessInfo.processInfo.environment["XILINX_XRT"] == nil)
}

extension Trait where Self == ConditionTrait {
    /// Disables the test outside CI when `p` is unmet (a skip with the reason).
    static func requires(_ p: Prerequisite) -> Self {
        .enabled(if: p.isMet || Prerequisite.isCI, Comment(rawValue: p.reason))
    }
}
