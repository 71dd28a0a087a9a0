import ArgumentParser
import Foundation
import SpikeRun

@main
struct SpikeRunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spikerun",
        abstract: "Run Llama-family GGUF models dense or spike-driven (MatMul-free).",
        subcommands: [Generate.self, Chat.self, Tokenize.self, Info.self, Eval.self, Bench.self, Convert.self, Analyze.self, Serve.self],
        defaultSubcommand: Generate.self)
}
