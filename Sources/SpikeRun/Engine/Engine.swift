import CSpikeRun

/// How a session runs a model's linear layers.
public enum RunMode: Sendable {
    /// As the file says: spike-driven for a converted model, dense otherwise.
    case model
    /// Dense kernels (the reference), whatever the file says.
    case dense
    /// Spike-driven with these settings (e.g. during calibration of a dense model).
    case spike(SpikeSetup)
}

/// Owns one C engine (KV cache, scratch, thread pool) over a model's borrowed weights.
/// Not thread-safe except `abort()`; a `Session` serializes access.
final class Engine: @unchecked Sendable {
    let model: Model
    let contextLength: Int
    let batchSize: Int
    /// KV cache regions of `contextLength` tokens, one per sequence (`evalSequences`).
    let sequences: Int
    let handle: OpaquePointer
    /// The spike runtime when the model runs spike-driven (owns hooks into `handle`).
    let spike: SpikeRuntime?
    /// The FPGA running the spike runtime's accumulations, when the backend is `.fpga`.
    let fpga: FPGAAccelerator?

    init(model: Model, contextLength: Int, batchSize: Int, mode: RunMode = .model,
         sequences: Int = 1) throws(SpikeRunError) {
        let c = model.config
        guard contextLength > 0 else { throw .invalidArgument("context length must be positive") }
        guard sequences >= 1 else { throw .invalidArgument("sequences must be >= 1, got \(sequences)") }
        self.model = model
        self.contextLength = contextLength
        self.sequences = sequences
        // One sequence: a pass never holds more than the context; several: a step holds
        // every sequence's tokens.
        self.batchSize = max(1, sequences > 1 ? batchSize : min(batchSize, contextLength))
        var params = sr_engine_params(
            n_layer: Int32(c.nLayer), n_embd: Int32(c.nEmbd), n_ff: Int32(c.nFF),
            n_head: Int32(c.nHead), n_head_kv: Int32(c.nHeadKV), head_dim: Int32(c.headDim),
            n_vocab: Int32(c.nVocab), n_ctx: Int32(contextLength), n_batch: Int32(self.batchSize),
            n_seq: Int32(sequences),
            rope_dim: Int32(c.ropeDimensionCount), rope_freq_base: Float(c.ropeFreqBase),
            rms_eps: Float(c.rmsNormEps),
            act_mode: model.options.activationMode == .q8 ? SR_ACT_Q8 : SR_ACT_F32,
            n_threads: Int32(model.options.threads ?? 0), hooked_linears: false,
            rope_mode: c.ropeType == .neox ? SR_ROPE_NEOX : SR_ROPE_NORM)
        let setup: SpikeSetup?
        switch mode {
        case .model: setup = model.spike
        case .dense: setup = nil
        case .spike(let s): setup = s
        }
        params.hooked_linears = setup != nil
        var (weights, blocks) = try model.engineWeights()
        var out: OpaquePointer?
        let status = blocks.withUnsafeBufferPointer { bp in
            weights.blocks = bp.baseAddress
            return sr_engine_create(&params, &weights, &out)
        }
        guard status == SR_OK, let out else { throw SpikeRunError(status: status) }
        self.handle = out
        var runtime: SpikeRuntime?
        var accelerator: FPGAAccelerator?
        do throws(SpikeRunError) {
            if let setup {
                let rt = try SpikeRuntime(model: model, setup: setup, contextLength: contextLength,
                                          sequences: sequences)
                try rt.attach(to: out)
                runtime = rt
            }
            var image: (path: String, emulated: Bool)?
            switch model.options.backend {
            case .cpu: image = nil
            case .fpga(let xclbin): image = (xclbin, false)
            case .fpgaEmulator(let kernel): image = (kernel, true)
            }
            if let image {
                guard let rt = runtime else {
                    throw SpikeRunError.unsupported("the FPGA backend runs spike-driven models; convert this one first with 'spikerun convert'")
                }
                var options = FPGAAccelerator.Options()
                options.emulated = image.emulated
                // the emulated kernel always has the token program (one run per token); a board
                // xclbin built before it existed has only spk_acc, so the board keeps the
                // per-layer flow until the token kernel is confirmed there
                options.tokenProgram = image.emulated
                let acc = try FPGAAccelerator(xclbin: image.path, options: options)
                let status = sr_spike_net_use_fpga(rt.net, acc.handle)
                guard status == SR_OK else { throw SpikeRunError(status: status) }
                accelerator = acc
            }
        } catch {
            sr_engine_free(out)
            throw error
        }
        self.spike = runtime
        self.fpga = accelerator
    }

    deinit {
        sr_engine_free(handle)  // before the spike runtime whose hooks it holds
    }

    var vocabularySize: Int { model.config.nVocab }

