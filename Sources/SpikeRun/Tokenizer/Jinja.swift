// A small Jinja2 interpreter for chat templates.
//
// Covers what Hugging Face chat templates use: {{ }}, {% %}, {# #} with "-" whitespace
// control and trim_blocks/lstrip_blocks; if/elif/else, for (tuple targets, inline `if`,
// `else`, loop.*, break/continue), set (names, namespace attributes, blocks), macro,
// generation; literals, lists, dicts, ternaries, and/or/not, comparisons, in, is-tests,
// + - * / // % ~, slicing, filters and string/dict methods, and transformers' globals
// (raise_exception, strftime_now, namespace). Anything else is a clear `.unsupported` error
// naming the construct.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Values

final class JinjaNamespace: @unchecked Sendable {  // only used within one render call
    var values: [(String, JinjaValue)]
    init(_ values: [(String, JinjaValue)]) { self.values = values }
}

/// A `{% macro %}` definition.
final class JinjaMacro: @unchecked Sendable {  // immutable
    let name: String
    fileprivate let parameters: [(String, Expr?)]
    fileprivate let body: [Node]
    fileprivate init(name: String, parameters: [(String, Expr?)], body: [Node]) {
        self.name = name
        self.parameters = parameters
        self.body = body
    }
}

enum JinjaValue {
    case undefined
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case list([JinjaValue])
    case dict([(String, JinjaValue)])
    case namespace(JinjaNamespace)
    case macro(JinjaMacro)
    /// A global function (`raise_exception`, `strftime_now`, `namespace`, `range`, `dict`).
    case builtin(String)

    var isTruthy: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .double(let d): return d != 0
        case .string(let s): return !s.isEmpty
        case .list(let l): return !l.isEmpty
        case .dict(let d): return !d.isEmpty
        case .namespace, .macro, .builtin: return true
        }
    }

    var isUndefined: Bool { if case .undefined = self { return true } else { return false } }

    /// A bounded description for error messages.
    var shortDescription: String {
        switch self {
        case .list(let l): return "a list of \(l.count)"
        case .dict(let d): return "a dict of \(d.count)"
        case .string(let s) where s.unicodeScalars.count > 40: return "a string of \(s.utf8.count) bytes"
        default: return repr
        }
    }

    /// `str(value)` as Python/Jinja prints it.
    var text: String {
        switch self {
        case .undefined: return ""
        case .string(let s): return s
        default: return repr
        }
    }

    /// Python `repr`.
    var repr: String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .double(let d): return JinjaValue.pythonFloat(d)
        case .string(let s): return JinjaValue.pythonStringRepr(s)
        case .list(let l): return "[" + l.map(\.repr).joined(separator: ", ") + "]"
        case .dict(let d):
            return "{" + d.map { JinjaValue.pythonStringRepr($0.0) + ": " + $0.1.repr }
                .joined(separator: ", ") + "}"
        case .namespace: return "<Namespace>"
        case .macro(let m): return "<Macro '\(m.name)'>"
        case .builtin(let f): return "<function \(f)>"
        }
    }

    static func pythonFloat(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d > 0 ? "inf" : "-inf" }
        if d == d.rounded(), abs(d) < 1e16 { return String(Int(d)) + ".0" }
        return String(d)
    }

    static func pythonStringRepr(_ s: String) -> String {
        let quote: Character = s.contains("'") && !s.contains("\"") ? "\"" : "'"
        var out = String(quote)
        for ch in s.unicodeScalars {
            switch ch {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if Character(ch) == quote { out += "\\" + String(quote) }
                else if ch.value < 0x20 || ch.value == 0x7F {
                    out += "\\x" + hex2(ch.value)
                } else { out.unicodeScalars.append(ch) }
            }
        }
        return out + String(quote)
    }

    /// JSON as transformers' `tojson` filter writes it: Python's `json.dumps` with
    /// ensure_ascii=False and ", " / ": " separators.
    func json(indent: Int?, level: Int = 0) -> String {
        switch self {
        case .undefined, .none: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d): return d.isFinite ? JinjaValue.pythonFloat(d) : (d.isNaN ? "NaN" : (d > 0 ? "Infinity" : "-Infinity"))
        case .string(let s): return JinjaValue.jsonString(s)
        case .list(let l):
            if l.isEmpty { return "[]" }
            guard let indent else { return "[" + l.map { $0.json(indent: nil) }.joined(separator: ", ") + "]" }
            let pad = String(repeating: " ", count: indent * (level + 1))
            let end = String(repeating: " ", count: indent * level)
            return "[\n" + l.map { pad + $0.json(indent: indent, level: level + 1) }.joined(separator: ",\n") + "\n" + end + "]"
        case .dict(let d):
            if d.isEmpty { return "{}" }
            guard let indent else {
                return "{" + d.map { JinjaValue.jsonString($0.0) + ": " + $0.1.json(indent: nil) }.joined(separator: ", ") + "}"
            }
            let pad = String(repeating: " ", count: indent * (level + 1))
            let end = String(repeating: " ", count: indent * level)
            return "{\n" + d.map { pad + JinjaValue.jsonString($0.0) + ": " + $0.1.json(indent: indent, level: level + 1) }
                .joined(separator: ",\n") + "\n" + end + "}"
        case .namespace(let ns): return JinjaValue.dict(ns.values).json(indent: indent, level: level)
        case .macro, .builtin: return "null"
        }
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u.value {
            case 0x22: out += "\\\""
            case 0x5C: out += "\\\\"
            case 0x0A: out += "\\n"
            case 0x0D: out += "\\r"
            case 0x09: out += "\\t"
            case 0x08: out += "\\b"
            case 0x0C: out += "\\f"
            case 0..<0x20: out += "\\u" + hex4(UInt16(u.value))
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }

    static func equal(_ a: JinjaValue, _ b: JinjaValue) -> Bool {
        switch (a, b) {
        case (.undefined, .undefined), (.none, .none): return true
        case (.bool(let x), .bool(let y)): return x == y
        case (.string(let x), .string(let y)): return x.scalarEquals(y)
        case (.list(let x), .list(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { equal($0, $1) }
        case (.dict(let x), .dict(let y)):
            guard x.count == y.count else { return false }
            return x.allSatisfy { kv in y.contains { $0.0 == kv.0 && equal($0.1, kv.1) } }
        case (.namespace(let x), .namespace(let y)): return x === y
        case (.macro(let x), .macro(let y)): return x === y
        case (.builtin(let x), .builtin(let y)): return x == y
        default:
            if let x = a.number, let y = b.number { return x == y }
            return false
        }
    }

    /// Numeric value (bools count as 0/1, as in Python).
    var number: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }

    var typeName: String {
        switch self {
        case .undefined: return "undefined"
        case .none: return "none"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "string"
        case .list: return "list"
        case .dict: return "dict"
        case .namespace: return "namespace"
        case .macro: return "macro"
        case .builtin: return "function"
        }
    }
}

private func hex2(_ v: UInt32) -> String {
    let h = String(v, radix: 16)
    return h.count < 2 ? "0" + h : h
}

private func hex4(_ v: UInt16) -> String {
    let h = String(v, radix: 16)
    return String(repeating: "0", count: max(0, 4 - h.count)) + h
}

// MARK: - Lexer

private enum Segment {
    case text(String)
    case output(String)     // inside {{ }}
    case statement(String)  // inside {% %}
}

private func lex(_ source: String) throws(SpikeRunError) -> [Segment] {
    let s = Array(source.unicodeScalars)
    var segments: [Segment] = []
    var text: [Unicode.Scalar] = []
    var i = 0
    var lineStarting = true  // the last tag's match ended with a newline (or nothing came yet)

    func isSpace(_ c: Unicode.Scalar) -> Bool {
        c == " " || c == "\t" || c == "\n" || c == "\r" || c == "\u{0B}" || c == "\u{0C}"
    }

    while i < s.count {
        guard s[i] == "{", i + 1 < s.count, s[i + 1] == "{" || s[i + 1] == "%" || s[i + 1] == "#" else {
            text.append(s[i])
            i += 1
            continue
        }
        let kind = s[i + 1]
        var j = i + 2
        var sign: Unicode.Scalar? = nil
        if j < s.count, s[j] == "-" || s[j] == "+" { sign = s[j]; j += 1 }
        if sign == "-" {
            while let last = text.last, isSpace(last) { text.removeLast() }
        } else if sign != "+" && kind != "{" {
            // lstrip_blocks: drop the spaces and tabs between a line start and a block tag.
            var lineStart = text.count
            while lineStart > 0, text[lineStart - 1] != "\n" { lineStart -= 1 }
            if (lineStart > 0 || lineStarting) && lineStart < text.count
                && text[lineStart...].allSatisfy({ isSpace($0) }) {
                text.removeSubrange(lineStart...)
            }
        }
        // Find the end of the tag, skipping string literals.
        let close: Unicode.Scalar = kind == "{" ? "}" : kind
        var k = j
        var quote: Unicode.Scalar? = nil
        var found = -1
        while k < s.count {
            let c = s[k]
            if let q = quote {
                if c == "\\" { k += 2; continue }
                if c == q { quote = nil }
            } else if kind != "#" && (c == "'" || c == "\"") {
                quote = c
            } else if c == close, k + 1 < s.count, s[k + 1] == "}" {
                found = k
                break
            }
            k += 1
        }
        guard found >= 0 else {
            throw .unsupported("cannot parse the chat template: unclosed '{\(kind)' tag")
        }
        var bodyEnd = found
        var stripAfter = false, keepNewline = false
        if bodyEnd > j, s[bodyEnd - 1] == "-" { stripAfter = true; bodyEnd -= 1 }
        else if bodyEnd > j, s[bodyEnd - 1] == "+" { keepNewline = true; bodyEnd -= 1 }
        let body = String(String.UnicodeScalarView(s[j..<bodyEnd]))
        if !text.isEmpty { segments.append(.text(String(String.UnicodeScalarView(text)))) }
        text.removeAll()
        switch kind {
        case "{": segments.append(.output(body))
        case "%":
            if body.trimmingJinjaSpace() == "raw" {
                throw .unsupported("the chat template uses '{% raw %}', which spikerun's Jinja subset does not support")
            }
            segments.append(.statement(body))
        default: break  // comment
        }
        i = found + 2
        lineStarting = false
        if stripAfter {
            while i < s.count, isSpace(s[i]) { lineStarting = s[i] == "\n"; i += 1 }
        } else if kind != "{", !keepNewline, i < s.count, s[i] == "\n" {
            i += 1  // trim_blocks
            lineStarting = true
        }
    }
    if !text.isEmpty { segments.append(.text(String(String.UnicodeScalarView(text)))) }
    return segments
}

