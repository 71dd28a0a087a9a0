import CSpikeRun

extension SpikeEncoding {
    /// sr_spike_encoding's values (sr-spike.h).
    var cValue: Int32 {
        switch self {
        case .signMagnitude: 0
        case .twosComplement: 1
        case .ternary: 2
        case .binary: 3
        case .naf: 4
        }
    }

    /// Bitwise codes can use as many planes as a token needs (mean rule).
    public var isBitwise: Bool {
        switch self {
        case .signMagnitude, .twosComplement, .naf: true
        case .ternary, .binary: false
        }
    }
}

/// Integer weight storage of a converted model.
public enum SpikeWeightFormat: String, Sendable, Hashable, Codable, CaseIterable {
    /// The GGUF's own Q4_1 codes with per-32-block scale and min (head: its Q8_0 codes): exact.
    case int4
    /// Symmetric int8 codes with one scale per output row (requantized from the GGUF).
    case int8
    /// The GGUF's own Q4_1 codes with integer block scales: each row's fp16 scales and mins
    /// become 8-bit integers times one float each (derived when the model loads), so blocks
    /// are combined by integer products and every row needs 4 float multiplies (head: int8
    /// rows). Needs the mean rule (one activation scale per token).
    case int4i
    /// {-1, 0, +1} codes with one absmean scale per output row (post-training: lossy).
    case ternary
}

/// Encoder settings of one spiking site.
public struct SpikeSiteSetting: Sendable, Hashable, Codable {
    /// mean: s = mean|x|/k (bitwise codes, T per token); max: s = gamma·max|x|/Q per group
    /// (fixed T); dense: not spiking (sensitivity probes, debugging).
    public enum Rule: String, Sendable, Hashable, Codable { case mean, max, dense }
    public var rule: Rule
    /// Mean rule: levels per mean magnitude (s = mean|x| / k).
    public var k: Float
    /// Max rule: b-bit-equivalent resolution (Q = 2^(b-1) - 1).
    public var bits: Int
    /// Max rule: clip level as a fraction of max|x|.
    public var gamma: Float
    /// Membrane clip C (0 = Q).
    public var clip: Int
    /// Dead-zone rounding offset.
    public var rho: Float
    /// Channels per activation scale (0 = one scale per token).
    public var group: Int
    /// Mean rule with NAF trains: spike-thrifty rounding margin in [0, 0.5] (0 = plain rhaz).
    /// Of the two integers next to x/s, the one whose NAF fires fewer spikes is taken when it
    /// lies within 0.5 + tau steps (docs/spike-algorithms.md §3).
    public var tau: Float = 0
    /// Mean rule: the step s = mean|x|/k is snapped to the nearest power of two (in the log
    /// domain), so the quantizer's x/s and the rescale's s·s_row are exponent adds, not float
    /// multiplies (docs/spike-algorithms.md §1).
    public var pow2 = false

    public init(rule: Rule, k: Float, bits: Int, gamma: Float, clip: Int, rho: Float, group: Int, tau: Float = 0,
                pow2: Bool = false) {
        self.rule = rule
        self.k = k
        self.bits = bits
        self.gamma = gamma
        self.clip = clip
        self.rho = rho
        self.group = group
        self.tau = tau
        self.pow2 = pow2
    }

    enum CodingKeys: String, CodingKey { case rule, k, bits, gamma, clip, rho, group, tau, pow2 }
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(rule: try c.decode(Rule.self, forKey: .rule), k: try c.decode(Float.self, forKey: .k),
                  bits: try c.decode(Int.self, forKey: .bits), gamma: try c.decode(Float.self, forKey: .gamma),
                  clip: try c.decode(Int.self, forKey: .clip), rho: try c.decode(Float.self, forKey: .rho),
                  group: try c.decode(Int.self, forKey: .group),
                  tau: try c.decodeIfPresent(Float.self, forKey: .tau) ?? 0,  // reports before tau
                  pow2: try c.decodeIfPresent(Bool.self, forKey: .pow2) ?? false)
    }

    public static func mean(k: Float, tau: Float = 0, pow2: Bool = false) -> SpikeSiteSetting {
        .init(rule: .mean, k: k, bits: 0, gamma: 1, clip: 0, rho: 0, group: 0, tau: tau, pow2: pow2)
    }
    public static func max(bits: Int, gamma: Float = 1, group: Int = 32) -> SpikeSiteSetting {
        .init(rule: .max, k: 0, bits: bits, gamma: gamma, clip: 0, rho: 0, group: group)
    }
    public static let dense = SpikeSiteSetting(rule: .dense, k: 0, bits: 0, gamma: 1, clip: 0, rho: 0, group: 0)
}

/// Everything a converted model stores under the `spike.` metadata namespace.
public struct SpikeConfig: Sendable, Hashable, Codable {
    public static let formatVersion = 1

