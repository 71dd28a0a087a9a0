import CSpikeRun
import Foundation
import Testing

// Tests of the spike kernel contract (include/spikerun/sr-spike.h): the checked examples of
// docs/spike-algorithms.md, encoder edge cases, and bit-exactness of the optimized kernels
// (portable and AVX2) against the oracle sr-spike-ref.c for every encoding x format x T.

// MARK: - helpers

private enum St: UInt32 { case ok = 0, invalidArg = 1, unsupported = 4, numeric = 9 }
private func code(_ s: sr_status) -> UInt32 { s.rawValue }

private extension SplitMix64 {
    /// The spike tests' seeding (kept so their seeds give the same data as before).
    init(_ seed: UInt64) { self.init(seed: seed &* 0x9E37_79B9_7F4A_7C15 | 1) }
    mutating func int(_ lo: Int, _ hi: Int) -> Int { lo + Int(next() % UInt64(hi - lo + 1)) }
    mutating func laplace() -> Float {
        let u = Double(next() >> 11) / Double(1 << 53) - 0.5
        return Float(-(u < 0 ? -1.0 : 1.0) * log(max(1e-300, 1 - 2 * abs(u))))
    }
}

// The closed C enums import as Swift enums whose cases keep their C names.
private let SR_SPIKE_SIGN_MAGNITUDE = sr_spike_encoding.SR_SPIKE_SIGN_MAGNITUDE
private let SR_SPIKE_TWOS_COMPLEMENT = sr_spike_encoding.SR_SPIKE_TWOS_COMPLEMENT
private let SR_SPIKE_TERNARY = sr_spike_encoding.SR_SPIKE_TERNARY
private let SR_SPIKE_BINARY = sr_spike_encoding.SR_SPIKE_BINARY
private let SR_SPIKE_NAF = sr_spike_encoding.SR_SPIKE_NAF
private let SR_SPIKE_W_Q4_1 = sr_spike_format.SR_SPIKE_W_Q4_1
private let SR_SPIKE_W_Q8_0 = sr_spike_format.SR_SPIKE_W_Q8_0
private let SR_SPIKE_W_I8_ROW = sr_spike_format.SR_SPIKE_W_I8_ROW
private let SR_SPIKE_W_TERNARY = sr_spike_format.SR_SPIKE_W_TERNARY

/// Repository root (three levels above this file).
private let spikeRepoRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

private let encodings: [sr_spike_encoding] = [
    SR_SPIKE_SIGN_MAGNITUDE, SR_SPIKE_TWOS_COMPLEMENT, SR_SPIKE_TERNARY, SR_SPIKE_BINARY, SR_SPIKE_NAF,
]
private let formats: [sr_spike_format] = [SR_SPIKE_W_Q4_1, SR_SPIKE_W_Q8_0, SR_SPIKE_W_I8_ROW, SR_SPIKE_W_TERNARY]

private var hasAVX2: Bool {
    let old = sr_spike_get_simd_level()
    defer { sr_spike_set_simd_level(old) }
    return sr_spike_set_simd_level(1) == 1
}

/// Every SIMD level this CPU runs: portable, AVX2, AVX-512 (BW).
private var simdLevels: [Int32] {
    let old = sr_spike_get_simd_level()
    defer { sr_spike_set_simd_level(old) }
    let best = sr_spike_set_simd_level(-1)  // AUTO
    return Array(0...best)
}

/// Owns one sr_spike_planes.
private final class Planes {
    var p = sr_spike_planes()
    init(cap: Int, T: Int = Int(SR_SPIKE_MAX_T)) {
        precondition(code(sr_spike_planes_init(&p, Int32(cap), Int32(T))) == 0)
    }
    deinit { sr_spike_planes_free(&p) }
    @discardableResult
    func set(_ counts: [Int32], _ enc: sr_spike_encoding, T: Int, offset: Int = 0,
             scales: [Float]? = nil, group: Int = 0) -> UInt32 {
        let st: sr_status
        if let scales {
            st = scales.withUnsafeBufferPointer { s in
                sr_spike_planes_from_counts(&p, counts, Int32(counts.count), enc, Int32(T), Int32(offset), s.baseAddress, Int32(group))
            }
        } else {
            st = sr_spike_planes_from_counts(&p, counts, Int32(counts.count), enc, Int32(T), Int32(offset), nil, Int32(group))
        }
        return code(st)
    }
    func counts() -> [Int32] {
        var c = [Int32](repeating: 0, count: Int(p.n))
        sr_spike_planes_to_counts(&p, &c)
        return c
    }
    func trains() -> [Int8] {
        var t = [Int8](repeating: 9, count: Int(p.n) * Int(p.T))
        sr_spike_planes_to_trains(&p, &t)
        return t
    }
}

/// Owns one sr_spike_weights.
private final class Weights {
    var w = sr_spike_weights()
    deinit { sr_spike_weights_free(&w) }
}

private func put16(_ b: inout [UInt8], _ off: Int, _ v: UInt16) {
    b[off] = UInt8(v & 0xff)
    b[off + 1] = UInt8(v >> 8)
}

/// Random GGUF-layout rows of a block format (Q4_1: 20 B blocks, Q8_0: 34 B).
private func randomBlocks(_ fmt: sr_spike_format, nOut: Int, nIn: Int, _ rng: inout SplitMix64) -> [UInt8] {
    let nb = nIn / 32
    let bs = fmt == SR_SPIKE_W_Q4_1 ? 20 : 34
    var b = [UInt8](repeating: 0, count: nOut * nb * bs)
    for i in 0..<(nOut * nb) {
        let o = i * bs
        // include a few subnormal and negative fp16 scales
        let d: Float16 = rng.int(0, 30) == 0 ? Float16(bitPattern: UInt16(rng.int(1, 1023))) : Float16(0.002 + rng.unit() * 0.05)
        put16(&b, o, d.bitPattern)
        if fmt == SR_SPIKE_W_Q4_1 {
            put16(&b, o + 2, Float16(-rng.unit() * 0.3).bitPattern)
            for k in 0..<16 { b[o + 4 + k] = UInt8(truncatingIfNeeded: rng.next()) }
        } else {
            for k in 0..<32 { b[o + 2 + k] = UInt8(truncatingIfNeeded: rng.next()) }
        }
    }
    return b
}

/// Random packed weights of any format; also returns the codes (n_out, n_in) for checks.
private func randomWeights(_ fmt: sr_spike_format, nOut: Int, nIn: Int, _ rng: inout SplitMix64, rowSums: Bool = false) -> (Weights, [Int32]) {
    let W = Weights()
    var codes = [Int32](repeating: 0, count: nOut * nIn)
    switch fmt {
    case SR_SPIKE_W_Q4_1, SR_SPIKE_W_Q8_0:
        let blocks = randomBlocks(fmt, nOut: nOut, nIn: nIn, &rng)
        let st = fmt == SR_SPIKE_W_Q4_1 ? sr_spike_weights_pack_q4_1(&W.w, blocks, Int32(nOut), Int32(nIn))
                                        : sr_spike_weights_pack_q8_0(&W.w, blocks, Int32(nOut), Int32(nIn))
        precondition(code(st) == 0)
        let bs = fmt == SR_SPIKE_W_Q4_1 ? 20 : 34
        for o in 0..<nOut {
            for j in 0..<nIn {
                let blk = (o * (nIn / 32) + j / 32) * bs
                if fmt == SR_SPIKE_W_Q4_1 {
                    let byte = blocks[blk + 4 + (j % 32) % 16]
                    codes[o * nIn + j] = Int32((j % 32) < 16 ? byte & 15 : byte >> 4)
                } else {
                    codes[o * nIn + j] = Int32(Int8(bitPattern: blocks[blk + 2 + j % 32]))
                }
            }
        }
    default:
        let q = fmt == SR_SPIKE_W_I8_ROW ? 127 : 1
        var c8 = [Int8](repeating: 0, count: nOut * nIn)
        for i in 0..<c8.count {
            // skewed: many zeros and extremes
            let r = rng.int(0, 9)
            c8[i] = Int8(r == 0 ? q : r == 1 ? -q : r < 4 ? 0 : rng.int(-q, q))
            codes[i] = Int32(c8[i])
        }
        let scales = (0..<nOut).map { _ in 0.0005 + rng.unit() * 0.01 }
        let st = fmt == SR_SPIKE_W_I8_ROW ? sr_spike_weights_pack_i8(&W.w, c8, scales, Int32(nOut), Int32(nIn))
                                          : sr_spike_weights_pack_ternary(&W.w, c8, scales, Int32(nOut), Int32(nIn))
        precondition(code(st) == 0)
    }
    if rowSums { precondition(code(sr_spike_weights_add_row_sums(&W.w)) == 0) }
    return (W, codes)
}

private struct MVResult: Equatable {
    var status: UInt32
    var y: [UInt32]      // float bit patterns
    var acc: [Int32]
    var stats: [UInt64]
}

/// level: -1 = reference, 0 = portable, 1 = AVX2.
private func matvec(_ W: Weights, _ X: Planes, _ o0: Int, _ o1: Int, level: Int32) -> MVResult {
    let segs = Int(sr_spike_segments(&W.w, &X.p))
    var y = [Float](repeating: .nan, count: Int(W.w.n_out))
    var acc = [Int32](repeating: Int32.min, count: segs * Int(W.w.n_out))
    var st = sr_spike_stats()
    let s: sr_status
    if level < 0 {
        s = sr_spike_matvec_ref(&W.w, &X.p, Int32(o0), Int32(o1), &y, &acc, &st)
    } else {
        let old = sr_spike_get_simd_level()
        sr_spike_set_simd_level(level)
        s = sr_spike_matvec(&W.w, &X.p, Int32(o0), Int32(o1), &y, &acc, &st)
        sr_spike_set_simd_level(old)
    }
    return MVResult(status: code(s), y: y.map { $0.bitPattern }, acc: acc,
                    stats: [st.spikes, st.sops, st.horner_adds, st.activations])
}