private extension StringProtocol {
    func trimmingJinjaSpace() -> String {
        let scalars = Array(unicodeScalars)
        var a = 0, b = scalars.count
        func sp(_ c: Unicode.Scalar) -> Bool { c == " " || c == "\t" || c == "\n" || c == "\r" }
        while a < b, sp(scalars[a]) { a += 1 }
        while b > a, sp(scalars[b - 1]) { b -= 1 }
        return String(String.UnicodeScalarView(scalars[a..<b]))
    }
}

// MARK: - Expression tokens

private enum Tok: Equatable {
    case name(String)
    case string(String)
    case int(Int)
    case double(Double)
    case op(String)
    case end
}

private func tokenizeExpression(_ src: String) throws(SpikeRunError) -> [Tok] {
    let s = Array(src.unicodeScalars)
    var out: [Tok] = []
    var i = 0
    let ops3: Set<String> = []
    let ops2: Set<String> = ["==", "!=", "<=", ">=", "//", "**"]
    while i < s.count {
        let c = s[i]
        if c == " " || c == "\t" || c == "\n" || c == "\r" { i += 1; continue }
        if c == "'" || c == "\"" {
            var str = ""
            var j = i + 1
            var closed = false
            while j < s.count {
                let d = s[j]
                if d == "\\", j + 1 < s.count {
                    let e = s[j + 1]
                    switch e {
                    case "n": str += "\n"
                    case "t": str += "\t"
                    case "r": str += "\r"
                    case "\\": str += "\\"
                    case "'": str += "'"
                    case "\"": str += "\""
                    case "0": str += "\0"
                    case "u", "x":
                        let len = e == "u" ? 4 : 2
                        if j + 1 + len < s.count,
                           let v = UInt32(String(String.UnicodeScalarView(s[(j + 2)...(j + 1 + len)])), radix: 16),
                           let sc = Unicode.Scalar(v) {
                            str.unicodeScalars.append(sc)
                            j += len
                        } else { str += "\\" + String(e) }
                    default: str += "\\" + String(e)
                    }
                    j += 2
                    continue
                }
                if d == c { closed = true; break }
                str.unicodeScalars.append(d)
                j += 1
            }
            guard closed else { throw .unsupported("cannot parse the chat template: unterminated string") }
            out.append(.string(str))
            i = j + 1
            continue
        }
        if c.properties.numericType != nil && c.isASCII {
            var j = i
            var isFloat = false
            while j < s.count, (s[j].isASCII && s[j].properties.numericType != nil) || s[j] == "_"
                    || (s[j] == "." && !isFloat && j + 1 < s.count && s[j + 1].isASCII && s[j + 1].properties.numericType != nil) {
                if s[j] == "." { isFloat = true }
                j += 1
            }
            let lit = String(String.UnicodeScalarView(s[i..<j])).replacingOccurrencesOfUnderscore()
            if isFloat { out.append(.double(Double(lit) ?? 0)) } else {
                guard let v = Int(lit) else {
                    throw .unsupported("the chat template has the integer literal \(lit.prefix(40)), which does not fit 64 bits")
                }
                out.append(.int(v))
            }
            i = j
            continue
        }
        if c == "_" || c.properties.isAlphabetic {
            var j = i
            while j < s.count, s[j] == "_" || s[j].properties.isAlphabetic || (s[j].isASCII && s[j].properties.numericType != nil) { j += 1 }
            out.append(.name(String(String.UnicodeScalarView(s[i..<j]))))
            i = j
            continue
        }
        if i + 2 < s.count, ops3.contains(String(String.UnicodeScalarView(s[i..<(i + 3)]))) {
            out.append(.op(String(String.UnicodeScalarView(s[i..<(i + 3)])))); i += 3; continue
        }
        if i + 1 < s.count, ops2.contains(String(String.UnicodeScalarView(s[i..<(i + 2)]))) {
            out.append(.op(String(String.UnicodeScalarView(s[i..<(i + 2)])))); i += 2; continue
        }
        if "+-*/%~<>=()[]{}.,:|!".unicodeScalars.contains(c) {
            out.append(.op(String(c))); i += 1; continue
        }
        throw .unsupported("cannot parse the chat template: unexpected character '\(c)'")
    }
    out.append(.end)
    return out
}

private extension String {
    func replacingOccurrencesOfUnderscore() -> String { String(filter { $0 != "_" }) }
}

// MARK: - AST

private indirect enum Expr {
    case literal(JinjaValue)
    case name(String)
    case list([Expr])
    case dict([(Expr, Expr)])
    case attribute(Expr, String)
    case index(Expr, Expr)
    case slice(Expr, Expr?, Expr?, Expr?)
    case call(Expr, [Expr], [(String, Expr)])
    case filter(Expr, String, [Expr], [(String, Expr)])
    case test(Expr, String, [Expr], negated: Bool)
    case unary(String, Expr)
    case binary(String, Expr, Expr)
    case and(Expr, Expr)
    case or(Expr, Expr)
    case conditional(Expr, Expr, Expr?)
}

private indirect enum Node {
    case text(String)
    case output(Expr)
    case ifBlock([(Expr, [Node])], [Node]?)
    case forBlock(targets: [String], iterable: Expr, condition: Expr?, body: [Node], elseBody: [Node]?)
    case set(target: String, attribute: String?, Expr)
    case blockSet(target: String, body: [Node])
    case macro(JinjaMacro)
    case loopControl(isBreak: Bool)
}

// MARK: - Expression parser

private struct ExpressionParser {
    var toks: [Tok]
    var pos = 0
    /// Nested sub-expressions being parsed, and its limit (bounds the parser's stack).
    var depth = 0
    let maxDepth: Int
    /// Tokens in one expression: bounds the depth of left-nested operator chains, which
    /// the parser builds in loops, so evaluating and releasing them stays shallow.
    static let maxTokens = 2048

    init(_ src: String, maxDepth: Int) throws(SpikeRunError) {
        toks = try tokenizeExpression(src)
        self.maxDepth = maxDepth
        guard toks.count <= Self.maxTokens else {
            throw .unsupported("the chat template has an expression of \(toks.count) tokens, over the limit of \(Self.maxTokens)")
        }
    }

    mutating func nest() throws(SpikeRunError) {
        depth += 1
        if depth > maxDepth {
            throw .unsupported("the chat template nests expressions deeper than the limit of \(maxDepth)")
        }
    }

    var peek: Tok { toks[pos] }
    mutating func advance() -> Tok { let t = toks[pos]; if pos < toks.count - 1 { pos += 1 }; return t }
    func isOp(_ o: String) -> Bool { peek == .op(o) }
    func isName(_ n: String) -> Bool { peek == .name(n) }
    mutating func expectOp(_ o: String) throws(SpikeRunError) {
        guard advance() == .op(o) else { throw .unsupported("cannot parse the chat template: expected '\(o)'") }
    }
    mutating func expectName() throws(SpikeRunError) -> String {
        guard case .name(let n) = advance() else { throw .unsupported("cannot parse the chat template: expected a name") }
        return n
    }
    var atEnd: Bool { peek == .end }

    mutating func parseExpression(allowConditional: Bool = true) throws(SpikeRunError) -> Expr {
        try nest()
        defer { depth -= 1 }
        let e = try parseOr()
        if allowConditional && isName("if") {
            _ = advance()
            let cond = try parseOr()
            var other: Expr? = nil
            if isName("else") { _ = advance(); other = try parseExpression() }
            return .conditional(e, cond, other)
        }
        return e
    }

    mutating func parseOr() throws(SpikeRunError) -> Expr {
        var e = try parseAnd()
        while isName("or") { _ = advance(); e = .or(e, try parseAnd()) }
        return e
    }

    mutating func parseAnd() throws(SpikeRunError) -> Expr {
        var e = try parseNot()
        while isName("and") { _ = advance(); e = .and(e, try parseNot()) }
        return e
    }

    mutating func parseNot() throws(SpikeRunError) -> Expr {
        try nest()
        defer { depth -= 1 }
        if isName("not") { _ = advance(); return .unary("not", try parseNot()) }
        return try parseCompare()
    }

