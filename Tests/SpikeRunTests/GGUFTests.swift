import Foundation
import Testing
import SpikeRun

// MARK: - Sample files

/// The GGUF samples the tests build with `GGUFWriter`. They are defined identically in
/// tools/fuzz/make_fixtures.py (PyPI `gguf`), which wrote Tests/Fixtures/gguf/*.gguf; the
/// tests expect byte-identical output from both writers.
enum GGUFSamples {
    static let repoRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static func fixture(_ name: String) -> String {
        repoRoot.appendingPathComponent("Tests/Fixtures/gguf/\(name)").path
    }
    static var realModelPath: String {
        repoRoot.appendingPathComponent("models/SmolLM2-135M-Instruct.Q4_1.gguf").path
    }

    /// Deterministic bytes, same formula as make_fixtures.py.
    static func pattern(_ n: Int, salt: Int) -> [UInt8] {
        (0..<n).map { UInt8(truncatingIfNeeded: $0 * 37 + salt * 11) }
    }

    static func byteCount(_ shape: [Int], _ type: GGMLType) -> Int {
        type.byteCount(elements: shape.reduce(1, *))!
    }

    /// Every metadata value type, arrays, and tensors of eight types (some multi-dimensional).
    static func small() throws -> GGUFWriter {
        var w = GGUFWriter()
        let kv: KeyValuePairs<String, GGUFValue> = [
            "general.architecture": .string("llama"),
            "general.name": .string("gguf-test"),
            "test.u8": .uint8(200), "test.i8": .int8(-100),
            "test.u16": .uint16(60000), "test.i16": .int16(-30000),
            "test.u32": .uint32(4_000_000_000), "test.i32": .int32(-2_000_000_000),
            "test.u64": .uint64(1 << 63 + 5), "test.i64": .int64(-(1 << 62)),
            "test.f32": .float32(0.5), "test.f64": .float64(-1.25e300),
            "test.bool": .bool(true), "test.empty": .string(""),
            "test.strings": .array([.string("a"), .string(""), .string("héllo 🦙"), .string("<0x0A>")]),
            "test.ints": .array([.int32(1), .int32(-2), .int32(3)]),
            "test.floats": .array([.float32(0.25), .float32(-1.5)]),
            "test.bools": .array([.bool(true), .bool(false)]),
            "test.u8s": .array([.uint8(0), .uint8(255)]),
            "test.u64s": .array([.uint64(.max)]),
        ]
        for (k, v) in kv { try w.set(k, v) }
        let tensors: [(String, [Int], GGMLType)] = [
            ("f32.vec", [5], .f32), ("f16.mat", [4, 3], .f16), ("q8_0.mat", [64, 2], .q8_0),
            ("q4_1.row", [32], .q4_1), ("q4_k.mat", [256, 2], .q4_K), ("q6_k.vec", [256], .q6_K),
            ("i32.vec", [3], .i32), ("bf16.cube", [7, 2, 3], .bf16),
        ]
        for (salt, (name, shape, type)) in tensors.enumerated() {
            try w.addTensor(name: name, shape: shape, type: type, bytes: pattern(byteCount(shape, type), salt: salt))
        }
        return w
    }

    /// A tiny Llama as plain data, so tests can break one thing at a time before writing it.
    struct LlamaSpec {
        var metadata = GGUFMetadata()
        var tensors: [(name: String, shape: [Int], type: GGMLType)] = []

        mutating func setTensor(_ name: String, shape: [Int]? = nil, type: GGMLType? = nil) {
            let i = tensors.firstIndex { $0.name == name }!
            if let shape { tensors[i].shape = shape }
            if let type { tensors[i].type = type }
        }
        mutating func removeTensor(_ name: String) { tensors.removeAll { $0.name == name } }

        func writer() throws -> GGUFWriter {
            var w = GGUFWriter()
            for k in metadata.keys { try w.set(k, metadata[k]!) }
            for (salt, t) in tensors.enumerated() {
                try w.addTensor(name: t.name, shape: t.shape, type: t.type,
                                bytes: pattern(byteCount(t.shape, t.type), salt: salt))
            }
            return w
        }
        func file() throws -> GGUFFile { try GGUFFile(bytes: try writer().serialize()) }
    }

