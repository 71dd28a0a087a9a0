import Foundation

/// A plug-in entropy estimate with its Miller–Madow correction (docs/spike-algorithms.md §9).
public struct EntropyEstimate: Sendable, Hashable, Codable {
    /// `H = −Σ_k p_k log2 p_k` with empirical probabilities (bits).
    public var bits: Double
    /// `H + (K − 1) / (2 N ln 2)` (bits).
    public var millerMadow: Double
    /// Occupied bins `K`.
    public var bins: Int
    /// Samples `N`.
    public var samples: Int

    enum CodingKeys: String, CodingKey {
        case bits, bins, samples
        case millerMadow = "miller_madow"
    }

    /// Creates an estimate from histogram counts (zero bins are ignored).
    public init<C: Collection>(histogram: C) where C.Element == Int {
        var n = 0, k = 0
        for c in histogram where c > 0 { n += c; k += 1 }
        var h = 0.0
        if n > 0 {
            let dn = Double(n)
            for c in histogram where c > 0 {
                let p = Double(c) / dn
                h -= p * log2(p)
            }
        }
        bits = max(0, h)
        bins = k
        samples = n
        millerMadow = n > 0 ? bits + Double(k - 1) / (2 * Double(n) * M_LN2) : 0
    }
}

/// Mutual information between two discrete variables, in bits.
public struct MutualInformation: Sendable, Hashable, Codable {
    /// `I = H(S) + H(R) − H(S, R)`, clipped at 0.
    public var bits: Double
    /// `H(S)`.
    public var stimulusEntropy: Double
    /// `H(R)`.
    public var responseEntropy: Double
    /// `2I / (H(S) + H(R))` (arithmetic-mean normalization, scikit-learn's default): 1 when both
    /// variables take a single value, 0 when `I = 0` otherwise.
    public var normalized: Double
    /// Samples.
    public var samples: Int

    enum CodingKeys: String, CodingKey {
        case bits, normalized, samples
        case stimulusEntropy = "stimulus_entropy", responseEntropy = "response_entropy"
    }
}

/// Information-theoretic estimators on spike data (docs/spike-algorithms.md §9). All results are
/// in bits.
public enum InformationMeasures {
    /// Entropy of a sample of hashable values (plug-in and Miller–Madow).
    public static func entropy<T: Hashable>(of samples: [T]) -> EntropyEstimate {
        var h: [T: Int] = [:]
        for v in samples { h[v, default: 0] += 1 }
        return EntropyEstimate(histogram: Array(h.values))
    }

    /// Entropy of a sample of Int32 values (fast path for counts).
    public static func entropy(of samples: [Int32]) -> EntropyEstimate {
        guard let lo = samples.min(), let hi = samples.max() else { return EntropyEstimate(histogram: [Int]()) }
        let span = Int(hi) - Int(lo) + 1
        if span <= 1 << 16 {
            var h = [Int](repeating: 0, count: span)
            for v in samples { h[Int(v) - Int(lo)] += 1 }
            return EntropyEstimate(histogram: h)
        }
        var d: [Int32: Int] = [:]
        for v in samples { d[v, default: 0] += 1 }
        return EntropyEstimate(histogram: Array(d.values))
    }

    /// Maps values to dense labels `0 ..< k` in ascending value order; returns labels and `k`.
    public static func denseLabels<T: Hashable & Comparable>(_ values: [T]) -> (labels: [Int32], count: Int) {
        let distinct = Array(Set(values)).sorted()
        var map: [T: Int32] = [:]
        for (i, v) in distinct.enumerated() { map[v] = Int32(i) }
        return (values.map { map[$0]! }, distinct.count)
    }

    /// Mutual information of two dense label sequences (`s[i] < ks`, `r[i] < kr`).
    public static func mutualInformation(dense s: [Int32], _ ks: Int, _ r: [Int32], _ kr: Int) -> MutualInformation {
        precondition(s.count == r.count)
        var hs = [Int](repeating: 0, count: ks), hr = [Int](repeating: 0, count: kr)
        var joint = [Int](repeating: 0, count: ks * kr)
        for i in 0..<s.count {
            hs[Int(s[i])] += 1
            hr[Int(r[i])] += 1
            joint[Int(s[i]) * kr + Int(r[i])] += 1
        }
        let HS = EntropyEstimate(histogram: hs), HR = EntropyEstimate(histogram: hr)
        let HJ = EntropyEstimate(histogram: joint)
        let i = max(0, HS.bits + HR.bits - HJ.bits)
        let nmi: Double
        if HS.bins <= 1 && HR.bins <= 1 {
            nmi = 1
        } else if i <= 0 {
            nmi = 0
        } else {
            nmi = 2 * i / (HS.bits + HR.bits)
        }
        return MutualInformation(bits: i, stimulusEntropy: HS.bits, responseEntropy: HR.bits,
                                 normalized: nmi, samples: s.count)
    }

