#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Builds a GGUF (version 3) file from ordered metadata and tensors.
///
/// The layout matches llama.cpp and PyPI `gguf`: header, metadata, tensor infos, zero padding
/// to the alignment, then each tensor's bytes followed by padding to the alignment. Tensor
/// offsets are assigned in the order tensors were added. Everything is validated when it is
/// added, so ``serialize()`` cannot fail and ``write(to:progress:)`` fails only on I/O.
///
/// ```swift
/// var w = GGUFWriter()
/// try w.set("general.architecture", .string("llama"))
/// try w.addTensor(name: "output_norm.weight", shape: [576], type: .f32, bytes: normBytes)
/// try w.write(to: "out.gguf", progress: nil)
/// ```
public struct GGUFWriter {
    /// Where a tensor's bytes come from.
    public enum Payload {
        /// Bytes the writer owns.
        case bytes([UInt8])
        /// Bytes owned by someone else (e.g. a source ``GGUFFile``'s mapping); the caller keeps
        /// them alive and unchanged until writing is done.
        case borrowed(UnsafeRawBufferPointer)

        var count: Int {
            switch self {
            case .bytes(let b): b.count
            case .borrowed(let p): p.count
            }
        }

        func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws(SpikeRunError) -> R) throws(SpikeRunError) -> R {
            switch self {
            case .bytes(let b):
                // withUnsafeBytes rethrows untyped errors; keep the typed error through a Result.
                let result: Result<R, SpikeRunError> = b.withUnsafeBytes { p in
                    Result { () throws(SpikeRunError) -> R in try body(p) }
                }
                return try result.get()
            case .borrowed(let p): return try body(p)
            }
        }
    }

    /// One tensor to write: its description (with the offset it will get) and its bytes.
    public struct Tensor {
        /// Name, shape, type and the data offset the tensor will have in the file.
        public let info: GGUFTensorInfo
        /// Where its bytes come from.
        public let payload: Payload
    }

    /// GGUF version written in the header.
    public let version: UInt32 = 3
    /// Metadata, in the order it will be written. Change it through ``set(_:_:)``.
    public private(set) var metadata = GGUFMetadata()
    /// Tensors in the order they will be written.
    public private(set) var tensors: [Tensor] = []
    private var tensorNames: Set<String> = []
    /// Source files whose mappings borrowed payloads point into; kept alive with the writer.
    private var sources: [GGUFFile] = []

    /// Data alignment, from `general.alignment` (default 32).
    public var alignment: Int { metadata.int("general.alignment") ?? GGUFFile.defaultAlignment }

    /// An empty writer.
    public init() {}

    /// A writer holding a copy of `file`'s metadata and borrowing all its tensors (the writer
    /// keeps `file` alive).
    public init(copying file: GGUFFile) throws(SpikeRunError) {
        for key in file.metadata.keys {
            var value = file.metadata[key]!
            // Readers accept any integer type here; llama.cpp's requires uint32.
            if key == "general.alignment" { value = .uint32(UInt32(file.alignment)) }
            try set(key, value)
        }
        for t in file.tensors { try addTensor(t, from: file) }
    }

    /// Sets `key` (appending it if new). Throws `.invalidArgument` for an empty key, an array
    /// that nests or mixes element types, or a `general.alignment` that is not a power-of-two
    /// `uint32` — the cases GGUF readers would reject. Changing the alignment moves the offsets
    /// of tensors already added.
    public mutating func set(_ key: String, _ value: GGUFValue) throws(SpikeRunError) {
        guard !key.isEmpty else { throw .invalidArgument("GGUF metadata keys cannot be empty") }
        if case .array(let elements) = value, let first = elements.first {
            for e in elements {
                if case .array = e {
                    throw .invalidArgument("metadata key \(ggufQuoted(key)): arrays of arrays cannot be written to GGUF")
                }
                guard e.wireType == first.wireType else {
                    throw .invalidArgument("metadata key \(ggufQuoted(key)): array mixes \(first.typeName) and \(e.typeName) elements")
                }
            }
        }
        if key == "general.alignment" {
            guard case .uint32(let a) = value, a > 0, a & (a - 1) == 0, a <= 1 << 30 else {
                let got = value.intValue.map { "\($0) (\(value.typeName))" } ?? value.typeName
                throw .invalidArgument("general.alignment must be a uint32 power of two up to 2^30, got \(got)")
            }
        }
        metadata[key] = value
        if key == "general.alignment" { relayout() }
    }

    /// Removes `key` if present.
    public mutating func removeValue(forKey key: String) {
        metadata[key] = nil
        if key == "general.alignment" { relayout() }
    }

    /// Reassigns tensor offsets after the alignment changed.
    private mutating func relayout() {
        let old = tensors
        tensors = []
        for t in old {
            tensors.append(Tensor(info: t.info.moved(to: nextOffset), payload: t.payload))
        }
    }

    /// Appends a tensor whose bytes the writer owns.
    public mutating func addTensor(name: String, shape: [Int], type: GGMLType, bytes: [UInt8]) throws(SpikeRunError) {
        try addTensor(name: name, shape: shape, type: type, payload: .bytes(bytes))
    }

    /// Appends a tensor whose bytes stay owned by the caller (see ``Payload/borrowed(_:)``).
    public mutating func addTensor(name: String, shape: [Int], type: GGMLType,
                                   borrowing bytes: UnsafeRawBufferPointer) throws(SpikeRunError) {
        try addTensor(name: name, shape: shape, type: type, payload: .borrowed(bytes))
    }

    /// Appends tensor `t` of `file` unchanged, borrowing its bytes from the mapping (the writer
    /// keeps `file` alive). `name` renames it.
    public mutating func addTensor(_ t: GGUFTensorInfo, from file: GGUFFile, name: String? = nil) throws(SpikeRunError) {
        try addTensor(name: name ?? t.name, shape: t.shape, type: t.type, payload: .borrowed(file.data(t)))
        if !sources.contains(where: { $0 === file }) { sources.append(file) }
    }

    /// Appends a tensor. Throws `.invalidArgument` for a duplicate or over-long name (ggml
    /// limits names to 63 bytes), an invalid shape, or a payload of the wrong size.
    public mutating func addTensor(name: String, shape: [Int], type: GGMLType, payload: Payload) throws(SpikeRunError) {
        guard !name.isEmpty, name.utf8.count < 64 else {
            throw .invalidArgument("tensor name \(ggufQuoted(name)) must be 1 to 63 bytes long")
        }
        guard !tensorNames.contains(name) else { throw .invalidArgument("duplicate tensor name \(ggufQuoted(name))") }
        let info: GGUFTensorInfo
        do {
            info = try GGUFTensorInfo(name: name, shape: shape, type: type, offset: nextOffset)
        } catch {
            throw .invalidArgument(error.message)
        }
        guard payload.count == info.byteCount else {
            throw .invalidArgument("tensor \(ggufQuoted(name)) \(type.name) \(shape) needs \(info.byteCount) bytes, got \(payload.count)")
        }
        tensorNames.insert(name)
        tensors.append(Tensor(info: info, payload: payload))
    }

    private var nextOffset: Int {
        guard let last = tensors.last?.info else { return 0 }
        return Self.padded(last.offset + last.byteCount, alignment)
    }

    private static func padded(_ n: Int, _ alignment: Int) -> Int {
        (n + alignment - 1) / alignment * alignment
    }

    /// Header, metadata, tensor infos and the padding after them: everything before the data.
    func encodeHead() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(4096)
        out.append(contentsOf: Array("GGUF".utf8))
        Self.put(version, &out)
        Self.put(UInt64(tensors.count), &out)
        Self.put(UInt64(metadata.count), &out)
        for key in metadata.keys {
            let value = metadata[key]!
            Self.put(key, &out)
            Self.put(value.wireType.rawValue, &out)
            Self.put(value, &out)
        }
        for t in tensors {
            Self.put(t.info.name, &out)
            Self.put(UInt32(t.info.shape.count), &out)
            for d in t.info.shape { Self.put(UInt64(d), &out) }
            Self.put(t.info.type.rawValue, &out)
            Self.put(UInt64(t.info.offset), &out)
        }
        out.append(contentsOf: repeatElement(0, count: Self.padded(out.count, alignment) - out.count))
        return out
    }

    /// Total size of the file ``serialize()`` or ``write(to:progress:)`` produces.
    public var byteCount: Int {
        encodeHead().count + nextOffset
    }

    /// The whole file as bytes (for small files and tests).
    public func serialize() -> [UInt8] {
        var out = encodeHead()
        let dataStart = out.count
        out.reserveCapacity(dataStart + nextOffset)
        for t in tensors {
            switch t.payload {
            case .bytes(let b): out.append(contentsOf: b)
            case .borrowed(let p): out.append(contentsOf: p)
            }
            out.append(contentsOf: repeatElement(0, count: dataStart + Self.padded(out.count - dataStart, alignment) - out.count))
        }
        return out
    }

    /// Writes the file to `path` atomically: it streams to a temporary file in the same
    /// directory, fsyncs it, renames it over `path` and fsyncs the directory. On failure the
    /// temporary file is removed and `path` is untouched. `progress` gets the fraction done
    /// (0…1) after each tensor.
    public func write(to path: String, progress: ((Double) -> Void)? = nil) throws(SpikeRunError) {
        let (dir, base) = Self.split(path)
        let tmp = "\(dir)/.\(base).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw Self.ioError(path, "cannot create a temporary file there") }
        var closed = false
        var renamed = false
        defer {
            if !closed { close(fd) }
            if !renamed { unlink(tmp) }
        }

        let head = encodeHead()
        let total = Double(head.count + nextOffset)
        var written = 0
        func put(_ p: UnsafeRawBufferPointer) throws(SpikeRunError) {
            try Self.writeAll(fd, p, path: path)
            written += p.count
        }
        let zeros = UnsafeMutableRawPointer.allocate(byteCount: alignment, alignment: 16)
        zeros.initializeMemory(as: UInt8.self, repeating: 0, count: alignment)
        defer { zeros.deallocate() }
        try Payload.bytes(head).withBytes { (h) throws(SpikeRunError) in try put(h) }
        progress?(Double(written) / max(total, 1))
        for t in tensors {
            try t.payload.withBytes { (p) throws(SpikeRunError) in try put(p) }
            let pad = Self.padded(t.info.byteCount, alignment) - t.info.byteCount
            try put(UnsafeRawBufferPointer(start: zeros, count: pad))
            progress?(Double(written) / max(total, 1))
        }

        guard fsync(fd) == 0 else { throw Self.ioError(path, "fsync failed") }
        closed = true
        guard close(fd) == 0 else { throw Self.ioError(path, "close failed") }
        guard rename(tmp, path) == 0 else { throw Self.ioError(path, "renaming the temporary file failed") }
        renamed = true
        // Make the rename itself durable.
        let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            _ = fsync(dfd)
            close(dfd)
        }
    }

    // MARK: - encoding helpers

    private static func put<T: FixedWidthInteger>(_ v: T, _ out: inout [UInt8]) {
        withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
    }

    private static func put(_ s: String, _ out: inout [UInt8]) {
        put(UInt64(s.utf8.count), &out)
        out.append(contentsOf: s.utf8)
    }

    private static func put(_ v: GGUFValue, _ out: inout [UInt8]) {
        switch v {
        case .uint8(let x): put(x, &out)
        case .int8(let x): put(x, &out)
        case .uint16(let x): put(x, &out)
        case .int16(let x): put(x, &out)
        case .uint32(let x): put(x, &out)
        case .int32(let x): put(x, &out)
        case .uint64(let x): put(x, &out)
        case .int64(let x): put(x, &out)
        case .float32(let x): put(x.bitPattern, &out)
        case .float64(let x): put(x.bitPattern, &out)
        case .bool(let x): out.append(x ? 1 : 0)
        case .string(let s): put(s, &out)
        case .array(let a):
            // An empty array has no element to take the type from; uint8 is as good as any.
            put((a.first?.wireType ?? .uint8).rawValue, &out)
            put(UInt64(a.count), &out)
            for e in a { put(e, &out) }
        }
    }

    private static func writeAll(_ fd: Int32, _ p: UnsafeRawBufferPointer, path: String) throws(SpikeRunError) {
        var done = 0
        while done < p.count {
            let n = posixWrite(fd, p.baseAddress! + done, p.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw ioError(path, "write failed")
            }
            done += n
        }
    }

    private static func split(_ path: String) -> (dir: String, base: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let dir = String(path[..<slash])
        return (dir.isEmpty ? "/" : dir, String(path[path.index(after: slash)...]))
    }

    private static func errnoString() -> String { String(cString: strerror(errno)) }

    /// An `.io` error naming `path`, with the current `errno` (read before anything else runs).
    private static func ioError(_ path: String, _ what: String) -> SpikeRunError {
        let reason = errnoString()
        return .io("cannot write \(ggufQuoted(path)): \(what): \(reason)")
    }
}

/// `write(2)`, under a name the writer's own `write(to:progress:)` does not shadow.
private func posixWrite(_ fd: Int32, _ buf: UnsafeRawPointer, _ n: Int) -> Int {
    write(fd, buf, n)
}
