import ArgumentParser
import SpikeRun

/// llama.cpp's sampling flags.
struct SamplingOptions: ParsableArguments {
    @Option(name: [.customShort("n"), .customLong("n-predict"), .customLong("predict")],
            parsing: .unconditional, help: "Tokens to generate; -1 = until end of generation (default: -1).")
    var nPredict: Int = -1

    @Option(name: [.customLong("temp"), .customLong("temperature")], help: "Temperature; 0 = greedy (default: 0.8).")
    var temperature: Float = 0.8

    @Option(name: .customLong("top-k"), help: "Top-k; 0 = off (default: 40).")
    var topK: Int = 40

    @Option(name: .customLong("top-p"), help: "Top-p; 1 = off (default: 0.95).")
    var topP: Float = 0.95

    @Option(name: .customLong("min-p"), help: "Min-p; 0 = off (default: 0.05).")
    var minP: Float = 0.05

    @Option(name: .customLong("repeat-penalty"), help: "Repetition penalty; 1 = off (default: 1.0).")
    var repeatPenalty: Float = 1.0

    @Option(name: .customLong("repeat-last-n"), parsing: .unconditional,
            help: "Tokens the penalty looks back over; -1 = whole context (default: 64).")
    var repeatLastN: Int = 64

    @Option(name: [.customShort("s"), .customLong("seed")], parsing: .unconditional,
            help: "Random seed; -1 = random (default: -1).")
    var seed: Int64 = -1

    @Option(name: .customLong("stop"), help: "Stop string (repeatable).")
    var stop: [String] = []

    func validate() throws {
        if nPredict < -1 { throw ValidationError("-n must be -1 or >= 0, got \(nPredict)") }
        if !temperature.isFinite || temperature < 0 { throw ValidationError("--temp must be >= 0, got \(temperature)") }
        if topK < 0 { throw ValidationError("--top-k must be >= 0, got \(topK)") }
        if !(topP > 0 && topP <= 1) { throw ValidationError("--top-p must be in (0, 1], got \(topP)") }
        if !(minP >= 0 && minP <= 1) { throw ValidationError("--min-p must be in [0, 1], got \(minP)") }
        if !(repeatPenalty > 0) { throw ValidationError("--repeat-penalty must be positive, got \(repeatPenalty)") }
        if repeatLastN < -1 { throw ValidationError("--repeat-last-n must be >= -1, got \(repeatLastN)") }
        if seed < -1 { throw ValidationError("--seed must be -1 or >= 0, got \(seed)") }
        if stop.contains("") { throw ValidationError("--stop must not be empty") }
    }

    var parameters: GenerationParameters {
        GenerationParameters(
            maxTokens: nPredict < 0 ? nil : nPredict, temperature: temperature, topK: topK,
            topP: topP, minP: minP, repeatPenalty: repeatPenalty, repeatLastN: repeatLastN,
            seed: seed < 0 ? nil : UInt64(seed), stop: stop)
    }
}