/// Random counts that fit T planes of enc (with density / magnitude variety).
private func randomCounts(_ n: Int, _ enc: sr_spike_encoding, T: Int, z: Int, _ rng: inout SplitMix64) -> [Int32] {
    let style = rng.int(0, 3)
    return (0..<n).map { _ in
        var lo: Int, hi: Int
        switch enc {
        case SR_SPIKE_SIGN_MAGNITUDE: hi = (1 << T) - 1; lo = -hi
        case SR_SPIKE_TWOS_COMPLEMENT: hi = (1 << (T - 1)) - 1; lo = -(1 << (T - 1))
        case SR_SPIKE_TERNARY: hi = T; lo = -T
        case SR_SPIKE_NAF: hi = ((1 << (T + 1)) - 1) / 3; lo = -hi
        default: hi = T - z; lo = -z
        }
        var v = rng.int(lo, hi)
        if style == 0 && rng.int(0, 3) != 0 && lo <= 0 && hi >= 0 { v = 0 }             // sparse
        if style == 1 { v = v / (1 + rng.int(0, 8)) }                                     // small
        if style == 2 && rng.int(0, 7) == 0 { v = rng.int(0, 1) == 0 ? hi : lo }           // extremes
        return Int32(v)
    }
}

/// Spike events of one count in an encoding (computed independently of the C code).
private func events(_ n: Int, _ enc: sr_spike_encoding, T: Int, z: Int) -> Int {
    switch enc {
    case SR_SPIKE_SIGN_MAGNITUDE: return abs(n).nonzeroBitCount
    case SR_SPIKE_TWOS_COMPLEMENT: return (n & ((1 << T) - 1)).nonzeroBitCount
    case SR_SPIKE_TERNARY: return abs(n)
    case SR_SPIKE_NAF:
        // Non-zero digits of the non-adjacent form, by the textbook recoding loop.
        var m = abs(n), digits = 0
        while m != 0 {
            if m % 2 != 0 { digits += 1; m -= 2 - m % 4 }
            m /= 2
        }
        return digits
    default: return n + z
    }
}

// MARK: - spec examples

@Suite("Spike kernels", .serialized)
struct SpikeKernelTests {
    @Test("example 1: max rule, b = 4, gamma = 0.6, and rhaz ties")
    func example1() {
        let x: [Float] = [0.30, -1.20, 0.05, 2.90, -0.45]
        var p = sr_spike_max_default_params(4)
        #expect(p.q == 7 && p.clip == 0 && p.gamma == 1 && p.rho == 0)
        p.gamma = 0.6
        var n = [Int32](repeating: 99, count: 5)
        var s: Float = 0
        #expect(code(sr_spike_encode_max(x, 5, &p, &n, &s)) == 0)
        #expect(n == [1, -5, 0, 7, -2])
        #expect(abs(s - 0.248571) < 1e-6)
        // fixed s = 0.25: x/s = [1.2, -4.8, 0.2, 11.6, -1.8] -> [1, -5, 0, 7, -2]
        let fixed = x.map { sr_spike_round_clip($0 * (1.0 / 0.25), 0.5, 7) }
        #expect(fixed == [1, -5, 0, 7, -2])
        // ties: rhaz(2.5) = 3, rhaz(-2.5) = -3, rhaz(0.49) = 0; exact below one half
        #expect(sr_spike_round_clip(2.5, 0.5, 1000) == 3)
        #expect(sr_spike_round_clip(-2.5, 0.5, 1000) == -3)
        #expect(sr_spike_round_clip(0.49, 0.5, 1000) == 0)
        #expect(sr_spike_round_clip(0.49999997, 0.5, 1000) == 0)   // floor(v + 0.5f) would give 1
        #expect(sr_spike_round_clip(-0.49999997, 0.5, 1000) == 0)
        #expect(sr_spike_round_clip(8388607.5, 0.5, 32767) == 32767)
        #expect(sr_spike_round_clip(1e30, 0.5, 32767) == 32767 && sr_spike_round_clip(-1e30, 0.5, 5) == -5)
    }

    @Test("example 1b: mean rule, k = 2")
    func example1b() {
        let x: [Float] = [0.30, -1.20, 0.05, 2.90, -0.45]
        var n = [Int32](repeating: 99, count: 5)
        var s: Float = 0
        #expect(code(sr_spike_encode_mean(x, 5, 2, &n, &s)) == 0)
        #expect(n == [1, -2, 0, 6, -1])
        #expect(abs(s - 0.49) < 1e-6)
        #expect(sr_spike_min_planes(n, 5, SR_SPIKE_SIGN_MAGNITUDE, 0) == 3)
    }

    @Test("example 2: the four spike trains")
    func example2() {
        func train(_ n: Int32, _ enc: sr_spike_encoding, _ T: Int32) -> [Int8] {
            var t = [Int8](repeating: 9, count: Int(T))
            #expect(sr_spike_encode_count(n, Int32(enc.rawValue), T, 0, &t))
            #expect(sr_spike_decode_train(t, Int32(enc.rawValue), T, 0) == n)
            return t
        }
        #expect(train(5, SR_SPIKE_SIGN_MAGNITUDE, 4) == [0, 1, 0, 1])
        #expect(train(-5, SR_SPIKE_SIGN_MAGNITUDE, 4) == [0, -1, 0, -1])
        #expect(train(-5, SR_SPIKE_SIGN_MAGNITUDE, 3) == [-1, 0, -1])
        #expect(train(-5, SR_SPIKE_TWOS_COMPLEMENT, 4) == [1, 0, 1, 1])
        #expect(train(5, SR_SPIKE_TWOS_COMPLEMENT, 4) == [0, 1, 0, 1])
        #expect(train(-1, SR_SPIKE_TWOS_COMPLEMENT, 4) == [1, 1, 1, 1])
        #expect(train(-8, SR_SPIKE_TWOS_COMPLEMENT, 4) == [1, 0, 0, 0])
        #expect(train(-5, SR_SPIKE_TERNARY, 8) == [-1, -1, -1, -1, -1, 0, 0, 0])
        #expect(train(5, SR_SPIKE_BINARY, 8) == [1, 1, 1, 1, 1, 0, 0, 0])
        // spikes for -5: ternary 5, sign-magnitude 2, two's complement 3
        let P = Planes(cap: 64)
        for (enc, T, spikes) in [(SR_SPIKE_TERNARY, 8, 5), (SR_SPIKE_SIGN_MAGNITUDE, 4, 2), (SR_SPIKE_TWOS_COMPLEMENT, 4, 3)] {
            #expect(P.set([-5], enc, T: T) == 0)
            #expect(P.p.spikes == UInt64(spikes))
        }
        // out of range is refused
        var t = [Int8](repeating: 0, count: 4)
        #expect(!sr_spike_encode_count(16, Int32(SR_SPIKE_SIGN_MAGNITUDE.rawValue), 4, 0, &t))
        #expect(!sr_spike_encode_count(8, Int32(SR_SPIKE_TWOS_COMPLEMENT.rawValue), 4, 0, &t))
        #expect(P.set([16], SR_SPIKE_SIGN_MAGNITUDE, T: 4) == St.invalidArg.rawValue)
        // binary with offset z: n + z spikes, decode subtracts z
        var tb = [Int8](repeating: 9, count: 8)
        #expect(sr_spike_encode_count(-2, Int32(SR_SPIKE_BINARY.rawValue), 8, 4, &tb))
        #expect(tb == [1, 1, 0, 0, 0, 0, 0, 0])
        #expect(sr_spike_decode_train(tb, Int32(SR_SPIKE_BINARY.rawValue), 8, 4) == -2)
    }

    @Test("int8 row codes: s = max|w| / 127, round half away, zero rows, NaN refused")
    func int8RowCodes() {
        var codes = [Int8](repeating: 9, count: 6)
        var s: Float = 0
        // max|w| = 127 -> s = 1: halves round away from zero.
        let w: [Float] = [0.5, -0.5, 127, -127, 1.5, 0]
        #expect(sr_spike_i8_row_codes(w, 6, &codes, &s) == SR_OK)
        #expect(s == 1 && codes == [1, -1, 127, -127, 2, 0])
        // max|w| = 2.54: the codes of w * (1 / (2.54 / 127)), rounded half away.
        let w2: [Float] = [0.01, -0.3, 2.54, -1.27, 0.77, 0]
        #expect(sr_spike_i8_row_codes(w2, 6, &codes, &s) == SR_OK)
        let inv = 1 / (Float(2.54) / 127)
        #expect(s == Float(2.54) / 127 && codes == w2.map { Int8(($0 * inv).rounded(.toNearestOrAwayFromZero)) })
        #expect(sr_spike_i8_row_codes([0, 0, 0], 3, &codes, &s) == SR_OK && s == 1 && codes[0...2] == [0, 0, 0])
        #expect(sr_spike_i8_row_codes([1, .nan, 2], 3, &codes, &s) == SR_ERR_NUMERIC)
        #expect(sr_spike_i8_row_codes([1, .infinity], 2, &codes, &s) == SR_ERR_NUMERIC)
    }

    @Test("example 3: dead zone rho and membrane clip C")
    func example3() {
        let v: [Float] = [0.6, -1.4, 2.5]
        #expect(v.map { sr_spike_round_clip($0, 0.5, 100) } == [1, -1, 3])
        #expect(v.map { sr_spike_round_clip($0, 0.5 + 0.25, 100) } == [0, -1, 2])
        #expect(v.map { sr_spike_round_clip($0, 0.5, 2) } == [1, -1, 2])
        // through the max-rule encoder: a fourth channel 7.0 with Q = 7 makes s = 1, inv = 1
        let x: [Float] = [0.6, -1.4, 2.5, 7.0]
        var n = [Int32](repeating: 0, count: 4)
        var s: Float = 0
        var p = sr_spike_max_default_params(4)
        #expect(code(sr_spike_encode_max(x, 4, &p, &n, &s)) == 0 && s == 1)
        #expect(n == [1, -1, 3, 7])
        p.rho = 0.25
        #expect(code(sr_spike_encode_max(x, 4, &p, &n, &s)) == 0)
        #expect(n == [0, -1, 2, 7])
        p.rho = 0
        p.clip = 2
        #expect(code(sr_spike_encode_max(x, 4, &p, &n, &s)) == 0)
        #expect(n == [1, -1, 2, 2])
        p.clip = 8  // C > Q is refused
        #expect(code(sr_spike_encode_max(x, 4, &p, &n, &s)) == St.invalidArg.rawValue)
    }

