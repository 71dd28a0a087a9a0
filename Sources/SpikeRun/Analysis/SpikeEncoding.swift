/// How a signed integer count `n` is spread over `T` time steps (docs/spike-algorithms.md §2).
///
/// Every encoding is lossless inside its range: `n = Σ_t c_t · σ_t` with step weights `c_t`
/// from ``stepWeight(at:steps:)`` and spike values `σ_t` from ``encode(_:steps:)``.
/// Time index `t = 0 … T−1` is the order in which spikes are emitted and recorded.
///
/// ```swift
/// let planes = try SpikeEncoding.signMagnitude.encode(-5, steps: 4)   // [0, -1, 0, -1]
/// ```
public enum SpikeEncoding: Sendable, Hashable, Codable {
    /// Bitwise sign-magnitude (the spikerun default): step `t` carries bit `T−1−t` of `|n|`
    /// (most significant bit first) with the sign of `n` as polarity. Values {−1, 0, +1},
    /// range `−(2^T−1) … 2^T−1`.
    case signMagnitude
    /// Ternary rate code: fires `sign(n)` on the first `|n|` steps. Values {−1, 0, +1},
    /// range `−T … T`.
    case ternary
    /// Binary rate code with offset `z`: fires `+1` on the first `n + z` steps. Values {0, 1},
    /// range `−z … T−z`.
    case binary(offset: Int32)
    /// Bitwise two's complement: the bits of `n mod 2^T`, most significant first; the first
    /// step has weight `−2^(T−1)`. Values {0, 1}, range `−2^(T−1) … 2^(T−1)−1`.
    case twosComplement
    /// Non-adjacent form: signed binary digits, most significant first, no two adjacent
    /// digits non-zero. The same step weights as sign-magnitude (`2^(T−1−t)`) and values
    /// {−1, 0, +1}, the fewest spikes of any signed-digit code (about a third fewer than
    /// sign-magnitude on uniform counts); range `±⌊(2^(T+1)−1)/3⌋`.
    case naf

    /// Short stable name used in files: `sign-magnitude`, `ternary`, `binary`, `twos-complement`.
    public var name: String {
        switch self {
        case .signMagnitude: "sign-magnitude"
        case .ternary: "ternary"
        case .binary: "binary"
        case .twosComplement: "twos-complement"
        case .naf: "naf"
        }
    }

    /// The offset `z` of the binary code, 0 for the others.
    public var offset: Int32 {
        if case .binary(let z) = self { return z }
        return 0
    }

    /// Creates an encoding from its file name (see ``name``); `offset` is used for `binary`.
    public init?(name: String, offset: Int32 = 0) {
        switch name {
        case "sign-magnitude": self = .signMagnitude
        case "ternary": self = .ternary
        case "binary": self = .binary(offset: offset)
        case "twos-complement": self = .twosComplement
        case "naf": self = .naf
        default: return nil
        }
    }

    /// Number of distinct spike values: 3 for the signed codes ({−1, 0, +1}), 2 for the
    /// unsigned ones ({0, 1}).
    public var alphabetSize: Int {
        switch self {
        case .signMagnitude, .ternary, .naf: 3
        case .binary, .twosComplement: 2
        }
    }

    /// Largest supported number of steps: 31 for the bitwise codes (int32 counts), 4096
    /// for the rate codes.
    public var maxSteps: Int {
        switch self {
        case .signMagnitude, .twosComplement, .naf: 31
        case .ternary, .binary: 4096
        }
    }

    /// Weight `c_t` of step `t` out of `T` (§2 table).
    public func stepWeight(at t: Int, steps T: Int) -> Int64 {
        switch self {
        case .ternary, .binary: return 1
        case .signMagnitude, .naf: return Int64(1) << Int64(T - 1 - t)
        case .twosComplement:
            let w = Int64(1) << Int64(T - 1 - t)
            return t == 0 ? -w : w
        }
    }

    /// The counts representable with `T` steps.
    public func range(steps T: Int) -> ClosedRange<Int64> {
        switch self {
        case .signMagnitude:
            let m = (Int64(1) << Int64(T)) - 1
            return -m...m
        case .ternary: return Int64(-T)...Int64(T)
        case .naf:
            let m = ((Int64(1) << Int64(T + 1)) - 1) / 3
            return -m...m
        case .binary(let z): return Int64(-z)...Int64(T) - Int64(z)
        case .twosComplement:
            guard T > 0 else { return 0...0 }
            let h = Int64(1) << Int64(T - 1)
            return -h...(h - 1)
        }
    }

    /// Smallest `T` that represents every count with `|n| ≤ maxAbs` (§2 table; at least 1).
    /// For the binary code this assumes the offset `z = maxAbs` and returns `2·maxAbs`.
    public func stepsNeeded(maxAbs: Int) -> Int {
        let c = max(0, maxAbs)
        var bits = 0
        while (1 << bits) - 1 < c { bits += 1 }   // ceil(log2(c + 1))
        switch self {
        case .signMagnitude: return max(1, bits)
        case .naf:
            var T = 1
            while ((Int64(1) << Int64(T + 1)) - 1) / 3 < Int64(c) { T += 1 }
            return T
        case .twosComplement: return bits + 1
        case .ternary: return max(1, c)
        case .binary: return max(1, 2 * c)
        }
    }

