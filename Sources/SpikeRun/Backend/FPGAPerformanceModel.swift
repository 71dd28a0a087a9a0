/// Decode throughput and memory traffic of the FPGA backend, predicted from the model's
/// shape (docs/fpga-v2-model.md: decode streams every linear weight once per token).
///
/// ```
/// N_w       = Σ_layers (d·n_h·h + 2·d·n_kv·h + n_h·h·d + 3·d·ffn) + d·vocab
/// bytes_tok = N_w · bits / 8 · overhead + KV(ctx) + other
/// t_mem     = bytes_tok / (η · BW)
/// t_comp    = N_w · T · ρ / (P · f)
/// tok/s     = 1 / (max(t_mem, t_comp) + n_launch · t_launch + t_host)
/// ```
/// A planning tool: `spikerun bench --fpga-model` prints its estimate, and every board figure
/// in docs/benchmarks.md should be shown next to it.
public struct FPGAPerformanceModel: Sendable, Hashable {
    /// The transformer dimensions that decide the weight stream.
    public struct Shape: Sendable, Hashable, Codable {
        public var name: String
        public var layers: Int
        /// Embedding width d.
        public var embedding: Int
        /// Query heads n_h.
        public var heads: Int
        /// Key/value heads n_kv.
        public var kvHeads: Int
        /// Dimensions per head h.
        public var headDim: Int
        /// Feed-forward width.
        public var feedForward: Int
        public var vocabulary: Int

        public init(name: String, layers: Int, embedding: Int, heads: Int, kvHeads: Int, headDim: Int,
                    feedForward: Int, vocabulary: Int) {
            self.name = name
            self.layers = layers
            self.embedding = embedding
            self.heads = heads
            self.kvHeads = kvHeads
            self.headDim = headDim
            self.feedForward = feedForward
            self.vocabulary = vocabulary
        }

        /// The shape of a loaded model's configuration.
        public init(name: String, config: ModelConfig) {
            self.init(name: name, layers: config.nLayer, embedding: config.nEmbd, heads: config.nHead,
                      kvHeads: config.nHeadKV, headDim: config.headDim, feedForward: config.nFF,
                      vocabulary: config.nVocab)
        }

        /// SmolLM2-135M(-Instruct): 30 layers, d 576, 9/3 heads of 64, ffn 1536, vocab 49152.
        public static let smolLM2_135M = Shape(name: "SmolLM2-135M", layers: 30, embedding: 576, heads: 9,
                                               kvHeads: 3, headDim: 64, feedForward: 1536, vocabulary: 49152)
        /// A Qwen2.5-1.5B-shaped model: 28 layers, d 1536, 12/2 heads of 128, ffn 8960,
        /// vocab 151936 (the size class of NSLLM's VCK190 figure).
        public static let qwen25_1_5B = Shape(name: "Qwen2.5-1.5B-shaped", layers: 28, embedding: 1536, heads: 12,
                                              kvHeads: 2, headDim: 128, feedForward: 8960, vocabulary: 151936)

        /// The linear layers of one block as (outputs, inputs): q, k, v, o, gate, up, down.
        public var blockMatrices: [(rows: Int, cols: Int)] {
            let q = heads * headDim, kv = kvHeads * headDim
            return [(q, embedding), (kv, embedding), (kv, embedding), (embedding, q),
                    (feedForward, embedding), (feedForward, embedding), (embedding, feedForward)]
        }

        /// Weights of all blocks' linear layers.
        public var layerWeights: Int64 {
            Int64(layers) * blockMatrices.reduce(Int64(0)) { $0 + Int64($1.rows) * Int64($1.cols) }
        }

        /// Weights of the output head (streamed every token, tied or not).
        public var headWeights: Int64 { Int64(embedding) * Int64(vocabulary) }

        /// N_w: every weight streamed per generated token.
        public var streamedWeights: Int64 { layerWeights + headWeights }

