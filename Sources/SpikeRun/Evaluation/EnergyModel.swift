import Foundation

/// Energy per operation (picojoules) of one accounting convention (docs/spike-algorithms.md §8).
///
/// Source: M. Horowitz, "Computing's energy problem (and what we can do about it)",
/// ISSCC 2014, 45 nm figures: FP32 multiply 3.7 pJ, FP32 add 0.9 pJ, INT8 multiply 0.2 pJ,
/// INT8 add 0.03 pJ, INT32 add 0.1 pJ.
///
/// None of these figures counts memory traffic (weight and KV-cache reads), which dominates
/// real LLM inference; every energy number derived from them is arithmetic only.
public struct EnergyConvention: Sendable, Hashable, Codable {
    public var name: String
    /// Energy of one multiply-accumulate of the dense baseline.
    public var macPJ: Double
    /// Energy of one accumulate (synaptic operation) of the spike model.
    public var acPJ: Double
    /// Energy of one float operation the spike model keeps (rescaling, quantizer, §6 ops).
    public var floatOpPJ: Double
    /// Energy of one integer block-scale product (an 8-bit constant times an int32 sum, plus
    /// its int32 add; `--weights int4i`).
    public var intScaleMulPJ: Double

    /// A: SNN-literature convention (FP32): E_MAC = 3.7 + 0.9 = 4.6 pJ, E_AC = 0.9 pJ (FP32 add);
    /// the remaining float ops cost an FP32 MAC. Comparable with published spike-LLM claims.
    public static let snnLiterature = EnergyConvention(name: "A: FP32 MAC 4.6 pJ vs FP32 add 0.9 pJ",
                                                       macPJ: 4.6, acPJ: 0.9, floatOpPJ: 4.6, intScaleMulPJ: 4.6)
    /// B: matched integer convention: the dense baseline does INT8 MACs (0.2 + 0.03 = 0.23 pJ),
    /// the spike model INT32 adds (0.1 pJ) plus FP32 multiplies (3.7 pJ) for its float ops.
    /// An integer block-scale product (8-bit × 32-bit) costs 4 INT8 multiplies (an array
    /// multiplier's energy grows with the product of its operand widths: 8·32 = 4·8·8) plus an
    /// INT32 add: 0.9 pJ. The honest ratio against a quantized dense engine.
    public static let matchedInteger = EnergyConvention(name: "B: INT8 MAC 0.23 pJ vs INT32 add 0.1 pJ (+ FP32 mult 3.7 pJ, INT8xINT32 mult-add 0.9 pJ)",
                                                        macPJ: 0.23, acPJ: 0.1, floatOpPJ: 3.7, intScaleMulPJ: 0.9)
}

/// Energy of one convention for one token: `E_dense = MAC_dense · E_MAC`,
/// `E_spike = SOP · E_AC + MAC_rest · E_float`.
public struct EnergyEstimate: Sendable, Hashable, Codable {
    public var convention: String
    public var denseMicrojoules: Double
    /// SOP · E_AC.
    public var spikeAccumulateMicrojoules: Double
    /// MAC_rest · E_float (rescaling, quantizer, float attention if any, §6 ops).
    public var spikeFloatMicrojoules: Double
    /// Integer block-scale products · E_intmul (`--weights int4i`; 0 otherwise).
    public var spikeIntScaleMicrojoules: Double = 0
    /// A refined head's row-choice comparisons · E_AC (0 otherwise).
    public var spikeSelectMicrojoules: Double = 0
    /// Products with power-of-two steps (exponent adds) · E_AC (0 otherwise).
    public var spikeShiftMicrojoules: Double = 0
    public var spikeMicrojoules: Double {
        spikeAccumulateMicrojoules + spikeFloatMicrojoules + spikeIntScaleMicrojoules + spikeSelectMicrojoules
            + spikeShiftMicrojoules
    }
    /// E_dense / E_spike (> 1: the spike model spends less arithmetic energy).
    public var ratio: Double { spikeMicrojoules > 0 ? denseMicrojoules / spikeMicrojoules : 0 }
    public var note = "arithmetic only: memory traffic (weights, KV cache) is not counted"