    @Test("power-of-two steps: the nearest power of two in the log domain, exact quantizer and rescale")
    func pow2Steps() {
        // The snap against log2 in double precision (ties cannot occur: sqrt 2 is irrational).
        func want(_ s: Float) -> Float {
            let e = Double(s).exponent  // s = m * 2^e, m in [1, 2)
            let m = Double(s) / pow(2, Double(e))
            return Float(pow(2, Double(e) + (m >= 2.0.squareRoot() ? 1 : 0)))
        }
        var rng = SplitMix64(29)
        for _ in 0..<20_000 {
            let s = Float(bitPattern: UInt32(rng.int(0x0080_0000, 0x7f7f_ffff)))
            #expect(sr_spike_pow2_snap(s).bitPattern == want(s).bitPattern, "\(s)")
        }
        let sqrt2 = Float(2.0.squareRoot())              // 1.41421354 < sqrt 2
        #expect(sr_spike_pow2_snap(sqrt2) == 1 && sr_spike_pow2_snap(sqrt2.nextUp) == 2)
        #expect(sr_spike_pow2_snap(0.7) == 0.5 && sr_spike_pow2_snap(0.71) == 1 && sr_spike_pow2_snap(1) == 1)
        #expect(sr_spike_pow2_snap(0) == 0 && sr_spike_pow2_snap(Float.leastNormalMagnitude.nextDown) == 0)
        #expect(sr_spike_pow2_snap(.greatestFiniteMagnitude) == .infinity && sr_spike_pow2_snap(.infinity) == .infinity)
        #expect(sr_spike_pow2_snap(.nan).isNaN)
        // Through the encoders: the step is a power of two, x * inv is exact, the counts are
        // those of the snapped step, at every SIMD level and in the one-group encoder the FPGA
        // token program runs; the rescale's step product is exact as well.
        for it in 0..<200 {
            let n = rng.int(1, 150)
            let x = (0..<n).map { _ in rng.laplace() * pow(10, Float(rng.int(-3, 3))) }
            let k: Float = [2, 3, 4, 8, 12][it % 5], tau: Float = it % 2 == 0 ? 0.35 : 0
            var s0: Float = 0, inv: Float = 0
            let ok = sr_spike_scale_mean(sr_spike_sum_abs(x, Int32(n)), Int32(n), k, 1, &s0, &inv)
            guard ok == 1 else { continue }
            var plain: Float = 0, plainInv: Float = 0
            _ = sr_spike_scale_mean(sr_spike_sum_abs(x, Int32(n)), Int32(n), k, 0, &plain, &plainInv)
            #expect(s0 == want(plain) && s0.significandBitPattern == 0 && inv * s0 == 1)
            #expect(x.allSatisfy { Double($0 * inv) == Double($0) / Double(s0) })
            let rowScale = rng.laplace()
            #expect(Double(s0 * rowScale) == Double(s0) * Double(rowScale))
            let wantCounts = x.map { tau > 0 ? sr_spike_round_thrifty($0 * inv, 0.5, 0.5 - tau, 0.5 + tau, 32767)
                                             : sr_spike_round_clip($0 * inv, 0.5, 32767) }
            for level: Int32 in hasAVX2 ? [0, 1, 2] : [0] {
                let old = sr_spike_get_simd_level()
                sr_spike_set_simd_level(level)
                var mp = sr_spike_mean_default_params(k)
                mp.tau = tau
                mp.pow2 = 1
                var c = [Int32](repeating: 0, count: n)
                var s: Float = 0
                #expect(code(sr_spike_encode_mean_ex(x, Int32(n), &mp, &c, &s)) == 0)
                #expect(s.bitPattern == s0.bitPattern && c == wantCounts, "it \(it) level \(level)")
                sr_spike_set_simd_level(old)
            }
            var g = [Int32](repeating: 0, count: n)
            var sg: Float = 0
            #expect(sr_spike_encode_mean_group(x, Int32(n), k, 0, tau, 1, 32767, &g, &sg) == 0)
            #expect(sg.bitPattern == s0.bitPattern && g == wantCounts)
        }
    }

    @Test("power-of-two steps of attention: the query's step rounded up, the probabilities times 2^bits")
    func attentionPow2Steps() {
        var rng = SplitMix64(31)
        for _ in 0..<20_000 {
            let s = Float(bitPattern: UInt32(rng.int(0x0080_0000, 0x7eff_ffff)))
            let c = sr_spike_pow2_ceil(s)
            #expect(c.significandBitPattern == 0 && c >= s && c < 2 * s, "\(s)")
        }
        #expect(sr_spike_pow2_ceil(4) == 4 && sr_spike_pow2_ceil(Float(4).nextUp) == 8 && sr_spike_pow2_ceil(0.3) == 0.5)
        #expect(sr_spike_pow2_ceil(0) == 0 && sr_spike_pow2_ceil(.greatestFiniteMagnitude) == .infinity)
        for it in 0..<200 {
            let n = rng.int(1, 128)
            let x = (0..<n).map { _ in rng.laplace() * pow(10, Float(rng.int(-3, 3))) }
            let bits = Int32([4, 6, 8][it % 3])
            var p = sr_spike_max_default_params(bits)
            p.pow2 = 1
            var c = [Int32](repeating: 0, count: n)
            var s: Float = 0
            #expect(code(sr_spike_encode_max(x, Int32(n), &p, &c, &s)) == 0)
            let m = x.map(\.magnitude).max()!
            let want = sr_spike_pow2_ceil(m / Float(p.q))
            #expect(s == want && c == x.map { sr_spike_round_clip($0 * (1 / want), 0.5, p.q) })
            #expect(c.allSatisfy { abs($0) <= p.q })
            var g = [Int32](repeating: 0, count: n)
            var sg: Float = 0
            #expect(sr_spike_encode_max_group(x, Int32(n), p.q, p.q, 1, 0, 1, &g, &sg) == 0 && g == c && sg == s)
            // probabilities: times 2^bits, clipped at 2^bits - 1, scale 2^-bits
            let pb = Int32([10, 12][it % 2]), probs = (0..<n).map { _ in Float(rng.int(0, 1 << 20)) / Float(1 << 20) }
            var u = [Int32](repeating: 0, count: n), ug = u
            #expect(code(sr_spike_encode_unsigned(probs, Int32(n), pb, 1, &u)) == 0)
            #expect(u == probs.map { min(sr_spike_round_clip($0 * Float(1 << pb), 0.5, 1 << 30), (1 << pb) - 1) })
            #expect(sr_spike_encode_unsigned_group(probs, Int32(n), pb, 1, &ug) == 0 && ug == u)
            #expect(sr_spike_unsigned_scale(pb, 1) == 1 / Float(1 << pb))
        }
    }