    /// Mutual information between stimulus `s` and response `r` (same length).
    public static func mutualInformation<S: Hashable & Comparable, R: Hashable & Comparable>(
        stimulus s: [S], response r: [R]
    ) -> MutualInformation {
        let (ds, ks) = denseLabels(s), (dr, kr) = denseLabels(r)
        return mutualInformation(dense: ds, ks, dr, kr)
    }

    /// Mean mutual information over `permutations` seeded shuffles of the stimulus: the bias
    /// baseline subtracted in ``SiteMeasures``.
    public static func shuffledMutualInformation(dense s: [Int32], _ ks: Int, _ r: [Int32], _ kr: Int,
                                                 permutations: Int, seed: UInt64) -> Double {
        let n = s.count
        guard permutations > 0, n > 0 else { return 0 }
        // H(S) and H(R) do not change under a permutation of S; only H(S, R) does.
        var hs = [Int](repeating: 0, count: ks), hr = [Int](repeating: 0, count: kr)
        for i in 0..<n { hs[Int(s[i])] += 1; hr[Int(r[i])] += 1 }
        let marginals = EntropyEstimate(histogram: hs).bits + EntropyEstimate(histogram: hr).bits
        let dn = Double(n), log2n = log2(dn)
        let clogc = (0...n).map { $0 == 0 ? 0.0 : Double($0) * log2(Double($0)) }
        var joint = [Int32](repeating: 0, count: ks * kr)
        var rng = SeededGenerator(seed: seed)
        var p = s, total = 0.0
        for _ in 0..<permutations {
            rng.shuffle(&p)
            for i in 0..<n { joint[Int(p[i]) * kr + Int(r[i])] += 1 }
            var sum = 0.0
            for i in 0..<n {   // visit each occupied cell once, then clear it
                let k = Int(p[i]) * kr + Int(r[i])
                let c = joint[k]
                if c > 0 { sum += clogc[Int(c)]; joint[k] = 0 }
            }
            total += max(0, marginals - (log2n - sum / dn))
        }
        return total / Double(permutations)
    }

    /// Symbol of a spike value for word codes: `v + 1` for signed alphabets (size 3), `v` for
    /// unsigned ones.
    @inline(__always) static func symbol(_ v: Int8, alphabet: Int) -> UInt64 {
        alphabet == 3 ? UInt64(Int(v) + 1) : UInt64(v)
    }

    /// Block entropy `H_L` of all overlapping length-`L` windows of `train` (bits).
    ///
    /// - Parameter alphabet: 3 for {−1, 0, +1} trains, 2 for {0, 1} trains.
    public static func blockEntropy(_ train: [Int8], length L: Int, alphabet: Int) -> EntropyEstimate {
        guard L >= 1, train.count >= L else { return EntropyEstimate(histogram: [Int]()) }
        let base = UInt64(alphabet)
        var words = [UInt64]()
        words.reserveCapacity(train.count - L + 1)
        var modulus: UInt64 = 1
        var overflow = false
        for _ in 0..<L {
            let (m, o) = modulus.multipliedReportingOverflow(by: base)
            modulus = m
            overflow = overflow || o
        }
        if overflow {   // very long words: hash the windows themselves
            var h: [ArraySlice<Int8>: Int] = [:]
            for i in 0...(train.count - L) { h[train[i..<i + L], default: 0] += 1 }
            return EntropyEstimate(histogram: Array(h.values))
        }
        var code: UInt64 = 0
        for (i, v) in train.enumerated() {
            code = (code &* base &+ symbol(v, alphabet: alphabet)) % modulus
            if i >= L - 1 { words.append(code) }
        }
        if modulus <= 1 << 20 {
            var h = [Int](repeating: 0, count: Int(modulus))
            for w in words { h[Int(w)] += 1 }
            return EntropyEstimate(histogram: h)
        }
        var d: [UInt64: Int] = [:]
        for w in words { d[w, default: 0] += 1 }
        return EntropyEstimate(histogram: Array(d.values))
    }

    /// Entropy of non-overlapping words: `train` cut into consecutive words of `length` steps
    /// (e.g. the `T`-step word of each token).
    public static func wordEntropy(_ train: [Int8], length: Int, alphabet: Int) -> EntropyEstimate {
        guard length >= 1, train.count >= length else { return EntropyEstimate(histogram: [Int]()) }
        let words = train.count / length
        let bitsPerSymbol = alphabet == 3 ? 2 : 1
        if length * bitsPerSymbol <= 64 {
            var codes = [UInt64](repeating: 0, count: words)
            for w in 0..<words {
                var c: UInt64 = 0
                for t in 0..<length { c = c << UInt64(bitsPerSymbol) | symbol(train[w * length + t], alphabet: alphabet) }
                codes[w] = c
            }
            return entropy(of: codes)
        }
        var h: [ArraySlice<Int8>: Int] = [:]
        for w in 0..<words { h[train[w * length ..< (w + 1) * length], default: 0] += 1 }
        return EntropyEstimate(histogram: Array(h.values))
    }

