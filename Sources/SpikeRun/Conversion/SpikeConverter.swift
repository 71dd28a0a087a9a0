import CSpikeRun
import Foundation

/// What `spikerun convert` should produce.
public struct ConversionOptions: Sendable, Hashable {
    /// How the per-site encoder settings are chosen.
    public enum Mode: Sendable, Hashable {
        /// Mean-step rule with one `k` at every site (§1; the recommended recipe).
        case mean(k: Float)
        /// Fixed-T max rule with G = 32 groups and a per-site calibrated gamma (§1).
        case timesteps(Int)
        /// Mixed per-block `k` from sensitivity probes under a perplexity budget in percent (§7).
        case pplBudget(Double)
    }
    /// The default recipe (measured in docs/benchmarks.md): NAF trains, int8 row weights, the
    /// mean rule with k per site kind, coarse where the outputs tolerate it (O, D) and fine
    /// where they do not (F, H).
    public var encoding: SpikeEncoding = .naf
    public var mode: Mode = .mean(k: 12)
    /// Mean rule: `k` per site kind ("A", "O", "F", "D", "H"); kinds not named use the mode's `k`.
    public var siteK: [String: Float] = ConversionOptions.defaultSiteK
    public static let defaultSiteK: [String: Float] = ["A": 8, "O": 4, "F": 12, "D": 4, "H": 12]
    /// Spike-thrifty rounding margin of every mean-rule site when the trains are NAF (§3 of
    /// docs/spike-algorithms.md; ignored for other codes): measured in docs/benchmarks.md.
    public var tau: Float = ConversionOptions.defaultTau
    public static let defaultTau: Float = 0.35
    /// Mean-rule steps snapped to powers of two (§1 of docs/spike-algorithms.md), and with
    /// spike attention the query's step rounded up to one and the probabilities' scale
    /// 2^-bits (§5): the quantizers and the steps' share of the rescales become exponent adds.
    /// Measured in docs/benchmarks.md.
    public var pow2Steps = true
    /// A mean-rule site at resolution `k` with this recipe's rounding and steps.
    public func meanSite(k: Float) -> SpikeSiteSetting {
        .mean(k: k, tau: encoding == .naf ? tau : 0, pow2: pow2Steps)
    }
    public var weights: SpikeWeightFormat = .int8
    /// Refined head (mean rule, int8-row head codes: `--weights int8` or `int4i`): the head
    /// input spikes at `headCoarseK`, and the `headRefineRows` largest logits are recomputed
    /// from a train at the head's own k (`siteK["H"]`). 0 = a plain head at `siteK["H"]`.
    /// Measured in docs/benchmarks.md: at 1024 rows and k 3 it keeps the quality of the plain
    /// k = 12 head with 40% fewer of its accumulations; k 2 (the default) saves 17% more of
    /// the model's arithmetic energy under convention B for +0.003 KLD.
    public var headRefineRows = ConversionOptions.defaultHeadRefineRows
    public var headCoarseK: Float = ConversionOptions.defaultHeadCoarseK
    public static let defaultHeadRefineRows = 1024
    public static let defaultHeadCoarseK: Float = 2
    /// The head is refined: rows asked for, the mean rule, and int8-row head codes.
    public var refinesHead: Bool {
        guard headRefineRows > 0, weights == .int8 || weights == .int4i else { return false }
        if case .mean = mode { return true }
        return false
    }
    public var spikeAttention = true
    public var attentionQBits = 8
    public var attentionPBits = 12
    /// Static V-cache scales are max|v|·headroom/127 over the calibration tokens: > 1 leaves
    /// room for the larger values of other text (clipped otherwise) at a coarser step. Measured
    /// on held-out text (docs/benchmarks.md): KLD 0.0240 at 1, 0.0202 at 1.5, 0.0200 at 3.
    public var vScaleHeadroom: Float = 2
    /// Calibration tokens (cut into sequences of `calibrationContext`).
    public var calibrationTokens = 512
    public var calibrationContext = 256
    /// Tokens per site used for the gamma search (subsampled from the calibration tokens).
    public var gammaTokens = 32
    /// Output rows per weight matrix used for the gamma search's output-space error.
    public var gammaRows = 96
    /// Candidate k of the budget allocation, finest first.
    public var budgetLevels: [Float] = [16, 8, 4, 3, 2]
    /// Budget mode: sensitivity probes already measured (a previous `convert --json` report's
    /// `sensitivity`, `unitSOPs` and `calibrationDenseNLL`, same model, calibration text and
    /// levels); the probing passes are skipped, only the allocation and its verification run.
    public var budgetProbes: BudgetProbes?

