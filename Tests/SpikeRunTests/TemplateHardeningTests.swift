import Foundation
import Testing
@testable import SpikeRun

// A chat template comes from the model file: untrusted. Each hostile template below must end
// in one thrown error naming the limit or the fault (never a trap, a stack overflow, a hang or
// exhausted memory), through the library and through `spikerun generate --chat` on a model
// whose template was rewritten. The libFuzzer harness (tools/fuzz/TemplateFuzzer.swift) runs
// the same check on generated input; its committed corpus is replayed here.

enum HostileTemplates {
    /// (name, template, substring the error must contain).
    static let cases: [(String, String, String)] = [
        ("add overflow", "{{ 9223372036854775807 + 1 }}", "overflows 64 bits"),
        ("sub overflow", "{{ -9223372036854775807 - 2 }}", "overflows 64 bits"),
        ("mul overflow", "{{ 4611686018427387904 * 4 }}", "overflows 64 bits"),
        ("floordiv overflow", "{{ (-9223372036854775807 - 1) // -1 }}", "overflows 64 bits"),
        ("negation overflow", "{{ -(-9223372036854775807 - 1) }}", "overflows 64 bits"),
        ("abs overflow", "{{ (-9223372036854775807 - 1) | abs }}", "overflows 64 bits"),
        ("int of infinity", "{{ 'inf' | float | int }}", "does not fit 64 bits"),
        ("int of nan", "{{ 'nan' | float | int }}", "does not fit 64 bits"),
        ("int of a huge float", "{{ ('1e300' | float) | int }}", "does not fit 64 bits"),
        ("huge literal", "{{ 99999999999999999999 }}", "does not fit 64 bits"),
        ("string repeat", "{{ 'x' * 1000000000000 }}", "limit of 4194304 bytes"),
        ("string doubling", "{% set ns = namespace(s='xy') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
         "limit of 4194304 bytes"),
        ("list repeat", "{{ ([1, 2] * 4611686018427387904) | length }}", "limit of 100000"),
        ("huge range", "{% for i in range(10000000000) %}{% endfor %}", "limit of 100000"),
        ("range overflow", "{{ range(-9223372036854775807 - 1, 9223372036854775807, 3) | length }}", "limit of 100000"),
        ("nested loops", "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
         "limit of 5000000 evaluation steps"),
        ("output flood", "{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}", "renders more than the limit"),
        ("macro recursion", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "macro calls deeper than the limit of 32"),
        ("mutual recursion", "{% macro a() %}{{ b() }}{% endmacro %}{% macro b() %}{{ a() }}{% endmacro %}{{ a() }}",
         "macro calls deeper than the limit"),
        ("deep parentheses", "{{ " + String(repeating: "(", count: 1000) + "1" + String(repeating: ")", count: 1000) + " }}",
         "nests expressions deeper than the limit"),
        ("long operator chain", "{{ 1" + String(repeating: " + 1", count: 5000) + " }}", "tokens, over the limit"),
        ("operator chain past the render depth", "{{ 1" + String(repeating: " + 1", count: 1000) + " }}",
         "deeper than the limit of 200"),
        ("deep blocks", String(repeating: "{% if true %}", count: 5000) + "x" + String(repeating: "{% endif %}", count: 5000),
         "nests blocks deeper than the limit"),
        ("nested lists", "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = [ns.l] %}{% endfor %}{{ ns.l }}",
         "nests lists and dicts deeper than the limit"),
        ("self-containing namespace", "{% set ns = namespace() %}{% set ns.me = ns %}{{ ns | tojson }}", "namespace inside a namespace"),
        ("shared-list explosion", "{% set ns = namespace(l=[1]) %}{% for i in range(60) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l }}",
         "limit of"),
        ("quadratic search", "{% set a = 'a' * 2000000 %}{% set b = 'a' * 1000000 ~ 'b' %}{% for i in range(1000) %}{{ b in a }}{% endfor %}",
         "evaluation steps"),
        ("unique explosion", "{{ range(100000) | list | unique | length }}", "evaluation steps"),
        ("tojson indent", "{{ [[1]] | tojson(indent=9223372036854775807) }}", "limit of 4194304 bytes"),
    ]

    /// Templates that look hostile but are legal Python/Jinja: they must render, not fail.
    static let legal: [(String, String)] = [
        ("{{ (-9223372036854775807 - 1) % -1 }}", "0"),
        ("{{ -7 // 2 }} {{ -7 % 2 }} {{ 7 // -2 }} {{ 7 % -2 }}", "-4 1 -4 -1"),
        ("{{ (-9223372036854775807 - 1) is divisibleby(-1) }}", "True"),
        ("{{ [1, 2, 3, 4][::9223372036854775807] }}|{{ 'abc'[::-9223372036854775807] }}", "[1]|c"),
        ("{{ [1, 2] | tojson(indent=-3) }}", "[\n1,\n2\n]"),
        ("{{ range(9223372036854775806, 9223372036854775807) | list }}", "[9223372036854775806]"),
        ("{{ 'aXbXc'.split('X') }} {{ 'aXbXc'.replace('X', '--') }} {{ 'héllo wörld'.find('wö') }}",
         "['a', 'b', 'c'] a--b--c 6"),
    ]