        /// Weights streamed by the spk_acc kernel, whose rows are padded to the tile width
        /// of the format (128 rows for Q4_1, 64 for Q8_0/int8, 256 for ternary).
        public func paddedWeights(tileRows: Int, headTileRows: Int? = nil) -> Int64 {
            func pad(_ r: Int, _ t: Int) -> Int64 { Int64((r + t - 1) / t * t) }
            let block = blockMatrices.reduce(Int64(0)) { $0 + pad($1.rows, tileRows) * Int64($1.cols) }
            return Int64(layers) * block + pad(vocabulary, headTileRows ?? tileRows) * Int64(embedding)
        }

        /// KV cache bytes read per token at context `ctx`: layers · 2 · n_kv · h · ctx · bytes.
        public func kvBytes(context: Int, bytesPerElement: Double) -> Double {
            Double(layers) * 2 * Double(kvHeads) * Double(headDim) * Double(context) * bytesPerElement
        }
    }

    /// Which memories stream the weights (peak figures of the VCK190).
    public enum Memory: String, Sendable, Hashable, Codable, CaseIterable {
        /// 64-bit DDR4-3200: 25.6 GB/s peak, shared with Linux on the A72s.
        case ddr4
        /// LPDDR4, two controllers: 31.25 GB/s peak, unused by Linux.
        case lpddr4
        /// Both at once (weights split over the ports: w0 DDR4, w1 + w2 LPDDR4).
        case both

        /// Peak bandwidth in bytes per second.
        public var peakBytesPerSecond: Double {
            switch self {
            case .ddr4: return 25.6e9
            case .lpddr4: return 31.25e9
            case .both: return 25.6e9 + 31.25e9
            }
        }
    }

    public var shape: Shape
    /// Bits per streamed weight: 2 ternary, 1.6 ternary at 5 trits/byte, 4 int4, 5 Q4_1
    /// (4-bit codes + fp16 d and m per 32), 8.5 Q8_0.
    public var weightBits: Double = 5
    /// Extra weight bytes as a factor (e.g. tile padding: `paddedWeights / streamedWeights`).
    public var weightOverhead: Double = 1
    /// Spike time steps T (planes) per activation.
    public var timeSteps: Int = 1
    /// ρ: fraction of spike×weight pairs that cost work (1 = every plane of every input).
    public var spikeDensity: Double = 1
    /// P: adder lanes working in parallel.
    public var lanes: Int = 4096
    /// f: kernel clock (the 2022.1 base platform's default PL clock is 312.5 MHz).
    public var clockHz: Double = 312.5e6
    /// η: achieved fraction of peak bandwidth for long bursts.
    public var efficiency: Double = 0.8
    public var memory: Memory = .both
    /// Kernel starts per token (spk_acc v1: one per group of layers sharing an input, 4 per
    /// block + 1 for the head; see `spkAccV1Launches`).
    public var launchesPerToken: Int = 1
    /// Cost of one start + wait (public reports: 45–100 µs; measure on the board).
    public var launchSeconds: Double = 50e-6
    /// What the A72s do per token outside the PL (sampling, norms, attention in v1).
    public var hostSecondsPerToken: Double = 0
    /// Context length whose KV cache is read per token (0: ignore, as in the weight-streaming table).
    public var context: Int = 0
    /// Bytes per cached K or V element (int8 = 1).
    public var kvBytesPerElement: Double = 1
    /// Other bytes per token (norm weights, scales, spike planes, outputs).
    public var otherBytesPerToken: Double = 0

    public init(shape: Shape, weightBits: Double = 5, memory: Memory = .both) {
        self.shape = shape
        self.weightBits = weightBits
        self.memory = memory
    }

    /// Kernel starts per token of the v1 host flow: q/k/v, o, gate/up and down per block, and
    /// the head.
    public static func spkAccV1Launches(_ shape: Shape) -> Int { 4 * shape.layers + 1 }