    public struct BudgetProbes: Sendable, Hashable {
        public var sensitivity: [[Double]]
        public var unitSOPs: [[Double]]
        public var denseNLL: Double
        public init(sensitivity: [[Double]], unitSOPs: [[Double]], denseNLL: Double) {
            self.sensitivity = sensitivity
            self.unitSOPs = unitSOPs
            self.denseNLL = denseNLL
        }
    }

    public init() {}

    /// Max-rule resolution for `T` time steps of `encoding`: (bits, membrane clip; 0 = Q).
    /// bitwise sign-magnitude: b = T + 1; two's complement: b = T; ternary: Q = T; binary: T = 2Q.
    public static func maxRuleBits(encoding: SpikeEncoding, timesteps T: Int) throws(SpikeRunError) -> (bits: Int, clip: Int) {
        func covering(_ q: Int) -> (Int, Int) {
            var b = 2
            while (1 << (b - 1)) - 1 < q { b += 1 }
            return (b, (1 << (b - 1)) - 1 == q ? 0 : q)
        }
        switch encoding {
        case .signMagnitude:
            guard (1...15).contains(T) else { throw .invalidArgument("--timesteps for bitwise sign-magnitude must be in 1...15, got \(T)") }
            return (T + 1, 0)
        case .twosComplement:
            guard (2...16).contains(T) else { throw .invalidArgument("--timesteps for two's complement must be in 2...16, got \(T)") }
            return (T, 0)
        case .ternary:
            guard (1...255).contains(T) else { throw .invalidArgument("--timesteps for ternary must be in 1...255, got \(T)") }
            return covering(T)
        case .naf:
            throw .invalidArgument("the NAF code has a T per token: use it with the mean rule (-k, --site-k or --ppl-budget), not --timesteps")
        case .binary:
            guard T >= 2, T % 2 == 0, T <= 510 else { throw .invalidArgument("--timesteps for binary must be even and in 2...510 (T = 2Q), got \(T)") }
            return covering(T / 2)
        }
    }
}

/// Results of a conversion beyond the file: what was chosen and how well it scored on the
/// calibration text.
public struct ConversionReport: Sendable, Codable {
    public var output: String
    public var mode: String
    public var encoding: String
    public var weights: String
    public var spikeAttention: Bool
    public var calibrationTokens: Int
    /// Per-site settings as short strings ("k12", "b5 g0.85") in site order A, O, F, D per block, then H.
    public var sites: [String]
    /// Mean NLL (nats/token) of the dense and the converted model on the calibration text.
    public var calibrationDenseNLL: Double?
    public var calibrationSpikeNLL: Double?
    public var calibrationPPLChangePercent: Double?
    /// The converted model against the dense one on the calibration tokens.
    public var calibrationKLD: KLDivergenceResult?
    /// Spikes per activation over the linear sites on the calibration tokens.
    public var calibrationSpikesPerActivation: Double?
    /// Budget mode: sensitivity S_l(k) (nats/token) and SOPs/token per unit and level.
    public var sensitivity: [[Double]]?
    public var unitSOPs: [[Double]]?
    public var budgetBackoffs: Int?
    /// Budget mode: KL divergence of spike attention alone, and the noise model's check:
    /// rows of [unit, k, predicted KLD, measured KLD].
    public var budgetAttentionKLD: Double?
    public var budgetProxyCheck: [[Double]]?
    /// Budget mode: the fitted α of S(k) = S(4)·(4/k)^α.
    public var budgetLevelExponent: Double?
    /// Budget mode: the factor c that makes the sum of single-unit divergences at the finest
    /// level match their joint measurement (S = c·S(4)·(4/k)^α).
    public var budgetAdditivity: Double?
    public var seconds: Double
}

