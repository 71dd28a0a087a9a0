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

    @Test("cancelling the consumer stops generation before its end")
    func cancellation() async throws {
        let model = try SharedModel.get()
        let session = try Session(model: model, contextLength: 1024)
        var p = GenerationParameters.greedy
        p.maxTokens = 900
        p.stopAtEndOfGeneration = false
        let prompt = Prompt.text("Count from one to one thousand:")
        let promptCount = try session.tokens(for: prompt).count
        let task = Task {
            var n = 0
            for try await e in await session.generate(prompt, parameters: p) {
                if case .text = e { n += 1 }
                if n == 5 { break }   // drops the stream: onTermination cancels the run
            }
            return n
        }
        let received = try await task.value
        #expect(received == 5)
        // The run is actor-isolated, so this read waits until it has returned. The cache holds
        // the prompt and every generated token whose evaluation completed: at least the tokens
        // the consumer saw, never the 900 asked for. How far past the consumer the run gets
        // depends on scheduling: Session generates on Swift's cooperative pool, and with other
        // tests' generations on both cores the consumer's break (which cancels the run through
        // the stream's termination) can wait hundreds of tokens (356 measured under a full
        // `make test`). The abort test below checks the run's own reaction time; moving
        // Session's generation onto a thread of its own (as BatchScheduler does) is the fix.
        let evaluated = await session.cachedTokens.count - promptCount
        #expect(evaluated >= received - 1 && evaluated < 900,
                "\(evaluated) tokens evaluated after the consumer stopped at \(received)")
        // The session is usable again right away.
        var q = GenerationParameters.greedy
        q.maxTokens = 2
        let (_, info) = try await collect(session, .text("Hi"), q)
        #expect(info.generatedTokens == 2 && info.stopReason == .length)
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
