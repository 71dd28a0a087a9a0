import Foundation

/// Settings of ``SpikeAnalysis/analyze(_:options:)``.
public struct AnalysisOptions: Sendable, Hashable, Codable {
    /// Token-identity stimulus: only tokens whose id is among the `K` most frequent ids of the
    /// recording (ties: smaller id first) take part.
    public var topKTokens = 16
    /// Stimulus shuffles for the MI bias baseline.
    public var shufflePermutations = 100
    /// Seed of the shuffles.
    public var seed: UInt64 = 20_250_601
    /// Keep per-neuron values in the result (needed by the scipy cross-check).
    public var includeNeurons = true

    /// Creates options with the defaults (`K` = 16, 100 shuffles).
    public init(topKTokens: Int = 16, shufflePermutations: Int = 100, seed: UInt64 = 20_250_601,
                includeNeurons: Bool = true) {
        self.topKTokens = topKTokens
        self.shufflePermutations = shufflePermutations
        self.seed = seed
        self.includeNeurons = includeNeurons
    }

    enum CodingKeys: String, CodingKey {
        case seed
        case topKTokens = "top_k_tokens", shufflePermutations = "shuffle_permutations"
        case includeNeurons = "include_neurons"
    }
}

/// Mutual information of one neuron with a stimulus, with the shuffle baseline.
public struct StimulusInformation: Sendable, Hashable, Codable {
    /// `I(S; R)` in bits.
    public var bits: Double
    /// Normalized MI (arithmetic mean).
    public var normalized: Double
    /// Mean `I` over the stimulus shuffles.
    public var shuffledBits: Double
    /// `I − mean(I_shuffled)`.
    public var correctedBits: Double
    /// Samples (tokens) used.
    public var samples: Int

    enum CodingKeys: String, CodingKey {
        case bits, normalized, samples
        case shuffledBits = "shuffled_bits", correctedBits = "corrected_bits"
    }
}

/// Measures of one recorded neuron (docs/spike-algorithms.md §9; formulas in docs/analysis.md).
public struct NeuronMeasures: Sendable, Hashable, Codable {
    /// Channel index in the full activation.
    public var neuron: Int
    /// Spike events per activation (each token's own `T`).
    public var spikesPerActivation: Double
    /// Events per step: `Σ events / Σ_tokens T`.
    public var firingRate: Double
    /// Entropy of the per-token counts.
    public var countEntropy: EntropyEstimate
    /// Entropy of the per-token `steps`-step spike words.
    public var wordEntropy: EntropyEstimate
    /// Block length `L` used for the entropy rate (`nil`: train too short).
    public var blockLength: Int?
    /// `H_L` over overlapping `L`-step windows.
    public var blockEntropy: EntropyEstimate?
    /// `h_L = H_L − H_{L−1}`, bits per step.
    public var entropyRateBlock: Double?
    /// LZ76 phrase count `c`.
    public var lzPhrases: Int
    /// `c · log2(N) / N`, bits per step.
    public var entropyRateLZ: Double
    /// MI with token identity (top-K tokens).
    public var tokenInformation: StimulusInformation?
    /// MI with the sentence category.
    public var categoryInformation: StimulusInformation?

    enum CodingKeys: String, CodingKey {
        case neuron
        case spikesPerActivation = "spikes_per_activation", firingRate = "firing_rate"
        case countEntropy = "count_entropy", wordEntropy = "word_entropy", blockLength = "block_length"
        case blockEntropy = "block_entropy", entropyRateBlock = "entropy_rate_block"
        case lzPhrases = "lz_phrases", entropyRateLZ = "entropy_rate_lz"
        case tokenInformation = "token_information", categoryInformation = "category_information"
    }
}

/// Layer value of one (layer, site): every measure averaged over the recorded neurons.
public struct SiteMeasures: Sendable, Hashable, Codable {
    /// Block index.
    public var layer: Int
    /// Site name.
    public var site: String
    /// Encoding name.
    public var encoding: String
    /// Steps of the spike array (largest per-token `T`).
    public var steps: Int
    /// Mean per-token `T`.
    public var meanSteps: Double
    /// Tokens analysed.
    public var tokens: Int
    /// Neurons analysed.
    public var neurons: Int
    /// Token ids used as the token stimulus (the top-K set).
    public var tokenStimulusIDs: [Int32]
    /// Category labels of the category stimulus, in label order.
    public var categories: [String]
    /// Mean values (see ``SiteMeasures/columns``); `nil` where undefined for every neuron.
    public var mean: [String: Double]
    /// Per-neuron values, if requested.
    public var neuronMeasures: [NeuronMeasures]?

