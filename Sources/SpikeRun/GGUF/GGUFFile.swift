#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A parsed, validated GGUF file (versions 2 and 3) whose tensor data stays memory-mapped.
///
/// Opening checks the whole layout up front — header, metadata, tensor shapes and types,
/// offsets, alignment, overlap, and that every tensor's bytes lie inside the file — so code
/// that later calls ``data(_:)`` needs no checks of its own. Any malformed input throws
/// `SpikeRunError` (`.format` or `.unsupported`) with a one-line message; it never traps.
///
/// Tensor types are accepted if their block layout is known (every ``GGMLType`` case), even
/// those spikerun cannot compute with; check ``GGMLType/isSupported`` (``ModelConfig`` does).
public final class GGUFFile: @unchecked Sendable {  // immutable after init; the mapping is read-only
    /// The path the file was opened from, or nil for in-memory bytes.
    public let path: String?
    /// GGUF format version (2 or 3).
    public let version: UInt32
    /// Data alignment in bytes (`general.alignment`, default 32).
    public let alignment: Int
    /// All metadata pairs, in file order.
    public let metadata: GGUFMetadata
    /// Tensor descriptions, in file order.
    public let tensors: [GGUFTensorInfo]
    /// Absolute file offset of the data section (tensor offsets are relative to it).
    public let dataOffset: Int
    /// Size of the file in bytes.
    public let fileSize: Int

    private let base: UnsafeRawPointer?
    private let ownership: Ownership
    private let index: [String: Int]
    /// Aligned copies of the tensors whose bytes do not start on a ``dataAlignment`` boundary
    /// (files with `general.alignment` below 32), by tensor index. The C kernels and the
    /// typed reads (`Float`, `UInt16`, block structs) then never see an unaligned address.
    private let copies: [Int: UnsafeMutableRawPointer]

    /// The alignment every tensor's bytes have in memory, whatever the file declares.
    public static let dataAlignment = 32

    private enum Ownership { case mapped, allocated, none }

    /// The default data alignment when `general.alignment` is absent.
    public static let defaultAlignment = 32

    /// Memory-maps the file at `path` read-only and parses it. Throws `.io` naming the path if
    /// it cannot be opened or mapped.
    public convenience init(path: String) throws(SpikeRunError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)  // O_NONBLOCK: a FIFO must not hang us
        guard fd >= 0 else { throw ioError("cannot open", path) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ioError("cannot stat", path) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw .io("\(ggufQuoted(path)) is not a regular file") }
        let size = Int(st.st_size)
        var mapped: UnsafeRawPointer? = nil
        if size > 0 {
            let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
            guard let p, p != MAP_FAILED else { throw ioError("cannot map", path) }
            mapped = UnsafeRawPointer(p)
        }
        do {
            let parsed = try Parsed(UnsafeRawBufferPointer(start: mapped, count: size))
            self.init(parsed, path: path, base: mapped, ownership: mapped == nil ? .none : .mapped)
        } catch {
            if let mapped { munmap(UnsafeMutableRawPointer(mutating: mapped), size) }
            throw error
        }
    }

    /// Parses a GGUF image held in memory (tests, fuzzing). The bytes are copied.
    public convenience init(bytes: [UInt8]) throws(SpikeRunError) {
        var copy: UnsafeMutableRawPointer? = nil
        if !bytes.isEmpty {
            let p = UnsafeMutableRawPointer.allocate(byteCount: bytes.count, alignment: 64)
            bytes.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            copy = p
        }
        do {
            let parsed = try Parsed(UnsafeRawBufferPointer(start: copy, count: bytes.count))
            self.init(parsed, path: nil, base: copy.map(UnsafeRawPointer.init),
                      ownership: copy == nil ? .none : .allocated)
        } catch {
            copy?.deallocate()
            throw error
        }
    }

    private init(_ p: Parsed, path: String?, base: UnsafeRawPointer?, ownership: Ownership) {
        self.path = path
        self.version = p.version
        self.alignment = p.alignment
        self.metadata = p.metadata
        self.tensors = p.tensors
        self.dataOffset = p.dataOffset
        self.fileSize = p.fileSize
        self.index = p.index
        self.base = base
        self.ownership = ownership
        var copies: [Int: UnsafeMutableRawPointer] = [:]
        if let base {
            for (i, t) in p.tensors.enumerated() where t.byteCount > 0 {
                let src = base + p.dataOffset + t.offset
                if Int(bitPattern: src) % Self.dataAlignment == 0 { continue }
                let dst = UnsafeMutableRawPointer.allocate(byteCount: t.byteCount, alignment: Self.dataAlignment)
                dst.copyMemory(from: src, byteCount: t.byteCount)
                copies[i] = dst
            }
        }
        self.copies = copies
    }

    deinit {
        for p in copies.values { p.deallocate() }
        switch ownership {
        case .mapped: munmap(UnsafeMutableRawPointer(mutating: base), fileSize)
        case .allocated: UnsafeMutableRawPointer(mutating: base)?.deallocate()
        case .none: break
        }
    }

    /// The tensor named `name`, or nil.
    public func tensor(_ name: String) -> GGUFTensorInfo? {
        index[name].map { tensors[$0] }
    }

    /// The bytes of tensor `t` (which must come from this file's ``tensors``), starting on a
    /// ``dataAlignment`` boundary. The buffer points into the mapping (or, for a tensor the
    /// file placed off that boundary, into an aligned copy) and is valid only while this
    /// `GGUFFile` is alive.
    public func data(_ t: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        guard let base, t.byteCount > 0 else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        let start = dataOffset + t.offset
        // Cheap guard against an info from another file; the layout itself was validated.
        precondition(start >= dataOffset && start <= fileSize - t.byteCount,
                     "tensor \(ggufQuoted(t.name)) does not belong to this GGUF file")
        if !copies.isEmpty, let i = index[t.name], let copy = copies[i] {
            return UnsafeRawBufferPointer(start: copy, count: t.byteCount)
        }
        return UnsafeRawBufferPointer(start: base + start, count: t.byteCount)
    }

    /// The whole file image.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: fileSize) }
}

