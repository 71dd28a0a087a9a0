import ArgumentParser
import Foundation
import SpikeRun

struct Chat: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Interactive multi-turn chat in the terminal (empty line or /exit to quit, /reset to start over).")

    @OptionGroup var modelOptions: ModelOptionsGroup
    @OptionGroup var sampling: SamplingOptions

    @Option(name: [.customLong("sys"), .customLong("system-prompt")], help: "System message.")
    var systemPrompt: String?

    @Option(name: [.customShort("c"), .customLong("ctx-size")], help: "Context size; 0 = model's, capped at 4096 (default: 0).")
    var contextSize: Int = 0

    func run() async throws {
        try await runReportingErrors {
            let model = try modelOptions.load()
            let session = try Session(model: model, contextLength: contextSize == 0 ? nil : contextSize,
                                      mode: try modelOptions.runMode(for: model))
            var messages: [ChatMessage] = systemPrompt.map { [.system($0)] } ?? []
            let interactive = isatty(STDIN_FILENO) != 0
            if interactive { Stderr.print("spikerun chat: \(model.info.name ?? model.info.path); /exit to quit, /reset to clear") }
            while true {
                if interactive { Stdout.write("> ") }
                guard let line = readLine(strippingNewline: true) else { break }
                let input = line.trimmingCharacters(in: .whitespaces)
                if input.isEmpty || input == "/exit" || input == "/quit" { break }
                if input == "/reset" {
                    messages = systemPrompt.map { [.system($0)] } ?? []
                    await session.reset()
                    continue
                }
                messages.append(.user(input))
                var reply = ""
                var params = sampling.parameters
                if params.maxTokens == nil { params.maxTokens = 1024 }
                do {
                    for try await event in await session.generate(.chat(messages), parameters: params) {
                        switch event {
                        case .text(let s): reply += s; Stdout.write(s)
                        case .info(let info):
                            if case .contextFull = info.stopReason {
                                Stderr.print("\nspikerun: the context is full; /reset to start over")
                            }
                        }
                    }
                } catch let e as SpikeRunError where e.kind == .contextFull {
                    Stderr.print("spikerun: error: \(e.message); /reset to start over")
                    messages.removeLast()
                    continue
                }
                Stdout.write("\n")
                messages.append(.assistant(reply))
            }
        }
    }
}
