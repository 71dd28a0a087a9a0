import Foundation
import Testing
@testable import SpikeRun

// Tokenizer agreement with llama.cpp (oracle: llama-cpp-python 0.3.36, see
// tools/fixtures/make_tokenizer_fixtures.py). Needs models/ (`make model`) and, for the other
// vocabularies, data/vocab/ (`make data`, tools/fixtures/fetch_vocab_tests.sh).

enum TokenizerTestSupport {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let modelPath = root.appendingPathComponent("models/SmolLM2-135M-Instruct.Q4_1.gguf").path
    static let vocabDir = root.appendingPathComponent("data/vocab")
    static let fixtureDir = root.appendingPathComponent("Tests/Fixtures/tokenizer")

    static let smolLM2: Result<Tokenizer, SpikeRunError> = {
        guard FileManager.default.fileExists(atPath: modelPath) else {
            return .failure(.io("model missing at \(modelPath): run 'make model'"))
        }
        do throws(SpikeRunError) { return .success(try Tokenizer(gguf: try GGUFFile(path: modelPath))) }
        catch { return .failure(error) }
    }()

    static func tokenizer() throws -> Tokenizer { try smolLM2.get() }

    static func vocabPath(_ name: String) throws -> String {
        let p = vocabDir.appendingPathComponent("ggml-vocab-\(name).gguf").path
        guard FileManager.default.fileExists(atPath: p) else {
            throw SpikeRunError.io("llama.cpp vocab test file missing at \(p): run "
                                   + "'make data' (tools/fixtures/fetch_vocab_tests.sh)")
        }
        return p
    }

    static func json<T: Decodable>(_ name: String, as: T.Type) throws -> T {
        let url = fixtureDir.appendingPathComponent(name)
        return try JSONDecoder().decode(T.self, from: try Data(contentsOf: url))
    }

    static func bytes(hex: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(hex.utf8.count / 2)
        var it = hex.utf8.makeIterator()
        func nibble(_ c: UInt8) -> UInt8 {
            c <= UInt8(ascii: "9") ? c - UInt8(ascii: "0") : (c | 0x20) - UInt8(ascii: "a") + 10
        }
        while let a = it.next(), let b = it.next() { out.append(nibble(a) << 4 | nibble(b)) }
        return out
    }

    static func fnv1a64(_ ids: [Int32]) -> String {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for t in ids {
            for k in 0..<4 {
                h ^= UInt64(UInt32(bitPattern: t) >> (8 * UInt32(k)) & 0xFF)
                h = h &* 0x100_0000_01B3
            }
        }
        let s = String(h, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }
}

struct SmolLM2Fixture: Decodable {
    struct Vocab: Decodable {
        var n_tokens: Int
        var bos: Int32?, eos: Int32?, eot: Int32?
        var add_bos: Bool, add_eos: Bool
        var eog: [Int32]
        var control: [Int32]
    }
    struct Case: Decodable {
        var text: String
        var text_hex: String
        var ids: [Int32]
        var ids_no_special: [Int32]
        var ids_add_special: [Int32]
        var decoded_hex: String
        var decoded_special_hex: String
        var decoded_no_special_hex: String
        var python_detokenize_hex: String
    }
    struct ByteCase: Decodable {
        var text_hex: String
        var ids: [Int32]
        var ids_no_special: [Int32]
        var decoded_hex: String
    }
    struct Corpus: Decodable {
        var file: String
        var bytes: Int
        var n_ids: Int
        var fnv1a64: String
        var first_ids: [Int32]
    }
    var oracle: String
    var llama_cpp_version: String
    var vocab: Vocab
    var cases: [Case]
    var byte_cases: [ByteCase]
    var pieces: [String: [String]]
    var corpora: [Corpus]
}

@Suite("Tokenizer: SmolLM2 vs llama.cpp")
struct SmolLM2TokenizerTests {
    let fixture: SmolLM2Fixture
    let tokenizer: Tokenizer

