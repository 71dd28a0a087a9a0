/// Text <-> token ids for a model, matching llama.cpp's tokenizer exactly.
///
/// Supports byte-level BPE vocabularies (`tokenizer.ggml.model = gpt2`) with the common
/// pre-tokenizers (`smollm`, `gpt-2`, `llama-bpe`/`llama3`, `qwen2`, `starcoder`, …) and
/// SentencePiece-style vocabularies (`tokenizer.ggml.model = llama`). Special tokens
/// (control and user-defined) are recognised in the text the way llama.cpp does.
///
/// ```swift
/// let tokenizer = try Tokenizer(gguf: try GGUFFile(path: "SmolLM2-135M-Instruct.Q4_1.gguf"))
/// let ids = tokenizer.encode("Hello world", addSpecialTokens: false)
/// let text = tokenizer.decode(ids)
/// ```
public struct Tokenizer: Sendable {
    /// The number of tokens in the vocabulary.
    public var vocabularySize: Int { vocab.tokenCount }
    /// The beginning-of-sequence token, if the vocabulary has one.
    public var bosToken: Int32? { vocab.bos }
    /// The end-of-sequence token, if the vocabulary has one.
    public var eosToken: Int32? { vocab.eos }
    /// The end-of-turn token: `tokenizer.ggml.eot_token_id`, else the first of llama.cpp's
    /// candidate texts (`<|eot_id|>`, `<|im_end|>`, `<|end|>`, …) the vocabulary has.
    public var eotToken: Int32? { vocab.eot }
    /// Whether `encode(_:addSpecialTokens: true)` starts with `bosToken`.
    public var addBOS: Bool { vocab.addBOS }
    /// Whether `encode(_:addSpecialTokens: true)` ends with `eosToken`.
    public var addEOS: Bool { vocab.addEOS }
    /// The vocabulary type (`tokenizer.ggml.model`): `gpt2` or `llama`.
    public var model: String { vocab.modelName }
    /// The pre-tokenizer name (`tokenizer.ggml.pre`; `default` when a BPE vocabulary names
    /// none), or nil for SentencePiece vocabularies.
    public var preTokenizer: String? { vocab.preName }
    /// The model's own chat template (`tokenizer.chat_template`), if it has one.
    public var chatTemplate: String? { vocab.chatTemplate }

    let vocab: Vocabulary

    /// Reads the vocabulary of a GGUF file (`tokenizer.*` keys).
    ///
    /// - Throws: `.unsupported` when `tokenizer.ggml.model` or `tokenizer.ggml.pre` names a
    ///   tokenizer this library does not implement; `.format` when the vocabulary keys are
    ///   missing or malformed.
    public init(gguf: GGUFFile) throws(SpikeRunError) {
        try self.init(configuration: Configuration(metadata: gguf.metadata))
    }

    /// Builds a tokenizer from plain arrays (what a GGUF file's `tokenizer.*` keys hold).
    public init(configuration: Configuration) throws(SpikeRunError) {
        vocab = try Vocabulary(configuration)
    }

    /// Whether `token` ends generation: EOS, EOT, `<|im_end|>`, `<|endoftext|>`, … (llama.cpp's
    /// end-of-generation set).
    public func isEndOfGeneration(_ token: Int32) -> Bool {
        vocab.endOfGeneration.contains(token)
    }

    /// All tokens that end generation, in ascending order.
    public var endOfGenerationTokens: [Int32] { vocab.endOfGeneration.sorted() }

    /// The text of `token` as stored in the vocabulary (byte-level BPE tokens show their
    /// mapped form, e.g. `Ġhello`), or nil when out of range.
    public func tokenText(_ token: Int32) -> String? {
        guard token >= 0, Int(token) < vocab.tokenCount else { return nil }
        return String(decoding: vocab.tokenBytes[Int(token)], as: UTF8.self)
    }

    /// The id of the token whose vocabulary text is exactly `text`, or nil.
    public func tokenID(_ text: String) -> Int32? {
        vocab.textToID[ByteString(text)]
    }

    /// Whether `token` is a control token (`<|im_start|>`, `<s>`, …) or the unknown token —
    /// the tokens `decode` and `pieceBytes` leave out unless `renderSpecial` is true.
    public func isControl(_ token: Int32) -> Bool {
        guard token >= 0, Int(token) < vocab.tokenCount else { return false }
        return vocab.attributes[Int(token)] & (TokenAttribute.control | TokenAttribute.unknown) != 0
    }

    /// Splits `text` into token ids, as `llama_tokenize` does.
    ///
    /// - Parameters:
    ///   - addSpecialTokens: add BOS/EOS where the vocabulary asks for them (`addBOS`, `addEOS`).
    ///   - parseSpecial: recognise control-token text such as `<|im_start|>` as that single
    ///     token; when false it is tokenized as plain text (user-defined tokens are still
    ///     recognised, as in llama.cpp).
    public func encode(_ text: String, addSpecialTokens: Bool = true, parseSpecial: Bool = true)
        -> [Int32]
    {
        encode(bytes: Array(text.utf8), addSpecialTokens: addSpecialTokens,
               parseSpecial: parseSpecial)
    }

    /// Splits UTF-8 `bytes` into token ids; invalid UTF-8 is handled as llama.cpp does
    /// (each offending byte becomes U+FFFD).
    public func encode(bytes: [UInt8], addSpecialTokens: Bool = true, parseSpecial: Bool = true)
        -> [Int32]
    {
        vocab.tokenize(bytes, addSpecial: addSpecialTokens, parseSpecial: parseSpecial)
    }

