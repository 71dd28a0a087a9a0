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

    @Flag(name: .customLong("fpga-model"),
          help: "Predict VCK190 decode speed and memory traffic (design-note formula) from this model's shape and its spike density measured on -f text, instead of measuring this machine.")
    var fpgaModel = false

    @Option(name: [.customShort("f"), .customLong("file")], help: "Text for measuring spike density with --fpga-model (default: data/text/botchan.txt).")
    var densityText: String?

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

    /// Mean planes per token and density of firing (spikes / (activations · T)) of the spike
    /// runtime on 256 tokens of real text; (1, 1) for a dense model.
    func measuredDensity(_ model: Model) async throws -> (timesteps: Double, density: Double) {
        let session = try Session(model: model, contextLength: 256, mode: try modelOptions.runMode(for: model))
        guard session.isSpikeDriven else { return (1, 1) }
        let text = try TextFile.read(densityText ?? "data/text/botchan.txt")
        let tokens = Array(model.tokenizer.encode(text, addSpecialTokens: true, parseSpecial: false).prefix(256))
        _ = try await session.logits(for: tokens)
        let stats = await session.spikeStatistics().filter(\.isLinearSite)
        // Weight every site by the weights it streams (dense MACs), as the kernel would.
        let macs = Double(stats.map(\.denseMACs).reduce(0, +))
        let t = stats.map { Double($0.denseMACs) * $0.meanTimesteps }.reduce(0, +) / macs
        let rho = stats.map { Double($0.denseMACs) * $0.firingRate }.reduce(0, +) / macs
        return (t, rho)
    }

    func printFPGAModel(_ model: Model) async throws {
        let (t, rho) = try await measuredDensity(model)
        var m = FPGAPerformanceModel(shape: .init(name: model.info.name ?? "model", config: model.config),
                                     weightBits: model.spike?.config.weights == .ternary ? 2 : (model.spike?.config.weights == .int8 ? 8 : 5))
        m.timeSteps = max(1, Int(t.rounded()))
        m.spikeDensity = rho
        m.launchesPerToken = FPGAPerformanceModel.spkAccV1Launches(m.shape)
        print("measured on text: mean T \(String(format: "%.2f", t)), firing density \(String(format: "%.3f", rho))")
        print(m.estimate().description)
        m.launchesPerToken = 1
        print("with one kernel launch per token:")
        print(m.estimate().description)
        print("")
        print(FPGAPerformanceModel.referenceTableText())
    }

    func run() async throws {
        try await runReportingErrors {
            let model = try modelOptions.load()
            if fpgaModel { try await printFPGAModel(model); return }
            let pp = try Self.parseList(nPrompt, "-p"), tg = try Self.parseList(nGen, "-n")
            let line = ProgressLine(label: "bench")
            let r = try Benchmark.run(model: model, promptTokens: pp, generateTokens: tg,
                                      repetitions: repetitions, mode: try modelOptions.runMode(for: model)) { name, done, total in
                line.update(done, total, name)
            }
            if json { print(jsonString(r)); return }
            let size = String(format: "%.2f MiB", Double(r.weightBytes) / 1048576)
            let params = String(format: "%.2f M", Double(model.info.parameterCount) / 1e6)
            print("| model | size | params | backend | threads | numa | act | test | t/s (median) | min..max | mean ± sd |")
            print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
            for t in r.tests {
                print("| \(model.info.name ?? "model") | \(size) | \(params) | \(r.backend) (\(r.path)) | \(r.threads) | \(r.numaPolicy) | \(r.activationMode) | \(t.name) | "
                      + String(format: "%.2f | %.2f..%.2f | %.2f ± %.2f |", t.median, t.minimum, t.maximum, t.mean, t.standardDeviation))
            }
            Stderr.print("pool: \(r.pool)")
            Stderr.print(String(format: "peak RSS %.1f MiB (weights %.1f MiB)", Double(r.peakRSSBytes) / 1048576,
                                Double(r.weightBytes) / 1048576))
        }
    }
}
