import CSpikeRun
import Foundation
import Testing

// Tests of the dense quantized kernels (csrc/quant) and the thread pool (csrc/cpu/sr-pool.c).
// Fixtures: Tests/Fixtures/quant, written by tools/fixtures/make_quant_fixtures.py.

private let quantFixtureDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Tests/Fixtures/quant")

private func quantFixture(_ name: String) throws -> [UInt8] {
    let url = quantFixtureDir.appendingPathComponent(name)
    guard let d = FileManager.default.contents(atPath: url.path) else {
        throw QuantTestError("missing fixture \(url.path); run tools/fixtures/make_quant_fixtures.py")
    }
    return [UInt8](d)
}

private struct QuantTestError: Error, CustomStringConvertible {
    let description: String
    init(_ s: String) { description = s }
}

private func floats(_ b: [UInt8]) -> [Float] {
    b.withUnsafeBytes { raw in (0..<(b.count / 4)).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } }
}

/// Weight types with their names as used in the fixtures.
private let quantWeightTypes: [(String, sr_type)] = [
    ("F32", SR_TYPE_F32), ("F16", SR_TYPE_F16), ("BF16", SR_TYPE_BF16),
    ("Q4_0", SR_TYPE_Q4_0), ("Q4_1", SR_TYPE_Q4_1), ("Q5_0", SR_TYPE_Q5_0), ("Q5_1", SR_TYPE_Q5_1),
    ("Q8_0", SR_TYPE_Q8_0), ("Q2_K", SR_TYPE_Q2_K), ("Q3_K", SR_TYPE_Q3_K),
    ("Q4_K", SR_TYPE_Q4_K), ("Q5_K", SR_TYPE_Q5_K), ("Q6_K", SR_TYPE_Q6_K),
]

private extension SplitMix64 {
    mutating func bytes(_ n: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: n)
        var i = 0
        while i < n {
            var r = next()
            for _ in 0..<8 where i < n { out[i] = UInt8(truncatingIfNeeded: r); r >>= 8; i += 1 }
        }
        return out
    }
    mutating func half(_ lo: Float, _ hi: Float, signed: Bool = true) -> UInt16 {
        var v = Float.random(in: lo...hi, using: &self)
        if signed && Bool.random(using: &self) { v = -v }
        return sr_fp32_to_fp16(v)
    }
}

private func put16(_ b: inout [UInt8], _ off: Int, _ v: UInt16) {
    b[off] = UInt8(v & 0xff)
    b[off + 1] = UInt8(v >> 8)
}

/// One random weight row of type t with n elements: random quants, realistic fp16 scales.
private func randomWeightRow(_ t: sr_type, _ n: Int, _ rng: inout SplitMix64) -> [UInt8] {
    switch t {
    case SR_TYPE_F32:
        return (0..<n).map { _ in rng.gauss() }.withUnsafeBytes { [UInt8]($0) }
    case SR_TYPE_F16:
        return (0..<n).map { _ in sr_fp32_to_fp16(rng.gauss()) }.withUnsafeBytes { [UInt8]($0) }
    case SR_TYPE_BF16:
        return (0..<n).map { _ in sr_fp32_to_bf16(rng.gauss()) }.withUnsafeBytes { [UInt8]($0) }
    default: break
    }
    let be = Int(sr_type_block_elems(t)), bb = sr_type_block_bytes(t)
    var b = rng.bytes(sr_row_bytes(t, Int64(n)))
    for blk in 0..<(n / be) {
        let o = blk * bb
        switch t {
        case SR_TYPE_Q4_0, SR_TYPE_Q5_0, SR_TYPE_Q8_0: put16(&b, o, rng.half(1e-4, 0.05))
        case SR_TYPE_Q4_1, SR_TYPE_Q5_1:
            put16(&b, o, rng.half(1e-4, 0.02, signed: false)); put16(&b, o + 2, rng.half(0, 0.2))
        case SR_TYPE_Q2_K:
            put16(&b, o + 80, rng.half(1e-4, 0.01, signed: false)); put16(&b, o + 82, rng.half(1e-4, 0.01, signed: false))
        case SR_TYPE_Q3_K: put16(&b, o + 108, rng.half(1e-4, 0.01))
        case SR_TYPE_Q4_K, SR_TYPE_Q5_K:
            put16(&b, o, rng.half(1e-4, 0.01, signed: false)); put16(&b, o + 2, rng.half(1e-4, 0.01, signed: false))
        case SR_TYPE_Q6_K: put16(&b, o + 208, rng.half(1e-4, 0.01))
        default: break
        }
    }
    return b
}

