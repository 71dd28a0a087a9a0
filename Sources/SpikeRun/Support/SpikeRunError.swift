/// The one error type of the SpikeRun library: a kind for control flow and a
/// one-line message for the person reading it.
public struct SpikeRunError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable {
        case invalidArgument, io, format, unsupported, noMemory, noDevice
        case contextFull, aborted, numeric
    }

    public let kind: Kind
    /// One line, lower-case start: what failed and why (and what to do, where known).
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    public static func invalidArgument(_ m: String) -> SpikeRunError { .init(.invalidArgument, m) }
    public static func io(_ m: String) -> SpikeRunError { .init(.io, m) }
    public static func format(_ m: String) -> SpikeRunError { .init(.format, m) }
    public static func unsupported(_ m: String) -> SpikeRunError { .init(.unsupported, m) }
}
