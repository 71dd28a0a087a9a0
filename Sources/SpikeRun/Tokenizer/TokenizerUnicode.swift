// Unicode helpers for the tokenizer: code point classes as llama.cpp's pre-tokenizers see them,
// llama.cpp's lenient UTF-8 decoding, and the GPT-2 byte <-> printable-character mapping.

/// Code point classes used by the pre-tokenizers (one category bit plus a whitespace bit),
/// following the flag layout llama.cpp derives from UnicodeData.txt.
struct CodepointFlags: Equatable {
    var rawValue: UInt16

    static let undefined: UInt16   = 0x0001  // Cn
    static let number: UInt16      = 0x0002  // \p{N}
    static let letter: UInt16      = 0x0004  // \p{L}
    static let separator: UInt16   = 0x0008  // \p{Z}
    static let accentMark: UInt16  = 0x0010  // \p{M}
    static let punctuation: UInt16 = 0x0020  // \p{P}
    static let symbol: UInt16      = 0x0040  // \p{S}
    static let control: UInt16     = 0x0080  // \p{C}
    static let categoryMask: UInt16 = 0x00FF
    static let whitespace: UInt16  = 0x0100  // \s (the White_Space property)

    /// Flags of a position outside the current fragment: no bit set at all.
    static let outOfRange = CodepointFlags(rawValue: 0)

    @inline(__always) var isNumber: Bool { rawValue & Self.number != 0 }
    @inline(__always) var isLetter: Bool { rawValue & Self.letter != 0 }
    @inline(__always) var isAccentMark: Bool { rawValue & Self.accentMark != 0 }
    @inline(__always) var isPunctuation: Bool { rawValue & Self.punctuation != 0 }
    @inline(__always) var isSymbol: Bool { rawValue & Self.symbol != 0 }
    @inline(__always) var isWhitespace: Bool { rawValue & Self.whitespace != 0 }
    /// True for every real code point (even unassigned ones); false only for `outOfRange`.
    @inline(__always) var isAny: Bool { rawValue != 0 }
    @inline(__always) var category: UInt16 { rawValue & Self.categoryMask }

    @inline(__always) init(rawValue: UInt16) { self.rawValue = rawValue }

    /// The flags of code point `cpt`.
    @inline(__always) init(_ cpt: UInt32) {
        if cpt < 0x10000 {
            rawValue = bmpCodepointFlags[Int(cpt)]
        } else {
            rawValue = computeCodepointFlags(cpt)
        }
    }
}

/// The White_Space code points (PropList.txt).
private let whitespaceCodepoints: Set<UInt32> = [
    0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680,
    0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200A,
    0x2028, 0x2029, 0x202F, 0x205F, 0x3000,
]

/// Flags for the Basic Multilingual Plane, computed once on first use.
private let bmpCodepointFlags: [UInt16] = {
    var table = [UInt16](repeating: 0, count: 0x10000)
    for cpt in 0..<0x10000 { table[cpt] = computeCodepointFlags(UInt32(cpt)) }
    return table
}()

private func computeCodepointFlags(_ cpt: UInt32) -> UInt16 {
    guard cpt < 0x110000 else { return CodepointFlags.undefined }
    var flags: UInt16
    if let scalar = Unicode.Scalar(cpt) {
        // llama.cpp's tables are generated from Unicode 15.1: code points assigned later are
        // still "undefined" there, and must be here too.
        if let age = scalar.properties.age, age.major > 15 || (age.major == 15 && age.minor > 1) {
            flags = CodepointFlags.undefined
        } else {
            flags = generalCategoryFlags(scalar.properties.generalCategory)
        }
    } else {
        flags = CodepointFlags.control  // surrogates (Cs)
    }
    if whitespaceCodepoints.contains(cpt) { flags |= CodepointFlags.whitespace }
    return flags
}

private func generalCategoryFlags(_ category: Unicode.GeneralCategory) -> UInt16 {
    switch category {
    case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
        return CodepointFlags.letter
    case .nonspacingMark, .spacingMark, .enclosingMark:
        return CodepointFlags.accentMark
    case .decimalNumber, .letterNumber, .otherNumber:
        return CodepointFlags.number
    case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
         .initialPunctuation, .finalPunctuation, .otherPunctuation:
        return CodepointFlags.punctuation
    case .mathSymbol, .currencySymbol, .modifierSymbol, .otherSymbol:
        return CodepointFlags.symbol
    case .spaceSeparator, .lineSeparator, .paragraphSeparator:
        return CodepointFlags.separator
    case .control, .format, .surrogate, .privateUse:
        return CodepointFlags.control
    case .unassigned:
        return CodepointFlags.undefined
    @unknown default:
        return CodepointFlags.undefined
    }
}

/// Simple lowercase mapping, enough for the case-insensitive contraction matches ('S, 'LL…).
@inline(__always) func asciiLowercase(_ cpt: UInt32) -> UInt32 {
    (cpt >= 0x41 && cpt <= 0x5A) ? cpt + 0x20 : cpt
}