private func randomActivations(_ n: Int, _ rng: inout SplitMix64, mode: Int) -> [Float] {
    (0..<n).map { i -> Float in
        switch mode {
        case 0: return rng.gauss()
        case 1: return rng.gauss() * 100
        case 2: return i % 3 == 0 ? 0 : rng.gauss()
        case 3: return Float(Int.random(in: -8...8, using: &rng)) * 0.5   // many exact ties
        default: return 0
        }
    }
}

private func quantizeAct(_ t: sr_type, _ x: [Float]) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: sr_act_row_bytes(t, Int64(x.count)))
    x.withUnsafeBufferPointer { xp in out.withUnsafeMutableBytes { sr_quantize_act_row(t, xp.baseAddress, $0.baseAddress, Int64(x.count)) } }
    return out
}

private func vecDot(_ t: sr_type, _ n: Int, _ w: [UInt8], _ a: [UInt8]) -> Float {
    w.withUnsafeBytes { wp in a.withUnsafeBytes { ap in sr_vec_dot(t, Int64(n), wp.baseAddress, ap.baseAddress) } }
}

private func dequant(_ t: sr_type, _ src: [UInt8], _ n: Int) -> [Float] {
    var out = [Float](repeating: .nan, count: n)
    src.withUnsafeBytes { s in out.withUnsafeMutableBufferPointer { sr_dequantize_row(t, s.baseAddress, $0.baseAddress, Int64(n)) } }
    return out
}

private func withLevel<T>(_ lvl: Int32, _ body: () throws -> T) rethrows -> T {
    sr_set_simd_level(lvl)
    defer { sr_set_simd_level(Int32.max) }   // clamps to the best the CPU has
    return try body()
}

/// Every kernel level this CPU runs: 0 portable, 1 AVX2, 2 AVX-512 VNNI.
/// Every kernel level this CPU can run (0 portable, 1 AVX2, 2 AVX-512 VNNI, 3 AVX-VNNI).
private let simdLevels: [Int32] = (0...3).filter { sr_simd_level_available($0) }

private var hasAVX2: Bool { simdLevels.count > 1 }

// MARK: - types and fp16