    @Test("spike-thrifty rounding: the neighbour with fewer NAF digits within 0.5 + tau steps")
    func thriftyRounding() {
        // NAF weights from the definition (digits from the low end), against the shift/mask form.
        func nafDigits(_ m: Int) -> Int {
            var m = m, w = 0
            while m != 0 { if m & 1 == 1 { m -= 2 - (m & 3); w += 1 }; m >>= 1 }
            return w
        }
        for m in 0..<70_000 { #expect(Int(sr_spike_naf_weight(UInt32(m))) == nafDigits(m)) }
        #expect(sr_spike_naf_weight(0x7fff_ffff) == 2)   // 2^31 - 1 = 2^31 - 2^0
        // tau = 0.25: hi = 0.75, lo = 0.25. 6.7: 6 = 8-2 and 7 = 8-1 both fire twice: rhaz -> 7.
        // 2.7: 2 fires once, 3 = 4-1 twice, 0.7 <= 0.75 -> 2. 2.8: beyond the margin -> 3.
        // 6.3: 7 does not beat 6 -> 6. 7.3: 8 (one digit) beats 7 (two), 0.3 >= 0.25 -> 8.
        // 0.6: 0 fires nothing, 0.6 <= 0.75 -> 0. -4.7: 4 beats 5 = 4+1 -> -4. clip 7 caps 8.
        let (th, lo, hi): (Float, Float, Float) = (0.5, 0.25, 0.75)
        let v: [Float] = [6.7, 2.7, 2.8, 6.3, 7.3, 0.6, -4.7, 0.2, 1e9]
        #expect(v.map { sr_spike_round_thrifty($0, th, lo, hi, 32767) } == [7, 2, 3, 6, 8, 0, -4, 0, 32767])
        #expect(sr_spike_round_thrifty(7.3, th, lo, hi, 7) == 7)
        // Through the mean encoder at every SIMD level, on random activations: equal to the
        // scalar rule, never more digits than plain rounding, never more than 0.5 + tau off.
        var rng = SplitMix64(17)
        for it in 0..<200 {
            let n = rng.int(1, 150)
            let x = (0..<n).map { _ in rng.laplace() * pow(10, Float(rng.int(-2, 2))) }
            let tau: Float = [0.1, 0.25, 0.35, 0.5][it % 4]
            let k: Float = [2, 4, 8, 12][(it / 4) % 4]
            var sDef: Float = 0, inv: Float = 0
            let ok = sr_spike_scale_mean(sr_spike_sum_abs(x, Int32(n)), Int32(n), k, 0, &sDef, &inv)
            let def = x.map { sr_spike_round_thrifty($0 * inv, 0.5, 0.5 - tau, 0.5 + tau, 32767) }
            let plain = x.map { sr_spike_round_clip($0 * inv, 0.5, 32767) }
            // never more NAF digits than plain rounding, never more than 0.5 + tau steps off
            for j in 0..<n {
                #expect(sr_spike_naf_weight(def[j].magnitude) <= sr_spike_naf_weight(plain[j].magnitude))
                #expect(abs(Double(x[j]) * Double(inv) - Double(def[j])) <= 0.5 + Double(tau) + 1e-6)
            }
            // a small cap as well (the vector rule clips after choosing, as the scalar one)
            let cap: Int32 = it % 3 == 2 ? 5 : 0
            let want = cap == 0 ? def : x.map { sr_spike_round_thrifty($0 * inv, 0.5, 0.5 - tau, 0.5 + tau, cap) }
            for level: Int32 in hasAVX2 ? [0, 1, 2] : [0] {
                let old = sr_spike_get_simd_level()
                sr_spike_set_simd_level(level)
                var mp = sr_spike_mean_default_params(k)
                mp.tau = tau
                mp.cap = cap
                var c = [Int32](repeating: 0, count: n)
                var s: Float = 0
                #expect(code(sr_spike_encode_mean_ex(x, Int32(n), &mp, &c, &s)) == 0)
                if ok == 1 { #expect(s.bitPattern == sDef.bitPattern && c == want, "it \(it) level \(level)") }
                sr_spike_set_simd_level(old)
            }
        }
        var mp = sr_spike_mean_default_params(8)
        var c = [Int32](repeating: 0, count: 4)
        var s: Float = 0
        for bad: Float in [-0.1, 0.51, .nan] {
            mp.tau = bad
            #expect(code(sr_spike_encode_mean_ex([1, 2, 3, 4], 4, &mp, &c, &s)) == St.invalidArg.rawValue)
        }
    }

    @Test("example 4: W n = [13, -10] by planes, Horner and SOP counts")
    func example4() {
        // W = [[3, -1, 2], [0, 4, -2]] as int8 rows (inputs padded to 32 with zero codes)
        var c8 = [Int8](repeating: 0, count: 2 * 32)
        c8[0] = 3; c8[1] = -1; c8[2] = 2
        c8[32] = 0; c8[33] = 4; c8[34] = -2
        let W = Weights()
        #expect(code(sr_spike_weights_pack_i8(&W.w, c8, [1, 1], 2, 32)) == 0)
        let X = Planes(cap: 32)
        var counts = [Int32](repeating: 0, count: 32)
        counts[0] = 2; counts[1] = -1; counts[2] = 3
        // sign-magnitude T = 2: sigma_0 = [1, 0, 1], sigma_1 = [0, -1, 1]
        #expect(X.set(counts, SR_SPIKE_SIGN_MAGNITUDE, T: 2) == 0)
        let tr = X.trains()
        #expect(Array(tr[0..<3]) == [1, 0, 1] && Array(tr[32..<35]) == [0, -1, 1])
        for level: Int32 in [-1, 0, 1] {
            let r = matvec(W, X, 0, 2, level: level)
            #expect(r.status == 0)
            #expect(r.acc == [13, -10])
            #expect(r.y == [Float(13).bitPattern, Float(-10).bitPattern])
            // 4 spike events x fan-out 2 = 8 SOPs, plus T * d_out = 4 Horner adds
            #expect(r.stats == [4, 8, 4, 32])
        }
        // plane sums: W sigma_0 = [5, -2] (weight 2), W sigma_1 = [3, -6] (weight 1)
        var only0 = tr, only1 = tr
        for j in 0..<32 { only0[32 + j] = 0; only1[j] = 0 }
        for (trains, expect) in [(only0, [Int32(10), -4]), (only1, [3, -6])] {
            #expect(code(sr_spike_planes_from_trains(&X.p, trains, 32, SR_SPIKE_SIGN_MAGNITUDE, 2, 0, nil, 0)) == 0)
            for level: Int32 in [-1, 0, 1] { #expect(matvec(W, X, 0, 2, level: level).acc == expect) }
        }
        // ternary T = 3: planes [1,-1,1], [1,0,1], [0,0,1] -> partial sums [6,-6], [5,-2], [2,-2]
        #expect(X.set(counts, SR_SPIKE_TERNARY, T: 3) == 0)
        let tt = X.trains()
        #expect(Array(tt[0..<3]) == [1, -1, 1] && Array(tt[32..<35]) == [1, 0, 1] && Array(tt[64..<67]) == [0, 0, 1])
        for level: Int32 in [-1, 0, 1] {
            let r = matvec(W, X, 0, 2, level: level)
            #expect(r.acc == [13, -10])
            #expect(r.stats == [6, 12, 6, 32])   // 6 events x 2 = 12 SOPs
        }
        for (t, expect) in [(0, [Int32(6), -6]), (1, [5, -2]), (2, [2, -2])] {
            var one = [Int8](repeating: 0, count: 3 * 32)
            for j in 0..<32 { one[t * 32 + j] = tt[t * 32 + j] }
            #expect(code(sr_spike_planes_from_trains(&X.p, one, 32, SR_SPIKE_TERNARY, 3, 0, nil, 0)) == 0)
            for level: Int32 in [-1, 0, 1] { #expect(matvec(W, X, 0, 2, level: level).acc == expect) }
        }
    }

    @Test("example 5: q . k = -1 on a spike-encoded query against the K cache")
    func example5() {
        let K = Weights()
        #expect(code(sr_spike_weights_alloc(&K.w, SR_SPIKE_W_I8_ROW, 4, 64)) == 0)  // 4 positions, head 64
        var krow = [Int8](repeating: 0, count: 64)
        krow[0] = 1; krow[1] = 3
        #expect(code(sr_spike_weights_set_row(&K.w, 0, krow, 1)) == 0)
        var q = [Int32](repeating: 0, count: 64)
        q[0] = 2; q[1] = -1
        let Q = Planes(cap: 64)
        for (enc, T) in [(SR_SPIKE_SIGN_MAGNITUDE, 2), (SR_SPIKE_TERNARY, 3), (SR_SPIKE_TWOS_COMPLEMENT, 3)] {
            #expect(Q.set(q, enc, T: T, scales: [1]) == 0)
            for ref in [true, false] {
                var sc = [Float](repeating: .nan, count: 4)
                var acc = [Int32](repeating: 7, count: 4)
                let st = ref ? sr_spike_attn_scores_ref(&K.w, &Q.p, 1, 1.0, &sc, &acc, nil)
                             : sr_spike_attn_scores(&K.w, &Q.p, 1, 1.0, &sc, &acc, nil)
                #expect(code(st) == 0)
                #expect(acc[0] == -1 && sc[0] == -1)
            }
        }
    }

    // MARK: - encoders

    @Test("encoders: NaN/Inf -> numeric error, nothing written")
    func nonFinite() {
        for bad in [Float.nan, .infinity, -.infinity] {
            var x = [Float](repeating: 0.5, count: 100)
            x[37] = bad
            var n = [Int32](repeating: 77, count: 100)
            var s: [Float] = [42, 42, 42, 42]
            var p = sr_spike_max_default_params(8)
            #expect(code(sr_spike_encode_max(x, 100, &p, &n, &s)) == St.numeric.rawValue)
            p.group = 25
            #expect(code(sr_spike_encode_max(x, 100, &p, &n, &s)) == St.numeric.rawValue)
            #expect(code(sr_spike_encode_mean(x, 100, 8, &n, &s)) == St.numeric.rawValue)
            var mp = sr_spike_mean_default_params(8)
            mp.group = 50
            #expect(code(sr_spike_encode_mean_ex(x, 100, &mp, &n, &s)) == St.numeric.rawValue)
            #expect(code(sr_spike_encode_unsigned(x, 100, 12, 0, &n)) == St.numeric.rawValue)
            #expect(n.allSatisfy { $0 == 77 } && s == [42, 42, 42, 42])
        }
        var n = [Int32](repeating: 0, count: 2)
        #expect(code(sr_spike_encode_unsigned([0.5, -0.1], 2, 10, 0, &n)) == St.numeric.rawValue)
        // a finite vector whose |x| sum overflows float32 is an error for the mean rule
        let huge = [Float](repeating: 3e38, count: 4)
        var s: Float = 0
        var c4 = [Int32](repeating: 0, count: 4)
        #expect(code(sr_spike_encode_mean(huge, 4, 8, &c4, &s)) == St.numeric.rawValue)
    }

    @Test("encoders: zero, tiny, all-equal and extreme vectors")
    func encoderEdges() {
        for level: Int32 in [0, 1] {
            let old = sr_spike_get_simd_level()
            sr_spike_set_simd_level(level)
            defer { sr_spike_set_simd_level(old) }
            var n = [Int32](repeating: 5, count: 64)
            var s: [Float] = [0, 0]
            var p = sr_spike_max_default_params(8)
            // all zero (including -0): counts 0, s = 1
            var z = [Float](repeating: 0, count: 64)
            z[3] = -0.0
            #expect(code(sr_spike_encode_max(z, 64, &p, &n, &s)) == 0 && n.allSatisfy { $0 == 0 } && s[0] == 1)
            n = [Int32](repeating: 5, count: 64)
            #expect(code(sr_spike_encode_mean(z, 64, 8, &n, &s)) == 0 && n.allSatisfy { $0 == 0 } && s[0] == 1)
            // one all-zero group out of two
            var g = [Float](repeating: 0, count: 64)
            for j in 32..<64 { g[j] = Float(j) - 40 }
            p.group = 32
            #expect(code(sr_spike_encode_max(g, 64, &p, &n, &s)) == 0)
            #expect(s[0] == 1 && n[0..<32].allSatisfy { $0 == 0 } && n[63] == 127 && n[32] == -44)  // -8/23*127
            p.group = 0
            // subnormal-only vector: 1/s is not finite -> treated as zero
            let tiny = [Float](repeating: Float.leastNonzeroMagnitude, count: 64)
            #expect(code(sr_spike_encode_max(tiny, 64, &p, &n, &s)) == 0 && n.allSatisfy { $0 == 0 } && s[0] == 1)
            // all equal: max rule -> all Q; mean rule -> all k (rounded)
            let eq = [Float](repeating: -0.7, count: 64)
            #expect(code(sr_spike_encode_max(eq, 64, &p, &n, &s)) == 0 && n.allSatisfy { $0 == -127 })
            #expect(code(sr_spike_encode_mean(eq, 64, 8, &n, &s)) == 0 && n.allSatisfy { $0 == -8 })
            // largest finite magnitudes: max rule saturates exactly at Q
            var big = [Float](repeating: 1, count: 64)
            big[0] = .greatestFiniteMagnitude; big[1] = -.greatestFiniteMagnitude
            #expect(code(sr_spike_encode_max(big, 64, &p, &n, &s)) == 0 && n[0] == 127 && n[1] == -127 && n[2] == 0)
            // mean rule: |n_j| <= n * k, so a lone outlier keeps its size (64 * 8 = 512 here)...
            var out = [Float](repeating: 1, count: 64)
            out[5] = 1e7
            #expect(code(sr_spike_encode_mean(out, 64, 8, &n, &s)) == 0 && n[5] == 512 && n[0] == 0)
            // ...and the safety cap 32767 binds once n * k > 32767
            var wide = [Float](repeating: 0, count: 8192)
            wide[0] = 1; wide[1] = -1; wide[100] = 1e9
            var nw = [Int32](repeating: 0, count: 8192)
            #expect(code(sr_spike_encode_mean(wide, 8192, 8, &nw, &s)) == 0 && nw[100] == 32767 && nw[0] == 0)
            var mp = sr_spike_mean_default_params(8)
            mp.cap = 100
            #expect(code(sr_spike_encode_mean_ex(out, 64, &mp, &n, &s)) == 0 && n[5] == 100)
            // unsigned probabilities at 12 bits: P = 4095
            var u = [Int32](repeating: 0, count: 4)
            #expect(code(sr_spike_encode_unsigned([0, 1, 0.5, 2], 4, 12, 0, &u)) == 0)
            #expect(u == [0, 4095, 2048, 4095])   // 0.5 * 4095 = 2047.5 -> 2048 (half away)
            #expect(sr_spike_unsigned_scale(12, 0) == Float(1) / Float(4095))
            // bad parameters
            p.q = 0
            #expect(code(sr_spike_encode_max(eq, 64, &p, &n, &s)) == St.invalidArg.rawValue)
            p = sr_spike_max_default_params(8); p.group = 48   // does not divide 64
            #expect(code(sr_spike_encode_max(eq, 64, &p, &n, &s)) == St.invalidArg.rawValue)
            #expect(code(sr_spike_encode_mean(eq, 64, 0, &n, &s)) == St.invalidArg.rawValue)
            mp = sr_spike_mean_default_params(8); mp.rho = 0.5
            #expect(code(sr_spike_encode_mean_ex(eq, 64, &mp, &n, &s)) == St.invalidArg.rawValue)
        }
    }

    @Test("encoders: AVX2 equals portable and the scalar definition, randomized")
    func encoderSIMD() {
        var rng = SplitMix64(11)
        let avx = hasAVX2
        for it in 0..<300 {
            let n = rng.int(1, 200)
            let x = (0..<n).map { _ in rng.laplace() * (rng.int(0, 50) == 0 ? 100 : 1) * pow(10, Float(rng.int(-3, 3))) }
            // scalar definition of the mean rule (sr_spike_sum_abs + rhaz)
            var sum: Float = 0
            sum = sr_spike_sum_abs(x, Int32(n))
            var sDef: Float = 0, inv: Float = 0
            let ok = sr_spike_scale_mean(sum, Int32(n), 8, 0, &sDef, &inv)
            let def = x.map { sr_spike_round_clip($0 * inv, 0.5, 32767) }
            var results: [[Int32]] = []
            var p = sr_spike_max_default_params(Int32(rng.int(2, 12)))
            p.gamma = [1, 0.95, 0.8, 0.6][it % 4]
            p.rho = [0, 0.1, 0.25, 0.49][(it / 4) % 4]
            for level: Int32 in avx ? [0, 1] : [0] {
                let old = sr_spike_get_simd_level()
                sr_spike_set_simd_level(level)
                var c = [Int32](repeating: 0, count: n)
                var s: Float = 0
                #expect(code(sr_spike_encode_mean(x, Int32(n), 8, &c, &s)) == 0)
                if ok == 1 { #expect(s.bitPattern == sDef.bitPattern && c == def, "it \(it)") }
                var cm = [Int32](repeating: 0, count: n)
                var sm: Float = 0
                #expect(code(sr_spike_encode_max(x, Int32(n), &p, &cm, &sm)) == 0)
                results.append(c + cm + [Int32(bitPattern: s.bitPattern), Int32(bitPattern: sm.bitPattern)])
                sr_spike_set_simd_level(old)
            }
            if results.count == 2 { #expect(results[0] == results[1], "iteration \(it)") }
        }
    }

    @Test("planes: counts -> planes -> counts and trains round trips, all encodings")
    func planeRoundTrips() {
        var rng = SplitMix64(5)
        let P = Planes(cap: 300)
        let Q = Planes(cap: 300)
        for it in 0..<400 {
            let enc = encodings[it % encodings.count]
            let T: Int
            switch enc {
            case SR_SPIKE_SIGN_MAGNITUDE, SR_SPIKE_NAF: T = [1, 15, 16, rng.int(1, 16)][it / 4 % 4]
            case SR_SPIKE_TWOS_COMPLEMENT: T = [1, 15, 16, rng.int(1, 16)][it / 4 % 4]
            default: T = [1, 15, 256, rng.int(1, 40)][it / 4 % 4]
            }
            let z = enc == SR_SPIKE_BINARY ? rng.int(0, T) : 0
            let n = enc == SR_SPIKE_BINARY ? 32 * rng.int(1, 9) : rng.int(1, 300)
            let c = randomCounts(n, enc, T: T, z: z, &rng)
            #expect(P.set(c, enc, T: T, offset: z) == 0)
            #expect(P.counts() == c)
            // independent event count and per-block summaries
            let ev = c.reduce(0) { $0 + events(Int($1), enc, T: T, z: z) }
            #expect(P.p.spikes == UInt64(ev))
            for b in 0..<Int(P.p.n_words) {
                let blk = c[(b * 32)..<min(n, b * 32 + 32)]
                #expect(P.p.blk_sum[b] == blk.reduce(0, +))
            }
            // trains round trip, and the event lists agree with the trains
            let tr = P.trains()
            for t in 0..<T {
                for j in 0..<n { #expect(Int32(tr[t * n + j]) == sr_spike_sigma(c[j], Int32(enc.rawValue), Int32(T), Int32(z), Int32(t))) }
            }
            #expect(code(sr_spike_planes_from_trains(&Q.p, tr, Int32(n), enc, Int32(T), Int32(z), nil, 0)) == 0)
            #expect(Q.counts() == c)
            // the packed planes and derived fields do not depend on the path (AVX2 fast path
            // for sign-magnitude and NAF counts, portable counts path, generic trains path)
            func fields(_ x: sr_spike_planes) -> [Int64] {
                let nw = Int(x.n_words)
                var f = (0..<(T * 2 * nw)).map { Int64(x.bits[$0]) }
                for b in 0..<nw { f += [Int64(x.blk_abs[b]), Int64(x.blk_sum[b]), Int64(x.blk_tfirst[b])] }
                return f + [Int64(x.spikes)]
            }
            let viaTrains = fields(Q.p)
            for level: Int32 in [0, 1] {
                let old = sr_spike_get_simd_level()
                sr_spike_set_simd_level(level)
                #expect(P.set(c, enc, T: T, offset: z) == 0)
                sr_spike_set_simd_level(old)
                #expect(fields(P.p) == viaTrains, "enc \(enc.rawValue) T \(T) n \(n) level \(level)")
            }
            #expect(code(sr_spike_planes_events(&P.p)) == 0)
            var k = 0
            for t in 0..<T {
                #expect(P.p.ev_start[t] == Int32(k))
                for j in 0..<n where tr[t * n + j] != 0 {
                    #expect(P.p.ev[k] == UInt32(j) << 1 | (tr[t * n + j] < 0 ? 1 : 0))
                    k += 1
                }
            }
            #expect(Int(P.p.ev_start[T]) == ev)
            // minimal T
            let mt = Int(sr_spike_min_planes(c, Int32(n), enc, Int32(z)))
            #expect(mt >= 1 && mt <= T)
        }
    }

    // MARK: - kernels: reference == optimized

    @Test("matvec: ref == portable == AVX2, every encoding x format x T, randomized")
    func randomizedBitExact() {
        var rng = SplitMix64(2024)
        let levels: [Int32] = simdLevels
        var checked = 0
        for it in 0..<320 {
            let fmt = formats[it % 4]
            let enc = encodings[(it / 4) % encodings.count]
            let nIn = 32 * rng.int(1, 8)
            let nOut = rng.int(1, it % 16 == 0 ? 600 : 300)
            var (W, codes) = randomWeights(fmt, nOut: nOut, nIn: nIn, &rng, rowSums: enc == SR_SPIKE_BINARY)
            let T: Int
            switch enc {
            case SR_SPIKE_SIGN_MAGNITUDE, SR_SPIKE_NAF: T = [1, 15, 3, rng.int(1, 15)][(it / 16) % 4]
            case SR_SPIKE_TWOS_COMPLEMENT: T = [1, 16, 4, rng.int(1, 16)][(it / 16) % 4]
            default: T = [1, 15, 40, rng.int(1, 40)][(it / 16) % 4]
            }
            let z = enc == SR_SPIKE_BINARY ? rng.int(0, T) : 0
            let n = enc == SR_SPIKE_BINARY || rng.int(0, 3) != 0 ? nIn : rng.int(1, nIn)
            let c = randomCounts(n, enc, T: T, z: z, &rng)
            var group = 0
            if n == nIn && rng.int(0, 2) == 0 { group = [32, 64, nIn][rng.int(0, 2)]; if nIn % group != 0 { group = 0 } }
            let ng = group == 0 ? 1 : nIn / group
            let scales = (0..<ng).map { _ in 0.001 + rng.unit() }
            let X = Planes(cap: nIn, T: 64)
            #expect(X.set(c, enc, T: T, offset: z, scales: scales, group: group) == 0)
            let tw = Int(W.w.tile_w)
            var o0 = 0, o1 = nOut
            if rng.int(0, 2) == 0 {
                o0 = tw * rng.int(0, (nOut - 1) / tw)
                o1 = rng.int(o0, nOut)
            }
            let ref = matvec(W, X, o0, o1, level: -1)
            for lv in levels {
                let opt = matvec(W, X, o0, o1, level: lv)
                #expect(opt == ref, "fmt \(fmt.rawValue) enc \(enc.rawValue) T \(T) n \(n)/\(nIn) out \(o0)..<\(o1) group \(group) level \(lv)")
            }
            guard ref.status == 0 else { continue }
            checked += 1
            // integer sums computed directly from the counts (independent of planes/packing)
            let segLen = fmt == SR_SPIKE_W_Q4_1 || fmt == SR_SPIKE_W_Q8_0 ? 32 : (group == 0 ? nIn : group)
            let segs = nIn / segLen
            var bad = 0
            for o in o0..<o1 {
                for s in 0..<segs {
                    var a = 0
                    for j in (s * segLen)..<max(s * segLen, min(n, (s + 1) * segLen)) { a += Int(codes[o * nIn + j]) * Int(c[j]) }
                    if Int32(a) != ref.acc[s * nOut + o] { bad += 1 }
                }
            }
            #expect(bad == 0)
            // SOPs = events x fan-out, Horner adds = T x fan-out (§4, §8)
            let ev = c.reduce(0) { $0 + events(Int($1), enc, T: T, z: z) }
            let fan = o1 - o0
            #expect(ref.stats == [o0 == 0 && o1 > 0 ? UInt64(ev) : 0, UInt64(ev * fan), UInt64(T * fan), o0 == 0 && o1 > 0 ? UInt64(n) : 0])
            _ = W
            W = Weights()
        }
        #expect(checked > 300)
    }

    @Test("refined head: the chosen rows equal sr_spike_matvec on the same codes, bit for bit")
    func refinedRows() {
        var rng = SplitMix64(77)
        var checked = 0
        for it in 0..<60 {
            let enc = [SR_SPIKE_SIGN_MAGNITUDE, SR_SPIKE_TWOS_COMPLEMENT, SR_SPIKE_TERNARY, SR_SPIKE_NAF][it % 4]
            let nIn = 32 * rng.int(1, 8), nOut = rng.int(1, 400)
            let (W, codes) = randomWeights(SR_SPIKE_W_I8_ROW, nOut: nOut, nIn: nIn, &rng)
            let T = enc == SR_SPIKE_TERNARY ? rng.int(1, 12) : rng.int(1, 12)
            // every third case: fewer activations than inputs (the rest silent), so the rows'
            // codes are n long and the last block is partial
            let n = it % 3 == 0 && nIn > 32 ? nIn - rng.int(1, 31) : nIn
            let c = randomCounts(n, enc, T: T, z: 0, &rng)
            let X = Planes(cap: nIn, T: 64)
            #expect(X.set(c, enc, T: T, scales: [0.001 + rng.unit()]) == 0)
            #expect(code(sr_spike_planes_events(&X.p)) == 0)
            let full = matvec(W, X, 0, nOut, level: -1)
            guard full.status == 0 else { continue }
            let m = rng.int(0, nOut)
            var rows = Array(0..<nOut).shuffled(using: &rng).prefix(m).map { Int32($0) }
            var y = [Float](repeating: .nan, count: nOut)
            let i8 = (0..<nOut).flatMap { o in (0..<n).map { Int8(codes[o * nIn + $0]) } }
            let scale = (0..<nOut).map { W.w.row_scale[$0] }
            // every SIMD level: the scalar event loop and the AVX2 mask sums
            let old = sr_spike_get_simd_level()
            for lv in simdLevels {
                sr_spike_set_simd_level(lv)
                y = [Float](repeating: .nan, count: nOut)
                #expect(code(sr_spike_rows_i8(i8, scale, Int32(nOut), &X.p, &rows, Int32(m), &y)) == 0)
                for r in rows { #expect(y[Int(r)].bitPattern == full.y[Int(r)], "enc \(enc.rawValue) row \(r) level \(lv)") }
                let untouched = Set(rows.map(Int.init))
                #expect((0..<nOut).allSatisfy { untouched.contains($0) || y[$0].isNaN })
            }
            sr_spike_set_simd_level(old)
            checked += 1
        }
        #expect(checked > 50)
        // the binary code (offset) and grouped scales are refused
        let X = Planes(cap: 64)
        #expect(X.set([Int32](repeating: 1, count: 64), SR_SPIKE_BINARY, T: 2) == 0)
        var y = [Float](repeating: 0, count: 1)
        #expect(code(sr_spike_rows_i8([Int8](repeating: 1, count: 64), [1], 1, &X.p, [0], 1, &y)) == St.unsupported.rawValue)
        #expect(X.set([Int32](repeating: 1, count: 64), SR_SPIKE_NAF, T: 2, scales: [1, 2], group: 32) == 0)
        #expect(code(sr_spike_rows_i8([Int8](repeating: 1, count: 64), [1], 1, &X.p, [0], 1, &y)) == St.unsupported.rawValue)
    }

    @Test("refined head: top rows are the m largest (ties by lower index), NaN never chosen")
    func topRows() {
        var rng = SplitMix64(5)
        for it in 0..<200 {
            let n = it % 2 == 0 ? rng.int(1, 3000) : rng.int(4096, 60000)
            // few distinct values on some rounds: many ties
            var y = (0..<n).map { _ in it % 3 == 0 ? Float(rng.int(0, 6)) : rng.laplace() }
            if it % 5 == 0 { for _ in 0..<rng.int(1, 5) { y[rng.int(0, n - 1)] = .nan } }
            let m = it % 4 < 2 ? rng.int(0, min(n, 2000)) : rng.int(0, n + 3)
            if it % 7 == 1 && n >= 4096 {   // the strided sample sees only large values: the bound misleads
                let stride = n / 2048
                for r in 0..<n { y[r] = r % stride == 0 ? 100 + Float(r % 3) : rng.unit() }
            }
            var got = [Int32](repeating: -1, count: max(m, 1))
            var scratch = [Float](repeating: 0, count: n)
            var cand = [Int32](repeating: 0, count: n)
            var mm = Int32(m)
            let cmp = sr_spike_top_rows(y, Int32(n), &mm, &scratch, &cand, &got)
            // oracle: stable sort by value descending, then index
            let valid = (0..<n).filter { !y[$0].isNaN }
            let want = valid.sorted { y[$0] != y[$1] ? y[$0] > y[$1] : $0 < $1 }.prefix(m)
            #expect(Int(mm) == want.count)
            #expect(Set(got.prefix(Int(mm)).map(Int.init)) == Set(want), "n \(n) m \(m)")
            #expect(m == 0 || cmp >= UInt64(n))
        }
    }

    @Test("matvec: float output equals the dequantized dense product (Q4_1, Q8_0)")
    func floatMatchesDense() {
        var rng = SplitMix64(99)
        for fmt in [SR_SPIKE_W_Q4_1, SR_SPIKE_W_Q8_0] {
            for grouped in [false, true] {
                let nIn = 256, nOut = 200
                let blocks = randomBlocks(fmt, nOut: nOut, nIn: nIn, &rng)
                let W = Weights()
                let st = fmt == SR_SPIKE_W_Q4_1 ? sr_spike_weights_pack_q4_1(&W.w, blocks, Int32(nOut), Int32(nIn))
                                                : sr_spike_weights_pack_q8_0(&W.w, blocks, Int32(nOut), Int32(nIn))
                #expect(code(st) == 0)
                let x = (0..<nIn).map { _ in rng.laplace() }
                var c = [Int32](repeating: 0, count: nIn)
                var s = [Float](repeating: 0, count: 8)
                var mp = sr_spike_mean_default_params(8)
                mp.group = grouped ? 32 : 0
                #expect(code(sr_spike_encode_mean_ex(x, Int32(nIn), &mp, &c, &s)) == 0)
                let T = Int(sr_spike_min_planes(c, Int32(nIn), SR_SPIKE_SIGN_MAGNITUDE, 0))
                let X = Planes(cap: nIn, T: 16)
                #expect(X.set(c, SR_SPIKE_SIGN_MAGNITUDE, T: T, scales: Array(s[0..<(grouped ? 8 : 1)]), group: mp.group == 0 ? 0 : 32) == 0)
                let r = matvec(W, X, 0, nOut, level: -1)
                #expect(r.status == 0)
                let bs = fmt == SR_SPIKE_W_Q4_1 ? 20 : 34
                var maxRel = 0.0
                for o in 0..<nOut {
                    var dense = 0.0, mag = 0.0
                    for j in 0..<nIn {
                        let blk = (o * (nIn / 32) + j / 32) * bs
                        let d = Double(Float(Float16(bitPattern: UInt16(blocks[blk]) | UInt16(blocks[blk + 1]) << 8)))
                        let w: Double
                        if fmt == SR_SPIKE_W_Q4_1 {
                            let m = Double(Float(Float16(bitPattern: UInt16(blocks[blk + 2]) | UInt16(blocks[blk + 3]) << 8)))
                            let byte = blocks[blk + 4 + (j % 32) % 16]
                            w = d * Double((j % 32) < 16 ? byte & 15 : byte >> 4) + m
                        } else {
                            w = d * Double(Int8(bitPattern: blocks[blk + 2 + j % 32]))
                        }
                        let xh = Double(s[grouped ? j / 32 : 0]) * Double(c[j])
                        dense += w * xh
                        mag += abs(w * xh)
                    }
                    maxRel = max(maxRel, abs(Double(Float(bitPattern: r.y[o])) - dense) / max(mag, 1e-30))
                }
                #expect(maxRel < 1e-5)
            }
        }
    }

    /// Q4_1 weights with integer block scales (`--weights int4i`): the derived integers follow
    /// their definition (computed here in Swift), every level equals the reference bit for bit
    /// on the int32 and on the int64 path, the output is the dense product of the weights the
    /// integers represent, and per-group activation scales are refused.
    @Test("matvec: Q4_1 with integer block scales, ref == every level, int32 and int64 sums")
    func integerBlockScales() {
        var rng = SplitMix64(4141)
        let levels = simdLevels
        for it in 0..<40 {
            let nIn = 32 * rng.int(1, it < 36 ? 12 : 48), nOut = rng.int(1, 300)
            let blocks = randomBlocks(SR_SPIKE_W_Q4_1, nOut: nOut, nIn: nIn, &rng)
            let W = Weights()
            #expect(code(sr_spike_weights_pack_q4_1(&W.w, blocks, Int32(nOut), Int32(nIn))) == 0)
            #expect(code(sr_spike_weights_int_scales(&W.w, 0, Int32(nOut))) == 0)
            #expect(W.w.int_scales == 1)
            let nb = nIn / 32
            func half(_ o: Int, _ b: Int, _ off: Int) -> Float {
                let i = (o * nb + b) * 20 + off
                return Float(Float16(bitPattern: UInt16(blocks[i]) | UInt16(blocks[i + 1]) << 8))
            }
            // sd = max|d| / 255, D = rhaz(d / sd), the same for m (float32 operations)
            var wInt = [Double](repeating: 0, count: nOut * nIn)
            var badScale = 0
            for o in 0..<nOut {
                for (off, arr, rs) in [(0, W.w.d!, W.w.row_scale!), (2, W.w.m!, W.w.row_scale_m!)] {
                    let mx = (0..<nb).map { abs(half(o, $0, off)) }.max()!
                    let sc = mx / 255
                    if rs[o].bitPattern != sc.bitPattern { badScale += 1 }
                    for b in 0..<nb {
                        let v = sc > 0 ? half(o, b, off) / sc : 0
                        let q = v < 0 ? -Int((-v).rounded(.toNearestOrAwayFromZero)) : Int(v.rounded(.toNearestOrAwayFromZero))
                        let got = Int(Int16(bitPattern: arr[Int(sr_spike_blockvec_index(&W.w, Int32(o), Int32(b)))]))
                        if got != min(255, max(-255, q)) { badScale += 1 }
                    }
                }
                for j in 0..<nIn {
                    let bi = Int(sr_spike_blockvec_index(&W.w, Int32(o), Int32(j / 32)))
                    let D = Double(Int16(bitPattern: W.w.d[bi])), M = Double(Int16(bitPattern: W.w.m[bi]))
                    let byte = blocks[(o * nb + j / 32) * 20 + 4 + (j % 32) % 16]
                    let q = Double((j % 32) < 16 ? byte & 15 : byte >> 4)
                    wInt[o * nIn + j] = Double(W.w.row_scale[o]) * D * q + Double(W.w.row_scale_m[o]) * M
                }
            }
            #expect(badScale == 0)
            // the last iterations use 15 sign-magnitude planes of large counts: the int64 path
            let big = it >= 36
            let enc = big ? SR_SPIKE_SIGN_MAGNITUDE : [SR_SPIKE_NAF, SR_SPIKE_SIGN_MAGNITUDE, SR_SPIKE_TERNARY, SR_SPIKE_BINARY][it % 4]
            let T = big ? 15 : rng.int(1, 12)
            let z = enc == SR_SPIKE_BINARY ? rng.int(0, T) : 0
            if enc == SR_SPIKE_BINARY { #expect(code(sr_spike_weights_add_row_sums(&W.w)) == 0) }
            let c = big ? (0..<nIn).map { _ in Int32(rng.int(20000, 32767)) * (rng.int(0, 1) == 0 ? 1 : -1) }
                        : randomCounts(nIn, enc, T: T, z: z, &rng)
            let sx = 0.001 + rng.unit()
            let X = Planes(cap: nIn, T: 64)
            #expect(X.set(c, enc, T: T, offset: z, scales: [sx]) == 0)
            let ref = matvec(W, X, 0, nOut, level: -1)
            #expect(ref.status == 0)
            for lv in levels { #expect(matvec(W, X, 0, nOut, level: lv) == ref, "it \(it) level \(lv)") }
            var maxRel = 0.0
            for o in 0..<nOut {
                var dense = 0.0, mag = 0.0
                for j in 0..<nIn {
                    let t = wInt[o * nIn + j] * Double(sx) * Double(c[j])
                    dense += t
                    mag += abs(t)
                }
                maxRel = max(maxRel, abs(Double(Float(bitPattern: ref.y[o])) - dense) / max(mag, 1e-30))
            }
            #expect(maxRel < 1e-5, "it \(it)")
            // per-group scales: refused at every level with the same status
            if nIn >= 64 && !big {
                let G = Planes(cap: nIn, T: 64)
                #expect(G.set(c, enc, T: T, offset: z, scales: (0..<(nIn / 32)).map { _ in sx }, group: 32) == 0)
                let r = matvec(W, G, 0, nOut, level: -1)
                #expect(r.status == SR_ERR_UNSUPPORTED.rawValue)
                for lv in levels { #expect(matvec(W, G, 0, nOut, level: lv).status == r.status) }
            }
        }
    }

    @Test("matvec: T = 1 and T = 15 planes, zero, all-equal and max-magnitude activations")
    func matvecEdges() {
        var rng = SplitMix64(7)
        let levels: [Int32] = [-1] + simdLevels
        for fmt in formats {
            let (W, _) = randomWeights(fmt, nOut: 300, nIn: 128, &rng)
            let X = Planes(cap: 128, T: 16)
            let cases: [([Int32], Int)] = [
                ([Int32](repeating: 0, count: 128), 1),                 // silent
                ([Int32](repeating: 1, count: 128), 1),                 // T = 1, all fire
                ([Int32](repeating: -1, count: 128), 1),
                ([Int32](repeating: 32767, count: 128), 15),            // mean-rule cap, T = 15
                ([Int32](repeating: -32767, count: 128), 15),
                ((0..<128).map { $0 % 2 == 0 ? 32767 : -32767 }, 15),
                ((0..<128).map { Int32($0) * 255 }, 15),
            ]
            for (c, T) in cases {
                #expect(X.set(c, SR_SPIKE_SIGN_MAGNITUDE, T: T, scales: [0.37]) == 0)
                let rs = levels.map { matvec(W, X, 0, 300, level: $0) }
                for r in rs.dropFirst() { #expect(r == rs[0], "fmt \(fmt.rawValue) T \(T)") }
                if c.allSatisfy({ $0 == 0 }) { #expect(rs[0].acc.allSatisfy { $0 == 0 }) }
            }
        }
    }

    @Test("matvec: Q4_1 int16 pair sums at the bound (all codes 15, every input firing, 8+ events per plane)")
    func q4PairSumsAtTheBound() {
        // Every nibble 15 (d = 1, m = 0): a row's block sum is 15 * sum(counts), the largest the
        // int16 path accepts at T = 6 (15 * 32 * 63 = 30240); the AVX2 kernel then holds two rows
        // per lane for 8 events of 15 between flushes, the case its separation argument bounds.
        let nOut = 192, nIn = 128
        var blocks = [UInt8]()
        for _ in 0..<(nOut * nIn / 32) { blocks += [0x00, 0x3C, 0x00, 0x00] + [UInt8](repeating: 0xFF, count: 16) }
        let W = Weights()
        #expect(code(sr_spike_weights_pack_q4_1(&W.w, blocks, Int32(nOut), Int32(nIn))) == 0)
        let X = Planes(cap: nIn, T: 16)
        let levels: [Int32] = [-1] + simdLevels
        for T in 1...6 {
            let top = Int32((1 << T) - 1)
            let cases: [[Int32]] = [
                [Int32](repeating: top, count: nIn),
                [Int32](repeating: -top, count: nIn),
                (0..<nIn).map { $0 % 32 < 16 ? top : -top },         // + then - within each plane
                (0..<nIn).map { $0 % 3 == 0 ? -top : top },
            ]
            for c in cases {
                #expect(X.set(c, SR_SPIKE_SIGN_MAGNITUDE, T: T, scales: [1]) == 0)
                let rs = levels.map { matvec(W, X, 0, nOut, level: $0) }
                for r in rs.dropFirst() { #expect(r == rs[0], "T \(T) counts \(c[0]), \(c[1])") }
                let want = 15 * c[0..<32].reduce(0, +)
                #expect(rs[0].acc[0] == want)
            }
        }
    }

    @Test("matvec: int32 overflow risk is rejected identically (row formats)")
    func overflowRejected() {
        var rng = SplitMix64(3)
        let (W, _) = randomWeights(SR_SPIKE_W_I8_ROW, nOut: 64, nIn: 1024, &rng)
        let X = Planes(cap: 1024, T: 16)
        // 1024 * 32767 * 127 > 2^31 - 1: rejected
        #expect(X.set([Int32](repeating: 32767, count: 1024), SR_SPIKE_SIGN_MAGNITUDE, T: 15) == 0)
        for level: Int32 in [-1, 0, 1] { #expect(matvec(W, X, 0, 64, level: level).status == St.unsupported.rawValue) }
        // the same counts in groups of 32 fit (bound per group), Q4_1 blocks always fit
        #expect(X.set([Int32](repeating: 32767, count: 1024), SR_SPIKE_SIGN_MAGNITUDE, T: 15,
                      scales: [Float](repeating: 1, count: 32), group: 32) == 0)
        let rs = ([-1, 0, 1] as [Int32]).map { matvec(W, X, 0, 64, level: $0) }
        #expect(rs[0].status == 0 && rs[1] == rs[0] && rs[2] == rs[0])
        // a mean-rule activation (sum |n| ~ k * n) never comes near the bound
        let x = (0..<1024).map { _ in rng.laplace() }
        var c = [Int32](repeating: 0, count: 1024)
        var s: Float = 0
        #expect(code(sr_spike_encode_mean(x, 1024, 16, &c, &s)) == 0)
        #expect(X.set(c, SR_SPIKE_SIGN_MAGNITUDE, T: 15, scales: [s]) == 0)
        #expect(matvec(W, X, 0, 64, level: 0).status == 0)
    }

    @Test("matvec: argument checks")
    func argumentChecks() {
        var rng = SplitMix64(4)
        let (W, _) = randomWeights(SR_SPIKE_W_Q4_1, nOut: 300, nIn: 64, &rng)
        let X = Planes(cap: 128, T: 16)
        #expect(X.set([Int32](repeating: 1, count: 96), SR_SPIKE_SIGN_MAGNITUDE, T: 1) == 0)
        #expect(matvec(W, X, 0, 300, level: 0).status == St.invalidArg.rawValue)       // 96 > 64 inputs
        #expect(X.set([Int32](repeating: 1, count: 64), SR_SPIKE_SIGN_MAGNITUDE, T: 1) == 0)
        #expect(matvec(W, X, 64, 300, level: 0).status == St.invalidArg.rawValue)      // start not tile-aligned
        #expect(matvec(W, X, 0, 301, level: 0).status == St.invalidArg.rawValue)
        #expect(X.set([Int32](repeating: 1, count: 64), SR_SPIKE_BINARY, T: 4, offset: 2) == 0)
        #expect(matvec(W, X, 0, 300, level: 0).status == St.invalidArg.rawValue)       // no row sums
        #expect(matvec(W, X, 0, 300, level: -1).status == St.invalidArg.rawValue)
    }

    @Test("matvec: thread slices (sr_spike_matvec_job_run) add up to the whole")
    func threadSplit() {
        var rng = SplitMix64(8)
        for fmt in formats {
            let (W, _) = randomWeights(fmt, nOut: 777, nIn: 96, &rng)
            let X = Planes(cap: 96, T: 16)
            #expect(X.set(randomCounts(96, SR_SPIKE_SIGN_MAGNITUDE, T: 6, z: 0, &rng), SR_SPIKE_SIGN_MAGNITUDE, T: 6, scales: [0.1]) == 0)
            let whole = matvec(W, X, 0, 777, level: 0)
            for nth in [1, 2, 3, 7] {
                var y = [Float](repeating: .nan, count: 777)
                var job = sr_spike_matvec_job()
                let st: [UInt64] = withUnsafePointer(to: &W.w) { wp in
                    withUnsafePointer(to: &X.p) { xp in
                        y.withUnsafeMutableBufferPointer { yp in
                            job.w = wp; job.x = xp; job.n_rows = 777; job.y = yp.baseAddress; job.acc = nil
                            for ith in 0..<nth { sr_spike_matvec_job_run(&job, Int32(ith), Int32(nth)) }
                            var total = sr_spike_stats()
                            withUnsafeBytes(of: &job.stats) { raw in
                                let s = raw.bindMemory(to: sr_spike_stats.self)
                                for ith in 0..<nth { var one = s[ith]; sr_spike_stats_add(&total, &one) }
                            }
                            let statuses = withUnsafeBytes(of: &job.status) { Array($0.bindMemory(to: sr_status.self).prefix(nth)) }
                            #expect(statuses.allSatisfy { code($0) == 0 })
                            return [total.spikes, total.sops, total.horner_adds, total.activations]
                        }
                    }
                }
                #expect(y.map { $0.bitPattern } == whole.y)
                #expect(st == whole.stats)
            }
        }
    }

    // MARK: - attention, packing, fp16, no-multiply

    @Test("attention option A: scores and P.V through the caches, ref == opt")
    func attention() {
        var rng = SplitMix64(12)
        let cap = 96, hd = 64
        let K = Weights(), V = Weights()
        #expect(code(sr_spike_weights_alloc(&K.w, SR_SPIKE_W_I8_ROW, Int32(cap), Int32(hd))) == 0)
        #expect(code(sr_spike_weights_alloc(&V.w, SR_SPIKE_W_I8_ROW, Int32(hd), Int32(cap))) == 0)
        let nPos = 70
        let keys = (0..<nPos).map { _ in (0..<hd).map { _ in rng.laplace() } }
        let vals = (0..<nPos).map { _ in (0..<hd).map { _ in rng.laplace() * 0.5 } }
        // static per-channel V scales, calibrated on the values (max |v| / 127)
        for d in 0..<hd { V.w.row_scale[d] = vals.map { abs($0[d]) }.max()! / 127 }
        for p in 0..<nPos {
            #expect(code(sr_spike_kcache_store(&K.w, Int32(p), keys[p])) == 0)
            #expect(code(sr_spike_vcache_store(&V.w, Int32(p), vals[p])) == 0)
        }
        var bad = [Float](repeating: 0, count: hd)
        bad[3] = .nan
        #expect(code(sr_spike_kcache_store(&K.w, 80, bad)) == St.numeric.rawValue)
        #expect(code(sr_spike_kcache_store(&K.w, Int32(cap), keys[0])) == St.invalidArg.rawValue)
        // q: max rule 8 bits per (token, head), sign-magnitude T = 7
        let q = (0..<hd).map { _ in rng.laplace() }
        var qc = [Int32](repeating: 0, count: hd)
        var qs: Float = 0
        var p8 = sr_spike_max_default_params(8)
        #expect(code(sr_spike_encode_max(q, Int32(hd), &p8, &qc, &qs)) == 0)
        let Q = Planes(cap: hd, T: 16)
        #expect(Q.set(qc, SR_SPIKE_SIGN_MAGNITUDE, T: 7, scales: [qs]) == 0)
        var s1 = [Float](repeating: .nan, count: nPos), s2 = s1
        var a1 = [Int32](repeating: 0, count: nPos), a2 = a1
        #expect(code(sr_spike_attn_scores_ref(&K.w, &Q.p, Int32(nPos), 0.125, &s1, &a1, nil)) == 0)
        for level: Int32 in simdLevels {
            sr_spike_set_simd_level(level)
            #expect(code(sr_spike_attn_scores(&K.w, &Q.p, Int32(nPos), 0.125, &s2, &a2, nil)) == 0)
            #expect(s1.map { $0.bitPattern } == s2.map { $0.bitPattern } && a1 == a2)
        }
        sr_spike_set_simd_level(-1)
        for i in 0..<nPos {  // close to the float dot product
            let exact = zip(q, keys[i]).reduce(0) { $0 + $1.0 * $1.1 } / 8
            let mag = zip(q, keys[i]).reduce(0) { $0 + abs($1.0 * $1.1) } / 8   // 8-bit q and k
            #expect(abs(s1[i] - exact) < 0.02 * mag)
        }
        // softmax in float, p at 12 bits, unsigned bitwise planes, scale 1/P
        let mx = s1.max()!
        let e = s1.map { exp($0 - mx) }
        let sum = e.reduce(0, +)
        let prob = e.map { $0 / sum }
        var pc = [Int32](repeating: 0, count: nPos)
        #expect(code(sr_spike_encode_unsigned(prob, Int32(nPos), 12, 0, &pc)) == 0)
        let Pp = Planes(cap: cap, T: 16)
        #expect(Pp.set(pc, SR_SPIKE_SIGN_MAGNITUDE, T: 12, scales: [sr_spike_unsigned_scale(12, 0)]) == 0)
        var o1 = [Float](repeating: .nan, count: hd), o2 = o1
        var b1 = [Int32](repeating: 0, count: hd), b2 = b1
        #expect(code(sr_spike_attn_pv_ref(&V.w, &Pp.p, &o1, &b1, nil)) == 0)
        for level: Int32 in simdLevels {
            sr_spike_set_simd_level(level)
            #expect(code(sr_spike_attn_pv(&V.w, &Pp.p, &o2, &b2, nil)) == 0)
            #expect(o1.map { $0.bitPattern } == o2.map { $0.bitPattern } && b1 == b2)
        }
        sr_spike_set_simd_level(-1)
        for d in 0..<hd {
            let exact = (0..<nPos).reduce(Float(0)) { $0 + prob[$1] * vals[$1][d] }
            #expect(abs(o1[d] - exact) < 0.02)
        }
    }

    @Test("packing: GGUF Q4_1 / Q8_0 blocks round-trip through the line layout")
    func packing() {
        var rng = SplitMix64(21)
        for fmt in formats {
            let (W, codes) = randomWeights(fmt, nOut: 333, nIn: 96, &rng)
            var bad = 0
            for o in 0..<333 { for j in 0..<96 where sr_spike_weights_code(&W.w, Int32(o), Int32(j)) != codes[o * 96 + j] { bad += 1 } }
            #expect(bad == 0)
            #expect(W.w.n_out_pad % W.w.tile_w == 0 && W.w.tile_w == sr_spike_tile_width(Int32(fmt.rawValue)))
            // padding rows are zero codes
            for o in 333..<Int(W.w.n_out_pad) { #expect(sr_spike_weights_code(&W.w, Int32(o), 5) == 0) }
        }
        // fp16 scales kept bit-exact
        let blocks = randomBlocks(SR_SPIKE_W_Q4_1, nOut: 130, nIn: 64, &rng)
        let W = Weights()
        #expect(code(sr_spike_weights_pack_q4_1(&W.w, blocks, 130, 64)) == 0)
        for o in 0..<130 {
            for b in 0..<2 {
                let i = sr_spike_blockvec_index(&W.w, Int32(o), Int32(b))
                let off = (o * 2 + b) * 20
                #expect(W.w.d[i] == UInt16(blocks[off]) | UInt16(blocks[off + 1]) << 8)
                #expect(W.w.m[i] == UInt16(blocks[off + 2]) | UInt16(blocks[off + 3]) << 8)
            }
        }
        // NaN scales are refused
        var nanBlock = blocks
        put16(&nanBlock, 20 * 7, 0x7e00)
        let W2 = Weights()
        #expect(code(sr_spike_weights_pack_q4_1(&W2.w, nanBlock, 130, 64)) == St.numeric.rawValue)
        // set_col keeps row sums current
        let V = Weights()
        #expect(code(sr_spike_weights_alloc(&V.w, SR_SPIKE_W_I8_ROW, 70, 64)) == 0)
        #expect(code(sr_spike_weights_add_row_sums(&V.w)) == 0)
        let col = (0..<70).map { Int8($0 % 50 - 25) }
        #expect(code(sr_spike_weights_set_col(&V.w, 3, col)) == 0)
        #expect(code(sr_spike_weights_set_col(&V.w, 4, col)) == 0)
        for o in 0..<70 { #expect(V.w.row_sum[sr_spike_blockvec_index(&V.w, Int32(o), 0)] == 2 * Int32(col[o])) }
    }

    @Test("fp16 -> f32 widening is exact for all 65536 halves")
    func fp16() {
        var bad = 0
        for h in 0...0xffff {
            let ref = Float(Float16(bitPattern: UInt16(h)))
            let got = sr_spike_f16_to_f32(UInt16(h))
            if ref.isNaN ? !got.isNaN : ref.bitPattern != got.bitPattern { bad += 1 }
        }
        #expect(bad == 0)
    }

    @Test("the block kernels contain no multiply instruction (objdump)")
    func noMultiply() throws {
        let script = spikeRepoRoot.appendingPathComponent("tools/check_no_multiply.sh").path
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = [script]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        #expect(p.terminationStatus == 0, "\(text)")
        #expect(text.contains("no multiply"))
    }
}
