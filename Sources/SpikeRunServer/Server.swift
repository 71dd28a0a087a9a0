import Foundation
import Hummingbird
import Logging
import SpikeRun

/// Settings of `spikerun serve` (llama-server's flags and defaults).
public struct ServerOptions: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    /// Bearer key every endpoint but /health requires (nil: open).
    public var apiKey: String?
    /// The model id clients see and may send (default: the file name without .gguf).
    public var alias = "spikerun"
    /// Origins allowed by CORS ("*" for any); empty: no CORS headers.
    public var corsOrigins: [String] = []
    /// Largest request body in bytes.
    public var maxBodyBytes = 1 << 20
    /// Ceiling (and default) of `max_tokens`; nil: a slot's context.
    public var maxTokens: Int?
    /// Serve GET /metrics.
    public var metrics = false

    public init() {}
}

/// The loaded scheduler (nil while the model loads) and the server's own counters.
public final class ServerState: @unchecked Sendable {
    private let lock = NSLock()
    private var _scheduler: BatchScheduler?
    private var _loadError: String?
    private var _httpRequests: [String: Int] = [:]   // "code" -> count
    let started = Date()

    public init() {}

    public var scheduler: BatchScheduler? { lock.withLock { _scheduler } }
    public var loadError: String? { lock.withLock { _loadError } }
    public func setScheduler(_ s: BatchScheduler) { lock.withLock { _scheduler = s } }
    public func setLoadError(_ e: String) { lock.withLock { _loadError = e } }

    func count(status: HTTPResponse.Status) {
        lock.withLock { _httpRequests[String(status.code), default: 0] += 1 }
    }
    var httpRequests: [String: Int] { lock.withLock { _httpRequests } }
}

/// The OpenAI-compatible HTTP layer: decodes requests, calls the scheduler, encodes responses
/// and server-sent events. Nothing here computes.
public struct OpenAIServer: Sendable {
    public let options: ServerOptions
    public let state: ServerState

    public init(options: ServerOptions, state: ServerState) {
        self.options = options
        self.state = state
    }