@Suite("Quant: types and conversions")
struct QuantTypeTests {
    @Test("type table matches ggml")
    func typeTable() {
        let expect: [(sr_type, Int64, Int, sr_type)] = [
            (SR_TYPE_F32, 1, 4, SR_TYPE_F32), (SR_TYPE_F16, 1, 2, SR_TYPE_F16), (SR_TYPE_BF16, 1, 2, SR_TYPE_BF16),
            (SR_TYPE_Q4_0, 32, 18, SR_TYPE_Q8_0), (SR_TYPE_Q4_1, 32, 20, SR_TYPE_Q8_1),
            (SR_TYPE_Q5_0, 32, 22, SR_TYPE_Q8_0), (SR_TYPE_Q5_1, 32, 24, SR_TYPE_Q8_1),
            (SR_TYPE_Q8_0, 32, 34, SR_TYPE_Q8_0), (SR_TYPE_Q2_K, 256, 84, SR_TYPE_Q8_K),
            (SR_TYPE_Q3_K, 256, 110, SR_TYPE_Q8_K), (SR_TYPE_Q4_K, 256, 144, SR_TYPE_Q8_K),
            (SR_TYPE_Q5_K, 256, 176, SR_TYPE_Q8_K), (SR_TYPE_Q6_K, 256, 210, SR_TYPE_Q8_K),
        ]
        for (t, be, bb, at) in expect {
            #expect(sr_type_supported(Int32(t.rawValue)))
            #expect(sr_type_block_elems(t) == be)
            #expect(sr_type_block_bytes(t) == bb)
            #expect(sr_act_type_for(t) == at)
            #expect(sr_row_bytes(t, 512) == 512 / Int(be) * bb)
        }
        #expect(sr_type_block_bytes(SR_TYPE_Q8_1) == 36 && sr_type_block_bytes(SR_TYPE_Q8_K) == 292)
        #expect(sr_act_row_bytes(SR_TYPE_Q4_K, 512) == 2 * 292)
        for bad: Int32 in [-1, 4, 5, 9, 15, 16, 29, 31, 1000] { #expect(!sr_type_supported(bad)) }
    }

    @Test("fp16 -> fp32 exhaustive, round trip of all 65536 halves")
    func fp16Exhaustive() {
        var bad = 0
        for h in 0...0xffff {
            let bits = UInt16(h)
            let f = sr_fp16_to_fp32(bits)
            #if arch(x86_64) || arch(arm64)
            let ref = Float(Float16(bitPattern: bits))
            if f.isNaN != ref.isNaN || (!f.isNaN && f.bitPattern != ref.bitPattern) { bad += 1 }
            #endif
            let back = sr_fp32_to_fp16(f)
            if f.isNaN {
                if back != bits | 0x0200 { bad += 1 }   // NaNs come back quiet, payload kept
            } else if back != bits {
                bad += 1
            }
        }
        #expect(bad == 0)
    }

    @Test("fp32 -> fp16 rounds to nearest even on every tie, saturates to inf like F16C")
    func fp16Ties() {
        var bad = 0
        for h in 0..<0x7bff {   // adjacent finite positive halves h, h+1 (subnormals included)
            let lo = sr_fp16_to_fp32(UInt16(h)), hi = sr_fp16_to_fp32(UInt16(h + 1))
            let mid = (lo + hi) / 2   // exact in f32
            let even = UInt16(h % 2 == 0 ? h : h + 1)
            if sr_fp32_to_fp16(mid) != even { bad += 1 }
            if sr_fp32_to_fp16(-mid) != even | 0x8000 { bad += 1 }
            if sr_fp32_to_fp16(mid.nextDown) != UInt16(h) { bad += 1 }
            if sr_fp32_to_fp16(mid.nextUp) != UInt16(h + 1) { bad += 1 }
        }
        #expect(bad == 0)
        #expect(sr_fp32_to_fp16(65520) == 0x7c00)               // tie above 65504 -> inf
        #expect(sr_fp32_to_fp16(Float(65520).nextDown) == 0x7bff)
        #expect(sr_fp32_to_fp16(1e10) == 0x7c00 && sr_fp32_to_fp16(-1e10) == 0xfc00)
        #expect(sr_fp32_to_fp16(.infinity) == 0x7c00)
        #expect(sr_fp32_to_fp16(0x1p-25) == 0)                   // tie between 0 and the smallest subnormal
        #expect(sr_fp32_to_fp16(Float(0x1p-25).nextUp) == 1)
        #expect(sr_fp32_to_fp16(-0.0) == 0x8000)
        #expect(sr_fp32_to_fp16(.nan) & 0x7e00 == 0x7e00)
        #if arch(x86_64) || arch(arm64)
        var rng = SplitMix64(seed: 7)
        var badRandom = 0
        for _ in 0..<200_000 {
            let f = Float(bitPattern: UInt32(truncatingIfNeeded: rng.next()))
            if f.isNaN { continue }
            if sr_fp32_to_fp16(f) != Float16(f).bitPattern { badRandom += 1 }
        }
        #expect(badRandom == 0)
        #endif
    }

    @Test("bf16 conversions match ggml_compute_fp32_to_bf16")
    func bf16() {
        #expect(sr_bf16_to_fp32(0x3f80) == 1.0)
        #expect(sr_fp32_to_bf16(1.0) == 0x3f80)
        #expect(sr_fp32_to_bf16(Float(bitPattern: 0x3f80_8000)) == 0x3f80)   // tie -> even
        #expect(sr_fp32_to_bf16(Float(bitPattern: 0x3f81_8000)) == 0x3f82)   // tie -> even
        #expect(sr_fp32_to_bf16(Float(bitPattern: 0x7f80_0001)) == 0x7fc0)   // NaN forced quiet
    }
}

// MARK: - kernels against fixtures and against each other
// Serialized: these tests switch the process-wide SIMD level.

@Suite("Quant: kernels", .serialized)
struct QuantKernelTests {
    @Test("sr_dequantize_row equals gguf-py's dequantize on random blocks of every type")
    func dequantMatchesGGUF() throws {
        for (name, t) in quantWeightTypes {
            let raw = try quantFixture("deq_\(name).bin")
            let ref = floats(try quantFixture("deq_\(name).f32"))
            let got = dequant(t, raw, ref.count)
            let bad = zip(got, ref).filter { $0.bitPattern != $1.bitPattern }.count
            #expect(bad == 0, "\(name): \(bad) of \(ref.count) values differ from gguf-py")
        }
    }

