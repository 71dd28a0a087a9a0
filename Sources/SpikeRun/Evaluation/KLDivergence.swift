import Foundation

/// A base model's next-token distributions over a text: the reference of a KL-divergence
/// comparison (llama-perplexity's `--kl-divergence-base`).
///
/// For every scored position (llama-perplexity's chunking: the second half of each chunk) it
/// keeps the softmax normalizer, the logit of the true next token and the most likely token
/// exactly, and every logit as a 16-bit code of its distance below the row's maximum in steps
/// of 32/65535 nats (distances beyond 32 nats, probabilities below e^-32, saturate). The KL
/// divergence is computed between the two rows quantized the same way, so a model compared
/// with itself scores exactly 0, and the quantization moves it by O(step²). A top-k file would
/// be smaller, but lumping the tail misses real divergence: on the default model against its
/// Q4_1-head re-quantization, top-64 reported 23% and top-1024 6% less than the full rows.
public struct KLBase: Sendable, Equatable {
    /// Nats per code step: 16 bits over the 32 nats below the maximum.
    static let step = 32.0 / 65535.0
    public var vocabularySize: Int
    public var contextLength: Int
    /// The evaluated chunks (BOS already substituted), each `contextLength` tokens.
    public var chunks: [[Int32]]
    /// File name of the base model (for reports).
    public var modelName: String
    /// Per scored position.
    var maxLogit: [Float] = []
    var logSum: [Double] = []
    var targetLogit: [Float] = []
    var topID: [Int32] = []
    /// `positions × vocabularySize` codes (see `code(_:max:)`).
    var codes: [UInt16] = []

    public var positions: Int { maxLogit.count }
    static func scoredPerChunk(_ ctx: Int) -> Int { ctx - 1 - ctx / 2 }

    /// Distance of `logit` below the row maximum in `step`s, rounded half up, saturating.
    @inline(__always) static func code(_ logit: Float, max: Float) -> UInt16 {
        let c = (Double(max) - Double(logit)) / step + 0.5
        return c >= 65535 ? 65535 : UInt16(c)
    }

    /// Codes of a logit row into `out` (count = row.count); returns the first maximum's index.
    static func encode(_ row: ArraySlice<Float>, max: Float, into out: UnsafeMutableBufferPointer<UInt16>) -> Int {
        var top = -1
        for (i, v) in row.enumerated() {
            out[i] = code(v, max: max)
            if top < 0 && v == max { top = i }
        }
        return top
    }

    /// Evaluates `text` with `session`'s model and keeps its distributions.
    public static func record(session: Session, text: String, contextLength: Int, maxChunks: Int? = nil,
                              progress: (@Sendable (Int, Int, Double) -> Void)? = nil)
        async throws(SpikeRunError) -> (KLBase, PerplexityResult)
    {
        let tokens = session.model.tokenizer.encode(text, addSpecialTokens: true, parseSpecial: false)
        return try await record(session: session, tokens: tokens, contextLength: contextLength, maxChunks: maxChunks,
                                progress: progress)
    }

    public static func record(session: Session, tokens: [Int32], contextLength: Int, maxChunks: Int? = nil,
                              progress: (@Sendable (Int, Int, Double) -> Void)? = nil)
        async throws(SpikeRunError) -> (KLBase, PerplexityResult)
    {
        let vocab = session.model.config.nVocab
        var base = KLBase(vocabularySize: vocab, contextLength: contextLength,
                          chunks: try Perplexity.chunked(tokens, contextLength: contextLength, maxChunks: maxChunks,
                                                         tokenizer: session.model.tokenizer),
                          modelName: URL(fileURLWithPath: session.model.info.path).lastPathComponent)
        let n = base.chunks.count * scoredPerChunk(contextLength)
        base.codes = [UInt16](repeating: 0, count: n * vocab)
        let r = try await Perplexity.scorePositions(session: session, tokens: base.chunks.flatMap { $0 },
                                                    contextLength: contextLength, maxChunks: nil,
                                                    progress: progress) { i, row, target, norm in
            base.maxLogit.append(norm.max)
            base.logSum.append(norm.logSum)
            base.targetLogit.append(row[row.startIndex + target])
            let top = base.codes.withUnsafeMutableBufferPointer { c in
                encode(row, max: norm.max, into: UnsafeMutableBufferPointer(rebasing: c[(i * vocab)..<((i + 1) * vocab)]))
            }
            base.topID.append(Int32(top))
        }
        return (base, r)
    }

