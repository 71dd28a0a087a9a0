import CSpikeRun

/// Integer codes of one linear layer for the int8 / ternary formats: (n_out, n_in) row-major
/// codes and one scale per output row.
public struct IntegerRows: Sendable {
    public var codes: [Int8]
    public var rowScales: [Float]
    public var nOut: Int
    public var nIn: Int

    /// Symmetric int8 rows of a GGUF tensor, s = max|w| / 127, q = round-half-away(w / s),
    /// dequantized `chunk` rows at a time: the float matrix never exists whole (SmolLM2's tied
    /// head would be 113 MB of floats at every load).
    static func int8(model: Model, tensor t: GGUFTensorInfo, chunk: Int = 1024) throws(SpikeRunError) -> IntegerRows {
        guard sr_type_supported(Int32(t.type.rawValue)) else {
            throw .unsupported("tensor '\(t.name)' has type \(t.type.name), which cannot be dequantized")
        }
        let nOut = t.rowCount, nIn = t.rowLength
        var out = IntegerRows(codes: [Int8](repeating: 0, count: nOut * nIn), rowScales: [Float](repeating: 1, count: nOut),
                              nOut: nOut, nIn: nIn)
        var buf = [Float](repeating: 0, count: min(chunk, nOut) * nIn)
        let src = model.file.data(t)
        for r0 in stride(from: 0, to: nOut, by: chunk) {
            let n = min(chunk, nOut - r0)
            let status = buf.withUnsafeMutableBufferPointer { bp in
                out.codes.withUnsafeMutableBufferPointer { cp in
                    out.rowScales.withUnsafeMutableBufferPointer { sp in
                        for i in 0..<n {
                            let row = bp.baseAddress! + i * nIn
                            sr_dequantize_row(sr_type(rawValue: t.type.rawValue), src.baseAddress! + (r0 + i) * t.rowBytes,
                                              row, Int64(nIn))
                            let st = sr_spike_i8_row_codes(row, Int32(nIn), cp.baseAddress! + (r0 + i) * nIn, sp.baseAddress! + r0 + i)
                            if st != SR_OK { return st }
                        }
                        return SR_OK
                    }
                }
            }
            guard status == SR_OK else { throw SpikeRunError(status: status) }
        }
        return out
    }

    /// Ternary per row (absmean, as BitNet b1.58): s = mean|w|, q = clamp(round(w / s), -1, 1).
    public static func ternary(from w: [Float], nOut: Int, nIn: Int) -> IntegerRows {
        var codes = [Int8](repeating: 0, count: nOut * nIn)
        var scales = [Float](repeating: 1, count: nOut)
        for o in 0..<nOut {
            var sum: Double = 0
            for j in 0..<nIn { sum += Double(abs(w[o * nIn + j])) }
            let s = Float(sum / Double(nIn))
            guard s > 0 else { continue }
            scales[o] = s
            for j in 0..<nIn {
                codes[o * nIn + j] = Int8(Swift.max(-1, Swift.min(1, (w[o * nIn + j] / s).rounded(.toNearestOrAwayFromZero))))
            }
        }
        return IntegerRows(codes: codes, rowScales: scales, nOut: nOut, nIn: nIn)
    }
}

/// What the spike runtime needs besides the model: settings and calibrated V-cache scales.
public struct SpikeSetup: Sendable {
    public var config: SpikeConfig
    /// (n_layer, n_head_kv * head_dim) static V scales; needed with spike attention.
    public var vScales: [Float]?
    public init(config: SpikeConfig, vScales: [Float]? = nil) {
        self.config = config
        self.vScales = vScales
    }
}

