import Foundation
import Testing
import SpikeRun

// Hostile input: targeted corruptions (each with the error it must produce), every truncation,
// and seeded random mutation. The libFuzzer harness in tools/fuzz/ runs the same
// `GGUFFuzzCheck.exercise` on unbounded input.

/// Builds GGUF bytes field by field, so a test can write values no valid writer would.
struct RawGGUF {
    var magic: [UInt8] = Array("GGUF".utf8)
    var version: UInt32 = 3
    var tensorCount: UInt64? = nil  // nil = the number of `tensors`
    var kvCount: UInt64? = nil      // nil = the number of `kvs`
    var kvs: [[UInt8]] = [Self.kv("general.architecture", 8, Self.str("llama"))]
    var tensors: [[UInt8]] = [Self.tensor("a", dims: [4], type: 0, offset: 0)]
    var alignment = 32
    var data: [UInt8] = Array(1...16)

    static func u32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
    static func u64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
    static func str(_ s: String) -> [UInt8] { u64(UInt64(s.utf8.count)) + Array(s.utf8) }
    static func kv(_ key: String, _ type: UInt32, _ payload: [UInt8]) -> [UInt8] { str(key) + u32(type) + payload }
    static func tensor(_ name: String, dims: [UInt64], type: UInt32, offset: UInt64, nDims: UInt32? = nil) -> [UInt8] {
        str(name) + u32(nDims ?? UInt32(dims.count)) + dims.flatMap(u64) + u32(type) + u64(offset)
    }

    var head: [UInt8] {
        magic + Self.u32(version) + Self.u64(tensorCount ?? UInt64(tensors.count))
            + Self.u64(kvCount ?? UInt64(kvs.count)) + kvs.joined() + tensors.joined()
    }
    /// Where the data section starts.
    var dataStart: Int { (head.count + alignment - 1) / alignment * alignment }
    var bytes: [UInt8] {
        var b = head
        b += [UInt8](repeating: 0, count: dataStart - b.count)
        b += data
        b += [UInt8](repeating: 0, count: (b.count + alignment - 1) / alignment * alignment - b.count)
        return b
    }
    func with(_ edit: (inout RawGGUF) -> Void) -> [UInt8] {
        var copy = self
        edit(&copy)
        return copy.bytes
    }
}

/// What every accepted file must survive, shared by the tests and the libFuzzer harness.
enum GGUFFuzzCheck {
    /// Reads everything a consumer might read; returns a checksum so nothing is optimized out.
    static func exercise(_ f: GGUFFile) -> Int {
        var sum = 0
        for t in f.tensors {
            let d = f.data(t)
            precondition(d.count == t.byteCount && f.dataOffset + t.offset + t.byteCount <= f.fileSize)
            if let first = d.first, let last = d.last { sum &+= Int(first) &+ Int(last) }
            precondition(f.tensor(t.name) == t && t.rowCount * t.rowBytes == t.byteCount)
        }
        for k in f.metadata.keys {
            _ = f.metadata.string(k); _ = f.metadata.int(k); _ = f.metadata.double(k)
            sum &+= f.metadata.strings(k)?.count ?? 0
            sum &+= f.metadata.ints(k)?.count ?? 0
            sum &+= f.metadata.floats(k)?.count ?? 0
        }
        do throws(SpikeRunError) {
            sum &+= try ModelConfig(gguf: f).nLayer
        } catch {
            precondition(error.kind == .format || error.kind == .unsupported, error.message)
        }
        // Whatever we accept, our writer can copy, and the copy reads back to the same bytes.
        if let w = try? GGUFWriter(copying: f) {
            let bytes = w.serialize()
            do throws(SpikeRunError) {
                let again = try GGUFWriter(copying: try GGUFFile(bytes: bytes)).serialize()
                precondition(again == bytes, "writer round trip differs")
            } catch {
                preconditionFailure("re-reading our own copy failed: \(error.message)")
            }
        }
        return sum
    }
}


