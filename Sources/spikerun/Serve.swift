import ArgumentParser
import Foundation
import SpikeRun
import SpikeRunServer

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "OpenAI-compatible HTTP server with continuous batching (llama-server's endpoints and flags).")

    @OptionGroup var modelOptions: ModelOptionsGroup

    @Option(name: .customLong("host"), help: "Address to listen on (default: 127.0.0.1).")
    var host = "127.0.0.1"

    @Option(name: .customLong("port"), help: "Port to listen on (default: 8080).")
    var port = 8080

    @Option(name: [.customLong("np", withSingleDash: true), .customLong("parallel")],
            help: "Slots: requests decoded together in one forward pass (default: 4).")
    var parallel = 4

    @Option(name: [.customShort("c"), .customLong("ctx-size")],
            help: "Context per slot in tokens; 0 = model's, capped at 4096 (default: 0).")
    var contextSize = 0

    @Option(name: [.customShort("b"), .customLong("batch-size")],
            help: "Prompt tokens per slot and step: prompts are prefilled in chunks of this size (default: 256).")
    var batchSize = 256

    @Option(name: .customLong("queue"), help: "Requests that may wait for a free slot before 503 (default: 64).")
    var queue = 64

    @Option(name: .customLong("api-key"),
            help: "Require 'Authorization: Bearer KEY' on every endpoint but /health (default: $SPIKERUN_API_KEY, else none).")
    var apiKey: String?

    @Option(name: .customLong("alias"), help: "Model id reported by /v1/models and accepted in requests (default: the file name).")
    var alias: String?

    @Option(name: .customLong("cors-origins"),
            help: "Comma-separated origins allowed to call from a browser, or * (default: none).")
    var corsOrigins: String?

    @Option(name: .customLong("max-body-bytes"), help: "Largest request body (default: 1048576).")
    var maxBodyBytes = 1 << 20

    @Option(name: .customLong("max-tokens"),
            help: "Ceiling and default of a request's max_tokens (default: the slot's context).")
    var maxTokens: Int?

    @Flag(name: .customLong("metrics"), help: "Serve Prometheus metrics at GET /metrics.")
    var metrics = false

    func validate() throws {
        guard (1...65535).contains(port) else { throw ValidationError("--port must be in 1...65535, got \(port)") }
        guard (1...256).contains(parallel) else { throw ValidationError("--parallel must be in 1...256, got \(parallel)") }
        guard contextSize >= 0 else { throw ValidationError("--ctx-size must be >= 0, got \(contextSize)") }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be >= 1, got \(batchSize)") }
        guard queue >= 0 else { throw ValidationError("--queue must be >= 0, got \(queue)") }
        guard maxBodyBytes >= 1024 else { throw ValidationError("--max-body-bytes must be >= 1024, got \(maxBodyBytes)") }
        if let m = maxTokens, m < 1 { throw ValidationError("--max-tokens must be >= 1, got \(m)") }
    }

    func run() async throws {
        try await runReportingErrors {
            var options = ServerOptions()
            options.host = host
            options.port = port
            options.apiKey = apiKey ?? ProcessInfo.processInfo.environment["SPIKERUN_API_KEY"].flatMap { $0.isEmpty ? nil : $0 }
            let file = URL(fileURLWithPath: modelOptions.resolvedPath).lastPathComponent
            options.alias = alias ?? (file.hasSuffix(".gguf") ? String(file.dropLast(5)) : file)
            options.corsOrigins = corsOrigins.map {
                $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            } ?? []
            options.maxBodyBytes = maxBodyBytes
            options.maxTokens = maxTokens
            options.metrics = metrics
            let server = OpenAIServer(options: options, state: ServerState())
            let modelOptions = self.modelOptions
            let (slots, ctx, chunk, queue) = (parallel, contextSize, batchSize, self.queue)
            Stderr.print("spikerun serve: listening on http://\(host):\(port) (\(slots) slots); loading \(file)")
            try await server.run {
                let model = try modelOptions.load()
                let scheduler = try BatchScheduler(model: model, slots: slots, contextLength: ctx == 0 ? nil : ctx,
                                                   prefillChunk: chunk, queueLimit: queue,
                                                   mode: try modelOptions.runMode(for: model))
                Stderr.print("spikerun serve: ready (\(scheduler.isSpikeDriven ? "spike-driven" : "dense"), \(scheduler.contextLength) tokens per slot)")
                return scheduler
            }
        }
    }
}