/// Per-(layer, site) counters of the spike runtime.
public struct SpikeSiteStatistics: Sendable, Hashable, Codable {
    public var layer: Int
    /// "A", "O", "F", "D", "H", or "Q" / "P" for attention's query and probability spikes.
    public var site: String
    public var tokens: Int
    public var activations: Int
    public var spikes: Int
    /// Sum over tokens of the time steps used.
    public var timesteps: Int
    public var sops: Int
    public var hornerAdds: Int
    public var denseMACs: Int
    public var rescaleMultiplies: Int
    /// Integer block-scale products D·A and M·N (`--weights int4i`; 0 otherwise).
    public var rescaleIntMultiplies: Int = 0
    /// Float comparisons that chose the refined head's rows (H only; 0 otherwise).
    public var selectCompares: Int = 0
    /// Power-of-two steps (0 otherwise): the step times a row's scale as an exponent add, per
    /// output row (not in `rescaleMultiplies`) ...
    public var rescaleShifts: Int = 0
    /// ... and x / step as an exponent add, per encoded value (not a quantizer multiply).
    public var quantizerShifts: Int = 0
    /// Encoded values with at least one spike: the inputs whose weight lines the kernels read.
    public var activeInputs: Int = 0
    /// Packed weight bytes the kernels read (active inputs' lines, all scales; the refined head's
    /// rows) and the packed bytes of the layers reading the site, summed over tokens.
    public var weightBytesRead: Int = 0
    public var weightBytesFull: Int = 0

    /// Spikes per activation (SPA).
    public var spikesPerActivation: Double { activations > 0 ? Double(spikes) / Double(activations) : 0 }
    /// Mean time steps per token.
    public var meanTimesteps: Double { tokens > 0 ? Double(timesteps) / Double(tokens) : 0 }
    /// Share of encoded values that fire at all (the share of weight lines read).
    public var activeFraction: Double { activations > 0 ? Double(activeInputs) / Double(activations) : 0 }
    /// Firing rate = SPA / T.
    public var firingRate: Double { meanTimesteps > 0 ? spikesPerActivation / meanTimesteps : 0 }
    /// A linear layer's input (A, O, F, D, H), as opposed to attention's Q and P.
    public var isLinearSite: Bool { site != "Q" && site != "P" }
}

/// sr_spike_format values (a closed C enum; spelled by raw value to stay independent of how
/// Swift renames its cases).
enum SpikeFormat {
    static let q4_1 = sr_spike_format(rawValue: 0)!
    static let q8_0 = sr_spike_format(rawValue: 1)!
    static let i8Row = sr_spike_format(rawValue: 2)!
    static let ternary = sr_spike_format(rawValue: 3)!
    static let q4_1Int = sr_spike_format(rawValue: 4)!   // packing request: Q4_1 with integer block scales
}

