/// Decode time of the spk_acc v2 kernel predicted from its own schedule (firmware/kernels/
/// spk_core.cpp, docs/fpga-design.md), not from a bandwidth formula alone.
///
/// Per engine e (one per weight port) and per (chunk, 32-input block), the DATAFLOW stages run
/// concurrently and the slowest sets the pace:
/// ```
/// core     = L + E + U + (1 + tile/16)             cycles: fill, events, bubbles, out
/// rescale  = s_b + 1 + tile/16                      cycles (block formats; row formats: 1 + tile/16)
/// port     = (L + s_b + c0·B) · 64 B / bw_e         seconds: lines and per-burst overhead
/// block    = max(core / (K·f), rescale / (K·f), port, (L + s_b) / f)   (≤ 1 line per cycle
///            per port; K accumulation cores (with their rescalers) per port, 1 as built)
/// ```
/// L = 32·φ lines of firing inputs (φ = fraction of inputs that fire in some plane), E = 32·ε
/// events (ε = spikes per input), U bubbles, B bursts per block, s_b scale lines per block, bw_e
/// the port's share of its memory at efficiency η. A layer takes the slowest engine's time
/// (the per-job barrier of load_spikes) plus a fixed pipeline latency; a token adds launches
/// and host time. φ, ε, U and B come from the C-simulation's counters of real runs
/// (`SPK_CSIM_COUNTERS`, docs/fpga-v2-model.md).
public struct FPGAScheduleModel: Sendable, Hashable {
    /// Spike statistics per 32-input block, as the core sees them.
    public struct Activity: Sendable, Hashable, Codable {
        /// φ: fraction of inputs that fire in at least one plane (their lines are fetched).
        public var fireFraction: Double
        /// ε: events (spikes) per input.
        public var eventsPerInput: Double
        /// U: shift-only cycles per block.
        public var bubblesPerBlock: Double
        /// B: AXI bursts per block (runs of firing inputs, the last one merged with the scales).
        public var burstsPerBlock: Double

        public init(fireFraction: Double, eventsPerInput: Double, bubblesPerBlock: Double, burstsPerBlock: Double) {
            self.fireFraction = fireFraction
            self.eventsPerInput = eventsPerInput
            self.bubblesPerBlock = bubblesPerBlock
            self.burstsPerBlock = burstsPerBlock
        }

        /// Every input fires with `eventsPerInput` spikes, one burst per block (dense worst case).
        public static func dense(eventsPerInput: Double) -> Activity {
            Activity(fireFraction: 1, eventsPerInput: eventsPerInput, bubblesPerBlock: 0, burstsPerBlock: 1)
        }
    }

    /// A weight format as the kernel stores it.
    public struct Format: Sendable, Hashable {
        public var name: String
        /// Rows per line (tile width).
        public var tileRows: Int
        /// Scale lines per (chunk, block): Q4_1 8, Q8_0 2, row formats 0.
        public var blockScaleLines: Int
        /// Row-scale lines per chunk: row formats tile/16, else 0.
        public var rowScaleLines: Int

        public static let q4_1 = Format(name: "Q4_1", tileRows: 128, blockScaleLines: 8, rowScaleLines: 0)
        public static let q8_0 = Format(name: "Q8_0", tileRows: 64, blockScaleLines: 2, rowScaleLines: 0)
        public static let int8Rows = Format(name: "int8 rows", tileRows: 64, blockScaleLines: 0, rowScaleLines: 4)
        public static let ternary = Format(name: "ternary", tileRows: 256, blockScaleLines: 0, rowScaleLines: 16)
    }

    public var shape: FPGAPerformanceModel.Shape
    /// Format of the block matrices and of the head.
    public var format: Format = .q4_1
    public var headFormat: Format = .q8_0
    public var activity: Activity
    /// f: kernel clock.
    public var clockHz: Double = 312.5e6
    /// η: fraction of a memory's peak that long bursts reach.
    public var efficiency: Double = 0.8
    /// c0: bank time lost per burst, in line times (row activation and turnaround that
    /// outstanding reads do not hide; an assumption to be measured on the board).
    public var burstOverheadLines: Double = 2
    /// Accumulation cores per weight port, each on its own chunks (the kernel as built has 1;
    /// more cores share one port's line stream and raise the event rate K-fold).
    public var coresPerEngine: Int = 1
    /// Share of every matrix's chunks per engine (w0 DDR4, w1 and w2 LPDDR4).
    public var shares: [Double] = [0.45, 0.275, 0.275]
    /// Fixed cycles per job (descriptor, slot read, pipeline fill and drain).
    public var jobLatencyCycles: Double = 600
    /// Kernel starts per token (per-layer host flow: 4 per block + 1 for the head). With
    /// `tokenProgram` the estimate uses 1 whatever this says.
    public var launchesPerToken: Int
    /// The token program (`spk_token`, docs/fpga-design.md section 7): ONE launch per token,
    /// and the PL also runs both attention products (2·n_h jobs per block on the K and V caches,
    /// engine 0) and the float steps between the layers in its sequencer.
    public var tokenProgram: Bool = false
    /// Positions in the K/V caches (the token program's attention work grows with them).
    public var context: Int = 512
    /// Float elements the token program's sequencer handles per cycle (1 as built).
    public var floatElementsPerCycle: Double = 1
    public var launchSeconds: Double = 50e-6
    /// A72 time per token outside the PL (attention, norms, encoding, sampling in v1/v2).
    public var hostSecondsPerToken: Double = 0

    public init(shape: FPGAPerformanceModel.Shape, activity: Activity) {
        self.shape = shape
        self.activity = activity
        self.launchesPerToken = 4 * shape.layers + 1
    }