    @Test("the kernel levels follow the CPU's flags, and the default is the best of them")
    func levelsFollowCPUFlags() throws {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return }
        let flags = Set(line.split(separator: " ").map(String.init))
        let avx2 = flags.isSuperset(of: ["avx2", "fma", "f16c"])
        #expect(sr_simd_level_available(1) == avx2)
        #expect(sr_simd_level_available(2) == (avx2 && flags.isSuperset(of: ["avx512f", "avx512vl", "avx512bw", "avx512_vnni"])))
        #expect(sr_simd_level_available(3) == (avx2 && flags.contains("avx_vnni")))
        let saved = sr_simd_level()
        defer { sr_set_simd_level(saved) }
        sr_set_simd_level(Int32.max)
        let best: Int32 = sr_simd_level_available(2) ? 2 : sr_simd_level_available(3) ? 3 : avx2 ? 1 : 0
        #expect(sr_simd_level() == best)
        sr_set_simd_level(3)   // unavailable levels fall back to the best one below them
        #expect(sr_simd_level() == (sr_simd_level_available(3) ? 3 : sr_simd_level_available(2) ? 2 : avx2 ? 1 : 0))
    }

    @Test("sr_quantize_act_row equals the llama.cpp rule (zeros, ties, outliers) at every SIMD level")
    func actQuantMatchesLlamaRule() throws {
        let x = floats(try quantFixture("act_in.f32"))
        let rows = 8, n = x.count / rows
        let acts: [(String, sr_type)] = [("Q8_0", SR_TYPE_Q8_0), ("Q8_1", SR_TYPE_Q4_1), ("Q8_K", SR_TYPE_Q4_K),
                                         ("F16", SR_TYPE_F16), ("BF16", SR_TYPE_BF16)]
        for lvl in simdLevels {
            try withLevel(lvl) {
                for (name, wt) in acts {
                    let expect = try quantFixture("act_\(name).bin")
                    let rb = sr_act_row_bytes(wt, Int64(n))
                    for r in 0..<rows {
                        let got = quantizeAct(wt, Array(x[(r * n)..<((r + 1) * n)]))
                        #expect(got == Array(expect[(r * rb)..<((r + 1) * rb)]), "\(name) row \(r) level \(lvl)")
                    }
                }
            }
        }
    }

    @Test("Q8_K activations: every level's bytes equal the reference's on random blocks, opposite-sign ties of the largest magnitude, zeros, NaN and infinity")
    func q8KEveryLevel() {
        var rng = SplitMix64(seed: 8257)   // seeded like the other kernel tests: a failure reproduces
        var blocks: [[Float]] = []
        for b in 0..<24 {
            var x = (0..<256).map { _ in Float.random(in: -3...3, using: &rng) * (b % 3 == 0 ? 1e-3 : 1) }
            switch b % 6 {
            case 1: x[17] = 7; x[3] = -7          // a tie: the first one (negative) sets the sign
            case 2: x[200] = -9; x[250] = 9
            case 3: x = [Float](repeating: 0, count: 256)
            case 4: x[100] = .nan
            case 5: x[5] = -.infinity
            default: break
            }
            blocks.append(x)
        }
        let row = blocks.flatMap { $0 }
        let ref = withLevel(0) { quantizeAct(SR_TYPE_Q4_K, row) }
        for lvl in simdLevels.dropFirst() {
            let got = withLevel(lvl) { quantizeAct(SR_TYPE_Q4_K, row) }
            for b in 0..<blocks.count {
                let r = (b * 292)..<((b + 1) * 292)
                #expect(Array(got[r]) == Array(ref[r]), "block \(b) (case \(b % 6)) level \(lvl)")
            }
        }
    }