    init() throws {
        fixture = try TokenizerTestSupport.json("smollm2.json", as: SmolLM2Fixture.self)
        tokenizer = try TokenizerTestSupport.tokenizer()
    }

    @Test func fixtureIsLargeAndVersioned() {
        #expect(fixture.cases.count >= 60)
        #expect(fixture.llama_cpp_version == "0.3.36")
    }

    @Test func vocabularyFacts() throws {
        #expect(tokenizer.vocabularySize == fixture.vocab.n_tokens)
        #expect(tokenizer.bosToken == fixture.vocab.bos)
        #expect(tokenizer.eosToken == fixture.vocab.eos)
        // llama.cpp takes the first EOT candidate in hash-map order (here <|endoftext|>); we
        // take the first in its candidate list (<|im_end|>). Both are end-of-generation.
        #expect(tokenizer.eotToken == tokenizer.tokenID("<|im_end|>"))
        #expect(tokenizer.isEndOfGeneration(try #require(tokenizer.eotToken)))
        #expect(tokenizer.addBOS == fixture.vocab.add_bos)
        #expect(tokenizer.addBOS == false)
        #expect(tokenizer.addEOS == fixture.vocab.add_eos)
        #expect(tokenizer.endOfGenerationTokens == fixture.vocab.eog)
        let control = (0..<Int32(tokenizer.vocabularySize)).filter { tokenizer.isControl($0) }
        #expect(control == fixture.vocab.control)
        #expect(tokenizer.model == "gpt2")
        #expect(tokenizer.preTokenizer == "smollm")
    }