    /// The estimate for these parameters.
    public func estimate() -> FPGAPerformanceEstimate {
        let nw = shape.streamedWeights
        let weightBytes = Double(nw) * weightBits / 8 * weightOverhead
        let kv = shape.kvBytes(context: context, bytesPerElement: kvBytesPerElement)
        let bytes = weightBytes + kv + otherBytesPerToken
        let bandwidth = efficiency * memory.peakBytesPerSecond
        let tMem = bytes / bandwidth
        let tComp = Double(nw) * Double(timeSteps) * spikeDensity / (Double(lanes) * clockHz)
        let tLaunch = Double(launchesPerToken) * launchSeconds
        let total = max(tMem, tComp) + tLaunch + hostSecondsPerToken
        // lanes at which compute keeps pace with the memory stream
        let lanesNeeded = Double(nw) * Double(timeSteps) * spikeDensity / (tMem * clockHz)
        return FPGAPerformanceEstimate(
            model: self, streamedWeights: nw, weightBytesPerToken: weightBytes, kvBytesPerToken: kv,
            otherBytesPerToken: otherBytesPerToken, bytesPerToken: bytes, bandwidth: bandwidth,
            memorySeconds: tMem, computeSeconds: tComp, launchSeconds: tLaunch,
            hostSeconds: hostSecondsPerToken, secondsPerToken: total, tokensPerSecond: 1 / total,
            bound: tComp > tMem ? .compute : .memory, lanesToKeepPace: lanesNeeded)
    }

    /// Bits per streamed weight that a measured rate needs at efficiency η on `memory`
    /// (e.g. NSLLM's 161.8 tok/s for 1.5B needs ≤ 1.82 bits at 100 % of both memories).
    public static func bitsPerWeightNeeded(tokensPerSecond: Double, shape: Shape, memory: Memory = .both,
                                           efficiency: Double = 1) -> Double {
        efficiency * memory.peakBytesPerSecond * 8 / (tokensPerSecond * Double(shape.streamedWeights))
    }

    /// One published board figure to compare with.
    public struct Reference: Sendable, Hashable {
        public var name: String
        public var shape: Shape
        public var tokensPerSecond: Double
        public var watts: Double
        public var joulesPerToken: Double { watts / tokensPerSecond }
    }

    /// NSLLM on the VCK190: 161.8 tok/s at 13.849 W for a 1.5B model.
    public static let nsllm1_5B = Reference(name: "NSLLM (VCK190, 1.5B)", shape: .qwen25_1_5B,
                                            tokensPerSecond: 161.8, watts: 13.849)

    /// The rows of the weight-streaming table of docs/fpga-v2-model.md (memory-bound, η = 0.8,
    /// no KV, no launch cost):
    /// each (shape, bits) on DDR4, LPDDR4 and both.
    public static func referenceTable() -> [FPGAPerformanceEstimate] {
        let rows: [(Shape, Double)] = [(.smolLM2_135M, 2), (.smolLM2_135M, 5), (.smolLM2_135M, 4),
                                       (.qwen25_1_5B, 2), (.qwen25_1_5B, 1.6), (.qwen25_1_5B, 4)]
        var out: [FPGAPerformanceEstimate] = []
        for (shape, bits) in rows {
            for mem in [Memory.ddr4, .lpddr4, .both] {
                var m = FPGAPerformanceModel(shape: shape, weightBits: bits, memory: mem)
                m.launchesPerToken = 0  // the table is the memory bound alone
                out.append(m.estimate())
            }
        }
        return out
    }