    /// Names of the mean values, in report / CSV order.
    public static let columns = [
        "spikes_per_activation", "firing_rate",
        "count_entropy", "count_entropy_mm", "word_entropy", "word_entropy_mm",
        "block_length", "block_entropy", "block_entropy_mm",
        "entropy_rate_block", "entropy_rate_block_per_token", "entropy_rate_lz", "entropy_rate_lz_per_token",
        "token_mi", "token_nmi", "token_mi_shuffled", "token_mi_corrected",
        "category_mi", "category_nmi", "category_mi_shuffled", "category_mi_corrected",
    ]

    /// The key of this site.
    public var key: RecordingKey? {
        SpikeSite(name: site).map { RecordingKey(layer: layer, site: $0) }
    }

    enum CodingKeys: String, CodingKey {
        case layer, site, encoding, steps, tokens, neurons, categories, mean
        case meanSteps = "mean_steps", tokenStimulusIDs = "token_stimulus_ids"
        case neuronMeasures = "neuron_measures"
    }
}

/// The result of analysing a recording: per-site measures and optional group comparisons.
public struct SpikeAnalysis: Sendable, Hashable, Codable {
    /// Format tag `spikerun-analysis`.
    public var format = "spikerun-analysis"
    /// Options used.
    public var options: AnalysisOptions
    /// Tokens in the recording.
    public var tokenCount: Int
    /// One entry per recorded (layer, site), in layer, site order.
    public var sites: [SiteMeasures]
    /// Group comparisons (ambiguity study), if run.
    public var comparisons: [GroupComparison] = []

    enum CodingKeys: String, CodingKey {
        case format, options, sites, comparisons
        case tokenCount = "token_count"
    }

    /// Analyses every site of `recording` (sites in parallel; the result does not depend on
    /// the order).
    public static func analyze(_ recording: SpikeRecording,
                               options: AnalysisOptions = AnalysisOptions()) -> SpikeAnalysis {
        let keys = recording.keys
        var results = [SiteMeasures?](repeating: nil, count: keys.count)
        results.withUnsafeMutableBufferPointer { out in
            let base = out.baseAddress!   // each index is written by exactly one iteration
            nonisolated(unsafe) let slots = base
            DispatchQueue.concurrentPerform(iterations: keys.count) { i in
                slots[i] = measure(recording.sites[keys[i]]!, in: recording, options: options)
            }
        }
        return SpikeAnalysis(options: options, tokenCount: recording.tokens.count, sites: results.map { $0! })
    }

    /// The top-K most frequent token ids among `ids` (ties: smaller id first), ascending.
    public static func topTokens(_ ids: [Int32], k: Int) -> [Int32] {
        var freq: [Int32: Int] = [:]
        for t in ids { freq[t, default: 0] += 1 }
        let ranked = freq.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
        return ranked.prefix(max(0, k)).map(\.key).sorted()
    }

