import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Element types that ``NPY`` reads and writes (little-endian).
public enum NPYType: String, Sendable, Hashable {
    /// `|i1`
    case int8 = "|i1"
    /// `<i4`
    case int32 = "<i4"
    /// `<f8`
    case float64 = "<f8"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .int8: 1
        case .int32: 4
        case .float64: 8
        }
    }
}

/// NumPy `.npy` files, format version 1.0: magic `\x93NUMPY`, version bytes `1 0`, a
/// little-endian UInt16 header length, an ASCII dict header padded with spaces and ended by
/// `\n` so that the data starts at a multiple of 64 bytes, then the C-order data.
public enum NPY {
    /// The header (magic through the newline) for an array of `type` and `shape`.
    public static func header(type: NPYType, shape: [Int]) -> [UInt8] {
        let dims = shape.map(String.init)
        let shapeText = dims.count == 1 ? "(\(dims[0]),)" : "(" + dims.joined(separator: ", ") + ")"
        var dict = "{'descr': '\(type.rawValue)', 'fortran_order': False, 'shape': \(shapeText), }"
        let unpadded = 10 + dict.utf8.count + 1
        dict += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        let len = UInt16(dict.utf8.count)
        return [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(len & 0xFF), UInt8(len >> 8)] + Array(dict.utf8)
    }

    /// A whole `.npy` file of Int8 values.
    public static func encode(_ values: [Int8], shape: [Int]) -> Data {
        var d = Data(header(type: .int8, shape: shape))
        values.withUnsafeBytes { d.append(contentsOf: $0) }
        return d
    }

    /// A whole `.npy` file of Int32 values (stored little-endian).
    public static func encode(_ values: [Int32], shape: [Int]) -> Data {
        var d = Data(header(type: .int32, shape: shape))
        let le = values.map { $0.littleEndian }
        le.withUnsafeBytes { d.append(contentsOf: $0) }
        return d
    }

    /// Parses a `.npy` header: element type, shape and data offset.
    public static func parseHeader(_ data: Data) throws(SpikeRunError) -> (type: NPYType, shape: [Int], offset: Int) {
        let b = [UInt8](data.prefix(12))
        guard b.count >= 10, b[0] == 0x93, Array(b[1..<6]) == Array("NUMPY".utf8) else {
            throw .format("not a .npy file (bad magic)")
        }
        let major = b[6]
        var len = 0, start = 0
        switch major {
        case 1: len = Int(b[8]) | Int(b[9]) << 8; start = 10
        case 2, 3:
            let w = [UInt8](data.prefix(12))
            guard w.count == 12 else { throw .format("truncated .npy header") }
            len = Int(w[8]) | Int(w[9]) << 8 | Int(w[10]) << 16 | Int(w[11]) << 24; start = 12
        default: throw .format(".npy version \(major) is not supported")
        }
        guard data.count >= start + len,
              let text = String(data: data.subdata(in: data.startIndex + start ..< data.startIndex + start + len),
                                encoding: .utf8) else { throw .format("truncated .npy header") }
        func value(_ key: String) -> Substring? {
            guard let r = text.range(of: "'\(key)':") else { return nil }
            return text[r.upperBound...].drop(while: { $0 == " " })
        }
        guard let d = value("descr"), d.first == "'", let end = d.dropFirst().firstIndex(of: "'") else {
            throw .format(".npy header has no descr: \(text)")
        }
        let descr = String(d[d.index(after: d.startIndex)..<end])
        guard let type = NPYType(rawValue: descr == "<i1" ? "|i1" : descr) else {
            throw .unsupported(".npy element type '\(descr)' is not supported (int8, <i4, <f8)")
        }
        if let f = value("fortran_order"), f.hasPrefix("True") {
            throw .unsupported("fortran-order .npy arrays are not supported")
        }
        guard let s = value("shape"), s.first == "(", let close = s.firstIndex(of: ")") else {
            throw .format(".npy header has no shape: \(text)")
        }
        var shape: [Int] = []
        for part in s[s.index(after: s.startIndex)..<close].split(separator: ",") {
            let p = part.trimmingCharacters(in: .whitespaces)
            if p.isEmpty { continue }
            guard let v = Int(p), v >= 0 else { throw .format("bad .npy shape: \(text)") }
            shape.append(v)
        }
        let offset = start + len
        let need = shape.reduce(1, *) * type.size
        guard data.count - offset >= need else {
            throw .format(".npy data is truncated: \(data.count - offset) bytes for shape \(shape)")
        }
        return (type, shape, offset)
    }

