import CSpikeRun
import Foundation
import Logging

/// Serves many generations at once from one model with continuous batching.
///
/// The scheduler owns `slots` sequences, each with a KV cache region of `contextLength`
/// tokens, and one engine thread of its own (never Swift's cooperative pool). Every step runs
/// one forward pass over all active slots — the next prefill chunk of newly admitted prompts
/// and one decode token of every other slot — so each weight is read once per step for every
/// user, on the dense and the spike path alike. Attention runs per sequence on its own cache.
///
/// With greedy decoding a request produces exactly the tokens a fresh ``Session`` produces for
/// the same prompt when the prompt fits in one of its batches (llama.cpp's case too), whatever
/// the chunking, the other requests in the step and the prefix reused: linear layers compute
/// every token row the same way whatever the batch, and attention uses the kernel a lone
/// evaluation of the whole prompt (prompt tokens) or of one token (decode) picks.
///
/// Requests wait in a bounded queue when every slot is busy; ``submit(_:parameters:)`` throws
/// ``BatchScheduler/QueueFull`` beyond it. Dropping or cancelling a request's stream frees its
/// slot within one step. A new prompt goes to the free slot whose cached tokens share the
/// longest prefix with it, and that prefix is not evaluated again.
public final class BatchScheduler: @unchecked Sendable {
    /// Thrown by `submit` when every slot is busy and the queue is full.
    public struct QueueFull: Error, Sendable, CustomStringConvertible {
        public let queued: Int
        public var description: String { "all slots are busy and \(queued) requests are queued" }
    }

    /// A point-in-time view of the scheduler, for metrics endpoints.
    public struct Metrics: Sendable {
        /// Requests generating (holding a slot).
        public var running: Int
        /// Requests waiting for a slot.
        public var queued: Int
        public var slots: Int
        public var contextLength: Int
        /// Tokens held in each slot's KV cache region.
        public var slotTokens: [Int]
        /// Whether each slot is serving a request.
        public var slotBusy: [Bool]
        /// Prompt tokens of finished and running requests (all of them, reused or not).
        public var promptTokens: Int
        /// Prompt tokens actually evaluated (the rest came from a slot's cache).
        public var promptTokensEvaluated: Int
        public var generatedTokens: Int
        public var requestsFinished: Int
        public var requestsCancelled: Int
        /// Forward passes run, and the tokens they carried.
        public var steps: Int
        public var stepTokens: Int
        /// Seconds the engine thread spent in forward passes and sampling.
        public var busySeconds: Double
    }

    public let model: Model
    public let slots: Int
    public let contextLength: Int
    /// Prompt tokens per sequence and step (prompts are split into chunks of this size).
    public let prefillChunk: Int
    public let queueLimit: Int
    /// Whether linear layers run through the spike kernels.
    public var isSpikeDriven: Bool { engine.spike != nil }

    let engine: Engine
    private let logger = Logger(label: "spikerun.scheduler")
    private let cond = NSCondition()
    // Guarded by `cond`:
    private var queue: [Request] = []
    private var slotState: [Slot]
    private var stats = Metrics(running: 0, queued: 0, slots: 0, contextLength: 0, slotTokens: [],
                                slotBusy: [], promptTokens: 0, promptTokensEvaluated: 0,
                                generatedTokens: 0, requestsFinished: 0, requestsCancelled: 0,
                                steps: 0, stepTokens: 0, busySeconds: 0)
    private var stopping = false
    private var thread: Thread?