    @Test("sr_vec_dot and sr_matmul equal llama.cpp's ggml_vec_dot_* bit for bit (golden fixtures)")
    func dotMatchesLlamaCpp() throws {
        let x = floats(try quantFixture("act_in.f32"))
        let nAct = 8, n = x.count / nAct, nW = 6
        for lvl in simdLevels {
            try withLevel(lvl) {
                for (name, t) in quantWeightTypes {
                    let w = try quantFixture("dot_\(name).w"), a = try quantFixture("dot_\(name).a")
                    let golden = floats(try quantFixture("dot_\(name).f32"))   // [w row][act row]
                    let wrb = sr_row_bytes(t, Int64(n)), arb = sr_act_row_bytes(t, Int64(n))
                    for k in 0..<nAct {   // our quantization of the same floats = llama.cpp's
                        let q = quantizeAct(t, Array(x[(k * n)..<((k + 1) * n)]))
                        #expect(q == Array(a[(k * arb)..<((k + 1) * arb)]), "\(name) act row \(k)")
                    }
                    var bad = 0
                    for i in 0..<nW {
                        for k in 0..<nAct {
                            let s = vecDot(t, n, Array(w[(i * wrb)..<((i + 1) * wrb)]), Array(a[(k * arb)..<((k + 1) * arb)]))
                            if s.bitPattern != golden[i * nAct + k].bitPattern { bad += 1 }
                        }
                    }
                    var y = [Float](repeating: .nan, count: nW * nAct)
                    w.withUnsafeBytes { wp in a.withUnsafeBytes { ap in y.withUnsafeMutableBufferPointer {
                        sr_matmul(nil, t, wp.baseAddress, Int64(n), Int64(nW), ap.baseAddress, Int64(nAct), $0.baseAddress)
                    } } }
                    for i in 0..<nW { for k in 0..<nAct where y[k * nW + i].bitPattern != golden[i * nAct + k].bitPattern { bad += 1 } }
                    #expect(bad == 0, "\(name) level \(lvl): \(bad) results differ from llama.cpp")
                }
            }
        }
    }

    @Test("portable == AVX2 == AVX-512 VNNI == AVX-VNNI bit for bit: activation quantization and sr_vec_dot on thousands of random rows",
          .requires(.avx2))
    func everyLevelEqualsPortable() {
        guard Prerequisite.avx2.check() else { return }
        var rng = SplitMix64(seed: 0x5eed)
        for (name, t) in quantWeightTypes {
            let be = Int(sr_type_block_elems(t))
            var badQ = 0, badD = 0
            let rows = be == 256 ? 600 : 1500
            for r in 0..<rows {
                let n = be == 1 ? Int.random(in: 1...700, using: &rng) : be * Int.random(in: 1...(be == 256 ? 6 : 40), using: &rng)
                let w = randomWeightRow(t, n, &rng)
                let x = randomActivations(n, &rng, mode: r % 5)
                let a0 = withLevel(0) { quantizeAct(t, x) }
                if simdLevels.dropFirst().contains(where: { l in withLevel(l) { quantizeAct(t, x) } != a0 }) { badQ += 1 }
                var a = a0
                if r % 7 == 3, [SR_TYPE_Q4_0, SR_TYPE_Q5_0, SR_TYPE_Q8_0, SR_TYPE_Q4_1, SR_TYPE_Q5_1].contains(t) {
                    // raw int8 quants incl. -128 (sign-trick wrap and maddubs saturation edges)
                    let blk = sr_type_block_bytes(sr_act_type_for(t)), off = sr_act_type_for(t) == SR_TYPE_Q8_1 ? 4 : 2
                    for b in 0..<(n / 32) { for j in 0..<32 { a[b * blk + off + j] = UInt8(truncatingIfNeeded: rng.next()) } }
                }
                let s0 = withLevel(0) { vecDot(t, n, w, a) }
                if simdLevels.dropFirst().contains(where: { l in withLevel(l) { vecDot(t, n, w, a) }.bitPattern != s0.bitPattern }) { badD += 1 }
            }
            #expect(badQ == 0, "\(name): activation quantization differs on \(badQ) rows")
            #expect(badD == 0, "\(name): dot differs on \(badD) of \(rows) rows")
        }
    }

    @Test("sr_vec_dot is close to a double-precision dot of the dequantized rows")
    func dotVsDouble() {
        var rng = SplitMix64(seed: 99)
        for lvl in simdLevels {
            withLevel(lvl) {
                for (name, t) in quantWeightTypes {
                    let be = Int(sr_type_block_elems(t))
                    var worst = 0.0
                    for r in 0..<200 {
                        let n = be == 1 ? 32 * Int.random(in: 1...40, using: &rng) + r % 32 : be * Int.random(in: 1...(be == 256 ? 8 : 64), using: &rng)
                        let w = randomWeightRow(t, n, &rng)
                        let a = quantizeAct(t, randomActivations(n, &rng, mode: r % 4))
                        let wd = dequant(t, w, n), ad = dequant(sr_act_type_for(t), a, n)
                        var ref = 0.0, mag = 0.0
                        for i in 0..<n { ref += Double(wd[i]) * Double(ad[i]); mag += abs(Double(wd[i]) * Double(ad[i])) }
                        // Q4_1 / Q5_1: the m*s term uses s = fp16(d*sum(q)) with the unrounded d
                        var extra = 0.0
                        if t == SR_TYPE_Q4_1 || t == SR_TYPE_Q5_1 {
                            let bb = sr_type_block_bytes(t)
                            for b in 0..<(n / 32) {
                                let m = Double(abs(sr_fp16_to_fp32(UInt16(w[b * bb + 2]) | UInt16(w[b * bb + 3]) << 8)))
                                extra += m * (0..<32).reduce(0.0) { $0 + abs(Double(ad[b * 32 + $1])) }
                            }
                        }
                        let s = Double(vecDot(t, n, w, a))
                        let err = abs(s - ref), tol = 2e-5 * mag + 2e-3 * extra + 1e-30
                        worst = max(worst, err / tol)
                    }
                    #expect(worst <= 1, "\(name) level \(lvl): error/tolerance reached \(worst)")
                }
            }
        }
    }

