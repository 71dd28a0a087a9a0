import Foundation
import Testing

@testable import SpikeRun

/// Repository root: three levels up from this file (Tests/SpikeRunTests/AnalysisTests.swift).
private let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()

private func tempDir(_ name: String) throws -> URL {
    let u = FileManager.default.temporaryDirectory
        .appendingPathComponent("spikerun-analysis-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
    try FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
    return u
}

private func close(_ a: Double, _ b: Double, _ tol: Double = 1e-6) -> Bool { abs(a - b) <= tol }

// MARK: - §2 encodings (Example 2)

@Suite("Analysis: spike encodings")
struct AnalysisEncodingTests {
    @Test("spec Example 2: sign-magnitude, two's complement, ternary, binary")
    func example2() throws {
        #expect(try SpikeEncoding.signMagnitude.encode(5, steps: 4) == [0, 1, 0, 1])
        #expect(try SpikeEncoding.signMagnitude.encode(-5, steps: 4) == [0, -1, 0, -1])
        #expect(try SpikeEncoding.signMagnitude.encode(-5, steps: 3) == [-1, 0, -1])
        #expect(try SpikeEncoding.twosComplement.encode(-5, steps: 4) == [1, 0, 1, 1])
        #expect(try SpikeEncoding.twosComplement.encode(5, steps: 4) == [0, 1, 0, 1])
        #expect(try SpikeEncoding.twosComplement.encode(-1, steps: 4) == [1, 1, 1, 1])
        #expect(try SpikeEncoding.twosComplement.encode(-8, steps: 4) == [1, 0, 0, 0])
        #expect(try SpikeEncoding.ternary.encode(-5, steps: 8) == [-1, -1, -1, -1, -1, 0, 0, 0])
        #expect(try SpikeEncoding.binary(offset: 0).encode(5, steps: 8) == [1, 1, 1, 1, 1, 0, 0, 0])
        // Spikes for −5: ternary 5, sign-magnitude 2, two's complement 3.
        #expect(SpikeEncoding.ternary.spikeCount(-5, steps: 8) == 5)
        #expect(SpikeEncoding.signMagnitude.spikeCount(-5, steps: 4) == 2)
        #expect(SpikeEncoding.twosComplement.spikeCount(-5, steps: 4) == 3)
        #expect(try SpikeEncoding.twosComplement.decode([1, 0, 1, 1]) == -5)
    }

    @Test("every count in range round-trips; spike counts match the planes; T table of §2")
    func roundTrip() throws {
        let codes: [SpikeEncoding] = [.signMagnitude, .ternary, .binary(offset: 3), .twosComplement, .naf]
        for code in codes {
            for T in 1...6 {
                for n in code.range(steps: T) {
                    let planes = try code.encode(Int32(n), steps: T)
                    #expect(try code.decode(planes) == Int32(n))
                    #expect(planes.filter { $0 != 0 }.count == code.spikeCount(Int32(n), steps: T))
                }
                let past = code.range(steps: T).upperBound + 1
                #expect(throws: SpikeRunError.self) { try code.encode(Int32(past), steps: T) }
            }
        }
        // b = 8 (C = 127): binary 254, ternary 127, sign-magnitude 7, two's complement 8.
        #expect(SpikeEncoding.binary(offset: 127).stepsNeeded(maxAbs: 127) == 254)
        #expect(SpikeEncoding.ternary.stepsNeeded(maxAbs: 127) == 127)
        #expect(SpikeEncoding.signMagnitude.stepsNeeded(maxAbs: 127) == 7)
        #expect(SpikeEncoding.twosComplement.stepsNeeded(maxAbs: 127) == 8)
        // NAF: 7 = 8 - 1 (2 spikes, sign-magnitude needs 3); 127 = 128 - 1 needs T = 8.
        #expect(try SpikeEncoding.naf.encode(7, steps: 4) == [1, 0, 0, -1])
        #expect(try SpikeEncoding.naf.encode(-5, steps: 3) == [-1, 0, -1])
        #expect(try SpikeEncoding.naf.encode(-3, steps: 3) == [-1, 0, 1])
        #expect(SpikeEncoding.naf.spikeCount(127, steps: 8) == 2)
        #expect(SpikeEncoding.naf.stepsNeeded(maxAbs: 127) == 8)
        #expect(SpikeEncoding.naf.range(steps: 3) == -5...5)
        #expect(throws: SpikeRunError.self) { try SpikeEncoding.ternary.decode([1, 2]) }
    }
}

// MARK: - §9 measures

@Suite("Analysis: information measures")
struct AnalysisMeasureTests {
    @Test("spec Example 7: entropy of counts and Miller–Madow")
    func example7() {
        let h = InformationMeasures.entropy(of: [0, 0, 1, 2, 0, 1, 0, 0] as [Int32])
        #expect(close(h.bits, 1.298795))
        #expect(close(h.millerMadow, 1.479132))
        #expect(h.bins == 3 && h.samples == 8)
    }

    @Test("entropy of uniform and degenerate distributions")
    func uniformDegenerate() {
        #expect(close(InformationMeasures.entropy(of: Array(0..<8) as [Int32]).bits, 3, 1e-12))
        #expect(close(InformationMeasures.entropy(of: Array(0..<1024).map { Int32($0 % 4) }).bits, 2, 1e-12))
        let d = InformationMeasures.entropy(of: [Int32](repeating: 7, count: 50))
        #expect(d.bits == 0 && d.millerMadow == 0)
        #expect(InformationMeasures.entropy(of: [Int32]()).bits == 0)
        #expect(close(InformationMeasures.entropy(of: ["a", "b"]).bits, 1, 1e-12))
    }

    @Test("spec Example 8: mutual information and NMI")
    func example8() {
        let a = InformationMeasures.mutualInformation(stimulus: [0, 0, 1, 1], response: [0, 0, 1, 1])
        #expect(close(a.bits, 1, 1e-12) && close(a.normalized, 1, 1e-12))
        let b = InformationMeasures.mutualInformation(stimulus: [0, 1, 0, 1], response: [0, 0, 1, 1])
        #expect(close(b.bits, 0, 1e-12) && b.normalized == 0)
        // Both constant: NMI = 1 (scikit-learn's convention); one constant: 0.
        #expect(InformationMeasures.mutualInformation(stimulus: [3, 3], response: [1, 1]).normalized == 1)
        #expect(InformationMeasures.mutualInformation(stimulus: [3, 4], response: [1, 1]).normalized == 0)
    }

    @Test("spec Example 9: block entropies and entropy rate")
    func example9() {
        let periodic = (0..<100).map { Int8($0 % 2) }
        #expect(close(InformationMeasures.blockEntropy(periodic, length: 1, alphabet: 2).bits, 1, 1e-12))
        let h2 = InformationMeasures.blockEntropy(periodic, length: 2, alphabet: 2).bits
        #expect(close(h2, 1, 1e-3))
        #expect(close(h2 - 1, 0, 1e-3))
        let t: [Int8] = [0, 0, 1, 0, 1, 1, 0, 1]
        let H1 = InformationMeasures.blockEntropy(t, length: 1, alphabet: 2).bits
        let H2 = InformationMeasures.blockEntropy(t, length: 2, alphabet: 2).bits
        #expect(close(H1, 1, 1e-12))
        #expect(close(H2, 1.842371))
        #expect(close(H2 - H1, 0.842371))
        // Block length rule: largest L with ≥ 10·|A|^L windows.
        #expect(InformationMeasures.blockLength(steps: 100, alphabet: 2) == 3)
        #expect(InformationMeasures.blockLength(steps: 8, alphabet: 2) == nil)
        #expect(InformationMeasures.blockLength(steps: 30, alphabet: 3) == 1)
    }

    @Test("LZ76 (Kaspar–Schuster) known values")
    func lz76() {
        func c(_ s: String) -> Int { InformationMeasures.lz76Complexity(Array(s)) }
        #expect(c("0001101001000101") == 6)   // 0·001·10·100·1000·101 (spec Example 9)
        #expect(c("") == 0)
        #expect(c("1") == 1)
        #expect(c(String(repeating: "0", count: 20)) == 2)   // 0·000…0
        #expect(c(String(repeating: "01", count: 10)) == 3)  // 0·1·0101…
        #expect(c("0123") == 4)
        // The suffix-automaton version on Int8 trains equals the Kaspar–Schuster scan.
        let fast: [Int8] = [0, 0, 0, 1, 1, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 1]
        #expect(InformationMeasures.lz76Complexity(fast) == 6)
        var rng = SeededGenerator(seed: 11)
        for trial in 0..<300 {
            let n = Int(rng.next(below: 120))
            let alphabet = UInt64(1 + trial % 3)
            let sparse = trial % 5 == 0   // mostly silent trains, long repeats
            let t = (0..<n).map { _ in sparse && rng.next(below: 8) != 0 ? Int8(0) : Int8(rng.next(below: alphabet)) - 1 }
            #expect(InformationMeasures.lz76Complexity(t) == InformationMeasures.lz76Complexity(t.map { Int($0) }), "\(t)")
        }
        let rate = InformationMeasures.lzEntropyRate(phrases: 6, steps: 16)
        #expect(close(rate, 6 * 4 / 16.0, 1e-12))
    }

    @Test("shuffle baseline equals the mean MI over the same seeded shuffles")
    func shuffleBaseline() {
        var rng = SeededGenerator(seed: 5)
        let s = (0..<200).map { _ in Int32(rng.next(below: 4)) }
        let r = s.map { ($0 * 3 + Int32(rng.next(below: 3))) % 7 }
        let fast = InformationMeasures.shuffledMutualInformation(dense: s, 4, r, 7, permutations: 50, seed: 9)
        var g = SeededGenerator(seed: 9)
        var p = s, total = 0.0
        for _ in 0..<50 {
            g.shuffle(&p)
            total += InformationMeasures.mutualInformation(dense: p, 4, r, 7).bits
        }
        #expect(close(fast, total / 50, 1e-12))
        let real = InformationMeasures.mutualInformation(dense: s, 4, r, 7).bits
        #expect(real > 1 && fast < 0.2)   // strongly tuned response; shuffles carry only bias
    }

    @Test("T-step word entropy equals count entropy for a lossless code")
    func wordEqualsCount() throws {
        var rng = SeededGenerator(seed: 9)
        let counts = (0..<300).map { _ in Int32(Int(rng.next(below: 15)) - 7) }
        var train: [Int8] = []
        for n in counts { train += try SpikeEncoding.signMagnitude.encode(n, steps: 3) }
        let w = InformationMeasures.wordEntropy(train, length: 3, alphabet: 3)
        #expect(close(w.bits, InformationMeasures.entropy(of: counts).bits, 1e-12))
    }
}

// MARK: - Group statistics

@Suite("Analysis: group comparison")
struct AnalysisGroupTests {
    @Test("identical groups give p = 1, exact and sampled")
    func identical() {
        let a = [1.0, 2, 3], b = [1.0, 2, 3]
        let exact = GroupStatistics.permutationTest(a, b, permutations: 10_000, seed: 1)
        #expect(exact.exact && exact.permutations == 20 && exact.p == 1 && exact.difference == 0)
        let big = (0..<30).map { Double($0 % 7) }
        let sampled = GroupStatistics.permutationTest(big, big, permutations: 2_000, seed: 1)
        #expect(!sampled.exact && sampled.p == 1)
    }

    @Test("clearly separated groups give a small p")
    func separated() {
        let exact = GroupStatistics.permutationTest([1, 2, 3], [10, 11, 12], permutations: 10_000, seed: 1)
        #expect(exact.exact && close(exact.p, 2.0 / 20.0, 1e-12))   // the split itself and its mirror
        #expect(exact.difference == -9)
        let a = (0..<12).map { Double($0) }, b = (0..<12).map { 100 + Double($0) }
        let r = GroupStatistics.permutationTest(a, b, permutations: 10_000, seed: 7)
        #expect(!r.exact && r.p == 1.0 / 10_001.0)
        // Same seed, same result.
        let a2 = (0..<12).map { Double($0 % 5) }, b2 = (0..<12).map { Double($0 % 4) + 0.6 }
        #expect(GroupStatistics.permutationTest(a2, b2, seed: 3) == GroupStatistics.permutationTest(a2, b2, seed: 3))
    }

    @Test("Benjamini–Hochberg on known vectors (values from scipy.stats.false_discovery_control)")
    func bh() {
        let adj = GroupStatistics.benjaminiHochberg([0.01, 0.04, 0.03, 0.005])
        for (x, y) in zip(adj, [0.02, 0.04, 0.04, 0.02]) { #expect(close(x, y, 1e-12)) }
        let p = [0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216]
        let ref = [0.01, 0.04, 0.084, 0.084, 0.084, 0.1, 0.10571428571428572, 0.216, 0.216, 0.216]
        for (x, y) in zip(GroupStatistics.benjaminiHochberg(p), ref) { #expect(close(x, y, 1e-12)) }
        #expect(GroupStatistics.benjaminiHochberg([]).isEmpty)
    }

    @Test("ambiguity corpus: 24 + 24 sentences, lengths matched")
    func corpus() {
        let pairs = AmbiguityCorpus.pairs
        #expect(pairs.count == 24)
        #expect(pairs.filter { $0.kind == .lexical }.count == 12)
        #expect(Set(pairs.map(\.id)).count == 24)
        for p in pairs {
            #expect(AmbiguityCorpus.wordCount(p.ambiguous) == AmbiguityCorpus.wordCount(p.control), "\(p.id)")
            #expect(p.ambiguous != p.control)
        }
        let s = AmbiguityCorpus.sentences
        #expect(s.count == 48 && Set(s.map(\.text)).count == 48)
        #expect(s.filter { $0.category == AmbiguityCorpus.ambiguousCategory }.count == 24)
    }

    @Test("ambiguity corpus: token counts within ±1 with the real model's tokenizer")
    func corpusTokenCounts() throws {
        let path = repoRoot.appendingPathComponent("models/SmolLM2-135M-Instruct.Q4_1.gguf").path
        guard FileManager.default.fileExists(atPath: path) else {
            Issue.record("model file '\(path)' is missing; run 'make model' to fetch it")
            return
        }
        let tok = try Tokenizer(gguf: GGUFFile(path: path))
        for p in AmbiguityCorpus.pairs {
            let a = tok.encode(p.ambiguous, addSpecialTokens: false).count
            let c = tok.encode(p.control, addSpecialTokens: false).count
            #expect(abs(a - c) <= 1, "\(p.id): \(a) vs \(c) tokens")
        }
    }

    @Test("group comparison finds the planted layer and its direction")
    func planted() throws {
        let rec = try AnalysisSynthetic.ambiguityRecording(effectLayers: [2], layers: 4, neurons: 8)
        let c = try GroupComparison.compare(rec, site: .F, measure: .meanAbsCount, permutations: 2_000)
        #expect(c.rows.map(\.layer) == [0, 1, 2, 3])
        let l2 = c.rows[2]
        #expect(l2.significant && l2.difference > 0 && l2.direction == "A > B")
        #expect(l2.countA == 24 && l2.countB == 24)
        #expect(c.rows.filter(\.significant).map(\.layer) == [2])
        #expect(c.summary.contains("L2.F: ambiguous > unambiguous"))
    }
}

// MARK: - Recording, files, exporter

/// Synthetic spike data.
enum AnalysisSynthetic {
    /// Fake tokenizer: one id per word (vocab 300) so that frequent words recur.
    static func tokenize(_ s: String) -> ([Int32], [String]) {
        let words = s.split(separator: " ").map(String.init)
        let ids = words.map { w -> Int32 in
            var h: UInt32 = 2_166_136_261
            for b in w.lowercased().utf8 { h = (h ^ UInt32(b)) &* 16_777_619 }
            return Int32(h % 300)
        }
        return (ids, words)
    }

    /// The ambiguity corpus through `layers` fake layers (sites A, O, F, D; head input H at
    /// layer = `layers`); ambiguous sentences fire more at site F of `effectLayers`.
    static func ambiguityRecording(effectLayers: Set<Int>, layers: Int, neurons: Int,
                                   encoding: SpikeEncoding = .signMagnitude) throws -> SpikeRecording {
        let width = 64
        var rec = SpikeRecording(plan: RecordingPlan(neurons: .evenlySpaced(neurons)))
        var rng = SeededGenerator(seed: 42)
        for sent in AmbiguityCorpus.sentences {
            let (ids, words) = tokenize(sent.text)
            let si = rec.addSentence(sent)
            try rec.appendTokens(ids, sentence: si, texts: words)
            let amb = sent.category == AmbiguityCorpus.ambiguousCategory
            for l in 0...layers {
                for site in SpikeSite.allCases where (site == .H) == (l == layers) {
                    var counts = [Int32](repeating: 0, count: ids.count * width)
                    var perT = [Int]()
                    for (i, id) in ids.enumerated() {
                        let boost = amb && site == .F && effectLayers.contains(l) ? 3 : 0
                        for j in 0..<width {
                            let base = Int(id) % (3 + j % 5) - 1 + (l % 3) + (Int(site.rawValue) + l) % 2
                            let noise = Int(rng.next(below: 5)) - 2
                            let v = base + noise + (boost > 0 ? boost : 0)
                            counts[i * width + j] = Int32(max(-7, min(7, j % 2 == 0 ? v : -v)))
                        }
                        perT.append(3)
                    }
                    try counts.withUnsafeBufferPointer {
                        try rec.append(layer: l, site: site, counts: $0, width: width, perTokenT: perT,
                                       encoding: encoding)
                    }
                }
            }
        }
        return rec
    }

    /// Several sites with different encodings and per-token T, for the exporter checks.
    static func mixedRecording() throws -> SpikeRecording {
        var rec = SpikeRecording(plan: RecordingPlan(neurons: .random(6, seed: 5)))
        let cats = ["ambiguous", "unambiguous", "other"]
        var rng = SeededGenerator(seed: 1234)
        let width = 20
        for s in 0..<30 {
            let si = rec.addSentence(SentenceInfo(text: "sentence \(s)", category: cats[s % 3]))
            let n = 5 + s % 4
            let ids = (0..<n).map { _ in Int32(rng.next(below: 12)) }
            try rec.appendTokens(ids, sentence: si, texts: ids.map { "t\($0)" })
            let sites: [(Int, SpikeSite, SpikeEncoding)] = [
                (0, .A, .signMagnitude), (0, .D, .ternary), (1, .F, .twosComplement), (1, .O, .binary(offset: 4)),
            ]
            for (layer, site, enc) in sites {
                var counts = [Int32](repeating: 0, count: n * width)
                var perT = [Int]()
                for i in 0..<n {
                    let T: Int
                    switch enc {
                    case .signMagnitude, .naf: T = 2 + Int(rng.next(below: 3))   // variable T (mean rule)
                    case .ternary: T = 6
                    case .twosComplement: T = 3 + Int(rng.next(below: 2))
                    case .binary: T = 8
                    }
                    let r = enc.range(steps: T)
                    for j in 0..<width {
                        let span = UInt64(r.upperBound - r.lowerBound + 1)
                        let pick = Int64(rng.next(below: span)) + r.lowerBound
                        let tuned = (Int64(ids[i]) + Int64(j)) % 3 == 0 ? Int64(0) : pick  // stimulus dependence
                        counts[i * width + j] = Int32(tuned)
                    }
                    perT.append(T)
                }
                try counts.withUnsafeBufferPointer {
                    try rec.append(layer: layer, site: site, counts: $0, width: width, perTokenT: perT, encoding: enc)
                }
            }
        }
        return rec
    }
}

@Suite("Analysis: recording and files")
struct AnalysisRecordingTests {
    @Test("append derives planes from counts by the encoding (Example 2 values)")
    func appendDerivesPlanes() throws {
        var rec = SpikeRecording(plan: RecordingPlan(neurons: .all))
        try rec.appendTokens([7, 8])
        let counts: [Int32] = [5, -5, 0, -1, -8, 3]   // 2 tokens × width 3
        try counts.withUnsafeBufferPointer { try rec.append(layer: 0, site: .A, counts: $0, width: 3, T: 4) }
        try counts.withUnsafeBufferPointer {
            try rec.append(layer: 0, site: .O, counts: $0, width: 3, T: 4, encoding: .twosComplement)
        }
        let sm = rec.sites[RecordingKey(layer: 0, site: .A)]!
        #expect(sm.train(neuron: 0) == [0, 1, 0, 1, 0, 0, 0, -1])    // +5, −1
        #expect(sm.train(neuron: 1) == [0, -1, 0, -1, -1, 0, 0, 0])   // −5, −8
        let tc = rec.sites[RecordingKey(layer: 0, site: .O)]!
        #expect(tc.train(neuron: 0) == [0, 1, 0, 1, 1, 1, 1, 1])   // +5, −1
        #expect(tc.train(neuron: 1) == [1, 0, 1, 1, 1, 0, 0, 0])   // −5, −8
        // [token][step][neuron] layout
        let arr = sm.spikes()
        #expect(Array(arr[0..<12]) == [0, 0, 0, 1, -1, 0, 0, 0, 0, 1, -1, 0])
        // Planes in, same counts out.
        var rec2 = SpikeRecording(plan: RecordingPlan(neurons: .all))
        try rec2.appendTokens([7, 8])
        try arr.withUnsafeBufferPointer { try rec2.append(layer: 0, site: .A, planes: $0, width: 3, T: 4) }
        #expect(rec2.sites[RecordingKey(layer: 0, site: .A)]!.counts == counts)
    }

    @Test("variable T pads by re-encoding at the site's T (leading planes, sign extension)")
    func padding() throws {
        var rec = SpikeRecording(plan: RecordingPlan(neurons: .all))
        try rec.appendTokens([1, 2])
        let c: [Int32] = [-1, 5]
        try c.withUnsafeBufferPointer {
            try rec.append(layer: 0, site: .D, counts: $0, width: 1, perTokenT: [1, 3], encoding: .signMagnitude)
        }
        try c.withUnsafeBufferPointer {
            try rec.append(layer: 0, site: .F, counts: $0, width: 1, perTokenT: [2, 4], encoding: .twosComplement)
        }
        #expect(rec.sites[RecordingKey(layer: 0, site: .D)]!.train(neuron: 0) == [0, 0, -1, 1, 0, 1])
        #expect(rec.sites[RecordingKey(layer: 0, site: .F)]!.train(neuron: 0) == [1, 1, 1, 1, 0, 1, 0, 1])
        // SPA uses each token's own T: −1 at T=2 is 2 spikes, 5 at T=4 is 2 spikes.
        let m = SpikeAnalysis.analyze(rec).sites.first { $0.site == "F" }!
        #expect(m.mean["spikes_per_activation"] == 2)
        #expect(m.mean["firing_rate"] == 4.0 / 6.0)
    }

    @Test("plan: sites, layers, neuron subsets, token limit; bad input throws")
    func plan() throws {
        #expect(try NeuronSelection.first(3).indices(width: 10) == [0, 1, 2])
        #expect(try NeuronSelection.evenlySpaced(4).indices(width: 10) == [0, 2, 5, 7])
        let r1 = try NeuronSelection.random(5, seed: 3).indices(width: 100)
        #expect(r1 == (try NeuronSelection.random(5, seed: 3).indices(width: 100)))
        #expect(r1.count == 5 && Set(r1).count == 5 && r1 == r1.sorted())
        #expect(throws: SpikeRunError.self) { try NeuronSelection.explicit([10]).indices(width: 10) }

        var rec = SpikeRecording(plan: RecordingPlan(layers: [1], sites: [.A], neurons: .first(2), maxTokens: 3))
        let counts: [Int32] = [1, 2, 3, 4, 5, 6, 7, 8]   // 4 tokens × width 2
        // counts before tokens: error
        #expect(throws: SpikeRunError.self) {
            try counts.withUnsafeBufferPointer { try rec.append(layer: 1, site: .A, counts: $0, width: 2, T: 4) }
        }
        try rec.appendTokens([1, 2, 3, 4])
        #expect(rec.tokens == [1, 2, 3])
        try counts.withUnsafeBufferPointer {
            try rec.append(layer: 1, site: .A, counts: $0, width: 2, T: 4)
            try rec.append(layer: 0, site: .A, counts: $0, width: 2, T: 4)   // not in plan: ignored
            try rec.append(layer: 1, site: .F, counts: $0, width: 2, T: 4)   // not in plan: ignored
        }
        #expect(rec.keys == [RecordingKey(layer: 1, site: .A)])
        #expect(rec.sites[RecordingKey(layer: 1, site: .A)]!.counts == [1, 2, 3, 4, 5, 6])
        var r2 = SpikeRecording(plan: RecordingPlan(neurons: .all))
        try r2.appendTokens([1])
        let big: [Int32] = [16]
        let err = #expect(throws: SpikeRunError.self) {
            try big.withUnsafeBufferPointer { try r2.append(layer: 0, site: .A, counts: $0, width: 1, T: 4) }
        }
        #expect(err?.message.contains("does not fit in 4 steps") == true)
        #expect(r2.sites.isEmpty)
    }

    @Test("npy header: magic, version 1.0, 64-byte alignment, dict text")
    func npyHeader() throws {
        let h = NPY.header(type: .int8, shape: [3, 4, 5])
        #expect(Array(h[0..<8]) == [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0])
        #expect(h.count % 64 == 0 && h.last == 0x0A)
        #expect(Int(h[8]) | Int(h[9]) << 8 == h.count - 10)
        let text = String(decoding: h[10...], as: UTF8.self)
        #expect(text.hasPrefix("{'descr': '|i1', 'fortran_order': False, 'shape': (3, 4, 5), }"))
        #expect(String(decoding: NPY.header(type: .int32, shape: [7])[10...], as: UTF8.self)
            .hasPrefix("{'descr': '<i4', 'fortran_order': False, 'shape': (7,), }"))
        let d = NPY.encode([Int32](arrayLiteral: 1, -2, 3), shape: [3])
        let (t, shape, off) = try NPY.parseHeader(d)
        #expect(t == .int32 && shape == [3] && off == 128)   // 69 header bytes round up to 128
        #expect(throws: SpikeRunError.self) { try NPY.parseHeader(Data([1, 2, 3])) }
    }

    @Test("write, load and the streaming writer give the same files")
    func roundTripAndStreaming() throws {
        let rec = try AnalysisSynthetic.mixedRecording()
        let dir = try tempDir("roundtrip")
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = dir.appendingPathComponent("memory"), b = dir.appendingPathComponent("stream")
        try rec.write(to: a)
        let back = try SpikeRecording.load(from: a)
        #expect(back.tokens == rec.tokens && back.tokenSentence == rec.tokenSentence)
        #expect(back.sentences == rec.sentences && back.tokenTexts == rec.tokenTexts)
        #expect(back.keys == rec.keys)
        for k in rec.keys { #expect(back.sites[k] == rec.sites[k]) }

        // Feed the same data to the streaming writer, in uneven batches.
        let w = try StreamingRecordingWriter(directory: b, plan: rec.plan)
        for s in rec.sentences { _ = w.addSentence(s) }
        var i = 0
        while i < rec.tokens.count {
            let sent = rec.tokenSentence[i]
            var j = i
            while j < rec.tokens.count && rec.tokenSentence[j] == sent { j += 1 }
            try w.appendTokens(Array(rec.tokens[i..<j]), sentence: Int(sent), texts: Array(rec.tokenTexts[i..<j]))
            for k in rec.keys {
                let s = rec.sites[k]!
                // rebuild full-width rows with the recorded neurons in place
                var rows = [Int32](repeating: 0, count: (j - i) * s.width)
                for t in i..<j {
                    for (q, col) in s.neuronIndices.enumerated() { rows[(t - i) * s.width + col] = s.count(token: t, neuron: q) }
                }
                try rows.withUnsafeBufferPointer {
                    try w.append(layer: k.layer, site: k.site, counts: $0, width: s.width,
                                 perTokenT: (i..<j).map { Int(s.tokenSteps[$0]) }, encoding: s.encoding)
                }
            }
            i = j
        }
        try w.finish()
        let files = try FileManager.default.contentsOfDirectory(atPath: a.path).sorted()
        #expect(try FileManager.default.contentsOfDirectory(atPath: b.path).sorted() == files)
        #expect(files.contains("index.json") && files.contains("L00_A.spikes.npy"))
        for f in files {
            #expect(try Data(contentsOf: a.appendingPathComponent(f)) == Data(contentsOf: b.appendingPathComponent(f)), "\(f)")
        }
    }

    @Test("independent check with numpy, scipy and scikit-learn (tools/analysis/check_with_scipy.py)")
    func scipyCheck() throws {
        let script = repoRoot.appendingPathComponent("tools/analysis/check_with_scipy.py")
        let dir = try tempDir("scipy")
        defer { try? FileManager.default.removeItem(at: dir) }
        let recs: [(String, SpikeRecording)] = [
            ("mixed", try AnalysisSynthetic.mixedRecording()),
            ("ambiguity", try AnalysisSynthetic.ambiguityRecording(effectLayers: [1], layers: 2, neurons: 6)),
        ]
        for (name, rec) in recs {
            let out = dir.appendingPathComponent(name)
            try rec.write(to: out)
            let analysis = SpikeAnalysis.analyze(rec, options: AnalysisOptions(topKTokens: 5, shufflePermutations: 10))
            try analysis.write(to: out)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = ["python3", script.path, out.path, out.appendingPathComponent("metrics.json").path, "--tol", "1e-9"]
            let pipe = Pipe()
            p.standardOutput = pipe
            p.standardError = pipe
            do { try p.run() } catch {
                Issue.record("cannot run python3 (needed for the scipy cross-check): \(error)")
                return
            }
            let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            switch p.terminationStatus {
            case 0: #expect(text.contains(" 0 differ"), "\(text)")
            case 3:
                Issue.record("python dependencies for the scipy cross-check are missing: \(text) — run 'pip install numpy scipy scikit-learn'")
            case 127: Issue.record("python3 was not found: install python3 with numpy, scipy, scikit-learn")
            default: Issue.record("check_with_scipy.py failed for '\(name)' (exit \(p.terminationStatus)):\n\(text)")
            }
        }
    }

    @Test("analysis JSON/CSV and the HTML report")
    func reportFiles() throws {
        let rec = try AnalysisSynthetic.ambiguityRecording(effectLayers: [2, 3], layers: 6, neurons: 12)
        var analysis = SpikeAnalysis.analyze(rec, options: AnalysisOptions(shufflePermutations: 20))
        analysis.comparisons.append(try GroupComparison.compare(rec, site: .F, measure: .meanAbsCount))
        analysis.comparisons.append(try GroupComparison.compare(rec, site: .A, measure: .spikesPerActivation))
        let dir: URL
        if let keep = ProcessInfo.processInfo.environment["SPIKERUN_ANALYSIS_OUT"] {
            dir = URL(fileURLWithPath: keep)   // keep the output for a look (screenshot_report.sh)
        } else {
            dir = try tempDir("report")
        }
        defer { if ProcessInfo.processInfo.environment["SPIKERUN_ANALYSIS_OUT"] == nil { try? FileManager.default.removeItem(at: dir) } }
        try rec.write(to: dir.appendingPathComponent("recording"))
        try analysis.write(to: dir)
        let html = dir.appendingPathComponent("report.html")
        try AnalysisReport.write(recording: rec, analysis: analysis, to: html,
                                 options: ReportOptions(title: "Synthetic spikes: ambiguity study",
                                                        rasterKey: RecordingKey(layer: 2, site: .F)))
        let text = try String(contentsOf: html, encoding: .utf8)
        #expect(text.hasPrefix("<!DOCTYPE html>"))
        #expect(!text.contains("<script"))
        #expect(text.components(separatedBy: "<svg").count - 1 >= 10)
        #expect(text.contains("***"))
        let loaded = try SpikeAnalysis.load(from: dir.appendingPathComponent("metrics.json"))
        #expect(loaded == analysis)
        let csv = try String(contentsOf: dir.appendingPathComponent("metrics.csv"), encoding: .utf8)
        #expect(csv.split(separator: "\n").count == 1 + rec.keys.count)
        #expect(csv.hasPrefix("layer,site,encoding,steps,mean_steps,tokens,neurons,spikes_per_activation"))
        let cmp = try String(contentsOf: dir.appendingPathComponent("metrics_comparisons.csv"), encoding: .utf8)
        #expect(cmp.split(separator: "\n").count == 1 + 2 * 6)
    }
}