    static let context: [String: JinjaValue] = [
        "messages": .list([.dict([("role", .string("user")), ("content", .string("hi"))])]),
        "add_generation_prompt": .bool(true), "bos_token": .string("<s>"), "eos_token": .string("</s>"),
    ]
}

/// What every template must survive; shared with the corpus replay.
enum TemplateFuzzCheck {
    /// Renders `source`; returns the error if it threw. Crashes (fails the run) on anything
    /// but a one-line `.unsupported` / `.invalidArgument` error.
    @discardableResult
    static func exercise(_ source: String, _ context: [String: JinjaValue] = HostileTemplates.context,
                         limits: JinjaLimits = .default) -> SpikeRunError? {
        do throws(SpikeRunError) {
            let out = try ChatTemplate(source, limits: limits).render(context)
            precondition(out.utf8.count <= limits.maxStringBytes)
            return nil
        } catch {
            precondition(error.kind == .unsupported || error.kind == .invalidArgument, "kind: \(error)")
            precondition(!error.message.isEmpty && !error.message.contains(where: \.isNewline), "message: \(error)")
            return error
        }
    }
}

@Suite("Hostile chat templates")
struct TemplateHardeningTests {
    @Test(arguments: HostileTemplates.cases.map(\.0))
    func libraryThrowsNamedLimit(_ name: String) throws {
        let (_, source, needle) = try #require(HostileTemplates.cases.first { $0.0 == name })
        let start = ContinuousClock.now
        let error = try #require(TemplateFuzzCheck.exercise(source), "\(name) rendered without an error")
        #expect(error.message.contains(needle), "\(name): \(error.message)")
        #expect(ContinuousClock.now - start < .seconds(20), "\(name) took too long")
    }

    @Test func legalEdgeCasesRender() throws {
        for (source, expected) in HostileTemplates.legal {
            #expect(try ChatTemplate(source).render(HostileTemplates.context) == expected, "\(source)")
        }
    }

    @Test func limitsAreWhatTheErrorsSay() throws {
        var l = JinjaLimits.default
        l.maxSteps = 1000
        let e = try #require(TemplateFuzzCheck.exercise("{% for i in range(5000) %}{% endfor %}", limits: l))
        #expect(e.message.contains("limit of 1000 evaluation steps"))
        l = .default
        l.maxCallDepth = 3
        #expect(try ChatTemplate("{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{% else %}ok{% endif %}{% endmacro %}{{ f(2) }}",
                                 limits: l).render([:]) == "ok")
        #expect(TemplateFuzzCheck.exercise("{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(3) }}",
                                           limits: l)?.message.contains("limit of 3") == true)
    }

    /// Every file in Tests/Fixtures/template-fuzz (the libFuzzer corpus: seeds and what the
    /// fuzzer found) in the harness's input format: template, 0x00, context bytes.
    @Test func fuzzCorpusReplays() throws {
        let dir = TestPaths.fixtures.appendingPathComponent("template-fuzz")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        #expect(files.count >= 20)
        var limits = JinjaLimits.default  // as tools/fuzz/TemplateFuzzer.swift
        limits.maxSteps = 20_000
        limits.maxStringBytes = 1 << 14
        limits.maxListCount = 1024
        for name in files {
            let bytes = [UInt8](try Data(contentsOf: dir.appendingPathComponent(name)))
            let split = bytes.firstIndex(of: 0) ?? bytes.count
            let contextBytes = split < bytes.count ? Array(bytes[(split + 1)...]) : []
            let roles = ["system", "user", "assistant"]
            let messages: [JinjaValue] = contextBytes.split(separator: 1, omittingEmptySubsequences: false)
                .enumerated().map { i, part in
                    .dict([("role", .string(roles[i % 3])), ("content", .string(String(decoding: part, as: UTF8.self)))])
                }
            let context: [String: JinjaValue] = [
                "messages": .list(messages), "add_generation_prompt": .bool((contextBytes.first ?? 0) & 1 == 1),
                "bos_token": .string("<s>"), "eos_token": .string("</s>"),
            ]
            TemplateFuzzCheck.exercise(String(decoding: bytes[..<split], as: UTF8.self), context, limits: limits)
        }
    }

    /// The CLI path: a model file whose tokenizer.chat_template is hostile. One error line on
    /// stderr, exit 1, well within the time a user would wait.
    @Test func generateChatRejectsHostileTemplates() throws {
        let dir = try GGUFSamples.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (name, source, needle) in HostileTemplates.cases {
            var spec = GGUFSamples.tinyLlama()
            spec.metadata["tokenizer.chat_template"] = .string(source)
            spec.metadata["tokenizer.ggml.merges"] = .array([.string("t 0")])
            let path = dir + "/hostile.gguf"
            try spec.writer().write(to: path)
            let start = ContinuousClock.now
            let r = try runProcess(TestPaths.executable, ["generate", "--chat", "-m", path, "-p", "hi", "-n", "1"])
            #expect(ContinuousClock.now - start < .seconds(30), "\(name) took too long")
            #expect(r.status == 1, "\(name): exit \(r.status), stderr: \(r.stderr.prefix(300))")
            #expect(r.stdout.isEmpty, "\(name)")
            let lines = r.stderr.split(separator: "\n", omittingEmptySubsequences: true)
            #expect(lines.count == 1 && lines[0].hasPrefix("spikerun: error:") && lines[0].contains(needle),
                    "\(name): \(r.stderr.prefix(300))")
        }
    }
}