    enum CodingKeys: String, CodingKey {
        case convention, denseMicrojoules = "dense_uj", spikeAccumulateMicrojoules = "spike_sop_uj",
             spikeFloatMicrojoules = "spike_mac_rest_uj", spikeIntScaleMicrojoules = "spike_int_scale_uj",
             spikeSelectMicrojoules = "spike_select_uj", spikeShiftMicrojoules = "spike_shift_uj",
             spikeTotal = "spike_uj", ratio = "dense_over_spike", note
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(convention, forKey: .convention)
        try c.encode(denseMicrojoules, forKey: .denseMicrojoules)
        try c.encode(spikeAccumulateMicrojoules, forKey: .spikeAccumulateMicrojoules)
        try c.encode(spikeFloatMicrojoules, forKey: .spikeFloatMicrojoules)
        try c.encode(spikeIntScaleMicrojoules, forKey: .spikeIntScaleMicrojoules)
        try c.encode(spikeSelectMicrojoules, forKey: .spikeSelectMicrojoules)
        try c.encode(spikeShiftMicrojoules, forKey: .spikeShiftMicrojoules)
        try c.encode(spikeMicrojoules, forKey: .spikeTotal)
        try c.encode(ratio, forKey: .ratio)
        try c.encode(note, forKey: .note)
    }
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        convention = try c.decode(String.self, forKey: .convention)
        denseMicrojoules = try c.decode(Double.self, forKey: .denseMicrojoules)
        spikeAccumulateMicrojoules = try c.decode(Double.self, forKey: .spikeAccumulateMicrojoules)
        spikeFloatMicrojoules = try c.decode(Double.self, forKey: .spikeFloatMicrojoules)
        spikeIntScaleMicrojoules = try c.decodeIfPresent(Double.self, forKey: .spikeIntScaleMicrojoules) ?? 0
        spikeSelectMicrojoules = try c.decodeIfPresent(Double.self, forKey: .spikeSelectMicrojoules) ?? 0
        spikeShiftMicrojoules = try c.decodeIfPresent(Double.self, forKey: .spikeShiftMicrojoules) ?? 0
        note = try c.decode(String.self, forKey: .note)
    }
    public init(convention: String, denseMicrojoules: Double, spikeAccumulateMicrojoules: Double, spikeFloatMicrojoules: Double,
                spikeIntScaleMicrojoules: Double = 0, spikeSelectMicrojoules: Double = 0, spikeShiftMicrojoules: Double = 0) {
        self.convention = convention
        self.denseMicrojoules = denseMicrojoules
        self.spikeAccumulateMicrojoules = spikeAccumulateMicrojoules
        self.spikeFloatMicrojoules = spikeFloatMicrojoules
        self.spikeIntScaleMicrojoules = spikeIntScaleMicrojoules
        self.spikeSelectMicrojoules = spikeSelectMicrojoules
        self.spikeShiftMicrojoules = spikeShiftMicrojoules
    }
}