    @Test func idsMatchLlamaCpp() {
        for c in fixture.cases {
            let bytes = TokenizerTestSupport.bytes(hex: c.text_hex)
            #expect(Array(c.text.utf8) == bytes)
            #expect(tokenizer.encode(c.text, addSpecialTokens: false, parseSpecial: true) == c.ids,
                    "parseSpecial: \(c.text.debugDescription)")
            #expect(tokenizer.encode(c.text, addSpecialTokens: false, parseSpecial: false)
                    == c.ids_no_special, "no special: \(c.text.debugDescription)")
            #expect(tokenizer.encode(c.text) == c.ids_add_special,
                    "add special: \(c.text.debugDescription)")
        }
    }

    @Test func invalidUTF8MatchesLlamaCpp() {
        #expect(fixture.byte_cases.count >= 5)
        for c in fixture.byte_cases {
            let bytes = TokenizerTestSupport.bytes(hex: c.text_hex)
            #expect(tokenizer.encode(bytes: bytes, addSpecialTokens: false) == c.ids, "\(c.text_hex)")
            #expect(tokenizer.encode(bytes: bytes, addSpecialTokens: false, parseSpecial: false)
                    == c.ids_no_special, "\(c.text_hex)")
            #expect(tokenizer.decodeBytes(c.ids) == TokenizerTestSupport.bytes(hex: c.decoded_hex))
        }
    }

    @Test func decodeMatchesLlamaDetokenize() {
        for c in fixture.cases {
            #expect(tokenizer.decodeBytes(c.ids) == TokenizerTestSupport.bytes(hex: c.decoded_hex),
                    "\(c.text.debugDescription)")
            #expect(tokenizer.decodeBytes(c.ids, renderSpecial: true)
                    == TokenizerTestSupport.bytes(hex: c.decoded_special_hex), "\(c.text.debugDescription)")
            #expect(tokenizer.decodeBytes(c.ids_no_special)
                    == TokenizerTestSupport.bytes(hex: c.decoded_no_special_hex), "\(c.text.debugDescription)")
            // llama-cpp-python's detokenize is the plain concatenation of the pieces.
            #expect(c.ids_no_special.flatMap { tokenizer.pieceBytes($0) }
                    == TokenizerTestSupport.bytes(hex: c.python_detokenize_hex))
        }
    }

    @Test func decodeRoundTrips() {
        for c in fixture.cases {
            #expect(tokenizer.decode(tokenizer.encode(c.text, parseSpecial: false)) == c.text,
                    "\(c.text.debugDescription)")
            #expect(tokenizer.decode(tokenizer.encode(c.text), renderSpecial: true) == c.text,
                    "\(c.text.debugDescription)")
        }
    }

    @Test func piecesMatchLlamaTokenToPiece() {
        #expect(fixture.pieces.count > 600)
        for (key, value) in fixture.pieces {
            let t = Int32(key)!
            #expect(tokenizer.pieceBytes(t) == TokenizerTestSupport.bytes(hex: value[0]), "token \(t)")
            #expect(tokenizer.pieceBytes(t, renderSpecial: true) == TokenizerTestSupport.bytes(hex: value[1]),
                    "token \(t)")
        }
        #expect(tokenizer.pieceBytes(-1).isEmpty)
        #expect(tokenizer.pieceBytes(Int32(tokenizer.vocabularySize)).isEmpty)
    }

    @Test func wholeCorporaMatch() throws {
        for corpus in fixture.corpora {
            let path = TokenizerTestSupport.root.appendingPathComponent(corpus.file).path
            guard let data = FileManager.default.contents(atPath: path) else {
                Issue.record("\(corpus.file) missing: run 'make data'")
                continue
            }
            #expect(data.count == corpus.bytes, "\(corpus.file) changed")
            let ids = tokenizer.encode(bytes: [UInt8](data), addSpecialTokens: false, parseSpecial: false)
            #expect(ids.count == corpus.n_ids, "\(corpus.file)")
            #expect(Array(ids.prefix(corpus.first_ids.count)) == corpus.first_ids)
            #expect(TokenizerTestSupport.fnv1a64(ids) == corpus.fnv1a64, "\(corpus.file)")
        }
    }

    @Test func specialTokens() throws {
        let t = tokenizer
        let imStart = try #require(t.tokenID("<|im_start|>"))
        let imEnd = try #require(t.tokenID("<|im_end|>"))
        let endOfText = try #require(t.tokenID("<|endoftext|>"))
        #expect(t.encode("<|im_start|>", addSpecialTokens: false) == [imStart])
        #expect(t.encode("<|im_start|>", addSpecialTokens: false, parseSpecial: false).count > 1)
        #expect(!t.encode("<|im_start|>", addSpecialTokens: false, parseSpecial: false).contains(imStart))
        let ids = t.encode("<|im_start|>user\nHi<|im_end|>\n", addSpecialTokens: false)
        #expect(ids.first == imStart)
        #expect(ids.contains(imEnd))
        #expect(t.isEndOfGeneration(imEnd))
        #expect(t.isEndOfGeneration(endOfText))
        #expect(!t.isEndOfGeneration(imStart))
        #expect(t.isControl(imStart))
        // Control tokens render only on request.
        #expect(t.decode([imStart]) == "")
        #expect(t.decode([imStart], renderSpecial: true) == "<|im_start|>")
        // SmolLM2 does not add BOS.
        #expect(t.encode("Hi") == t.encode("Hi", addSpecialTokens: false))
    }

    @Test func streamingHoldsBackSplitCharacters() throws {
        let t = tokenizer
        // An emoji the vocabulary has no token for arrives as several byte tokens.
        let ids = t.encode("a🦙b", addSpecialTokens: false)
        let pieces = ids.map { t.pieceBytes($0) }
        #expect(pieces.contains { String(validating: $0, as: UTF8.self) == nil },
                "expected the emoji to be split over byte tokens: \(ids)")
        var detok = StreamingDetokenizer(tokenizer: t)
        var outputs: [String] = []
        for id in ids { outputs.append(detok.append(id)) }
        outputs.append(detok.flush())
        #expect(outputs.joined() == "a🦙b")
        #expect(outputs.allSatisfy { !$0.contains("\u{FFFD}") })
        #expect(outputs.contains("🦙") || outputs.contains { $0.hasPrefix("🦙") })
        #expect(outputs.contains(""), "some token must have been held back")

        // An incomplete character at the very end becomes U+FFFD on flush.
        var d2 = StreamingDetokenizer(tokenizer: t)
        let llama = Array("🦙".utf8)
        let byteTokens = llama.prefix(2).compactMap { b in
            t.tokenID(String(decoding: ByteLevelMapping.byteToUTF8[Int(b)], as: UTF8.self))
        }
        #expect(byteTokens.count == 2)
        #expect(d2.append(try #require(t.tokenID("x"))) == "x")
        for bt in byteTokens { #expect(d2.append(bt) == "") }
        #expect(d2.flush() == "\u{FFFD}")
        #expect(d2.flush() == "")

        // Invalid bytes that can never complete come out at once.
        var d3 = StreamingDetokenizer(tokenizer: t)
        let lone = try #require(t.tokenID(String(decoding: ByteLevelMapping.byteToUTF8[0x80], as: UTF8.self)))
        #expect(d3.append(lone) == "\u{FFFD}")
    }

    @Test func streamingMatchesDecodeOnFixture() {
        for c in fixture.cases {
            var d = StreamingDetokenizer(tokenizer: tokenizer, renderSpecial: true)
            var s = ""
            for id in c.ids { s += d.append(id) }
            s += d.flush()
            #expect(s == tokenizer.decode(c.ids, renderSpecial: true))
        }
    }

    @Test func encodesProseFast() throws {
        // ~40k tokens of varied prose: generated (same text every run), so the test needs no
        // data files.
        var words: [String] = []
        var rng = SplitMix64(seed: 42)
        let syllables = ["ka", "lo", "mi", "ter", "shan", "dre", "qu", "ip", "or", "ve", "th", "ing",
                         "ab", "st", "ou", "el", "ph", "ry", "ne", "co"]
        for i in 0..<24_000 {
            var w = ""
            for _ in 0..<(1 + Int.random(in: 0..<4, using: &rng)) { w += syllables.randomElement(using: &rng)! }
            if i % 13 == 0 { w = w.capitalized }
            if i % 17 == 0 { w += "," }
            if i % 29 == 0 { w += ".\n" }
            words.append(w)
        }
        let text = words.joined(separator: " ")
        let clock = ContinuousClock()
        var ids: [Int32] = []
        let elapsed = clock.measure { ids = tokenizer.encode(text, addSpecialTokens: false) }
        #expect(ids.count > 35_000)
        #expect(tokenizer.decode(ids) == text)
        var isDebug = false
        assert({ isDebug = true; return true }())
        let limit: Duration = isDebug ? .seconds(20) : .milliseconds(700)
        #expect(elapsed < limit, "encoding \(ids.count) tokens took \(elapsed)")
    }
}