    /// Spike-train code of every site (the binary code's offset is set per site: z = C).
    public var encoding: SpikeEncoding
    public var weights: SpikeWeightFormat
    /// n_layer * 4 + 1 settings: per block A (q/k/v input), O, F (gate/up input), D; then H.
    public var sites: [SpikeSiteSetting]
    /// Attention's QK and PV products on spikes (option A) rather than float.
    public var spikeAttention: Bool
    public var attentionQBits: Int
    public var attentionPBits: Int
    /// Spike attention with power-of-two steps: the query's max-rule step rounded up to a power
    /// of two, the probabilities' scale 2^-attentionPBits instead of 1/(2^bits − 1).
    public var attentionPow2 = false
    /// Source model file name and sha256, calibration text, budget: provenance only.
    public var provenance: [String: String]
    /// Refined head (0 = off): the head runs on its site's coarse train, then this many rows
    /// (the largest coarse logits) are recomputed exactly from a train at `headRefineK`
    /// (docs/spike-algorithms.md §4). Needs a mean-rule head with int8-row codes; CPU only.
    public var headRefineRows: Int = 0
    public var headRefineK: Float = 0

    public static let siteNames = ["A", "O", "F", "D"]

    /// The recommended recipe at one resolution: mean rule with `k` at every site, bitwise
    /// sign-magnitude trains, the GGUF's own int4 weights, float attention (spike attention
    /// needs calibrated V scales, which `spikerun convert` provides).
    public static func uniform(k: Float, nLayer: Int) -> SpikeConfig {
        SpikeConfig(encoding: .signMagnitude, weights: .int4,
                    sites: Array(repeating: .mean(k: k), count: nLayer * 4 + 1),
                    spikeAttention: false, attentionQBits: 8, attentionPBits: 12, provenance: [:])
    }

    /// Site index of (layer, site name); the head input H is at n_layer * 4.
    public static func siteIndex(layer: Int, site: String, nLayer: Int) -> Int {
        site == "H" ? nLayer * 4 : layer * 4 + siteNames.firstIndex(of: site)!
    }

    /// Why the FPGA kernel cannot run this model (nil if it can); the C runtime refuses the
    /// same cases (`sr_spike_net_use_fpga`).
    public var fpgaUnsupportedReason: String? {
        if weights == .int4i { return "the FPGA kernel has no integer block scales (--weights int4i)" }
        if headRefineRows > 0 {
            return "the model has a refined head, which runs on the CPU only (convert with --head-refine 0 for the FPGA)"
        }
        return nil
    }

    /// Reads the spike configuration of a converted model, with the file's own block count.
    public static func read(from file: GGUFFile) throws(SpikeRunError) -> SpikeConfig? {
        try read(from: file, nLayer: ModelConfig(gguf: file).nLayer)
    }

    /// Reads the spike configuration of a converted model (nil for a dense model).
    public static func read(from file: GGUFFile, nLayer: Int) throws(SpikeRunError) -> SpikeConfig? {
        let md = file.metadata
        guard let version = md.int("spike.version") else { return nil }
        guard version == formatVersion else {
            throw .unsupported("spike format version \(version) is not supported (this build reads \(formatVersion))")
        }
        func need<T>(_ v: T?, _ key: String) throws(SpikeRunError) -> T {
            guard let v else { throw .format("spike metadata '\(key)' is missing or has the wrong type") }
            return v
        }
        // The binary code's offset z = C is per site; the stored name carries no offset.
        guard let enc = SpikeEncoding(name: try need(md.string("spike.encoding"), "spike.encoding")) else {
            throw .format("unknown spike.encoding '\(md.string("spike.encoding") ?? "")'")
        }
        guard let wf = SpikeWeightFormat(rawValue: try need(md.string("spike.weights"), "spike.weights")) else {
            throw .format("unknown spike.weights '\(md.string("spike.weights") ?? "")'")
        }
        let n = nLayer * 4 + 1
        let rules = try need(md.strings("spike.site.rule"), "spike.site.rule")
        let ks = try need(md.floats("spike.site.k"), "spike.site.k")
        let bits = try need(md.ints("spike.site.bits"), "spike.site.bits")
        let gammas = try need(md.floats("spike.site.gamma"), "spike.site.gamma")
        let clips = try need(md.ints("spike.site.clip"), "spike.site.clip")
        let rhos = try need(md.floats("spike.site.rho"), "spike.site.rho")
        let groups = try need(md.ints("spike.site.group"), "spike.site.group")
        // Files written before the thrifty rounding have no tau: plain rhaz everywhere.
        let taus = md["spike.site.tau"] == nil ? [Float](repeating: 0, count: n)
            : try need(md.floats("spike.site.tau"), "spike.site.tau")
        // Files written before power-of-two steps have none.
        let pow2s = md["spike.site.pow2"] == nil ? [Int](repeating: 0, count: n)
            : try need(md.ints("spike.site.pow2"), "spike.site.pow2")
        guard [rules.count, taus.count, pow2s.count, ks.count, bits.count, gammas.count, clips.count, rhos.count, groups.count]
            .allSatisfy({ $0 == n }) else {
            throw .format("spike.site.* arrays must have \(n) entries (4 per block + head)")
        }
        var sites: [SpikeSiteSetting] = []
        for i in 0..<n {
            guard let r = SpikeSiteSetting.Rule(rawValue: rules[i]) else {
                throw .format("unknown spike.site.rule '\(rules[i])'")
            }
            guard pow2s[i] == 0 || (pow2s[i] == 1 && r == .mean) else {
                throw .format("spike.site.pow2[\(i)] = \(pow2s[i]): power-of-two steps are 0 or 1, and 1 only for the mean rule")
            }
            sites.append(.init(rule: r, k: ks[i], bits: bits[i], gamma: gammas[i], clip: clips[i],
                               rho: rhos[i], group: groups[i], tau: taus[i], pow2: pow2s[i] == 1))
        }
        var prov: [String: String] = [:]
        for key in md.keys where key.hasPrefix("spike.source.") || key.hasPrefix("spike.calibration.") {
            if let s = md.string(key) { prov[key] = s } else if let d = md.double(key) { prov[key] = "\(d)" }
        }
        // Files written before the refined head have neither key: the head is not refined.
        let refineRows = md["spike.head.refine_rows"] == nil ? 0
            : try need(md.int("spike.head.refine_rows"), "spike.head.refine_rows")
        let refineK = md["spike.head.refine_k"] == nil ? 0
            : try need(md.double("spike.head.refine_k").map(Float.init), "spike.head.refine_k")
        guard (0...Int(Int32.max)).contains(refineRows), refineRows == 0 || (refineK > 0 && refineK.isFinite) else {
            throw .format("spike.head.refine_rows \(refineRows) / refine_k \(refineK) are inconsistent")
        }
        return SpikeConfig(
            encoding: enc, weights: wf, sites: sites,
            spikeAttention: md.bool("spike.attention") ?? false,
            attentionQBits: md.int("spike.attention.q_bits") ?? 8,
            attentionPBits: md.int("spike.attention.p_bits") ?? 12,
            attentionPow2: md.bool("spike.attention.pow2") ?? false,  // absent in older files
            provenance: prov, headRefineRows: refineRows, headRefineK: refineK)
    }