    @Test("sr_matmul: 1, 2, 3 threads and n_tok 1...9 equal single-threaded and per-pair dots bit for bit")
    func matmulThreaded() {
        var rng = SplitMix64(seed: 4242)
        let pools = [sr_pool_create(1), sr_pool_create(2), sr_pool_create(3)]
        defer { pools.forEach { sr_pool_free($0) } }
        for lvl in simdLevels {
            withLevel(lvl) {
                for (name, t) in quantWeightTypes {
                    let be = Int(sr_type_block_elems(t))
                    let nIn = be == 256 ? 512 : (be == 1 ? 200 : 96), nOut = 45
                    let wrb = sr_row_bytes(t, Int64(nIn)), arb = sr_act_row_bytes(t, Int64(nIn))
                    var w = [UInt8]()
                    for _ in 0..<nOut { w += randomWeightRow(t, nIn, &rng) }
                    var bad = 0
                    for nTok in 1...9 {
                        var a = [UInt8]()
                        let x = (0..<(nIn * nTok)).map { _ in rng.gauss() }
                        for k in 0..<nTok { a += quantizeAct(t, Array(x[(k * nIn)..<((k + 1) * nIn)])) }
                        var ref = [Float](repeating: 0, count: nOut * nTok)
                        for k in 0..<nTok {
                            for o in 0..<nOut {
                                ref[k * nOut + o] = vecDot(t, nIn, Array(w[(o * wrb)..<((o + 1) * wrb)]), Array(a[(k * arb)..<((k + 1) * arb)]))
                            }
                        }
                        for pool in [nil] + pools {
                            var y = [Float](repeating: .nan, count: nOut * nTok)
                            w.withUnsafeBytes { wp in a.withUnsafeBytes { ap in y.withUnsafeMutableBufferPointer {
                                sr_matmul(pool, t, wp.baseAddress, Int64(nIn), Int64(nOut), ap.baseAddress, Int64(nTok), $0.baseAddress)
                            } } }
                            bad += zip(y, ref).filter { $0.bitPattern != $1.bitPattern }.count
                            // float reference path: threaded == single-threaded, close to double
                            var yf = [Float](repeating: .nan, count: nOut * nTok)
                            var yf1 = [Float](repeating: .nan, count: nOut * nTok)
                            w.withUnsafeBytes { wp in x.withUnsafeBufferPointer { xp in
                                yf.withUnsafeMutableBufferPointer {
                                    sr_matmul_f32(pool, t, wp.baseAddress, Int64(nIn), Int64(nOut), xp.baseAddress, Int64(nTok), $0.baseAddress)
                                }
                                yf1.withUnsafeMutableBufferPointer {
                                    sr_matmul_f32(nil, t, wp.baseAddress, Int64(nIn), Int64(nOut), xp.baseAddress, Int64(nTok), $0.baseAddress)
                                }
                            } }
                            bad += zip(yf, yf1).filter { $0.bitPattern != $1.bitPattern }.count
                        }
                    }
                    #expect(bad == 0, "\(name) level \(lvl): \(bad) threaded results differ")
                }
            }
        }
    }

