/// Sampling and stopping settings for one generation (llama.cpp's defaults and meanings).
public struct GenerationParameters: Sendable, Hashable, Codable {
    /// nil = until end-of-generation or a full context.
    public var maxTokens: Int? = nil
    /// <= 0 means greedy (argmax after the repetition penalty).
    public var temperature: Float = 0.8
    /// <= 0 keeps every token.
    public var topK: Int = 40
    /// 1 disables nucleus filtering.
    public var topP: Float = 0.95
    /// 0 disables; keeps tokens with p >= minP * p(max).
    public var minP: Float = 0.05
    /// 1 disables; llama.cpp's rule: positive logits divided, negative multiplied.
    public var repeatPenalty: Float = 1.0
    /// How many recent tokens the penalty looks at (0 disables, -1 = whole context).
    public var repeatLastN: Int = 64
    /// nil = random; the seed used is reported in `GenerationInfo`.
    public var seed: UInt64? = nil
    /// Generation stops before any of these strings; they are never emitted.
    public var stop: [String] = []
    /// Stop at end-of-generation tokens (EOS, <|im_end|>, …).
    public var stopAtEndOfGeneration: Bool = true

    public init(maxTokens: Int? = nil, temperature: Float = 0.8, topK: Int = 40, topP: Float = 0.95,
                minP: Float = 0.05, repeatPenalty: Float = 1.0, repeatLastN: Int = 64,
                seed: UInt64? = nil, stop: [String] = []) {
        self.maxTokens = maxTokens
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.repeatPenalty = repeatPenalty
        self.repeatLastN = repeatLastN
        self.seed = seed
        self.stop = stop
    }

    /// Greedy decoding: the same text on every run.
    public static var greedy: GenerationParameters { .init(temperature: 0) }

    func validate() throws(SpikeRunError) {
        if let m = maxTokens, m < 0 { throw .invalidArgument("max tokens must be >= 0, got \(m)") }
        guard temperature.isFinite else { throw .invalidArgument("temperature must be finite") }
        guard topP > 0, topP <= 1 else { throw .invalidArgument("top-p must be in (0, 1], got \(topP)") }
        guard minP >= 0, minP <= 1 else { throw .invalidArgument("min-p must be in [0, 1], got \(minP)") }
        guard repeatPenalty > 0, repeatPenalty.isFinite else {
            throw .invalidArgument("repeat penalty must be positive, got \(repeatPenalty)")
        }
        guard repeatLastN >= -1 else { throw .invalidArgument("repeat-last-n must be >= -1") }
        if stop.contains("") { throw .invalidArgument("stop strings must not be empty") }
    }
}

/// What to generate from.
public enum Prompt: Sendable, Hashable {
    /// Plain text; special-token text like `<|im_start|>` is parsed as special tokens.
    case text(String)
    /// Chat messages rendered with the model's own chat template, ending with the assistant turn.
    case chat([ChatMessage])
    /// Token ids as they are.
    case tokens([Int32])
}

/// Why a generation ended.
public enum StopReason: Sendable, Hashable, Codable {
    case endOfGeneration
    case stopSequence(String)
    case length
    case contextFull
    case cancelled

    public var name: String {
        switch self {
        case .endOfGeneration: "eog"
        case .stopSequence: "stop"
        case .length: "length"
        case .contextFull: "context_full"
        case .cancelled: "cancelled"
        }
    }
}

/// Final statistics of one generation.
public struct GenerationInfo: Sendable, Hashable {
    public var promptTokens: Int
    /// Prompt tokens actually evaluated (the rest were reused from the KV cache).
    public var promptTokensEvaluated: Int
    public var generatedTokens: Int
    public var promptSeconds: Double
    public var generationSeconds: Double
    public var stopReason: StopReason
    public var seed: UInt64
    /// Ids of the generated tokens, in order.
    public var tokens: [Int32]

    public var promptTokensPerSecond: Double {
        promptSeconds > 0 ? Double(promptTokensEvaluated) / promptSeconds : 0
    }
    /// Decode speed: tokens after the first (whose time is part of prompt processing) per second.
    public var generationTokensPerSecond: Double {
        generationSeconds > 0 ? Double(max(generatedTokens - 1, 0)) / generationSeconds : 0
    }
}

/// One event of a generation stream.
public enum GenerationEvent: Sendable {
    /// Newly decoded text: whole UTF-8 characters, never part of a stop string.
    case text(String)
    /// The end of the stream: statistics.
    case info(GenerationInfo)
}