    mutating func parseCompare() throws(SpikeRunError) -> Expr {
        var e = try parseConcat()
        while true {
            if case .op(let o) = peek, ["==", "!=", "<", ">", "<=", ">="].contains(o) {
                _ = advance(); e = .binary(o, e, try parseConcat())
            } else if isName("in") {
                _ = advance(); e = .binary("in", e, try parseConcat())
            } else if isName("not"), pos + 1 < toks.count, toks[pos + 1] == .name("in") {
                _ = advance(); _ = advance(); e = .unary("not", .binary("in", e, try parseConcat()))
            } else {
                return e
            }
        }
    }

    mutating func parseConcat() throws(SpikeRunError) -> Expr {
        var e = try parseAdditive()
        while isOp("~") { _ = advance(); e = .binary("~", e, try parseAdditive()) }
        return e
    }

    mutating func parseAdditive() throws(SpikeRunError) -> Expr {
        var e = try parseMultiplicative()
        while true {
            if isOp("+") { _ = advance(); e = .binary("+", e, try parseMultiplicative()) }
            else if isOp("-") { _ = advance(); e = .binary("-", e, try parseMultiplicative()) }
            else { return e }
        }
    }

    mutating func parseMultiplicative() throws(SpikeRunError) -> Expr {
        var e = try parseUnary()
        while true {
            if case .op(let o) = peek, ["*", "/", "//", "%"].contains(o) {
                _ = advance(); e = .binary(o, e, try parseUnary())
            } else { return e }
        }
    }

    mutating func parseUnary() throws(SpikeRunError) -> Expr {
        try nest()
        defer { depth -= 1 }
        if isOp("-") { _ = advance(); return .unary("-", try parseUnary()) }
        if isOp("+") { _ = advance(); return try parseUnary() }
        return try parsePostfix(try parsePrimary())
    }

    mutating func parsePrimary() throws(SpikeRunError) -> Expr {
        switch advance() {
        case .string(var s):
            while case .string(let more) = peek { s += more; _ = advance() }  // adjacent literals
            return .literal(.string(s))
        case .int(let i): return .literal(.int(i))
        case .double(let d): return .literal(.double(d))
        case .name(let n):
            switch n {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(n)
            }
        case .op("("):
            let e = try parseExpression()
            if isOp(",") {  // tuple: treat as a list
                var items = [e]
                while isOp(",") { _ = advance(); if isOp(")") { break }; items.append(try parseExpression()) }
                try expectOp(")")
                return .list(items)
            }
            try expectOp(")")
            return e
        case .op("["):
            var items: [Expr] = []
            while !isOp("]") {
                items.append(try parseExpression())
                if isOp(",") { _ = advance() } else { break }
            }
            try expectOp("]")
            return .list(items)
        case .op("{"):
            var items: [(Expr, Expr)] = []
            while !isOp("}") {
                let k = try parseExpression()
                try expectOp(":")
                items.append((k, try parseExpression()))
                if isOp(",") { _ = advance() } else { break }
            }
            try expectOp("}")
            return .dict(items)
        case let t:
            throw .unsupported("cannot parse the chat template: unexpected \(t) in an expression")
        }
    }

    mutating func parseArguments() throws(SpikeRunError) -> ([Expr], [(String, Expr)]) {
        var args: [Expr] = [], kwargs: [(String, Expr)] = []
        try expectOp("(")
        while !isOp(")") {
            if case .name(let n) = peek, pos + 1 < toks.count, toks[pos + 1] == .op("=") {
                _ = advance(); _ = advance()
                kwargs.append((n, try parseExpression()))
            } else {
                args.append(try parseExpression())
            }
            if isOp(",") { _ = advance() } else { break }
        }
        try expectOp(")")
        return (args, kwargs)
    }

    mutating func parsePostfix(_ base: Expr) throws(SpikeRunError) -> Expr {
        var e = base
        while true {
            if isOp(".") {
                _ = advance()
                e = .attribute(e, try expectName())
            } else if isOp("[") {
                _ = advance()
                var parts: [Expr?] = [nil]
                var isSlice = false
                while !isOp("]") {
                    if isOp(":") { _ = advance(); isSlice = true; parts.append(nil); continue }
                    parts[parts.count - 1] = try parseExpression()
                }
                try expectOp("]")
                if isSlice {
                    e = .slice(e, parts[0], parts.count > 1 ? parts[1] : nil, parts.count > 2 ? parts[2] : nil)
                } else {
                    guard let idx = parts[0] else { throw .unsupported("cannot parse the chat template: empty subscript") }
                    e = .index(e, idx)
                }
            } else if isOp("(") {
                let (a, k) = try parseArguments()
                e = .call(e, a, k)
            } else if isOp("|") {
                _ = advance()
                let name = try expectName()
                var a: [Expr] = [], k: [(String, Expr)] = []
                if isOp("(") { (a, k) = try parseArguments() }
                e = .filter(e, name, a, k)
            } else if isName("is") {
                _ = advance()
                var negated = false
                if isName("not") { _ = advance(); negated = true }
                var name = try expectName()
                if name == "none" || name == "None" { name = "none" }
                var args: [Expr] = []
                if isOp("(") {
                    args = try parseArguments().0
                } else if ["equalto", "eq", "sameas", "divisibleby", "ge", "gt", "le", "lt", "ne"].contains(name) {
                    args = [try parsePostfix(try parsePrimary())]
                }
                e = .test(e, name, args, negated: negated)
            } else {
                return e
            }
        }
    }
}

// MARK: - Statement parser

private struct TemplateParser {
    var segments: [Segment]
    var pos = 0
    /// Nested blocks being parsed, and its limit.
    var depth = 0
    let maxDepth: Int

    mutating func parse(until terminators: Set<String>) throws(SpikeRunError) -> ([Node], String?) {
        depth += 1
        defer { depth -= 1 }
        if depth > maxDepth {
            throw .unsupported("the chat template nests blocks deeper than the limit of \(maxDepth)")
        }
        var nodes: [Node] = []
        while pos < segments.count {
            let seg = segments[pos]
            pos += 1
            switch seg {
            case .text(let t): nodes.append(.text(t))
            case .output(let src):
                var p = try ExpressionParser(src, maxDepth: maxDepth)
                let e = try p.parseExpression()
                guard p.atEnd else { throw .unsupported("cannot parse the chat template: unexpected text in '{{\(src)}}'") }
                nodes.append(.output(e))
            case .statement(let src):
                var p = try ExpressionParser(src, maxDepth: maxDepth)
                guard case .name(let keyword) = p.advance() else {
                    throw .unsupported("cannot parse the chat template: empty statement")
                }
                if terminators.contains(keyword) {
                    pos -= 1
                    return (nodes, keyword)
                }
                switch keyword {
                case "if":
                    var branches: [(Expr, [Node])] = []
                    var cond = try p.parseExpression()
                    var elseBody: [Node]? = nil
                    while true {
                        let (body, end) = try parse(until: ["elif", "else", "endif"])
                        branches.append((cond, body))
                        guard let end else { throw .unsupported("cannot parse the chat template: missing 'endif'") }
                        let termSrc = statementSource(pos)
                        pos += 1
                        if end == "elif" {
                            var q = try ExpressionParser(termSrc, maxDepth: maxDepth)
                            _ = q.advance()
                            cond = try q.parseExpression()
                            continue
                        }
                        if end == "else" {
                            let (body2, end2) = try parse(until: ["endif"])
                            guard end2 != nil else { throw .unsupported("cannot parse the chat template: missing 'endif'") }
                            pos += 1
                            elseBody = body2
                        }
                        break
                    }
                    nodes.append(.ifBlock(branches, elseBody))
                case "for":
                    var targets = [try p.expectName()]
                    while p.isOp(",") { _ = p.advance(); targets.append(try p.expectName()) }
                    guard p.advance() == .name("in") else { throw .unsupported("cannot parse the chat template: expected 'in' in a for loop") }
                    let iterable = try p.parseExpression(allowConditional: false)
                    var condition: Expr? = nil
                    if p.isName("if") { _ = p.advance(); condition = try p.parseExpression(allowConditional: false) }
                    if p.isName("recursive") { throw .unsupported("the chat template uses a recursive for loop, which spikerun's Jinja subset does not support") }
                    let (body, end) = try parse(until: ["else", "endfor"])
                    guard let end else { throw .unsupported("cannot parse the chat template: missing 'endfor'") }
                    pos += 1
                    var elseBody: [Node]? = nil
                    if end == "else" {
                        let (b2, e2) = try parse(until: ["endfor"])
                        guard e2 != nil else { throw .unsupported("cannot parse the chat template: missing 'endfor'") }
                        pos += 1
                        elseBody = b2
                    }
                    nodes.append(.forBlock(targets: targets, iterable: iterable, condition: condition, body: body, elseBody: elseBody))
                case "set":
                    let name = try p.expectName()
                    var attribute: String? = nil
                    if p.isOp(".") { _ = p.advance(); attribute = try p.expectName() }
                    if p.atEnd && attribute == nil {  // {% set x %}…{% endset %}
                        let (body, end) = try parse(until: ["endset"])
                        guard end != nil else { throw .unsupported("cannot parse the chat template: missing 'endset'") }
                        pos += 1
                        nodes.append(.blockSet(target: name, body: body))
                        continue
                    }
                    guard p.isOp("=") else {
                        throw .unsupported("cannot parse the chat template: expected '=' in a set statement")
                    }
                    _ = p.advance()
                    var e = try p.parseExpression()
                    if p.isOp(",") {  // set x = a, b
                        var items = [e]
                        while p.isOp(",") { _ = p.advance(); items.append(try p.parseExpression()) }
                        e = .list(items)
                    }
                    nodes.append(.set(target: name, attribute: attribute, e))
                    continue
                case "macro":
                    let name = try p.expectName()
                    var params: [(String, Expr?)] = []
                    try p.expectOp("(")
                    while !p.isOp(")") {
                        let param = try p.expectName()
                        var def: Expr? = nil
                        if p.isOp("=") { _ = p.advance(); def = try p.parseExpression() }
                        params.append((param, def))
                        if p.isOp(",") { _ = p.advance() } else { break }
                    }
                    try p.expectOp(")")
                    let (body, end) = try parse(until: ["endmacro"])
                    guard end != nil else { throw .unsupported("cannot parse the chat template: missing 'endmacro'") }
                    pos += 1
                    nodes.append(.macro(JinjaMacro(name: name, parameters: params, body: body)))
                case "break", "continue":
                    nodes.append(.loopControl(isBreak: keyword == "break"))
                case "generation":  // transformers' assistant-mask marker: renders its body
                    let (body, end) = try parse(until: ["endgeneration"])
                    guard end != nil else { throw .unsupported("cannot parse the chat template: missing 'endgeneration'") }
                    pos += 1
                    nodes.append(contentsOf: body)
                default:
                    throw .unsupported("the chat template uses '{% \(keyword) %}', which spikerun's Jinja subset does not support")
                }
                guard p.atEnd || ["if", "for", "macro"].contains(keyword) else {
                    throw .unsupported("cannot parse the chat template: unexpected text in '{%\(src)%}'")
                }
            }
        }
        return (nodes, nil)
    }

