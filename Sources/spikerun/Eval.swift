import ArgumentParser
import Foundation
import SpikeRun

struct Eval: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Perplexity of a text by llama-perplexity's method (chunks of -c tokens, second half scored); KL divergence against a base model.",
        discussion: """
            KL divergence, as llama-perplexity: run the base model once with --kl-divergence-base FILE \
            (writes its top-k distributions for the text), then any model of the same vocabulary with \
            --kl-divergence-base FILE --kl-divergence (scores the base's tokens; -f is not needed).
            """)

    @OptionGroup var modelOptions: ModelOptionsGroup

    @Option(name: [.customShort("f"), .customLong("file")], help: "Text file to score.")
    var file: String?

    @Option(name: [.customShort("c"), .customLong("ctx-size")], help: "Chunk size in tokens (default: 512).")
    var contextSize: Int = 512

    @Option(name: .customLong("chunks"), help: "Score at most this many chunks (default: all).")
    var chunks: Int?

    @Option(name: .customLong("kl-divergence-base"),
            help: "Base distributions file: written from this model's run on -f, or read with --kl-divergence.")
    var klBase: String?

    @Flag(name: .customLong("kl-divergence"), help: "Compare this model with the --kl-divergence-base file (KLD, top-1 agreement, paired ppl ratio).")
    var klCompare = false

    @Flag(name: .customLong("json"), help: "Print one JSON object.")
    var json = false

    func validate() throws {
        if contextSize < 8 { throw ValidationError("-c must be at least 8, got \(contextSize)") }
        if let c = chunks, c <= 0 { throw ValidationError("--chunks must be positive") }
        if klCompare && klBase == nil { throw ValidationError("--kl-divergence needs --kl-divergence-base FILE") }
        if !klCompare && file == nil { throw ValidationError("-f FILE is required (except with --kl-divergence)") }
    }

    func run() async throws {
        try await runReportingErrors {
            let model = try modelOptions.load()
            var base: KLBase?
            if klCompare, let path = klBase { base = try KLBase.read(from: path) }
            let ctx = base?.contextLength ?? contextSize
            let session = try Session(model: model, contextLength: ctx, batchSize: ctx,
                                      mode: try modelOptions.runMode(for: model))
            let line = ProgressLine(label: klCompare ? "kl-divergence" : "perplexity")
            let progress: @Sendable (Int, Int, Double) -> Void = { done, total, ppl in
                line.update(done, total, String(format: "ppl %.4f", ppl))
            }
            let r: PerplexityResult
            var kld: KLDivergenceResult?
            if let base {
                (kld, r) = try await KLDivergence.compare(session: session, base: base, progress: progress)
            } else if let path = klBase {
                let written: KLBase
                (written, r) = try await KLBase.record(session: session, text: try TextFile.read(file!), contextLength: ctx,
                                                      maxChunks: chunks, progress: progress)
                try written.write(to: path)
                Stderr.print("eval: wrote the base distributions of \(written.positions) positions to \(path)")
            } else {
                r = try await Perplexity.evaluate(session: session, text: try TextFile.read(file!), contextLength: ctx,
                                                  maxChunks: chunks, progress: progress)
            }
            if json {
                var out = EvalJSON(r, model: model)
                out.kl_divergence = kld
                // Spike measurements (docs/spike-algorithms.md §2, §8): any model, dense or spike.
                let stats = await session.spikeStatistics()
                let spikeAttention: Bool
                if case .spike(let s) = try modelOptions.runMode(for: model) { spikeAttention = s.config.spikeAttention }
                else { spikeAttention = session.isSpikeDriven && (model.spike?.config.spikeAttention ?? false) }
                if session.fpgaTokenProgram {
                    // the FPGA token program encodes on the device: no counters, no energy estimate
                    Stderr.print("eval: the FPGA token program does not collect spike counters; \"spike\" is omitted (--backend cpu has them)")
                } else {
                    out.spike = SpikeMeasurementsJSON(config: model.config, stats: stats, chunks: r.chunks,
                                                      contextLength: r.contextLength, spikeAttention: spikeAttention,
                                                      spikeDriven: session.isSpikeDriven, weightBytes: model.info.weightBytes)
                }
                print(jsonString(out))
            } else {
                print(String(format: "perplexity %.4f +/- %.4f over %d tokens (%d chunks of %d), %.1f s",
                             r.perplexity, r.perplexity * r.nllStandardError, r.tokensScored, r.chunks,
                             r.contextLength, r.seconds))
                if let k = kld { print(k.summary) }
            }
        }
    }
}