    /// - Parameters:
    ///   - slots: sequences decoded together (llama-server's `--parallel`).
    ///   - contextLength: KV cache tokens per slot; nil = the model's, capped at 4096.
    ///   - prefillChunk: prompt tokens per sequence and step.
    ///   - queueLimit: requests that may wait for a slot.
    ///   - mode: dense or spike-driven (default: as the model file says).
    public init(model: Model, slots: Int, contextLength: Int? = nil, prefillChunk: Int = 256,
                queueLimit: Int = 64, mode: RunMode = .model) throws(SpikeRunError) {
        let n = contextLength ?? min(model.config.contextLength, 4096)
        guard slots >= 1 else { throw .invalidArgument("slots must be >= 1, got \(slots)") }
        guard n > 1 else { throw .invalidArgument("context length must be > 1, got \(n)") }
        guard prefillChunk >= 1 else { throw .invalidArgument("prefill chunk must be >= 1") }
        guard queueLimit >= 0 else { throw .invalidArgument("queue limit must be >= 0") }
        self.model = model
        self.slots = slots
        self.contextLength = n
        self.prefillChunk = min(prefillChunk, n)
        self.queueLimit = queueLimit
        // A step holds one decode token per slot plus at least one whole prefill chunk.
        self.engine = try Engine(model: model, contextLength: n, batchSize: slots + self.prefillChunk,
                                 mode: mode, sequences: slots)
        self.slotState = (0..<slots).map { Slot(index: $0) }
        let t = Thread { self.loop() }  // holds the scheduler until shutdown()
        t.name = "spikerun-scheduler"
        t.stackSize = 8 << 20
        self.thread = t
        t.start()
    }

    /// Stops the engine thread after the current step; running and queued requests end with
    /// `.cancelled`. The thread keeps the scheduler alive until this is called.
    public func shutdown() {
        cond.lock()
        stopping = true
        cond.broadcast()
        while thread != nil { cond.wait() }
        cond.unlock()
    }

    /// Queues a generation. Events are those of ``Session/generate(_:parameters:)``: text
    /// pieces, then one `.info`. Dropping the stream or cancelling its consumer cancels the
    /// request within one step.
    /// - Throws: ``SpikeRunError`` for invalid parameters, an empty or too long prompt;
    ///   ``QueueFull`` when no slot is free and the queue is full.
    public func submit(_ prompt: Prompt, parameters: GenerationParameters = .init()) throws
        -> AsyncThrowingStream<GenerationEvent, any Error>
    {
        try parameters.validate()
        let tokens = try prompt.tokens(model: model)
        guard !tokens.isEmpty else { throw SpikeRunError.invalidArgument("the prompt is empty") }
        let vocab = model.config.nVocab
        if let bad = tokens.first(where: { $0 < 0 || Int($0) >= vocab }) {
            throw SpikeRunError.invalidArgument("token id \(bad) is outside the vocabulary (0..<\(vocab))")
        }
        guard tokens.count < contextLength else {
            throw SpikeRunError(.contextFull,
                "prompt is \(tokens.count) tokens but a slot's context holds \(contextLength); raise -c or shorten it")
        }
        let (stream, continuation) = AsyncThrowingStream<GenerationEvent, any Error>.makeStream()
        let request = Request(tokens: tokens, parameters: parameters, tokenizer: model.tokenizer,
                              continuation: continuation)
        cond.lock()
        defer { cond.unlock() }
        guard !stopping else { throw SpikeRunError.invalidArgument("the scheduler is shut down") }
        // Requests the free slots will take at the next step do not count against the bound.
        let free = slotState.filter { $0.request == nil }.count
        if queue.count >= free + queueLimit { throw QueueFull(queued: queue.count) }
        queue.append(request)
        continuation.onTermination = { [weak self] reason in
            guard case .cancelled = reason, let self else { return }
            self.cond.lock()
            request.cancelled = true
            self.cond.broadcast()
            self.cond.unlock()
        }
        cond.broadcast()
        return stream
    }

    /// A snapshot of the counters and slots.
    public func metrics() -> Metrics {
        cond.lock()
        defer { cond.unlock() }
        var m = stats
        m.slots = slots
        m.contextLength = contextLength
        m.queued = queue.count
        m.running = slotState.filter { $0.request != nil }.count
        m.slotTokens = slotState.map { $0.cached.count }
        m.slotBusy = slotState.map { $0.request != nil }
        return m
    }

    // MARK: - Engine thread

    final class Request: @unchecked Sendable {  // fields guarded as marked
        let tokens: [Int32]
        let parameters: GenerationParameters
        let continuation: AsyncThrowingStream<GenerationEvent, any Error>.Continuation
        var cancelled = false  // guarded by the scheduler's lock
        // Engine thread only:
        var sampler: Sampler
        let seed: UInt64
        var detok: StreamingDetokenizer
        var matcher: StopStringMatcher
        var generated: [Int32] = []
        var reused = 0
        var pending: [Int32] = []      // tokens to evaluate next
        var chunkEnd = 0               // prompt index where the current prefill chunk ends
        var promptIndex = 0            // prompt tokens evaluated (or reused) so far
        var start: UInt64 = 0
        var promptDone: UInt64 = 0

