import Foundation

/// A per-sentence value computed from one site's spikes, for group comparisons.
public enum SentenceMeasure: String, Sendable, Hashable, Codable, CaseIterable {
    /// Spike events per activation over the sentence's tokens and the recorded neurons.
    case spikesPerActivation = "spikes_per_activation"
    /// Events per step (`Σ events / (neurons · Σ_tokens T)`).
    case firingRate = "firing_rate"
    /// Mean over neurons of the plug-in entropy (bits) of the neuron's counts within the
    /// sentence. Biased by the sentence length, hence the length-matched controls.
    case countEntropy = "count_entropy"
    /// Mean `|n|` over the sentence's tokens and the recorded neurons.
    case meanAbsCount = "mean_abs_count"
}

/// Result of a two-sided permutation test on a difference of means.
public struct PermutationTestResult: Sendable, Hashable, Codable {
    /// `mean(a) − mean(b)`.
    public var difference: Double
    /// Two-sided p-value: exact, or `(1 + #{|d*| ≥ |d|}) / (1 + permutations)`.
    public var p: Double
    /// Whether every relabelling was enumerated.
    public var exact: Bool
    /// Relabellings evaluated (all of them when exact).
    public var permutations: Int
}

/// Statistics helpers for group comparisons.
public enum GroupStatistics {
    /// `C(n, k)`, or `nil` if it exceeds `limit`.
    static func binomial(_ n: Int, _ k: Int, limit: Int) -> Int? {
        let k = min(k, n - k)
        if k < 0 { return 0 }
        var r = 1
        for i in 0..<k {
            let (m, o) = r.multipliedReportingOverflow(by: n - i)
            if o { return nil }
            r = m / (i + 1)
            if r > limit { return nil }
        }
        return r
    }

    /// Two-sided permutation test of `mean(a) − mean(b)` over group labels.
    ///
    /// Exact (all `C(nA+nB, nA)` relabellings, identity included) when that number is at most
    /// `permutations`; otherwise `permutations` seeded random relabellings, with
    /// `p = (1 + #{|d*| ≥ |d|}) / (1 + permutations)` so that p is never 0. Ties within
    /// `1e-12` relative count as "as extreme".
    public static func permutationTest(_ a: [Double], _ b: [Double], permutations: Int = 10_000,
                                       seed: UInt64 = 1) -> PermutationTestResult {
        let nA = a.count, nB = b.count
        guard nA > 0, nB > 0 else {
            return PermutationTestResult(difference: .nan, p: .nan, exact: false, permutations: 0)
        }
        let all = a + b, n = all.count
        let total = all.reduce(0, +)
        let sumA = a.reduce(0, +)
        func diff(_ sA: Double) -> Double { sA / Double(nA) - (total - sA) / Double(nB) }
        let observed = diff(sumA)
        let threshold = abs(observed) - 1e-12 * max(1, abs(observed))
        if let count = binomial(n, nA, limit: permutations) {
            var idx = Array(0..<nA)   // lexicographic combinations
            var extreme = 0, seen = 0
            while true {
                var s = 0.0
                for i in idx { s += all[i] }
                if abs(diff(s)) >= threshold { extreme += 1 }
                seen += 1
                var i = nA - 1
                while i >= 0 && idx[i] == n - nA + i { i -= 1 }
                if i < 0 { break }
                idx[i] += 1
                for j in (i + 1)..<max(i + 1, nA) { idx[j] = idx[j - 1] + 1 }
            }
            precondition(seen == count)
            return PermutationTestResult(difference: observed, p: Double(extreme) / Double(seen),
                                         exact: true, permutations: seen)
        }
        var rng = SeededGenerator(seed: seed)
        var pool = all
        var extreme = 0
        for _ in 0..<permutations {
            var s = 0.0
            for i in 0..<nA {   // partial Fisher–Yates: first nA of a random relabelling
                let j = i + Int(rng.next(below: UInt64(n - i)))
                pool.swapAt(i, j)
                s += pool[i]
            }
            if abs(diff(s)) >= threshold { extreme += 1 }
        }
        return PermutationTestResult(difference: observed,
                                     p: Double(1 + extreme) / Double(1 + permutations),
                                     exact: false, permutations: permutations)
    }

    /// Benjamini–Hochberg adjusted p-values (step-up, monotone, capped at 1), in input order.
    /// NaN inputs stay NaN and do not count towards the number of tests.
    public static func benjaminiHochberg(_ p: [Double]) -> [Double] {
        let valid = p.indices.filter { !p[$0].isNaN }.sorted { p[$0] < p[$1] }
        let m = Double(valid.count)
        var out = p
        var running = 1.0
        for (rank, i) in valid.enumerated().reversed() {
            running = min(running, p[i] * m / Double(rank + 1))
            out[i] = min(1, running)
        }
        return out
    }
}

/// Comparison of two sentence groups (e.g. ambiguous vs unambiguous) per layer at one site
/// (docs/spike-algorithms.md §9, "Group comparison").
public struct GroupComparison: Sendable, Hashable, Codable {
    /// Per-sentence measure compared.
    public var measure: SentenceMeasure
    /// Site.
    public var site: String
    /// Category of group A (e.g. `ambiguous`).
    public var groupA: String
    /// Category of group B (e.g. `unambiguous`).
    public var groupB: String
    /// Significance level applied to the BH-adjusted p-values.
    public var alpha: Double
    /// One row per recorded layer, ascending.
    public var rows: [Row]

