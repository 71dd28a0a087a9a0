/// The key–value metadata of a GGUF file, in file order.
///
/// The typed accessors return nil when a key is missing *or* holds a different type, so callers
/// can write `meta.int("llama.block_count") ?? 0`; use `self[key]` to tell the two apart.
public struct GGUFMetadata: Sendable, Equatable {
    /// Keys in the order they appear in the file (or were set, for a writer).
    public private(set) var keys: [String] = []
    private var values: [String: GGUFValue] = [:]

    /// An empty metadata set.
    public init() {}

    /// Metadata with these pairs in this order; a repeated key keeps its first position and
    /// its last value.
    public init(_ pairs: KeyValuePairs<String, GGUFValue>) {
        for (k, v) in pairs { self[k] = v }
    }

    /// The number of keys.
    public var count: Int { keys.count }

    /// The raw value of `key`, or nil. Setting a new key appends it; setting nil removes it.
    public subscript(key: String) -> GGUFValue? {
        get { values[key] }
        set {
            if let newValue {
                if values.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if values.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    /// Whether `key` is present.
    public func contains(_ key: String) -> Bool { values[key] != nil }

    /// The string value of `key`.
    public func string(_ key: String) -> String? { values[key]?.stringValue }

    /// The value of `key` if it is an integer of any width that fits in `Int`.
    public func int(_ key: String) -> Int? { values[key]?.intValue }

    /// The value of `key` if it is numeric (any integer or float type).
    public func double(_ key: String) -> Double? { values[key]?.doubleValue }

    /// The bool value of `key`.
    public func bool(_ key: String) -> Bool? { values[key]?.boolValue }

    /// The value of `key` if it is an array of strings.
    public func strings(_ key: String) -> [String]? {
        guard let a = values[key]?.arrayValue else { return nil }
        var out: [String] = []
        out.reserveCapacity(a.count)
        for v in a {
            guard case .string(let s) = v else { return nil }
            out.append(s)
        }
        return out
    }

    /// The value of `key` if it is an array of integers (any width) that all fit in `Int`.
    public func ints(_ key: String) -> [Int]? {
        guard let a = values[key]?.arrayValue else { return nil }
        var out: [Int] = []
        out.reserveCapacity(a.count)
        for v in a {
            guard let i = v.intValue else { return nil }
            out.append(i)
        }
        return out
    }

    /// The value of `key` if it is an array of numbers (floats or integers), as `Float`.
    public func floats(_ key: String) -> [Float]? {
        guard let a = values[key]?.arrayValue else { return nil }
        var out: [Float] = []
        out.reserveCapacity(a.count)
        for v in a {
            if case .float32(let f) = v {
                out.append(f)
            } else if let d = v.doubleValue {
                out.append(Float(d))
            } else {
                return nil
            }
        }
        return out
    }
}