/// Owns the C spike net attached to one engine.
final class SpikeRuntime {
    let net: OpaquePointer
    let nLayer: Int
    let attention: Bool
    /// Encoder settings per site (n_layer * 4 + 1), for the recorder's binary-code offsets.
    let siteSettings: [SpikeSiteSetting]
    /// The installed spike recorder, if any (see SpikeRecorder.swift).
    let recorderBox = SpikeRecorderSlot()
    /// Keeps int8/ternary codes alive only while packing.
    init(model: Model, setup: SpikeSetup, contextLength: Int, sequences: Int = 1) throws(SpikeRunError) {
        let c = model.config
        let cfg = setup.config
        guard cfg.sites.count == c.nLayer * 4 + 1 else {
            throw .invalidArgument("spike settings have \(cfg.sites.count) sites, the model needs \(c.nLayer * 4 + 1)")
        }
        if cfg.spikeAttention {
            guard let vs = setup.vScales, vs.count == c.nLayer * c.nHeadKV * c.headDim else {
                throw .invalidArgument("spike attention needs \(c.nLayer * c.nHeadKV * c.headDim) calibrated V scales")
            }
        }
        var sites = cfg.cSites
        let vScales = setup.vScales ?? []
        var out: OpaquePointer?
        let status = sites.withUnsafeMutableBufferPointer { sp in
            vScales.withUnsafeBufferPointer { vp in
                var params = sr_spike_net_params(
                    n_layer: Int32(c.nLayer), n_embd: Int32(c.nEmbd), n_ff: Int32(c.nFF),
                    n_head: Int32(c.nHead), n_head_kv: Int32(c.nHeadKV), head_dim: Int32(c.headDim),
                    n_ctx: Int32(contextLength), sites: sp.baseAddress, spike_attention: cfg.spikeAttention,
                    q_bits: Int32(cfg.attentionQBits), p_bits: Int32(cfg.attentionPBits),
                    attn_pow2: cfg.attentionPow2 ? 1 : 0,
                    v_scales: vp.isEmpty ? nil : vp.baseAddress, n_seq: Int32(sequences),
                    head_refine_rows: Int32(cfg.headRefineRows), head_refine_k: cfg.headRefineK)
                return sr_spike_net_create(&params, &out)
            }
        }
        guard status == SR_OK, let out else { throw SpikeRunError(status: status) }
        self.net = out
        self.nLayer = c.nLayer
        self.attention = cfg.spikeAttention
        self.siteSettings = cfg.sites
        // The kernels read the packed copies: the mapped GGUF pages of spiking linears are
        // dropped as they are packed (re-read from the file if touched again, e.g. the tied
        // head's embedding rows), so the weights are resident once.
        sr_spike_net_release_sources(out, true)
        do {
            try packWeights(model: model, format: cfg.weights)
        } catch {
            sr_spike_net_free(out)
            throw error
        }
    }

    deinit { sr_spike_net_free(net) }

    static let projections: [(String, sr_proj)] = [
        ("attn_q", SR_PROJ_Q), ("attn_k", SR_PROJ_K), ("attn_v", SR_PROJ_V), ("attn_output", SR_PROJ_O),
        ("ffn_gate", SR_PROJ_GATE), ("ffn_up", SR_PROJ_UP), ("ffn_down", SR_PROJ_DOWN),
    ]

    private func packWeights(model: Model, format: SpikeWeightFormat) throws(SpikeRunError) {
        let file = model.file
        for l in 0...nLayer {
            let list = l == nLayer ? [("", SR_PROJ_HEAD)] : Self.projections
            for (name, proj) in list {
                let tname = l == nLayer ? (model.config.tiedOutput ? "token_embd.weight" : "output.weight")
                                        : "blk.\(l).\(name).weight"
                guard let t = file.tensor(tname) else { throw .format("tensor '\(tname)' is missing") }
                let data = file.data(t)
                let status: sr_status
                // A dense source run with int8/ternary settings (the converter's calibration check)
                // requantizes the block linears as the writer does. The head of an int8/ternary
                // model is requantized here to int8 rows too (its file keeps the GGUF codes, which
                // the tied embeddings also use): one rescale per output row, not one per block.
                // int4i keeps the Q4_1 codes of the blocks; its head becomes int8 rows as for int8.
                let keepCodes = format == .int4 || (format == .int4i && l < nLayer)
                switch t.type {
                case .q4_1 where keepCodes:
                    status = sr_spike_net_set_linear(net, Int32(l), proj, format == .int4i ? SpikeFormat.q4_1Int : SpikeFormat.q4_1,
                                                     data.baseAddress, nil, Int32(t.rowCount), Int32(t.rowLength))
                case .q8_0 where keepCodes && format == .int4:
                    status = sr_spike_net_set_linear(net, Int32(l), proj, SpikeFormat.q8_0, data.baseAddress, nil,
                                                     Int32(t.rowCount), Int32(t.rowLength))
                case .i8:
                    // Converted int8/ternary codes, with their row scales beside them.
                    let sname = tname.replacingOccurrences(of: ".weight", with: ".scale")
                    guard let st = file.tensor(sname), st.type == .f32, st.elementCount == t.rowCount else {
                        throw .format("tensor '\(sname)' (F32 row scales of '\(tname)') is missing or mis-shaped")
                    }
                    let fmt = format == .ternary ? SpikeFormat.ternary : SpikeFormat.i8Row
                    status = sr_spike_net_set_linear(net, Int32(l), proj, fmt, data.baseAddress,
                                                     file.data(st).baseAddress!.assumingMemoryBound(to: Float.self),
                                                     Int32(t.rowCount), Int32(t.rowLength))
                    // Packed: the mapped codes are not read again (as for the GGUF blocks).
                    if status == SR_OK { sr_numa_release_file_pages(data.baseAddress, data.count) }
                default:
                    // A dense file run with int8/ternary settings: requantize in memory.
                    guard !keepCodes else {
                        throw .unsupported("tensor '\(tname)' has type \(t.type.name); spike \(format.rawValue) needs Q4_1 (or Q8_0 for the head)")
                    }
                    let ternary = format == .ternary && l < nLayer  // a ternary head is unusable post-training
                    let rows = ternary ? IntegerRows.ternary(from: try model.dequantize(t), nOut: t.rowCount, nIn: t.rowLength)
                                       : try IntegerRows.int8(model: model, tensor: t)
                    let fmt = ternary ? SpikeFormat.ternary : SpikeFormat.i8Row
                    status = rows.codes.withUnsafeBufferPointer { cp in
                        rows.rowScales.withUnsafeBufferPointer { sp in
                            sr_spike_net_set_linear(net, Int32(l), proj, fmt, cp.baseAddress, sp.baseAddress,
                                                    Int32(t.rowCount), Int32(t.rowLength))
                        }
                    }
                }
                guard status == SR_OK else { throw SpikeRunError(status: status) }
            }
        }
    }

