import Foundation
import Testing
@testable import SpikeRun

// `general.alignment = 1` lets a file place F32/F16 and quantized tensors at odd addresses,
// where typed reads (Float, UInt16, the C block structs) are undefined behaviour. GGUFFile
// hands out an aligned copy of such a tensor, so everything downstream computes exactly what
// it computes on the same tensors written with the default alignment.

@Suite("Unaligned tensors")
struct AlignmentTests {
    static func tinyModel(alignment: Int?) throws -> [UInt8] {
        var spec = GGUFSamples.tinyLlama()
        spec.metadata["tokenizer.ggml.merges"] = .array([.string("t 0")])
        // An odd-sized first tensor pushes every later one off any power-of-two boundary.
        spec.tensors.insert(("pad.weight", [3], .i8), at: 0)
        var w = try spec.writer()
        if let alignment { try w.set("general.alignment", .uint32(UInt32(alignment))) }
        return w.serialize()
    }

    @Test func unalignedTensorsAreCopiedToAlignedMemory() throws {
        let bytes = try Self.tinyModel(alignment: 1)
        let f = try GGUFFile(bytes: bytes)
        #expect(f.alignment == 1)
        var misplaced = 0
        for t in f.tensors {
            let start = f.dataOffset + t.offset
            if start % GGUFFile.dataAlignment != 0 { misplaced += 1 }
            let d = f.data(t)
            #expect(Int(bitPattern: d.baseAddress) % GGUFFile.dataAlignment == 0, "\(t.name)")
            #expect(Array(d) == Array(bytes[start..<(start + t.byteCount)]), "\(t.name)")
        }
        #expect(misplaced >= f.tensors.count - 2, "the fixture should misplace nearly every tensor")
        // The same file written with the default alignment reads back to the same tensor bytes.
        let g = try GGUFFile(bytes: try Self.tinyModel(alignment: nil))
        for t in f.tensors { #expect(Array(f.data(t)) == Array(g.data(try #require(g.tensor(t.name))))) }
    }

    @Test func unalignedModelComputesTheAlignedValues() throws {
        let unaligned = try Model(file: try GGUFFile(bytes: try Self.tinyModel(alignment: 1)))
        let aligned = try Model(file: try GGUFFile(bytes: try Self.tinyModel(alignment: nil)))
        // Every tensor dequantized through the C kernels (typed fp16/f32/block reads).
        for t in unaligned.file.tensors where t.type != .i8 {
            let a = try unaligned.dequantize(t), b = try aligned.dequantize(try #require(aligned.file.tensor(t.name)))
            #expect(a.map(\.bitPattern) == b.map(\.bitPattern), "\(t.name)")
        }
        // The dense engine's logits, bit for bit (the fixture's pattern weights may make some
        // of them NaN; the bits still have to agree).
        func logits(_ model: Model) throws -> [UInt32] {
            let engine = try Engine(model: model, contextLength: 32, batchSize: 8)
            return try engine.eval([1, 5, 7, 2], at: 0, allLogits: true).map(\.bitPattern)
        }
        let a = try logits(unaligned)
        #expect(a.count == 4 * 16)
        #expect(a == (try logits(aligned)))
    }
}