    /// Reads an Int8 `.npy` file.
    public static func readInt8(_ url: URL) throws(SpikeRunError) -> (values: [Int8], shape: [Int]) {
        let data = try AnalysisIO.read(url)
        let (type, shape, off) = try parseHeader(data)
        guard type == .int8 else { throw .format("\(url.lastPathComponent): expected int8, found \(type.rawValue)") }
        let n = shape.reduce(1, *)
        let values = data.withUnsafeBytes { raw in
            [Int8](UnsafeRawBufferPointer(rebasing: raw[off..<off + n]).bindMemory(to: Int8.self))
        }
        return (values, shape)
    }

    /// Reads an Int32 `.npy` file.
    public static func readInt32(_ url: URL) throws(SpikeRunError) -> (values: [Int32], shape: [Int]) {
        let data = try AnalysisIO.read(url)
        let (type, shape, off) = try parseHeader(data)
        guard type == .int32 else { throw .format("\(url.lastPathComponent): expected <i4, found \(type.rawValue)") }
        let n = shape.reduce(1, *)
        var values = [Int32](repeating: 0, count: n)
        data.withUnsafeBytes { raw in
            for i in 0..<n { values[i] = Int32(littleEndian: raw.loadUnaligned(fromByteOffset: off + 4 * i, as: Int32.self)) }
        }
        return (values, shape)
    }
}

/// File helpers of the analysis code: atomic writes, directory creation, reads.
public enum AnalysisIO {
    /// Reads a whole file.
    static func read(_ url: URL, mapped: Bool = false) throws(SpikeRunError) -> Data {
        do { return try Data(contentsOf: url, options: mapped ? [.alwaysMapped] : []) } catch {
            throw .io("cannot read '\(url.path)': \(error.localizedDescription)")
        }
    }

    /// Writes `data` to `url` atomically: a temporary file in the same directory, then rename.
    /// Readers never see a half-written file.
    public static func writeAtomically(_ data: Data, to url: URL) throws(SpikeRunError) {
        let tmp = url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        do {
            try data.write(to: tmp)
        } catch {
            throw .io("cannot write '\(tmp.path)': \(error.localizedDescription)")
        }
        try AnalysisIO.rename(tmp, to: url)
    }

    /// POSIX rename (atomic replace on the same file system).
    static func rename(_ from: URL, to: URL) throws(SpikeRunError) {
        if sysRename(from.path, to.path) != 0 {
            let e = String(cString: strerror(errno))
            unlink(from.path)
            throw .io("cannot rename '\(from.path)' to '\(to.path)': \(e)")
        }
    }

    /// Creates a directory (and parents) if needed.
    static func makeDirectory(_ url: URL) throws(SpikeRunError) {
        do { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) } catch {
            throw .io("cannot create directory '\(url.path)': \(error.localizedDescription)")
        }
    }
}

#if canImport(Glibc)
private let sysWrite = Glibc.write
private let sysClose = Glibc.close
private let sysRename = Glibc.rename
#else
private let sysWrite = Darwin.write
private let sysClose = Darwin.close
private let sysRename = Darwin.rename
#endif

/// Appends bytes to a file opened for writing; used by the streaming writer.
final class AppendFile {
    let url: URL
    private var fd: Int32

    init(url: URL) throws(SpikeRunError) {
        self.url = url
        fd = open(url.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw .io("cannot create '\(url.path)': \(String(cString: strerror(errno)))") }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(SpikeRunError) {
        var p = bytes.baseAddress
        var left = bytes.count
        while left > 0, let q = p {
            let n = sysWrite(fd, q, left)
            if n < 0 {
                if errno == EINTR { continue }
                throw .io("cannot write '\(url.path)': \(String(cString: strerror(errno)))")
            }
            left -= n
            p = q + n
        }
    }

    func write<T>(array: [T]) throws(SpikeRunError) {
        var failure: SpikeRunError?
        array.withUnsafeBytes { b in
            do throws(SpikeRunError) { try write(b) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    func close() {
        if fd >= 0 { _ = sysClose(fd); fd = -1 }
    }

    deinit { close() }
}