    /// Replaces every site's encoder settings (same count and encoding family) in place.
    func setSites(_ sites: [SpikeSiteSetting], encoding: SpikeEncoding) throws(SpikeRunError) {
        var c = SpikeConfig.cSites(sites, encoding: encoding)
        let status = sr_spike_net_set_sites(net, &c, Int32(c.count))
        guard status == SR_OK else { throw SpikeRunError(status: status) }
    }

    func attach(to engine: OpaquePointer) throws(SpikeRunError) {
        let status = sr_spike_net_attach(net, engine)
        guard status == SR_OK else { throw SpikeRunError(status: status) }
    }

    static let siteLabels = ["A", "O", "F", "D", "H", "Q", "P"]

    func statistics() -> [SpikeSiteStatistics] {
        var out: [SpikeSiteStatistics] = []
        for l in 0...nLayer {
            let sites: [Int] = l == nLayer ? [4] : (attention ? [0, 1, 2, 3, 5, 6] : [0, 1, 2, 3])
            for s in sites {
                var st = sr_spike_site_stats()
                sr_spike_net_site_stats(net, Int32(l), Int32(s), &st)
                out.append(SpikeSiteStatistics(
                    layer: l, site: Self.siteLabels[s], tokens: Int(st.tokens), activations: Int(st.activations),
                    spikes: Int(st.spikes), timesteps: Int(st.planes), sops: Int(st.sops),
                    hornerAdds: Int(st.horner_adds), denseMACs: Int(st.dense_macs),
                    rescaleMultiplies: Int(st.rescale_mults), rescaleIntMultiplies: Int(st.rescale_int_mults),
                    selectCompares: Int(st.select_compares), rescaleShifts: Int(st.rescale_shifts),
                    quantizerShifts: Int(st.quant_shifts), activeInputs: Int(st.active_inputs),
                    weightBytesRead: Int(st.weight_bytes_read), weightBytesFull: Int(st.weight_bytes_full)))
            }
        }
        return out
    }

    func resetStatistics() { sr_spike_net_reset_stats(net) }

    var memoryBytes: Int { Int(sr_spike_net_memory_bytes(net)) }
}