    func statementSource(_ i: Int) -> String {
        if case .statement(let s) = segments[i] { return s }
        return ""
    }
}

// MARK: - Evaluation

/// What one render of an untrusted template may use. A chat template comes from the model
/// file, so a hostile one must end in a thrown error, never a trap, a hang or exhausted
/// memory; each limit names itself in the error. The defaults are far above what real chat
/// templates need (the longest ones render a conversation in a few thousand steps).
struct JinjaLimits: Sendable {
    /// Bytes of UTF-8 in the rendered text and in any one string the template builds.
    var maxStringBytes = 4 << 20
    /// Elements of any one list the template builds (`range()`, `+`, `*`, iteration of a string).
    var maxListCount = 100_000
    /// Evaluation steps: expressions, statements, loop iterations, value nodes visited by
    /// comparisons and printing, and one per 64 bytes of string work.
    var maxSteps = 5_000_000
    /// Nested macro calls.
    var maxCallDepth = 32
    /// Nested statements plus nested expressions while rendering (bounds the native stack).
    var maxRecursion = 200
    /// Nesting of lists, dicts and namespaces inside each other.
    var maxNesting = 32
    /// Bytes of template source.
    var maxSourceBytes = 1 << 20
    /// Nested blocks or brackets while parsing.
    var maxParseDepth = 64

    static let `default` = JinjaLimits()
}

struct ChatTemplate {
    private let nodes: [Node]
    let limits: JinjaLimits

    init(_ source: String, limits: JinjaLimits = .default) throws(SpikeRunError) {
        self.limits = limits
        do throws(SpikeRunError) {
            guard source.utf8.count <= limits.maxSourceBytes else {
                throw .unsupported("the chat template is \(source.utf8.count) bytes, over the limit of \(limits.maxSourceBytes) bytes")
            }
            var parser = TemplateParser(segments: try lex(source), maxDepth: limits.maxParseDepth)
            let (nodes, end) = try parser.parse(until: [])
            if let end { throw .unsupported("cannot parse the chat template: unexpected '{% \(end) %}'") }
            self.nodes = nodes
        } catch {
            throw SpikeRunError(error.kind, oneLine(error.message))
        }
    }

    func render(_ context: [String: JinjaValue]) throws(SpikeRunError) -> String {
        var r = Renderer(scopes: [context], limits: limits)
        var out = ""
        do throws(SpikeRunError) {
            try r.run(nodes, &out)
        } catch {
            throw SpikeRunError(error.kind, oneLine(error.message))
        }
        return out
    }
}

/// An error message quoting template text stays one short line.
private func oneLine(_ message: String) -> String {
    var out = String.UnicodeScalarView()
    for c in message.unicodeScalars {
        if out.count >= 300 { out.append(contentsOf: "…".unicodeScalars); break }
        if c.value < 0x20 || c.value == 0x7F || c == "\u{2028}" || c == "\u{2029}" || c == "\u{85}" {
            out.append(" ")
        } else {
            out.append(c)
        }
    }
    return String(out)
}

private struct Renderer {
    var scopes: [[String: JinjaValue]]
    let limits: JinjaLimits
    /// Set by {% break %} / {% continue %} until the enclosing loop handles it.
    var pendingLoopControl: Bool? = nil  // true = break
    var steps = 0
    var recursion = 0
    var callDepth = 0

    init(scopes: [[String: JinjaValue]], limits: JinjaLimits) {
        self.scopes = scopes
        self.limits = limits
    }

    static let builtins: Set<String> = ["raise_exception", "strftime_now", "namespace", "range", "dict"]

    // MARK: Limits

    mutating func charge(_ n: Int = 1) throws(SpikeRunError) {
        steps += n
        if steps > limits.maxSteps {
            throw .invalidArgument("the chat template runs past the limit of \(limits.maxSteps) evaluation steps")
        }
    }

    /// Charges the work of producing or scanning `bytes` bytes of string.
    mutating func chargeBytes(_ bytes: Int) throws(SpikeRunError) { try charge(1 + bytes / 64) }

    mutating func enter() throws(SpikeRunError) {
        recursion += 1
        if recursion > limits.maxRecursion {
            throw .invalidArgument("the chat template nests statements and expressions deeper than the limit of \(limits.maxRecursion)")
        }
        try charge()
    }

    func checkString(_ n: Int) throws(SpikeRunError) {
        if n > limits.maxStringBytes {
            throw .invalidArgument("the chat template builds a string of \(n) bytes, over the limit of \(limits.maxStringBytes) bytes")
        }
    }

    func checkCount(_ n: Int) throws(SpikeRunError) {
        if n > limits.maxListCount {
            throw .invalidArgument("the chat template builds a list of \(n) elements, over the limit of \(limits.maxListCount)")
        }
    }

    mutating func string(_ s: String) throws(SpikeRunError) -> JinjaValue {
        try checkString(s.utf8.count)
        try chargeBytes(s.utf8.count)
        return .string(s)
    }

    mutating func list(_ l: [JinjaValue]) throws(SpikeRunError) -> JinjaValue {
        try checkCount(l.count)
        try charge(1 + l.count / 64)
        return .list(l)
    }

    /// Checks a list, dict or namespace the template builds: nesting depth, and (for a value
    /// stored in a namespace) that it holds no namespace, so no value can contain itself.
    /// Every node visited is charged, so a widely shared value cannot blow up the walk.
    mutating func checkShape(_ v: JinjaValue, intoNamespace: Bool = false, depth: Int = 0) throws(SpikeRunError) {
        try charge()
        if depth > limits.maxNesting {
            throw .invalidArgument("the chat template nests lists and dicts deeper than the limit of \(limits.maxNesting)")
        }
        switch v {
        case .list(let l): for x in l { try checkShape(x, intoNamespace: intoNamespace, depth: depth + 1) }
        case .dict(let d): for (_, x) in d { try checkShape(x, intoNamespace: intoNamespace, depth: depth + 1) }
        case .namespace(let ns):
            if intoNamespace {
                throw .unsupported("the chat template stores a namespace inside a namespace, which spikerun's Jinja subset does not support")
            }
            for (_, x) in ns.values { try checkShape(x, depth: depth + 1) }
        default: break
        }
    }

    func lookup(_ name: String) -> JinjaValue {
        for s in scopes.reversed() { if let v = s[name] { return v } }
        return Self.builtins.contains(name) ? .builtin(name) : .undefined
    }

    mutating func assign(_ name: String, _ v: JinjaValue) { scopes[scopes.count - 1][name] = v }