    // MARK: File format

    // Little-endian: "SRKLBAS2", u32 vocabulary, u32 context, u32 chunks, u32 name length,
    // name bytes, i32 tokens[chunks·context], then per scored position: f32 max logit,
    // f64 log-sum, f32 target logit, i32 top token, u16 codes[vocabulary].
    static let magic = Array("SRKLBAS2".utf8)
    static let headerBytes = 24

    /// Writes the base atomically (a temporary file in the same directory, then rename).
    public func write(to path: String) throws(SpikeRunError) {
        var d = Data()
        d.reserveCapacity(KLBase.headerBytes + 4096 + chunks.count * contextLength * 4 + positions * (20 + vocabularySize * 2))
        d.append(contentsOf: KLBase.magic)
        func u32(_ v: Int) { var x = UInt32(v).littleEndian; withUnsafeBytes(of: &x) { d.append(contentsOf: $0) } }
        u32(vocabularySize); u32(contextLength); u32(chunks.count)
        let name = Array(modelName.utf8.prefix(4096))
        u32(name.count)
        d.append(contentsOf: name)
        func raw<T>(_ a: some Collection<T>) { Array(a).withUnsafeBytes { d.append(contentsOf: $0) } }  // little-endian hosts
        for c in chunks { raw(c) }
        for p in 0..<positions {
            raw([maxLogit[p]]); raw([logSum[p]]); raw([targetLogit[p]]); raw([topID[p]])
            raw(codes[(p * vocabularySize)..<((p + 1) * vocabularySize)])
        }
        try AnalysisIO.writeAtomically(d, to: URL(fileURLWithPath: path))
    }

    /// Reads a base file, checking every size and value against the header (untrusted input).
    public static func read(from path: String) throws(SpikeRunError) -> KLBase {
        let data = try AnalysisIO.read(URL(fileURLWithPath: path), mapped: true)
        let parsed: Result<KLBase, SpikeRunError> = data.withUnsafeBytes { raw in
            do throws(SpikeRunError) { return .success(try parse(raw, path: path)) } catch { return .failure(error) }
        }
        return try parsed.get()
    }

    static func parse(_ raw: UnsafeRawBufferPointer, path: String) throws(SpikeRunError) -> KLBase {
        func bad(_ why: String) -> SpikeRunError { .format("'\(path)' is not a KL-divergence base file: \(why)") }
        do {
            guard raw.count >= headerBytes, Array(raw[0..<8]) == magic else { throw bad("wrong magic") }
            var off = 8
            func u32() -> Int {
                defer { off += 4 }
                return Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: off, as: UInt32.self)))
            }
            let vocab = u32(), ctx = u32(), nChunks = u32(), nameLen = u32()
            guard vocab >= 2, vocab <= 1 << 24, ctx >= 8, ctx <= 1 << 20, nChunks >= 1, nChunks <= 1 << 20, nameLen <= 4096 else {
                throw bad("header out of range (vocabulary \(vocab), context \(ctx), chunks \(nChunks))")
            }
            let positions = nChunks * scoredPerChunk(ctx)
            let expected = headerBytes + nameLen + nChunks * ctx * 4 + positions * (20 + vocab * 2)
            guard raw.count == expected else { throw bad("\(raw.count) bytes, the header implies \(expected)") }
            let name = String(decoding: raw[off..<(off + nameLen)], as: UTF8.self)
            off += nameLen
            func load<T>(_: T.Type) -> T {
                defer { off += MemoryLayout<T>.size }
                return raw.loadUnaligned(fromByteOffset: off, as: T.self)
            }
            var base = KLBase(vocabularySize: vocab, contextLength: ctx, chunks: [], modelName: name)
            for _ in 0..<nChunks {
                let c = (0..<ctx).map { _ in load(Int32.self) }
                guard c.allSatisfy({ $0 >= 0 && Int($0) < vocab }) else { throw bad("token id outside the vocabulary") }
                base.chunks.append(c)
            }
            base.codes = [UInt16](repeating: 0, count: positions * vocab)
            for p in 0..<positions {
                let m = load(Float.self), ls = load(Double.self), t = load(Float.self), top = load(Int32.self)
                guard m.isFinite, ls.isFinite, ls >= 0, t.isFinite, t <= m, top >= 0, Int(top) < vocab else {
                    throw bad("position \(p): values out of range")
                }
                base.codes.withUnsafeMutableBytes { dst in
                    dst.baseAddress!.advanced(by: p * vocab * 2).copyMemory(from: raw.baseAddress! + off, byteCount: vocab * 2)
                }
                off += vocab * 2
                guard base.codes[p * vocab + Int(top)] == 0 else { throw bad("position \(p): the top token is not at the maximum") }
                base.maxLogit.append(m); base.logSum.append(ls); base.targetLogit.append(t); base.topID.append(top)
            }
            return base
        }
    }
}

