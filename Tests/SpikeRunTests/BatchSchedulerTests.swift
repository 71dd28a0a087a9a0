import Foundation
import Testing
@testable import SpikeRun

/// Continuous batching against one-at-a-time generation on the default model.
@Suite("BatchScheduler", .serialized)
struct BatchSchedulerTests {
    static let prompts: [Prompt] = [
        .chat([.user("What is the capital of France?")]),
        .chat([.user("Write a haiku about spikes and neurons.")]),
        .text("The quick brown fox"),
        .chat([.system("You are terse."), .user("List three prime numbers.")]),
    ]

    /// Greedy tokens of each prompt, each generated alone by a fresh Session (the prompt in
    /// one batch).
    static func sequential(_ model: Model, _ prompts: [Prompt], maxTokens: Int, mode: RunMode) async throws
        -> [[Int32]]
    {
        var out: [[Int32]] = []
        for p in prompts {
            let session = try Session(model: model, contextLength: 256, batchSize: 256, mode: mode)
            var tokens: [Int32] = []
            for try await e in await session.generate(p, parameters: .init(maxTokens: maxTokens, temperature: 0)) {
                if case .info(let i) = e { tokens = i.tokens }
            }
            out.append(tokens)
        }
        return out
    }

    /// Every prompt submitted at once (more prompts than slots: some wait, then prefill while
    /// the others decode).
    static func batched(_ scheduler: BatchScheduler, _ prompts: [Prompt], maxTokens: Int) async throws
        -> [(tokens: [Int32], text: String)]
    {
        let streams = try prompts.map {
            try scheduler.submit($0, parameters: .init(maxTokens: maxTokens, temperature: 0))
        }
        return try await withThrowingTaskGroup(of: (Int, [Int32], String).self) { group in
            for (i, s) in streams.enumerated() {
                group.addTask {
                    var tokens: [Int32] = [], text = ""
                    for try await e in s {
                        switch e {
                        case .text(let t): text += t
                        case .info(let info): tokens = info.tokens
                        }
                    }
                    return (i, tokens, text)
                }
            }
            var out = [([Int32], String)](repeating: ([], ""), count: streams.count)
            for try await (i, t, s) in group { out[i] = (t, s) }
            return out.map { (tokens: $0.0, text: $0.1) }
        }
    }

    @Test("dense: batched greedy tokens equal one-at-a-time generation")
    func denseMatchesSequential() async throws {
        let model = try SharedModel.get()
        let chunk = 8   // prompts span several chunks: prefill steps interleave with decode
        let expected = try await Self.sequential(model, Self.prompts, maxTokens: 20, mode: .dense)
        let scheduler = try BatchScheduler(model: model, slots: 3, contextLength: 256, prefillChunk: chunk,
                                           mode: .dense)
        defer { scheduler.shutdown() }
        let got = try await Self.batched(scheduler, Self.prompts, maxTokens: 20)
        for i in Self.prompts.indices {
            #expect(!expected[i].isEmpty)
            #expect(got[i].tokens == expected[i], "prompt \(i)")
            #expect(got[i].text == model.tokenizer.decode(expected[i]), "prompt \(i)")
        }
        let m = scheduler.metrics()
        #expect(m.running == 0 && m.queued == 0)
        #expect(m.requestsFinished == Self.prompts.count)
        #expect(m.generatedTokens == expected.reduce(0) { $0 + $1.count })
        // Batching happened: fewer forward passes than tokens evaluated.
        #expect(m.steps < m.stepTokens)
    }

    @Test("spike-driven (spike linears and spike attention): batched equals one-at-a-time")
    func spikeMatchesSequential() async throws {
        let model = try SharedModel.get()
        let c = model.config
        var cfg = SpikeConfig.uniform(k: 8, nLayer: c.nLayer)
        cfg.spikeAttention = true
        // Any positive V scales make a valid (if untuned) spike attention; equality is the point.
        let setup = SpikeSetup(config: cfg,
                               vScales: [Float](repeating: 0.05, count: c.nLayer * c.nHeadKV * c.headDim))
        let prompts = Array(Self.prompts.prefix(3))
        let expected = try await Self.sequential(model, prompts, maxTokens: 8, mode: .spike(setup))
        let scheduler = try BatchScheduler(model: model, slots: 2, contextLength: 256, prefillChunk: 5,
                                           mode: .spike(setup))
        defer { scheduler.shutdown() }
        #expect(scheduler.isSpikeDriven)
        let got = try await Self.batched(scheduler, prompts, maxTokens: 8)
        for i in prompts.indices {
            #expect(!expected[i].isEmpty)
            #expect(got[i].tokens == expected[i], "prompt \(i)")
        }
    }

