import ArgumentParser
import Foundation
import SpikeRun

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Prompt-processing and generation speed, in the spirit of llama-bench.")

    @OptionGroup var modelOptions: ModelOptionsGroup

    @Option(name: [.customShort("p"), .customLong("n-prompt")], help: "Prompt lengths, comma-separated (default: 512).")
    var nPrompt: String = "512"

    @Option(name: [.customShort("n"), .customLong("n-gen")], help: "Generation lengths, comma-separated (default: 128).")
    var nGen: String = "128"

    @Option(name: [.customShort("r"), .customLong("repetitions")], help: "Repetitions per test (default: 5).")
    var repetitions: Int = 5

    @Flag(name: .customLong("json"), help: "Print one JSON object.")
    var json = false

    static func parseList(_ s: String, _ flag: String) throws -> [Int] {
        let parts = s.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ $0 != nil && $0! >= 0 }) else {
            throw ValidationError("\(flag) takes comma-separated non-negative integers, got '\(s)'")
        }
        return parts.map { $0! }
    }

    func validate() throws {
        _ = try Self.parseList(nPrompt, "-p")
        _ = try Self.parseList(nGen, "-n")
        if repetitions <= 0 { throw ValidationError("-r must be positive") }
    }

    func run() async throws {
        try await runReportingErrors {
            let model = try modelOptions.load()
            let pp = try Self.parseList(nPrompt, "-p"), tg = try Self.parseList(nGen, "-n")
            let line = ProgressLine(label: "bench")
            let r = try Benchmark.run(model: model, promptTokens: pp, generateTokens: tg,
                                      repetitions: repetitions) { name, done, total in
                line.update(done, total, name)
            }
            if json { print(jsonString(r)); return }
            let size = String(format: "%.2f MiB", Double(r.weightBytes) / 1048576)
            let params = String(format: "%.2f M", Double(model.info.parameterCount) / 1e6)
            print("| model | size | params | backend | threads | act | test | t/s (median) | mean ± sd |")
            print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
            for t in r.tests {
                print("| \(model.info.name ?? "model") | \(size) | \(params) | \(r.backend) | \(r.threads) | \(r.activationMode) | \(t.name) | "
                      + String(format: "%.2f | %.2f ± %.2f |", t.median, t.mean, t.standardDeviation))
            }
            Stderr.print(String(format: "peak RSS %.1f MiB (weights %.1f MiB)", Double(r.peakRSSBytes) / 1048576,
                                Double(r.weightBytes) / 1048576))
        }
    }
}