    /// One layer's test.
    public struct Row: Sendable, Hashable, Codable {
        /// Block index.
        public var layer: Int
        /// Sentences in group A and B.
        public var countA: Int, countB: Int
        /// Group means.
        public var meanA: Double, meanB: Double
        /// `meanA − meanB`.
        public var difference: Double
        /// `A > B`, `A < B` or `A = B`.
        public var direction: String
        /// Two-sided permutation p-value.
        public var p: Double
        /// Benjamini–Hochberg adjusted p across the rows.
        public var pAdjusted: Double
        /// Whether the permutation distribution was exact.
        public var exact: Bool
        /// `pAdjusted < alpha`.
        public var significant: Bool

        enum CodingKeys: String, CodingKey {
            case layer, difference, direction, p, exact, significant
            case countA = "count_a", countB = "count_b", meanA = "mean_a", meanB = "mean_b"
            case pAdjusted = "p_adjusted"
        }
    }

    enum CodingKeys: String, CodingKey {
        case measure, site, alpha, rows
        case groupA = "group_a", groupB = "group_b"
    }

    /// Layers whose groups differ (adjusted p < alpha), with the direction.
    public var differingLayers: [(layer: Int, direction: String)] {
        rows.filter(\.significant).map { ($0.layer, $0.direction) }
    }

    /// One-line summary per significant layer, e.g. `L3: ambiguous > unambiguous (p_BH = 0.004)`.
    public var summary: String {
        let sig = rows.filter(\.significant)
        if sig.isEmpty { return "no layer differs at \(site) (\(measure.rawValue), BH alpha \(alpha))" }
        return sig.map { r in
            let dir = r.difference > 0 ? "\(groupA) > \(groupB)" : "\(groupA) < \(groupB)"
            return "L\(r.layer).\(site): \(dir) (p_BH = \(String(format: "%.3g", r.pAdjusted)))"
        }.joined(separator: "; ")
    }

    /// Values of `measure` per sentence at `key`: sentence index → value (sentences without
    /// recorded tokens are left out).
    public static func sentenceValues(_ rec: SpikeRecording, key: RecordingKey,
                                      measure: SentenceMeasure) -> [Int: Double] {
        guard let s = rec.sites[key] else { return [:] }
        var byS: [Int: [Int]] = [:]
        for i in 0..<s.tokenCount where rec.tokenSentence[i] >= 0 { byS[Int(rec.tokenSentence[i]), default: []].append(i) }
        var out: [Int: Double] = [:]
        let k = s.neuronCount
        guard k > 0 else { return [:] }
        for (sent, toks) in byS {
            switch measure {
            case .spikesPerActivation, .firingRate, .meanAbsCount:
                var events = 0, steps = 0, absSum = 0
                for i in toks {
                    let T = Int(s.tokenSteps[i])
                    steps += T
                    for j in 0..<k {
                        let n = s.count(token: i, neuron: j)
                        events += s.encoding.spikeCount(n, steps: T)
                        absSum += Int(n.magnitude)
                    }
                }
                switch measure {
                case .spikesPerActivation: out[sent] = Double(events) / Double(toks.count * k)
                case .firingRate: out[sent] = Double(events) / Double(steps * k)
                default: out[sent] = Double(absSum) / Double(toks.count * k)
                }
            case .countEntropy:
                var total = 0.0
                for j in 0..<k { total += InformationMeasures.entropy(of: toks.map { s.count(token: $0, neuron: j) }).bits }
                out[sent] = total / Double(k)
            }
        }
        return out
    }

    /// Compares the sentences of category `groupA` with those of `groupB` at `site`, one
    /// permutation test per recorded layer, BH-adjusted across layers.
    public static func compare(_ rec: SpikeRecording, site: SpikeSite,
                               measure: SentenceMeasure = .spikesPerActivation,
                               groupA: String = "ambiguous", groupB: String = "unambiguous",
                               permutations: Int = 10_000, seed: UInt64 = 20_250_601,
                               alpha: Double = 0.05) throws(SpikeRunError) -> GroupComparison {
        let keys = rec.keys.filter { $0.site == site }
        guard !keys.isEmpty else { throw .invalidArgument("site \(site) was not recorded") }
        var rows: [Row] = []
        for key in keys {
            let v = sentenceValues(rec, key: key, measure: measure)
            let a = v.keys.sorted().filter { rec.sentences[$0].category == groupA }.map { v[$0]! }
            let b = v.keys.sorted().filter { rec.sentences[$0].category == groupB }.map { v[$0]! }
            guard !a.isEmpty, !b.isEmpty else {
                throw .invalidArgument("\(key): no sentence of category '\(a.isEmpty ? groupA : groupB)' "
                    + "has recorded tokens")
            }
            let t = GroupStatistics.permutationTest(a, b, permutations: permutations, seed: seed &+ UInt64(key.layer))
            let mA = a.reduce(0, +) / Double(a.count), mB = b.reduce(0, +) / Double(b.count)
            rows.append(Row(layer: key.layer, countA: a.count, countB: b.count, meanA: mA, meanB: mB,
                            difference: t.difference,
                            direction: t.difference > 0 ? "A > B" : (t.difference < 0 ? "A < B" : "A = B"),
                            p: t.p, pAdjusted: t.p, exact: t.exact, significant: false))
        }
        let adj = GroupStatistics.benjaminiHochberg(rows.map(\.p))
        for i in rows.indices {
            rows[i].pAdjusted = adj[i]
            rows[i].significant = adj[i] < alpha
        }
        return GroupComparison(measure: measure, site: site.name, groupA: groupA, groupB: groupB,
                               alpha: alpha, rows: rows)
    }
}
