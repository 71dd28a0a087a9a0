/// Holds back text that might be the beginning of a stop string, so that a stop string split
/// over several tokens is never emitted.
struct StopStringMatcher {
    let stops: [String]
    private var pending = ""

    init(stops: [String]) { self.stops = stops }

    enum Outcome: Equatable {
        case emit(String)
        case stopped(before: String, stop: String)
    }

    /// Adds decoded text; returns what is safe to emit, or where a stop string begins.
    mutating func append(_ text: String) -> Outcome {
        pending += text
        guard !stops.isEmpty else { return drain() }
        var earliest: (Range<String.Index>, String)?
        for s in stops {
            if let r = pending.range(of: s), earliest == nil || r.lowerBound < earliest!.0.lowerBound {
                earliest = (r, s)
            }
        }
        if let (r, s) = earliest {
            let before = String(pending[..<r.lowerBound])
            pending = ""
            return .stopped(before: before, stop: s)
        }
        // Keep the longest suffix that is a prefix of some stop string.
        var keep = 0
        for s in stops {
            var n = min(s.count, pending.count)
            while n > keep {
                if pending.hasSuffix(String(s.prefix(n))) { keep = n; break }
                n -= 1
            }
        }
        let cut = pending.index(pending.endIndex, offsetBy: -keep)
        let out = String(pending[..<cut])
        pending = String(pending[cut...])
        return .emit(out)
    }

    /// Everything still held back (at the end of generation).
    mutating func drain() -> Outcome {
        defer { pending = "" }
        return .emit(pending)
    }
}
