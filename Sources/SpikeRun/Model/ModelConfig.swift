/// Which dimensions RoPE rotates together (ggml's rope types).
public enum RopeType: String, Sendable, Hashable, Codable {
    /// Adjacent pairs (2i, 2i+1): llama (GGML_ROPE_TYPE_NORMAL).
    case norm
    /// Pairs (i, i + rope_dim/2): qwen2 (GGML_ROPE_TYPE_NEOX).
    case neox
}

/// Hyperparameters of a Llama-family model (architectures `llama` and `qwen2`), read from GGUF
/// metadata and checked against the tensors the graph will use.
///
/// `init(gguf:)` validates everything the engine relies on — so the C side can trust sizes
/// and pointers — and names the offending key or tensor when something is wrong.
public struct ModelConfig: Sendable, Hashable, Codable {
    /// `general.architecture`: one of `ModelConfig.supportedArchitectures`. Keys below are
    /// named for llama; a qwen2 file has the same keys under `qwen2.`.
    public var architecture: String
    /// Transformer blocks (`llama.block_count`).
    public var nLayer: Int
    /// Embedding width (`llama.embedding_length`).
    public var nEmbd: Int
    /// Feed-forward hidden width (`llama.feed_forward_length`).
    public var nFF: Int
    /// Query heads (`llama.attention.head_count`).
    public var nHead: Int
    /// Key/value heads (`llama.attention.head_count_kv`, default `nHead`); divides `nHead`.
    public var nHeadKV: Int
    /// Dimensions per head (`llama.attention.key_length`, default `nEmbd / nHead`).
    public var headDim: Int
    /// Vocabulary size: rows of `token_embd.weight`.
    public var nVocab: Int
    /// Training context length (`llama.context_length`).
    public var contextLength: Int
    /// RoPE base frequency (`llama.rope.freq_base`, default 10000).
    public var ropeFreqBase: Float
    /// Rotated dimensions per head (`llama.rope.dimension_count`, default `headDim`).
    public var ropeDimensionCount: Int
    /// RMSNorm epsilon (`llama.attention.layer_norm_rms_epsilon`).
    public var rmsNormEps: Float
    /// True when there is no `output.weight` and the output projection reuses `token_embd.weight`.
    public var tiedOutput: Bool
    /// RoPE pairing: `.norm` for llama, `.neox` for qwen2 (llama.cpp's rope type per architecture).
    public var ropeType: RopeType
    /// True when every block has F32 `attn_q.bias`, `attn_k.bias`, `attn_v.bias` (always for
    /// qwen2; a llama file may have them too, as llama.cpp's llama graph allows).
    public var hasQKVBias: Bool

    /// The architectures the graph computes: llama, and qwen2 (q/k/v biases, NEOX RoPE).
    public static let supportedArchitectures = ["llama", "qwen2"]

    /// Memberwise initializer (no validation; for tests and synthetic models).
    public init(architecture: String = "llama", nLayer: Int, nEmbd: Int, nFF: Int, nHead: Int,
                nHeadKV: Int, headDim: Int, nVocab: Int, contextLength: Int, ropeFreqBase: Float,
                ropeDimensionCount: Int, rmsNormEps: Float, tiedOutput: Bool,
                ropeType: RopeType = .norm, hasQKVBias: Bool = false) {
        self.architecture = architecture
        self.nLayer = nLayer
        self.nEmbd = nEmbd
        self.nFF = nFF
        self.nHead = nHead
        self.nHeadKV = nHeadKV
        self.headDim = headDim
        self.nVocab = nVocab
        self.contextLength = contextLength
        self.ropeFreqBase = ropeFreqBase
        self.ropeDimensionCount = ropeDimensionCount
        self.rmsNormEps = rmsNormEps
        self.tiedOutput = tiedOutput
        self.ropeType = ropeType
        self.hasQKVBias = hasQKVBias
    }