/// Converts a dense Llama GGUF to a spike-driven one (`spikerun convert`): calibrates the
/// encoders on text, chooses the per-site settings and writes the file via `SpikeModelWriter`.
public enum SpikeConverter {
    /// Checks that `model` can be converted with `options` (clear one-line errors).
    public static func validate(model: Model, options: ConversionOptions) throws(SpikeRunError) {
        if model.file.metadata.int("spike.version") != nil || model.spike != nil {
            throw .invalidArgument("'\(model.info.path)' is already a converted spike model (it has spike.version); convert the dense original")
        }
        let c = model.config
        // the graph's architectures; the writer copies the metadata (architecture, rope keys)
        // and every non-linear tensor (norms, qwen2's q/k/v biases) unchanged
        guard ModelConfig.supportedArchitectures.contains(c.architecture) else {
            throw .unsupported("architecture '\(c.architecture)' is not supported (supported: "
                + ModelConfig.supportedArchitectures.map { "'\($0)'" }.joined(separator: ", ") + ")")
        }
        switch options.mode {
        case .mean, .pplBudget:
            guard options.encoding.isBitwise else {
                throw .invalidArgument("--encoding \(options.encoding.name) needs --timesteps T (the mean rule and --ppl-budget are for bitwise codes)")
            }
        case .timesteps(let t):
            _ = try ConversionOptions.maxRuleBits(encoding: options.encoding, timesteps: t)
            if options.weights == .int4i {
                throw .invalidArgument("--weights int4i needs one activation scale per token (the mean rule: -k or --ppl-budget), not --timesteps")
            }
        }
        if options.refinesHead && !(options.headCoarseK > 0 && options.headCoarseK.isFinite) {
            throw .invalidArgument("--head-coarse-k must be positive, got \(options.headCoarseK)")
        }
        if case .mean(let k) = options.mode, !(k > 0 && k.isFinite) {
            throw .invalidArgument("-k must be positive, got \(k)")
        }
        if case .pplBudget(let p) = options.mode, !(p > 0 && p.isFinite) {
            throw .invalidArgument("--ppl-budget must be a positive percentage, got \(p)")
        }
        for l in 0...c.nLayer {
            let names = l == c.nLayer ? [c.tiedOutput ? "token_embd.weight" : "output.weight"]
                : SpikeRuntime.projections.map { "blk.\(l).\($0.0).weight" }
            for n in names {
                guard let t = model.file.tensor(n) else { throw .format("tensor '\(n)' is missing") }
                switch options.weights {
                case .int4:
                    guard t.type == .q4_1 || t.type == .q8_0 else {
                        throw .unsupported("tensor '\(n)' has type \(t.type.name); --weights int4 keeps the GGUF's codes and needs Q4_1 (or Q8_0); use --weights int8")
                    }
                case .int4i:
                    let head = l == c.nLayer
                    guard t.type == .q4_1 || (head && sr_type_supported(Int32(t.type.rawValue))) else {
                        throw .unsupported("tensor '\(n)' has type \(t.type.name); --weights int4i keeps the GGUF's Q4_1 codes; use --weights int8")
                    }
                case .int8, .ternary:
                    guard sr_type_supported(Int32(t.type.rawValue)) else {
                        throw .unsupported("tensor '\(n)' has type \(t.type.name), which cannot be requantized to \(options.weights.rawValue)")
                    }
                }
            }
        }
    }

    /// Calibration tokens of `text`: at least one full sequence, at most `options.calibrationTokens`.
    static func calibrationSequences(model: Model, text: String, options: ConversionOptions) throws(SpikeRunError) -> [[Int32]] {
        let toks = model.tokenizer.encode(text, addSpecialTokens: true, parseSpecial: false)
        let ctx = options.calibrationContext
        guard toks.count >= ctx else {
            throw .invalidArgument("the calibration text has \(toks.count) tokens; at least \(ctx) are needed")
        }
        let n = max(1, min(options.calibrationTokens, toks.count) / ctx)
        return (0..<n).map { i in
            var s = Array(toks[(i * ctx)..<((i + 1) * ctx)])
            if model.tokenizer.addBOS, let b = model.tokenizer.bosToken { s[0] = b }
            return s
        }
    }

    /// Mean NLL over the second half of each sequence (llama-perplexity's scoring).
    static func meanNLL(model: Model, mode: RunMode, sequences: [[Int32]]) async throws(SpikeRunError) -> (Double, [SpikeSiteStatistics]) {
        let ctx = sequences[0].count
        let session = try Session(model: model, contextLength: ctx, batchSize: ctx, mode: mode)
        let r = try await Perplexity.evaluate(session: session, tokens: sequences.flatMap { $0 }, contextLength: ctx)
        return (r.meanNLL, await session.spikeStatistics())
    }

    /// Runs the dense model over the calibration text with a tap: static V scales (max|v|/127
    /// per layer and KV channel) and, when `keepRows > 0`, up to `keepRows` sampled inputs per site.
    static func collect(model: Model, sequences: [[Int32]], keepRows: Int, headroom: Float = 1) async throws(SpikeRunError)
        -> (vScales: [Float], rows: [Int: [[Float]]])
    {
        let c = model.config
        let kv = c.nHeadKV * c.headDim
        final class Box: @unchecked Sendable {
            var vMax: [Float]
            var rows: [Int: [[Float]]] = [:]
            var seen: [Int: Int] = [:]
            init(_ n: Int) { vMax = [Float](repeating: 0, count: n) }
        }
        let box = Box(c.nLayer * kv)
        let total = sequences.count * sequences[0].count
        let stride = max(1, total / max(keepRows, 1))
        let tap = EngineTap { layer, point, rows, nTok, dim in
            switch point {
            case .v:
                for t in 0..<nTok {
                    for j in 0..<dim {
                        let a = abs(rows[t * dim + j])
                        if a > box.vMax[layer * kv + j] { box.vMax[layer * kv + j] = a }
                    }
                }
            case .siteA, .siteO, .siteF, .siteD, .siteH:
                guard keepRows > 0 else { return }
                let key = point == .siteH ? c.nLayer * 4 : layer * 4 + point.rawValue
                var seen = box.seen[key, default: 0]
                for t in 0..<nTok {
                    if seen % stride == stride / 2 && box.rows[key, default: []].count < keepRows {
                        box.rows[key, default: []].append(Array(rows[(t * dim)..<((t + 1) * dim)]))
                    }
                    seen += 1
                }
                box.seen[key] = seen
            case .block:
                break
            }
        }
        let ctx = sequences[0].count
        let session = try Session(model: model, contextLength: ctx, batchSize: ctx, mode: .dense)
        await session.installTap(tap)
        for s in sequences {
            await session.reset()
            // With samples wanted, the head runs on every token so that H gets its share.
            if keepRows > 0 { _ = try await session.allLogits(for: s) } else { _ = try await session.logits(for: s) }
        }
        await session.removeTap()
        withExtendedLifetime(tap) {}
        let scales = box.vMax.map { $0 > 0 && $0.isFinite ? $0 * headroom / 127 : 1 }
        return (scales, box.rows)
    }