    /// Measures one site.
    public static func measure(_ s: SiteRecording, in rec: SpikeRecording,
                               options: AnalysisOptions = AnalysisOptions()) -> SiteMeasures {
        let nTok = s.tokenCount, T = s.steps, alphabet = s.encoding.alphabetSize
        let ids = Array(rec.tokens[0..<nTok])
        // Token stimulus: positions whose id is in the top-K set.
        let top = topTokens(ids, k: options.topKTokens)
        let topSet = Set(top)
        let tokPos = (0..<nTok).filter { topSet.contains(ids[$0]) }
        let (tokS, tokK) = InformationMeasures.denseLabels(tokPos.map { ids[$0] })
        // Category stimulus: positions inside a sentence.
        let cats = rec.tokenCategories
        let catPos = (0..<nTok).filter { cats[$0] != nil }
        let (catS, catK) = InformationMeasures.denseLabels(catPos.map { cats[$0]! })
        let catNames = Array(Set(catPos.map { cats[$0]! })).sorted()

        let totalSteps = s.tokenSteps.reduce(0) { $0 + Int($1) }
        let blockL = InformationMeasures.blockLength(steps: nTok * T, alphabet: alphabet)
        var out: [NeuronMeasures] = []
        out.reserveCapacity(s.neuronCount)
        for j in 0..<s.neuronCount {
            let counts = s.countSeries(neuron: j)
            var events = 0
            for i in 0..<nTok { events += s.encoding.spikeCount(counts[i], steps: Int(s.tokenSteps[i])) }
            let train = s.train(neuron: j)
            var hL: EntropyEstimate? = nil, rate: Double? = nil
            if let L = blockL {
                let a = InformationMeasures.blockEntropy(train, length: L, alphabet: alphabet)
                let b = L > 1 ? InformationMeasures.blockEntropy(train, length: L - 1, alphabet: alphabet).bits : 0
                hL = a
                rate = a.bits - b
            }
            let c = InformationMeasures.lz76Complexity(train)
            func info(_ pos: [Int], _ sLab: [Int32], _ k: Int, seedOffset: UInt64) -> StimulusInformation? {
                guard !pos.isEmpty else { return nil }
                let (r, kr) = InformationMeasures.denseLabels(pos.map { counts[$0] })
                let mi = InformationMeasures.mutualInformation(dense: sLab, k, r, kr)
                let sh = InformationMeasures.shuffledMutualInformation(
                    dense: sLab, k, r, kr, permutations: options.shufflePermutations,
                    seed: options.seed &+ seedOffset)
                return StimulusInformation(bits: mi.bits, normalized: mi.normalized, shuffledBits: sh,
                                           correctedBits: mi.bits - sh, samples: pos.count)
            }
            out.append(NeuronMeasures(
                neuron: s.neuronIndices[j],
                spikesPerActivation: nTok > 0 ? Double(events) / Double(nTok) : 0,
                firingRate: totalSteps > 0 ? Double(events) / Double(totalSteps) : 0,
                countEntropy: InformationMeasures.entropy(of: counts),
                wordEntropy: InformationMeasures.wordEntropy(train, length: max(T, 1), alphabet: alphabet),
                blockLength: blockL, blockEntropy: hL, entropyRateBlock: rate,
                lzPhrases: c, entropyRateLZ: InformationMeasures.lzEntropyRate(phrases: c, steps: train.count),
                tokenInformation: info(tokPos, tokS, tokK, seedOffset: 1),
                categoryInformation: info(catPos, catS, catK, seedOffset: 2)))
        }
        var mean: [String: Double] = [:]
        func avg(_ name: String, _ f: (NeuronMeasures) -> Double?) {
            let v = out.compactMap(f)
            if !v.isEmpty { mean[name] = v.reduce(0, +) / Double(v.count) }
        }
        avg("spikes_per_activation") { $0.spikesPerActivation }
        avg("firing_rate") { $0.firingRate }
        avg("count_entropy") { $0.countEntropy.bits }
        avg("count_entropy_mm") { $0.countEntropy.millerMadow }
        avg("word_entropy") { $0.wordEntropy.bits }
        avg("word_entropy_mm") { $0.wordEntropy.millerMadow }
        avg("block_length") { $0.blockLength.map(Double.init) }
        avg("block_entropy") { $0.blockEntropy?.bits }
        avg("block_entropy_mm") { $0.blockEntropy?.millerMadow }
        avg("entropy_rate_block") { $0.entropyRateBlock }
        avg("entropy_rate_block_per_token") { $0.entropyRateBlock.map { $0 * Double(T) } }
        avg("entropy_rate_lz") { $0.entropyRateLZ }
        avg("entropy_rate_lz_per_token") { $0.entropyRateLZ * Double(T) }
        avg("token_mi") { $0.tokenInformation?.bits }
        avg("token_nmi") { $0.tokenInformation?.normalized }
        avg("token_mi_shuffled") { $0.tokenInformation?.shuffledBits }
        avg("token_mi_corrected") { $0.tokenInformation?.correctedBits }
        avg("category_mi") { $0.categoryInformation?.bits }
        avg("category_nmi") { $0.categoryInformation?.normalized }
        avg("category_mi_shuffled") { $0.categoryInformation?.shuffledBits }
        avg("category_mi_corrected") { $0.categoryInformation?.correctedBits }
        return SiteMeasures(layer: s.key.layer, site: s.key.site.name, encoding: s.encoding.name, steps: T,
                            meanSteps: nTok > 0 ? Double(totalSteps) / Double(nTok) : 0, tokens: nTok,
                            neurons: s.neuronCount, tokenStimulusIDs: top, categories: catNames,
                            mean: mean, neuronMeasures: options.includeNeurons ? out : nil)
    }
}