    /// 2 layers, n_embd 32, n_ff 64, 4 heads / 2 KV heads, vocab 16 (as tiny-llama.gguf).
    static func tinyLlama() -> LlamaSpec {
        let (nLayer, nEmbd, nFF, nHead, nHeadKV, nVocab) = (2, 32, 64, 4, 2, 16)
        let headDim = nEmbd / nHead
        var s = LlamaSpec()
        s.metadata = GGUFMetadata([
            "general.architecture": .string("llama"),
            "general.name": .string("tiny-llama"),
            "llama.block_count": .uint32(UInt32(nLayer)),
            "llama.context_length": .uint32(128),
            "llama.embedding_length": .uint32(UInt32(nEmbd)),
            "llama.feed_forward_length": .uint32(UInt32(nFF)),
            "llama.attention.head_count": .uint32(UInt32(nHead)),
            "llama.attention.head_count_kv": .uint32(UInt32(nHeadKV)),
            "llama.rope.freq_base": .float32(10000),
            "llama.attention.layer_norm_rms_epsilon": .float32(1e-5),
            "llama.rope.dimension_count": .uint32(UInt32(headDim)),
            "llama.vocab_size": .uint32(UInt32(nVocab)),
            "tokenizer.ggml.model": .string("gpt2"),
            "tokenizer.ggml.tokens": .array((0..<nVocab).map { .string("t\($0)") }),
            "tokenizer.ggml.token_type": .array(Array(repeating: .int32(1), count: nVocab)),
        ])
        s.tensors.append(("token_embd.weight", [nEmbd, nVocab], .q8_0))
        for l in 0..<nLayer {
            let p = "blk.\(l)."
            s.tensors += [
                (p + "attn_norm.weight", [nEmbd], .f32),
                (p + "attn_q.weight", [nEmbd, nHead * headDim], .q8_0),
                (p + "attn_k.weight", [nEmbd, nHeadKV * headDim], .q4_1),
                (p + "attn_v.weight", [nEmbd, nHeadKV * headDim], .f32),
                (p + "attn_output.weight", [nHead * headDim, nEmbd], .q8_0),
                (p + "ffn_norm.weight", [nEmbd], .f32),
                (p + "ffn_gate.weight", [nEmbd, nFF], .q4_1),
                (p + "ffn_up.weight", [nEmbd, nFF], .q8_0),
                (p + "ffn_down.weight", [nFF, nEmbd], .f16),
            ]
        }
        s.tensors.append(("output_norm.weight", [nEmbd], .f32))
        return s
    }

    static func temporaryDirectory() throws -> String {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("spikerun-gguf-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.path
    }

    /// A canonical text dump of a GGUF (one line per key and tensor), the same format
    /// `ggufPythonDump` prints, so our reader can be diffed against PyPI `gguf`.
    static func dump(_ f: GGUFFile, withData: Bool) -> String {
        let digits = Array("0123456789abcdef".utf8)
        func hex<S: Sequence<UInt8>>(_ bytes: S) -> String {
            var out: [UInt8] = []
            for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
            return String(decoding: out, as: UTF8.self)
        }
        func enc(_ v: GGUFValue) -> String {
            switch v {
            case .string(let s): hex(s.utf8)
            case .float32(let x): "\(x.bitPattern)"
            case .float64(let x): "\(x.bitPattern)"
            case .bool(let b): b ? "1" : "0"
            case .uint64(let x): "\(x)"
            case .int64(let x): "\(x)"
            case .array(let a): a.map(enc).joined(separator: ",")
            default: "\(v.intValue!)"
            }
        }
        var lines = ["version|\(f.version)"]
        for k in f.metadata.keys {
            let v = f.metadata[k]!
            lines.append("kv|\(k)|\(v.typeName)|\(enc(v))")
        }
        lines.append("data_offset|\(f.dataOffset)")
        for t in f.tensors {
            var line = "tensor|\(t.name)|\(t.type.name)|\(t.shape.map(String.init).joined(separator: ","))|\(t.offset)|\(t.byteCount)"
            if withData { line += "|" + hex(f.data(t)) }
            lines.append(line)
        }
        return lines.joined(separator: "\n")
    }
}

// MARK: - Python (PyPI gguf) oracle

struct GGUFPythonFailure: Error, CustomStringConvertible {
    var description: String
}

/// Runs `python3 -c script args…` and returns stdout. Missing python3 or `gguf` is a test
/// failure with instructions, never a skip.
func runGGUFPython(_ script: String, _ args: [String]) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3", "-c", script] + args
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    do { try p.run() } catch {
        throw GGUFPythonFailure(description: "cannot run python3 (\(error)); install Python 3 and `pip install gguf`")
    }
    nonisolated(unsafe) var errData = Data()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    p.waitUntilExit()
    let stderr = String(decoding: errData, as: UTF8.self)
    guard p.terminationStatus == 0 else {
        if p.terminationStatus == 127 || stderr.contains("No such file") && stderr.contains("python3") {
            throw GGUFPythonFailure(description: "python3 is not installed; install it and `pip install gguf` (make test does)")
        }
        if stderr.contains("No module named 'gguf'") || stderr.contains("No module named 'numpy'") {
            throw GGUFPythonFailure(description: "the PyPI `gguf` package is missing: run `pip install gguf` (make test does)")
        }
        throw GGUFPythonFailure(description: "python3 failed (\(p.terminationStatus)): \(stderr)")
    }
    return String(decoding: outData, as: UTF8.self)
}