// MARK: - llama.cpp's vocab test files

struct VocabOracleFixture: Decodable {
    struct Info: Decodable {
        var n_tokens: Int
        var bos: Int32?, eos: Int32?, eot: Int32?
        var add_bos: Bool, add_eos: Bool
        var eog: [Int32]
    }
    struct Case: Decodable {
        var text_hex: String
        var ids_add_special: [Int32]
        var decoded_hex: String
        var decoded_special_hex: String
    }
    struct Vocab: Decodable {
        var info: Info
        var cases: [Case]
    }
    var vocabs: [String: Vocab]
}

@Suite("Tokenizer: llama.cpp vocab test files")
struct VocabFileTests {
    static let names = ["gpt-2", "llama-bpe", "qwen2", "qwen35", "starcoder", "refact", "command-r",
                        "falcon", "mpt", "llama-spm", "phi-3"]

    /// llama.cpp's test-tokenizer-0: inputs separated by "\n__ggml_vocab_test__\n", one line of
    /// space-separated ids per input, tokenized without BOS and without special parsing.
    static func readTests(_ path: String) throws -> [(String, [Int32])] {
        let inp = try String(contentsOfFile: path + ".inp", encoding: .utf8)
        let out = try String(contentsOfFile: path + ".out", encoding: .utf8)
        var inputs = inp.components(separatedBy: "\n__ggml_vocab_test__\n")
        if inp.hasSuffix("\n__ggml_vocab_test__\n") { inputs.removeLast() }  // as llama.cpp reads it
        var lines = out.components(separatedBy: "\n")
        if lines.last == "" { lines.removeLast() }
        guard inputs.count == lines.count else {
            throw SpikeRunError.format("\(path): \(inputs.count) inputs but \(lines.count) outputs")
        }
        return zip(inputs, lines).map { text, line in
            (text, line.split(separator: " ").map { Int32($0)! })
        }
    }