@Suite struct GGUFCorruptionTests {
    static let base = RawGGUF()

    static var cases: [(String, [UInt8], SpikeRunError.Kind, String)] {
        let b = base
        let fileSize = b.bytes.count
        let i64max = UInt64(Int64.max)
        return [
            ("empty", [], .format, "only 0 bytes"),
            ("3 bytes", Array("GGU".utf8), .format, "only 3 bytes"),
            ("bad magic", b.with { $0.magic = Array("GGML".utf8) }, .format, "bad magic 47 47 4d 4c"),
            ("version 1", b.with { $0.version = 1 }, .unsupported, "GGUF version 1 is not supported"),
            ("version 4", b.with { $0.version = 4 }, .unsupported, "GGUF version 4 is not supported"),
            ("big-endian", b.with { $0.version = 0x0300_0000 }, .unsupported, "big-endian"),
            ("truncated header", Array(b.bytes[0..<12]), .format,
             "file is truncated: the tensor count needs 8 bytes at offset 8"),
            ("huge kv count", b.with { $0.kvCount = 1 << 40 }, .format, "header claims 1099511627776 metadata pairs"),
            ("max kv count", b.with { $0.kvCount = .max }, .format, "metadata pairs but only"),
            ("huge tensor count", b.with { $0.tensorCount = 1 << 50 }, .format, "tensors but only"),
            ("key length beyond file", b.with { $0.kvs = [RawGGUF.u64(5000) + Array("general".utf8)] }, .format,
             "metadata key #0 claims 5000 bytes"),
            ("key length max", b.with { $0.kvs = [RawGGUF.u64(.max)] }, .format, "claims 18446744073709551615 bytes"),
            ("string value beyond file", b.with { $0.kvs = [RawGGUF.kv("general.name", 8, RawGGUF.u64(1 << 33))] }, .format,
             "metadata key 'general.name' claims 8589934592 bytes"),
            ("array count huge", b.with { $0.kvs.append(RawGGUF.kv("x", 9, RawGGUF.u32(5) + RawGGUF.u64(1 << 61))) }, .format,
             "metadata key 'x' claims 2305843009213693952 int32 elements"),
            ("array count overflows", b.with { $0.kvs.append(RawGGUF.kv("x", 9, RawGGUF.u32(10) + RawGGUF.u64(.max / 2))) }, .format,
             "uint64 elements at offset"),
            ("string array count huge", b.with { $0.kvs.append(RawGGUF.kv("x", 9, RawGGUF.u32(8) + RawGGUF.u64(1 << 60))) }, .format,
             "string elements"),
            ("string in array beyond file",
             b.with { $0.kvs.append(RawGGUF.kv("x", 9, RawGGUF.u32(8) + RawGGUF.u64(1) + RawGGUF.u64(999))) }, .format,
             "element 0 of metadata key 'x' claims 999 bytes"),
            ("nested array", b.with { $0.kvs.append(RawGGUF.kv("x", 9, RawGGUF.u32(9) + RawGGUF.u64(1) + RawGGUF.u32(0) + RawGGUF.u64(0))) },
             .unsupported, "metadata key 'x' is a nested array"),
            ("unknown value type", b.with { $0.kvs.append(RawGGUF.kv("x", 13, [0])) }, .format,
             "metadata key 'x' has unknown value type id 13"),
            ("unknown element type", b.with { $0.kvs.append(RawGGUF.kv("x", 9, RawGGUF.u32(99) + RawGGUF.u64(0))) }, .format,
             "unknown element type id 99"),
            ("bool 2", b.with { $0.kvs.append(RawGGUF.kv("x", 7, [2])) }, .format, "metadata key 'x' is a bool with invalid byte 2"),
            ("duplicate key", b.with { $0.kvs.append($0.kvs[0]) }, .format, "duplicate metadata key 'general.architecture'"),
            ("empty key", b.with { $0.kvs.append(RawGGUF.kv("", 0, [1])) }, .format, "metadata key #1 is empty"),
            ("alignment 0", b.with { $0.kvs.append(RawGGUF.kv("general.alignment", 4, RawGGUF.u32(0))) }, .format,
             "general.alignment must be a power of two"),
            ("alignment 24", b.with { $0.kvs.append(RawGGUF.kv("general.alignment", 4, RawGGUF.u32(24))) }, .format,
             "general.alignment must be a power of two up to 2^30, got 24 (uint32)"),
            ("alignment string", b.with { $0.kvs.append(RawGGUF.kv("general.alignment", 8, RawGGUF.str("32"))) }, .format,
             "general.alignment must be a power of two"),
            ("truncated in kv type", Array(b.head[0..<(24 + 28 + 2)]), .format,
             "the type of metadata key 'general.architecture' needs 4 bytes"),
            ("5 dims", b.with { $0.tensors = [RawGGUF.tensor("a", dims: [4, 1, 1, 1, 1], type: 0, offset: 0)] }, .format,
             "tensor 'a' has 5 dimensions (expected 1 to 4)"),
            ("0 dims", b.with { $0.tensors = [RawGGUF.tensor("a", dims: [], type: 0, offset: 0)] }, .format,
             "tensor 'a' has 0 dimensions"),
            ("n_dims max", b.with { $0.tensors = [RawGGUF.tensor("a", dims: [4], type: 0, offset: 0, nDims: .max)] }, .format,
             "tensor 'a' has 4294967295 dimensions"),
            ("zero dim", b.with { $0.tensors = [RawGGUF.tensor("a", dims: [0], type: 0, offset: 0)] }, .format,
             "tensor 'a' has dimension 0 = 0"),
            ("negative dim", b.with { $0.tensors = [RawGGUF.tensor("a", dims: [4, .max], type: 0, offset: 0)] }, .format,
             "tensor 'a' has dimension 1 = -1"),
            ("element count overflow", b.with { $0.tensors = [RawGGUF.tensor("a", dims: [1 << 32, 1 << 32], type: 0, offset: 0)] },
             .format, "tensor 'a' shape [4294967296, 4294967296] has too many elements"),
            ("byte count overflow", b.with { $0.tensors = [RawGGUF.tensor("a", dims: [1 << 62], type: 0, offset: 0)] }, .format,
             "tensor 'a' shape [4611686018427387904] of type F32 is too large"),
            ("unknown tensor type", b.with { $0.tensors = [RawGGUF.tensor("a", dims: [4], type: 99, offset: 0)] }, .unsupported,
             "tensor 'a' has unknown type id 99"),
            ("removed tensor type", b.with { $0.tensors = [RawGGUF.tensor("a", dims: [32], type: 31, offset: 0)] }, .unsupported,
             "Q4_0_4_4, removed"),
            ("partial block", b.with { $0.tensors = [RawGGUF.tensor("a", dims: [33], type: 2, offset: 0)] }, .format,
             "tensor 'a' has rows of 33 elements, not a multiple of the Q4_0 block size 32"),
            ("misaligned offset", b.with { $0.tensors = [RawGGUF.tensor("a", dims: [4], type: 0, offset: 4)] }, .format,
             "tensor 'a' data offset 4 is not a multiple of the alignment 32"),
            ("offset beyond Int", b.with { $0.tensors = [RawGGUF.tensor("a", dims: [4], type: 0, offset: .max - 31)] }, .format,
             "has data offset 18446744073709551584"),
            ("offset + size overflows", b.with { $0.tensors = [RawGGUF.tensor("a", dims: [4], type: 0, offset: i64max - 31)] }, .format,
             "tensor 'a' data ends beyond any file"),
            ("data beyond EOF", b.with { $0.tensors = [RawGGUF.tensor("a", dims: [4], type: 0, offset: 32)] }, .format,
             "tensor 'a' data ends at byte \(b.dataStart + 48) but the file has \(fileSize) bytes"),
            ("data missing", b.head, .format, "tensor 'a' data ends at byte \(b.dataStart + 16) but the file has \(b.head.count) bytes"),
            ("huge tensor", b.with { $0.tensors = [RawGGUF.tensor("a", dims: [1 << 20, 1 << 20], type: 0, offset: 0)] }, .format,
             "tensor 'a' data ends at byte \(b.dataStart + (1 << 42))"),
            ("overlap", b.with { $0.tensors.append(RawGGUF.tensor("b", dims: [2], type: 0, offset: 0)) }, .format,
             "tensors 'b' and 'a' overlap"),
            ("duplicate tensor", b.with { $0.tensors.append($0.tensors[0]) }, .format, "duplicate tensor name 'a'"),
            ("empty tensor name", b.with { $0.tensors = [RawGGUF.tensor("", dims: [4], type: 0, offset: 0)] }, .format,
             "tensor #0 has an empty name"),
            ("tensor name beyond file", b.with { $0.tensors = [RawGGUF.u64(1 << 40)] }, .format, "tensor name #0 claims 1099511627776 bytes"),
            ("truncated in tensor info",
             Array(b.with { $0.tensors = [RawGGUF.tensor("long.tensor.name", dims: [4], type: 0, offset: 0)] }
                .prefix(b.head.count + 15 - 12)), .format,
             "the type of tensor 'long.tensor.name' needs 4 bytes"),
            ("too few bytes for tensor infos", Array(b.head.dropLast(12)), .format, "header claims 1 tensors but only 21 bytes follow"),
        ]
    }

