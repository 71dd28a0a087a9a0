import Foundation
import Testing
@testable import SpikeRun

// A C failure inside a pool worker keeps its sentence: the worker's thread-local
// sr_last_error() is copied into the job and re-raised on the calling thread, so the user
// reads one line saying what failed (here: the spike attention's probability encoder meeting
// NaN after the scores overflowed), never a bare status.

@Suite("C error text")
struct ErrorTextTests {
    /// The tiny Llama with layer 0's attention RMSNorm weight at 1e30: q and k stay finite
    /// (weights with non-finite scales are refused when packed) but the attention scores
    /// overflow, softmax gives NaN, and the probability encoder fails on a pool worker.
    static func overflowingScoresModel(_ path: String) throws {
        // The spike kernels work on 32-wide blocks, so heads are 32 wide here: n_embd 64,
        // 2 query heads, 1 KV head (the shared tiny Llama has 8-wide heads).
        let (nLayer, nEmbd, nFF, nHead, nHeadKV, headDim, nVocab) = (2, 64, 64, 2, 1, 32, 16)
        var spec = GGUFSamples.tinyLlama()
        for (k, v) in [("llama.embedding_length", nEmbd), ("llama.feed_forward_length", nFF),
                       ("llama.attention.head_count", nHead), ("llama.attention.head_count_kv", nHeadKV),
                       ("llama.rope.dimension_count", headDim), ("llama.block_count", nLayer)] {
            spec.metadata[k] = .uint32(UInt32(v))
        }
        // Single letters (and "ab") so that an ordinary prompt tokenizes.
        spec.metadata["tokenizer.ggml.tokens"] = .array((Array("abcdefghijklmno").map { String($0) } + ["ab"]).map { .string($0) })
        spec.metadata["tokenizer.ggml.merges"] = .array([.string("a b")])
        spec.tensors = [("token_embd.weight", [nEmbd, nVocab], .q8_0), ("output_norm.weight", [nEmbd], .f32)]
        for l in 0..<nLayer {
            let p = "blk.\(l)."
            spec.tensors += [
                (p + "attn_norm.weight", [nEmbd], .f32),
                (p + "attn_q.weight", [nEmbd, nHead * headDim], .q8_0),
                (p + "attn_k.weight", [nEmbd, nHeadKV * headDim], .q4_1),
                (p + "attn_v.weight", [nEmbd, nHeadKV * headDim], .q8_0),
                (p + "attn_output.weight", [nHead * headDim, nEmbd], .q8_0),
                (p + "ffn_norm.weight", [nEmbd], .f32),
                (p + "ffn_gate.weight", [nEmbd, nFF], .q4_1),
                (p + "ffn_up.weight", [nEmbd, nFF], .q8_0),
                (p + "ffn_down.weight", [nFF, nEmbd], .q8_0),
            ]
        }
        // Sane weights: Q8_0 blocks with scale 1/64 and small codes, Q4_1 with d = 1/64,
        // m = -1/8, norms 1 (the pattern bytes of the shared fixture can decode to Inf).
        var w = GGUFWriter()
        for k in spec.metadata.keys { try w.set(k, spec.metadata[k]!) }
        var seed: UInt32 = 1
        func code() -> UInt8 { seed = seed &* 1_103_515_245 &+ 12345; return UInt8(truncatingIfNeeded: seed >> 16) }
        for t in spec.tensors {
            var bytes: [UInt8] = []
            let n = t.shape.reduce(1, *)
            switch t.type {
            case .f32:
                let v: Float = t.name == "blk.0.attn_norm.weight" ? 1e30 : 1
                bytes = [Float](repeating: v, count: n).withUnsafeBytes { Array($0) }
            case .q8_0:
                for _ in 0..<(n / 32) { bytes += [0x00, 0x24] + (0..<32).map { _ in code() % 9 &- 4 } }  // d = 2^-6
            default:  // q4_1
                for _ in 0..<(n / 32) { bytes += [0x00, 0x24, 0x00, 0xB0] + (0..<16).map { _ in code() } }  // d = 2^-6, m = -2^-3
            }
            try w.addTensor(name: t.name, shape: t.shape, type: t.type, bytes: bytes)
        }
        try w.write(to: path)
    }

    @Test func spikeFailureIsOneLineSayingWhatFailed() throws {
        let dir = try GGUFSamples.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/overflow.gguf"
        try Self.overflowingScoresModel(path)
        for threads in ["1", "2"] {
            let r = try runProcess(TestPaths.executable, ["generate", "-m", path, "--spike-preview", "8", "-p", "abc cab bca",
                                                          "-n", "2", "--temp", "0", "-t", threads])
            #expect(r.status == 1, "stderr: \(r.stderr)")
            let lines = r.stderr.split(separator: "\n", omittingEmptySubsequences: true)
            #expect(lines.count == 1, "stderr: \(r.stderr)")
            let line = String(lines.first ?? "")
            // --spike-preview keeps attention dense, so the NaN surfaces at the next spiking site;
            // the spike-attention worker path itself is checked in C by tools/sanitize/sr-sanity.c
            // ("spike attention, layer 0: spike encoder: probability 0 is NaN or Inf").
            #expect(line.hasPrefix("spikerun: error:") && line.contains("spike encoder")
                    && line.contains("NaN or Inf"), "stderr: \(r.stderr)")
        }
    }
}
