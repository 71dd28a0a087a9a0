// Encoding: cut special tokens out of the text (llama.cpp's tokenizer_st_partition), then
// tokenize the text between them with the vocabulary's algorithm.

enum TextFragment {
    /// Bytes [start, end) of the input.
    case text(Int, Int)
    case token(Int32)
}

extension Vocabulary {
    func tokenize(_ bytes: [UInt8], addSpecial: Bool, parseSpecial: Bool) -> [Int32] {
        var output: [Int32] = []
        output.reserveCapacity(bytes.count / 3 + 4)
        let fragments = bytes.isEmpty ? [] : partition(bytes, parseSpecial: parseSpecial)

        switch kind {
        case .bytePairEncoding:
            if addSpecial && addBOS, let bos { output.append(bos) }
            var cache: [ByteString: [Int32]] = [:]
            var scratch = BPEScratch()
            for f in fragments {
                switch f {
                case .text(let a, let b):
                    bpeFragment(bytes[a..<b], cache: &cache, scratch: &scratch, into: &output)
                case .token(let t):
                    output.append(t)
                }
            }
            if addSpecial && addEOS, let eos { output.append(eos) }

        case .sentencePiece:
            if addSpecial && addBOS, let bos { output.append(bos) }
            var previousWasSpecial = true  // the first fragment gets the space prefix
            for f in fragments {
                switch f {
                case .text(let a, let b):
                    var text: [UInt8] = []
                    text.reserveCapacity((b - a) + 8)
                    if addSpacePrefix && previousWasSpecial { text.append(contentsOf: [0xE2, 0x96, 0x81]) }
                    for c in bytes[a..<b] {
                        if c == 0x20 { text.append(contentsOf: [0xE2, 0x96, 0x81]) } else { text.append(c) }
                    }
                    spmFragment(text, into: &output)
                    previousWasSpecial = false
                case .token(let t):
                    output.append(t)
                    previousWasSpecial = true
                }
            }
            if addSpecial && addEOS, let eos { output.append(eos) }
        }
        return output
    }

    /// Splits `bytes` at occurrences of special tokens: each special token in turn (longest
    /// first) is cut out of every remaining text fragment, left to right.
    func partition(_ bytes: [UInt8], parseSpecial: Bool) -> [TextFragment] {
        var fragments: [TextFragment] = [.text(0, bytes.count)]
        // Which bytes occur at all: skips most special tokens without a scan.
        var present = [Bool](repeating: false, count: 256)
        for b in bytes { present[Int(b)] = true }

        bytes.withUnsafeBufferPointer { text in
            for id in specialTokens {
                let attribute = attributes[Int(id)]
                if !parseSpecial && attribute & (TokenAttribute.control | TokenAttribute.unknown) != 0 {
                    continue  // user-defined tokens are still matched
                }
                let needle = tokenBytes[Int(id)]
                guard !needle.isEmpty, needle.count <= bytes.count,
                      needle.allSatisfy({ present[Int($0)] }) else { continue }

                var changed = false
                var next: [TextFragment] = []
                next.reserveCapacity(fragments.count + 4)
                for f in fragments {
                    guard case .text(var a, let b) = f else { next.append(f); continue }
                    while let m = Self.find(needle, in: text, from: a, to: b) {
                        changed = true
                        var leftEnd = m
                        if attribute & TokenAttribute.lstrip != 0 {
                            while leftEnd > a, isCSpace(text[leftEnd - 1]) { leftEnd -= 1 }
                        }
                        if leftEnd > a { next.append(.text(a, leftEnd)) }
                        next.append(.token(id))
                        a = m + needle.count
                        if attribute & TokenAttribute.rstrip != 0 {
                            while a < b, isCSpace(text[a]) { a += 1 }
                        }
                    }
                    if a < b { next.append(.text(a, b)) }
                }
                if changed { fragments = next }
            }
        }
        return fragments
    }

    private static func find(_ needle: [UInt8], in text: UnsafeBufferPointer<UInt8>,
                             from: Int, to: Int) -> Int? {
        let m = needle.count
        guard to - from >= m else { return nil }
        let first = needle[0]
        var i = from
        let last = to - m
        while i <= last {
            if text[i] == first {
                var j = 1
                while j < m && text[i + j] == needle[j] { j += 1 }
                if j == m { return i }
            }
            i += 1
        }
        return nil
    }
}

/// C `isspace` in the "C" locale.
@inline(__always) func isCSpace(_ c: UInt8) -> Bool {
    c == 0x20 || (c >= 0x09 && c <= 0x0D)
}