    /// The router with every endpoint and middleware.
    public func router() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: GuardMiddleware(server: self))
        router.get("/health") { _, _ in try self.health() }
        router.get("/v1/health") { _, _ in try self.health() }
        router.get("/v1/models") { _, _ in try self.models() }
        router.get("/models") { _, _ in try self.models() }
        router.post("/v1/chat/completions") { req, ctx in try await self.chat(req, ctx) }
        router.post("/chat/completions") { req, ctx in try await self.chat(req, ctx) }
        router.post("/v1/completions") { req, ctx in try await self.completions(req, ctx) }
        router.post("/completions") { req, ctx in try await self.completions(req, ctx) }
        router.post("/tokenize") { req, ctx in try await self.tokenize(req, ctx) }
        router.post("/detokenize") { req, ctx in try await self.detokenize(req, ctx) }
        if options.metrics {
            router.get("/metrics") { _, _ in try self.metrics() }
        }
        return router
    }

    /// Runs until SIGINT/SIGTERM. `load` runs on a thread of its own while /health says 503.
    public func run(load: @escaping @Sendable () throws -> BatchScheduler) async throws {
        let logger = Logger(label: "spikerun.serve")
        let state = self.state
        let loader = Thread {
            do {
                state.setScheduler(try load())
                logger.info("model loaded; serving")
            } catch {
                state.setLoadError("\(error)")
                logger.error("cannot load the model: \(error)")
            }
        }
        loader.name = "spikerun-load"
        loader.start()
        let app = Application(
            router: router(),
            configuration: .init(address: .hostname(options.host, port: options.port), serverName: "spikerun"),
            logger: logger)
        try await app.runService()
        state.scheduler?.shutdown()
    }

    // MARK: - Endpoints

    func health() throws -> Response {
        if let e = state.loadError {
            throw APIError(.serviceUnavailable, "the model failed to load: \(e)", type: "server_error", code: "load_failed")
        }
        guard state.scheduler != nil else {
            throw APIError(.serviceUnavailable, "Loading model", type: "unavailable_error", code: "loading", retryAfter: 1)
        }
        return jsonResponse(HealthResponse(status: "ok"))
    }

    func models() throws -> Response {
        let created = Int(state.started.timeIntervalSince1970)
        return jsonResponse(ModelList(data: [ModelObject(id: options.alias, created: created, owned_by: "spikerun")]))
    }

    func ready() throws -> BatchScheduler {
        if let s = state.scheduler { return s }
        _ = try health()
        throw APIError(.serviceUnavailable, "Loading model", type: "unavailable_error", code: "loading", retryAfter: 1)
    }

    func decode<T: Decodable>(_ type: T.Type, _ request: Request) async throws -> T {
        var request = request
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: options.maxBodyBytes)
        } catch {
            throw APIError(.contentTooLarge, "the request body exceeds \(options.maxBodyBytes) bytes",
                           code: "request_too_large")
        }
        do {
            return try JSONDecoder().decode(T.self, from: Data(buffer.readableBytesView))
        } catch {
            throw APIError.decoding(error)
        }
    }

    func checkModel(_ name: String?) throws {
        guard let name, name != options.alias else { return }
        throw APIError(.notFound, "The model '\(name)' does not exist; this server serves '\(options.alias)'",
                       code: "model_not_found", param: "model")
    }

    func tokenize(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let scheduler = try ready()
        let body = try await decode(TokenizeRequest.self, request)
        let tokens = scheduler.model.tokenizer.encode(body.content, addSpecialTokens: body.add_special ?? false,
                                                      parseSpecial: body.parse_special ?? true)
        return jsonResponse(TokenizeResponse(tokens: tokens))
    }

    func detokenize(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let scheduler = try ready()
        let body = try await decode(DetokenizeRequest.self, request)
        let vocab = scheduler.model.config.nVocab
        if let bad = body.tokens.enumerated().first(where: { $0.element < 0 || Int($0.element) >= vocab }) {
            throw APIError.badRequest("token id \(bad.element) is outside the vocabulary (0..<\(vocab))",
                                      param: "tokens[\(bad.offset)]")
        }
        return jsonResponse(DetokenizeResponse(content: scheduler.model.tokenizer.decode(body.tokens)))
    }

    func chat(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let scheduler = try ready()
        let body = try await decode(ChatCompletionRequest.self, request)
        try checkModel(body.model)
        guard !body.messages.isEmpty else {
            throw APIError.badRequest("messages must contain at least one message", param: "messages")
        }
        var messages: [ChatMessage] = []
        for (i, m) in body.messages.enumerated() {
            let role: ChatMessage.Role
            switch m.role {
            case "system", "developer": role = .system
            case "user": role = .user
            case "assistant": role = .assistant
            default:
                throw APIError.badRequest("messages[\(i)].role '\(m.role)' is not supported (system, developer, user, assistant)",
                                          param: "messages[\(i)].role")
            }
            var text = ""
            switch m.content {
            case .none: text = ""
            case .text(let s)?: text = s
            case .parts(let parts)?:
                for (j, p) in parts.enumerated() {
                    guard p.type == "text", let t = p.text else {
                        throw APIError.badRequest("messages[\(i)].content[\(j)] has type '\(p.type)'; only text parts are supported",
                                                  param: "messages[\(i)].content[\(j)].type")
                    }
                    text += t
                }
            }
            messages.append(ChatMessage(role: role, content: text))
        }
        let params = try parameters(body.sampling, scheduler: scheduler)
        return try await generate(.chat(messages), params, sampling: body.sampling, chat: true, scheduler: scheduler)
    }

    func completions(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let scheduler = try ready()
        let body = try await decode(CompletionRequest.self, request)
        try checkModel(body.model)
        if body.echo == true { throw APIError.badRequest("echo is not supported", param: "echo", code: "unsupported") }
        if let s = body.suffix, !s.isEmpty {
            throw APIError.badRequest("suffix is not supported", param: "suffix", code: "unsupported")
        }
        if let b = body.best_of, b != 1 { throw APIError.badRequest("best_of must be 1, got \(b)", param: "best_of") }
        let prompt: Prompt
        switch body.prompt {
        case .text(let s): prompt = .text(s)
        case .texts(let a):
            guard a.count == 1 else {
                throw APIError.badRequest("prompt must be one string (got a list of \(a.count))", param: "prompt")
            }
            prompt = .text(a[0])
        case .tokens(let t): prompt = .tokens(t)
        }
        let params = try parameters(body.sampling, scheduler: scheduler)
        return try await generate(prompt, params, sampling: body.sampling, chat: false, scheduler: scheduler)
    }

    /// OpenAI sampling fields to library parameters; every unsupported value is a 400.
    func parameters(_ f: SamplingFields, scheduler: BatchScheduler) throws -> GenerationParameters {
        let ceiling = options.maxTokens ?? scheduler.contextLength
        var p = GenerationParameters(temperature: 0.8)
        if let n = f.n, n != 1 { throw APIError.badRequest("n must be 1 (one choice per request), got \(n)", param: "n") }
        if f.logprobs == true { throw APIError.badRequest("logprobs is not supported", param: "logprobs", code: "unsupported") }
        for (name, v) in [("presence_penalty", f.presence_penalty), ("frequency_penalty", f.frequency_penalty)] {
            if let v, v != 0 {
                throw APIError.badRequest("\(name) is not supported (only 0); use repeat_penalty", param: name, code: "unsupported")
            }
        }
        if let m = f.max_completion_tokens ?? f.max_tokens {
            let name = f.max_completion_tokens != nil ? "max_completion_tokens" : "max_tokens"
            guard m >= 1, m <= ceiling else {
                throw APIError.badRequest("\(name) must be in 1...\(ceiling), got \(m)", param: name)
            }
            p.maxTokens = m
        } else {
            p.maxTokens = ceiling
        }
        if let t = f.temperature {
            guard t >= 0, t <= 2 else { throw APIError.badRequest("temperature must be in 0...2, got \(t)", param: "temperature") }
            p.temperature = Float(t)
        }
        if let v = f.top_p {
            guard v > 0, v <= 1 else { throw APIError.badRequest("top_p must be in (0, 1], got \(v)", param: "top_p") }
            p.topP = Float(v)
        }
        if let v = f.top_k {
            guard v >= 0 else { throw APIError.badRequest("top_k must be >= 0, got \(v)", param: "top_k") }
            p.topK = v
        }
        if let v = f.min_p {
            guard v >= 0, v <= 1 else { throw APIError.badRequest("min_p must be in [0, 1], got \(v)", param: "min_p") }
            p.minP = Float(v)
        }
        if let v = f.repeat_penalty {
            guard v > 0, v.isFinite else { throw APIError.badRequest("repeat_penalty must be > 0, got \(v)", param: "repeat_penalty") }
            p.repeatPenalty = Float(v)
        }
        if let v = f.repeat_last_n {
            guard v >= -1 else { throw APIError.badRequest("repeat_last_n must be >= -1, got \(v)", param: "repeat_last_n") }
            p.repeatLastN = v
        }
        if let s = f.seed { p.seed = UInt64(bitPattern: s) }
        if f.ignore_eos == true { p.stopAtEndOfGeneration = false }
        if let stop = f.stop?.strings {
            guard stop.count <= 4 else { throw APIError.badRequest("stop takes at most 4 strings, got \(stop.count)", param: "stop") }
            guard !stop.contains("") else { throw APIError.badRequest("stop strings must not be empty", param: "stop") }
            p.stop = stop
        }
        return p
    }

    static func usage(_ i: GenerationInfo) -> CompletionUsage {
        .init(prompt_tokens: i.promptTokens, completion_tokens: i.generatedTokens,
              total_tokens: i.promptTokens + i.generatedTokens)
    }

    static func finishReason(_ r: StopReason) -> String {
        switch r {
        case .endOfGeneration, .stopSequence, .cancelled: "stop"
        case .length, .contextFull: "length"
        }
    }

    func submit(_ prompt: Prompt, _ params: GenerationParameters, scheduler: BatchScheduler) throws
        -> AsyncThrowingStream<GenerationEvent, any Error>
    {
        do {
            return try scheduler.submit(prompt, parameters: params)
        } catch let e as BatchScheduler.QueueFull {
            throw APIError(.serviceUnavailable, "the server is busy (\(e)); retry later", type: "server_error",
                           code: "server_busy", retryAfter: 1)
        } catch let e as SpikeRunError {
            throw APIError.from(e)
        }
    }

    func generate(_ prompt: Prompt, _ params: GenerationParameters, sampling: SamplingFields, chat: Bool,
                  scheduler: BatchScheduler) async throws -> Response {
        let stream = try submit(prompt, params, scheduler: scheduler)
        let id = (chat ? "chatcmpl-" : "cmpl-") + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        let created = Int(Date().timeIntervalSince1970)
        let model = options.alias
        let fingerprint = "spikerun-" + (scheduler.isSpikeDriven ? "spike" : "dense")
        if sampling.stream != true {
            var text = ""
            var info: GenerationInfo?
            do {
                for try await e in stream {
                    switch e {
                    case .text(let s): text += s
                    case .info(let i): info = i
                    }
                }
            } catch let e as SpikeRunError {
                throw APIError.from(e)
            }
            guard let info else {
                throw APIError(.internalServerError, "generation ended without a result", type: "server_error")
            }
            let reason = Self.finishReason(info.stopReason)
            if chat {
                return jsonResponse(ChatCompletion(
                    id: id, created: created, model: model, system_fingerprint: fingerprint,
                    choices: [.init(index: 0, message: .init(role: "assistant", content: text), finish_reason: reason)],
                    usage: Self.usage(info)))
            }
            return jsonResponse(Completion(
                id: id, created: created, model: model, system_fingerprint: fingerprint,
                choices: [.init(index: 0, text: text, finish_reason: reason)], usage: Self.usage(info)))
        }
        let includeUsage = sampling.stream_options?.include_usage == true
        let body = ResponseBody { writer in
            func send(_ value: some Encodable) async throws {
                var buffer = ByteBuffer(string: "data: ")
                buffer.writeBytes(jsonData(value))
                buffer.writeString("\n\n")
                try await writer.write(buffer)
            }
            func chatChunk(_ delta: ChatCompletionChunk.Delta, _ reason: String?) -> ChatCompletionChunk {
                ChatCompletionChunk(id: id, created: created, model: model, system_fingerprint: fingerprint,
                                    choices: [.init(index: 0, delta: delta, finish_reason: reason)])
            }
            func textChunk(_ text: String, _ reason: String?) -> Completion {
                Completion(id: id, created: created, model: model, system_fingerprint: fingerprint,
                           choices: [.init(index: 0, text: text, finish_reason: reason)])
            }
            if chat { try await send(chatChunk(.init(role: "assistant", content: ""), nil)) }
            do {
                for try await e in stream {
                    switch e {
                    case .text(let s):
                        if chat { try await send(chatChunk(.init(content: s), nil)) } else { try await send(textChunk(s, nil)) }
                    case .info(let info):
                        let reason = Self.finishReason(info.stopReason)
                        if chat { try await send(chatChunk(.init(), reason)) } else { try await send(textChunk("", reason)) }
                        if includeUsage {
                            if chat {
                                var c = chatChunk(.init(), nil)
                                c.choices = []
                                c.usage = Self.usage(info)
                                try await send(c)
                            } else {
                                var c = textChunk("", nil)
                                c.choices = []
                                c.usage = Self.usage(info)
                                try await send(c)
                            }
                        }
                    }
                }
            } catch let e as SpikeRunError {
                try await send(APIError.from(e).body)
            }
            try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
            try await writer.finish(nil)
        }
        return Response(status: .ok,
                        headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                        body: body)
    }
}