    @Test("ggml's softmax numerator, SwiGLU and tinyBLAS-order f16 rows: portable == AVX2 bit for bit, close to exact")
    func attentionAndActivationOps() {
        var rng = SplitMix64(seed: 0xe4f)
        var bad = 0, far = 0
        for r in 0..<1500 {
            let n = Int.random(in: 1...300, using: &rng)
            var x = (0..<n).map { _ in Float.random(in: -110...25, using: &rng) }
            if r % 3 == 0 { x[Int.random(in: 0..<n, using: &rng)] = -.infinity }   // masked column
            if r % 5 == 0 { x[Int.random(in: 0..<n, using: &rng)] = 88.5 }          // overflows to inf
            let mx = r % 7 == 0 ? Float(0) : (x.filter { $0.isFinite }.max() ?? 0)
            var sums = [Double](), ys = [[Float]]()
            for lvl in simdLevels {
                var y = [Float](repeating: .nan, count: n)
                let sum = withLevel(lvl) { sr_softmax_exp(Int64(n), &y, x, mx) }
                sums.append(sum); ys.append(y)
            }
            if ys.contains(where: { $0.map(\.bitPattern) != ys[0].map(\.bitPattern) }) || sums.contains(where: { $0.bitPattern != sums[0].bitPattern }) { bad += 1 }
            for (v, xi) in zip(ys[0], x) where xi - mx > -80 && xi - mx < 80 {
                let e = exp(Double(xi - mx))
                if abs(Double(v) - e) > 3e-7 * e { far += 1 }   // ggml's bound: 1.45 ulp + 0.5
            }
            let g = (0..<n).map { _ in Float.random(in: -4...4, using: &rng) }
            let xs = (0..<n).map { _ in Float.random(in: -90...90, using: &rng) }
            var sw = [[Float]]()
            for lvl in simdLevels {
                var y = [Float](repeating: .nan, count: n)
                withLevel(lvl) { sr_swiglu(Int64(n), &y, xs, g) }
                sw.append(y)
            }
            if sw.contains(where: { $0.map(\.bitPattern) != sw[0].map(\.bitPattern) }) { bad += 1 }
            for i in 0..<n {
                let e = Double(xs[i]) / (1 + exp(-Double(xs[i]))) * Double(g[i])
                if abs(Double(sw[0][i]) - e) > 1e-6 * max(abs(e), 1e-30) + 1e-37 { far += 1 }
            }
            // f16 rows: multiples of 8 take tinyBLAS's order, others fall back to the dot product
            let len = r % 4 == 0 ? Int.random(in: 1...90, using: &rng) : 8 * Int.random(in: 1...40, using: &rng)
            let rows = Int.random(in: 1...9, using: &rng)
            let stride = len + Int.random(in: 0...5, using: &rng)
            let xh = (0..<(rows * stride)).map { _ in sr_fp32_to_fp16(rng.gauss()) }
            let yh = (0..<len).map { _ in sr_fp32_to_fp16(rng.gauss()) }
            var outs = [[Float]]()
            for lvl in simdLevels {
                var o = [Float](repeating: .nan, count: rows)
                withLevel(lvl) { sr_f16_rows_gemm(Int64(len), xh, stride, Int64(rows), yh, &o) }
                outs.append(o)
            }
            if outs.contains(where: { $0.map(\.bitPattern) != outs[0].map(\.bitPattern) }) { bad += 1 }
            if len % 8 != 0 {
                var d = [Float](repeating: .nan, count: rows)
                sr_vec_dot_f16_rows(Int64(len), xh, stride, Int64(rows), yh, &d)
                if d.map(\.bitPattern) != outs[0].map(\.bitPattern) { bad += 1 }
            }
            for k in 0..<rows {
                var e = 0.0, m = 0.0
                for i in 0..<len {
                    let p = Double(sr_fp16_to_fp32(xh[k * stride + i])) * Double(sr_fp16_to_fp32(yh[i]))
                    e += p; m += abs(p)
                }
                if abs(Double(outs[0][k]) - e) > 1e-5 * m + 1e-6 { far += 1 }
            }
        }
        #expect(bad == 0, "\(bad) rows differ between the portable and the SIMD kernels")
        #expect(far == 0, "\(far) values are further from the exact result than the kernels' error bound")
    }

