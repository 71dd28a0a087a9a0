import ArgumentParser
import Foundation
import SpikeRun

struct Eval: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Perplexity of a text by llama-perplexity's method (chunks of -c tokens, second half scored).")

    @OptionGroup var modelOptions: ModelOptionsGroup

    @Option(name: [.customShort("f"), .customLong("file")], help: "Text file to score.")
    var file: String

    @Option(name: [.customShort("c"), .customLong("ctx-size")], help: "Chunk size in tokens (default: 512).")
    var contextSize: Int = 512

    @Option(name: .customLong("chunks"), help: "Score at most this many chunks (default: all).")
    var chunks: Int?

    @Flag(name: .customLong("json"), help: "Print one JSON object.")
    var json = false

    func validate() throws {
        if contextSize < 8 { throw ValidationError("-c must be at least 8, got \(contextSize)") }
        if let c = chunks, c <= 0 { throw ValidationError("--chunks must be positive") }
    }

    func run() async throws {
        try await runReportingErrors {
            let text = try TextFile.read(file)
            let model = try modelOptions.load()
            let session = try Session(model: model, contextLength: contextSize, batchSize: contextSize,
                                      mode: try modelOptions.runMode(for: model))
            let line = ProgressLine(label: "perplexity")
            let r = try await Perplexity.evaluate(session: session, text: text, contextLength: contextSize,
                                                  maxChunks: chunks) { done, total, ppl in
                line.update(done, total, String(format: "ppl %.4f", ppl))
            }
            if json {
                print(jsonString(EvalJSON(r, model: model)))
            } else {
                print(String(format: "perplexity %.4f +/- %.4f over %d tokens (%d chunks of %d), %.1f s",
                             r.perplexity, r.perplexity * r.nllStandardError, r.tokensScored, r.chunks,
                             r.contextLength, r.seconds))
            }
        }
    }
}

struct EvalJSON: Encodable {
    var ppl: Double
    var ppl_stderr: Double
    var mean_nll: Double
    var tokens_scored: Int
    var chunks: Int
    var ctx: Int
    var seconds: Double
    var model: String
    var weight_bytes: Int

    init(_ r: PerplexityResult, model: Model) {
        ppl = r.perplexity
        ppl_stderr = r.perplexity * r.nllStandardError
        mean_nll = r.meanNLL
        tokens_scored = r.tokensScored
        chunks = r.chunks
        ctx = r.contextLength
        seconds = r.seconds
        self.model = model.info.path
        weight_bytes = model.info.weightBytes
    }
}