/// Authentication (Bearer, constant time; /health stays public), CORS, OpenAI-shaped errors
/// for everything thrown below, and the request counters.
struct GuardMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let server: OpenAIServer

    func handle(_ request: Request, context: Context,
                next: (Request, Context) async throws -> Response) async throws -> Response {
        let origin = request.headers[.origin]
        var response: Response
        if request.method == .options, origin != nil {
            response = Response(status: .noContent)
        } else {
            do {
                try authorize(request)
                response = try await next(request, context)
            } catch let e as APIError {
                response = e.response()
            } catch let e as HTTPError {
                let type = e.status == .notFound ? "invalid_request_error" : "server_error"
                let message = e.status == .notFound ? "no endpoint \(request.method) \(request.uri.path)"
                    : (e.body ?? e.status.reasonPhrase)
                response = APIError(e.status, message, type: type, code: e.status == .notFound ? "not_found" : nil).response()
            } catch {
                response = APIError(.internalServerError, "\(error)", type: "server_error", code: "internal_error").response()
            }
        }
        if let origin, let allowed = allowedOrigin(origin) {
            response.headers[.accessControlAllowOrigin] = allowed
            response.headers[.accessControlAllowHeaders] = "Authorization, Content-Type"
            response.headers[.accessControlAllowMethods] = "GET, POST, OPTIONS"
            if allowed != "*" { response.headers[.vary] = "Origin" }
        }
        server.state.count(status: response.status)
        return response
    }

    func authorize(_ request: Request) throws {
        guard let key = server.options.apiKey else { return }
        let path = request.uri.path
        if path == "/health" || path == "/v1/health" { return }
        let header = request.headers[.authorization] ?? ""
        let prefix = "Bearer "
        guard header.hasPrefix(prefix) else {
            throw APIError(.unauthorized, "missing API key: send 'Authorization: Bearer <key>'",
                           code: "invalid_api_key")
        }
        guard constantTimeEquals(String(header.dropFirst(prefix.count)), key) else {
            throw APIError(.unauthorized, "invalid API key", code: "invalid_api_key")
        }
    }

    func allowedOrigin(_ origin: String) -> String? {
        let list = server.options.corsOrigins
        if list.contains("*") { return "*" }
        return list.contains(origin) ? origin : nil
    }
}
