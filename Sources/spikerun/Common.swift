import ArgumentParser
import Foundation
import SpikeRun

/// Model selection and runtime options shared by every subcommand that loads a model.
struct ModelOptionsGroup: ParsableArguments {
    @Option(name: [.customShort("m"), .customLong("model")],
            help: "GGUF model path (default: models/SmolLM2-135M-Instruct.Q4_1.gguf).")
    var model: String?

    @Option(name: [.customShort("t"), .customLong("threads")], help: "Threads (default: all online CPUs).")
    var threads: Int?

    @Option(name: .customLong("act"), help: "Dense activation path: q8 (llama.cpp-compatible) or f32 (default: q8).")
    var activation: ActivationMode = .q8

    func validate() throws {
        if let t = threads, t <= 0 { throw ValidationError("threads must be positive, got \(t)") }
    }

    var resolvedPath: String { model ?? DefaultModel.path() }

    func load() throws(SpikeRunError) -> Model {
        let path = resolvedPath
        if model == nil && !FileManager.default.fileExists(atPath: path) {
            throw .io("the default model is not at '\(path)'; run 'make model' or pass -m MODEL")
        }
        return try Model.load(path, options: ModelOptions(threads: threads, activationMode: activation))
    }
}

extension ActivationMode: ExpressibleByArgument {}

enum DefaultModel {
    static let fileName = "SmolLM2-135M-Instruct.Q4_1.gguf"

    /// $SPIKERUN_MODEL, else models/ under the working directory, else models/ beside the
    /// checkout that built this executable (.build/<config>/spikerun).
    static func path() -> String {
        if let env = ProcessInfo.processInfo.environment["SPIKERUN_MODEL"], !env.isEmpty { return env }
        let local = "models/" + fileName
        if FileManager.default.fileExists(atPath: local) { return local }
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("models").appendingPathComponent(fileName).path
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
            dir.deleteLastPathComponent()
        }
        return local
    }
}

/// Runs `body`, turning a SpikeRunError into one line on stderr and exit code 1.
func runReportingErrors(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let e as SpikeRunError {
        Stderr.print("spikerun: error: \(e.message)")
        throw ExitCode(1)
    }
}

enum Stderr {
    static func print(_ s: String, terminator: String = "\n") {
        FileHandle.standardError.write((s + terminator).data(using: .utf8)!)
    }
}

enum Stdout {
    /// Writes and flushes at once, so streamed text appears as it is produced.
    static func write(_ s: String) {
        FileHandle.standardOutput.write(s.data(using: .utf8)!)
    }
}

func jsonString<T: Encodable>(_ value: T) -> String {
    let enc = JSONEncoder()
    enc.outputFormatting = [.sortedKeys]
    return String(data: try! enc.encode(value), encoding: .utf8)!
}

/// A one-line progress display on stderr (only when stderr is a terminal, else sparse lines).
struct ProgressLine: Sendable {
    let label: String
    let isTTY = isatty(STDERR_FILENO) != 0

    func update(_ done: Int, _ total: Int, _ detail: String = "") {
        let pct = total > 0 ? 100 * done / total : 0
        if isTTY {
            Stderr.print("\r\(label): \(done)/\(total) (\(pct)%) \(detail)\u{1B}[K", terminator: done == total ? "\n" : "")
        } else if done == total || total < 20 || done % max(total / 10, 1) == 0 {
            Stderr.print("\(label): \(done)/\(total) (\(pct)%) \(detail)")
        }
    }
}
