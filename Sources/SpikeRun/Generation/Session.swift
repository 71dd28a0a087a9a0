import Foundation
import Logging

/// One conversation's state over a shared `Model`: the KV cache and the tokens in it.
/// Generations run one at a time; a new prompt that starts with the cached tokens reuses them.
///
/// The actor runs on a thread of its own (``SessionExecutor``), never on Swift's cooperative
/// pool: a generation is one long synchronous loop, and on the pool it would hold one of its
/// few threads (two on a 2-core machine) for its whole length, starving the tasks that consume
/// the stream and with them the cancellation that dropping the stream sends.
public actor Session {
    public let model: Model
    public let contextLength: Int
    let engine: Engine
    /// Tokens whose keys and values are in the cache, in order.
    private(set) var cachedTokens: [Int32] = []
    private let logger = Logger(label: "spikerun.session")
    private let executor = SessionExecutor()
    /// The latest generation's control block, readable while it runs (tests).
    nonisolated let generations = GenerationMonitor()

    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

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

    deinit { executor.stop() }

    /// Forgets the cached tokens.
    public func reset() { cachedTokens = [] }

    /// Tokens of a prompt, as `generate` would feed them.
    public nonisolated func tokens(for prompt: Prompt) throws(SpikeRunError) -> [Int32] {
        try prompt.tokens(model: model)
    }

    /// Streams generated text, then one `.info` event. Cancelling the consuming task (or
    /// dropping the stream) stops generation within one token: at most one further token is
    /// evaluated after the stream's termination.
    public func generate(_ prompt: Prompt, parameters: GenerationParameters = .init())
        -> AsyncThrowingStream<GenerationEvent, any Error>
    {
        generate(prompt, parameters: parameters, pauseForCancellationAt: nil)
    }

    /// `generate`, with a test hook: once `pauseForCancellationAt` tokens are evaluated the run
    /// waits (at most 60 s) for its cancellation before going on, so that a test can cancel
    /// at a known point however late the machine schedules the consumer.
    func generate(_ prompt: Prompt, parameters: GenerationParameters, pauseForCancellationAt: Int?)
        -> AsyncThrowingStream<GenerationEvent, any Error>
    {
        let (stream, continuation) = AsyncThrowingStream<GenerationEvent, any Error>.makeStream()
        let control = GenerationControl(engine: engine, pauseAt: pauseForCancellationAt)
        generations.set(control)
        continuation.onTermination = { reason in
            // Runs synchronously where the stream ends: in the consumer when it drops the
            // stream, in `Task.cancel()`'s caller when the consuming task is cancelled.
            if case .cancelled = reason { control.cancel() }
        }
        Task { [self] in  // isolated to the session: runs on its thread, not the pool
            do {
                try run(prompt, parameters, continuation, control)
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
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

    /// nil when the evaluation was aborted (by a cancellation or `Engine.abort()`).
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
                     _ continuation: AsyncThrowingStream<GenerationEvent, any Error>.Continuation,
                     _ control: GenerationControl) throws {
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
        var reason = StopReason.length
        var logits: [Float] = []
        if !control.isCancelled, let l = try evalOrCancelled(Array(promptTokens[keep...]), at: keep) {
            logits = l
            cachedTokens = promptTokens
        } else {
            reason = .cancelled
        }
        let promptDone = DispatchTime.now().uptimeNanoseconds

        var detok = StreamingDetokenizer(tokenizer: tokenizer)
        var matcher = StopStringMatcher(stops: parameters.stop)
        var generated: [Int32] = []
        let limit = parameters.maxTokens ?? Int.max
        loop: while reason != .cancelled && generated.count < limit {
            control.pauseIfAsked()
            if control.isCancelled { reason = .cancelled; break }
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
            // A cancellation after this check aborts the evaluation, or (landing before the
            // evaluation clears the engine's abort flag) is seen at the top of the loop: at
            // most one token is evaluated after it.
            if control.isCancelled { reason = .cancelled; break }
            guard let l = try evalOrCancelled([next], at: cachedTokens.count) else {
                reason = .cancelled
                break
            }
            logits = l
            cachedTokens.append(next)
            control.didEvaluate()
        }
        if case .stopSequence = reason {} else {
            if case .emit(let rest) = matcher.append(detok.flush()), !rest.isEmpty {
                continuation.yield(.text(rest))
            }
            if case .emit(let rest) = matcher.drain(), !rest.isEmpty { continuation.yield(.text(rest)) }
        }
        let end = DispatchTime.now().uptimeNanoseconds
        let info = GenerationInfo(
            promptTokens: promptTokens.count, promptTokensEvaluated: promptTokens.count - keep,
            generatedTokens: generated.count,
            promptSeconds: Double(promptDone - start) / 1e9,
            generationSeconds: Double(end - promptDone) / 1e9,
            stopReason: reason, seed: seed, tokens: generated)
        control.finish(info)
        continuation.yield(.info(info))
    }
}

/// One generation's cancellation state, shared by the stream's termination handler and the
/// session's thread. The count of evaluated tokens and the cancellation flag change under one
/// lock, so the count at the moment of cancellation is exact.
final class GenerationControl: @unchecked Sendable {
    private let cond = NSCondition()
    private let engine: Engine
    // Guarded by `cond`:
    private var pauseAt: Int?
    private var cancelled = false
    private var evaluatedTokens = 0
    private var atCancellation: Int?
    private var result: GenerationInfo?

    init(engine: Engine, pauseAt: Int?) {
        self.engine = engine
        self.pauseAt = pauseAt
    }

    /// Stops the run: the flag for the loop and an abort for an evaluation under way.
    func cancel() {
        cond.lock()
        if !cancelled {
            cancelled = true
            atCancellation = evaluatedTokens
        }
        cond.broadcast()
        cond.unlock()
        engine.abort()
    }

    var isCancelled: Bool { cond.lock(); defer { cond.unlock() }; return cancelled }

    /// Generated tokens whose evaluation has completed (the prompt not counted).
    var evaluated: Int { cond.lock(); defer { cond.unlock() }; return evaluatedTokens }

    /// `evaluated` when the run was cancelled; nil if it was not.
    var evaluatedAtCancellation: Int? { cond.lock(); defer { cond.unlock() }; return atCancellation }

    /// The run's final statistics (also sent as `.info` unless the stream was dropped).
    var info: GenerationInfo? { cond.lock(); defer { cond.unlock() }; return result }

    func didEvaluate() { cond.lock(); evaluatedTokens += 1; cond.unlock() }

    func finish(_ info: GenerationInfo) { cond.lock(); result = info; cond.broadcast(); cond.unlock() }

    /// Waits until the run has finished (at most `timeout` seconds); its statistics.
    func waitForFinish(timeout: Double) -> GenerationInfo? {
        let deadline = Date(timeIntervalSinceNow: timeout)
        cond.lock()
        defer { cond.unlock() }
        while result == nil && cond.wait(until: deadline) {}
        return result
    }

    /// The test hook of `generate(_:parameters:pauseForCancellationAt:)`: one pause per run
    /// (a run that ignored its cancellation goes on after 60 s and fails the test, not hangs).
    func pauseIfAsked() {
        cond.lock()
        defer { cond.unlock() }
        guard let p = pauseAt, evaluatedTokens >= p else { return }
        pauseAt = nil
        let deadline = Date(timeIntervalSinceNow: 60)
        while !cancelled && cond.wait(until: deadline) {}
    }
}

/// The control block of a session's latest generation, readable from any thread.
final class GenerationMonitor: @unchecked Sendable {
    private let lock = NSLock()
    private var control: GenerationControl?

    func set(_ c: GenerationControl) { lock.lock(); control = c; lock.unlock() }

    var latest: GenerationControl? { lock.lock(); defer { lock.unlock() }; return control }
}

/// A serial executor with one thread of its own: a ``Session``'s isolated code (its
/// generation loops and evaluations) runs there, off Swift's cooperative pool, as
/// ``BatchScheduler``'s engine thread does. The thread ends when the session is released.
final class SessionExecutor: SerialExecutor, @unchecked Sendable {
    private let cond = NSCondition()
    // Guarded by `cond`:
    private var jobs: [UnownedJob] = []
    private var head = 0
    private var stopping = false

    init() {
        let t = Thread { [self] in loop() }  // holds the executor until stop()
        t.name = "spikerun-session"
        t.stackSize = 8 << 20
        t.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let j = UnownedJob(job)
        cond.lock()
        jobs.append(j)
        cond.signal()
        cond.unlock()
    }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor { UnownedSerialExecutor(ordinary: self) }

    /// Lets the thread end once the queued jobs have run.
    func stop() {
        cond.lock()
        stopping = true
        cond.signal()
        cond.unlock()
    }

    private func loop() {
        while true {
            cond.lock()
            while head == jobs.count && !stopping { cond.wait() }
            if head == jobs.count {
                cond.unlock()
                return
            }
            let job = jobs[head]
            head += 1
            if head == jobs.count {
                jobs.removeAll(keepingCapacity: true)
                head = 0
            }
            cond.unlock()
            job.runSynchronously(on: asUnownedSerialExecutor())
        }
    }
}