/// Prints a GGUF in `GGUFSamples.dump` format using gguf-py's reader.
let ggufPythonDump = #"""
import sys
import numpy as np
from gguf import GGUFReader, GGUFValueType as V
r = GGUFReader(sys.argv[1])
with_data = sys.argv[2] == "1"
def enc(vtype, part):
    if vtype == V.STRING: return bytes(part).hex()
    if vtype == V.FLOAT32: return str(int(part.view(np.uint32)[0]))
    if vtype == V.FLOAT64: return str(int(part.view(np.uint64)[0]))
    if vtype == V.BOOL: return "1" if part[0] else "0"
    return str(int(part[0]))
out = ["version|%d" % int(r.fields["GGUF.version"].parts[-1][0])]
for k, f in r.fields.items():
    if k.startswith("GGUF."): continue
    t = f.types[0]
    if t == V.ARRAY:
        sub = f.types[1]
        out.append("kv|%s|array[%s]|%s" % (k, sub.name.lower(), ",".join(enc(sub, f.parts[i]) for i in f.data)))
    else:
        out.append("kv|%s|%s|%s" % (k, t.name.lower(), enc(t, f.parts[f.data[0]])))
out.append("data_offset|%d" % r.data_offset)
for t in r.tensors:
    line = "tensor|%s|%s|%s|%d|%d" % (t.name, t.tensor_type.name, ",".join(str(int(d)) for d in t.shape),
                                      t.data_offset - r.data_offset, t.n_bytes)
    if with_data: line += "|" + np.asarray(t.data).tobytes().hex()
    out.append(line)