    /// Joins token pieces back into text, as `llama_detokenize` does (with `remove_special`
    /// false): control tokens are dropped unless `renderSpecial`, SentencePiece vocabularies
    /// lose the leading space of the first piece, and vocabularies that ask for it get
    /// llama.cpp's clean-up of spaces before punctuation. Invalid UTF-8 becomes U+FFFD.
    public func decode(_ tokens: [Int32], renderSpecial: Bool = false) -> String {
        String(decoding: decodeBytes(tokens, renderSpecial: renderSpecial), as: UTF8.self)
    }

    /// The raw bytes `decode` would turn into a string.
    public func decodeBytes(_ tokens: [Int32], renderSpecial: Bool = false) -> [UInt8] {
        vocab.detokenize(tokens, renderSpecial: renderSpecial)
    }

    /// The raw bytes of one token, like `llama_token_to_piece` (no leading-space stripping).
    /// Control tokens give no bytes unless `renderSpecial`; out-of-range ids give none.
    public func pieceBytes(_ token: Int32, renderSpecial: Bool = false) -> [UInt8] {
        vocab.piece(token, renderSpecial: renderSpecial)
    }
}

extension Tokenizer {
    /// The vocabulary and flags a tokenizer is built from: the values of a GGUF file's
    /// `tokenizer.*` keys, as plain arrays.
    public struct Configuration: Sendable {
        /// `tokenizer.ggml.model`: `gpt2` (byte-level BPE) or `llama` (SentencePiece).
        public var model: String
        /// `tokenizer.ggml.pre`: the pre-tokenizer of a BPE vocabulary (nil = llama.cpp's default).
        public var pre: String?
        /// `tokenizer.ggml.tokens`.
        public var tokens: [String]
        /// `tokenizer.ggml.token_type` (1 normal, 2 unknown, 3 control, 4 user-defined,
        /// 5 unused, 6 byte); nil = all normal.
        public var tokenTypes: [Int]?
        /// `tokenizer.ggml.scores` (SentencePiece merge priorities).
        public var scores: [Float]?
        /// `tokenizer.ggml.merges` (`"left right"` pairs, highest priority first).
        public var merges: [String]?
        /// Special token ids (`tokenizer.ggml.*_token_id`); nil = the model type's default.
        public var bos: Int?, eos: Int?, eot: Int?, eom: Int?, unknown: Int?, separator: Int?
        public var padding: Int?, mask: Int?
        public var fimPrefix: Int?, fimSuffix: Int?, fimMiddle: Int?
        public var fimPad: Int?, fimRepo: Int?, fimSeparator: Int?
        /// `tokenizer.ggml.add_bos_token` / `add_eos_token` / `add_space_prefix`; nil = the
        /// model type's default.
        public var addBOS: Bool?, addEOS: Bool?, addSpacePrefix: Bool?
        /// `general.name` (llama.cpp keys a few per-model token attributes on it).
        public var modelName: String?
        /// `tokenizer.chat_template`.
        public var chatTemplate: String?

        /// A configuration with the given vocabulary and every optional key absent.
        public init(model: String, pre: String? = nil, tokens: [String], tokenTypes: [Int]? = nil,
                    scores: [Float]? = nil, merges: [String]? = nil) {
            self.model = model
            self.pre = pre
            self.tokens = tokens
            self.tokenTypes = tokenTypes
            self.scores = scores
            self.merges = merges
        }

        /// Reads the `tokenizer.*` keys of GGUF metadata.
        ///
        /// - Throws: `.format` when `tokenizer.ggml.model` or `tokenizer.ggml.tokens` is
        ///   missing or has the wrong type.
        public init(metadata m: GGUFMetadata) throws(SpikeRunError) {
            guard let model = m.string("tokenizer.ggml.model") else {
                throw .format("cannot read the tokenizer: 'tokenizer.ggml.model' is missing")
            }
            guard let tokens = m.strings("tokenizer.ggml.tokens") else {
                throw .format("cannot read the tokenizer: 'tokenizer.ggml.tokens' is missing or "
                              + "is not an array of strings")
            }
            self.init(model: model, pre: m.string("tokenizer.ggml.pre"), tokens: tokens,
                      tokenTypes: m.ints("tokenizer.ggml.token_type"),
                      scores: m.floats("tokenizer.ggml.scores"),
                      merges: m.strings("tokenizer.ggml.merges"))
            if m.contains("tokenizer.ggml.merges") && merges == nil {
                throw .format("cannot read the tokenizer: 'tokenizer.ggml.merges' is not an "
                              + "array of strings")
            }
            func id(_ key: String) -> Int? { m.int("tokenizer.ggml.\(key)_token_id") }
            bos = id("bos"); eos = id("eos"); eot = id("eot"); eom = id("eom")
            unknown = id("unknown"); separator = id("seperator"); padding = id("padding")
            mask = id("mask")
            fimPrefix = id("fim_pre"); fimSuffix = id("fim_suf"); fimMiddle = id("fim_mid")
            // llama.cpp reads the deprecated keys last, so they win when both are present.
            if let v = id("prefix") { fimPrefix = v }
            if let v = id("suffix") { fimSuffix = v }
            if let v = id("middle") { fimMiddle = v }
            fimPad = id("fim_pad"); fimRepo = id("fim_rep"); fimSeparator = id("fim_sep")
            addBOS = m.bool("tokenizer.ggml.add_bos_token")
            addEOS = m.bool("tokenizer.ggml.add_eos_token")
            addSpacePrefix = m.bool("tokenizer.ggml.add_space_prefix")
            modelName = m.string("general.name")
            chatTemplate = m.string("tokenizer.chat_template")
        }
    }
}