extension KLDivergenceResult {
    /// llama-perplexity-style summary lines.
    var summary: String {
        [String(format: "PPL(base) %.4f, PPL(Q)/PPL(base) %.4f [95%% CI %.4f, %.4f], ln ratio %.6f +/- %.6f",
                basePerplexity, pplRatio, pplRatioLow95, pplRatioHigh95, meanLogPPLRatio, logPPLRatioStandardError),
         String(format: "KLD mean %.6f +/- %.6f, median %.6f, p90 %.6f, p99 %.6f, max %.6f (%d positions)",
                meanKLD, kldStandardError, medianKLD, p90KLD, p99KLD, maxKLD, positions),
         String(format: "same top token %.3f +/- %.3f %%, mean delta log p(base top) %.6f, RMS delta p %.3f %%",
                top1AgreementPercent, top1StandardErrorPercent, meanTopLogProbDelta, rmsProbabilityDeltaPercent),
        ].joined(separator: "\n")
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
    var kl_divergence: KLDivergenceResult?
    var spike: SpikeMeasurementsJSON?

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

/// Per-site and overall spike measurements plus the energy estimate of `eval --json`.
struct SpikeMeasurementsJSON: Encodable {
    struct Site: Encodable {
        var layer: Int
        var site: String
        var firing_rate: Double
        var spikes_per_activation: Double
        var mean_timesteps: Double
        var sops_per_token: Double
        var active_input_fraction: Double?   // linear sites only
    }
    var spike_driven: Bool
    var spike_attention: Bool
    var tokens_evaluated: Int
    /// Linear sites (A, O, F, D, H) together; attention (Q, P) separately.
    var spikes_per_activation: Double
    var firing_rate: Double
    var mean_timesteps: Double
    var attention_spikes_per_activation: Double?
    var sops_per_token: Double
    /// Share of the linear sites' encoded values that fire at all (their weight lines are read).
    var active_input_fraction: Double
    /// Packed weight bytes one token decoded alone reads (lines of active inputs, all scales, the
    /// refined head's rows) and would read without skipping silent inputs; memory, not arithmetic.
    var decode_weight_bytes_read_per_token: Double
    var decode_weight_bytes_full_per_token: Double
    var weight_bytes: Int
    var energy: EnergyReport
    var sites: [Site]

    init(config: ModelConfig, stats: [SpikeSiteStatistics], chunks: Int, contextLength: Int, spikeAttention: Bool,
         spikeDriven: Bool, weightBytes: Int) {
        let tokens = chunks * contextLength
        let t = Double(max(tokens, 1))
        spike_driven = spikeDriven
        spike_attention = spikeDriven && spikeAttention
        tokens_evaluated = tokens
        sites = stats.map {
            Site(layer: $0.layer, site: $0.site, firing_rate: $0.firingRate, spikes_per_activation: $0.spikesPerActivation,
                 mean_timesteps: $0.meanTimesteps, sops_per_token: Double($0.sops + $0.hornerAdds) / t,
                 active_input_fraction: $0.isLinearSite ? $0.activeFraction : nil)
        }
        let lin = stats.filter(\.isLinearSite)
        let acts = lin.reduce(0) { $0 + $1.activations }
        let spikes = lin.reduce(0) { $0 + $1.spikes }
        spikes_per_activation = acts > 0 ? Double(spikes) / Double(acts) : 0
        active_input_fraction = acts > 0 ? Double(lin.reduce(0) { $0 + $1.activeInputs }) / Double(acts) : 0
        decode_weight_bytes_read_per_token = Double(stats.reduce(0) { $0 + $1.weightBytesRead }) / t
        decode_weight_bytes_full_per_token = Double(stats.reduce(0) { $0 + $1.weightBytesFull }) / t
        // Activation-weighted mean T; firing rate = spikes / (activations · T).
        let slots = lin.reduce(0.0) { $0 + Double($1.activations) * $1.meanTimesteps }
        mean_timesteps = acts > 0 ? slots / Double(acts) : 0
        firing_rate = slots > 0 ? Double(spikes) / slots : 0
        let att = stats.filter { !$0.isLinearSite }
        let attActs = att.reduce(0) { $0 + $1.activations }
        attention_spikes_per_activation = attActs > 0 ? Double(att.reduce(0) { $0 + $1.spikes }) / Double(attActs) : nil
        energy = EnergyReport(config: config, stats: stats, tokens: tokens,
                              meanAttendedPositions: Double(contextLength + 1) / 2, spikeAttention: spike_attention)
        sops_per_token = energy.sopsPerToken
        weight_bytes = weightBytes
    }
}