print("\n".join(out))
"""#

// MARK: - Types and values

@Suite struct GGMLTypeTests {
    @Test func blockSizesAndNamesMatchPythonGGUF() throws {
        let script = """
        from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as T
        for t in T: print(t.value, t.name, *GGML_QUANT_SIZES[t])
        """
        var seen = 0
        for line in try runGGUFPython(script, []).split(separator: "\n") {
            let f = line.split(separator: " ")
            guard let t = GGMLType(rawValue: UInt32(f[0])!) else { continue }  // newer than us
            #expect(t.name == String(f[1]))
            #expect(t.blockSize == Int(f[2])!, "\(t.name) block size")
            #expect(t.blockBytes == Int(f[3])!, "\(t.name) block bytes")
            seen += 1
        }
        #expect(seen >= 33)
    }

    @Test func supportedSet() {
        #expect(Set(GGMLType.allCases.filter(\.isSupported)) ==
                [.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K,
                 .i8, .i16, .i32])
        #expect(GGMLType.q4_1.name == "Q4_1" && GGMLType.iq2_xxs.name == "IQ2_XXS" && GGMLType.q6_K.name == "Q6_K")
        #expect(GGMLType.q4_0.byteCount(elements: 64) == 36)
        #expect(GGMLType.q4_0.byteCount(elements: 33) == nil)
        #expect(GGMLType.f32.byteCount(elements: Int.max / 2) == nil)
    }

    @Test func metadataAccessors() throws {
        let f = try GGUFFile(bytes: try GGUFSamples.small().serialize())
        let m = f.metadata
        #expect(m.count == 20 && m.keys.first == "general.architecture" && m.keys.last == "test.u64s")
        #expect(m.string("general.name") == "gguf-test")
        #expect(m.int("test.u8") == 200 && m.int("test.i8") == -100 && m.int("test.i64") == -(1 << 62))
        #expect(m.int("test.u64") == nil)  // does not fit in Int
        #expect(m.int("general.name") == nil && m.int("missing") == nil)
        #expect(m.double("test.f32") == 0.5 && m.double("test.u16") == 60000)
        #expect(m.bool("test.bool") == true && m.bool("test.u8") == nil)
        #expect(m.strings("test.strings") == ["a", "", "héllo 🦙", "<0x0A>"])
        #expect(m.ints("test.ints") == [1, -2, 3] && m.ints("test.u8s") == [0, 255])
        #expect(m.ints("test.strings") == nil && m.strings("test.ints") == nil)
        #expect(m.floats("test.floats") == [0.25, -1.5] && m.floats("test.ints") == [1, -2, 3])
        #expect(m["test.u64s"] == .array([.uint64(.max)]))
        #expect(m["test.strings"]?.typeName == "array[string]")
    }
}

// MARK: - Reader and writer

@Suite struct GGUFFileTests {
    @Test func roundTripSmall() throws {
        let w = try GGUFSamples.small()
        let bytes = w.serialize()
        #expect(bytes.count == w.byteCount)
        let f = try GGUFFile(bytes: bytes)
        #expect(f.version == 3 && f.alignment == 32 && f.path == nil && f.fileSize == bytes.count)
        #expect(f.metadata == w.metadata)
        #expect(f.tensors == w.tensors.map(\.info))
        #expect(f.dataOffset % 32 == 0)
        for (salt, t) in f.tensors.enumerated() {
            #expect(Array(f.data(t)) == GGUFSamples.pattern(t.byteCount, salt: salt), "\(t.name)")
            #expect(t.offset % 32 == 0)
        }
        let q = try #require(f.tensor("q8_0.mat"))
        #expect(q.rowLength == 64 && q.rowCount == 2 && q.rowBytes == 68 && q.byteCount == 136 && q.elementCount == 128)
        let cube = try #require(f.tensor("bf16.cube"))
        #expect(cube.shape == [7, 2, 3] && cube.rowCount == 6 && cube.rowBytes == 14)
        #expect(f.tensor("nope") == nil)
        // Re-serializing what we read gives the same bytes.
        #expect(try GGUFWriter(copying: f).serialize() == bytes)
    }

    @Test func customAlignmentAndVersion2() throws {
        var w = GGUFWriter()
        try w.set("general.alignment", .uint32(64))
        try w.addTensor(name: "a", shape: [3], type: .f32, bytes: GGUFSamples.pattern(12, salt: 1))
        try w.addTensor(name: "b", shape: [32], type: .q8_0, bytes: GGUFSamples.pattern(34, salt: 2))
        var bytes = w.serialize()
        var f = try GGUFFile(bytes: bytes)
        #expect(f.alignment == 64 && f.dataOffset % 64 == 0 && f.tensor("b")?.offset == 64)
        #expect(Array(f.data(f.tensor("b")!)) == GGUFSamples.pattern(34, salt: 2))
        bytes[4] = 2  // the v2 layout is the same with 64-bit counts
        f = try GGUFFile(bytes: bytes)
        #expect(f.version == 2)
    }

    @Test func emptyFileWithNoTensors() throws {
        let bytes = GGUFWriter().serialize()
        let f = try GGUFFile(bytes: bytes)
        #expect(f.tensors.isEmpty && f.metadata.count == 0)
    }

    @Test func writesAtomicallyToDisk() throws {
        let dir = try GGUFSamples.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/out.gguf"
        let w = try GGUFSamples.small()
        var seen: [Double] = []
        try w.write(to: path, progress: { seen.append($0) })
        #expect(seen.last == 1 && seen == seen.sorted())
        let f = try GGUFFile(path: path)
        #expect(f.path == path && f.metadata == w.metadata && f.tensors == w.tensors.map(\.info))
        #expect(Array(f.bytes) == w.serialize())
        // Overwrite in place, then check no temporary files remain.
        try GGUFWriter().write(to: path)
        #expect(try GGUFFile(path: path).tensors.isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["out.gguf"])
    }

    @Test func writeFailuresLeaveNothingBehind() throws {
        let dir = try GGUFSamples.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let w = try GGUFSamples.small()
        // The destination is a non-empty directory: rename fails after the data was written.
        try FileManager.default.createDirectory(atPath: dir + "/taken/x", withIntermediateDirectories: true)
        #expect { try w.write(to: dir + "/taken") } throws: { ($0 as? SpikeRunError)?.kind == .io }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["taken"])
        // The directory does not exist.
        let err = #expect(throws: SpikeRunError.self) { try w.write(to: dir + "/missing/out.gguf") }
        #expect(err?.kind == .io && err?.message.contains("missing/") == true)
    }

    @Test func writerRejectsWhatReadersWouldReject() throws {
        var w = GGUFWriter()
        func rejects(_ what: String, _ body: (inout GGUFWriter) throws -> Void) {
            let e = #expect(throws: SpikeRunError.self, "\(what)") { try body(&w) }
            #expect(e?.kind == .invalidArgument, "\(what)")
        }
        rejects("nested array") { try $0.set("k", .array([.array([.uint8(1)])])) }
        rejects("mixed array") { try $0.set("k", .array([.uint8(1), .string("x")])) }
        rejects("empty key") { try $0.set("", .bool(true)) }
        rejects("alignment 48") { try $0.set("general.alignment", .uint32(48)) }
        rejects("alignment as string") { try $0.set("general.alignment", .string("32")) }
        try w.addTensor(name: "t", shape: [4], type: .f32, bytes: [UInt8](repeating: 0, count: 16))
        rejects("duplicate tensor") { try $0.addTensor(name: "t", shape: [4], type: .f32, bytes: [UInt8](repeating: 0, count: 16)) }
        rejects("wrong payload size") { try $0.addTensor(name: "u", shape: [4], type: .f32, bytes: [0]) }
        rejects("partial block") { try $0.addTensor(name: "u", shape: [31], type: .q8_0, bytes: []) }
        rejects("5 dims") { try $0.addTensor(name: "u", shape: [1, 1, 1, 1, 1], type: .f32, bytes: [0, 0, 0, 0]) }
        rejects("name too long") { try $0.addTensor(name: String(repeating: "n", count: 64), shape: [1], type: .i8, bytes: [0]) }
        #expect(w.tensors.count == 1 && w.metadata.count == 0)
        // Alignment may change after tensors were added: their offsets move.
        try w.addTensor(name: "u", shape: [1], type: .i8, bytes: [7])
        #expect(w.tensors[1].info.offset == 32)
        try w.set("general.alignment", .uint32(64))
        #expect(w.tensors[1].info.offset == 64)
        let f = try GGUFFile(bytes: w.serialize())
        #expect(f.tensor("u")?.offset == 64 && Array(f.data(f.tensor("u")!)) == [7])
        w.removeValue(forKey: "general.alignment")
        #expect(w.tensors[1].info.offset == 32)
    }

    @Test func missingOrUnreadableFileIsIOError() {
        let e1 = #expect(throws: SpikeRunError.self) { try GGUFFile(path: "/nonexistent/model.gguf") }
        #expect(e1?.kind == .io && e1?.message.contains("'/nonexistent/model.gguf'") == true)
        let e2 = #expect(throws: SpikeRunError.self) { try GGUFFile(path: NSTemporaryDirectory()) }
        #expect(e2?.kind == .io && e2?.message.contains("not a regular file") == true)
    }

    @Test func emptyFileOnDiskIsFormatError() throws {
        let dir = try GGUFSamples.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(FileManager.default.createFile(atPath: dir + "/empty.gguf", contents: Data()))
        let e = #expect(throws: SpikeRunError.self) { try GGUFFile(path: dir + "/empty.gguf") }
        #expect(e?.kind == .format && e?.message.contains("0 bytes") == true)
    }
}

// MARK: - Cross-checks with PyPI gguf

@Suite struct GGUFPythonTests {
    @Test func ourBytesMatchCheckedInFixtures() throws {
        let small = try Data(contentsOf: URL(fileURLWithPath: GGUFSamples.fixture("small.gguf")))
        #expect(try GGUFSamples.small().serialize() == [UInt8](small))
        let tiny = try Data(contentsOf: URL(fileURLWithPath: GGUFSamples.fixture("tiny-llama.gguf")))
        #expect(try GGUFSamples.tinyLlama().writer().serialize() == [UInt8](tiny))
    }

    @Test func pythonWriterProducesOurBytes() throws {
        let dir = try GGUFSamples.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let script = GGUFSamples.repoRoot.appendingPathComponent("tools/fuzz/make_fixtures.py").path
        _ = try runGGUFPython("import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')",
                              [script, dir])
        let small = try Data(contentsOf: URL(fileURLWithPath: dir + "/small.gguf"))
        #expect(try GGUFSamples.small().serialize() == [UInt8](small))
        let tiny = try Data(contentsOf: URL(fileURLWithPath: dir + "/tiny-llama.gguf"))
        #expect(try GGUFSamples.tinyLlama().writer().serialize() == [UInt8](tiny))
    }

    @Test func pythonReaderAgreesWithOursOnOurFile() throws {
        let dir = try GGUFSamples.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var w = try GGUFSamples.small()
        try w.set("general.alignment", .uint32(64))  // exercise a non-default alignment too
        try w.set("test.after", .string("tail"))
        let path = dir + "/ours.gguf"
        try w.write(to: path)
        let ours = GGUFSamples.dump(try GGUFFile(path: path), withData: true)
        let theirs = try runGGUFPython(ggufPythonDump, [path, "1"]).trimmingCharacters(in: .newlines)
        #expect(ours == theirs)
    }

    @Test func realModelMatchesPythonReader() throws {
        let path = GGUFSamples.realModelPath
        try #require(FileManager.default.fileExists(atPath: path), "real model missing at \(path): run 'make model'")
        let ours = GGUFSamples.dump(try GGUFFile(path: path), withData: false)
        let theirs = try runGGUFPython(ggufPythonDump, [path, "0"]).trimmingCharacters(in: .newlines)
        #expect(ours.count == theirs.count)
        #expect(ours == theirs)
    }
}

// MARK: - Real model and ModelConfig

@Suite struct GGUFRealModelTests {
    @Test func readsSmolLM2() throws {
        let path = GGUFSamples.realModelPath
        try #require(FileManager.default.fileExists(atPath: path), "real model missing at \(path): run 'make model'")
        let f = try GGUFFile(path: path)
        #expect(f.version == 3 && f.metadata.count == 33 && f.tensors.count == 272 && f.alignment == 32)
        #expect(Set(f.tensors.map(\.type)) == [.q4_1, .f32, .q8_0])
        #expect(f.metadata.string("general.architecture") == "llama")
        #expect(f.metadata.strings("tokenizer.ggml.tokens")?.count == 49152)
        #expect(f.metadata.strings("tokenizer.ggml.merges")?.count == 48900)
        let embd = try #require(f.tensor("token_embd.weight"))
        #expect(embd.shape == [576, 49152] && embd.type == .q8_0 && embd.rowBytes == 18 * 34)
        let last = f.tensors.max { $0.offset < $1.offset }!
        #expect(f.dataOffset + last.offset + last.byteCount <= f.fileSize)

        let c = try ModelConfig(gguf: f)
        #expect(c == ModelConfig(nLayer: 30, nEmbd: 576, nFF: 1536, nHead: 9, nHeadKV: 3, headDim: 64,
                                 nVocab: 49152, contextLength: 8192, ropeFreqBase: 100_000,
                                 ropeDimensionCount: 64, rmsNormEps: 1e-5, tiedOutput: true))
        let json = try JSONEncoder().encode(c)
        #expect(try JSONDecoder().decode(ModelConfig.self, from: json) == c)
    }
}

@Suite struct ModelConfigTests {
    @Test func tinyLlamaTiedAndUntied() throws {
        var spec = GGUFSamples.tinyLlama()
        var c = try ModelConfig(gguf: try spec.file())
        #expect(c == ModelConfig(nLayer: 2, nEmbd: 32, nFF: 64, nHead: 4, nHeadKV: 2, headDim: 8, nVocab: 16,
                                 contextLength: 128, ropeFreqBase: 10000, ropeDimensionCount: 8,
                                 rmsNormEps: 1e-5, tiedOutput: true))
        spec.tensors.append(("output.weight", [32, 16], .q4_0))
        c = try ModelConfig(gguf: try spec.file())
        #expect(!c.tiedOutput)
        // Optional keys fall back to llama.cpp's defaults.
        for k in ["llama.rope.freq_base", "llama.rope.dimension_count", "llama.vocab_size"] {
            spec.metadata[k] = nil
        }
        c = try ModelConfig(gguf: try spec.file())
        #expect(c.ropeFreqBase == 10000 && c.ropeDimensionCount == 8 && c.nVocab == 16)
        // Without head_count_kv every head has its own K/V, so K and V must be n_embd wide.
        spec.metadata["llama.attention.head_count_kv"] = nil
        for l in 0..<2 { for n in ["attn_k", "attn_v"] { spec.setTensor("blk.\(l).\(n).weight", shape: [32, 32]) } }
        c = try ModelConfig(gguf: try spec.file())
        #expect(c.nHeadKV == 4)
    }

    @Test func tinyQwen2() throws {
        // the tiny llama with its keys under 'qwen2.' and F32 q/k/v biases
        var spec = GGUFSamples.tinyLlama()
        for k in spec.metadata.keys where k.hasPrefix("llama.") {
            spec.metadata["qwen2." + k.dropFirst(6)] = spec.metadata[k]
            spec.metadata[k] = nil
        }
        spec.metadata["general.architecture"] = .string("qwen2")
        for l in 0..<2 {
            spec.tensors += [("blk.\(l).attn_q.bias", [32], .f32), ("blk.\(l).attn_k.bias", [16], .f32),
                             ("blk.\(l).attn_v.bias", [16], .f32)]
        }
        let c = try ModelConfig(gguf: try spec.file())
        #expect(c == ModelConfig(architecture: "qwen2", nLayer: 2, nEmbd: 32, nFF: 64, nHead: 4, nHeadKV: 2, headDim: 8,
                                 nVocab: 16, contextLength: 128, ropeFreqBase: 10000, ropeDimensionCount: 8,
                                 rmsNormEps: 1e-5, tiedOutput: true, ropeType: .neox, hasQKVBias: true))
        // qwen2 requires its biases, with the projections' widths
        var broken = spec
        broken.removeTensor("blk.1.attn_v.bias")
        #expect(throws: SpikeRunError.self) { try ModelConfig(gguf: try broken.file()) }
        broken = spec
        broken.setTensor("blk.0.attn_k.bias", shape: [32])
        do {
            _ = try ModelConfig(gguf: try broken.file())
            Issue.record("a mis-shaped bias loaded")
        } catch let e as SpikeRunError {
            #expect(e.message.contains("tensor 'blk.0.attn_k.bias' has shape [32], expected [16]"), "\(e.message)")
        }
        // a llama file with all three biases keeps NORM RoPE and uses them (as llama.cpp does)
        var llama = GGUFSamples.tinyLlama()
        llama.tensors += [("blk.0.attn_q.bias", [32], .f32), ("blk.0.attn_k.bias", [16], .f32), ("blk.0.attn_v.bias", [16], .f32),
                          ("blk.1.attn_q.bias", [32], .f32), ("blk.1.attn_k.bias", [16], .f32), ("blk.1.attn_v.bias", [16], .f32)]
        let lc = try ModelConfig(gguf: try llama.file())
        #expect(lc.ropeType == .norm && lc.hasQKVBias)
    }

    /// One broken thing per row, and the substring the error must contain.
    static let brokenModels: [(String, @Sendable (inout GGUFSamples.LlamaSpec) -> Void, SpikeRunError.Kind, String)] = [
        ("gemma architecture", { s in s.metadata["general.architecture"] = .string("gemma") },
         .unsupported, "architecture 'gemma' is not supported (supported: 'llama', 'qwen2')"),
        // qwen2 keys under 'qwen2.' and biases are required; the llama keys are not read
        ("qwen2 without its keys", { s in s.metadata["general.architecture"] = .string("qwen2") },
         .format, "'qwen2.block_count' is missing"),
        ("half the q/k/v biases", { s in s.tensors.append(("blk.0.attn_q.bias", [32], .f32)) }, .format,
         "tensor 'blk.0.attn_k.bias' is missing"),
        ("F16 bias", { s in for n in ["q", "k", "v"] { s.tensors.append(("blk.0.attn_\(n).bias", [n == "q" ? 32 : 16], .f16)) } },
         .unsupported, "attn_q.bias' has type F16; norm weights must be F32 (biases too)"),
        ("ffn bias", { s in s.tensors.append(("blk.1.ffn_up.bias", [64], .f32)) }, .unsupported,
         "tensor 'blk.1.ffn_up.bias' (a bias) is not supported"),
        ("no architecture", { s in s.metadata["general.architecture"] = nil }, .format, "'general.architecture' is missing"),
        ("no block count", { s in s.metadata["llama.block_count"] = nil }, .format, "'llama.block_count' is missing"),
        ("string head count", { s in s.metadata["llama.attention.head_count"] = .string("4") }, .format,
         "'llama.attention.head_count' must be an integer"),
        ("per-layer heads", { s in s.metadata["llama.attention.head_count"] = .array([.int32(4), .int32(4)]) },
         .unsupported, "per-layer values"),
        ("zero layers", { s in s.metadata["llama.block_count"] = .uint32(0) }, .format, "'llama.block_count' = 0 is out of range"),
        ("heads not dividing kv", { s in s.metadata["llama.attention.head_count_kv"] = .uint32(3) }, .format,
         "not a multiple of 'llama.attention.head_count_kv'"),
        ("embd not dividing heads", { s in s.metadata["llama.attention.head_count"] = .uint32(5); s.metadata["llama.attention.head_count_kv"] = .uint32(5) },
         .format, "'llama.embedding_length' (32) is not a multiple"),
        ("kv heads > heads", { s in s.metadata["llama.attention.head_count_kv"] = .uint32(8) }, .format, "out of range 1...4"),
        ("nan eps", { s in s.metadata["llama.attention.layer_norm_rms_epsilon"] = .float32(.nan) }, .format,
         "'llama.attention.layer_norm_rms_epsilon' = nan"),
        ("no eps", { s in s.metadata["llama.attention.layer_norm_rms_epsilon"] = nil }, .format, "layer_norm_rms_epsilon' is missing"),
        ("odd rope dims", { s in s.metadata["llama.rope.dimension_count"] = .uint32(7) }, .format, "must be even"),
        ("rope dims > head dim", { s in s.metadata["llama.rope.dimension_count"] = .uint32(16) }, .format, "out of range 1...8"),
        ("vocab mismatch", { s in s.metadata["llama.vocab_size"] = .uint32(17) }, .format, "'llama.vocab_size' is 17"),
        ("moe", { s in s.metadata["llama.expert_count"] = .uint32(8) }, .unsupported, "mixture-of-experts"),
        ("yarn", { s in s.metadata["llama.rope.scaling.type"] = .string("yarn") }, .unsupported, "RoPE scaling 'yarn'"),
        ("missing ffn_up", { s in s.removeTensor("blk.1.ffn_up.weight") }, .format, "tensor 'blk.1.ffn_up.weight' is missing"),
        ("missing embd", { s in s.removeTensor("token_embd.weight") }, .format, "tensor 'token_embd.weight' is missing"),
        ("wrong k shape", { s in s.setTensor("blk.0.attn_k.weight", shape: [32, 32]) }, .format,
         "tensor 'blk.0.attn_k.weight' has shape [32, 32], expected [32, 16]"),
        ("transposed down", { s in s.setTensor("blk.0.ffn_down.weight", shape: [32, 64]) }, .format,
         "tensor 'blk.0.ffn_down.weight' has shape [32, 64], expected [64, 32]"),
        ("IQ4_NL weight", { s in s.setTensor("blk.1.attn_q.weight", type: .iq4_nl) }, .unsupported,
         "tensor 'blk.1.attn_q.weight' has type IQ4_NL, which spikerun cannot compute with"),
        ("IQ4_NL output", { s in s.tensors.append(("output.weight", [32, 16], .iq4_nl)) }, .unsupported,
         "tensor 'output.weight' has type IQ4_NL"),
        ("F16 norm", { s in s.setTensor("output_norm.weight", type: .f16) }, .unsupported, "norm weights must be F32"),
        ("wrong output shape", { s in s.tensors.append(("output.weight", [32, 15], .f32)) }, .format,
         "tensor 'output.weight' has shape [32, 15], expected [32, 16]"),
        ("extra layer", { s in s.metadata["llama.block_count"] = .uint32(1) }, .format, "'blk.1.attn_q.weight' exists but"),
    ]

    @Test(arguments: ModelConfigTests.brokenModels)
    func rejects(_ what: String, _ edit: @Sendable (inout GGUFSamples.LlamaSpec) -> Void,
                 _ kind: SpikeRunError.Kind, _ expected: String) throws {
        var spec = GGUFSamples.tinyLlama()
        edit(&spec)
        let file = try spec.file()
        let e = #expect(throws: SpikeRunError.self, "\(what)") { try ModelConfig(gguf: file) }
        #expect(e?.kind == kind, "\(what): \(e?.message ?? "")")
        #expect(e?.message.contains(expected) == true, "\(what): got '\(e?.message ?? "")'")
    }
}
