import ArgumentParser
import Foundation
import SpikeRun

struct Tokenize: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the token ids (and pieces) of a text.")

    @Option(name: [.customShort("m"), .customLong("model")], help: "GGUF model path (default: the default model).")
    var model: String?

    @Flag(name: .customLong("json"), help: "Print a JSON array of ids.")
    var json = false

    @Flag(name: .customLong("no-parse-special"), help: "Treat special-token text like <|im_start|> as plain text.")
    var noParseSpecial = false

    @Flag(name: .customLong("add-special"), help: "Add BOS/EOS as the vocabulary asks.")
    var addSpecial = false

    @Argument(help: "Text to tokenize.")
    var text: String

    func run() async throws {
        try await runReportingErrors {
            let path = model ?? DefaultModel.path()
            let file = try Model.openFile(path)
            let tokenizer = try Tokenizer(gguf: file)
            let ids = tokenizer.encode(text, addSpecialTokens: addSpecial, parseSpecial: !noParseSpecial)
            if json {
                print(jsonString(ids))
            } else {
                for id in ids {
                    let piece = String(decoding: tokenizer.pieceBytes(id, renderSpecial: true), as: UTF8.self)
                    print("\(id) -> '\(piece)'")
                }
            }
        }
    }
}
