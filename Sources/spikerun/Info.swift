import ArgumentParser
import Foundation
import SpikeRun

struct Info: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a model: architecture, hyper-parameters, tensor types and sizes, vocabulary.")

    @Option(name: [.customShort("m"), .customLong("model")], help: "GGUF model path (default: the default model).")
    var model: String?

    @Flag(name: .customLong("json"), help: "Print JSON.")
    var json = false

    @Flag(name: .customLong("tensors"), help: "List every tensor.")
    var tensors = false

    func run() async throws {
        try await runReportingErrors {
            let path = model ?? DefaultModel.path()
            let m = try Model.load(path)
            let c = m.config
            if json { print(jsonString(m.info)); return }
            print("model:        \(m.info.name ?? "-")  (\(path))")
            print("architecture: \(c.architecture)\(m.info.isSpikeModel ? " (spike-converted)" : "")")
            print("parameters:   \(String(format: "%.1f", Double(m.info.parameterCount) / 1e6)) M, weights \(String(format: "%.1f", Double(m.info.weightBytes) / 1048576)) MiB")
            print("layers \(c.nLayer), embedding \(c.nEmbd), ffn \(c.nFF), heads \(c.nHead) (kv \(c.nHeadKV)), head dim \(c.headDim)")
            print("context \(c.contextLength), rope base \(c.ropeFreqBase) (dims \(c.ropeDimensionCount)), rms eps \(c.rmsNormEps), output \(c.tiedOutput ? "tied to token_embd" : "separate")")
            print("tensor types: " + m.info.tensorTypes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
            let tok = m.tokenizer
            print("vocabulary:   \(tok.vocabularySize) tokens (\(m.file.metadata.string("tokenizer.ggml.model") ?? "?"), pre '\(m.file.metadata.string("tokenizer.ggml.pre") ?? "default")'), bos \(tok.bosToken.map(String.init) ?? "-"), eos \(tok.eosToken.map(String.init) ?? "-"), add bos \(tok.addBOS)")
            if tensors {
                for t in m.file.tensors {
                    print("  \(t.name)  \(t.type.name)  \(t.shape)  \(t.byteCount) B")
                }
            }
        }
    }
}