    mutating func run(_ nodes: [Node], _ out: inout String) throws(SpikeRunError) {
        try enter()
        defer { recursion -= 1 }
        for n in nodes {
            if pendingLoopControl != nil { return }
            try charge()
            switch n {
            case .text(let t): try append(t, to: &out)
            case .output(let e): try append(try str(try eval(e)), to: &out)
            case .ifBlock(let branches, let elseBody):
                var done = false
                for (cond, body) in branches where try eval(cond).isTruthy {
                    try run(body, &out); done = true; break
                }
                if !done, let elseBody { try run(elseBody, &out) }
            case .forBlock(let targets, let iterable, let condition, let body, let elseBody):
                var items = try iterate(try eval(iterable))
                if let condition {
                    var kept: [JinjaValue] = []
                    for item in items {
                        scopes.append([:])
                        bind(targets, item)
                        let keep = try eval(condition).isTruthy
                        scopes.removeLast()
                        if keep { kept.append(item) }
                    }
                    items = kept
                }
                if items.isEmpty {
                    if let elseBody { try run(elseBody, &out) }
                    continue
                }
                for (i, item) in items.enumerated() {
                    try charge()
                    scopes.append([:])
                    bind(targets, item)
                    let loop: [(String, JinjaValue)] = [
                        ("index", .int(i + 1)), ("index0", .int(i)),
                        ("revindex", .int(items.count - i)), ("revindex0", .int(items.count - i - 1)),
                        ("first", .bool(i == 0)), ("last", .bool(i == items.count - 1)),
                        ("length", .int(items.count)),
                        ("previtem", i > 0 ? items[i - 1] : .undefined),
                        ("nextitem", i + 1 < items.count ? items[i + 1] : .undefined),
                    ]
                    assign("loop", .dict(loop))
                    try run(body, &out)
                    scopes.removeLast()
                    if let isBreak = pendingLoopControl {
                        pendingLoopControl = nil
                        if isBreak { break }
                    }
                }
            case .set(let target, let attribute, let e):
                let v = try eval(e)
                if let attribute {
                    guard case .namespace(let ns) = lookup(target) else {
                        throw .unsupported("the chat template sets '\(target).\(attribute)' on something that is not a namespace")
                    }
                    try checkShape(v, intoNamespace: true)
                    if let i = ns.values.firstIndex(where: { $0.0 == attribute }) { ns.values[i].1 = v }
                    else { ns.values.append((attribute, v)) }
                } else {
                    assign(target, v)
                }
            case .blockSet(let target, let body):
                var text = ""
                try run(body, &text)
                assign(target, .string(text))
            case .macro(let m):
                assign(m.name, .macro(m))
            case .loopControl(let isBreak):
                pendingLoopControl = isBreak
            }
        }
    }

    /// Appends rendered text, within the output limit.
    mutating func append(_ s: String, to out: inout String) throws(SpikeRunError) {
        let n = out.utf8.count + s.utf8.count
        if n > limits.maxStringBytes {
            throw .invalidArgument("the chat template renders more than the limit of \(limits.maxStringBytes) bytes")
        }
        try chargeBytes(s.utf8.count)
        out += s
    }

