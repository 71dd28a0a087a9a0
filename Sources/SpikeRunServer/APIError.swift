import Foundation
import Hummingbird
import SpikeRun

/// An error returned to the client as OpenAI's `{"error": {"message", "type", "code"}}`,
/// one status code per cause.
public struct APIError: Error, Sendable {
    public var status: HTTPResponse.Status
    public var message: String
    public var type: String
    public var code: String?
    public var param: String?
    /// Seconds for a `Retry-After` header (queue full).
    public var retryAfter: Int?

    public init(_ status: HTTPResponse.Status, _ message: String, type: String = "invalid_request_error",
                code: String? = nil, param: String? = nil, retryAfter: Int? = nil) {
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.retryAfter = retryAfter
    }

    static func badRequest(_ message: String, param: String? = nil, code: String = "invalid_value") -> APIError {
        APIError(.badRequest, message, code: code, param: param)
    }

    /// A decoding failure, naming the field's path ("messages[0].content").
    static func decoding(_ error: any Error) -> APIError {
        func path(_ keys: [any CodingKey]) -> String {
            var s = ""
            for k in keys {
                if let i = k.intValue { s += "[\(i)]" } else { s += s.isEmpty ? k.stringValue : "." + k.stringValue }
            }
            return s
        }
        guard let e = error as? DecodingError else {
            return badRequest("the request body is not valid JSON", code: "invalid_json")
        }
        switch e {
        case .typeMismatch(_, let c) where c.codingPath.isEmpty:
            return badRequest("the request body must be a JSON object", code: "invalid_type")
        case .typeMismatch(let t, let c):
            let p = path(c.codingPath)
            return badRequest("field '\(p)' has the wrong type: expected \(describe(t))", param: p, code: "invalid_type")
        case .valueNotFound(let t, let c):
            let p = path(c.codingPath)
            return badRequest("field '\(p)' must not be null: expected \(describe(t))", param: p, code: "invalid_type")
        case .keyNotFound(let k, let c):
            let p = path(c.codingPath + [k])
            return badRequest("missing required field '\(p)'", param: p, code: "missing_required_parameter")
        case .dataCorrupted(let c):
            if c.codingPath.isEmpty {
                return badRequest("the request body is not valid JSON", code: "invalid_json")
            }
            let p = path(c.codingPath)
            return badRequest("field '\(p)' is invalid: \(c.debugDescription)", param: p, code: "invalid_type")
        @unknown default:
            return badRequest("the request body could not be decoded", code: "invalid_json")
        }
    }

    private static func describe(_ t: Any.Type) -> String {
        switch t {
        case is String.Type: "a string"
        case is Int.Type, is Int32.Type, is Int64.Type: "an integer"
        case is Double.Type, is Float.Type: "a number"
        case is Bool.Type: "a boolean"
        case is [Any].Type: "an array"
        default: "an object of the documented shape"
        }
    }

    /// The library's errors: context overflow and bad arguments are the client's, the rest ours.
    static func from(_ error: SpikeRunError) -> APIError {
        switch error.kind {
        case .contextFull: return APIError(.badRequest, error.message, code: "context_length_exceeded")
        case .invalidArgument: return badRequest(error.message)
        case .unsupported: return APIError(.badRequest, error.message, code: "unsupported")
        default: return APIError(.internalServerError, error.message, type: "server_error", code: "internal_error")
        }
    }

    var body: ErrorResponse { ErrorResponse(error: .init(message: message, type: type, code: code, param: param)) }

    func response() -> Response {
        var r = jsonResponse(body, status: status)
        if let retryAfter { r.headers[.retryAfter] = String(retryAfter) }
        if status == .unauthorized { r.headers[.wwwAuthenticate] = "Bearer" }
        return r
    }
}

let jsonEncoder: JSONEncoder = {
    let e = JSONEncoder()
    e.outputFormatting = [.withoutEscapingSlashes]
    return e
}()

func jsonData(_ value: some Encodable) -> Data {
    // Our own types always encode; a failure would be a programming error surfaced as 500 text.
    (try? jsonEncoder.encode(value)) ?? Data(#"{"error":{"message":"encoding failed","type":"server_error","code":null}}"#.utf8)
}

func jsonResponse(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
    Response(status: status, headers: [.contentType: "application/json"],
             body: .init(byteBuffer: ByteBuffer(bytes: jsonData(value))))
}

/// Compares two secrets in time that depends only on their lengths, not on where they differ.
func constantTimeEquals(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8), y = Array(b.utf8)
    var diff = UInt8(x.count == y.count ? 0 : 1)
    let n = max(x.count, y.count)
    for i in 0..<n {
        let p = i < x.count ? x[i] : 0, q = i < y.count ? y[i] : 0
        diff |= p ^ q
    }
    return diff == 0
}
