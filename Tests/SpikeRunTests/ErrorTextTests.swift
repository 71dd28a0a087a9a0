import Foundation
import Testing
@testable import SpikeRun

// A C failure inside a pool worker keeps its sentence: the worker's thread-local
// sr_last_error() is copied into the job and re-raised on the calling thread, so the user
// reads one line saying what failed (here: the spike attention's query encoder meeting an
// infinite activation), never a bare status.

@Suite("C error text")
struct ErrorTextTests {
    /// The tiny Llama with every Q8_0 block of blk.0.attn_q scaled by +Inf, so the queries of
    /// layer 0 are infinite while K and V stay finite: the first failure is in spike attention.
    static func infiniteQueryModel(_ path: String) throws {
        var spec = GGUFSamples.tinyLlama()
        spec.metadata["tokenizer.ggml.merges"] = .array([.string("t 0")])
        let name = "blk.0.attn_q.weight"
        let shape = try #require(spec.tensors.first { $0.name == name }).shape
        spec.removeTensor(name)
        var w = try spec.writer()
        var bytes: [UInt8] = []
        for _ in 0..<(shape[0] * shape[1] / 32) {
            bytes += [0x00, 0x7C]                               // f16 +Inf block scale
            bytes += [UInt8](repeating: 1, count: 32)           // codes
        }
        try w.addTensor(name: name, shape: shape, type: .q8_0, bytes: bytes)
        try w.write(to: path)
    }

    @Test func spikeAttentionFailureKeepsItsMessage() throws {
        let dir = try GGUFSamples.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/inf-q.gguf"
        try Self.infiniteQueryModel(path)
        for threads in ["1", "2"] {
            let r = try runProcess(TestPaths.executable, ["generate", "-m", path, "--spike-preview", "8", "-p", "t1 t2 t3",
                                                          "-n", "2", "--temp", "0", "-t", threads])
            #expect(r.status == 1, "stderr: \(r.stderr)")
            let lines = r.stderr.split(separator: "\n", omittingEmptySubsequences: true)
            #expect(lines.count == 1, "stderr: \(r.stderr)")
            let line = String(lines.first ?? "")
            #expect(line.hasPrefix("spikerun: error:") && line.contains("spike attention, layer 0")
                    && line.contains("NaN or Inf"), "stderr: \(r.stderr)")
        }
    }
}