    mutating func callMacro(_ m: JinjaMacro, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws(SpikeRunError) -> JinjaValue {
        callDepth += 1
        defer { callDepth -= 1 }
        if callDepth > limits.maxCallDepth {
            throw .invalidArgument("the chat template nests macro calls deeper than the limit of \(limits.maxCallDepth) (macro '\(m.name)')")
        }
        var frame: [String: JinjaValue] = [:]
        var extra: [JinjaValue] = []
        for (i, a) in args.enumerated() {
            if i < m.parameters.count { frame[m.parameters[i].0] = a } else { extra.append(a) }
        }
        var extraKw: [(String, JinjaValue)] = []
        for (k, v) in kwargs {
            if m.parameters.contains(where: { $0.0 == k }) { frame[k] = v } else { extraKw.append((k, v)) }
        }
        scopes.append(frame)
        let savedControl = pendingLoopControl
        pendingLoopControl = nil
        defer { scopes.removeLast(); pendingLoopControl = savedControl }
        for (name, def) in m.parameters where frame[name] == nil {
            let v = try def.map { x throws(SpikeRunError) in try eval(x) } ?? .undefined
            scopes[scopes.count - 1][name] = v
        }
        scopes[scopes.count - 1]["varargs"] = .list(extra)
        scopes[scopes.count - 1]["kwargs"] = .dict(extraKw)
        var out = ""
        try run(m.body, &out)
        return .string(out)
    }

    mutating func bind(_ targets: [String], _ item: JinjaValue) {
        if targets.count == 1 { assign(targets[0], item); return }
        let parts: [JinjaValue]
        if case .list(let l) = item { parts = l } else { parts = [] }
        for (i, t) in targets.enumerated() { assign(t, i < parts.count ? parts[i] : .undefined) }
    }

    mutating func iterate(_ v: JinjaValue) throws(SpikeRunError) -> [JinjaValue] {
        switch v {
        case .list(let l): try charge(1 + l.count / 64); return l
        case .dict(let d): try charge(1 + d.count / 64); return d.map { .string($0.0) }
        case .string(let s):
            try checkCount(s.unicodeScalars.count)
            try chargeBytes(s.utf8.count)
            return s.unicodeScalars.map { .string(String($0)) }
        case .undefined, .none: return []
        default: throw .invalidArgument("the chat template iterates over a \(v.typeName)")
        }
    }

    mutating func eval(_ e: Expr) throws(SpikeRunError) -> JinjaValue {
        try enter()
        defer { recursion -= 1 }
        switch e {
        case .literal(let v): return v
        case .name(let n): return lookup(n)
        case .list(let items):
            var out: [JinjaValue] = []
            for i in items { out.append(try eval(i)) }
            let v = JinjaValue.list(out)
            try checkShape(v)
            return v
        case .dict(let items):
            var out: [(String, JinjaValue)] = []
            for (k, v) in items {
                let key = try str(try eval(k))
                let value = try eval(v)
                if let i = out.firstIndex(where: { $0.0 == key }) { out[i].1 = value } else { out.append((key, value)) }
            }
            let v = JinjaValue.dict(out)
            try checkShape(v)
            return v
        case .attribute(let base, let name):
            let v = try eval(base)
            // Jinja2's Undefined raises on any attribute or item access.
            if v.isUndefined { throw .invalidArgument("the chat template reads '.\(name)' of an undefined value") }
            return member(v, name)
        case .index(let base, let idx):
            let v = try eval(base)
            let i = try eval(idx)
            if v.isUndefined { throw .invalidArgument("the chat template reads [\(i.shortDescription)] of an undefined value") }
            return try subscriptValue(v, i)
        case .slice(let base, let a, let b, let c):
            let v = try eval(base)
            let start = try a.map { x throws(SpikeRunError) in try eval(x) }
            let stop = try b.map { x throws(SpikeRunError) in try eval(x) }
            let step = try c.map { x throws(SpikeRunError) in try eval(x) }
            return try slice(v, start, stop, step)
        case .call(let callee, let args, let kwargs):
            var a: [JinjaValue] = []
            for x in args { a.append(try eval(x)) }
            var k: [(String, JinjaValue)] = []
            for (n, x) in kwargs { k.append((n, try eval(x))) }
            return try call(callee, a, k)
        case .filter(let base, let name, let args, let kwargs):
            let v = try eval(base)
            var a: [JinjaValue] = []
            for x in args { a.append(try eval(x)) }
            var k: [(String, JinjaValue)] = []
            for (n, x) in kwargs { k.append((n, try eval(x))) }
            return try applyFilter(name, v, a, k)
        case .test(let base, let name, let args, let negated):
            let v = try eval(base)
            var a: [JinjaValue] = []
            for x in args { a.append(try eval(x)) }
            let r = try applyTest(name, v, a)
            return .bool(negated ? !r : r)
        case .unary(let op, let x):
            let v = try eval(x)
            if op == "not" { return .bool(!v.isTruthy) }
            switch v {
            case .int(let i):
                let (r, overflow) = 0.subtractingReportingOverflow(i)
                if overflow { throw Self.overflow("-", i, nil) }
                return .int(r)
            case .double(let d): return .double(-d)
            default: throw .invalidArgument("the chat template negates a \(v.typeName)")
            }
        case .and(let a, let b):
            let x = try eval(a)
            return x.isTruthy ? try eval(b) : x
        case .or(let a, let b):
            let x = try eval(a)
            return x.isTruthy ? x : try eval(b)
        case .conditional(let a, let cond, let other):
            if try eval(cond).isTruthy { return try eval(a) }
            return try other.map { x throws(SpikeRunError) in try eval(x) } ?? .undefined
        case .binary(let op, let a, let b):
            return try binary(op, try eval(a), try eval(b))
        }
    }

    // MARK: Printing and comparing (bounded)

    /// `str(value)` as Python/Jinja prints it.
    mutating func str(_ v: JinjaValue) throws(SpikeRunError) -> String {
        switch v {
        case .undefined: return ""
        case .string(let s): return s
        default:
            var out = ""
            try appendRepr(v, &out)
            return out
        }
    }

    /// Python `repr`, within the string and step limits.
    mutating func appendRepr(_ v: JinjaValue, _ out: inout String) throws(SpikeRunError) {
        try charge()
        switch v {
        case .list(let l):
            out += "["
            for (i, x) in l.enumerated() {
                if i > 0 { out += ", " }
                try appendRepr(x, &out)
            }
            out += "]"
        case .dict(let d):
            out += "{"
            for (i, (k, x)) in d.enumerated() {
                if i > 0 { out += ", " }
                out += JinjaValue.pythonStringRepr(k) + ": "
                try appendRepr(x, &out)
            }
            out += "}"
        default:
            let s = v.repr
            try chargeBytes(s.utf8.count)
            out += s
        }
        try checkString(out.utf8.count)
    }

    /// JSON as transformers' `tojson` filter writes it: Python's `json.dumps` with
    /// ensure_ascii=False and ", " / ": " separators.
    mutating func appendJSON(_ v: JinjaValue, indent: Int?, level: Int, _ out: inout String) throws(SpikeRunError) {
        try charge()
        func pad(_ n: Int) -> String { "\n" + String(repeating: " ", count: n) }
        switch v {
        case .list(let l):
            if l.isEmpty { out += "[]"; break }
            out += "["
            for (i, x) in l.enumerated() {
                if i > 0 { out += indent == nil ? ", " : "," }
                if let indent { out += pad(indent * (level + 1)) }
                try appendJSON(x, indent: indent, level: level + 1, &out)
            }
            if let indent { out += pad(indent * level) }
            out += "]"
        case .dict(let d):
            if d.isEmpty { out += "{}"; break }
            out += "{"
            for (i, (k, x)) in d.enumerated() {
                if i > 0 { out += indent == nil ? ", " : "," }
                if let indent { out += pad(indent * (level + 1)) }
                out += JinjaValue.jsonString(k) + ": "
                try appendJSON(x, indent: indent, level: level + 1, &out)
            }
            if let indent { out += pad(indent * level) }
            out += "}"
        case .namespace(let ns):
            try appendJSON(.dict(ns.values), indent: indent, level: level, &out)
        default:
            let s = v.json(indent: nil)
            try chargeBytes(s.utf8.count)
            out += s
        }
        try checkString(out.utf8.count)
    }

    /// Python `==`, charging every node compared.
    mutating func equal(_ a: JinjaValue, _ b: JinjaValue) throws(SpikeRunError) -> Bool {
        try charge()
        switch (a, b) {
        case (.list(let x), .list(let y)):
            guard x.count == y.count else { return false }
            for (p, q) in zip(x, y) where !(try equal(p, q)) { return false }
            return true
        case (.dict(let x), .dict(let y)):
            guard x.count == y.count else { return false }
            for (k, v) in x {
                guard let other = y.first(where: { $0.0 == k }) else { return false }
                if !(try equal(v, other.1)) { return false }
            }
            try charge(x.count * x.count / 64)
            return true
        case (.string(let x), .string(let y)):
            try chargeBytes(min(x.utf8.count, y.utf8.count))
            return JinjaValue.equal(a, b)
        default:
            return JinjaValue.equal(a, b)
        }
    }

    func member(_ v: JinjaValue, _ name: String) -> JinjaValue {
        switch v {
        case .dict(let d): return d.first(where: { $0.0 == name })?.1 ?? .undefined
        case .namespace(let ns): return ns.values.first(where: { $0.0 == name })?.1 ?? .undefined
        default: return .undefined
        }
    }

    mutating func subscriptValue(_ v: JinjaValue, _ i: JinjaValue) throws(SpikeRunError) -> JinjaValue {
        switch (v, i) {
        case (.list(let l), .int(let k)):
            let j = k < 0 ? l.count + k : k
            return j >= 0 && j < l.count ? l[j] : .undefined
        case (.string(let s), .int(let k)):
            try chargeBytes(s.utf8.count)
            let chars = s.scalars
            let j = k < 0 ? chars.count + k : k
            return j >= 0 && j < chars.count ? .string(String(chars[j])) : .undefined
        case (.dict, .string(let k)), (.namespace, .string(let k)):
            return member(v, k)
        default:
            return .undefined
        }
    }

    mutating func slice(_ v: JinjaValue, _ a: JinjaValue?, _ b: JinjaValue?, _ c: JinjaValue?) throws(SpikeRunError) -> JinjaValue {
        func intOrNil(_ x: JinjaValue?) -> Int? { if case .int(let i)? = x { return i }; return nil }
        let step = intOrNil(c) ?? 1
        guard step != 0 else { throw .invalidArgument("the chat template slices with step 0") }
        func pick(_ count: Int) -> [Int] {
            func norm(_ x: Int?, _ def: Int) -> Int {
                guard var x else { return def }
                if x < 0 { x += count }
                return step > 0 ? min(max(x, 0), count) : min(max(x, -1), count - 1)
            }
            var out: [Int] = []
            // The index stays within [-1, count]; a step past that ends the slice (no overflow).
            if step > 0 {
                var i = norm(intOrNil(a), 0); let stop = norm(intOrNil(b), count)
                while i < stop {
                    out.append(i)
                    if step >= stop - i { break }
                    i += step
                }
            } else {
                var i = norm(intOrNil(a), count - 1); let stop = norm(intOrNil(b), -1)
                while i > stop {
                    out.append(i)
                    if step <= stop - i { break }
                    i += step
                }
            }
            return out
        }
        switch v {
        case .list(let l):
            try charge(1 + l.count / 64)
            return .list(pick(l.count).map { l[$0] })
        case .string(let s):
            try chargeBytes(s.utf8.count)
            let chars = s.scalars
            return .string(stringFromScalars(pick(chars.count).map { chars[$0] }))
        default: return .undefined
        }
    }

    static func overflow(_ op: String, _ x: Int, _ y: Int?) -> SpikeRunError {
        let what = y.map { "\(x) \(op) \($0)" } ?? "\(op)\(x)"
        return .invalidArgument("the chat template's integer arithmetic overflows 64 bits (\(what))")
    }

    mutating func binary(_ op: String, _ a: JinjaValue, _ b: JinjaValue) throws(SpikeRunError) -> JinjaValue {
        switch op {
        case "==": return .bool(try equal(a, b))
        case "!=": return .bool(!(try equal(a, b)))
        case "~":
            let x = try str(a), y = try str(b)
            try checkString(x.utf8.count + y.utf8.count)
            return try string(x + y)
        case "in":
            switch b {
            case .string(let s):
                let sub = try str(a)
                try chargeBytes(s.utf8.count)
                return .bool(s.scalarFind(sub) != nil)
            case .list(let l):
                for x in l where try equal(x, a) { return .bool(true) }
                return .bool(false)
            case .dict(let d):
                let key = try str(a)
                try charge(1 + d.count / 64)
                return .bool(d.contains { $0.0 == key })
            case .undefined, .none: return .bool(false)
            default: throw .invalidArgument("the chat template tests 'in' on a \(b.typeName)")
            }
        case "<", ">", "<=", ">=":
            let r: Bool
            if case .string(let x) = a, case .string(let y) = b {
                try chargeBytes(min(x.utf8.count, y.utf8.count))
                switch op { case "<": r = x < y; case ">": r = x > y; case "<=": r = x <= y; default: r = x >= y }
            } else if let x = a.number, let y = b.number {
                switch op { case "<": r = x < y; case ">": r = x > y; case "<=": r = x <= y; default: r = x >= y }
            } else {
                throw .invalidArgument("the chat template compares a \(a.typeName) with a \(b.typeName)")
            }
            return .bool(r)
        case "+":
            switch (a, b) {
            case (.string(let x), .string(let y)):
                try checkString(x.utf8.count + y.utf8.count)
                return try string(x + y)
            case (.list(let x), .list(let y)):
                try checkCount(x.count + y.count)
                return try list(x + y)
            case (.int(let x), .int(let y)):
                let (r, o) = x.addingReportingOverflow(y)
                if o { throw Self.overflow("+", x, y) }
                return .int(r)
            default:
                if let x = a.number, let y = b.number { return .double(x + y) }
                throw .invalidArgument("the chat template adds a \(a.typeName) and a \(b.typeName)")
            }
        case "-", "*", "/", "//", "%":
            if op == "*" {
                switch (a, b) {
                case (.string(let s), .int(let n)), (.int(let n), .string(let s)):
                    let count = max(0, n)
                    let (bytes, o) = s.utf8.count.multipliedReportingOverflow(by: count)
                    try checkString(o ? Int.max : bytes)
                    return try string(String(repeating: s, count: count))
                case (.list(let l), .int(let n)), (.int(let n), .list(let l)):
                    let count = max(0, n)
                    let (total, o) = l.count.multipliedReportingOverflow(by: count)
                    try checkCount(o ? Int.max : total)
                    return try list(Array([[JinjaValue]](repeating: l, count: count).joined()))
                default: break
                }
            }
            if op == "%", case .string = a { throw .unsupported("the chat template uses '%' string formatting, which spikerun's Jinja subset does not support") }
            if case .int(let x) = a, case .int(let y) = b {
                switch op {
                case "-":
                    let (r, o) = x.subtractingReportingOverflow(y)
                    if o { throw Self.overflow("-", x, y) }
                    return .int(r)
                case "*":
                    let (r, o) = x.multipliedReportingOverflow(by: y)
                    if o { throw Self.overflow("*", x, y) }
                    return .int(r)
                case "/": guard y != 0 else { break }; return .double(Double(x) / Double(y))
                case "//":
                    guard y != 0 else { break }
                    // Python floors the quotient; Swift truncates toward zero.
                    let (q, o) = x.dividedReportingOverflow(by: y)
                    if o { throw Self.overflow("//", x, y) }
                    return .int(q * y != x && (x < 0) != (y < 0) ? q - 1 : q)
                default:
                    guard y != 0 else { break }
                    // Python's remainder takes the divisor's sign. Int.min % -1 is 0 (no overflow).
                    let (r, o) = x.remainderReportingOverflow(dividingBy: y)
                    if o { return .int(0) }
                    return .int(r != 0 && (r < 0) != (y < 0) ? r + y : r)
                }
                throw .invalidArgument("the chat template divides by zero")
            }
            if let x = a.number, let y = b.number {
                switch op {
                case "-": return .double(x - y)
                case "*": return .double(x * y)
                case "/": return .double(x / y)
                case "//": return .double((x / y).rounded(.down))
                default: return .double(x - y * (x / y).rounded(.down))
                }
            }
            throw .invalidArgument("the chat template applies '\(op)' to a \(a.typeName) and a \(b.typeName)")
        default:
            throw .unsupported("the chat template uses operator '\(op)'")
        }
    }

    // MARK: Calls

    mutating func call(_ callee: Expr, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws(SpikeRunError) -> JinjaValue {
        if case .attribute(let baseExpr, let method) = callee {
            let base = try eval(baseExpr)
            return try callMethod(base, method, args, kwargs)
        }
        guard case .name(let fn) = callee else {
            throw .unsupported("the chat template calls an expression, which spikerun's Jinja subset does not support")
        }
        let target = lookup(fn)
        if case .macro(let m) = target { return try callMacro(m, args, kwargs) }
        guard case .builtin = target else {
            throw .unsupported("the chat template calls '\(fn)()', which spikerun's Jinja subset does not provide")
        }
        switch fn {
        case "strftime_now":
            return .string(strftimeNow(try args.first.map { x throws(SpikeRunError) in try str(x) } ?? "%Y-%m-%d"))
        case "raise_exception":
            throw .invalidArgument("the chat template rejected the conversation: \(try args.first.map { x throws(SpikeRunError) in try str(x) } ?? "")")
        case "namespace":
            var values: [(String, JinjaValue)] = []
            if case .dict(let d)? = args.first { values = d }
            for (k, v) in kwargs {
                if let i = values.firstIndex(where: { $0.0 == k }) { values[i].1 = v } else { values.append((k, v)) }
            }
            try checkShape(.dict(values), intoNamespace: true)
            return .namespace(JinjaNamespace(values))
        case "range":
            let ints = args.compactMap { v -> Int? in if case .int(let i) = v { return i }; return nil }
            guard ints.count == args.count, !ints.isEmpty else { throw .invalidArgument("the chat template calls range() with non-integers") }
            let (lo, hi, st) = ints.count == 1 ? (0, ints[0], 1) : (ints[0], ints[1], ints.count > 2 ? ints[2] : 1)
            guard st != 0 else { throw .invalidArgument("the chat template calls range() with step 0") }
            // The element count, without overflow: the span as an unsigned distance.
            var count = 0
            if st > 0 && hi > lo {
                let span = UInt(bitPattern: hi &- lo)
                count = Int(clamping: (span - 1) / UInt(st) + 1)
            } else if st < 0 && hi < lo {
                let span = UInt(bitPattern: lo &- hi)
                count = Int(clamping: (span - 1) / st.magnitude + 1)
            }
            try checkCount(count)
            try charge(1 + count / 64)
            return .list((0..<count).map { .int(lo &+ $0 &* st) })
        case "dict":
            let v = JinjaValue.dict(kwargs)
            try checkShape(v)
            return v
        default:
            throw .unsupported("the chat template calls '\(fn)()', which spikerun's Jinja subset does not provide")
        }
    }

    mutating func callMethod(_ base: JinjaValue, _ method: String, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws(SpikeRunError) -> JinjaValue {
        switch base {
        case .string(let s):
            try chargeBytes(s.utf8.count)
            let arg0 = try args.first.map { x throws(SpikeRunError) in try str(x) }
            switch method {
            case "strip": return .string(pyStrip(s, arg0, left: true, right: true))
            case "lstrip": return .string(pyStrip(s, arg0, left: true, right: false))
            case "rstrip": return .string(pyStrip(s, arg0, left: false, right: true))
            case "upper": return try string(s.uppercased())
            case "lower": return try string(s.lowercased())
            case "title": return try string(titleCase(s))
            case "capitalize": return try string(capitalize(s))
            case "startswith", "endswith":
                var candidates: [String] = []
                if case .list(let l)? = args.first {
                    for x in l { candidates.append(try str(x)) }
                } else {
                    candidates = [arg0 ?? ""]
                }
                try charge(candidates.count)
                return .bool(candidates.contains { method == "startswith" ? s.scalarHasPrefix($0) : s.scalarHasSuffix($0) })
            case "split":
                if let sep = arg0, !(args.first.map { if case .none = $0 { return true }; return false } ?? false) {
                    var limit = -1
                    if args.count > 1, case .int(let m) = args[1] { limit = m }
                    return try list(pySplit(s, sep, limit).map { .string($0) })
                }
                return try list(s.unicodeScalars.split(whereSeparator: { $0.properties.isWhitespace })
                    .map { .string(stringFromScalars($0)) })
            case "replace":
                guard args.count >= 2 else { break }
                return try string(try replaceAll(s, try str(args[0]), try str(args[1])))
            case "find":
                guard let sub = arg0 else { break }
                return .int(s.scalarFind(sub) ?? -1)
            case "count":
                guard let sub = arg0, !sub.isEmpty else { break }
                return .int(pySplit(s, sub, -1).count - 1)
            default: break
            }
        case .dict(let d):
            try charge(1 + d.count / 64)
            switch method {
            case "get":
                let key = try args.first.map { x throws(SpikeRunError) in try str(x) } ?? ""
                return d.first(where: { $0.0 == key })?.1 ?? (args.count > 1 ? args[1] : .none)
            case "items":
                let v = JinjaValue.list(d.map { .list([.string($0.0), $0.1]) })
                try checkShape(v)
                return v
            case "keys": return .list(d.map { .string($0.0) })
            case "values": return .list(d.map { $0.1 })
            default: break
            }
        default: break
        }
        throw .unsupported("the chat template calls '.\(method)()' on a \(base.typeName), which spikerun's Jinja subset does not support")
    }

    // MARK: Filters and tests

    /// The text of an argument that names something (an attribute, a test, a separator).
    mutating func argText(_ args: [JinjaValue], _ i: Int) throws(SpikeRunError) -> String? {
        i < args.count ? try str(args[i]) : nil
    }

    mutating func applyFilter(_ name: String, _ v: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws(SpikeRunError) -> JinjaValue {
        try charge()
        switch name {
        case "trim":
            let s = try str(v)
            try chargeBytes(s.utf8.count)
            return .string(pyStrip(s, try argText(args, 0), left: true, right: true))
        case "length", "count":
            switch v {
            case .string(let s): try chargeBytes(s.utf8.count); return .int(s.unicodeScalars.count)
            case .list(let l): return .int(l.count)
            case .dict(let d): return .int(d.count)
            default: return .int(0)
            }
        case "upper": return try string(try str(v).uppercased())
        case "lower": return try string(try str(v).lowercased())
        case "title": return try string(titleCase(try str(v)))
        case "capitalize": return try string(capitalize(try str(v)))
        case "string": return .string(try str(v))
        case "safe": return v
        case "int":
            switch v {
            case .int: return v
            case .double(let d): return .int(try Self.integer(d))
            case .bool(let b): return .int(b ? 1 : 0)
            case .string(let s): return .int(Int(s.trimmingCharacters(in: " ")) ?? 0)
            default: return .int(0)
            }
        case "float":
            if let n = v.number { return .double(n) }
            return .double(Double(try str(v)) ?? 0)
        case "list": return try list(try iterate(v))
        case "first": return try iterate(v).first ?? .undefined
        case "last": return try iterate(v).last ?? .undefined
        case "reverse":
            if case .string(let s) = v { try chargeBytes(s.utf8.count); return .string(stringFromScalars(s.unicodeScalars.reversed())) }
            return .list(try iterate(v).reversed())
        case "join":
            let sep = try argText(args, 0) ?? ""
            var items = try iterate(v)
            if let attr = kwargs.first(where: { $0.0 == "attribute" })?.1 {
                let a = try str(attr)
                items = items.map { member($0, a) }
            }
            var out = ""
            for (i, x) in items.enumerated() {
                if i > 0 { try append(sep, to: &out) }
                try append(try str(x), to: &out)
            }
            return .string(out)
        case "default", "d":
            let fallback = args.first ?? .string("")
            let boolean = args.count > 1 ? args[1].isTruthy : false
            if v.isUndefined || (boolean && !v.isTruthy) { return fallback }
            return v
        case "tojson":
            var indent: Int? = nil
            if case .int(let i)? = (kwargs.first(where: { $0.0 == "indent" })?.1 ?? args.first) {
                // Python writes newlines only for indent <= 0; a larger indent than the
                // string limit could never fit.
                indent = min(max(i, 0), limits.maxStringBytes)
            }
            var out = ""
            try appendJSON(v, indent: indent, level: 0, &out)
            return .string(out)
        case "items":
            if case .dict(let d) = v {
                let r = JinjaValue.list(d.map { .list([.string($0.0), $0.1]) })
                try checkShape(r)
                return r
            }
            return .list([])
        case "replace":
            guard args.count >= 2 else { break }
            return try string(try replaceAll(try str(v), try str(args[0]), try str(args[1])))
        case "selectattr", "rejectattr":
            guard let attr = try argText(args, 0) else { break }
            let test = try argText(args, 1)
            let keep = name == "selectattr"
            var out: [JinjaValue] = []
            for item in try iterate(v) {
                try charge()
                let value = member(item, attr)
                let r: Bool
                if let test { r = try applyTest(test, value, Array(args.dropFirst(2))) } else { r = value.isTruthy }
                if r == keep { out.append(item) }
            }
            return .list(out)
        case "select", "reject":
            let keep = name == "select"
            let test = try argText(args, 0)
            var out: [JinjaValue] = []
            for item in try iterate(v) {
                try charge()
                let r: Bool
                if let test { r = try applyTest(test, item, Array(args.dropFirst())) } else { r = item.isTruthy }
                if r == keep { out.append(item) }
            }
            return .list(out)
        case "map":
            if let attrValue = kwargs.first(where: { $0.0 == "attribute" })?.1 {
                let attr = try str(attrValue)
                let def = kwargs.first(where: { $0.0 == "default" })?.1
                return .list(try iterate(v).map { x in
                    let m = member(x, attr)
                    if m.isUndefined, let def { return def }
                    return m
                })
            }
            guard let filterName = try argText(args, 0) else { break }
            var out: [JinjaValue] = []
            for x in try iterate(v) { out.append(try applyFilter(filterName, x, Array(args.dropFirst()), [])) }
            return .list(out)
        case "unique":
            var out: [JinjaValue] = []
            for x in try iterate(v) {
                var seen = false
                for y in out where try equal(y, x) { seen = true; break }
                if !seen { out.append(x) }
            }
            return .list(out)
        case "abs":
            if case .int(let i) = v {
                guard i != .min else { throw Self.overflow("abs ", i, nil) }
                return .int(abs(i))
            }
            return .double(abs(v.number ?? 0))
        default: break
        }
        throw .unsupported("the chat template uses the filter '\(name)', which spikerun's Jinja subset does not provide")
    }

    /// Python `int(float)`: truncates toward zero; NaN, infinities and values past 64 bits are errors.
    static func integer(_ d: Double) throws(SpikeRunError) -> Int {
        // 2^63 is exactly representable; every double below it in magnitude fits an Int.
        guard d.isFinite, d >= -9_223_372_036_854_775_808.0, d < 9_223_372_036_854_775_808.0 else {
            throw .invalidArgument("the chat template converts \(JinjaValue.pythonFloat(d)) to an integer, which does not fit 64 bits")
        }
        return Int(d)
    }

    mutating func applyTest(_ name: String, _ v: JinjaValue, _ args: [JinjaValue]) throws(SpikeRunError) -> Bool {
        try charge()
        switch name {
        case "defined": return !v.isUndefined
        case "undefined": return v.isUndefined
        case "none": if case .none = v { return true }; return false
        case "string": if case .string = v { return true }; return false
        case "number": if case .int = v { return true }; if case .double = v { return true }; return false
        case "integer": if case .int = v { return true }; return false
        case "float": if case .double = v { return true }; return false
        case "boolean": if case .bool = v { return true }; return false
        case "true": if case .bool(true) = v { return true }; return false
        case "false": if case .bool(false) = v { return true }; return false
        case "mapping": if case .dict = v { return true }; if case .namespace = v { return true }; return false
        case "iterable", "sequence":
            switch v { case .list, .dict, .string: return true; default: return false }
        case "callable":
            switch v { case .macro, .builtin: return true; default: return false }
        case "odd": if case .int(let i) = v { return i % 2 != 0 }; return false
        case "even": if case .int(let i) = v { return i % 2 == 0 }; return false
        case "divisibleby":
            // Int.min % -1 overflows in Swift; every integer is divisible by ±1.
            if case .int(let i) = v, case .int(let d)? = args.first, d != 0 { return d == 1 || d == -1 || i % d == 0 }
            return false
        case "equalto", "eq", "==", "sameas": return try equal(v, args.first ?? .undefined)
        case "ne", "!=": return !(try equal(v, args.first ?? .undefined))
        case "lower", "upper":
            let s = try str(v)
            try chargeBytes(s.utf8.count)
            return name == "lower" ? s == s.lowercased() : s == s.uppercased()
        case "in":
            if let container = args.first, case .bool(let b) = try binary("in", v, container) { return b }
            return false
        case "gt", ">", "ge", ">=", "lt", "<", "le", "<=":
            let op = ["gt": ">", "ge": ">=", "lt": "<", "le": "<="][name] ?? name
            if case .bool(let b) = try binary(op, v, args.first ?? .undefined) { return b }
            return false
        default:
            throw .unsupported("the chat template uses the test '\(name)', which spikerun's Jinja subset does not provide")
        }
    }

    // MARK: String helpers (Python semantics)

    func pyStrip(_ s: String, _ chars: String?, left: Bool, right: Bool) -> String {
        let strip: (Unicode.Scalar) -> Bool
        if let chars {
            let set = Set(chars.unicodeScalars)
            strip = { set.contains($0) }
        } else {
            strip = { $0.properties.isWhitespace || (0x1C...0x1F).contains($0.value) }
        }
        var sub = s.unicodeScalars[...]
        if left { while let f = sub.first, strip(f) { sub.removeFirst() } }
        if right { while let l = sub.last, strip(l) { sub.removeLast() } }
        return stringFromScalars(sub)
    }

    /// Python `str.split(sep, maxsplit)`, on code points.
    func pySplit(_ s: String, _ sep: String, _ limit: Int) -> [String] {
        guard !sep.isEmpty else { return [s] }
        let a = Array(s.utf8)
        var parts: [String] = []
        var start = 0
        for off in utf8Matches(a, Array(sep.utf8), limit: limit) {
            parts.append(String(decoding: a[start..<off], as: UTF8.self))
            start = off + sep.utf8.count
        }
        parts.append(String(decoding: a[start...], as: UTF8.self))
        return parts
    }

    func replaceAll(_ s: String, _ a: String, _ b: String) throws(SpikeRunError) -> String {
        guard !a.isEmpty else { return s }
        let parts = pySplit(s, a, -1)
        let (extra, o1) = (parts.count - 1).multipliedReportingOverflow(by: b.utf8.count)
        let (total, o2) = (s.utf8.count - (parts.count - 1) * a.utf8.count).addingReportingOverflow(extra)
        try checkString(o1 || o2 ? Int.max : total)
        return parts.joined(separator: b)
    }

    func capitalize(_ s: String) -> String {
        guard let f = s.first else { return s }
        return String(f).uppercased() + s.dropFirst().lowercased()
    }

    func titleCase(_ s: String) -> String {
        var out = ""
        var previousIsLetter = false
        for ch in s {
            out += previousIsLetter ? String(ch).lowercased() : String(ch).uppercased()
            previousIsLetter = ch.isLetter
        }
        return out
    }
}

private extension String {
    func trimmingCharacters(in chars: String) -> String {
        var sub = Substring(self)
        while let f = sub.first, chars.contains(f) { sub.removeFirst() }
        while let l = sub.last, chars.contains(l) { sub.removeLast() }
        return String(sub)
    }
}

/// transformers' `strftime_now`: the local time, formatted by C `strftime`.
private func strftimeNow(_ format: String) -> String {
    var now = time(nil)
    var parts = tm()
    localtime_r(&now, &parts)
    var buffer = [CChar](repeating: 0, count: 256)
    let n = strftime(&buffer, buffer.count, format, &parts)
    return String(decoding: buffer.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

// Python strings are sequences of code points and compare code point by code point; Swift's
// String compares canonically equivalent texts as equal, so these helpers work on scalars.
private extension String {
    var scalars: [Unicode.Scalar] { Array(unicodeScalars) }

    // UTF-8 is self-synchronizing: a byte match of one valid UTF-8 string in another starts
    // and ends on code point boundaries, so byte comparisons are code point comparisons.
    func scalarEquals(_ other: String) -> Bool { utf8.elementsEqual(other.utf8) }

    func scalarHasPrefix(_ p: String) -> Bool { utf8.starts(with: p.utf8) }

    func scalarHasSuffix(_ p: String) -> Bool { utf8.reversed().starts(with: p.utf8.reversed()) }

    /// The code point offset of the first occurrence of `p`, or nil (linear time).
    func scalarFind(_ p: String) -> Int? {
        if p.isEmpty { return 0 }
        let a = Array(utf8)
        guard let off = utf8Matches(a, Array(p.utf8), limit: 1).first else { return nil }
        return a[..<off].reduce(0) { $0 + ($1 & 0xC0 == 0x80 ? 0 : 1) }
    }
}

/// Byte offsets of the non-overlapping occurrences of `needle` in `hay`, left to right, at
/// most `limit` of them (negative = all). Knuth–Morris–Pratt, so hostile inputs stay linear.
private func utf8Matches(_ hay: [UInt8], _ needle: [UInt8], limit: Int) -> [Int] {
    let m = needle.count
    guard m > 0, m <= hay.count, limit != 0 else { return [] }
    var fail = [Int](repeating: 0, count: m)  // longest proper border of needle[0...i]
    var k = 0
    for i in 1..<m {
        while k > 0 && needle[i] != needle[k] { k = fail[k - 1] }
        if needle[i] == needle[k] { k += 1 }
        fail[i] = k
    }
    var out: [Int] = []
    k = 0
    for (i, c) in hay.enumerated() {
        while k > 0 && c != needle[k] { k = fail[k - 1] }
        if c == needle[k] { k += 1 }
        if k == m {
            out.append(i - m + 1)
            if out.count == limit { break }
            k = 0  // non-overlapping
        }
    }
    return out
}

private func stringFromScalars<S: Sequence>(_ s: S) -> String where S.Element == Unicode.Scalar {
    var out = String.UnicodeScalarView()
    out.append(contentsOf: s)
    return String(out)
}