/// Per-token operation counts and energy of a run (docs/spike-algorithms.md §8).
///
/// - `MAC_dense = Σ_linear d_in·d_out + 2 · n_head · head_dim · (mean attended positions)`.
/// - `SOP = Σ_sites spike events · fan_out + Horner adds` (from the runtime's counters).
/// - `MAC_rest` = per-group/row rescale multiplies + one quantizer multiply per encoded
///   activation + attention MACs when attention stays float + the float ops of §6 (RMSNorm
///   3·d per norm, RoPE 3 per rotated element, SiLU·gate 3 per FFN channel, softmax 3 per
///   score, residual adds 2·d per block, q/k/v bias adds of qwen2 1 per output), each counted
///   as one MAC-equivalent (conservative).
/// - A refined head's row choice: its comparisons, each charged as one accumulation.
/// - Power-of-two steps: the quantizer's x/s and the rescale's s·s_row are exponent adds,
///   counted apart from the float ops and each charged as one accumulation.
public struct EnergyReport: Sendable, Codable {
    public var tokens: Int
    public var meanAttendedPositions: Double
    public var denseMACsPerToken: Double
    public var linearMACsPerToken: Double
    public var attentionMACsPerToken: Double
    public var sopsPerToken: Double
    public var rescaleMultipliesPerToken: Double
    /// Integer block-scale products per token (`--weights int4i`), not float operations.
    public var integerScaleMultipliesPerToken: Double
    public var quantizerMultipliesPerToken: Double
    public var floatAttentionMACsPerToken: Double
    public var otherFloatOpsPerToken: Double
    /// Comparisons choosing the refined head's rows, charged as accumulations (a comparator is
    /// a subtractor: an INT32 add under B, an FP32 add under A).
    public var selectComparesPerToken: Double
    /// Products with a power-of-two step done as exponent adds (quantizer and rescale), each
    /// charged as one accumulation (an INT32 add under B, an FP32 add under A: conservative for
    /// an 8-bit exponent add).
    public var scaleShiftsPerToken: Double
    public var macRestPerToken: Double
    /// The float operations of `macRestPerToken` by part: `rescale.<site>` (the per-row or
    /// per-block rescaling of each site's outputs: A = q/k/v, O = o, F = gate/up, D = down,
    /// H = head, Q = attention scores, P = attention output), `quantizer`, `attention_float`
    /// (float attention products when attention does not spike), `rmsnorm`, `rope`, `silu_gate`,
    /// `softmax`, `residual`, `bias` (q/k/v biases, when the model has them). Empty for a dense run.
    public var floatOpsPerTokenByPart: [String: Double]
    public var sopsPerDenseMAC: Double
    public var conventionA: EnergyEstimate
    public var conventionB: EnergyEstimate
    public var note = "Energy model of docs/spike-algorithms.md §8 with Horowitz (ISSCC 2014) 45 nm constants; memory traffic is not counted."