    /// The largest block length `L ≥ 1` with at least `10 · alphabet^L` windows in a train of
    /// `steps` steps, or `nil` if even `L = 1` has too few.
    public static func blockLength(steps: Int, alphabet: Int) -> Int? {
        var best: Int? = nil
        var power = 1
        for L in 1...64 {
            power *= alphabet
            if steps - L + 1 >= 10 * power { best = L } else { break }
        }
        return best
    }

    /// Kaspar–Schuster count `c` of the Lempel–Ziv (1976) complexity: the number of phrases of
    /// the exhaustive parsing, each the shortest word not seen in the preceding text.
    /// `0001101001000101` parses as 0·001·10·100·1000·101: c = 6.
    public static func lz76Complexity<T: Equatable>(_ s: [T]) -> Int {
        let n = s.count
        if n <= 1 { return n }
        var c = 1, l = 1, i = 0, k = 1, kMax = 1
        while true {
            if s[i + k - 1] == s[l + k - 1] {
                k += 1
                if l + k > n { c += 1; break }
            } else {
                kMax = max(kMax, k)
                i += 1
                if i == l {
                    c += 1
                    l += kMax
                    if l + 1 > n { break }
                    i = 0; k = 1; kMax = 1
                } else {
                    k = 1
                }
            }
        }
        return c
    }

    /// LZ76 phrase count of a spike train: the same number as the generic Kaspar–Schuster
    /// scan `lz76Complexity(_:)` on any `Equatable` sequence, but in `O(N · |A|)` time with a
    /// suffix automaton (the scan is `O(N · c)`, far too slow for long trains).
    ///
    /// At a phrase start `l` the phrase is extended while `s[l ..< l+m]` occurs in
    /// `s[0 ..< l+m−1]` (the copy may overlap the phrase); the automaton always holds the text
    /// before the character being tested.
    public static func lz76Complexity(_ train: [Int8]) -> Int {
        let n = train.count
        if n <= 1 { return n }
        var index = [Int](repeating: -1, count: 256)   // dense symbols
        var symbols = [Int](repeating: 0, count: n)
        var a = 0
        for (i, v) in train.enumerated() {
            let b = Int(UInt8(bitPattern: v))
            if index[b] < 0 { index[b] = a; a += 1 }
            symbols[i] = index[b]
        }
        var sam = SuffixAutomaton(capacity: n, alphabet: a)
        var c = 0, l = 0
        while l < n {
            var v = 0, m = 0
            while true {
                if l + m == n { return c + 1 }   // the rest is a copy: last phrase, incomplete
                let ch = symbols[l + m]
                let t = sam.next[v * a + ch]
                if t < 0 { break }
                v = Int(t)
                m += 1
                sam.extend(ch)
                // A clone may have taken over the strings of length ≤ len(link(v)).
                while v != 0 && Int(sam.len[Int(sam.link[v])]) >= m { v = Int(sam.link[v]) }
            }
            sam.extend(symbols[l + m])   // the phrase's new last character
            c += 1
            l += m + 1
        }
        return c
    }

    /// Lempel–Ziv entropy-rate estimate `c · log_|A|(N) / N · log2|A|` bits per step, which equals
    /// `c · log2(N) / N` for any alphabet size.
    public static func lzEntropyRate(phrases c: Int, steps n: Int) -> Double {
        n > 1 ? Double(c) * log2(Double(n)) / Double(n) : 0
    }
}

/// Online suffix automaton over a dense alphabet (states ≤ 2N).
struct SuffixAutomaton {
    let alphabet: Int
    var next: [Int32]   // (states, alphabet), −1 = none
    var link: [Int32]
    var len: [Int32]
    var size = 1
    var last = 0

    init(capacity n: Int, alphabet: Int) {
        self.alphabet = alphabet
        let cap = 2 * n + 2
        next = [Int32](repeating: -1, count: cap * alphabet)
        link = [Int32](repeating: -1, count: cap)
        len = [Int32](repeating: 0, count: cap)
    }

    mutating func extend(_ ch: Int) {
        let a = alphabet
        let cur = size
        size += 1
        len[cur] = len[last] + 1
        var p = last
        while p >= 0 && next[p * a + ch] < 0 {
            next[p * a + ch] = Int32(cur)
            p = Int(link[p])
        }
        if p < 0 {
            link[cur] = 0
        } else {
            let q = Int(next[p * a + ch])
            if len[p] + 1 == len[q] {
                link[cur] = Int32(q)
            } else {
                let clone = size
                size += 1
                len[clone] = len[p] + 1
                for k in 0..<a { next[clone * a + k] = next[q * a + k] }
                link[clone] = link[q]
                while p >= 0 && next[p * a + ch] == Int32(q) {
                    next[p * a + ch] = Int32(clone)
                    p = Int(link[p])
                }
                link[q] = Int32(clone)
                link[cur] = Int32(clone)
            }
        }
        last = cur
    }
}