    /// Spikes emitted for one count at `T` steps: the number of nonzero entries of
    /// ``encode(_:steps:)``.
    @inlinable
    public func spikeCount(_ n: Int32, steps T: Int) -> Int {
        switch self {
        case .signMagnitude: return Int(n.magnitude.nonzeroBitCount)
        case .naf:
            // Non-zero NAF digits of m: popcount((3m ^ m) >> 1) (the bits where 3m and m differ).
            let m = UInt64(n.magnitude)
            return (((3 &* m) ^ m) >> 1).nonzeroBitCount
        case .ternary: return Int(n.magnitude)
        case .binary(let z): return Int(Int64(n) + Int64(z))
        case .twosComplement:
            let mask: UInt64 = T >= 64 ? ~0 : (UInt64(1) << UInt64(T)) - 1
            return (UInt64(bitPattern: Int64(n)) & mask).nonzeroBitCount
        }
    }

    /// Writes the `T` spike values of count `n` to `out[t * stride]`, `t = 0 … T−1`.
    ///
    /// The caller has checked that `n` is inside ``range(steps:)``.
    @inlinable
    public func encodeUnchecked(_ n: Int32, steps T: Int, into out: UnsafeMutablePointer<Int8>,
                                stride: Int) {
        switch self {
        case .signMagnitude:
            let mag = n.magnitude
            let sgn: Int8 = n < 0 ? -1 : 1
            for t in 0..<T {
                let bit = (mag >> UInt32(T - 1 - t)) & 1
                out[t * stride] = bit == 0 ? 0 : sgn
            }
        case .ternary:
            let mag = Int(n.magnitude)
            let sgn: Int8 = n < 0 ? -1 : 1
            for t in 0..<T { out[t * stride] = t < mag ? sgn : 0 }
        case .binary(let z):
            let k = Int(Int64(n) + Int64(z))
            for t in 0..<T { out[t * stride] = t < k ? 1 : 0 }
        case .twosComplement:
            let bits = UInt64(bitPattern: Int64(n))
            for t in 0..<T { out[t * stride] = Int8(truncatingIfNeeded: (bits >> UInt64(T - 1 - t)) & 1) }
        case .naf:
            for t in 0..<T { out[t * stride] = 0 }
            var m = Int64(n.magnitude)
            var k = 0
            while m != 0 {
                let d: Int64 = m & 1 == 1 ? 2 - (m & 3) : 0
                m = (m - d) >> 1
                if d != 0 { out[(T - 1 - k) * stride] = Int8((d < 0) != (n < 0) ? -1 : 1) }
                k += 1
            }
        }
    }

    /// The `T` spike values of count `n` (§2).
    ///
    /// - Throws: ``SpikeRunError`` (`invalidArgument`) if `T` is outside `1 … maxSteps` or `n`
    ///   does not fit in `T` steps of this code.
    public func encode(_ n: Int32, steps T: Int) throws(SpikeRunError) -> [Int8] {
        try checkSteps(T)
        guard range(steps: T).contains(Int64(n)) else {
            throw .invalidArgument("count \(n) does not fit in \(T) steps of the \(name) code "
                + "(range \(range(steps: T).lowerBound)…\(range(steps: T).upperBound)); raise T")
        }
        var out = [Int8](repeating: 0, count: T)
        out.withUnsafeMutableBufferPointer { encodeUnchecked(n, steps: T, into: $0.baseAddress!, stride: 1) }
        return out
    }

    /// The count `n = Σ_t c_t · σ_t` of a train of `planes.count` steps.
    ///
    /// - Throws: ``SpikeRunError`` (`format`) if a value is not a spike value of this code or
    ///   the sum does not fit in Int32.
    public func decode(_ planes: [Int8]) throws(SpikeRunError) -> Int32 {
        let T = planes.count
        try checkSteps(T)
        var sum: Int64 = 0
        for (t, v) in planes.enumerated() {
            guard isSpikeValue(v) else {
                throw .format("spike value \(v) at step \(t) is not allowed in the \(name) code")
            }
            sum += Int64(v) * stepWeight(at: t, steps: T)
        }
        if case .binary(let z) = self { sum -= Int64(z) }
        guard let n = Int32(exactly: sum) else { throw .format("decoded count \(sum) exceeds int32") }
        return n
    }

    /// Whether `v` is one of this code's spike values.
    @inlinable
    public func isSpikeValue(_ v: Int8) -> Bool {
        switch self {
        case .signMagnitude, .ternary, .naf: return v >= -1 && v <= 1
        case .binary, .twosComplement: return v == 0 || v == 1
        }
    }

    func checkSteps(_ T: Int) throws(SpikeRunError) {
        guard T >= 1 && T <= maxSteps else {
            throw .invalidArgument("\(T) time steps is outside 1…\(maxSteps) for the \(name) code")
        }
    }
}
