import Foundation
import Testing
@testable import SpikeRun

// Chat templates rendered by our Jinja subset vs Jinja2 as transformers runs it
// (Tests/Fixtures/tokenizer/chat.json, from tools/fixtures/make_tokenizer_fixtures.py).

struct ChatFixture: Decodable {
    struct Message: Decodable { var role: String; var content: String }
    struct Render: Decodable {
        var messages: [Message]
        var add_generation_prompt: Bool
        var bos_token: String
        var eos_token: String
        var expected: String?
        var error: String?
    }
    struct Template: Decodable {
        var name: String
        var source: String
        var renders: [Render]
    }
    var renderer: String
    var templates: [Template]
}

@Suite("Chat templates")
struct ChatTemplateTests {
    let fixture: ChatFixture

    init() throws {
        fixture = try TokenizerTestSupport.json("chat.json", as: ChatFixture.self)
    }

    static func messages(_ ms: [ChatFixture.Message]) -> [ChatMessage] {
        ms.map { ChatMessage(role: ChatMessage.Role(rawValue: $0.role)!, content: $0.content) }
    }

    @Test func smolLM2TemplateMatchesJinja2() throws {
        let tokenizer = try TokenizerTestSupport.tokenizer()
        let t = try #require(fixture.templates.first { $0.name == "smollm2" })
        #expect(tokenizer.chatTemplate == t.source)
        #expect(t.renders.count >= 10)
        for r in t.renders {
            let got = try tokenizer.applyChatTemplate(Self.messages(r.messages),
                                                      addGenerationPrompt: r.add_generation_prompt)
            #expect(got == r.expected, "\(r.messages.map(\.role)) gen=\(r.add_generation_prompt)")
        }
    }

    @Test func smolLM2DefaultsAndGenerationPrompt() throws {
        let tokenizer = try TokenizerTestSupport.tokenizer()
        let text = try tokenizer.applyChatTemplate([.user("Hi!")])
        #expect(text == "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
                + "Hugging Face<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n")
        let withSystem = try tokenizer.applyChatTemplate([.system("Be brief."), .user("Hi!")],
                                                         addGenerationPrompt: false)
        #expect(withSystem == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n")
        // The rendered prompt tokenizes with the control tokens as single tokens.
        let ids = tokenizer.encode(text)
        #expect(ids.first == tokenizer.tokenID("<|im_start|>"))
        #expect(ids.filter { $0 == tokenizer.tokenID("<|im_end|>") }.count == 2)
    }

    @Test(arguments: ["feature-coverage", "qwen2.5", "mistral-nemo", "phi-3.5", "qwen3-coder", "qwen3.5",
                       "smollm3"])
    func otherTemplatesMatchJinja2(_ name: String) throws {
        let t = try #require(fixture.templates.first { $0.name == name })
        let template = try ChatTemplate(t.source)
        for r in t.renders {
            let context: [String: JinjaValue] = [
                "messages": .list(r.messages.map {
                    .dict([("role", .string($0.role)), ("content", .string($0.content))])
                }),
                "add_generation_prompt": .bool(r.add_generation_prompt),
                "bos_token": .string(r.bos_token),
                "eos_token": .string(r.eos_token),
            ]
            if let expected = r.expected {
                let got = try template.render(context)
                #expect(got == expected, "\(name): \(r.messages.map(\.role)) gen=\(r.add_generation_prompt)")
            } else {
                #expect("\(name) should reject \(r.messages.map(\.role))") {
                    _ = try template.render(context)
                } throws: { error in
                    (error as? SpikeRunError)?.kind == .invalidArgument
                }
            }
        }
    }

    @Test func unsupportedConstructsAreNamed() {
        for (source, word) in [("{% filter upper %}x{% endfilter %}", "filter"),
                               ("{{ messages | wordwrap }}", "wordwrap"),
                               ("{{ 'a {}'.format(1) }}", "format"),
                               ("{{ undefined_function() }}", "undefined_function"),
                               ("{% if x %}unclosed", "endif")] {
            #expect("template \(source)") {
                _ = try ChatTemplate(source).render([:])
            } throws: { error in
                guard let e = error as? SpikeRunError else { return false }
                return e.kind == .unsupported && e.message.contains(word)
            }
        }
    }

    @Test func missingTemplateIsUnsupported() throws {
        var c = TokenizerConfigurationTests.tinyBPE()
        c.chatTemplate = nil
        let t = try Tokenizer(configuration: c)
        #expect {
            _ = try t.applyChatTemplate([.user("Hi")])
        } throws: { error in
            let e = error as! SpikeRunError
            return e.kind == .unsupported && e.message.contains("chat template")
        }
    }

    @Test func whitespaceControl() throws {
        // trim_blocks and lstrip_blocks, as transformers configures Jinja2.
        let src = "A\n  {% if true %}\n    B\n  {% endif %}\nC {{- ' D ' -}} E\n{# c #}\nF"
        #expect(try ChatTemplate(src).render([:]) == "A\n    B\nC D E\nF")
        // "+" keeps what lstrip_blocks and trim_blocks would remove.
        #expect(try ChatTemplate("x\n  {%+ if true +%}\ny{% endif %}").render([:]) == "x\n  \ny")
    }

    @Test func transformersGlobals() throws {
        let year = try ChatTemplate("{{ strftime_now('%Y') }}").render([:])
        #expect(year.count == 4 && Int(year) != nil)
        #expect(try ChatTemplate("{{ strftime_now is defined }}|{{ raise_exception is defined }}").render([:])
                == "True|True")
        #expect {
            _ = try ChatTemplate("{{ raise_exception('no system role') }}").render([:])
        } throws: { error in
            let e = error as! SpikeRunError
            return e.kind == .invalidArgument && e.message.contains("no system role")
        }
    }

    @Test func chatMessageCodable() throws {
        let m = ChatMessage.assistant("Hello")
        let data = try JSONEncoder().encode(m)
        let obj = try JSONSerialization.jsonObject(with: data) as? [String: String]
        #expect(obj == ["role": "assistant", "content": "Hello"])
        #expect(try JSONDecoder().decode(ChatMessage.self, from: data) == m)
        #expect(ChatMessage.system("s").role == .system)
        #expect(ChatMessage.user("u") == ChatMessage(role: .user, content: "u"))
    }
}
