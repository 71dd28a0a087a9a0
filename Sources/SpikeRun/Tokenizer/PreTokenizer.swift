// Pre-tokenization for byte-level BPE: split text into words before merging.
//
// llama.cpp describes each pre-tokenizer as a list of regular expressions applied in turn;
// each one re-splits every fragment the previous ones produced. The common expressions are
// hand-written state machines there (with their own reading of \s, \p{L}, (?!\S) …), the
// rest run through std::regex on a text where every non-ASCII code point is collapsed to one
// byte per Unicode category. Each step below reproduces one of those expressions with the
// same semantics, as a scan over code points.

/// One splitting pass of a pre-tokenizer.
enum SplitStep: Sendable, Equatable {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)` (GPT-2).
    case gpt2
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,N}| ?[^\s\p{L}\p{N}]+[\r\n]*
    /// |\s*[\r\n]+|\s+(?!\S)|\s+` — Llama 3 (digit groups of 3) and Qwen2 (single digits);
    /// `marks` makes letter runs also take \p{M} (Qwen3.5).
    case llama3(maxDigits: Int, marks: Bool)
    /// `\p{N}`: every number code point on its own.
    case isolateNumbers
    /// `\p{N}+`: runs of number code points.
    case numberRuns
    /// `[\p{P}\$\+<=>\^~\|]+`: runs of punctuation and those ASCII symbols.
    case punctuationRuns
    /// `[0-9][0-9][0-9]`: groups of three ASCII digits, left to right.
    case asciiDigitTriples
}

enum PreTokenizer {
    /// Splits `cpts` into words. `steps` are applied in order; returns word lengths in code
    /// points (summing to `cpts.count`).
    static func split(_ cpts: [UInt32], steps: [SplitStep]) -> [Int] {
        var offsets = cpts.isEmpty ? [] : [cpts.count]
        cpts.withUnsafeBufferPointer { buf in
            for step in steps {
                var out: [Int] = []
                out.reserveCapacity(offsets.count * 2 + 8)
                var start = 0
                for length in offsets {
                    let end = start + length
                    switch step {
                    case .gpt2:
                        splitGPT2(buf, start, end, &out)
                    case .llama3(let maxDigits, let marks):
                        splitLlama3(buf, start, end, maxDigits: maxDigits, marks: marks, &out)
                    case .isolateNumbers:
                        splitClassRuns(buf, start, end, minCount: 1, maxCount: 1, &out,
                                       isCollapsedNumber)
                    case .numberRuns:
                        splitClassRuns(buf, start, end, minCount: 1, maxCount: Int.max, &out,
                                       isCollapsedNumber)
                    case .punctuationRuns:
                        splitClassRuns(buf, start, end, minCount: 1, maxCount: Int.max, &out,
                                       isPunctuationRunMember)
                    case .asciiDigitTriples:
                        splitClassRuns(buf, start, end, minCount: 3, maxCount: 3, &out) {
                            $0 >= 0x30 && $0 <= 0x39
                        }
                    }
                    start = end
                }
                offsets = out
            }
        }
        return offsets
    }

    // MARK: - Regex-engine steps (llama.cpp runs these through std::regex on collapsed text)

    /// `\p{N}` in a collapsed text: an ASCII digit, or a non-ASCII, non-whitespace number.
    private static func isCollapsedNumber(_ c: UInt32) -> Bool {
        if c < 0x80 { return c >= 0x30 && c <= 0x39 }
        let f = CodepointFlags(c)
        return !f.isWhitespace && f.category == CodepointFlags.number
    }