    /// Fake-quantizes `x` with the max rule (G-channel groups, Q, clip C, gamma) into `out`.
    static func maxRuleDequant(_ x: [Float], q: Int, clip: Int, gamma: Float, group: Int, into out: inout [Float]) {
        let G = group > 0 ? group : x.count
        let C = Float(clip == 0 ? q : clip)
        var g0 = 0
        while g0 < x.count {
            let g1 = min(g0 + G, x.count)
            var m: Float = 0
            for j in g0..<g1 { m = max(m, abs(x[j])) }
            if m == 0 {
                for j in g0..<g1 { out[j] = 0 }
            } else {
                let s = gamma * m / Float(q)
                let inv = 1 / s
                for j in g0..<g1 {
                    let v = x[j] * inv
                    let n = min(C, (abs(v) + 0.5).rounded(.down))
                    out[j] = s * (v < 0 ? -n : n)
                }
            }
            g0 = g1
        }
    }

    /// Sampled dequantized rows (every `stride`-th) of a weight tensor, (rows × n_in).
    static func sampledRows(model: Model, tensor name: String, maxRows: Int) throws(SpikeRunError) -> [[Float]] {
        guard let t = model.file.tensor(name) else { throw .format("tensor '\(name)' is missing") }
        let stride = max(1, t.rowCount / maxRows)
        let src = model.file.data(t)
        var out: [[Float]] = []
        var r = stride / 2
        while r < t.rowCount && out.count < maxRows {
            var row = [Float](repeating: 0, count: t.rowLength)
            row.withUnsafeMutableBufferPointer { dst in
                sr_dequantize_row(sr_type(rawValue: t.type.rawValue), src.baseAddress! + r * t.rowBytes,
                                  dst.baseAddress!, Int64(t.rowLength))
            }
            out.append(row)
            r += stride
        }
        return out
    }

    static let gammaCandidates: [Float] = stride(from: 20, through: 10, by: -1).map { Float($0) / 20 }

    /// Per-site gamma by output-space error E(γ) = Σ_tokens Σ_rows (w_r · (x − x̂_γ))² (§1).
    static func calibrateGammas(model: Model, rows: [Int: [[Float]]], bits: Int, clip: Int, group: Int,
                                options: ConversionOptions, progress: ((String) -> Void)?) throws(SpikeRunError) -> [Float] {
        let c = model.config
        let q = (1 << (bits - 1)) - 1
        var gammas = [Float](repeating: 1, count: c.nLayer * 4 + 1)
        let consumers: [[String]] = [["attn_q", "attn_k", "attn_v"], ["attn_output"], ["ffn_gate", "ffn_up"], ["ffn_down"]]
        for site in 0..<(c.nLayer * 4 + 1) {
            let l = site / 4
            let names = site == c.nLayer * 4 ? [c.tiedOutput ? "token_embd.weight" : "output.weight"]
                : consumers[site % 4].map { "blk.\(l).\($0).weight" }
            var W: [[Float]] = []
            for n in names { W += try sampledRows(model: model, tensor: n, maxRows: options.gammaRows) }
            guard let xs = rows[site], !xs.isEmpty else { continue }
            var best = (Float(1), Double.infinity)
            var xh = [Float](repeating: 0, count: xs[0].count)
            var e = [Float](repeating: 0, count: xs[0].count)
            for g in gammaCandidates {
                var err = 0.0
                for x in xs {
                    maxRuleDequant(x, q: q, clip: clip, gamma: g, group: group, into: &xh)
                    for j in 0..<x.count { e[j] = x[j] - xh[j] }
                    for w in W {
                        var acc: Float = 0
                        w.withUnsafeBufferPointer { wp in
                            e.withUnsafeBufferPointer { ep in
                                for j in 0..<ep.count { acc += wp[j] * ep[j] }
                            }
                        }
                        err += Double(acc) * Double(acc)
                    }
                }
                if err < best.1 { best = (g, err) }
            }
            gammas[site] = best.0
            if site % 4 == 3 || site == c.nLayer * 4 {
                progress?("gamma: block \(min(l, c.nLayer - 1) + (site == c.nLayer * 4 ? 1 : 0))/\(c.nLayer) (+head)")
            }
        }
        return gammas
    }