    /// Bytes per second of engine e's port: its memory's η·peak split over the ports on it,
    /// capped by the port itself (one 64-byte line per cycle).
    public func portBandwidth(_ e: Int) -> Double {
        let memory = e == 0 ? 25.6e9 : 31.25e9 / 2
        return min(efficiency * memory, 64 * clockHz)
    }

    /// Seconds and bound of one matrix (rows × cols) in `format`.
    public func matrixSeconds(rows: Int, cols: Int, format: Format) -> (seconds: Double, bound: String) {
        let chunks = (rows + format.tileRows - 1) / format.tileRows
        let blocks = Double(cols / 32)
        let a = activity
        let fill = 32 * a.fireFraction, events = 32 * a.eventsPerInput
        let out = 1 + Double(format.tileRows) / 16
        let core = fill + events + a.bubblesPerBlock + out
        let scaleLines = Double(format.blockScaleLines) + Double(format.rowScaleLines) / blocks
        let rescale = (format.blockScaleLines > 0 ? Double(format.blockScaleLines) : 0) + out
            + (format.rowScaleLines > 0 ? 2 * Double(format.tileRows / 16) / blocks : 0)
        let lines = fill + scaleLines
        let bursts = a.burstsPerBlock + (format.rowScaleLines > 0 ? 1 / blocks : 0)
        var worst = 0.0
        var bound = "core"
        let split = Self.split(chunks, shares)
        for e in 0..<3 {
            let n = split[e]
            guard n > 0 else { continue }
            let port = (lines + burstOverheadLines * bursts) * 64 / portBandwidth(e)
            let k = Double(max(1, coresPerEngine))
            let perBlock = [("core", core / k / clockHz), ("rescale", rescale / k / clockHz), ("memory", port),
                            ("port", lines / clockHz)].max { $0.1 < $1.1 }!
            let t = Double(n) * blocks * perBlock.1
            if t > worst { worst = t; bound = perBlock.0 }
        }
        return (worst + jobLatencyCycles / clockHz, bound)
    }

    /// Chunks per engine: the host's largest-remainder split (csrc/fpga/sr-fpga.c).
    public static func split(_ n: Int, _ share: [Double]) -> [Int] {
        let sum = share.reduce(0, +)
        var out = share.map { Int(Double(n) * ($0 / sum)) }
        var rem = share.indices.map { Double(n) * (share[$0] / sum) - Double(out[$0]) }
        var given = out.reduce(0, +)
        while given < n {
            var best = 0
            for e in 1..<share.count where rem[e] > rem[best] { best = e }
            out[best] += 1
            rem[best] = -1
            given += 1
        }
        return out
    }

    /// Float elements the token program's sequencer processes per token: per block two
    /// RMSNorms, two residual adds and the A / F encoders (12·d), the q and attention-output
    /// encoders (6·n_h·h), SiLU gate and D encoder (4·ffn), softmax and probability encoder
    /// (6·n_h·context), RoPE ((n_h + n_kv)·h), K/V stores (3·n_kv·h); the head's norm and encoder 5·d.
    public var tokenFloatElements: Double {
        let s = shape
        let block = 12 * s.embedding + 6 * s.heads * s.headDim + 4 * s.feedForward + 6 * s.heads * context
            + (s.heads + s.kvHeads) * s.headDim + 3 * s.kvHeads * s.headDim
        return Double(s.layers * block + 5 * s.embedding)
    }

    /// The token program's attention jobs per token: QK (context × h, int8 rows) and PV
    /// (h × context) per query head and block, all on engine 0.
    public var tokenAttentionSeconds: Double {
        var m = self
        m.shares = [1, 0, 0]
        let qk = m.matrixSeconds(rows: context, cols: shape.headDim, format: .int8Rows).seconds
        let pv = m.matrixSeconds(rows: shape.headDim, cols: (context + 31) / 32 * 32, format: .int8Rows).seconds
        return Double(shape.layers * shape.heads) * (qk + pv)
    }

    /// One token of decode.
    public func estimate() -> FPGAScheduleEstimate {
        var layers = 0.0
        var bounds: [String: Double] = [:]
        for m in shape.blockMatrices {
            let r = matrixSeconds(rows: m.rows, cols: m.cols, format: format)
            layers += r.seconds
            bounds[r.bound, default: 0] += r.seconds
        }
        layers *= Double(shape.layers)
        for (k, v) in bounds { bounds[k] = v * Double(shape.layers) }
        let head = matrixSeconds(rows: shape.vocabulary, cols: shape.embedding, format: headFormat)
        bounds[head.bound, default: 0] += head.seconds
        var kernel = layers + head.seconds
        if tokenProgram { kernel += tokenAttentionSeconds + tokenFloatElements / (floatElementsPerCycle * clockHz) }
        let launches = Double(tokenProgram ? 1 : launchesPerToken) * launchSeconds
        let total = kernel + launches + hostSecondsPerToken
        let dominant = bounds.max { $0.value < $1.value }?.key ?? "core"
        return FPGAScheduleEstimate(kernelSeconds: kernel, launchSeconds: launches, hostSeconds: hostSecondsPerToken,
                                    secondsPerToken: total, tokensPerSecond: 1 / total, dominantBound: dominant)
    }
}

/// What `FPGAScheduleModel.estimate()` predicts for one token.
public struct FPGAScheduleEstimate: Sendable, Hashable {
    /// Time the PL is busy (all matrices, slowest engine each, plus per-job latency; with the
    /// token program also its attention jobs and float steps).
    public let kernelSeconds: Double
    /// launches · t_launch.
    public let launchSeconds: Double
    public let hostSeconds: Double
    public let secondsPerToken: Double
    public let tokensPerSecond: Double
    /// The stage that sets the pace for most of the kernel time: core, rescale, memory or port.
    public let dominantBound: String
}