    @Test("a dropped stream frees its slot within a step; the queue is bounded")
    func cancellationAndQueue() async throws {
        let model = try SharedModel.get()
        // The long request must still be running when the test drops it: 2000 tokens are ~20 s
        // of decode here (200 finished first once on CI's 2 busy cores after the VNNI kernels).
        let scheduler = try BatchScheduler(model: model, slots: 1, contextLength: 2048, queueLimit: 1, mode: .dense)
        defer { scheduler.shutdown() }
        let long = GenerationParameters(maxTokens: 2000, temperature: 0)
        var first: AsyncThrowingStream<GenerationEvent, any Error>? =
            try scheduler.submit(.text("Once upon a time"), parameters: long)
        let second = try scheduler.submit(.text("Hello"), parameters: .init(maxTokens: 3, temperature: 0))
        #expect(throws: BatchScheduler.QueueFull.self) {
            _ = try scheduler.submit(.text("third"), parameters: long)
        }
        // Read two pieces of the first stream, then drop it (its last reference).
        var pieces = 0
        for try await e in first! {
            if case .text = e { pieces += 1 }
            if pieces == 2 { break }
        }
        first = nil
        // The waiting request gets the slot and completes.
        var info: GenerationInfo?
        for try await e in second { if case .info(let i) = e { info = i } }
        #expect(info?.generatedTokens == 3)
        let m = scheduler.metrics()
        #expect(m.requestsCancelled == 1)
        #expect(m.running == 0 && m.queued == 0)
        #expect(m.generatedTokens < 2000)
    }

    @Test("a prompt extending a slot's cached tokens reuses them")
    func prefixReuse() async throws {
        let model = try SharedModel.get()
        let scheduler = try BatchScheduler(model: model, slots: 2, contextLength: 256, mode: .dense)
        defer { scheduler.shutdown() }
        let base = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        func run(_ text: String) async throws -> GenerationInfo? {
            var info: GenerationInfo?
            for try await e in try scheduler.submit(.text(text), parameters: .init(maxTokens: 6, temperature: 0)) {
                if case .info(let i) = e { info = i }
            }
            return info
        }
        let a = try #require(try await run(base + "<|im_start|>user\nHi"))
        #expect(a.promptTokensEvaluated == a.promptTokens)
        let second = base + "<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\n"
        let b = try #require(try await run(second))
        #expect(b.promptTokensEvaluated < b.promptTokens - 10)
        // Reusing the prefix does not change the result.
        let alone = try await Self.sequential(model, [.text(second)], maxTokens: 6, mode: .dense)
        #expect(b.tokens == alone[0])
        #expect(scheduler.metrics().slotTokens.max()! >= b.promptTokens)
    }

    @Test("invalid requests are rejected before they take a slot")
    func invalid() throws {
        let model = try SharedModel.get()
        let scheduler = try BatchScheduler(model: model, slots: 1, contextLength: 32, mode: .dense)
        defer { scheduler.shutdown() }
        #expect(throws: SpikeRunError.self) { _ = try scheduler.submit(.tokens([]), parameters: .greedy) }
        #expect(throws: SpikeRunError.self) { _ = try scheduler.submit(.tokens([-1]), parameters: .greedy) }
        #expect(throws: SpikeRunError.self) {
            _ = try scheduler.submit(.tokens([Int32](repeating: 1, count: 40)), parameters: .greedy)
        }
        #expect(throws: SpikeRunError.self) {
            _ = try scheduler.submit(.text("x"), parameters: .init(topP: 2))
        }
    }
}