    /// `[\p{P}\$\+<=>\^~\|]` in a collapsed text.
    private static func isPunctuationRunMember(_ c: UInt32) -> Bool {
        if c < 0x80 {
            switch UInt8(c) {
            case UInt8(ascii: "!")...UInt8(ascii: "#"), UInt8(ascii: "%")...UInt8(ascii: "*"),
                 UInt8(ascii: ",")...UInt8(ascii: "/"), UInt8(ascii: ":"), UInt8(ascii: ";"),
                 UInt8(ascii: "?"), UInt8(ascii: "@"), UInt8(ascii: "[")...UInt8(ascii: "]"),
                 UInt8(ascii: "_"), UInt8(ascii: "{"), UInt8(ascii: "}"),
                 UInt8(ascii: "$"), UInt8(ascii: "+"), UInt8(ascii: "<")...UInt8(ascii: ">"),
                 UInt8(ascii: "^"), UInt8(ascii: "~"), UInt8(ascii: "|"):
                return true
            default:
                return false
            }
        }
        let f = CodepointFlags(c)
        return !f.isWhitespace && f.category == CodepointFlags.punctuation
    }

    /// Finds, left to right, runs of `member` code points `minCount...maxCount` long (longest
    /// first); matches and the gaps between them each become a word.
    private static func splitClassRuns(
        _ c: UnsafeBufferPointer<UInt32>, _ start: Int, _ end: Int, minCount: Int, maxCount: Int,
        _ out: inout [Int], _ member: (UInt32) -> Bool
    ) {
        var gapStart = start
        var pos = start
        while pos < end {
            var run = 0
            while pos + run < end, run < maxCount, member(c[pos + run]) { run += 1 }
            if run >= minCount {
                if pos > gapStart { out.append(pos - gapStart) }
                out.append(run)
                pos += run
                gapStart = pos
            } else {
                pos += 1
            }
        }
        if end > gapStart { out.append(end - gapStart) }
    }

    // MARK: - Hand-written steps

    /// GPT-2's expression. Positions outside [start, end) read as "no code point".
    private static func splitGPT2(
        _ c: UnsafeBufferPointer<UInt32>, _ start: Int, _ end: Int, _ out: inout [Int]
    ) {
        @inline(__always) func cpt(_ p: Int) -> UInt32 { p < end ? c[p] : 0xFFFF_FFFF }
        @inline(__always) func flags(_ p: Int) -> CodepointFlags {
            p < end ? CodepointFlags(c[p]) : .outOfRange
        }
        var tokenStart = start
        @inline(__always) func emit(_ p: Int) {
            if p > tokenStart { out.append(p - tokenStart) }
            tokenStart = p
        }
        var pos = start
        while pos < end {
            let ch = c[pos]
            let f = flags(pos)

            // 's 't 're 've 'm 'll 'd (lowercase only)
            if ch == 0x27, pos + 1 < end {
                let n1 = c[pos + 1]
                if n1 == 0x73 || n1 == 0x74 || n1 == 0x6D || n1 == 0x64 {  // s t m d
                    pos += 2; emit(pos); continue
                }
                if pos + 2 < end {
                    let n2 = c[pos + 2]
                    if (n1 == 0x72 && n2 == 0x65) || (n1 == 0x76 && n2 == 0x65)
                        || (n1 == 0x6C && n2 == 0x6C) {  // re ve ll
                        pos += 3; emit(pos); continue
                    }
                }
            }

            let spaced = ch == 0x20
            var f2 = spaced ? flags(pos + 1) : f
            // ' ?\p{L}+'
            if f2.isLetter {
                if spaced { pos += 1 }
                while f2.isLetter { pos += 1; f2 = flags(pos) }
                emit(pos); continue
            }
            // ' ?\p{N}+'
            if f2.isNumber {
                if spaced { pos += 1 }
                while f2.isNumber { pos += 1; f2 = flags(pos) }
                emit(pos); continue
            }
            // ' ?[^\s\p{L}\p{N}]+'
            if !(f2.isWhitespace || f2.isLetter || f2.isNumber) && f2.isAny {
                if spaced { pos += 1 }
                while !(f2.isWhitespace || f2.isLetter || f2.isNumber) && f2.isAny {
                    pos += 1; f2 = flags(pos)
                }
                emit(pos); continue
            }

            var spaces = 0
            while flags(pos + spaces).isWhitespace { spaces += 1 }
            // '\s+(?!\S)': leave the last whitespace to prefix the next word
            if spaces > 1 && cpt(pos + spaces) != 0xFFFF_FFFF {
                pos += spaces - 1; emit(pos); continue
            }
            // '\s+'
            if spaces > 0 {
                pos += spaces; emit(pos); continue
            }
            pos += 1; emit(pos)
        }
    }