    /// Reads and validates the configuration of a Llama-family GGUF. Throws `.unsupported` for
    /// another architecture or features the graph lacks, and `.format` for missing or
    /// inconsistent keys and tensors.
    public init(gguf: GGUFFile) throws(SpikeRunError) {
        let meta = gguf.metadata
        guard let arch = meta.string("general.architecture") else {
            throw .format("metadata key 'general.architecture' is missing or not a string")
        }
        guard Self.supportedArchitectures.contains(arch) else {
            throw .unsupported("model architecture \(ggufQuoted(arch)) is not supported (supported: "
                + Self.supportedArchitectures.map { "'\($0)'" }.joined(separator: ", ") + ")")
        }
        // llama.cpp's graph for each: qwen2 = llama + q/k/v biases + NEOX RoPE (build_qwen2)
        let isQwen2 = arch == "qwen2"
        let keys = Keys(meta: meta, prefix: arch)

        // Features the plain Llama graph does not implement.
        if let experts = try keys.optionalInt("expert_count", in: 0...1_000_000), experts > 0 {
            throw .unsupported("mixture-of-experts models are not supported ('\(arch).expert_count' = \(experts))")
        }
        if let scaling = meta.string("\(arch).rope.scaling.type"), scaling != "none" {
            throw .unsupported("RoPE scaling \(ggufQuoted(scaling)) is not supported ('\(arch).rope.scaling.type')")
        }

        let nLayer = try keys.int("block_count", in: 1...4096)
        let nEmbd = try keys.int("embedding_length", in: 1...(1 << 20))
        let nFF = try keys.int("feed_forward_length", in: 1...(1 << 22))
        let nHead = try keys.int("attention.head_count", in: 1...nEmbd)
        let nHeadKV = try keys.optionalInt("attention.head_count_kv", in: 1...nHead) ?? nHead
        guard nHead % nHeadKV == 0 else {
            throw .format("'\(arch).attention.head_count' (\(nHead)) is not a multiple of "
                + "'\(arch).attention.head_count_kv' (\(nHeadKV))")
        }
        let headDim: Int
        if let k = try keys.optionalInt("attention.key_length", in: 1...(1 << 16)) {
            let v = try keys.optionalInt("attention.value_length", in: 1...(1 << 16)) ?? k
            guard v == k else {
                throw .unsupported("key length \(k) differs from value length \(v) "
                    + "('\(arch).attention.key_length' / 'value_length')")
            }
            headDim = k
        } else {
            guard nEmbd % nHead == 0 else {
                throw .format("'\(arch).embedding_length' (\(nEmbd)) is not a multiple of "
                    + "'\(arch).attention.head_count' (\(nHead))")
            }
            headDim = nEmbd / nHead
        }
        let contextLength = try keys.int("context_length", in: 1...(1 << 24))
        let ropeDim = try keys.optionalInt("rope.dimension_count", in: 1...headDim) ?? headDim
        guard ropeDim % 2 == 0 else {
            throw .format("'\(arch).rope.dimension_count' (\(ropeDim)) must be even")
        }
        let ropeBase = try keys.optionalDouble("rope.freq_base", in: 1...1e12) ?? 10_000
        let eps = try keys.double("attention.layer_norm_rms_epsilon", in: 1e-12...0.1)

        // Tensors: shapes are in ggml order (row length first).
        let q = nHead * headDim, kv = nHeadKV * headDim
        guard let embd = gguf.tensor("token_embd.weight") else {
            throw .format("tensor 'token_embd.weight' is missing")
        }
        let nVocab = embd.shape.count >= 2 ? embd.shape[1] : 0
        guard (1...(1 << 24)).contains(nVocab) else {
            throw .format("tensor 'token_embd.weight' has shape \(embd.shape), expected [\(nEmbd), n_vocab]")
        }
        if let declared = try keys.optionalInt("vocab_size", in: 1...(1 << 24)), declared != nVocab {
            throw .format("'\(arch).vocab_size' is \(declared) but tensor 'token_embd.weight' has \(nVocab) rows")
        }
        var required: [(String, [Int], Bool)] = [  // name, shape, must be F32
            ("token_embd.weight", [nEmbd, nVocab], false),
            ("output_norm.weight", [nEmbd], true),
        ]
        let tied = gguf.tensor("output.weight") == nil
        // q/k/v biases: qwen2 always has them; llama.cpp adds them to llama too when present
        // (then all three are required here, so a half-converted file is an error, not ignored)
        let hasBias = isQwen2 || gguf.tensor("blk.0.attn_q.bias") != nil
            || gguf.tensor("blk.0.attn_k.bias") != nil || gguf.tensor("blk.0.attn_v.bias") != nil
        if !tied { required.append(("output.weight", [nEmbd, nVocab], false)) }
        for l in 0..<nLayer {
            let p = "blk.\(l)."
            required += [
                (p + "attn_norm.weight", [nEmbd], true),
                (p + "attn_q.weight", [nEmbd, q], false),
                (p + "attn_k.weight", [nEmbd, kv], false),
                (p + "attn_v.weight", [nEmbd, kv], false),
                (p + "attn_output.weight", [q, nEmbd], false),
                (p + "ffn_norm.weight", [nEmbd], true),
                (p + "ffn_gate.weight", [nEmbd, nFF], false),
                (p + "ffn_up.weight", [nEmbd, nFF], false),
                (p + "ffn_down.weight", [nFF, nEmbd], false),
            ]
            if hasBias {
                required += [
                    (p + "attn_q.bias", [q], true),
                    (p + "attn_k.bias", [kv], true),
                    (p + "attn_v.bias", [kv], true),
                ]
            }
            // biases llama.cpp would add but this graph does not: refuse rather than ignore them
            for name in ["attn_output.bias", "ffn_gate.bias", "ffn_up.bias", "ffn_down.bias"]
            where gguf.tensor(p + name) != nil {
                throw .unsupported("tensor '\(p + name)' (a bias) is not supported")
            }
        }
        if gguf.tensor("output.bias") != nil {
            throw .unsupported("tensor 'output.bias' (a bias) is not supported")
        }
        for (name, shape, mustBeF32) in required {
            guard let t = gguf.tensor(name) else { throw .format("tensor '\(name)' is missing") }
            guard Self.trimmed(t.shape) == shape else {
                throw .format("tensor '\(name)' has shape \(t.shape), expected \(shape)")
            }
            if mustBeF32 {
                guard t.type == .f32 else {
                    throw .unsupported("tensor '\(name)' has type \(t.type.name); norm weights must be F32 (biases too)")
                }
            } else {
                guard t.type.isSupported else {
                    throw .unsupported("tensor '\(name)' has type \(t.type.name), which spikerun cannot "
                        + "compute with (supported: \(GGMLType.supported.map(\.name).joined(separator: ", ")))")
                }
            }
        }
        if gguf.tensor("blk.\(nLayer).attn_q.weight") != nil {
            throw .format("tensor 'blk.\(nLayer).attn_q.weight' exists but '\(arch).block_count' is \(nLayer)")
        }

        self.init(architecture: arch, nLayer: nLayer, nEmbd: nEmbd, nFF: nFF, nHead: nHead,
                  nHeadKV: nHeadKV, headDim: headDim, nVocab: nVocab, contextLength: contextLength,
                  ropeFreqBase: Float(ropeBase), ropeDimensionCount: ropeDim, rmsNormEps: Float(eps),
                  tiedOutput: tied, ropeType: isQwen2 ? .neox : .norm, hasQKVBias: hasBias)
    }