    /// Writes the `spike.` keys (not the tensors) into a GGUF writer.
    public func write(into w: inout GGUFWriter) throws(SpikeRunError) {
        try w.set("spike.version", .uint32(UInt32(Self.formatVersion)))
        try w.set("spike.encoding", .string(encoding.name))
        try w.set("spike.weights", .string(weights.rawValue))
        try w.set("spike.site.rule", .array(sites.map { .string($0.rule.rawValue) }))
        try w.set("spike.site.k", .array(sites.map { .float32($0.k) }))
        try w.set("spike.site.bits", .array(sites.map { .int32(Int32($0.bits)) }))
        try w.set("spike.site.gamma", .array(sites.map { .float32($0.gamma) }))
        try w.set("spike.site.clip", .array(sites.map { .int32(Int32($0.clip)) }))
        try w.set("spike.site.rho", .array(sites.map { .float32($0.rho) }))
        try w.set("spike.site.group", .array(sites.map { .int32(Int32($0.group)) }))
        try w.set("spike.site.tau", .array(sites.map { .float32($0.tau) }))
        if sites.contains(where: \.pow2) { try w.set("spike.site.pow2", .array(sites.map { .int32($0.pow2 ? 1 : 0) })) }
        try w.set("spike.attention", .bool(spikeAttention))
        try w.set("spike.attention.q_bits", .int32(Int32(attentionQBits)))
        try w.set("spike.attention.p_bits", .int32(Int32(attentionPBits)))
        if attentionPow2 { try w.set("spike.attention.pow2", .bool(true)) }
        if headRefineRows > 0 {
            try w.set("spike.head.refine_rows", .uint32(UInt32(headRefineRows)))
            try w.set("spike.head.refine_k", .float32(headRefineK))
        }
        for (k, v) in provenance.sorted(by: { $0.key < $1.key }) { try w.set(k, .string(v)) }
    }

    var cSites: [sr_spike_site_cfg] { Self.cSites(sites, encoding: encoding) }

    /// The C settings of `sites` with trains of `encoding`.
    static func cSites(_ sites: [SpikeSiteSetting], encoding: SpikeEncoding) -> [sr_spike_site_cfg] {
        sites.map {
            sr_spike_site_cfg(
                rule: Int32($0.rule == .mean ? SR_SPIKE_RULE_MEAN.rawValue
                            : $0.rule == .max ? SR_SPIKE_RULE_MAX.rawValue : SR_SPIKE_RULE_DENSE.rawValue),
                encoding: encoding.cValue, k: $0.k, bits: Int32($0.bits), gamma: $0.gamma,
                clip: Int32($0.clip), rho: $0.rho, group: Int32($0.group), tau: $0.tau, pow2: $0.pow2 ? 1 : 0)
        }
    }
}
