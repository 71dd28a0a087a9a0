import Foundation
import Logging

/// One conversation's state over a shared `Model`: the KV cache and the tokens in it.
/// Generations run one at a time; a new prompt that starts with the cached tokens reuses them.
public actor Session {
    public let model: Model
    public let contextLength: Int
    let engine: Engine
    /// Tokens whose keys and values are in the cache, in order.
    private(set) var cachedTokens: [Int32] = []
    private let logger = Logger(label: "spikerun.session")

    /// - Parameters:
    ///   - contextLength: KV cache size in tokens; nil = the model's trained context, capped at 4096.
    ///   - batchSize: tokens per forward pass during prompt processing.
    ///   - mode: dense or spike-driven (default: as the model file says).
    public init(model: Model, contextLength: Int? = nil, batchSize: Int = 256, mode: RunMode = .model) throws(SpikeRunError) {
        let n = contextLength ?? min(model.config.contextLength, 4096)
        guard n > 0 else { throw .invalidArgument("context length must be positive, got \(n)") }
        self.model = model
        self.contextLength = n
        self.engine = try Engine(model: model, contextLength: n, batchSize: batchSize, mode: mode)
    }

    /// Forgets the cached tokens.
    public func reset() { cachedTokens = [] }

    /// Tokens of a prompt, as `generate` would feed them.
    public nonisolated func tokens(for prompt: Prompt) throws(SpikeRunError) -> [Int32] {
        try prompt.tokens(model: model)
    }

    /// Streams generated text, then one `.info` event. Cancelling the consuming task (or
    /// dropping the stream) stops generation within one token.
    public func generate(_ prompt: Prompt, parameters: GenerationParameters = .init())
        -> AsyncThrowingStream<GenerationEvent, any Error>
    {
        let (stream, continuation) = AsyncThrowingStream<GenerationEvent, any Error>.makeStream()
        let engine = self.engine
        let task = Task {
            do {
                try await self.run(prompt, parameters, continuation)  // actor hop
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { reason in
            if case .cancelled = reason {
                task.cancel()
                engine.abort()
            }
        }
        return stream
    }

    /// Logits of the last token of `tokens`, evaluated from an empty cache.
    public func logits(for tokens: [Int32]) throws(SpikeRunError) -> [Float] {
        cachedTokens = []
        let out = try engine.eval(tokens, at: 0)
        cachedTokens = tokens
        return out
    }

    /// Every position's logits (n × vocabulary), evaluated from an empty cache.
    public func allLogits(for tokens: [Int32]) throws(SpikeRunError) -> [Float] {
        cachedTokens = []
        let out = try engine.eval(tokens, at: 0, allLogits: true)
        cachedTokens = tokens
        return out
    }

    /// Evaluates `tokens` from an empty cache while `recorder` records their spike trains
    /// (the sites, layers and neurons of its plan); returns the last token's logits, or every
    /// token's (n × vocabulary) when `allLogits`. The tokens are registered with the recorder
    /// first, as belonging to `sentence` (an index from ``SpikeRecorder/addSentence(_:)``).
    /// Recording only reads the spike counts: the logits are identical to ``logits(for:)``'s.
    /// When the plan records the head input `H`, the head runs on every token (as with
    /// `allLogits`) so that `H` has one entry per token.
    /// The recorder is removed when the call returns.
    /// - Throws: `.unsupported` for a dense run (nothing spikes); a recorder error (e.g. a
    ///   count outside its steps) after the evaluation.
    public func record(_ tokens: [Int32], into recorder: SpikeRecorder, sentence: Int? = nil,
                       texts: [String]? = nil, allLogits: Bool = false) throws(SpikeRunError) -> [Float] {
        guard let spike = engine.spike else {
            throw .unsupported("recording spike trains needs a spike-driven model; this session runs dense")
        }
        guard !tokens.isEmpty else { throw .invalidArgument("nothing to evaluate") }
        try recorder.begin(tokens: tokens, sentence: sentence, texts: texts, nLayer: spike.nLayer,
                           sites: spike.siteSettings)
        // The head runs on every token only when every token's logits are wanted; recording
        // the head input H needs all of them (else H would get one token per evaluation).
        let full = allLogits || recorder.plan.records(layer: spike.nLayer, site: .H)
        spike.setRecorder(recorder)
        defer { spike.setRecorder(nil) }
        cachedTokens = []
        let out = try engine.eval(tokens, at: 0, allLogits: full)
        cachedTokens = tokens
        try recorder.end()
        return full && !allLogits ? Array(out.suffix(engine.vocabularySize)) : out
    }

    /// Spike counters since the last reset (empty for a dense run).
    public func spikeStatistics() -> [SpikeSiteStatistics] { engine.spike?.statistics() ?? [] }

    public func resetSpikeStatistics() { engine.spike?.resetStatistics() }

    /// Replaces the spike sites' encoder settings without re-packing weights (sensitivity probes).
    func setSpikeSites(_ sites: [SpikeSiteSetting], encoding: SpikeEncoding) throws(SpikeRunError) {
        guard let spike = engine.spike else { throw .unsupported("this session runs dense") }
        try spike.setSites(sites, encoding: encoding)
    }

    /// Whether linear layers run through the spike kernels.
    public nonisolated var isSpikeDriven: Bool { engine.spike != nil }

    /// Whether whole tokens run on the FPGA as the token program (one kernel launch per token).
    /// The spike counters (`spikeStatistics`) are then not collected: the device encodes.
    public nonisolated var fpgaTokenProgram: Bool { engine.fpgaTokenProgram }

    /// nil when the evaluation was aborted by a cancellation.
    private func evalOrCancelled(_ tokens: [Int32], at position: Int) throws(SpikeRunError) -> [Float]? {
        let result: Result<[Float], SpikeRunError>
        do { result = .success(try engine.eval(tokens, at: position)) } catch { result = .failure(error) }
        switch result {
        case .success(let l): return l
        case .failure(let e) where e.kind == .aborted: return nil
        case .failure(let e): throw e
        }
    }

    private func run(_ prompt: Prompt, _ parameters: GenerationParameters,
                     _ continuation: AsyncThrowingStream<GenerationEvent, any Error>.Continuation) throws {
        try parameters.validate()
        let promptTokens = try tokens(for: prompt)
        guard !promptTokens.isEmpty else { throw SpikeRunError.invalidArgument("the prompt is empty") }
        guard promptTokens.count < contextLength else {
            throw SpikeRunError(.contextFull,
                "prompt is \(promptTokens.count) tokens but the context holds \(contextLength); raise -c or shorten it")
        }
        let seed = parameters.seed ?? UInt64.random(in: 0...UInt64.max)
        var sampler = Sampler(parameters: parameters, seed: seed)
        let tokenizer = model.tokenizer

        // Reuse the cached prefix; always re-evaluate at least the last prompt token for its logits.
        var keep = 0
        while keep < min(cachedTokens.count, promptTokens.count - 1),
              cachedTokens[keep] == promptTokens[keep] { keep += 1 }
        cachedTokens.removeSubrange(keep...)
        let start = DispatchTime.now().uptimeNanoseconds
        var logits = try engine.eval(Array(promptTokens[keep...]), at: keep)
        cachedTokens = promptTokens
        let promptDone = DispatchTime.now().uptimeNanoseconds

        var detok = StreamingDetokenizer(tokenizer: tokenizer)
        var matcher = StopStringMatcher(stops: parameters.stop)
        var generated: [Int32] = []
        var reason = StopReason.length
        let limit = parameters.maxTokens ?? Int.max
        loop: while generated.count < limit {
            if Task.isCancelled { reason = .cancelled; break }
            let next = sampler.sample(logits, history: cachedTokens[...])
            if parameters.stopAtEndOfGeneration && tokenizer.isEndOfGeneration(next) {
                reason = .endOfGeneration
                break
            }
            generated.append(next)
            switch matcher.append(detok.append(next)) {
            case .emit(let s):
                if !s.isEmpty { continuation.yield(.text(s)) }
            case .stopped(let before, let stop):
                if !before.isEmpty { continuation.yield(.text(before)) }
                reason = .stopSequence(stop)
                break loop
            }
            if generated.count == limit { break }
            if cachedTokens.count >= contextLength { reason = .contextFull; break }
            guard let l = try evalOrCancelled([next], at: cachedTokens.count) else {
                reason = .cancelled
                break
            }
            logits = l
            cachedTokens.append(next)
        }
        if case .stopSequence = reason {} else {
            if case .emit(let rest) = matcher.append(detok.flush()), !rest.isEmpty {
                continuation.yield(.text(rest))
            }
            if case .emit(let rest) = matcher.drain(), !rest.isEmpty { continuation.yield(.text(rest)) }
        }
        let end = DispatchTime.now().uptimeNanoseconds
        continuation.yield(.info(GenerationInfo(
            promptTokens: promptTokens.count, promptTokensEvaluated: promptTokens.count - keep,
            generatedTokens: generated.count,
            promptSeconds: Double(promptDone - start) / 1e9,
            generationSeconds: Double(end - promptDone) / 1e9,
            stopReason: reason, seed: seed, tokens: generated)))
    }
}