        init(tokens: [Int32], parameters: GenerationParameters, tokenizer: Tokenizer,
             continuation: AsyncThrowingStream<GenerationEvent, any Error>.Continuation) {
            self.tokens = tokens
            self.parameters = parameters
            self.continuation = continuation
            self.seed = parameters.seed ?? UInt64.random(in: 0...UInt64.max)
            self.sampler = Sampler(parameters: parameters, seed: seed)
            self.detok = StreamingDetokenizer(tokenizer: tokenizer)
            self.matcher = StopStringMatcher(stops: parameters.stop)
        }
    }

    struct Slot {
        let index: Int
        var request: Request?
        /// Tokens whose keys and values are in this slot's cache region, in order.
        var cached: [Int32] = []
        init(index: Int) { self.index = index }
    }

    private func loop() {
        while true {
            cond.lock()
            // Drop cancelled requests, admit queued ones, wait while idle.
            while true {
                reapCancelled()
                admit()
                if stopping || slotState.contains(where: { $0.request != nil }) { break }
                cond.wait()
            }
            if stopping {
                for i in slotState.indices {
                    if let r = slotState[i].request { finish(r, slot: i, reason: .cancelled) }
                }
                for r in queue { r.continuation.finish(throwing: CancellationError()) }
                queue.removeAll()
                thread = nil
                cond.broadcast()
                cond.unlock()
                return
            }
            let active = slotState.compactMap { s in s.request.map { (s.index, $0) } }
            cond.unlock()
            step(active)
        }
    }

    /// Under the lock: finishes cancelled requests and frees their slots.
    private func reapCancelled() {
        for i in slotState.indices {
            if let r = slotState[i].request, r.cancelled { finish(r, slot: i, reason: .cancelled) }
        }
        queue.removeAll { r in
            if r.cancelled {
                r.continuation.finish(throwing: CancellationError())
                stats.requestsCancelled += 1
            }
            return r.cancelled
        }
    }

    /// Under the lock: moves queued requests into free slots, preferring the slot whose cache
    /// shares the longest prefix with the prompt.
    private func admit() {
        while !queue.isEmpty {
            let free = slotState.indices.filter { slotState[$0].request == nil }
            guard !free.isEmpty else { return }
            let r = queue.removeFirst()
            var best = free[0], bestKeep = -1
            for i in free {
                let c = slotState[i].cached
                var keep = 0
                let limit = min(c.count, r.tokens.count - 1)  // re-evaluate the last prompt token
                while keep < limit, c[keep] == r.tokens[keep] { keep += 1 }
                if keep > bestKeep { best = i; bestKeep = keep }
            }
            slotState[best].cached.removeSubrange(bestKeep...)
            r.reused = bestKeep
            r.promptIndex = bestKeep
            r.start = DispatchTime.now().uptimeNanoseconds
            slotState[best].request = r
            stats.promptTokens += r.tokens.count
            stats.promptTokensEvaluated += r.tokens.count - bestKeep
        }
    }

    /// Under the lock: ends a request's stream with its statistics and frees the slot.
    private func finish(_ r: Request, slot: Int, reason: StopReason) {
        if case .stopSequence = reason {} else {
            if case .emit(let rest) = r.matcher.append(r.detok.flush()), !rest.isEmpty {
                r.continuation.yield(.text(rest))
            }
            if case .emit(let rest) = r.matcher.drain(), !rest.isEmpty { r.continuation.yield(.text(rest)) }
        }
        let end = DispatchTime.now().uptimeNanoseconds
        let promptDone = r.promptDone > 0 ? r.promptDone : end
        r.continuation.yield(.info(GenerationInfo(
            promptTokens: r.tokens.count, promptTokensEvaluated: r.tokens.count - r.reused,
            generatedTokens: r.generated.count,
            promptSeconds: Double(promptDone - r.start) / 1e9,
            generationSeconds: Double(end - promptDone) / 1e9,
            stopReason: reason, seed: r.seed, tokens: r.generated)))
        r.continuation.finish()
        slotState[slot].request = nil
        if case .cancelled = reason { stats.requestsCancelled += 1 } else { stats.requestsFinished += 1 }
    }

