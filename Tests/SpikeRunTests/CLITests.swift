import Foundation
import Testing
@testable import SpikeRun

/// The built `spikerun` binary: stdout, stderr and exit codes.
@Suite("spikerun CLI", .serialized)
struct CLITests {
    var exe: String { TestPaths.executable }
    var model: String { TestPaths.modelPath }

    @Test("generate streams only the generated text to stdout; stats go to stderr")
    func generate() throws {
        let r = try runProcess(exe, ["generate", "-m", model, "-p", "The capital of France is", "-n", "8", "--temp", "0", "-t", "2"])
        #expect(r.status == 0, "\(r.stderr)")
        let fixture = try OracleFixture.load().greedy[0]
        let m = try SharedModel.get()
        #expect(r.stdout == m.tokenizer.decode(Array(fixture.greedy.prefix(8))) + "\n")
        #expect(r.stderr.contains("generated 8 tokens"))
    }

    @Test("generate --json prints one object with ids, text and statistics")
    func generateJSON() throws {
        let r = try runProcess(exe, ["generate", "-m", model, "-p", "The capital of France is", "-n", "8", "--temp", "0", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let fixture = try OracleFixture.load().greedy[0]
        #expect((obj["tokens"] as? [Int])?.map(Int32.init) == Array(fixture.greedy.prefix(8)))
        #expect(obj["generated_tokens"] as? Int == 8)
        #expect(obj["stop_reason"] as? String == "length")
        #expect(obj["text"] is String)
    }

    @Test("tokenize --json matches the library; --no-parse-special splits special text")
    func tokenize() throws {
        let r = try runProcess(exe, ["tokenize", "-m", model, "--json", "<|im_start|>user"])
        #expect(r.status == 0, "\(r.stderr)")
        let ids = try JSONDecoder().decode([Int32].self, from: Data(r.stdout.utf8))
        #expect(ids.first == 1)
        let r2 = try runProcess(exe, ["tokenize", "-m", model, "--json", "--no-parse-special", "<|im_start|>user"])
        let ids2 = try JSONDecoder().decode([Int32].self, from: Data(r2.stdout.utf8))
        #expect(ids2.count > ids.count)
    }

    @Test("info describes the model")
    func info() throws {
        let r = try runProcess(exe, ["info", "-m", model])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("layers 30, embedding 576, ffn 1536, heads 9 (kv 3)"))
        #expect(r.stdout.contains("Q4_1 210"))
    }

    @Test("eval --json reports perplexity")
    func eval() throws {
        let text = TestPaths.dataFile("text/botchan.txt")
        let r = try runProcess(exe, ["eval", "-m", model, "-f", text, "-c", "128", "--chunks", "2", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let ppl = try #require(obj["ppl"] as? Double)
        #expect(ppl > 1 && ppl < 200)
        #expect(obj["tokens_scored"] as? Int == 2 * 63)
    }

    @Test("bench --json reports pp and tg speeds")
    func bench() throws {
        let r = try runProcess(exe, ["bench", "-m", model, "-p", "16", "-n", "4", "-r", "2", "-t", "2", "--numa", "distribute", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let tests = try #require(obj["tests"] as? [[String: Any]])
        #expect(tests.map { $0["name"] as? String } == ["pp16", "tg4"])
        #expect(tests.allSatisfy { ($0["samples"] as? [Double])?.count == 2 && ($0["median"] as? Double ?? 0) > 0 })
        #expect(obj["threads"] as? Int == 2)
        #expect(obj["numaPolicy"] as? String == "distribute")
        #expect((obj["pool"] as? String)?.contains("2 threads") == true, "\(obj["pool"] ?? "")")
        #expect((obj["peakRSSBytes"] as? Int ?? 0) > (obj["weightBytes"] as? Int ?? .max) / 2)
    }

    @Test("chat answers turns read from stdin")
    func chat() throws {
        let r = try runProcess(exe, ["chat", "-m", model, "--temp", "0", "-n", "12"], stdin: "Hello!\nWhat is 2+2?\n")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.split(separator: "\n").count >= 2)
    }

    @Test("bad input gives one error line and a non-zero exit", arguments: [
        (["generate", "-m", "/nonexistent.gguf", "-p", "x"], "cannot"),
        (["generate", "-m", "/etc/hostname", "-p", "x"], "GGUF"),
        (["generate", "-p", ""], "empty"),
        (["generate"], "prompt"),
        (["generate", "-p", "x", "--top-p", "2"], "top-p"),
        (["generate", "-p", "x", "-t", "0"], "threads"),
        (["eval", "-f", "/nonexistent.txt"], "cannot read"),
        (["bench", "-p", "abc"], "-p"),
        (["bench", "--numa", "everywhere"], "--numa"),
    ])
    func badInput(args: [String], needle: String) throws {
        let r = try runProcess(exe, args)
        #expect(r.status != 0)
        #expect(r.stdout.isEmpty)
        let lines = r.stderr.split(separator: "\n").filter { !$0.isEmpty }
        #expect(lines.first?.lowercased().contains(needle.lowercased()) == true, "stderr: \(r.stderr)")
    }
}
