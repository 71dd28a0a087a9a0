// Decoding: token pieces (llama_token_to_piece), whole sequences (llama_detokenize), and a
// streaming detokenizer that never emits half a UTF-8 character.

extension Vocabulary {
    /// `llama_token_to_piece(token, lstrip: 0, special: renderSpecial)`.
    func piece(_ token: Int32, renderSpecial: Bool) -> [UInt8] {
        guard token >= 0, Int(token) < tokenCount else { return [] }
        if !renderSpecial && attributes[Int(token)] & (TokenAttribute.unknown | TokenAttribute.control) != 0 {
            return []
        }
        return pieces[Int(token)]
    }

    /// `llama_detokenize(tokens, remove_special: false, unparse_special: renderSpecial)`.
    func detokenize(_ tokens: [Int32], renderSpecial: Bool) -> [UInt8] {
        var text: [UInt8] = []
        text.reserveCapacity(tokens.count * 4)
        var removeSpace = addSpacePrefix
        for t in tokens {
            let p = piece(t, renderSpecial: renderSpecial)
            if removeSpace, let first = p.first, first == 0x20 {
                text.append(contentsOf: p.dropFirst())
            } else {
                text.append(contentsOf: p)
            }
            removeSpace = false
        }
        if cleanSpaces { text = Self.cleanUpSpaces(text) }
        return text
    }

    /// llama.cpp's `clean_up_tokenization_spaces`: drop the space in " ?", " !", " .", " ,",
    /// around a lone " ' ", and before "'s", "'m", "'re", "'ve".
    static func cleanUpSpaces(_ input: [UInt8]) -> [UInt8] {
        var text = input
        let space = UInt8(ascii: " "), quote = UInt8(ascii: "'")
        // 1: " ?", " !", " .", " ,"
        var n = text.count
        var total = n > 0 ? 1 : 0
        var i = 1
        while i < n {
            let x = text[i]
            if text[i - 1] == space && (x == UInt8(ascii: "?") || x == UInt8(ascii: "!")
                                        || x == UInt8(ascii: ".") || x == UInt8(ascii: ",")) {
                total -= 1
            }
            text[total] = x; total += 1
            i += 1
        }
        // 2: " ' " -> "'"
        n = total
        total = n > 0 ? 1 : 0
        i = 1
        while i < n {
            let x = text[i]
            if x == quote && i + 1 < n && text[i - 1] == space && text[i + 1] == space {
                total -= 1
                i += 1
                text[i] = 0
            }
            text[total] = x; total += 1
            i += 1
        }
        // 3: " 's", " 'm", " 're", " 've"
        n = total
        total = n > 0 ? 1 : 0
        i = 1
        while i < n {
            let x = text[i]
            if text[i - 1] == space && x == quote && i + 1 < n {
                let x1 = text[i + 1]
                if x1 == UInt8(ascii: "s") || x1 == UInt8(ascii: "m") {
                    total -= 1
                } else if x1 != UInt8(ascii: "t") && x1 != UInt8(ascii: "d") && i + 2 < n {
                    let x2 = text[i + 2]
                    if (x1 == UInt8(ascii: "r") && x2 == UInt8(ascii: "e"))
                        || (x1 == UInt8(ascii: "v") && x2 == UInt8(ascii: "e")) {
                        total -= 1
                    }
                }
            }
            text[total] = x; total += 1
            i += 1
        }
        text.removeSubrange(total...)
        return text
    }
}

/// Turns a stream of tokens into text without ever splitting a UTF-8 character: bytes of a
/// character that continues in the next token are held back until it is complete.
///
/// ```swift
/// var detok = StreamingDetokenizer(tokenizer: tokenizer)
/// for t in tokens { print(detok.append(t), terminator: "") }
/// print(detok.flush())
/// ```
public struct StreamingDetokenizer: Sendable {
    private let tokenizer: Tokenizer
    private let renderSpecial: Bool
    private var pending: [UInt8] = []

    /// A detokenizer for `tokenizer`'s tokens; control tokens are left out unless
    /// `renderSpecial`.
    public init(tokenizer: Tokenizer, renderSpecial: Bool = false) {
        self.tokenizer = tokenizer
        self.renderSpecial = renderSpecial
    }

    /// Adds one token and returns the text that is now complete (possibly empty). Invalid
    /// bytes that cannot start or continue a character come out as U+FFFD.
    public mutating func append(_ token: Int32) -> String {
        pending.append(contentsOf: tokenizer.pieceBytes(token, renderSpecial: renderSpecial))
        let keep = Self.incompleteSuffixLength(pending)
        if keep == pending.count { return "" }
        let ready = pending[..<(pending.count - keep)]
        let text = String(decoding: ready, as: UTF8.self)
        pending.removeFirst(pending.count - keep)
        return text
    }

    /// Returns whatever is held back (an incomplete character becomes U+FFFD) and resets.
    public mutating func flush() -> String {
        defer { pending.removeAll() }
        return pending.isEmpty ? "" : String(decoding: pending, as: UTF8.self)
    }

    /// The length of the trailing bytes that form the start of a character that is not yet
    /// complete but could still become valid (0 if the buffer ends on a boundary).
    static func incompleteSuffixLength(_ b: [UInt8]) -> Int {
        let n = b.count
        // A character is at most 4 bytes: look at the last 3 for its lead byte.
        var k = 1
        while k <= min(3, n) {
            let c = b[n - k]
            if c & 0xC0 == 0x80 { k += 1; continue }  // continuation byte: keep looking
            let need: Int
            switch c {
            case 0xC2...0xDF: need = 2
            case 0xE0...0xEF: need = 3
            case 0xF0...0xF4: need = 4
            default: return 0  // ASCII or an invalid lead: nothing to wait for
            }
            guard need > k else { return 0 }  // complete (or over-long: invalid anyway)
            // The continuation bytes seen so far must be valid for this lead.
            if k >= 2 {
                let c1 = b[n - k + 1]
                switch c {
                case 0xE0: if c1 < 0xA0 { return 0 }
                case 0xED: if c1 > 0x9F { return 0 }
                case 0xF0: if c1 < 0x90 { return 0 }
                case 0xF4: if c1 > 0x8F { return 0 }
                default: break
                }
            }
            return k
        }
        return 0
    }
}