    static func describe(_ s: SpikeSiteSetting) -> String {
        switch s.rule {
        case .mean: return "k\(s.k == s.k.rounded() ? String(Int(s.k)) : String(s.k))"
        case .max: return "b\(s.bits) g\(String(format: "%.2f", s.gamma))" + (s.clip > 0 ? " C\(s.clip)" : "")
        case .dense: return "dense"
        }
    }

    /// Calibrates and chooses the settings; returns the setup (config + V scales) and a report
    /// (without `output`).
    public static func calibrate(model: Model, options: ConversionOptions, calibrationText: String,
                                 provenance: [String: String] = [:],
                                 progress: ((String) -> Void)? = nil,
                                 probeProgress: ((Int, Int) -> Void)? = nil) async throws(SpikeRunError) -> (SpikeSetup, ConversionReport) {
        let start = Date()
        try validate(model: model, options: options)
        let c = model.config
        let nSites = c.nLayer * 4 + 1
        let seqs = try calibrationSequences(model: model, text: calibrationText, options: options)
        let nTok = seqs.count * seqs[0].count
        var keep = 0
        if case .timesteps = options.mode { keep = options.gammaTokens }
        if case .pplBudget = options.mode { keep = options.gammaTokens }
        progress?("calibration: dense pass over \(nTok) tokens")
        let (vScales, rows) = try await collect(model: model, sequences: seqs, keepRows: keep, headroom: options.vScaleHeadroom)
        var cfg = SpikeConfig.uniform(k: 12, nLayer: c.nLayer)
        cfg.encoding = options.encoding
        cfg.weights = options.weights
        cfg.spikeAttention = options.spikeAttention
        cfg.attentionQBits = options.attentionQBits
        cfg.attentionPBits = options.attentionPBits
        cfg.attentionPow2 = options.spikeAttention && options.pow2Steps
        var report = ConversionReport(output: "", mode: "", encoding: options.encoding.name, weights: options.weights.rawValue,
                                      spikeAttention: options.spikeAttention, calibrationTokens: nTok, sites: [],
                                      seconds: 0)
        var denseNLL: Double?
        switch options.mode {
        case .mean(let k):
            let kinds = ["A", "O", "F", "D"]
            cfg.sites = (0..<nSites).map { i in
                options.meanSite(k: options.siteK[i == nSites - 1 ? "H" : kinds[i % 4]] ?? k)
            }
            if options.refinesHead {
                cfg.headRefineK = cfg.sites[nSites - 1].k
                cfg.headRefineRows = options.headRefineRows
                cfg.sites[nSites - 1] = options.meanSite(k: options.headCoarseK)
            }
            report.mode = "mean k=\(k)" + (options.encoding == .naf && options.tau > 0 ? " tau=\(options.tau)" : "") + (options.siteK.isEmpty ? "" : " " + options.siteK.sorted { $0.key < $1.key }
                .map { "\($0.key)\($0.value == $0.value.rounded() ? String(Int($0.value)) : String($0.value))" }.joined(separator: " "))
                + (options.refinesHead ? " head coarse k=\(options.headCoarseK) refine \(options.headRefineRows) rows" : "")
        case .timesteps(let T):
            let (bits, clip) = try ConversionOptions.maxRuleBits(encoding: options.encoding, timesteps: T)
            let gammas = try calibrateGammas(model: model, rows: rows, bits: bits, clip: clip, group: 32,
                                             options: options, progress: progress)
            cfg.sites = gammas.map { g in
                var s = SpikeSiteSetting.max(bits: bits, gamma: g, group: 32)
                s.clip = clip
                return s
            }
            report.mode = "timesteps T=\(T) (max rule, G=32, bits \(bits)\(clip > 0 ? ", C=\(clip)" : ""))"
        case .pplBudget(let p):
            let r = try await allocate(model: model, options: options, budgetPercent: p, sequences: seqs,
                                       vScales: vScales, rows: rows, base: cfg, progress: progress,
                                       probeProgress: probeProgress)
            cfg.sites = r.sites
            denseNLL = r.denseNLL
            report.sensitivity = r.sensitivity
            report.unitSOPs = r.sops
            report.budgetBackoffs = r.backoffs
            report.budgetAttentionKLD = r.attentionKLD
            report.budgetProxyCheck = r.proxyCheck
            report.budgetLevelExponent = r.levelExponent
            report.budgetAdditivity = r.additivity
            report.calibrationSpikeNLL = r.finalNLL
            report.mode = "ppl-budget \(p)%"
        }
        var prov = provenance
        prov["spike.calibration.tokens"] = String(nTok)
        prov["spike.calibration.sequence_length"] = String(seqs[0].count)
        prov["spike.calibration.mode"] = report.mode
        prov["spike.calibration.tool"] = "spikerun convert"
        cfg.provenance = prov
        let setup = SpikeSetup(config: cfg, vScales: options.spikeAttention ? vScales : nil)
        // Quality on the calibration text (cheap: the calibration tokens only): the spike model's
        // distributions against the dense model's, position by position.
        progress?("check: KL divergence from the dense model on the calibration tokens")
        let ctx = seqs[0].count
        let denseSession = try Session(model: model, contextLength: ctx, batchSize: ctx, mode: .dense)
        let (base, denseRun) = try await KLBase.record(session: denseSession, tokens: seqs.flatMap { $0 }, contextLength: ctx)
        let spikeSession = try Session(model: model, contextLength: ctx, batchSize: ctx, mode: .spike(setup))
        let (kld, spikeRun) = try await KLDivergence.compare(session: spikeSession, base: base)
        report.calibrationKLD = kld
        let lin = await spikeSession.spikeStatistics().filter(\.isLinearSite)
        let acts = lin.reduce(0) { $0 + $1.activations }
        report.calibrationSpikesPerActivation = acts > 0 ? Double(lin.reduce(0) { $0 + $1.spikes }) / Double(acts) : nil
        report.calibrationSpikeNLL = spikeRun.meanNLL
        if denseNLL == nil { denseNLL = denseRun.meanNLL }
        report.calibrationDenseNLL = denseNLL
        if let d = denseNLL, let s = report.calibrationSpikeNLL { report.calibrationPPLChangePercent = 100 * (exp(s - d) - 1) }
        report.sites = cfg.sites.map(describe)
        report.seconds = Date().timeIntervalSince(start)
        return (setup, report)
    }

