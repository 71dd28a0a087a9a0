/// A ggml tensor element type, with the numeric ids GGUF files store.
///
/// Every id llama.cpp currently defines is named here, so that an error about a type spikerun
/// cannot compute with still says which type it is ("IQ2_XXS"), not just a number. Ids that
/// ggml has removed (4, 5, 31–33, 36–38) are absent: their block layouts are unknown, so files
/// using them are rejected as unsupported.
public enum GGMLType: UInt32, Sendable, CaseIterable {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9
    case q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15
    case iq2_xxs = 16, iq2_xs = 17, iq3_xxs = 18, iq1_s = 19, iq4_nl = 20, iq3_s = 21
    case iq2_s = 22, iq4_xs = 23
    case i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28
    case iq1_m = 29, bf16 = 30
    case tq1_0 = 34, tq2_0 = 35, mxfp4 = 39, nvfp4 = 40, q1_0 = 41, q2_0 = 42

    /// The types spikerun can load and compute with.
    public static let supported: [GGMLType] = [
        .f32, .f16, .bf16, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K,
        .i8, .i16, .i32,
    ]

    /// The name llama.cpp prints for this type, e.g. `"Q4_1"` or `"IQ2_XXS"`.
    public var name: String {
        switch self {
        case .f32: "F32"
        case .f16: "F16"
        case .q4_0: "Q4_0"
        case .q4_1: "Q4_1"
        case .q5_0: "Q5_0"
        case .q5_1: "Q5_1"
        case .q8_0: "Q8_0"
        case .q8_1: "Q8_1"
        case .q2_K: "Q2_K"
        case .q3_K: "Q3_K"
        case .q4_K: "Q4_K"
        case .q5_K: "Q5_K"
        case .q6_K: "Q6_K"
        case .q8_K: "Q8_K"
        case .iq2_xxs: "IQ2_XXS"
        case .iq2_xs: "IQ2_XS"
        case .iq3_xxs: "IQ3_XXS"
        case .iq1_s: "IQ1_S"
        case .iq4_nl: "IQ4_NL"
        case .iq3_s: "IQ3_S"
        case .iq2_s: "IQ2_S"
        case .iq4_xs: "IQ4_XS"
        case .i8: "I8"
        case .i16: "I16"
        case .i32: "I32"
        case .i64: "I64"
        case .f64: "F64"
        case .iq1_m: "IQ1_M"
        case .bf16: "BF16"
        case .tq1_0: "TQ1_0"
        case .tq2_0: "TQ2_0"
        case .mxfp4: "MXFP4"
        case .nvfp4: "NVFP4"
        case .q1_0: "Q1_0"
        case .q2_0: "Q2_0"
        }
    }

    /// Elements per quantization block (1 for plain scalar types).
    public var blockSize: Int { layout.elements }

    /// Bytes one block occupies in the file.
    public var blockBytes: Int { layout.bytes }

    /// Whether spikerun can load tensors of this type.
    public var isSupported: Bool { GGMLType.supported.contains(self) }

    /// Sizes match ggml's `type_traits` (block_* structs in ggml-common.h).
    private var layout: (elements: Int, bytes: Int) {
        switch self {
        case .f32: (1, 4)
        case .f16: (1, 2)
        case .q4_0: (32, 18)
        case .q4_1: (32, 20)
        case .q5_0: (32, 22)
        case .q5_1: (32, 24)
        case .q8_0: (32, 34)
        case .q8_1: (32, 40)
        case .q2_K: (256, 84)
        case .q3_K: (256, 110)
        case .q4_K: (256, 144)
        case .q5_K: (256, 176)
        case .q6_K: (256, 210)
        case .q8_K: (256, 292)
        case .iq2_xxs: (256, 66)
        case .iq2_xs: (256, 74)
        case .iq3_xxs: (256, 98)
        case .iq1_s: (256, 50)
        case .iq4_nl: (32, 18)
        case .iq3_s: (256, 110)
        case .iq2_s: (256, 82)
        case .iq4_xs: (256, 136)
        case .i8: (1, 1)
        case .i16: (1, 2)
        case .i32: (1, 4)
        case .i64: (1, 8)
        case .f64: (1, 8)
        case .iq1_m: (256, 56)
        case .bf16: (1, 2)
        case .tq1_0: (256, 54)
        case .tq2_0: (256, 66)
        case .mxfp4: (32, 17)
        case .nvfp4: (64, 36)
        case .q1_0: (128, 18)
        case .q2_0: (64, 18)
        }
    }

    /// A readable description of a raw type id, for error messages about ids without a case.
    static func describe(id: UInt32) -> String {
        if let t = GGMLType(rawValue: id) { return t.name }
        switch id {
        case 4: return "type id 4 (Q4_2, removed from ggml)"
        case 5: return "type id 5 (Q4_3, removed from ggml)"
        case 31: return "type id 31 (Q4_0_4_4, removed from GGUF)"
        case 32: return "type id 32 (Q4_0_4_8, removed from GGUF)"
        case 33: return "type id 33 (Q4_0_8_8, removed from GGUF)"
        case 36: return "type id 36 (IQ4_NL_4_4, removed from GGUF)"
        case 37: return "type id 37 (IQ4_NL_4_8, removed from GGUF)"
        case 38: return "type id 38 (IQ4_NL_8_8, removed from GGUF)"
        default: return "unknown type id \(id)"
        }
    }

    /// Bytes needed for `elements` values, or nil when the count is not a whole number of
    /// blocks or the size does not fit in an `Int`.
    public func byteCount(elements: Int) -> Int? {
        guard elements >= 0, elements % blockSize == 0 else { return nil }
        let (bytes, overflow) = (elements / blockSize).multipliedReportingOverflow(by: blockBytes)
        return overflow ? nil : bytes
    }
}

extension GGMLType: CustomStringConvertible {
    public var description: String { name }
}