/// How far a model's next-token distributions are from a base model's on the same tokens
/// (llama-perplexity's `--kl-divergence` figures), with paired statistics.
public struct KLDivergenceResult: Sendable, Codable, Equatable {
    public var positions: Int
    public var baseModel: String
    /// KL(base ‖ model) per position, nats.
    public var meanKLD: Double
    public var kldStandardError: Double
    public var medianKLD: Double
    public var p90KLD: Double
    public var p99KLD: Double
    public var p999KLD: Double
    public var maxKLD: Double
    public var minKLD: Double
    /// Share of positions whose most likely token is the base's, percent (± its standard error).
    public var top1AgreementPercent: Double
    public var top1StandardErrorPercent: Double
    /// Mean of log q(t) − log p(t) for the base's most likely token t (nats; ≤ 0 means the model
    /// is less sure of the base's choice).
    public var meanTopLogProbDelta: Double
    /// RMS of q(y) − p(y) for the true next token y, percent (llama-perplexity's "RMS Δp").
    public var rmsProbabilityDeltaPercent: Double
    public var basePerplexity: Double
    public var perplexity: Double
    /// Paired statistics of d = NLL_model − NLL_base per position: mean (= ln PPL ratio) and
    /// its standard error; the ratio and its 95% interval are exp(mean ± 1.96 se).
    public var meanLogPPLRatio: Double
    public var logPPLRatioStandardError: Double
    public var pplRatio: Double
    public var pplRatioLow95: Double
    public var pplRatioHigh95: Double

    enum CodingKeys: String, CodingKey {
        case positions, baseModel = "base_model", meanKLD = "mean_kld",
             kldStandardError = "kld_stderr", medianKLD = "median_kld", p90KLD = "p90_kld", p99KLD = "p99_kld",
             p999KLD = "p99_9_kld", maxKLD = "max_kld", minKLD = "min_kld", top1AgreementPercent = "top1_agreement_pct",
             top1StandardErrorPercent = "top1_agreement_stderr_pct", meanTopLogProbDelta = "mean_top_logprob_delta",
             rmsProbabilityDeltaPercent = "rms_dp_pct", basePerplexity = "ppl_base", perplexity = "ppl",
             meanLogPPLRatio = "mean_ln_ppl_ratio", logPPLRatioStandardError = "ln_ppl_ratio_stderr",
             pplRatio = "ppl_ratio", pplRatioLow95 = "ppl_ratio_ci95_low", pplRatioHigh95 = "ppl_ratio_ci95_high"
    }

    /// llama-perplexity's percentile: linear interpolation between sorted neighbours.
    static func percentile(_ sorted: [Double], _ f: Double) -> Double {
        if f <= 0 { return sorted[0] }
        if f >= 1 { return sorted[sorted.count - 1] }
        let p = f * Double(sorted.count - 1)
        let i = Int(p)
        let w = p - Double(i)
        return (1 - w) * sorted[i] + w * sorted[min(i + 1, sorted.count - 1)]
    }
}

public enum KLDivergence {
    /// exp(−c·step) for every code: the unnormalized probabilities of a quantized row.
    static let weights: [Double] = (0...65535).map { exp(-Double($0) * KLBase.step) }

    /// KL(P̂ ‖ Q̂) between two rows of codes: with p̂_i = w[c_i]/Z_p and log p̂_i − log q̂_i =
    /// (d_i − c_i)·step + log Z_q − log Z_p (d: the model's codes). Equal rows give exactly 0.
    static func divergence(base c: UnsafeBufferPointer<UInt16>, model d: UnsafeBufferPointer<UInt16>) -> Double {
        var zp = 0.0, zq = 0.0, s = 0.0
        weights.withUnsafeBufferPointer { w in
            for i in 0..<c.count {
                let wp = w[Int(c[i])]
                zp += wp
                zq += w[Int(d[i])]
                s += wp * Double(Int(d[i]) - Int(c[i]))
            }
        }
        return s * KLBase.step / zp + (log(zq) - log(zp))
    }