    /// The weight-streaming table as text: `model | weights | MB/token | DDR4 | LPDDR4 | both`.
    public static func referenceTableText() -> String {
        let est = referenceTable()
        var lines = ["model | N_w (M) | bits/weight | MB/token | DDR4 tok/s | LPDDR4 tok/s | both tok/s"]
        var i = 0
        while i + 2 < est.count {
            let a = est[i], b = est[i + 1], c = est[i + 2]
            lines.append("\(a.model.shape.name) | \(fmt(Double(a.streamedWeights) / 1e6, 1)) | "
                + "\(fmt(a.model.weightBits, 1)) | \(fmt(a.weightBytesPerToken / 1e6, 1)) | "
                + "\(fmt(a.tokensPerSecond, 0)) | \(fmt(b.tokensPerSecond, 0)) | \(fmt(c.tokensPerSecond, 0))")
            i += 3
        }
        return lines.joined(separator: "\n")
    }
}

/// What `FPGAPerformanceModel.estimate()` predicts for one token of decode.
public struct FPGAPerformanceEstimate: Sendable, Hashable, CustomStringConvertible {
    public enum Bound: String, Sendable, Hashable { case memory, compute }

    /// The parameters this estimate was made with.
    public let model: FPGAPerformanceModel
    /// N_w: linear weights streamed per token.
    public let streamedWeights: Int64
    public let weightBytesPerToken: Double
    public let kvBytesPerToken: Double
    public let otherBytesPerToken: Double
    /// All bytes read per token.
    public let bytesPerToken: Double
    /// η · peak bandwidth, bytes per second.
    public let bandwidth: Double
    public let memorySeconds: Double
    public let computeSeconds: Double
    /// n_launch · t_launch.
    public let launchSeconds: Double
    public let hostSeconds: Double
    public let secondsPerToken: Double
    public let tokensPerSecond: Double
    public let bound: Bound
    /// Adder lanes P at which compute exactly keeps pace with the memory stream.
    public let lanesToKeepPace: Double

    /// Several lines for `spikerun bench --fpga-model`.
    public var description: String {
        let m = model
        return """
        fpga model: \(m.shape.name), \(fmt(Double(streamedWeights) / 1e6, 1)) M weights/token at \
        \(fmt(m.weightBits, 2)) bits (x\(fmt(m.weightOverhead, 3)) overhead)
          memory   \(m.memory.rawValue), \(fmt(bandwidth / 1e9, 1)) GB/s (η \(fmt(m.efficiency, 2))): \
        \(fmt(bytesPerToken / 1e6, 2)) MB/token (weights \(fmt(weightBytesPerToken / 1e6, 2)), \
        KV \(fmt(kvBytesPerToken / 1e6, 2)) at ctx \(m.context), other \(fmt(otherBytesPerToken / 1e6, 2))) \
        -> \(fmt(memorySeconds * 1e3, 3)) ms
          compute  T \(m.timeSteps), ρ \(fmt(m.spikeDensity, 3)), P \(m.lanes) lanes at \
        \(fmt(m.clockHz / 1e6, 2)) MHz -> \(fmt(computeSeconds * 1e3, 3)) ms \
        (P to keep pace: \(fmt(lanesToKeepPace, 0)))
          launches \(m.launchesPerToken) x \(fmt(m.launchSeconds * 1e6, 1)) µs = \(fmt(launchSeconds * 1e3, 3)) ms; \
        host \(fmt(hostSeconds * 1e3, 3)) ms
          predicted \(fmt(tokensPerSecond, 1)) tok/s (\(fmt(secondsPerToken * 1e3, 3)) ms/token, \(bound.rawValue)-bound)
        """
    }
}

private func fmt(_ v: Double, _ decimals: Int) -> String {
    guard v.isFinite else { return String(describing: v) }
    var s = String(Int64((v * pow10(decimals)).rounded()))
    if decimals > 0 {
        let negative = s.hasPrefix("-")
        if negative { s.removeFirst() }
        while s.count <= decimals { s = "0" + s }
        s.insert(".", at: s.index(s.endIndex, offsetBy: -decimals))
        if negative { s = "-" + s }
    }
    return s
}

private func pow10(_ n: Int) -> Double {
    var r = 1.0
    for _ in 0..<n { r *= 10 }
    return r
}