    @Test(arguments: names)
    func matchesLlamaCppTestFile(_ name: String) throws {
        let path = try TokenizerTestSupport.vocabPath(name)
        let tokenizer = try Tokenizer(gguf: try GGUFFile(path: path))
        let tests = try Self.readTests(path)
        #expect(tests.count > 20)
        for (text, expected) in tests {
            let got = tokenizer.encode(text, addSpecialTokens: false, parseSpecial: false)
            #expect(got == expected, "\(name): \(text.debugDescription)")
        }
    }

    @Test(arguments: names)
    func matchesOracleWithSpecialTokensAndDecode(_ name: String) throws {
        let fixture = try TokenizerTestSupport.json("vocab_oracle.json", as: VocabOracleFixture.self)
        let oracle = try #require(fixture.vocabs[name])
        let path = try TokenizerTestSupport.vocabPath(name)
        let tokenizer = try Tokenizer(gguf: try GGUFFile(path: path))
        #expect(tokenizer.vocabularySize == oracle.info.n_tokens)
        #expect(tokenizer.bosToken == oracle.info.bos)
        #expect(tokenizer.eosToken == oracle.info.eos)
        #expect((tokenizer.eotToken == nil) == (oracle.info.eot == nil), "\(name)")
        if let eot = tokenizer.eotToken { #expect(tokenizer.isEndOfGeneration(eot)) }
        #expect(tokenizer.addBOS == oracle.info.add_bos)
        #expect(tokenizer.addEOS == oracle.info.add_eos)
        #expect(tokenizer.endOfGenerationTokens == oracle.info.eog, "\(name)")
        for c in oracle.cases {
            let bytes = TokenizerTestSupport.bytes(hex: c.text_hex)
            let ids = tokenizer.encode(bytes: bytes)
            #expect(ids == c.ids_add_special, "\(name): \(String(decoding: bytes, as: UTF8.self).debugDescription)")
            #expect(tokenizer.decodeBytes(c.ids_add_special) == TokenizerTestSupport.bytes(hex: c.decoded_hex),
                    "\(name) decode: \(String(decoding: bytes, as: UTF8.self).debugDescription)")
            #expect(tokenizer.decodeBytes(c.ids_add_special, renderSpecial: true)
                    == TokenizerTestSupport.bytes(hex: c.decoded_special_hex), "\(name) decode special")
        }
    }

    @Test func unsupportedVocabularyTypeIsNamed() throws {
        let path = try TokenizerTestSupport.vocabPath("bert-bge")
        #expect {
            _ = try Tokenizer(gguf: try GGUFFile(path: path))
        } throws: { error in
            guard let e = error as? SpikeRunError else { return false }
            return e.kind == .unsupported && e.message.contains("'bert'")
        }
    }
}

// MARK: - Plain-array tokenizers and errors