    /// True when the FPGA computes whole tokens (the token program: one kernel run per token).
    var fpgaTokenProgram: Bool {
        guard fpga != nil, let rt = spike else { return false }
        return sr_spike_net_token_program(rt.net)
    }

    /// Evaluates `tokens` at positions `position...`; returns the last token's logits, or every
    /// token's (row-major, n × vocab) when `allLogits`.
    func eval(_ tokens: [Int32], at position: Int, allLogits: Bool = false) throws(SpikeRunError) -> [Float] {
        guard !tokens.isEmpty else { throw .invalidArgument("nothing to evaluate") }
        let rows = allLogits ? tokens.count : 1
        var logits = [Float](repeating: 0, count: rows * vocabularySize)
        let status = tokens.withUnsafeBufferPointer { tp in
            logits.withUnsafeMutableBufferPointer { lp in
                sr_engine_eval(handle, tp.baseAddress, Int32(tokens.count), Int32(position),
                               lp.baseAddress, allLogits)
            }
        }
        guard status == SR_OK else { throw SpikeRunError(status: status) }
        return logits
    }

    /// One sequence's tokens in a multi-sequence step.
    struct SequenceStep {
        var sequence: Int
        var position: Int
        var tokens: [Int32]
        var wantsLogits: Bool
        /// Token count that picks the attention kernel, as a lone `eval` of that many tokens
        /// would (0 = `tokens.count`).
        var kernelTokens = 0
    }

    /// One forward pass over several sequences' tokens (continuous batching); returns the last
    /// token's logits of each step that asked for them (empty arrays for the others).
    func evalSequences(_ steps: [SequenceStep]) throws(SpikeRunError) -> [[Float]] {
        guard !steps.isEmpty else { throw .invalidArgument("nothing to evaluate") }
        let vocab = vocabularySize
        var logits = [Float](repeating: 0, count: steps.count * vocab)
        var tokens: [Int32] = []
        var offsets: [Int] = []
        for s in steps {
            offsets.append(tokens.count)
            tokens += s.tokens
        }
        let status = tokens.withUnsafeBufferPointer { tp in
            logits.withUnsafeMutableBufferPointer { lp in
                var batch: [sr_seq_batch] = []
                batch.reserveCapacity(steps.count)
                for (i, s) in steps.enumerated() {
                    batch.append(sr_seq_batch(
                        seq: Int32(s.sequence), pos: Int32(s.position), n_tok: Int32(s.tokens.count),
                        tokens: tp.baseAddress! + offsets[i],
                        logits: s.wantsLogits ? lp.baseAddress! + i * vocab : nil,
                        kernel_n: Int32(s.kernelTokens)))
                }
                return sr_engine_eval_seqs(handle, batch, Int32(batch.count))
            }
        }
        guard status == SR_OK else { throw SpikeRunError(status: status) }
        return steps.enumerated().map { i, s in
            s.wantsLogits ? Array(logits[(i * vocab)..<((i + 1) * vocab)]) : []
        }
    }

    /// Evaluates without producing logits (prompt prefix).
    func evalNoLogits(_ tokens: [Int32], at position: Int) throws(SpikeRunError) {
        let status = tokens.withUnsafeBufferPointer { tp in
            sr_engine_eval(handle, tp.baseAddress, Int32(tokens.count), Int32(position), nil, false)
        }
        guard status == SR_OK else { throw SpikeRunError(status: status) }
    }

    /// Asks a running evaluation to stop at the next layer (callable from any thread).
    func abort() { sr_engine_abort(handle) }

    var memoryBytes: Int { Int(sr_engine_memory_bytes(handle)) + (spike?.memoryBytes ?? 0) }

    /// Installs a C hook that replaces every dense linear layer (spike runtime, recording).
    func setLinearHook(_ hook: sr_linear_hook?, user: UnsafeMutableRawPointer?) {
        sr_engine_set_linear_hook(handle, hook, user)
    }

    var pool: OpaquePointer? { sr_engine_pool(handle) }
}

extension SpikeRunError {
    /// Wraps a C status with this thread's error sentence.
    init(status: sr_status) {
        let message = String(cString: sr_last_error())
        let kind: Kind
        switch status {
        case SR_ERR_INVALID_ARG: kind = .invalidArgument
        case SR_ERR_IO: kind = .io
        case SR_ERR_FORMAT: kind = .format
        case SR_ERR_UNSUPPORTED: kind = .unsupported
        case SR_ERR_NO_MEMORY: kind = .noMemory
        case SR_ERR_NO_DEVICE, SR_ERR_DEVICE, SR_ERR_TIMEOUT: kind = .noDevice
        case SR_ERR_CONTEXT_FULL: kind = .contextFull
        case SR_ERR_ABORTED: kind = .aborted
        case SR_ERR_NUMERIC: kind = .numeric
        default: kind = .invalidArgument
        }
        self.init(kind, message.isEmpty ? String(cString: sr_status_str(status)) : message)
    }
}
