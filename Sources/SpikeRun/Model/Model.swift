import CSpikeRun
import Logging

/// How dense linear layers treat their input activations.
public enum ActivationMode: String, Sendable, Hashable, CaseIterable, Codable {
    /// 8-bit activation blocks per weight type, as llama.cpp's CPU backend computes (default).
    case q8
    /// Exact float32 activations against dequantized weights: the numerical reference.
    case f32
}

/// Where a spike-driven model's linear layers run.
public enum Backend: Sendable, Hashable {
    /// The C kernels on this CPU (NUMA-aware thread pool).
    case cpu
    /// The VCK190 spike accumulation kernel through XRT, loaded from this xclbin; encoding,
    /// attention and the float parts stay on the CPU.
    case fpga(xclbin: String)
    /// The same host path with the device emulated in process: the C-simulation build of the
    /// HLS kernel (`make -C firmware emu` writes firmware/build/spk_acc.emu.so) runs where the
    /// VCK190 would, without XRT. Outputs equal the CPU spike path's bit for bit.
    case fpgaEmulator(kernel: String)

    public var name: String {
        switch self {
        case .cpu: "cpu"
        case .fpga: "fpga"
        case .fpgaEmulator: "fpga-emu"
        }
    }
}

/// Options fixed when a model is loaded.
public struct ModelOptions: Sendable, Hashable {
    /// Worker threads for the kernels; nil = one per online CPU.
    public var threads: Int? = nil
    /// Dense activation path.
    public var activationMode: ActivationMode = .q8
    /// Where spike-driven linear layers run.
    public var backend: Backend = .cpu
    public init(threads: Int? = nil, activationMode: ActivationMode = .q8, backend: Backend = .cpu) {
        self.threads = threads
        self.activationMode = activationMode
        self.backend = backend
    }
}

/// What a loaded model is: architecture, sizes and storage, for `spikerun info` and reports.
public struct ModelInfo: Sendable, Hashable, Codable {
    public var path: String
    public var name: String?
    public var config: ModelConfig
    /// Parameter count over all tensors.
    public var parameterCount: Int
    /// Bytes of tensor data in the file.
    public var weightBytes: Int
    /// Tensor count per ggml type name ("Q4_1": 210, …).
    public var tensorTypes: [String: Int]
    /// Whether the file is a spike-converted model (`spike.` metadata present).
    public var isSpikeModel: Bool
}

/// A loaded model: memory-mapped weights, configuration and tokenizer. Immutable after loading
/// and safe to share; sessions hold the per-sequence state.
public final class Model: Sendable {
    public let file: GGUFFile
    public let config: ModelConfig
    public let tokenizer: Tokenizer
    public let info: ModelInfo
    public let options: ModelOptions
    /// Spike settings of a converted model (nil for a dense model); sessions run it spike-driven.
    public let spike: SpikeSetup?

    /// Loads a GGUF model of the Llama family (`llama`, `qwen2`).
    public static func load(_ path: String, options: ModelOptions = .init()) throws(SpikeRunError) -> Model {
        let file = try openFile(path)
        do throws(SpikeRunError) {
            return try Model(file: file, options: options)
        } catch {
            throw error.kind == .format || error.kind == .unsupported
                ? SpikeRunError(error.kind, "cannot load '\(path)': \(error.message)") : error
        }
    }

    /// Maps a GGUF file; format errors name the file ("cannot load 'x.gguf': …").
    public static func openFile(_ path: String) throws(SpikeRunError) -> GGUFFile {
        do throws(SpikeRunError) {
            return try GGUFFile(path: path)
        } catch {
            throw error.kind == .io ? error : SpikeRunError(error.kind, "cannot load '\(path)': \(error.message)")
        }
    }

