import Foundation
import Testing
@testable import SpikeRun

/// The dense engine against llama.cpp (fixtures from tools/fixtures/make_model_fixtures.py).
struct OracleFixture: Decodable {
    struct Greedy: Decodable {
        var prompt: String
        var prompt_tokens: [Int32]
        var top10: [[Double]]
        var greedy: [Int32]
        var greedy_text: String
        var top2_gaps: [Double]
    }
    struct PPL: Decodable {
        var text: String
        var text_sha256: String
        var ctx: Int
        var chunks: Int
        var tokens_scored: Int
        var ppl: Double
    }
    var oracle: String
    var greedy: [Greedy]
    var perplexity: PPL

    static func load() throws -> OracleFixture {
        let url = TestPaths.fixtures.appendingPathComponent("model/oracle.json")
        return try JSONDecoder().decode(OracleFixture.self, from: Data(contentsOf: url))
    }
}

/// Largest |ours - llama.cpp| over the oracle's top-10 logits that we accept (logits are
/// ~15-35 here, so this is about 1%). The matmuls are bit-identical to llama.cpp's (same 8-bit
/// activation blocks, same summation order: QuantKernelTests); the residual comes from the
/// non-matmul float ops through 30 layers (ggml's approximate expf in SiLU and softmax, GCC's
/// FMA contraction in RoPE, f16 reduction order in attention). Measured maximum on the
/// committed fixture: 0.32 (8 prompts x top-10).
let logitTolerance: Float = 0.35

@Suite("Dense engine vs llama.cpp", .serialized)
struct DenseEngineTests {
    @Test("prompt tokens match the oracle's")
    func promptTokens() throws {
        let model = try SharedModel.get()
        for g in try OracleFixture.load().greedy {
            #expect(model.tokenizer.encode(g.prompt, addSpecialTokens: true, parseSpecial: true) == g.prompt_tokens,
                    "prompt \(g.prompt.debugDescription)")
        }
    }

    @Test("top-10 logits at the last prompt position agree within the tolerance")
    func topLogits() async throws {
        let model = try SharedModel.get()
        let session = try Session(model: model, contextLength: 512)
        var worst: Float = 0
        for g in try OracleFixture.load().greedy {
            let logits = try await session.logits(for: g.prompt_tokens)
            for pair in g.top10 {
                let diff = abs(logits[Int(pair[0])] - Float(pair[1]))
                worst = max(worst, diff)
                #expect(diff <= logitTolerance, "token \(Int(pair[0])) of \(g.prompt.prefix(30).debugDescription): ours \(logits[Int(pair[0])]) vs \(pair[1])")
            }
            // Same best token.
            #expect(Sampler.argmax(logits) == Int(g.top10[0][0]))
        }
        print("max top-10 logit difference vs llama.cpp: \(worst)")
    }

    @Test("greedy 32-token continuations equal llama.cpp's, or diverge only at near-ties")
    func greedyContinuations() async throws {
        let model = try SharedModel.get()
        let fixture = try OracleFixture.load()
        #expect(fixture.greedy.count >= 6)
        #expect(fixture.greedy.contains { $0.prompt.contains("<|im_start|>") })
        var identical = 0
        for g in fixture.greedy {
            let session = try Session(model: model, contextLength: 512)
            var params = GenerationParameters.greedy
            params.maxTokens = g.greedy.count
            params.stopAtEndOfGeneration = false
            var info: GenerationInfo?
            for try await e in await session.generate(.tokens(g.prompt_tokens), parameters: params) {
                if case .info(let i) = e { info = i }
            }
            let ours = try #require(info).tokens
            #expect(ours.count == g.greedy.count)
            // Identical, or diverging only where llama.cpp's own two best logits are closer than
            // the logit tolerance (a near-tie that a 1% difference may flip); after that point
            // the texts legitimately differ.
            if let i = (0..<min(ours.count, g.greedy.count)).first(where: { ours[$0] != g.greedy[$0] }) {
                print("greedy: \(g.prompt.prefix(30).debugDescription) diverges at step \(i), oracle top-2 gap \(g.top2_gaps[i])")
                #expect(Float(g.top2_gaps[i]) < logitTolerance,
                        "prompt \(g.prompt.prefix(40).debugDescription) diverges at step \(i) where the oracle's top-2 gap is \(g.top2_gaps[i])")
            } else {
                identical += 1
            }
        }
        print("greedy: \(identical) of \(fixture.greedy.count) continuations identical to llama.cpp's")
        #expect(identical >= fixture.greedy.count / 2)
    }

    @Test("perplexity within 1% of llama.cpp's on the same text and context")
    func perplexity() async throws {
        let model = try SharedModel.get()
        let fixture = try OracleFixture.load().perplexity
        let path = TestPaths.dataFile("text/botchan.txt")
        let text = try TextFile.read(path)
        let session = try Session(model: model, contextLength: fixture.ctx, batchSize: fixture.ctx)
        let r = try await Perplexity.evaluate(session: session, text: text, contextLength: fixture.ctx,
                                              maxChunks: fixture.chunks)
        #expect(r.tokensScored == fixture.tokens_scored)
        let rel = abs(r.perplexity - fixture.ppl) / fixture.ppl
        print("perplexity ours \(r.perplexity) llama.cpp \(fixture.ppl) (rel diff \(rel))")
        // Known gap (issue 2 stays open): ours is 6.4% lower than llama.cpp's on this text
        // although the matmuls are bit-identical; the source is in the float ops around them.
        withKnownIssue("perplexity differs from llama.cpp's by about 6%; see docs/benchmarks.md") {
            #expect(rel < 0.01)
        }
        #expect(rel < 0.08, "the perplexity gap to llama.cpp grew beyond the known 6.4%")
    }

    @Test("float32 activation path stays close to the 8-bit path")
    func f32Path() async throws {
        let q8 = try SharedModel.get()
        let f32 = try Model(file: q8.file, options: .init(threads: 2, activationMode: .f32))
        let g = try OracleFixture.load().greedy[0]
        let a = try await Session(model: q8, contextLength: 128).logits(for: g.prompt_tokens)
        let b = try await Session(model: f32, contextLength: 128).logits(for: g.prompt_tokens)
        #expect(Sampler.argmax(a) == Sampler.argmax(b))
        let top = g.top10.map { Int($0[0]) }
        for t in top { #expect(abs(a[t] - b[t]) < 0.5) }
    }

    @Test("batched prompt evaluation equals token-by-token evaluation bit for bit")
    func batchingIsExact() async throws {
        let model = try SharedModel.get()
        let tokens = try OracleFixture.load().greedy[2].prompt_tokens
        let batched = try await Session(model: model, contextLength: 64, batchSize: 64).logits(for: tokens)
        let single = try await Session(model: model, contextLength: 64, batchSize: 1).logits(for: tokens)
        #expect(batched == single)
    }
}
