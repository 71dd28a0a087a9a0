import Foundation

/// Perplexity by llama-perplexity's method: the token stream is cut into chunks of
/// `contextLength` tokens, each chunk is evaluated from an empty cache, and only the second
/// half of each chunk is scored (so every scored token sees at least half a context).
public struct PerplexityResult: Sendable, Hashable, Codable {
    public var perplexity: Double
    /// Mean negative log-likelihood per scored token, in nats.
    public var meanNLL: Double
    /// Standard error of the mean NLL (as llama-perplexity prints).
    public var nllStandardError: Double
    public var tokensScored: Int
    public var chunks: Int
    public var contextLength: Int
    public var seconds: Double
    /// Per-chunk running perplexity, as llama-perplexity prints it after every chunk.
    public var runningPerplexity: [Double]
}

public enum Perplexity {
    /// - Parameters:
    ///   - maxChunks: score at most this many chunks (nil = all complete chunks).
    ///   - progress: called after each chunk with (chunks done, total).
    public static func evaluate(session: Session, text: String, contextLength: Int,
                                maxChunks: Int? = nil,
                                progress: (@Sendable (Int, Int, Double) -> Void)? = nil)
        async throws(SpikeRunError) -> PerplexityResult
    {
        let tokens = session.model.tokenizer.encode(text, addSpecialTokens: true, parseSpecial: false)
        return try await evaluate(session: session, tokens: tokens, contextLength: contextLength,
                                  maxChunks: maxChunks, progress: progress)
    }

    public static func evaluate(session: Session, tokens: [Int32], contextLength: Int,
                                maxChunks: Int? = nil,
                                progress: (@Sendable (Int, Int, Double) -> Void)? = nil)
        async throws(SpikeRunError) -> PerplexityResult
    {
        try await scorePositions(session: session, tokens: tokens, contextLength: contextLength,
                                 maxChunks: maxChunks, progress: progress) { _, _, _, _ in }
    }

    /// Chunks `tokens` as llama-perplexity does (the first token of each chunk replaced by BOS
    /// when the tokenizer adds one) and returns them, chunk after chunk.
    static func chunked(_ tokens: [Int32], contextLength: Int, maxChunks: Int?, tokenizer: Tokenizer)
        throws(SpikeRunError) -> [[Int32]]
    {
        guard contextLength >= 8 else { throw .invalidArgument("context size must be at least 8, got \(contextLength)") }
        var chunks = tokens.count / contextLength
        if let m = maxChunks { chunks = min(chunks, m) }
        guard chunks > 0 else {
            throw .invalidArgument("the text has \(tokens.count) tokens; at least \(contextLength) are needed for one chunk of -c \(contextLength)")
        }
        return (0..<chunks).map { c in
            var chunk = Array(tokens[(c * contextLength)..<((c + 1) * contextLength)])
            if tokenizer.addBOS, let bos = tokenizer.bosToken { chunk[0] = bos }
            return chunk
        }
    }

    /// The scoring loop shared by perplexity and KL divergence: evaluates every chunk from an
    /// empty cache and calls `body(index, logits, target, normalizer)` for each scored position
    /// (the second half of each chunk, `index` counting scored positions from 0).
    static func scorePositions(session: Session, tokens: [Int32], contextLength: Int, maxChunks: Int?,
                               progress: (@Sendable (Int, Int, Double) -> Void)?,
                               body: (Int, ArraySlice<Float>, Int, Normalizer) throws(SpikeRunError) -> Void)
        async throws(SpikeRunError) -> PerplexityResult
    {
        guard contextLength <= session.contextLength else {
            throw .invalidArgument("context size \(contextLength) exceeds the session's \(session.contextLength)")
        }
        let chunks = try chunked(tokens, contextLength: contextLength, maxChunks: maxChunks,
                                 tokenizer: session.model.tokenizer)
        let vocab = session.model.config.nVocab
        let first = contextLength / 2
        var nll = 0.0, nll2 = 0.0
        var count = 0
        var running: [Double] = []
        let start = Date()
        for (c, chunk) in chunks.enumerated() {
            let logits = try await session.allLogits(for: chunk)
            for j in first..<(contextLength - 1) {
                let row = logits[(j * vocab)..<((j + 1) * vocab)]
                let target = Int(chunk[j + 1])
                let norm = Normalizer(row)
                let v = -norm.logProbability(row[row.startIndex + target])
                try body(count, row, target, norm)
                nll += v
                nll2 += v * v
                count += 1
            }
            running.append(exp(nll / Double(count)))
            progress?(c + 1, chunks.count, running.last!)
        }
        let mean = nll / Double(count)
        let variance = max(nll2 / Double(count) - mean * mean, 0)
        return PerplexityResult(
            perplexity: exp(mean), meanNLL: mean,
            nllStandardError: count > 1 ? sqrt(variance / Double(count - 1)) : 0,
            tokensScored: count, chunks: chunks.count, contextLength: contextLength,
            seconds: Date().timeIntervalSince(start), runningPerplexity: running)
    }

    /// The softmax normalizer of a logit row: its maximum and log Σ exp(v − max) in double
    /// precision. Every log-probability of this module is `Double(v − max) − logSum`, so equal
    /// rows give bit-equal log-probabilities (a model compared with itself scores exactly 0 KL).
    struct Normalizer {
        var max: Float
        var logSum: Double
        init(_ row: ArraySlice<Float>) {
            var m = -Float.infinity
            for v in row where v > m { m = v }
            var sum = 0.0
            for v in row { sum += exp(Double(v - m)) }
            max = m
            logSum = log(sum)
        }
        func logProbability(_ logit: Float) -> Double { Double(logit - max) - logSum }
    }
}