enum TokenizerUTF8 {
    /// Decodes UTF-8 the way llama.cpp does: structurally (no overlong or surrogate checks);
    /// a byte that cannot start a well-formed sequence becomes U+FFFD and decoding resumes at
    /// the next byte.
    static func codepoints<C: RandomAccessCollection>(_ bytes: C) -> [UInt32]
    where C.Element == UInt8, C.Index == Int {
        var out: [UInt32] = []
        out.reserveCapacity(bytes.count)
        var i = bytes.startIndex
        let end = bytes.endIndex
        while i < end {
            let b0 = UInt32(bytes[i])
            if b0 & 0x80 == 0 {
                out.append(b0); i += 1; continue
            }
            if b0 & 0x40 == 0 {
                out.append(0xFFFD); i += 1; continue
            }
            if b0 & 0x20 == 0 {
                if i + 1 < end, bytes[i + 1] & 0xC0 == 0x80 {
                    out.append((b0 & 0x1F) << 6 | UInt32(bytes[i + 1] & 0x3F)); i += 2
                } else {
                    out.append(0xFFFD); i += 1
                }
                continue
            }
            if b0 & 0x10 == 0 {
                if i + 2 < end, bytes[i + 1] & 0xC0 == 0x80, bytes[i + 2] & 0xC0 == 0x80 {
                    out.append((b0 & 0x0F) << 12 | UInt32(bytes[i + 1] & 0x3F) << 6
                               | UInt32(bytes[i + 2] & 0x3F))
                    i += 3
                } else {
                    out.append(0xFFFD); i += 1
                }
                continue
            }
            if b0 & 0x08 == 0 {
                if i + 3 < end, bytes[i + 1] & 0xC0 == 0x80, bytes[i + 2] & 0xC0 == 0x80,
                   bytes[i + 3] & 0xC0 == 0x80 {
                    out.append((b0 & 0x07) << 18 | UInt32(bytes[i + 1] & 0x3F) << 12
                               | UInt32(bytes[i + 2] & 0x3F) << 6 | UInt32(bytes[i + 3] & 0x3F))
                    i += 4
                } else {
                    out.append(0xFFFD); i += 1
                }
                continue
            }
            out.append(0xFFFD); i += 1
        }
        return out
    }

    /// Appends the UTF-8 encoding of `cpt` (values above U+10FFFF become U+FFFD).
    @inline(__always) static func append(_ cpt: UInt32, to out: inout [UInt8]) {
        switch cpt {
        case 0..<0x80:
            out.append(UInt8(cpt))
        case 0x80..<0x800:
            out.append(UInt8(0xC0 | (cpt >> 6)))
            out.append(UInt8(0x80 | (cpt & 0x3F)))
        case 0x800..<0x10000:
            out.append(UInt8(0xE0 | (cpt >> 12)))
            out.append(UInt8(0x80 | ((cpt >> 6) & 0x3F)))
            out.append(UInt8(0x80 | (cpt & 0x3F)))
        case 0x10000..<0x110000:
            out.append(UInt8(0xF0 | (cpt >> 18)))
            out.append(UInt8(0x80 | ((cpt >> 12) & 0x3F)))
            out.append(UInt8(0x80 | ((cpt >> 6) & 0x3F)))
            out.append(UInt8(0x80 | (cpt & 0x3F)))
        default:
            out.append(contentsOf: [0xEF, 0xBF, 0xBD])
        }
    }

    /// The length of the UTF-8 sequence that lead byte `b` announces (1 for continuation bytes).
    @inline(__always) static func sequenceLength(lead b: UInt8) -> Int {
        switch b >> 4 {
        case 0xC, 0xD: return 2
        case 0xE: return 3
        case 0xF: return 4
        default: return 1
        }
    }
}

/// GPT-2's reversible mapping between bytes and printable code points: printable Latin-1
/// bytes map to themselves, the other 68 bytes to U+0100, U+0101, … in byte order.
enum ByteLevelMapping {
    /// Code point for each byte.
    static let byteToCodepoint: [UInt32] = {
        var map = [UInt32](repeating: 0, count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            if (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b) {
                map[b] = UInt32(b)
            } else {
                map[b] = next
                next += 1
            }
        }
        return map
    }()

    /// UTF-8 bytes of the code point for each byte.
    static let byteToUTF8: [[UInt8]] = byteToCodepoint.map { cpt in
        var out: [UInt8] = []
        TokenizerUTF8.append(cpt, to: &out)
        return out
    }

    /// Byte for each mapped code point (index = code point < 0x144), or -1.
    static let codepointToByte: [Int16] = {
        var map = [Int16](repeating: -1, count: 0x144)
        for (b, cpt) in byteToCodepoint.enumerated() { map[Int(cpt)] = Int16(b) }
        return map
    }()
}