    @Test func baseIsValid() throws {
        let f = try GGUFFile(bytes: Self.base.bytes)
        #expect(f.tensors.count == 1 && Array(f.data(f.tensors[0])) == Array(1...16))
    }

    @Test(arguments: GGUFCorruptionTests.cases)
    func rejects(_ what: String, _ bytes: [UInt8], _ kind: SpikeRunError.Kind, _ expected: String) {
        let e = #expect(throws: SpikeRunError.self, "\(what)") { try GGUFFile(bytes: bytes) }
        #expect(e?.kind == kind, "\(what): \(e?.message ?? "")")
        #expect(e?.message.contains(expected) == true, "\(what): got '\(e?.message ?? "")'")
        #expect(e?.message.contains("\n") == false)
    }

    /// Cutting a valid file anywhere before the end of its last tensor is an error.
    @Test func everyTruncationIsRejected() throws {
        let bytes = try GGUFSamples.small().serialize()
        let f = try GGUFFile(bytes: bytes)
        let end = f.tensors.map { f.dataOffset + $0.offset + $0.byteCount }.max()!
        for n in 0..<end {
            let e = #expect(throws: SpikeRunError.self, "prefix \(n)") { try GGUFFile(bytes: Array(bytes[0..<n])) }
            #expect(e?.kind == .format, "prefix \(n): \(e?.message ?? "")")
        }
        for n in end...bytes.count {  // only padding is missing
            #expect(try GGUFFile(bytes: Array(bytes[0..<n])).tensors.count == f.tensors.count)
        }
    }
}

