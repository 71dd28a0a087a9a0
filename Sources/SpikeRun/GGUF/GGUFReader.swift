/// A bounds-checked little-endian cursor over the bytes of a GGUF file.
///
/// Every read checks the remaining length first and throws a `.format` error naming what was
/// being read, so a truncated or hostile file can never read past the end.
struct GGUFReader {
    let bytes: UnsafeRawBufferPointer
    private(set) var position = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    var remaining: Int { bytes.count - position }

    /// Throws unless `n` more bytes are available for `what`.
    func need(_ n: Int, for what: @autoclosure () -> String) throws(SpikeRunError) {
        guard n >= 0, n <= remaining else {
            throw .format("file is truncated: \(what()) needs \(n) bytes at offset \(position) "
                + "but the file has \(bytes.count) bytes")
        }
    }

    mutating func skip(to offset: Int, for what: @autoclosure () -> String) throws(SpikeRunError) {
        try need(offset - position, for: what())
        position = offset
    }

    private mutating func load<T: FixedWidthInteger>(_: T.Type, _ what: () -> String) throws(SpikeRunError) -> T {
        try need(MemoryLayout<T>.size, for: what())
        let v = T(littleEndian: bytes.loadUnaligned(fromByteOffset: position, as: T.self))
        position += MemoryLayout<T>.size
        return v
    }

    mutating func u8(_ what: @autoclosure () -> String) throws(SpikeRunError) -> UInt8 { try load(UInt8.self, what) }
    mutating func u16(_ what: @autoclosure () -> String) throws(SpikeRunError) -> UInt16 { try load(UInt16.self, what) }
    mutating func u32(_ what: @autoclosure () -> String) throws(SpikeRunError) -> UInt32 { try load(UInt32.self, what) }
    mutating func u64(_ what: @autoclosure () -> String) throws(SpikeRunError) -> UInt64 { try load(UInt64.self, what) }

    /// A GGUF string: u64 byte length, then UTF-8 bytes (not NUL-terminated). Invalid UTF-8
    /// is repaired with U+FFFD rather than rejected, as llama.cpp keeps such strings too.
    mutating func string(_ what: @autoclosure () -> String) throws(SpikeRunError) -> String {
        let length = try u64("the length of \(what())")
        guard length <= UInt64(remaining) else {
            throw .format("\(what()) claims \(length) bytes at offset \(position) "
                + "but only \(remaining) bytes remain in the file")
        }
        let n = Int(length)
        let s = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[position..<position + n]),
                       as: UTF8.self)
        position += n
        return s
    }

    /// One metadata value of type `type`; arrays may not nest.
    mutating func value(of type: GGUFValueType, _ what: @autoclosure () -> String,
                        insideArray: Bool = false) throws(SpikeRunError) -> GGUFValue {
        switch type {
        case .uint8: return .uint8(try u8(what()))
        case .int8: return .int8(Int8(bitPattern: try u8(what())))
        case .uint16: return .uint16(try u16(what()))
        case .int16: return .int16(Int16(bitPattern: try u16(what())))
        case .uint32: return .uint32(try u32(what()))
        case .int32: return .int32(Int32(bitPattern: try u32(what())))
        case .uint64: return .uint64(try u64(what()))
        case .int64: return .int64(Int64(bitPattern: try u64(what())))
        case .float32: return .float32(Float(bitPattern: try u32(what())))
        case .float64: return .float64(Double(bitPattern: try u64(what())))
        case .bool:
            let b = try u8(what())
            guard b <= 1 else { throw .format("\(what()) is a bool with invalid byte \(b) (must be 0 or 1)") }
            return .bool(b == 1)
        case .string: return .string(try string(what()))
        case .array:
            if insideArray {
                throw .unsupported("\(what()) is a nested array, which GGUF readers do not support")
            }
            let rawType = try u32("the element type of \(what())")
            guard let elementType = GGUFValueType(rawValue: rawType) else {
                throw .format("\(what()) is an array with unknown element type id \(rawType)")
            }
            if elementType == .array {
                throw .unsupported("\(what()) is a nested array, which GGUF readers do not support")
            }
            let count = try u64("the element count of \(what())")
            // Check the claim against the bytes left before allocating anything for it.
            let (minBytes, overflow) = count.multipliedReportingOverflow(by: UInt64(elementType.minimumBytes))
            guard !overflow, minBytes <= UInt64(remaining) else {
                throw .format("\(what()) claims \(count) \(elementType.name) elements at offset "
                    + "\(position) but only \(remaining) bytes remain in the file")
            }
            let n = Int(count)
            var elements: [GGUFValue] = []
            elements.reserveCapacity(n)
            for i in 0..<n {
                elements.append(try value(of: elementType, "element \(i) of \(what())", insideArray: true))
            }
            return .array(elements)
        }
    }
}

/// `s` in single quotes for an error message: control characters escaped (messages stay on
/// one line whatever a file contains) and long strings shortened.
func ggufQuoted(_ s: String) -> String {
    var out = "'"
    for (i, c) in s.unicodeScalars.enumerated() {
        if i == 120 {
            out += "…"
            break
        }
        switch c.properties.generalCategory {
        case .control, .lineSeparator, .paragraphSeparator, .format:
            out += "\\u{\(String(c.value, radix: 16))}"
        default:
            out.unicodeScalars.append(c)
        }
    }
    return out + "'"
}
