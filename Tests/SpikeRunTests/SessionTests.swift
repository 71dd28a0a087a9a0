import Foundation
import Testing
@testable import SpikeRun

@Suite("Streaming generation", .serialized)
struct SessionTests {
    func collect(_ session: Session, _ prompt: Prompt, _ p: GenerationParameters) async throws -> (String, GenerationInfo) {
        var text = ""
        var info: GenerationInfo?
        for try await e in await session.generate(prompt, parameters: p) {
            switch e {
            case .text(let s): text += s
            case .info(let i): info = i
            }
        }
        return (text, try #require(info))
    }

    @Test("the same seed gives the same text; another seed usually differs")
    func seeded() async throws {
        let model = try SharedModel.get()
        let session = try Session(model: model, contextLength: 256)
        var p = GenerationParameters(maxTokens: 24, temperature: 1.0, seed: 1234)
        p.stopAtEndOfGeneration = false
        let (a, ia) = try await collect(session, .text("Once upon a time"), p)
        let (b, _) = try await collect(session, .text("Once upon a time"), p)
        #expect(a == b)
        #expect(ia.seed == 1234)
        #expect(ia.generatedTokens == 24)
        p.seed = 99
        let (c, _) = try await collect(session, .text("Once upon a time"), p)
        #expect(c != a)
    }

    @Test("streamed text equals the decoded tokens, and the stats are filled in")
    func textMatchesTokens() async throws {
        let model = try SharedModel.get()
        let session = try Session(model: model, contextLength: 256)
        var p = GenerationParameters.greedy
        p.maxTokens = 16
        let (text, info) = try await collect(session, .chat([.user("Name three fruits.")]), p)
        #expect(text == model.tokenizer.decode(info.tokens))
        #expect(info.promptTokens > 10)
        #expect(info.promptTokensPerSecond > 0)
        #expect(!text.isEmpty)
    }

    @Test("a stop string is never emitted, even when split over tokens")
    func stopString() async throws {
        let model = try SharedModel.get()
        let session = try Session(model: model, contextLength: 256)
        var p = GenerationParameters.greedy
        p.maxTokens = 32
        p.stopAtEndOfGeneration = false
        let (full, _) = try await collect(session, .text("The capital of France is"), p)
        // Choose a stop string that starts in the middle of the greedy text.
        let words = full.split(separator: " ")
        try #require(words.count > 4)
        let stop = String(words[3].dropFirst(min(1, words[3].count - 1))) + " " + words[4]
        p.stop = [stop]
        let (cut, info) = try await collect(session, .text("The capital of France is"), p)
        #expect(!cut.contains(stop))
        #expect(full.hasPrefix(cut))
        #expect(info.stopReason == .stopSequence(stop))
    }

    @Test("matcher holds back a partial stop string until it is decided")
    func matcher() {
        var m = StopStringMatcher(stops: ["<end>"])
        #expect(m.append("hello <e") == .emit("hello "))
        #expect(m.append("n") == .emit(""))
        #expect(m.append("x") == .emit("<enx"))
        #expect(m.append(" a <en") == .emit(" a "))
        #expect(m.append("d> tail") == .stopped(before: "", stop: "<end>"))
    }

    /// A session and a 900-token greedy count (end of generation ignored) for the cancellation
    /// tests: the session, the parameters, the prompt and its token count.
    private func countingRun() throws -> (Session, GenerationParameters, Prompt, Int) {
        let session = try Session(model: try SharedModel.get(), contextLength: 1024)
        var p = GenerationParameters.greedy
        p.maxTokens = 900
        p.stopAtEndOfGeneration = false
        let prompt = Prompt.text("Count from one to one thousand:")
        return (session, p, prompt, try session.tokens(for: prompt).count)
    }

    /// The checks of a cancelled run: its stop reason, fewer tokens than asked, and at most one
    /// token evaluated after the moment of cancellation. That moment's count is taken by the
    /// stream's termination handler under the lock the run counts its tokens under, and the
    /// final count comes from the KV cache, so neither depends on scheduling.
    func checkCancelledRun(_ session: Session, promptCount: Int, maxTokens: Int, atLeast: Int) async throws {
        // An isolated read: it waits until the run has returned.
        let evaluated = await session.cachedTokens.count - promptCount
        let control = try #require(session.generations.latest)
        let info = try #require(control.info, "the run did not finish")
        let atCancellation = try #require(control.evaluatedAtCancellation,
                                          "the stream's termination never cancelled the run")
        #expect(info.stopReason == .cancelled)
        #expect(info.generatedTokens < maxTokens)
        #expect(evaluated == control.evaluated)
        // The run pauses at 8 evaluated tokens until cancelled (see the callers), and the
        // consumer could not stop it before `atLeast`.
        #expect(atCancellation >= atLeast && atCancellation <= 8, "cancelled at \(atCancellation)")
        #expect(evaluated >= atCancellation && evaluated <= atCancellation + 1,
                "\(evaluated) tokens evaluated, \(atCancellation) when the run was cancelled")
        // The session is usable again right away.
        var q = GenerationParameters.greedy
        q.maxTokens = 2
        let (_, again) = try await collect(session, .text("Hi"), q)
        #expect(again.generatedTokens == 2 && again.stopReason == .length)
    }

    @Test("dropping the stream stops generation within one token, stop reason cancelled")
    func cancellation() async throws {
        let (session, p, prompt, promptCount) = try countingRun()
        // The run waits at 8 evaluated tokens until it is cancelled (a test hook; 60 s at
        // most), so however late a loaded machine schedules the consumer the run cannot get
        // far ahead of it; a run that ignored the cancellation would go on to 900 tokens.
        let consumer = Task {
            var n = 0
            for try await e in await session.generate(prompt, parameters: p, pauseForCancellationAt: 8) {
                if case .text = e { n += 1 }
                if n == 3 { break }   // drops the stream: its termination cancels the run
            }
            return n
        }
        #expect(try await consumer.value == 3)
        // The third piece is sent after the second token's evaluation.
        try await checkCancelledRun(session, promptCount: promptCount, maxTokens: 900, atLeast: 2)
    }

    @Test("cancelling the consuming task stops generation within one token, stop reason cancelled")
    func cancellationOfConsumer() async throws {
        let (session, p, prompt, promptCount) = try countingRun()
        let consumer = Task {
            var n = 0
            for try await e in await session.generate(prompt, parameters: p, pauseForCancellationAt: 8) {
                if case .text = e { n += 1 }
            }
            return n
        }
        // Cancel once the run has evaluated 3 tokens.
        let deadline = Date(timeIntervalSinceNow: 60)
        while (session.generations.latest?.evaluated ?? 0) < 3 && Date() < deadline {
            try await Task.sleep(for: .milliseconds(2))
        }
        consumer.cancel()
        let received = try await consumer.value   // the loop ends quietly on cancellation
        try await checkCancelledRun(session, promptCount: promptCount, maxTokens: 900, atLeast: 3)
        #expect(received < 900)
    }

    @Test("an abort while the stream is read ends it with stop reason cancelled")
    func cancellationStopReason() async throws {
        let model = try SharedModel.get()
        let session = try Session(model: model, contextLength: 1024)
        var p = GenerationParameters.greedy
        p.maxTokens = 900
        p.stopAtEndOfGeneration = false
        var received = 0
        var info: GenerationInfo?
        let aborter = Aborter()
        let engine = await session.engine   // not during the run: the actor is busy until it ends
        for try await e in await session.generate(.text("Count from one to one thousand:"), parameters: p) {
            switch e {
            case .text:
                received += 1
                // The engine's abort flag is cleared when an evaluation starts, so an abort that
                // lands between two tokens is repeated until the run ends. It runs on its own
                // thread: the cooperative pool may be busy with other tests' generations.
                if received == 5 { aborter.start(engine) }
            case .info(let i): info = i
            }
        }
        aborter.stop()
        let i = try #require(info, "the stream ended without its .info event")
        #expect(i.stopReason == .cancelled)
        #expect(i.generatedTokens < p.maxTokens! && i.generatedTokens >= 5)
        #expect(i.tokens.count == i.generatedTokens && received <= i.generatedTokens)
    }

    @Test("a prompt longer than the context throws contextFull")
    func contextOverflow() async throws {
        let model = try SharedModel.get()
        let session = try Session(model: model, contextLength: 16)
        let long = String(repeating: "word ", count: 64)
        await #expect(throws: SpikeRunError.self) {
            for try await _ in await session.generate(.text(long), parameters: .greedy) {}
        }
        do {
            for try await _ in await session.generate(.text(long), parameters: .greedy) {}
        } catch let e as SpikeRunError {
            #expect(e.kind == .contextFull)
        }
    }

    @Test("generation stops with contextFull when the cache fills up")
    func contextFillsUp() async throws {
        let model = try SharedModel.get()
        let session = try Session(model: model, contextLength: 24)
        var p = GenerationParameters.greedy
        p.stopAtEndOfGeneration = false
        let (_, info) = try await collect(session, .text("One two three"), p)
        #expect(info.stopReason == .contextFull)
        #expect(info.promptTokens + info.generatedTokens == 24 + 1 || info.promptTokens + info.generatedTokens == 24)
    }

    @Test("bad sampling parameters are rejected with a clear error")
    func badParameters() async throws {
        let model = try SharedModel.get()
        let session = try Session(model: model, contextLength: 32)
        var p = GenerationParameters()
        p.topP = 0
        await #expect(throws: SpikeRunError.self) {
            for try await _ in await session.generate(.text("x"), parameters: p) {}
        }
        await #expect(throws: SpikeRunError.self) {
            for try await _ in await session.generate(.text(""), parameters: .greedy) {}
        }
    }

    @Test("top-k, top-p and min-p keep only the likely tokens")
    func samplerFilters() {
        var logits = [Float](repeating: -10, count: 100)
        logits[7] = 5; logits[3] = 4.9; logits[50] = 1
        var p = GenerationParameters(temperature: 1, topK: 2, topP: 1, minP: 0, seed: 1)
        var s = Sampler(parameters: p, seed: 1)
        for _ in 0..<50 { #expect([7, 3].contains(s.sample(logits, history: []))) }
        p = GenerationParameters(temperature: 1, topK: 0, topP: 1, minP: 0.5, seed: 1)
        s = Sampler(parameters: p, seed: 1)
        for _ in 0..<50 { #expect([7, 3].contains(s.sample(logits, history: []))) }
        p = GenerationParameters(temperature: 0, repeatPenalty: 2)
        s = Sampler(parameters: p, seed: 1)
        #expect(s.sample(logits, history: [7]) == 3)  // 5/2 < 4.9
    }
}

/// Calls `Engine.abort()` every millisecond on a plain thread until stopped.
private final class Aborter: @unchecked Sendable {
    private let lock = NSLock()
    private var running = false

    func start(_ engine: Engine) {
        lock.lock(); running = true; lock.unlock()
        Thread.detachNewThread { [self] in
            while true {
                lock.lock(); let go = running; lock.unlock()
                if !go { return }
                engine.abort()
                usleep(1000)
            }
        }
    }

    func stop() { lock.lock(); running = false; lock.unlock() }
}