@Suite struct GGUFFuzzTests {
    /// The seeds and any saved fuzz crashers (fuzz-*.gguf) are handled: read cleanly or
    /// rejected with a format/unsupported error.
    @Test func fixtureFilesAreHandled() throws {
        let dir = GGUFSamples.repoRoot.appendingPathComponent("Tests/Fixtures/gguf").path
        let names = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".gguf") }.sorted()
        #expect(names.contains("small.gguf") && names.contains("tiny-llama.gguf"))
        for name in names {
            do throws(SpikeRunError) {
                _ = GGUFFuzzCheck.exercise(try GGUFFile(path: dir + "/" + name))
                #expect(!name.hasPrefix("fuzz-reject-"), "\(name) should be rejected")
            } catch {
                #expect(name.hasPrefix("fuzz-reject-") && (error.kind == .format || error.kind == .unsupported),
                        "\(name): \(error)")
            }
        }
    }

    static let boundaryValues: [UInt64] = [
        0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 31, 32, 33, 63, 64, 255, 256, 0x7FFF, 0xFFFF,
        0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 1 << 32, 1 << 40, 1 << 62, UInt64(Int64.max),
        1 << 63, .max, .max - 1,
    ]

    /// Applies one random mutation; positions favour `hot` (the header and metadata).
    static func mutate(_ b: inout [UInt8], hot: Int, _ rng: inout SplitMix64) {
        func position() -> Int {
            guard !b.isEmpty else { return 0 }
            let limit = Int.random(in: 0..<4, using: &rng) == 0 ? b.count : min(hot, b.count)
            return Int.random(in: 0..<max(limit, 1), using: &rng)
        }
        switch Int.random(in: 0..<9, using: &rng) {
        case 0 where !b.isEmpty:  // flip a bit
            b[position()] ^= 1 << UInt8.random(in: 0..<8, using: &rng)
        case 1 where !b.isEmpty:  // set a byte
            b[position()] = [0, 0xFF, 0x7F, 0x80, UInt8.random(in: 0...255, using: &rng)].randomElement(using: &rng)!
        case 2, 3:  // write a boundary integer as u32 or u64
            let v = boundaryValues.randomElement(using: &rng)!
            let width = Bool.random(using: &rng) ? 4 : 8
            let p = position()
            for i in 0..<width where p + i < b.count { b[p + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }
        case 4:  // truncate
            b.removeLast(b.isEmpty ? 0 : Int.random(in: 0...b.count - position(), using: &rng))
        case 5:  // insert random bytes
            let p = position()
            b.insert(contentsOf: (0..<Int.random(in: 1...16, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) },
                     at: min(p, b.count))
        case 6 where b.count > 1:  // delete a range
            let p = position()
            b.removeSubrange(p..<min(b.count, p + Int.random(in: 1...16, using: &rng)))
        case 7 where b.count > 8:  // copy a chunk over another spot
            let from = position(), to = position()
            let n = min(Int.random(in: 1...32, using: &rng), b.count - from, b.count - to)
            let chunk = Array(b[from..<from + n])
            b.replaceSubrange(to..<to + n, with: chunk)
        default:  // swap two bytes
            if b.count > 1 { b.swapAt(position(), position()) }
        }
    }

    @Test func seededRandomMutations() throws {
        let iterations = Int(ProcessInfo.processInfo.environment["GGUF_FUZZ_ITERATIONS"] ?? "") ?? 4000
        var aligned = try GGUFSamples.small()
        try aligned.set("general.alignment", .uint32(8))
        let seeds = try [GGUFSamples.small().serialize(), GGUFSamples.tinyLlama().writer().serialize(),
                         aligned.serialize(), RawGGUF().bytes]
        let hot = try seeds.map { try GGUFFile(bytes: $0).dataOffset }
        var rng = SplitMix64(seed: 0x6767_5546_5EED)
        var accepted = 0, rejected = 0
        let clock = ContinuousClock()
        let start = clock.now
        for i in 0..<iterations {
            var bytes = seeds[i % seeds.count]
            for _ in 0..<Int.random(in: 1...4, using: &rng) { Self.mutate(&bytes, hot: hot[i % seeds.count], &rng) }
            do throws(SpikeRunError) {
                let f = try GGUFFile(bytes: bytes)
                _ = GGUFFuzzCheck.exercise(f)
                accepted += 1
            } catch {
                rejected += 1
                #expect(error.kind == .format || error.kind == .unsupported, "iteration \(i): \(error)")
                #expect(!error.message.isEmpty && !error.message.contains("\n"), "iteration \(i)")
            }
        }
        // Both outcomes must occur, or the mutations are too weak or too strong to test anything.
        #expect(accepted > iterations / 20 && rejected > iterations / 5, "accepted \(accepted), rejected \(rejected)")
        print("GGUF fuzz: \(iterations) mutants, \(accepted) accepted, \(rejected) rejected in \(clock.now - start)")
    }
}