    /// - Parameters:
    ///   - stats: the spike runtime's counters over `tokens` evaluated tokens (empty: dense run).
    ///   - meanAttendedPositions: mean number of cached positions each token attends to
    ///     (`(n + 1) / 2` for chunks of n tokens evaluated from an empty cache).
    public init(config c: ModelConfig, stats: [SpikeSiteStatistics], tokens: Int, meanAttendedPositions: Double,
                spikeAttention: Bool) {
        let d = Double(c.nEmbd), ff = Double(c.nFF), hd = Double(c.headDim)
        let kv = Double(c.nHeadKV) * hd, qd = Double(c.nHead) * hd
        let perBlock = d * qd + 2 * d * kv + qd * d + 2 * d * ff + ff * d
        linearMACsPerToken = Double(c.nLayer) * perBlock + d * Double(c.nVocab)
        attentionMACsPerToken = Double(c.nLayer) * 2 * qd * meanAttendedPositions
        denseMACsPerToken = linearMACsPerToken + attentionMACsPerToken
        self.tokens = tokens
        self.meanAttendedPositions = meanAttendedPositions
        let t = Double(max(tokens, 1))
        let spiking = !stats.isEmpty
        sopsPerToken = Double(stats.reduce(0) { $0 + $1.sops + $1.hornerAdds }) / t
        rescaleMultipliesPerToken = Double(stats.reduce(0) { $0 + $1.rescaleMultiplies }) / t
        integerScaleMultipliesPerToken = Double(stats.reduce(0) { $0 + $1.rescaleIntMultiplies }) / t
        quantizerMultipliesPerToken = Double(stats.reduce(0) { $0 + $1.activations - $1.quantizerShifts }) / t
        scaleShiftsPerToken = Double(stats.reduce(0) { $0 + $1.rescaleShifts + $1.quantizerShifts }) / t
        floatAttentionMACsPerToken = spiking && spikeAttention ? 0 : attentionMACsPerToken
        let norms = Double(2 * c.nLayer + 1) * 3 * d
        let rope = Double(c.nLayer) * 3 * (qd + kv)
        let silu = Double(c.nLayer) * 3 * ff
        let softmax = Double(c.nLayer) * 3 * Double(c.nHead) * meanAttendedPositions
        let residual = Double(c.nLayer) * 2 * d
        let bias = c.hasQKVBias ? Double(c.nLayer) * (qd + 2 * kv) : 0
        otherFloatOpsPerToken = norms + rope + silu + softmax + residual + bias
        selectComparesPerToken = Double(stats.reduce(0) { $0 + $1.selectCompares }) / t
        var parts: [String: Double] = [:]
        if spiking {
            for st in stats { parts["rescale." + st.site, default: 0] += Double(st.rescaleMultiplies) / t }
            parts["quantizer"] = quantizerMultipliesPerToken
            parts["attention_float"] = floatAttentionMACsPerToken
            parts["rmsnorm"] = norms
            parts["rope"] = rope
            parts["silu_gate"] = silu
            parts["softmax"] = softmax
            parts["residual"] = residual
            if bias > 0 { parts["bias"] = bias }
            macRestPerToken = rescaleMultipliesPerToken + quantizerMultipliesPerToken + floatAttentionMACsPerToken + otherFloatOpsPerToken
        } else {
            // A dense run: no spikes; its arithmetic is the dense MACs (energy ratio 1).
            macRestPerToken = denseMACsPerToken
        }
        floatOpsPerTokenByPart = parts
        sopsPerDenseMAC = sopsPerToken / denseMACsPerToken
        let (dense, sops, rest, intMul) = (denseMACsPerToken, sopsPerToken, macRestPerToken, integerScaleMultipliesPerToken)
        let (select, shifts) = (selectComparesPerToken, scaleShiftsPerToken)
        func estimate(_ e: EnergyConvention) -> EnergyEstimate {
            EnergyEstimate(convention: e.name, denseMicrojoules: dense * e.macPJ * 1e-6,
                           spikeAccumulateMicrojoules: sops * e.acPJ * 1e-6,
                           spikeFloatMicrojoules: rest * (spiking ? e.floatOpPJ : e.macPJ) * 1e-6,
                           spikeIntScaleMicrojoules: intMul * e.intScaleMulPJ * 1e-6,
                           spikeSelectMicrojoules: select * e.acPJ * 1e-6, spikeShiftMicrojoules: shifts * e.acPJ * 1e-6)
        }
        conventionA = estimate(.snnLiterature)
        conventionB = estimate(.matchedInteger)
    }

    enum CodingKeys: String, CodingKey {
        case tokens, meanAttendedPositions = "mean_attended_positions", denseMACsPerToken = "dense_macs_per_token",
             linearMACsPerToken = "dense_linear_macs_per_token", attentionMACsPerToken = "dense_attention_macs_per_token",
             sopsPerToken = "sops_per_token", rescaleMultipliesPerToken = "rescale_multiplies_per_token",
             integerScaleMultipliesPerToken = "integer_scale_multiplies_per_token",
             quantizerMultipliesPerToken = "quantizer_multiplies_per_token",
             floatAttentionMACsPerToken = "float_attention_macs_per_token", otherFloatOpsPerToken = "other_float_ops_per_token",
             selectComparesPerToken = "head_select_compares_per_token", scaleShiftsPerToken = "scale_shifts_per_token",
             macRestPerToken = "mac_rest_per_token", floatOpsPerTokenByPart = "float_ops_per_token_by_part",
             sopsPerDenseMAC = "sops_per_dense_mac",
             conventionA = "energy_convention_a", conventionB = "energy_convention_b", note
    }
}