    public init(file: GGUFFile, options: ModelOptions = .init()) throws(SpikeRunError) {
        let config = try ModelConfig(gguf: file)
        self.file = file
        self.config = config
        self.tokenizer = try Tokenizer(gguf: file)
        self.options = options
        if let cfg = try SpikeConfig.read(from: file, nLayer: config.nLayer) {
            var vScales: [Float]?
            if let t = file.tensor("spike.v_scale") {
                guard t.type == .f32, t.elementCount == config.nLayer * config.nHeadKV * config.headDim else {
                    throw .format("tensor 'spike.v_scale' must be F32 with n_layer * n_head_kv * head_dim values")
                }
                vScales = Array(file.data(t).bindMemory(to: Float.self))
            }
            self.spike = SpikeSetup(config: cfg, vScales: vScales)
        } else {
            self.spike = nil
        }
        var types: [String: Int] = [:]
        var params = 0
        var bytes = 0
        for t in file.tensors {
            types[t.type.name, default: 0] += 1
            params += t.elementCount
            bytes += t.byteCount
        }
        self.info = ModelInfo(
            path: file.path ?? "<memory>", name: file.metadata.string("general.name"), config: config,
            parameterCount: params, weightBytes: bytes, tensorTypes: types,
            isSpikeModel: spike != nil)
    }

    /// A tensor's values as float32 (dequantized like ggml).
    public func dequantize(_ t: GGUFTensorInfo) throws(SpikeRunError) -> [Float] {
        guard sr_type_supported(Int32(t.type.rawValue)) else {
            throw .unsupported("tensor '\(t.name)' has type \(t.type.name), which cannot be dequantized")
        }
        var out = [Float](repeating: 0, count: t.elementCount)
        let src = file.data(t)
        let rowBytes = t.rowBytes
        out.withUnsafeMutableBufferPointer { dst in
            for r in 0..<t.rowCount {
                sr_dequantize_row(sr_type(rawValue: t.type.rawValue), src.baseAddress! + r * rowBytes,
                                  dst.baseAddress! + r * t.rowLength, Int64(t.rowLength))
            }
        }
        return out
    }

    /// The dense weights as the C engine sees them: borrowed pointers into the mapped file.
    func engineWeights() throws(SpikeRunError) -> (sr_engine_weights, [sr_block_weights]) {
        func tensor(_ name: String) throws(SpikeRunError) -> GGUFTensorInfo {
            guard let t = file.tensor(name) else { throw .format("tensor '\(name)' is missing") }
            return t
        }
        func floats(_ name: String) throws(SpikeRunError) -> UnsafePointer<Float> {
            let t = try tensor(name)
            guard t.type == .f32 else { throw .unsupported("tensor '\(name)' must be F32, found \(t.type.name)") }
            return file.data(t).baseAddress!.assumingMemoryBound(to: Float.self)
        }
        func linear(_ name: String) throws(SpikeRunError) -> sr_linear {
            let t = try tensor(name)
            return sr_linear(w: file.data(t).baseAddress, type: Int32(t.type.rawValue),
                             n_in: Int32(t.rowLength), n_out: Int32(t.rowCount))
        }
        var blocks: [sr_block_weights] = []
        for l in 0..<config.nLayer {
            let p = "blk.\(l)."
            blocks.append(sr_block_weights(
                attn_norm: try floats(p + "attn_norm.weight"),
                q: try linear(p + "attn_q.weight"), k: try linear(p + "attn_k.weight"),
                v: try linear(p + "attn_v.weight"), o: try linear(p + "attn_output.weight"),
                ffn_norm: try floats(p + "ffn_norm.weight"),
                gate: try linear(p + "ffn_gate.weight"), up: try linear(p + "ffn_up.weight"),
                down: try linear(p + "ffn_down.weight"),
                q_bias: config.hasQKVBias ? try floats(p + "attn_q.bias") : nil,
                k_bias: config.hasQKVBias ? try floats(p + "attn_k.bias") : nil,
                v_bias: config.hasQKVBias ? try floats(p + "attn_v.bias") : nil))
        }
        let embd = try tensor("token_embd.weight")
        let head = config.tiedOutput ? try linear("token_embd.weight") : try linear("output.weight")
        let weights = sr_engine_weights(
            tok_embd: file.data(embd).baseAddress, tok_embd_type: Int32(embd.type.rawValue),
            output_norm: try floats("output_norm.weight"), output: head, blocks: nil)
        return (weights, blocks)
    }
}