@Suite("Tokenizer: configuration and errors")
struct TokenizerConfigurationTests {
    /// A tiny byte-level vocabulary: the 256 mapped bytes, a few merges, two control tokens.
    static func tinyBPE(pre: String? = "gpt-2") -> Tokenizer.Configuration {
        var tokens = (0..<256).map { String(decoding: ByteLevelMapping.byteToUTF8[$0], as: UTF8.self) }
        let merges = ["h e", "l l", "he ll", "hell o", "Ġ w", "Ġw o", "r l", "Ġwo rl", "Ġworl d"]
        tokens += ["he", "ll", "hell", "hello", "Ġw", "Ġwo", "rl", "Ġworl", "Ġworld"]
        tokens += ["<|start|>", "<|stop|>"]
        var types = [Int](repeating: 1, count: tokens.count)
        types[types.count - 2] = 3
        types[types.count - 1] = 3
        var c = Tokenizer.Configuration(model: "gpt2", pre: pre, tokens: tokens, tokenTypes: types,
                                        merges: merges)
        c.bos = tokens.count - 2
        c.eos = tokens.count - 1
        c.addBOS = true
        return c
    }

    @Test func tinyVocabularyFromArrays() throws {
        let t = try Tokenizer(configuration: Self.tinyBPE())
        let hello = try #require(t.tokenID("hello")), world = try #require(t.tokenID("Ġworld"))
        #expect(t.encode("hello world", addSpecialTokens: false) == [hello, world])
        #expect(t.encode("hello world") == [t.bosToken!, hello, world])
        #expect(t.encode("<|stop|>hello", addSpecialTokens: false) == [t.eosToken!, hello])
        #expect(t.isEndOfGeneration(t.eosToken!))
        #expect(t.decode([hello, world]) == "hello world")
        // Bytes without merges fall back to one token per byte.
        #expect(t.encode("é", addSpecialTokens: false).count == 2)
        #expect(t.decode(t.encode("é ñ 🦙", addSpecialTokens: false)) == "é ñ 🦙")
    }

    @Test func unsupportedModelIsNamed() {
        var c = Self.tinyBPE()
        c.model = "bert"
        #expect {
            _ = try Tokenizer(configuration: c)
        } throws: { error in
            let e = error as! SpikeRunError
            return e.kind == .unsupported && e.message.contains("'bert'")
                && e.message.contains("tokenizer.ggml.model")
        }
    }

    @Test func unsupportedPreTokenizerIsNamed() {
        #expect {
            _ = try Tokenizer(configuration: Self.tinyBPE(pre: "deepseek-coder"))
        } throws: { error in
            let e = error as! SpikeRunError
            return e.kind == .unsupported && e.message.contains("'deepseek-coder'")
                && e.message.contains("tokenizer.ggml.pre")
        }
    }

    @Test func missingMergesIsAFormatError() {
        var c = Self.tinyBPE()
        c.merges = nil
        #expect {
            _ = try Tokenizer(configuration: c)
        } throws: { error in
            (error as! SpikeRunError).kind == .format
        }
    }

    @Test func unicodeClassesMatchLlamaCppTables() {
        // FNV-1a over (code point, category flags) at every change of flags, for all of
        // Unicode, as llama.cpp's unicode-data.cpp (Unicode 15.1) defines them.
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        var previous: UInt16 = 0xFFFF
        var changes = 0
        for c in 0..<UInt32(0x110000) {
            let f = CodepointFlags(c).rawValue & CodepointFlags.categoryMask
            if f != previous {
                for byte in [UInt8(c & 0xFF), UInt8(c >> 8 & 0xFF), UInt8(c >> 16), UInt8(f)] {
                    h ^= UInt64(byte)
                    h = h &* 0x100_0000_01B3
                }
                previous = f
                changes += 1
            }
        }
        #expect(changes == 2272)
        #expect(h == 0xD22B_409F_38A3_8528)
        #expect(CodepointFlags(0x20).isWhitespace && CodepointFlags(0x3000).isWhitespace)
        #expect(!CodepointFlags(0x1C).isWhitespace)
        #expect(CodepointFlags(0x0897).rawValue == CodepointFlags.undefined)  // Unicode 16
    }
}