    struct Allocation {
        var sites: [SpikeSiteSetting]
        var sensitivity: [[Double]]
        var sops: [[Double]]
        var denseNLL: Double
        var finalNLL: Double
        var backoffs: Int
        var attentionKLD: Double
        var proxyCheck: [[Double]]
        var levelExponent: Double
        var additivity: Double
    }

    /// Spikes per token of one site's sampled dense inputs at mean-rule resolution `k`
    /// (the encoder's rule in double precision: an estimate for the allocation, not the kernel).
    static func spikesPerToken(_ rows: [[Float]], k: Float, encoding: SpikeEncoding, tau: Float = 0) -> Double {
        guard !rows.isEmpty else { return 0 }
        var total = 0
        for x in rows {
            var m = 0.0
            for v in x { m += Double(abs(v)) }
            m /= Double(x.count)
            guard m > 0 else { continue }
            let inv = Double(k) / m
            for v in x {
                let a = abs(Double(v)) * inv
                var n = Int32(min(32767, (a + 0.5).rounded(.down)))
                if tau > 0, a < 32767 {  // the thrifty rule of sr_spike_round_thrifty
                    let r = Int32(a.rounded(.down)), f = a - Double(r)
                    let wl = SpikeEncoding.naf.spikeCount(r, steps: 16), wh = SpikeEncoding.naf.spikeCount(r + 1, steps: 16)
                    if wl < wh && f <= 0.5 + Double(tau) { n = r } else if wh < wl && f >= 0.5 - Double(tau) { n = r + 1 }
                }
                total += encoding.spikeCount(n, steps: 16)
            }
        }
        return Double(total) / Double(rows.count)
    }

