/// Where one tensor lives in a GGUF file and what shape and type it has.
///
/// All sizes were validated when the file was opened: they are positive, their products fit in
/// `Int`, and the row length is a whole number of blocks of `type`.
public struct GGUFTensorInfo: Sendable, Hashable {
    /// The tensor name, e.g. `"blk.0.attn_q.weight"`.
    public let name: String
    /// Dimensions in ggml order: `shape[0]` (ne0) is the row length, the fastest-varying one.
    public let shape: [Int]
    /// Element type.
    public let type: GGMLType
    /// Byte offset of the data, relative to the start of the data section.
    public private(set) var offset: Int
    /// Product of all dimensions.
    public let elementCount: Int
    /// Bytes of data in the file: `rowCount * rowBytes`.
    public let byteCount: Int

    /// Elements per row (`shape[0]`).
    public var rowLength: Int { shape[0] }
    /// Rows: the product of all dimensions after the first.
    public var rowCount: Int { elementCount / shape[0] }
    /// Bytes one row occupies: `rowLength / type.blockSize * type.blockBytes`.
    public var rowBytes: Int { shape[0] / type.blockSize * type.blockBytes }

    /// A tensor description with sizes computed from `shape` and `type`. Throws `.format` if
    /// a dimension is not positive, the row length is not a whole number of blocks, or a
    /// size overflows.
    public init(name: String, shape: [Int], type: GGMLType, offset: Int) throws(SpikeRunError) {
        guard (1...4).contains(shape.count) else {
            throw .format("tensor \(ggufQuoted(name)) has \(shape.count) dimensions (expected 1 to 4)")
        }
        var count = 1
        for (i, d) in shape.enumerated() {
            guard d > 0 else {
                throw .format("tensor \(ggufQuoted(name)) has dimension \(i) = \(d) (must be positive)")
            }
            let (p, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow else {
                throw .format("tensor \(ggufQuoted(name)) shape \(shape) has too many elements (overflow)")
            }
            count = p
        }
        guard shape[0] % type.blockSize == 0 else {
            throw .format("tensor \(ggufQuoted(name)) has rows of \(shape[0]) elements, not a multiple of "
                + "the \(type.name) block size \(type.blockSize)")
        }
        guard let bytes = type.byteCount(elements: count) else {
            throw .format("tensor \(ggufQuoted(name)) shape \(shape) of type \(type.name) is too large (overflow)")
        }
        guard offset >= 0 else {
            throw .format("tensor \(ggufQuoted(name)) has negative data offset \(offset)")
        }
        self.name = name
        self.shape = shape
        self.type = type
        self.offset = offset
        self.elementCount = count
        self.byteCount = bytes
    }

    /// The same tensor at another data offset (the writer's relayout).
    func moved(to newOffset: Int) -> GGUFTensorInfo {
        var copy = self
        copy.offset = newOffset
        return copy
    }
}
