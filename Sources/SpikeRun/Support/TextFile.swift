import Foundation

/// Reads UTF-8 text files exactly as they are. Foundation's `String(data:encoding:)` drops a
/// leading byte-order mark, which shifts every token of a llama.cpp-style evaluation.
public enum TextFile {
    public static func read(_ path: String) throws(SpikeRunError) -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .io("cannot read '\(path)': no such file or not readable")
        }
        guard let s = String(validating: data, as: UTF8.self) else {
            throw .format("'\(path)' is not valid UTF-8 text")
        }
        return s
    }
}