    /// Mixed per-block `k` under a perplexity budget, from cheap sensitivity measurements:
    /// - one probe per unit (a block's four sites, or the head) at `k = 4` with the rest dense:
    ///   its KL divergence from the dense model on the calibration tokens, S_u(4); other levels
    ///   follow S_u(k) = c·S_u(4)·(4/k)^α, α fitted (in log space) to full probes of the first
    ///   block and the head at k = 2 and k = 8 (pure rounding noise would give α = 2; this
    ///   model measures about 1, see `budgetProxyCheck`), and c so that the units' sum at the
    ///   finest level matches one probe of all of them together;
    /// - the spike-attention share from one probe with only attention spiking;
    /// - SOPs per unit and level from the dense model's sampled site inputs, encoded in Swift
    ///   (no forward pass);
    /// - greedy allocation by ΔSOP/ΔS under Σ S ≤ ln(1 + p/100), then a verification pass
    ///   on the calibration tokens and back-off while the measured change exceeds the budget.
    /// A few full probes at other levels check the noise model (`proxyCheck` in the report).
    /// All probes reuse one session (weights packed once).
    static func allocate(model: Model, options: ConversionOptions, budgetPercent p: Double, sequences: [[Int32]],
                         vScales: [Float], rows: [Int: [[Float]]], base: SpikeConfig,
                         progress: ((String) -> Void)?, probeProgress: ((Int, Int) -> Void)?) async throws(SpikeRunError) -> Allocation {
        let c = model.config
        let nSites = c.nLayer * 4 + 1
        let levels = options.budgetLevels
        let units = c.nLayer + 1  // blocks, then the head
        let probeK: Float = 4
        func sitesOf(unit u: Int) -> [Int] { u == c.nLayer ? [c.nLayer * 4] : (0..<4).map { u * 4 + $0 } }
        let ctx = sequences[0].count
        let tokens = sequences.flatMap { $0 }
        progress?("budget: dense reference")
        let denseSession = try Session(model: model, contextLength: ctx, batchSize: ctx, mode: .dense)
        let (reference, denseRun) = try await KLBase.record(session: denseSession, tokens: tokens, contextLength: ctx)
        let denseNLL = denseRun.meanNLL
        // SOPs per token of each unit and level, from the dense inputs.
        let kv = c.nHeadKV * c.headDim, qd = c.nHead * c.headDim
        let fanOut = [qd + 2 * kv, c.nEmbd, 2 * c.nFF, c.nEmbd]
        var SOP = [[Double]](repeating: [Double](repeating: 0, count: levels.count), count: units)
        for u in 0..<units {
            for (i, k) in levels.enumerated() {
                SOP[u][i] = sitesOf(unit: u).reduce(0.0) { acc, site in
                    let fo = site == c.nLayer * 4 ? c.nVocab : fanOut[site % 4]
                    return acc + spikesPerToken(rows[site] ?? [], k: k, encoding: options.encoding, tau: options.meanSite(k: k).tau) * Double(fo)
                }
            }
        }
        var S = [[Double]](repeating: [Double](repeating: 0, count: levels.count), count: units)
        var attention = 0.0
        var checks: [[Double]] = []
        var s4 = [Double](repeating: 0, count: units)
        var alpha = 2.0, additivity = 1.0
        var probe = base
        probe.sites = [SpikeSiteSetting](repeating: options.meanSite(k: probeK), count: nSites)
        probe.spikeAttention = false
        let session = try Session(model: model, contextLength: ctx, batchSize: ctx, mode: .spike(SpikeSetup(config: probe)))
        func probeKLD(_ sites: [SpikeSiteSetting]) async throws(SpikeRunError) -> Double {
            try await session.setSpikeSites(sites, encoding: options.encoding)
            return try await KLDivergence.compare(session: session, base: reference).0.meanKLD
        }
        let checkUnits = [0, c.nLayer]
        let total = units + (base.spikeAttention ? 1 : 0) + checkUnits.count * 2 + 1
        var done = 0
        if let given = options.budgetProbes {
            guard given.sensitivity.count == units, given.sensitivity.allSatisfy({ $0.count == levels.count }) else {
                throw .invalidArgument("--probes: expected \(units) units × \(levels.count) levels of sensitivity")
            }
            guard abs(given.denseNLL - denseNLL) <= 1e-9 * max(1, abs(denseNLL)) else {
                throw .invalidArgument(String(format: "--probes were measured on another model or calibration text (dense NLL %.9f, here %.9f)",
                                              given.denseNLL, denseNLL))
            }
            S = given.sensitivity
            progress?("budget: reusing \(units) units × \(levels.count) levels of probes")
        } else {
            for u in 0..<units {
                var sites = [SpikeSiteSetting](repeating: .dense, count: nSites)
                for s in sitesOf(unit: u) { sites[s] = options.meanSite(k: probeK) }
                s4[u] = max(1e-9, try await probeKLD(sites))
                done += 1
                probeProgress?(done, total)
            }
            // Fit the exponent of the level model to full probes at other levels.
            var logs: [(Double, Double)] = []
            for u in checkUnits {
                for k: Float in [2, 8] {
                    var sites = [SpikeSiteSetting](repeating: .dense, count: nSites)
                    for s in sitesOf(unit: u) { sites[s] = options.meanSite(k: k) }
                    let measured = try await probeKLD(sites)
                    checks.append([Double(u), Double(k), 0, measured])
                    if measured > 0 { logs.append((log(Double(probeK / k)), log(measured / s4[u]))) }
                    done += 1
                    probeProgress?(done, total)
                }
            }
            let sxx = logs.reduce(0) { $0 + $1.0 * $1.0 }, sxy = logs.reduce(0) { $0 + $1.0 * $1.1 }
            alpha = sxx > 0 ? min(2.5, max(0.5, sxy / sxx)) : 2
            for u in 0..<units {
                for (i, k) in levels.enumerated() { S[u][i] = s4[u] * pow(Double(probeK / k), alpha) }
            }
            for i in checks.indices {
                checks[i][2] = s4[Int(checks[i][0])] * pow(Double(probeK) / checks[i][1], alpha)
            }
            // Single-unit divergences do not add up (each also carries part of the dense
            // reference's own rounding): scale them so that their sum matches one measurement
            // of every unit at the finest level together.
            let together = try await probeKLD(Array(repeating: options.meanSite(k: levels[0]), count: nSites))
            let sum = S.reduce(0.0) { $0 + $1[0] }
            additivity = sum > 0 ? min(1, max(0.02, together / sum)) : 1
            for u in 0..<units { for i in levels.indices { S[u][i] *= additivity } }
            done += 1
            probeProgress?(done, total)
        }
        if base.spikeAttention {
            // Attention's share: every linear dense, QK and PV spiking (a session of its own).
            var att = base
            att.sites = [SpikeSiteSetting](repeating: .dense, count: nSites)
            let attSession = try Session(model: model, contextLength: ctx, batchSize: ctx,
                                         mode: .spike(SpikeSetup(config: att, vScales: vScales)))
            attention = try await KLDivergence.compare(session: attSession, base: reference).0.meanKLD
            done += 1
            probeProgress?(done, total)
        }
        let budget = log(1 + p / 100)
        var idx = [Int](repeating: 0, count: units)
        var predicted = attention + S.indices.reduce(0.0) { $0 + S[$1][0] }
        while true {
            var best: (Int, Double)?
            for u in 0..<units where idx[u] + 1 < levels.count {
                let dS = max(1e-9, S[u][idx[u] + 1] - S[u][idx[u]])
                let dSOP = SOP[u][idx[u]] - SOP[u][idx[u] + 1]
                guard predicted + dS <= budget, dSOP > 0 else { continue }
                if best == nil || dSOP / dS > best!.1 { best = (u, dSOP / dS) }
            }
            guard let (u, _) = best else { break }
            predicted += max(1e-9, S[u][idx[u] + 1] - S[u][idx[u]])
            idx[u] += 1
        }
        func config() -> SpikeConfig {
            var cfg = base
            var sites = [SpikeSiteSetting](repeating: options.meanSite(k: levels[0]), count: nSites)
            for u in 0..<units { for s in sitesOf(unit: u) { sites[s] = options.meanSite(k: levels[idx[u]]) } }
            cfg.sites = sites
            return cfg
        }
        var backoffs = 0
        var nll = denseNLL
        while true {
            let setup = SpikeSetup(config: config(), vScales: base.spikeAttention ? vScales : nil)
            nll = try await meanNLL(model: model, mode: .spike(setup), sequences: sequences).0
            progress?(String(format: "budget: verify: ppl change %+.2f%% (budget %.2f%%, predicted %+.2f%%), k per unit ",
                             100 * (exp(nll - denseNLL) - 1), p, 100 * (exp(predicted) - 1))
                      + idx.map { String(Int(levels[$0])) }.joined(separator: ","))
            if nll - denseNLL <= budget || backoffs >= 2 * units { break }
            // Raise the lowered unit with the highest S/SOP by one step.
            guard let u = (0..<units).filter({ idx[$0] > 0 }).max(by: {
                S[$0][idx[$0]] / max(1, SOP[$0][idx[$0]]) < S[$1][idx[$1]] / max(1, SOP[$1][idx[$1]])
            }) else { break }
            idx[u] -= 1
            backoffs += 1
        }
        progress?(String(format: "budget: level model S(k) = %.3f·S(4)·(4/k)^%.2f", additivity, alpha))
        return Allocation(sites: config().sites, sensitivity: S, sops: SOP, denseNLL: denseNLL, finalNLL: nll,
                          backoffs: backoffs, attentionKLD: attention, proxyCheck: checks, levelExponent: alpha,
                          additivity: additivity)
    }

    /// Calibrates, then writes the converted model atomically to `output`.
    public static func convert(model: Model, options: ConversionOptions, calibrationText: String,
                               provenance: [String: String] = [:], to output: String,
                               progress: ((String) -> Void)? = nil,
                               probeProgress: ((Int, Int) -> Void)? = nil,
                               writeProgress: ((Double) -> Void)? = nil) async throws(SpikeRunError) -> ConversionReport {
        var (setup, report) = try await calibrate(model: model, options: options, calibrationText: calibrationText,
                                                  provenance: provenance, progress: progress, probeProgress: probeProgress)
        progress?("writing \(output)")
        try SpikeModelWriter.write(source: model, setup: setup, to: output, progress: writeProgress)
        report.output = output
        return report
    }
}
