import ArgumentParser
import Foundation
import SpikeRun

struct Generate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate text from a prompt, streamed to stdout (statistics go to stderr).")

    @OptionGroup var modelOptions: ModelOptionsGroup
    @OptionGroup var sampling: SamplingOptions

    @Option(name: [.customShort("p"), .customLong("prompt")], help: "Prompt text.")
    var prompt: String?

    @Option(name: [.customShort("f"), .customLong("file")], help: "Read the prompt from a file.")
    var file: String?

    @Flag(name: .customLong("chat"), help: "Render the prompt as a user message with the model's chat template.")
    var chat = false

    @Option(name: [.customLong("sys"), .customLong("system-prompt")], help: "System message (with --chat).")
    var systemPrompt: String?

    @Option(name: [.customShort("c"), .customLong("ctx-size")], help: "Context size; 0 = model's, capped at 4096 (default: 0).")
    var contextSize: Int = 0

    @Flag(name: .customLong("json"), help: "Print one JSON object (tokens, text, statistics) instead of streaming.")
    var json = false

    func validate() throws {
        if prompt != nil && file != nil { throw ValidationError("give either -p or -f, not both") }
        if prompt == nil && file == nil { throw ValidationError("a prompt is needed: -p TEXT or -f FILE") }
        if contextSize < 0 { throw ValidationError("-c must be >= 0, got \(contextSize)") }
        if systemPrompt != nil && !chat { throw ValidationError("--system-prompt needs --chat") }
    }

    func run() async throws {
        try await runReportingErrors {
            let text: String
            if let file {
                text = try TextFile.read(file)
            } else {
                text = prompt!
            }
            if text.isEmpty { throw SpikeRunError.invalidArgument("the prompt is empty") }
            let model = try modelOptions.load()
            let session = try Session(model: model, contextLength: contextSize == 0 ? nil : contextSize,
                                      mode: try modelOptions.runMode(for: model))
            var input = Prompt.text(text)
            if chat {
                var messages: [ChatMessage] = []
                if let systemPrompt { messages.append(.system(systemPrompt)) }
                messages.append(.user(text))
                input = .chat(messages)
            }
            var output = ""
            var info: GenerationInfo?
            for try await event in await session.generate(input, parameters: sampling.parameters) {
                switch event {
                case .text(let s):
                    if json { output += s } else { Stdout.write(s) }
                case .info(let i):
                    info = i
                }
            }
            guard let info else { return }
            if json {
                print(jsonString(GenerateJSON(text: output, info: info, model: model)))
            } else {
                Stdout.write("\n")
                Stderr.print(String(
                    format: "spikerun: prompt %d tokens (%.1f tok/s), generated %d tokens (%.1f tok/s), stop: %@, seed %llu",
                    info.promptTokens, info.promptTokensPerSecond, info.generatedTokens,
                    info.generationTokensPerSecond, info.stopReason.name, info.seed))
            }
        }
    }
}

struct GenerateJSON: Encodable {
    var text: String
    var tokens: [Int32]
    var prompt_tokens: Int
    var generated_tokens: Int
    var prompt_tokens_per_second: Double
    var generation_tokens_per_second: Double
    var stop_reason: String
    var seed: UInt64
    var model: String

    init(text: String, info: GenerationInfo, model: Model) {
        self.text = text
        self.tokens = info.tokens
        self.prompt_tokens = info.promptTokens
        self.generated_tokens = info.generatedTokens
        self.prompt_tokens_per_second = info.promptTokensPerSecond
        self.generation_tokens_per_second = info.generationTokensPerSecond
        self.stop_reason = info.stopReason.name
        self.seed = info.seed
        self.model = model.info.path
    }
}