    /// One forward pass over every active slot, then sampling.
    private func step(_ active: [(Int, Request)]) {
        let t0 = DispatchTime.now().uptimeNanoseconds
        var steps: [Engine.SequenceStep] = []
        var members: [(Int, Request)] = []
        var budget = engine.batchSize
        // Decode tokens first (one per slot), then whole prefill chunks while they fit.
        cond.lock()
        let cachedCounts = active.map { slotState[$0.0].cached.count }
        cond.unlock()
        for (k, (slot, r)) in active.enumerated() where r.promptIndex >= r.tokens.count {
            steps.append(.init(sequence: slot, position: cachedCounts[k], tokens: r.pending, wantsLogits: true,
                               kernelTokens: 1))
            members.append((slot, r))
            budget -= r.pending.count
        }
        for (k, (slot, r)) in active.enumerated() where r.promptIndex < r.tokens.count {
            let end = min(r.promptIndex + prefillChunk, r.tokens.count)
            let chunk = Array(r.tokens[r.promptIndex..<end])
            guard chunk.count <= budget else { continue }
            budget -= chunk.count
            r.chunkEnd = end
            steps.append(.init(sequence: slot, position: cachedCounts[k], tokens: chunk,
                               wantsLogits: end == r.tokens.count, kernelTokens: r.tokens.count))
            members.append((slot, r))
        }
        let result: Result<[[Float]], SpikeRunError>
        do { result = .success(try engine.evalSequences(steps)) } catch { result = .failure(error) }

        cond.lock()
        defer {
            stats.busySeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            cond.unlock()
        }
        stats.steps += 1
        stats.stepTokens += steps.reduce(0) { $0 + $1.tokens.count }
        let logits: [[Float]]
        switch result {
        case .success(let l): logits = l
        case .failure(let error):
            logger.error("forward pass failed: \(error)")
            for (slot, r) in members {
                slotState[slot].cached = []   // the region's contents are unknown
                slotState[slot].request = nil
                r.continuation.finish(throwing: error)
                stats.requestsFinished += 1
            }
            return
        }
        let tokenizer = model.tokenizer
        for (i, (slot, r)) in members.enumerated() {
            slotState[slot].cached += steps[i].tokens
            if r.promptIndex < r.tokens.count {
                r.promptIndex = r.chunkEnd
                if r.promptIndex < r.tokens.count { continue }
                r.promptDone = DispatchTime.now().uptimeNanoseconds
            }
            if r.cancelled { finish(r, slot: slot, reason: .cancelled); continue }
            // As Session.run: sample, stop at end-of-generation, a stop string, the limit or a
            // full context; otherwise the token is evaluated in the next step.
            let limit = r.parameters.maxTokens ?? Int.max
            if r.generated.count >= limit { finish(r, slot: slot, reason: .length); continue }
            let next = r.sampler.sample(logits[i], history: slotState[slot].cached[...])
            if r.parameters.stopAtEndOfGeneration && tokenizer.isEndOfGeneration(next) {
                finish(r, slot: slot, reason: .endOfGeneration)
                continue
            }
            r.generated.append(next)
            stats.generatedTokens += 1
            switch r.matcher.append(r.detok.append(next)) {
            case .emit(let s):
                if !s.isEmpty { r.continuation.yield(.text(s)) }
            case .stopped(let before, let stop):
                if !before.isEmpty { r.continuation.yield(.text(before)) }
                finish(r, slot: slot, reason: .stopSequence(stop))
                continue
            }
            if r.generated.count == limit { finish(r, slot: slot, reason: .length); continue }
            if slotState[slot].cached.count >= contextLength {
                finish(r, slot: slot, reason: .contextFull)
                continue
            }
            r.pending = [next]
        }
    }
}

extension Prompt {
    /// Tokens of the prompt as `Session.generate` and the batch scheduler feed them.
    func tokens(model: Model) throws(SpikeRunError) -> [Int32] {
        switch self {
        case .text(let s): return model.tokenizer.encode(s, addSpecialTokens: true, parseSpecial: true)
        case .tokens(let t): return t
        case .chat(let messages):
            let text = try model.tokenizer.applyChatTemplate(messages, addGenerationPrompt: true)
            return model.tokenizer.encode(text, addSpecialTokens: true, parseSpecial: true)
        }
    }
}