    /// Drops trailing 1s so `[576, 1]` compares equal to `[576]`, as ggml treats them.
    private static func trimmed(_ shape: [Int]) -> [Int] {
        var s = shape
        while s.count > 1 && s.last == 1 { s.removeLast() }
        return s
    }
}

/// Typed, range-checked access to `<arch>.*` metadata keys with messages naming the key.
private struct Keys {
    let meta: GGUFMetadata
    let prefix: String

    func optionalInt(_ suffix: String, in range: ClosedRange<Int>) throws(SpikeRunError) -> Int? {
        let key = "\(prefix).\(suffix)"
        guard let v = meta[key] else { return nil }
        guard let i = v.intValue else {
            if case .array = v {
                throw .unsupported("metadata key '\(key)' has per-layer values (\(v.typeName)), which are not supported")
            }
            throw .format("metadata key '\(key)' must be an integer, found \(v.typeName)")
        }
        guard range.contains(i) else {
            throw .format("metadata key '\(key)' = \(i) is out of range \(range.lowerBound)...\(range.upperBound)")
        }
        return i
    }

    func int(_ suffix: String, in range: ClosedRange<Int>) throws(SpikeRunError) -> Int {
        guard let i = try optionalInt(suffix, in: range) else {
            throw .format("metadata key '\(prefix).\(suffix)' is missing")
        }
        return i
    }

    func optionalDouble(_ suffix: String, in range: ClosedRange<Double>) throws(SpikeRunError) -> Double? {
        let key = "\(prefix).\(suffix)"
        guard let v = meta[key] else { return nil }
        guard let d = v.doubleValue else {
            throw .format("metadata key '\(key)' must be a number, found \(v.typeName)")
        }
        guard range.contains(d) else {  // also rejects NaN
            throw .format("metadata key '\(key)' = \(d) is out of range \(range.lowerBound)...\(range.upperBound)")
        }
        return d
    }

    func double(_ suffix: String, in range: ClosedRange<Double>) throws(SpikeRunError) -> Double {
        guard let d = try optionalDouble(suffix, in: range) else {
            throw .format("metadata key '\(prefix).\(suffix)' is missing")
        }
        return d
    }
}