/// The result of parsing, before the owning object exists.
private struct Parsed {
    var version: UInt32 = 0
    var alignment = GGUFFile.defaultAlignment
    var metadata = GGUFMetadata()
    var tensors: [GGUFTensorInfo] = []
    var index: [String: Int] = [:]
    var dataOffset = 0
    var fileSize = 0

    static let magic: UInt32 = 0x4655_4747  // "GGUF" read as a little-endian u32

    init(_ buffer: UnsafeRawBufferPointer) throws(SpikeRunError) {
        fileSize = buffer.count
        var r = GGUFReader(buffer)

        // Header: magic, version, tensor count, metadata count.
        guard buffer.count >= 4 else {
            throw .format("not a GGUF file: it is only \(buffer.count) bytes long")
        }
        let magic = try r.u32("the magic")
        guard magic == Parsed.magic else {
            throw .format("not a GGUF file: bad magic \(Parsed.hex(buffer.prefix(4))) (expected 47 47 55 46, \"GGUF\")")
        }
        version = try r.u32("the version")
        guard version == 2 || version == 3 else {
            if version.byteSwapped == 2 || version.byteSwapped == 3 {
                throw .unsupported("big-endian GGUF files are not supported")
            }
            throw .unsupported("GGUF version \(version) is not supported (only versions 2 and 3)")
        }
        let tensorCount = try r.u64("the tensor count")
        let kvCount = try r.u64("the metadata count")

        // Each pair needs at least a key length, a type and a 1-byte value; check the claim
        // before looping so a huge count fails fast with a clear message.
        guard kvCount <= UInt64(r.remaining / 13) else {
            throw .format("header claims \(kvCount) metadata pairs but only \(r.remaining) bytes follow")
        }
        for i in 0..<Int(kvCount) {
            let key = try r.string("metadata key #\(i)")
            guard !key.isEmpty else { throw .format("metadata key #\(i) is empty") }
            guard !metadata.contains(key) else { throw .format("duplicate metadata key \(ggufQuoted(key))") }
            let rawType = try r.u32("the type of metadata key \(ggufQuoted(key))")
            guard let type = GGUFValueType(rawValue: rawType) else {
                throw .format("metadata key \(ggufQuoted(key)) has unknown value type id \(rawType)")
            }
            metadata[key] = try r.value(of: type, "metadata key \(ggufQuoted(key))")
        }

        if let v = metadata["general.alignment"] {
            guard let a = v.intValue, a > 0, a & (a - 1) == 0, a <= 1 << 30 else {
                throw .format("general.alignment must be a power of two up to 2^30, got \(Parsed.show(v))")
            }
            alignment = a
        }

        // Tensor infos: name, n_dims, dims (ne0 first), type, offset. At least 32 bytes each.
        guard tensorCount <= UInt64(r.remaining / 32) else {
            throw .format("header claims \(tensorCount) tensors but only \(r.remaining) bytes follow")
        }
        tensors.reserveCapacity(Int(tensorCount))
        for i in 0..<Int(tensorCount) {
            let name = try r.string("tensor name #\(i)")
            guard !name.isEmpty else { throw .format("tensor #\(i) has an empty name") }
            guard index[name] == nil else { throw .format("duplicate tensor name \(ggufQuoted(name))") }
            let nDims = try r.u32("the dimension count of tensor \(ggufQuoted(name))")
            guard (1...4).contains(nDims) else {
                throw .format("tensor \(ggufQuoted(name)) has \(nDims) dimensions (expected 1 to 4)")
            }
            var shape: [Int] = []
            for d in 0..<Int(nDims) {
                let dim = try r.u64("dimension \(d) of tensor \(ggufQuoted(name))")
                guard dim > 0, dim <= UInt64(Int.max) else {
                    throw .format("tensor \(ggufQuoted(name)) has dimension \(d) = \(Int64(bitPattern: dim)) (must be positive)")
                }
                shape.append(Int(dim))
            }
            let typeID = try r.u32("the type of tensor \(ggufQuoted(name))")
            guard let type = GGMLType(rawValue: typeID) else {
                throw .unsupported("tensor \(ggufQuoted(name)) has \(GGMLType.describe(id: typeID)), which spikerun cannot read")
            }
            let offset = try r.u64("the data offset of tensor \(ggufQuoted(name))")
            guard offset <= UInt64(Int.max) else {
                throw .format("tensor \(ggufQuoted(name)) has data offset \(offset), beyond any file")
            }
            let info = try GGUFTensorInfo(name: name, shape: shape, type: type, offset: Int(offset))
            guard info.offset % alignment == 0 else {
                throw .format("tensor \(ggufQuoted(name)) data offset \(info.offset) is not a multiple of the alignment \(alignment)")
            }
            index[name] = tensors.count
            tensors.append(info)
        }

        // The data section starts at the next multiple of the alignment.
        let (padded, overflow) = r.position.addingReportingOverflow(alignment - 1)
        guard !overflow else { throw .format("data section offset overflows") }
        dataOffset = padded / alignment * alignment

        // Every tensor must lie inside the file, and no two may share bytes.
        for t in tensors {
            let (start, o1) = dataOffset.addingReportingOverflow(t.offset)
            let (end, o2) = start.addingReportingOverflow(t.byteCount)
            guard !o1, !o2, end <= fileSize else {
                let endText = (o1 || o2) ? "beyond any file" : "at byte \(end)"
                throw .format("tensor \(ggufQuoted(t.name)) data ends \(endText) but the file has \(fileSize) bytes")
            }
        }
        let byOffset = tensors.sorted { ($0.offset, $0.byteCount) < ($1.offset, $1.byteCount) }
        for (a, b) in zip(byOffset, byOffset.dropFirst()) where a.offset + a.byteCount > b.offset {
            throw .format("tensors \(ggufQuoted(a.name)) and \(ggufQuoted(b.name)) overlap (bytes \(a.offset)..<\(a.offset + a.byteCount) "
                + "and \(b.offset)..<\(b.offset + b.byteCount) of the data section)")
        }
    }

    static func hex(_ bytes: Slice<UnsafeRawBufferPointer>) -> String {
        bytes.map { b in
            let s = String(b, radix: 16)
            return s.count == 1 ? "0" + s : s
        }.joined(separator: " ")
    }

    static func show(_ v: GGUFValue) -> String {
        switch v {
        case .string(let s): "\(ggufQuoted(String(s.prefix(40)))) (\(v.typeName))"
        case .array(let a): "an array of \(a.count) (\(v.typeName))"
        default: "\(v.intValue.map(String.init) ?? v.doubleValue.map { "\($0)" } ?? "\(v)") (\(v.typeName))"
        }
    }
}

/// An `.io` error for `path` with the current `errno`, read before anything else can change it.
private func ioError(_ what: String, _ path: String) -> SpikeRunError {
    let reason = String(cString: strerror(errno))
    return .io("\(what) \(ggufQuoted(path)): \(reason)")
}
