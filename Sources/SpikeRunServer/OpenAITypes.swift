// The OpenAI objects the server reads and writes, one Codable type per object, named as the
// API names them. Unknown request fields are ignored; a field of the wrong type is a 400 that
// names the field's path (see APIError.decoding).

/// `stop`: one string or a list of strings.
public enum StopField: Decodable, Sendable {
    case one(String)
    case many([String])

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) { self = .one(s); return }
        self = .many(try c.decode([String].self))
    }

    var strings: [String] {
        switch self {
        case .one(let s): [s]
        case .many(let a): a
        }
    }
}

/// Sampling fields shared by chat and text completions (OpenAI's names, plus llama-server's
/// `top_k`, `min_p`, `repeat_penalty`, `repeat_last_n`, `ignore_eos`).
public struct SamplingFields: Decodable, Sendable {
    public var max_tokens: Int?
    public var max_completion_tokens: Int?
    public var temperature: Double?
    public var top_p: Double?
    public var top_k: Int?
    public var min_p: Double?
    public var seed: Int64?
    public var stop: StopField?
    public var presence_penalty: Double?
    public var frequency_penalty: Double?
    public var repeat_penalty: Double?
    public var repeat_last_n: Int?
    /// llama-server's: go on past the end-of-generation token (to max_tokens).
    public var ignore_eos: Bool?
    public var n: Int?
    public var logprobs: Bool?
    public var stream: Bool?
    public var stream_options: StreamOptions?
}

public struct StreamOptions: Decodable, Sendable {
    public var include_usage: Bool?
}

/// A message's `content`: a string, or a list of parts of which only `text` parts are supported.
public enum MessageContent: Decodable, Sendable {
    case text(String)
    case parts([ContentPart])

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .text(""); return }
        if let s = try? c.decode(String.self) { self = .text(s); return }
        self = .parts(try c.decode([ContentPart].self))
    }
}

public struct ContentPart: Decodable, Sendable {
    public var type: String
    public var text: String?
}

public struct ChatCompletionMessageParam: Decodable, Sendable {
    public var role: String
    public var content: MessageContent?
}

/// POST /v1/chat/completions
public struct ChatCompletionRequest: Decodable, Sendable {
    public var model: String?
    public var messages: [ChatCompletionMessageParam]
    public var sampling: SamplingFields

    enum CodingKeys: String, CodingKey { case model, messages }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decodeIfPresent(String.self, forKey: .model)
        messages = try c.decode([ChatCompletionMessageParam].self, forKey: .messages)
        sampling = try SamplingFields(from: decoder)
    }
}

/// `prompt` of a text completion: a string, a list of one string, or token ids.
public enum PromptField: Decodable, Sendable {
    case text(String)
    case texts([String])
    case tokens([Int32])

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) { self = .text(s); return }
        if let t = try? c.decode([Int32].self) { self = .tokens(t); return }
        self = .texts(try c.decode([String].self))
    }
}

/// POST /v1/completions
public struct CompletionRequest: Decodable, Sendable {
    public var model: String?
    public var prompt: PromptField
    public var echo: Bool?
    public var suffix: String?
    public var best_of: Int?
    public var sampling: SamplingFields

    enum CodingKeys: String, CodingKey { case model, prompt, echo, suffix, best_of }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decodeIfPresent(String.self, forKey: .model)
        prompt = try c.decode(PromptField.self, forKey: .prompt)
        echo = try c.decodeIfPresent(Bool.self, forKey: .echo)
        suffix = try c.decodeIfPresent(String.self, forKey: .suffix)
        best_of = try c.decodeIfPresent(Int.self, forKey: .best_of)
        sampling = try SamplingFields(from: decoder)
    }
}

public struct CompletionUsage: Codable, Sendable {
    public var prompt_tokens: Int
    public var completion_tokens: Int
    public var total_tokens: Int
}

public struct ChatCompletionMessage: Codable, Sendable {
    public var role: String
    public var content: String
}

public struct ChatCompletion: Encodable, Sendable {
    public struct Choice: Encodable, Sendable {
        public var index: Int
        public var message: ChatCompletionMessage
        public var finish_reason: String
        public var logprobs: Bool? = nil
    }
    public var id: String
    public var object = "chat.completion"
    public var created: Int
    public var model: String
    public var system_fingerprint: String
    public var choices: [Choice]
    public var usage: CompletionUsage
}

public struct ChatCompletionChunk: Encodable, Sendable {
    public struct Delta: Encodable, Sendable {
        public var role: String?
        public var content: String?
    }
    public struct Choice: Encodable, Sendable {
        public var index: Int
        public var delta: Delta
        public var finish_reason: String?
        public var logprobs: Bool? = nil

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(index, forKey: .index)
            try c.encode(delta, forKey: .delta)
            try c.encode(finish_reason, forKey: .finish_reason)   // null until the last chunk
            try c.encodeNil(forKey: .logprobs)
        }
        enum CodingKeys: String, CodingKey { case index, delta, finish_reason, logprobs }
    }
    public var id: String
    public var object = "chat.completion.chunk"
    public var created: Int
    public var model: String
    public var system_fingerprint: String
    public var choices: [Choice]
    public var usage: CompletionUsage?
}

/// A text completion, whole or one streamed chunk (the API uses the same object for both).
public struct Completion: Encodable, Sendable {
    public struct Choice: Encodable, Sendable {
        public var index: Int
        public var text: String
        public var finish_reason: String?
        public var logprobs: Bool? = nil

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(index, forKey: .index)
            try c.encode(text, forKey: .text)
            try c.encode(finish_reason, forKey: .finish_reason)
            try c.encodeNil(forKey: .logprobs)
        }
        enum CodingKeys: String, CodingKey { case index, text, finish_reason, logprobs }
    }
    public var id: String
    public var object = "text_completion"
    public var created: Int
    public var model: String
    public var system_fingerprint: String
    public var choices: [Choice]
    public var usage: CompletionUsage?
}

public struct ModelObject: Encodable, Sendable {
    public var id: String
    public var object = "model"
    public var created: Int
    public var owned_by: String
}

public struct ModelList: Encodable, Sendable {
    public var object = "list"
    public var data: [ModelObject]
}

/// POST /tokenize (llama-server's shape).
public struct TokenizeRequest: Decodable, Sendable {
    public var content: String
    public var add_special: Bool?
    public var parse_special: Bool?
}

public struct TokenizeResponse: Encodable, Sendable {
    public var tokens: [Int32]
}

/// POST /detokenize
public struct DetokenizeRequest: Decodable, Sendable {
    public var tokens: [Int32]
}

public struct DetokenizeResponse: Encodable, Sendable {
    public var content: String
}

public struct HealthResponse: Encodable, Sendable {
    public var status: String
}

/// `{"error": {"message", "type", "code"}}`
public struct ErrorResponse: Encodable, Sendable {
    public struct Body: Encodable, Sendable {
        public var message: String
        public var type: String
        public var code: String?
        public var param: String?

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(message, forKey: .message)
            try c.encode(type, forKey: .type)
            try c.encode(code, forKey: .code)
            try c.encode(param, forKey: .param)
        }
        enum CodingKeys: String, CodingKey { case message, type, code, param }
    }
    public var error: Body
}
