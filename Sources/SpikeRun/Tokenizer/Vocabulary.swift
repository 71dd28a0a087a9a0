// The vocabulary behind `Tokenizer`: token texts and attributes, special ids, the
// end-of-generation set, and the flags llama.cpp derives from the model and pre-tokenizer
// names (llama-vocab.cpp, `llama_vocab::impl::load`).

/// Bytes as a dictionary key: compared byte for byte (Swift `String` keys would merge
/// canonically equivalent texts) and hashed with one FNV-1a pass.
struct ByteString: Hashable, Sendable {
    let bytes: ArraySlice<UInt8>

    @inline(__always) init(_ bytes: ArraySlice<UInt8>) { self.bytes = bytes }
    @inline(__always) init(_ bytes: [UInt8]) { self.bytes = bytes[...] }
    init(_ text: String) { self.bytes = Array(text.utf8)[...] }

    @inline(__always) static func == (a: ByteString, b: ByteString) -> Bool {
        guard a.bytes.count == b.bytes.count else { return false }
        return a.bytes.withUnsafeBufferPointer { x in
            b.bytes.withUnsafeBufferPointer { y in
                x.count == 0 || memcmpBytes(x.baseAddress!, y.baseAddress!, x.count)
            }
        }
    }

    @inline(__always) func hash(into hasher: inout Hasher) {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        bytes.withUnsafeBufferPointer { p in
            for b in p { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        }
        hasher.combine(h)
    }
}

@inline(__always) private func memcmpBytes(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> Bool {
    for i in 0..<n where a[i] != b[i] { return false }
    return true
}

/// Token attributes, with llama.cpp's bit values (`llama_token_attr`).
enum TokenAttribute {
    static let undefined: UInt16   = 0
    static let unknown: UInt16     = 1 << 0
    static let unused: UInt16      = 1 << 1
    static let normal: UInt16      = 1 << 2
    static let control: UInt16     = 1 << 3
    static let userDefined: UInt16 = 1 << 4
    static let byte: UInt16        = 1 << 5
    static let lstrip: UInt16      = 1 << 7
    static let rstrip: UInt16      = 1 << 8

    /// The attribute of a GGUF token type (`tokenizer.ggml.token_type`).
    static func fromTokenType(_ type: Int) -> UInt16 {
        switch type {
        case 1: return normal
        case 2: return unknown
        case 3: return control
        case 4: return userDefined
        case 5: return unused
        case 6: return byte
        default: return undefined
        }
    }
}

struct Vocabulary: Sendable {
    enum Kind: Sendable { case bytePairEncoding, sentencePiece }

    let kind: Kind
    let modelName: String
    let preName: String?
    let tokenCount: Int
    /// Token texts as stored (byte-level BPE texts use the GPT-2 printable mapping).
    let tokenBytes: [[UInt8]]
    var attributes: [UInt16]
    let scores: [Float]
    /// Token text -> id.
    let textToID: [ByteString: Int32]
    /// Each token's bytes as llama.cpp's piece cache holds them (special = true).
    let pieces: [[UInt8]]
    /// Control, user-defined and unknown tokens, longest text first: the order in which they
    /// are cut out of the text before tokenization.
    let specialTokens: [Int32]
    let endOfGeneration: Set<Int32>

    let bos: Int32?, eos: Int32?, eot: Int32?, eom: Int32?, unk: Int32?
    let addBOS: Bool, addEOS: Bool
    let addSpacePrefix: Bool
    let cleanSpaces: Bool
    let ignoreMerges: Bool
    let splitSteps: [SplitStep]
    let merges: BPEMerges?
    let chatTemplate: String?

    init(_ config: Tokenizer.Configuration) throws(SpikeRunError) {
        modelName = config.model
        chatTemplate = config.chatTemplate
        let n = config.tokens.count
        guard n > 0 else { throw .format("cannot read the tokenizer: the vocabulary is empty") }
        guard n < Int(Int32.max) else { throw .format("cannot read the tokenizer: too many tokens") }
        tokenCount = n

        // Defaults of the vocabulary type.
        var bos: Int32?, eos: Int32?, unk: Int32?
        var addSpacePrefix = false, cleanSpaces = false, addBOS = false, addEOS = false
        var ignoreMerges = false
        var steps: [SplitStep] = []
        switch config.model {
        case "gpt2":
            kind = .bytePairEncoding
            bos = 11; eos = 11; unk = nil
            cleanSpaces = true
            let pre = config.pre ?? ""
            guard let p = Self.preTokenizer(named: pre) else {
                throw .unsupported(
                    "tokenizer.ggml.pre '\(pre)' is not supported (supported: "
                    + Self.supportedPreTokenizers.joined(separator: ", ") + ")")
            }
            steps = p.steps
            if let v = p.cleanSpaces { cleanSpaces = v }
            if p.ignoreMerges { ignoreMerges = true }
            if p.addBOS { addBOS = true }
            preName = pre.isEmpty ? "default" : pre
        case "llama":
            kind = .sentencePiece
            bos = 1; eos = 2; unk = 0
            addSpacePrefix = true
            addBOS = true
            preName = nil
        default:
            throw .unsupported(
                "tokenizer.ggml.model '\(config.model)' is not supported (supported: gpt2, llama)")
        }
        if let v = config.addSpacePrefix { addSpacePrefix = v }

        // Tokens and attributes.
        var tokenBytes: [[UInt8]] = []
        tokenBytes.reserveCapacity(n)
        var textToID: [ByteString: Int32] = [:]
        textToID.reserveCapacity(n)
        var attributes = [UInt16](repeating: TokenAttribute.normal, count: n)
        if let types = config.tokenTypes {
            guard types.count >= n else {
                throw .format("cannot read the tokenizer: \(types.count) token types for \(n) tokens")
            }
            for i in 0..<n { attributes[i] = TokenAttribute.fromTokenType(types[i]) }
        }
        for (i, text) in config.tokens.enumerated() {
            var bytes = Array(text.utf8)
            if bytes.isEmpty { bytes = Array("[EMPTY_\(i)]".utf8) }
            textToID[ByteString(bytes)] = Int32(i)
            tokenBytes.append(bytes)
        }
        if let s = config.scores, s.count < n {
            throw .format("cannot read the tokenizer: \(s.count) scores for \(n) tokens")
        }
        scores = config.scores.map { Array($0.prefix(n)) } ?? [Float](repeating: 0, count: n)

        // Special ids: a key that names an out-of-range id keeps the default.
        func resolve(_ value: Int?, default def: Int32?) -> Int32? {
            var id = def
            if let d = def, d >= 0, Int(d) >= n { id = nil }
            if let v = value, v >= 0, v < n { id = Int32(v) }
            return id
        }
        bos = resolve(config.bos, default: bos)
        eos = resolve(config.eos, default: eos)
        unk = resolve(config.unknown, default: unk)
        var eot = resolve(config.eot, default: nil)
        var eom = resolve(config.eom, default: nil)
        var fimPrefix = resolve(config.fimPrefix, default: nil)
        var fimSuffix = resolve(config.fimSuffix, default: nil)
        var fimMiddle = resolve(config.fimMiddle, default: nil)
        var fimPad = resolve(config.fimPad, default: nil)
        var fimRepo = resolve(config.fimRepo, default: nil)
        var fimSep = resolve(config.fimSeparator, default: nil)
        if let v = config.addBOS { addBOS = v }
        if let v = config.addEOS { addEOS = v }

        // llama.cpp recognises some special tokens by their text and forces them to CONTROL.
        // It takes the first candidate in hash-map order; we take the first in its candidate
        // list (the same token whenever the vocabulary has only one candidate, and e.g.
        // <|im_end|> rather than <|endoftext|> as EOT of a ChatML model).
        func detect(_ id: inout Int32?, _ texts: [String]) {
            guard id == nil else { return }
            for t in texts {
                if let found = textToID[ByteString(t)] {
                    id = found
                    attributes[Int(found)] |= TokenAttribute.control
                    return
                }
            }
        }
        detect(&eot, ["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                      "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>",
                      "<end_of_utterance>"])
        detect(&eom, ["<|eom_id|>"])
        detect(&fimPrefix, ["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>",
                            "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>"])
        detect(&fimSuffix, ["<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>",
                            "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>"])
        detect(&fimMiddle, ["<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>",
                            "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>"])
        detect(&fimPad, ["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"])
        detect(&fimRepo, ["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"])
        detect(&fimSep, ["<|file_sep|>"])

        // Control tokens whose text says "unused".
        for i in 0..<n where attributes[i] & TokenAttribute.control != 0 {
            if tokenBytes[i].containsSubsequence(Array("unused".utf8)) {
                attributes[i] |= TokenAttribute.unused
            }
        }

        // End-of-generation set.
        var eog = Set<Int32>()
        for id in [fimPad, fimRepo, fimSep] { if let id { eog.insert(id) } }
        let eogTexts: Set<String> = [
            "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>",
            "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>",
            "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>",
            "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[",
        ]
        for t in eogTexts {
            if let id = textToID[ByteString(t)] {
                eog.insert(id)
                attributes[Int(id)] |= TokenAttribute.control
            }
        }
        for t in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let id = textToID[ByteString(t)] {
                attributes[Int(id)] = TokenAttribute.userDefined
            }
        }
        for id in [eos, eot, eom] { if let id { eog.insert(id) } }
        func text(_ id: Int32) -> String { String(decoding: tokenBytes[Int(id)], as: UTF8.self) }
        // gpt-oss / solar-open: <|end|> is not end-of-generation when <|return|>/<|call|> exist.
        do {
            var hasReturn = false, hasCall = false, hasFlush = false
            var endID: Int32?
            for id in eog {
                switch text(id) {
                case "<|return|>": hasReturn = true
                case "<|call|>", "<|calls|>": hasCall = true
                case "<|flush|>": hasFlush = true
                case "<|end|>": endID = id
                default: break
                }
            }
            if let endID, (hasReturn && hasCall) || (hasCall && hasFlush) {
                eog.remove(endID)
                attributes[Int(endID)] = TokenAttribute.userDefined
            }
        }
        // gemma4 / plamo: </s> is a normal token there.
        do {
            var hasMarker = false
            var sID: Int32?
            for id in eog {
                switch text(id) {
                case "<|tool_response>", "<|plamo:eos|>": hasMarker = true
                case "</s>": sID = id
                default: break
                }
            }
            if let sID, hasMarker {
                eog.remove(sID)
                attributes[Int(sID)] = TokenAttribute.normal
            }
        }

        // Special tokens cache: longest first (ties by id).
        let specialMask: UInt16 = TokenAttribute.control | TokenAttribute.userDefined | TokenAttribute.unknown
        var specialIDs: [Int] = []
        for i in 0..<n where attributes[i] & specialMask != 0 { specialIDs.append(i) }
        specialIDs.sort { (a: Int, b: Int) -> Bool in
            let la = tokenBytes[a].count, lb = tokenBytes[b].count
            return la != lb ? la > lb : a < b
        }
        let special: [Int32] = specialIDs.map { Int32($0) }

        self.tokenBytes = tokenBytes
        self.textToID = textToID
        self.bos = bos; self.eos = eos; self.eot = eot; self.eom = eom; self.unk = unk
        self.addBOS = addBOS; self.addEOS = addEOS
        self.addSpacePrefix = addSpacePrefix
        self.cleanSpaces = cleanSpaces
        self.ignoreMerges = ignoreMerges
        self.splitSteps = steps
        self.specialTokens = special
        self.endOfGeneration = eog
        self.attributes = attributes

        // Piece cache (built before the per-model strip attributes, as in llama.cpp).
        var pieces: [[UInt8]] = []
        pieces.reserveCapacity(n)
        for i in 0..<n {
            pieces.append(Self.makePiece(kind: kind, text: tokenBytes[i], attribute: attributes[i]))
        }
        self.pieces = pieces

        if kind == .bytePairEncoding {
            guard let mergeList = config.merges else {
                throw .format("cannot read the tokenizer: 'tokenizer.ggml.merges' is missing")
            }
            self.merges = BPEMerges(merges: mergeList, textToID: textToID, tokenCount: n)
        } else {
            self.merges = nil
        }

        // Per-model strip attributes.
        let lowerName = (config.modelName ?? "").lowercased()
        func setAttribute(_ t: String, _ a: UInt16, _ on: Bool) {
            guard let id = textToID[ByteString(t)] else { return }
            if on { attributes[Int(id)] |= a } else { attributes[Int(id)] &= ~a }
        }
        if ["jina-v2-de", "jina-v2-es", "jina-v2-code"].contains(where: { (config.pre ?? "").contains($0) }) {
            setAttribute("<mask>", TokenAttribute.lstrip, true)
        } else if lowerName.contains("phi-3") || lowerName.contains("phi3") {
            for id in special { attributes[Int(id)] |= TokenAttribute.rstrip }
            setAttribute("</s>", TokenAttribute.rstrip, true)
            for t in ["<unk>", "<s>", "<|endoftext|>"] { setAttribute(t, TokenAttribute.rstrip, false) }
        } else if lowerName.contains("modern-bert") {
            setAttribute("[MASK]", TokenAttribute.lstrip, true)
        }
        self.attributes = attributes
    }

    // MARK: - Pre-tokenizer table

    struct PreTokenizerInfo: Sendable {
        var steps: [SplitStep]
        var cleanSpaces: Bool? = nil
        var ignoreMerges = false
        var addBOS = false
    }

    /// llama.cpp's pre-tokenizer names that spikerun implements, with their settings.
    static let preTokenizers: [(names: [String], info: PreTokenizerInfo)] = {
        let gpt2: [SplitStep] = [.gpt2]
        let starcoder: [SplitStep] = [.isolateNumbers, .gpt2]
        let llama3: [SplitStep] = [.llama3(maxDigits: 3, marks: false)]
        let qwen2: [SplitStep] = [.llama3(maxDigits: 1, marks: false)]
        return [
            (["default"], .init(steps: [.punctuationRuns, .gpt2, .numberRuns, .asciiDigitTriples])),
            (["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
              "jina-v5-nano"], .init(steps: llama3, ignoreMerges: true, addBOS: true)),
            (["dbrx", "smaug-bpe"], .init(steps: llama3)),
            (["falcon"], .init(steps: [.punctuationRuns, .gpt2, .asciiDigitTriples])),
            (["gpt-2", "mpt", "olmo", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es",
              "jina-v2-de", "a.x-4.0", "mellum", "modern-bert", "exaone4", "jina-v1-en",
              "jina-v2-code", "roberta-bpe"], .init(steps: gpt2)),
            (["jais", "trillion", "granite-docling"], .init(steps: gpt2, cleanSpaces: false)),
            (["starcoder", "refact", "codeshell", "exaone", "minerva-7b", "mellum2"], .init(steps: starcoder)),
            (["smollm", "command-r"], .init(steps: starcoder, cleanSpaces: false)),
            (["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "hunyuan", "solar-open", "grok-2"],
             .init(steps: qwen2, cleanSpaces: false)),
            (["stablelm2", "megrez"], .init(steps: qwen2)),
            (["qwen35"], .init(steps: [.llama3(maxDigits: 1, marks: true)], cleanSpaces: false)),
        ]
    }()

    static var supportedPreTokenizers: [String] { preTokenizers.flatMap(\.names) }

    /// The settings of pre-tokenizer `name` ("" = llama.cpp's default), or nil if unsupported.
    static func preTokenizer(named name: String) -> PreTokenizerInfo? {
        let key = name.isEmpty ? "default" : name
        return preTokenizers.first { $0.names.contains(key) }?.info
    }

    // MARK: - Pieces

    /// `llama_token_to_piece` with special = true, lstrip = 0.
    static func makePiece(kind: Kind, text: [UInt8], attribute: UInt16) -> [UInt8] {
        let special: UInt16 = TokenAttribute.unknown | TokenAttribute.control | TokenAttribute.userDefined
        if attribute & special != 0 {
            return text
        }
        if attribute & TokenAttribute.normal != 0 {
            switch kind {
            case .sentencePiece:
                return text.replacingLowerOneEighthBlock()
            case .bytePairEncoding:
                return decodeByteLevel(text)
            }
        }
        if attribute & TokenAttribute.byte != 0 {
            // "<0xAB>"
            guard text.count >= 5, let hi = hexValue(text[3]), let lo = hexValue(text[4]) else {
                return [0]
            }
            return [hi << 4 | lo]
        }
        return []
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// Maps a byte-level token text back to raw bytes; a code point outside the mapping is
    /// spelled out as llama.cpp does (`[UNK_BYTE_0x…]`).
    static func decodeByteLevel(_ text: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(text.count)
        for cpt in TokenizerUTF8.codepoints(text) {
            if cpt < 0x144, ByteLevelMapping.codepointToByte[Int(cpt)] >= 0 {
                out.append(UInt8(ByteLevelMapping.codepointToByte[Int(cpt)]))
            } else {
                var utf8: [UInt8] = []
                TokenizerUTF8.append(cpt, to: &utf8)
                out.append(contentsOf: Array("[UNK_BYTE_0x".utf8))
                for b in utf8 {
                    let hex = Array("0123456789abcdef".utf8)
                    out.append(hex[Int(b >> 4)]); out.append(hex[Int(b & 15)])
                }
                out.append(contentsOf: text)
                out.append(UInt8(ascii: "]"))
            }
        }
        return out
    }
}

extension Array where Element == UInt8 {
    /// Replaces U+2581 (SentencePiece's space marker) with a space.
    func replacingLowerOneEighthBlock() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        var i = 0
        while i < count {
            if i + 2 < count, self[i] == 0xE2, self[i + 1] == 0x96, self[i + 2] == 0x81 {
                out.append(0x20); i += 3
            } else {
                out.append(self[i]); i += 1
            }
        }
        return out
    }

    func containsSubsequence(_ needle: [UInt8]) -> Bool {
        guard needle.count <= count else { return false }
        if needle.isEmpty { return true }
        for i in 0...(count - needle.count) where self[i] == needle[0] {
            if self[i..<(i + needle.count)].elementsEqual(needle) { return true }
        }
        return false
    }
}