    /// Evaluates `session`'s model on the base's tokens and compares its distributions with
    /// the base's, position by position.
    public static func compare(session: Session, base: KLBase,
                               progress: (@Sendable (Int, Int, Double) -> Void)? = nil)
        async throws(SpikeRunError) -> (KLDivergenceResult, PerplexityResult)
    {
        let vocab = session.model.config.nVocab
        guard vocab == base.vocabularySize else {
            throw .invalidArgument("the base has a vocabulary of \(base.vocabularySize) tokens, this model \(vocab): they cannot be compared")
        }
        var kld = [Double](), dNLL = [Double]()
        kld.reserveCapacity(base.positions)
        dNLL.reserveCapacity(base.positions)
        var same = 0
        var topDelta = 0.0, dp2 = 0.0, nllBase = 0.0
        var mine = [UInt16](repeating: 0, count: vocab)
        let r = try await Perplexity.scorePositions(session: session, tokens: base.chunks.flatMap { $0 },
                                                    contextLength: base.contextLength, maxChunks: nil,
                                                    progress: progress) { (i, row, target, q) throws(SpikeRunError) in
            guard i < base.positions else { throw .invalidArgument("the model scored more positions than the base holds") }
            let argmax = mine.withUnsafeMutableBufferPointer { KLBase.encode(row, max: q.max, into: $0) }
            let kl = base.codes.withUnsafeBufferPointer { c in
                mine.withUnsafeBufferPointer { d in
                    divergence(base: UnsafeBufferPointer(rebasing: c[(i * vocab)..<((i + 1) * vocab)]), model: d)
                }
            }
            kld.append(kl)
            let top = Int(base.topID[i])
            if argmax == top { same += 1 }
            let pLog = base.logSum[i], pMax = base.maxLogit[i]
            topDelta += q.logProbability(row[row.startIndex + top]) + pLog
            let nb = -(Double(base.targetLogit[i] - pMax) - pLog)
            let nq = -q.logProbability(row[row.startIndex + target])
            nllBase += nb
            dNLL.append(nq - nb)
            let dp = exp(-nq) - exp(-nb)
            dp2 += dp * dp
        }
        let n = kld.count
        guard n == base.positions, n >= 2 else {
            throw .invalidArgument("scored \(n) positions, the base holds \(base.positions)")
        }
        func meanAndSE(_ a: [Double]) -> (Double, Double) {
            let m = a.reduce(0, +) / Double(a.count)
            let v = a.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(a.count - 1)
            return (m, sqrt(v / Double(a.count)))
        }
        let (mk, sk) = meanAndSE(kld)
        let (md, sd) = meanAndSE(dNLL)
        let sorted = kld.sorted()
        let median = n % 2 == 0 ? 0.5 * (sorted[n / 2] + sorted[n / 2 - 1]) : sorted[n / 2]
        let agree = Double(same) / Double(n)
        let result = KLDivergenceResult(
            positions: n, baseModel: base.modelName,
            meanKLD: mk, kldStandardError: sk, medianKLD: median,
            p90KLD: KLDivergenceResult.percentile(sorted, 0.9), p99KLD: KLDivergenceResult.percentile(sorted, 0.99),
            p999KLD: KLDivergenceResult.percentile(sorted, 0.999), maxKLD: sorted[n - 1], minKLD: sorted[0],
            top1AgreementPercent: 100 * agree,
            top1StandardErrorPercent: 100 * sqrt(agree * (1 - agree) / Double(n - 1)),
            meanTopLogProbDelta: topDelta / Double(n), rmsProbabilityDeltaPercent: 100 * sqrt(dp2 / Double(n)),
            basePerplexity: exp(nllBase / Double(n)), perplexity: r.perplexity,
            meanLogPPLRatio: md, logPPLRatioStandardError: sd, pplRatio: exp(md),
            pplRatioLow95: exp(md - 1.96 * sd), pplRatioHigh95: exp(md + 1.96 * sd))
        return (result, r)
    }
}
