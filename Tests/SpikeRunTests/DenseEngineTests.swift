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

// The dense engine reproduces llama.cpp's x86 CPU build (AVX2 + FMA) bit for bit: the same 8-bit
// activation blocks and summation order in the matmuls (QuantKernelTests), ggml's vector expf
// in softmax and SiLU, RoPE with GCC's FMA contraction, and for attention in batches of >= 2
// tokens llamafile's tinyBLAS summation order (its dot product for single tokens). So the
// comparisons below are exact, not within a tolerance.

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

    @Test("top-10 logits at the last prompt position equal llama.cpp's bit for bit")
    func topLogits() async throws {
        let model = try SharedModel.get()
        let session = try Session(model: model, contextLength: 512)
        var worst: Float = 0
        for g in try OracleFixture.load().greedy {
            let logits = try await session.logits(for: g.prompt_tokens)
            for pair in g.top10 {
                // the fixture holds float32 values written as doubles: Float(...) is exact
                let diff = abs(logits[Int(pair[0])] - Float(pair[1]))
                worst = max(worst, diff)
                #expect(diff == 0, "token \(Int(pair[0])) of \(g.prompt.prefix(30).debugDescription): ours \(logits[Int(pair[0])]) vs \(pair[1])")
            }
            // Same best token.
            #expect(Sampler.argmax(logits) == Int(g.top10[0][0]))
        }
        print("max top-10 logit difference vs llama.cpp: \(worst)")
    }

    @Test("greedy 32-token continuations equal llama.cpp's")
    func greedyContinuations() async throws {
        let model = try SharedModel.get()
        let fixture = try OracleFixture.load()
        #expect(fixture.greedy.count >= 6)
        #expect(fixture.greedy.contains { $0.prompt.contains("<|im_start|>") })
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
            #expect(ours == g.greedy, "prompt \(g.prompt.prefix(40).debugDescription)")
        }
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
        // The logits are identical; what remains is the order of the double-precision
        // log-sum-exp (numpy's vs ours), ~1e-10. The issue asks for 1%.
        #expect(rel < 1e-6)
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

    @Test("how a prompt is split into batches does not change its logits, unless a batch has one token")
    func batching() async throws {
        let model = try SharedModel.get()
        let tokens = try OracleFixture.load().greedy[2].prompt_tokens
        let whole = try await Session(model: model, contextLength: 64, batchSize: 64).logits(for: tokens)
        // batches of 3, 5 or 7 (no batch of one token: llama.cpp's attention order changes there)
        for b in [3, 5, 7] where tokens.count % b != 1 {
            let split = try await Session(model: model, contextLength: 64, batchSize: b).logits(for: tokens)
            #expect(split == whole, "batches of \(b)")
        }
        // One token at a time takes llama.cpp's decode order in attention (its dot product
        // instead of tinyBLAS): not bit-identical, but the same to float rounding.
        let single = try await Session(model: model, contextLength: 64, batchSize: 1).logits(for: tokens)
        #expect(Sampler.argmax(single) == Sampler.argmax(whole))
        let worst = zip(single, whole).map { abs($0 - $1) }.max() ?? 0
        #expect(worst < 0.5, "token-by-token vs batched: max logit difference \(worst)")
    }
}