    /// Llama 3 / Qwen2 / Qwen3.5 expression.
    private static func splitLlama3(
        _ c: UnsafeBufferPointer<UInt32>, _ start: Int, _ end: Int, maxDigits: Int, marks: Bool,
        _ out: inout [Int]
    ) {
        @inline(__always) func cpt(_ p: Int) -> UInt32 { p < end ? c[p] : 0xFFFF_FFFF }
        @inline(__always) func flags(_ p: Int) -> CodepointFlags {
            p < end ? CodepointFlags(c[p]) : .outOfRange
        }
        @inline(__always) func isWordChar(_ f: CodepointFlags) -> Bool {
            f.isLetter || (marks && f.isAccentMark)
        }
        var tokenStart = start
        @inline(__always) func emit(_ p: Int) {
            if p > tokenStart { out.append(p - tokenStart) }
            tokenStart = p
        }
        var pos = start
        while pos < end {
            let ch = c[pos]
            let f = flags(pos)

            // (?i:'s|'t|'re|'ve|'m|'ll|'d)
            if ch == 0x27, pos + 1 < end {
                let n1 = asciiLowercase(c[pos + 1])
                if n1 == 0x73 || n1 == 0x74 || n1 == 0x6D || n1 == 0x64 {
                    pos += 2; emit(pos); continue
                }
                if pos + 2 < end {
                    let n2 = asciiLowercase(c[pos + 2])
                    if (n1 == 0x72 && n2 == 0x65) || (n1 == 0x76 && n2 == 0x65)
                        || (n1 == 0x6C && n2 == 0x6C) {
                        pos += 3; emit(pos); continue
                    }
                }
            }

            // [^\r\n\p{L}\p{N}]?\p{L}+
            if !(ch == 0x0D || ch == 0x0A || f.isNumber) {
                if isWordChar(f) || isWordChar(flags(pos + 1)) {
                    pos += 1
                    while isWordChar(flags(pos)) { pos += 1 }
                    emit(pos); continue
                }
            }

            // \p{N}{1,maxDigits}
            if f.isNumber {
                var groupStart = pos
                while flags(pos).isNumber {
                    pos += 1
                    if pos - groupStart >= maxDigits { emit(pos); groupStart = pos }
                }
                emit(pos); continue
            }

            // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
            var f2 = ch == 0x20 ? flags(pos + 1) : f
            if !(f2.isWhitespace || isWordChar(f2) || f2.isNumber) && f.isAny {
                if ch == 0x20 { pos += 1 }
                while !(f2.isWhitespace || isWordChar(f2) || f2.isNumber) && f2.isAny {
                    pos += 1; f2 = flags(pos)
                }
                var c2 = cpt(pos)
                while c2 == 0x0D || c2 == 0x0A { pos += 1; c2 = cpt(pos) }
                emit(pos); continue
            }

            var spaces = 0
            var lastLineEnd = 0
            while flags(pos + spaces).isWhitespace {
                let c2 = cpt(pos + spaces)
                if c2 == 0x0D || c2 == 0x0A { lastLineEnd = pos + spaces + 1 }
                spaces += 1
            }
            // \s*[\r\n]+
            if lastLineEnd > 0 {
                pos = lastLineEnd; emit(pos); continue
            }
            // \s+(?!\S)
            if spaces > 1 && cpt(pos + spaces) != 0xFFFF_FFFF {
                pos += spaces - 1; emit(pos); continue
            }
            // \s+
            if spaces > 0 {
                pos += spaces; emit(pos); continue
            }
            pos += 1; emit(pos)
        }
    }
}
