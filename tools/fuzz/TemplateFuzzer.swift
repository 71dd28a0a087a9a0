// libFuzzer entry point for the chat-template engine (Sources/SpikeRun/Tokenizer/Jinja.swift).
// Built by tools/fuzz/run_template.sh together with Jinja.swift and SpikeRunError.swift as
// one module, with -sanitize=fuzzer,address. One input is a template and a context:
//
//   template text [0x00 context bytes]
//
// The context bytes become `messages`: split at 0x01 into message contents, roles cycling
// system/user/assistant; the first context byte's low bit sets add_generation_prompt. The
// harness crashes — so libFuzzer keeps the input — when rendering traps, overflows the
// stack, runs out of its limits without an error, or throws anything but a one-line
// .unsupported / .invalidArgument error. Mirrors TemplateFuzzCheck in
// Tests/SpikeRunTests/TemplateHardeningTests.swift, which replays the committed corpus.

/// Small step and size limits keep executions fast; the recursion and nesting limits are
/// the defaults, since those are what protect the native stack.
let fuzzLimits: JinjaLimits = {
    var l = JinjaLimits.default
    l.maxSteps = 20_000
    l.maxStringBytes = 1 << 14
    l.maxListCount = 1024
    return l
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func templateFuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let split = bytes.firstIndex(of: 0) ?? bytes.count
    let source = String(decoding: bytes[..<split], as: UTF8.self)
    let contextBytes = split < bytes.count ? Array(bytes[(split + 1)...]) : []
    var messages: [JinjaValue] = []
    let roles = ["system", "user", "assistant"]
    for (i, part) in contextBytes.split(separator: 1, omittingEmptySubsequences: false).enumerated() {
        messages.append(.dict([("role", .string(roles[i % 3])),
                               ("content", .string(String(decoding: part, as: UTF8.self)))]))
    }
    let context: [String: JinjaValue] = [
        "messages": .list(messages),
        "add_generation_prompt": .bool((contextBytes.first ?? 0) & 1 == 1),
        "bos_token": .string("<s>"), "eos_token": .string("</s>"),
    ]
    do throws(SpikeRunError) {
        let t = try ChatTemplate(source, limits: fuzzLimits)
        let out = try t.render(context)
        precondition(out.utf8.count <= fuzzLimits.maxStringBytes, "output past the limit")
    } catch {
        precondition(error.kind == .unsupported || error.kind == .invalidArgument, "unexpected kind: \(error)")
        precondition(!error.message.isEmpty && !error.message.contains(where: \.isNewline), "bad message: \(error)")
    }
    return 0
}
