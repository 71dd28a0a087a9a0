// Chat messages and the model's chat template.

/// One message of a conversation.
public struct ChatMessage: Sendable, Hashable, Codable {
    /// Who wrote a message. Encoded as the strings `system`, `user`, `assistant`.
    public enum Role: String, Sendable, Hashable, Codable {
        case system, user, assistant
    }

    public var role: Role
    public var content: String

    public init(role: Role, content: String) {
        self.role = role
        self.content = content
    }

    /// A system message (instructions for the assistant).
    public static func system(_ content: String) -> ChatMessage { .init(role: .system, content: content) }
    /// A user message.
    public static func user(_ content: String) -> ChatMessage { .init(role: .user, content: content) }
    /// An assistant message (an earlier reply).
    public static func assistant(_ content: String) -> ChatMessage { .init(role: .assistant, content: content) }
}

extension Tokenizer {
    /// Renders `messages` with the model's own chat template (`tokenizer.chat_template`), as
    /// Hugging Face transformers does (Jinja2 with `trim_blocks` and `lstrip_blocks`).
    ///
    /// The template runs in a small Jinja interpreter that covers what chat templates use
    /// (`for`, `if`, `set`, `namespace`, loop variables, string methods, common filters and
    /// tests). Variables: `messages`, `add_generation_prompt`, `bos_token`, `eos_token`.
    ///
    /// - Returns: the prompt text; tokenize it with `encode(_:addSpecialTokens: true,
    ///   parseSpecial: true)`.
    /// - Throws: `.unsupported` when the model has no template or the template uses Jinja
    ///   features outside the supported subset (the message names the construct);
    ///   `.invalidArgument` when the template itself rejects the conversation
    ///   (`raise_exception`).
    public func applyChatTemplate(_ messages: [ChatMessage], addGenerationPrompt: Bool = true)
        throws(SpikeRunError) -> String
    {
        guard let source = vocab.chatTemplate, !source.isEmpty else {
            throw .unsupported("the model has no chat template (tokenizer.chat_template is missing)")
        }
        let template = try ChatTemplate(source)
        func specialText(_ id: Int32?) -> JinjaValue {
            guard let id, let t = self.tokenText(id) else { return .string("") }
            return .string(t)
        }
        let context: [String: JinjaValue] = [
            "messages": .list(messages.map {
                .dict([("role", .string($0.role.rawValue)), ("content", .string($0.content))])
            }),
            "add_generation_prompt": .bool(addGenerationPrompt),
            "bos_token": specialText(bosToken),
            "eos_token": specialText(eosToken),
        ]
        return try template.render(context)
    }
}