    @Test("sr_matmul_f32: every SIMD level bit for bit, close to a double-precision reference")
    func matmulF32() {
        var rng = SplitMix64(seed: 777)
        for (name, t) in quantWeightTypes {
            let be = Int(sr_type_block_elems(t))
            for nIn in be == 1 ? [1, 31, 33, 100, 5000] : [be, be * 3, be * 20] {
                let nOut = 7, nTok = 3
                var w = [UInt8]()
                for _ in 0..<nOut { w += randomWeightRow(t, nIn, &rng) }
                let x = (0..<(nIn * nTok)).map { _ in rng.gauss() }
                func run(_ lvl: Int32) -> [Float] {
                    withLevel(lvl) {
                        var y = [Float](repeating: .nan, count: nOut * nTok)
                        w.withUnsafeBytes { wp in x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer {
                            sr_matmul_f32(nil, t, wp.baseAddress, Int64(nIn), Int64(nOut), xp.baseAddress, Int64(nTok), $0.baseAddress)
                        } } }
                        return y
                    }
                }
                let y0 = run(0)
                for lvl in simdLevels.dropFirst() { #expect(zip(y0, run(lvl)).allSatisfy { $0.bitPattern == $1.bitPattern }, "\(name) n=\(nIn) level \(lvl)") }
                let rb = sr_row_bytes(t, Int64(nIn))
                for o in 0..<nOut {
                    let wd = dequant(t, Array(w[(o * rb)..<((o + 1) * rb)]), nIn)
                    for k in 0..<nTok {
                        var ref = 0.0, mag = 0.0
                        for i in 0..<nIn { let p = Double(wd[i]) * Double(x[k * nIn + i]); ref += p; mag += abs(p) }
                        #expect(abs(Double(y0[k * nOut + o]) - ref) <= 1e-5 * mag + 1e-30, "\(name) n=\(nIn)")
                    }
                }
            }
        }
    }
}

// MARK: - thread pool

/// Per-thread call counters; slot ith is only written by thread ith (one cache line each).
private final class PoolProbe {
    static let stride = 16
    let counts: UnsafeMutablePointer<Int32>
    let nths: UnsafeMutablePointer<Int32>
    let slots: Int
    init(slots: Int) {
        self.slots = slots
        counts = .allocate(capacity: slots * Self.stride)
        counts.initialize(repeating: 0, count: slots * Self.stride)
        nths = .allocate(capacity: slots * Self.stride)
        nths.initialize(repeating: 0, count: slots * Self.stride)
    }
    deinit { counts.deallocate(); nths.deallocate() }
}

private let poolProbeFn: sr_pool_fn = { ctx, ith, nth in
    let p = Unmanaged<PoolProbe>.fromOpaque(ctx!).takeUnretainedValue()
    if ith >= 0 && Int(ith) < p.slots {
        p.counts[Int(ith) * PoolProbe.stride] += 1
        p.nths[Int(ith) * PoolProbe.stride] = nth
    }
}

@Suite("Quant: thread pool")
struct ThreadPoolTests {
    @Test("every ith runs exactly once per run, over many runs, then a clean free", arguments: [1, 2, 3, 5])
    func manyRuns(threads: Int) {
        guard let pool = sr_pool_create(Int32(threads)) else { Issue.record("sr_pool_create failed"); return }
        defer { sr_pool_free(pool) }
        #expect(sr_pool_threads(pool) == Int32(threads))
        let probe = PoolProbe(slots: 8)
        let ctx = Unmanaged.passUnretained(probe).toOpaque()
        let runs = 1500
        for r in 0..<runs {
            sr_pool_run(pool, poolProbeFn, ctx)
            if r % 300 == 299 { usleep(2000) }   // let workers fall asleep: exercises the futex wake path
        }
        for i in 0..<8 {
            let expected = i < threads ? Int32(runs) : 0
            #expect(probe.counts[i * PoolProbe.stride] == expected, "ith \(i)")
            if i < threads { #expect(probe.nths[i * PoolProbe.stride] == Int32(threads)) }
        }
    }

    @Test("NULL pool runs fn(ctx, 0, 1); default size; create/free cycles; free(NULL)")
    func edgeCases() {
        let probe = PoolProbe(slots: 4)
        let ctx = Unmanaged.passUnretained(probe).toOpaque()
        sr_pool_run(nil, poolProbeFn, ctx)
        #expect(probe.counts[0] == 1 && probe.nths[0] == 1)
        #expect(sr_pool_threads(nil) == 1)
        sr_pool_free(nil)
        let def = sr_pool_create(0)
        #expect(sr_pool_threads(def) == Int32(ProcessInfo.processInfo.activeProcessorCount))
        sr_pool_free(def)
        for k in 0..<50 {
            let p = sr_pool_create(Int32(1 + k % 4))
            if k % 2 == 0 { sr_pool_run(p, poolProbeFn, ctx) }
            sr_pool_free(p)   // also right after create, with workers possibly still starting
        }
    }
}
