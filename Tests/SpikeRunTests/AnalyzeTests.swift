import Foundation
import Testing
@testable import SpikeRun

/// A converted (k = 8, int4, float attention) copy of the default model, written once per
/// test process to a temporary directory.
enum ConvertedModel {
    static let result: Result<String, SpikeRunError> = {
        do throws(SpikeRunError) {
            let source: Model
            do { source = try SharedModel.get() } catch { return .failure(error as! SpikeRunError) }
            let dir = FileManager.default.temporaryDirectory
                .appendingPathComponent("spikerun-analyze-tests-\(getpid())")
            try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let path = dir.appendingPathComponent("smollm2-k8.gguf").path
            try SpikeModelWriter.write(source: source, setup: SpikeSetup(
                config: .uniform(k: 8, nLayer: source.config.nLayer)), to: path)
            return .success(path)
        } catch {
            return .failure(error)
        }
    }()

    static func path() throws -> String { try result.get() }

    static let model: Result<Model, SpikeRunError> = {
        do throws(SpikeRunError) {
            let p: String
            do { p = try path() } catch { return .failure(error as! SpikeRunError) }
            return .success(try Model.load(p, options: .init(threads: 2)))
        } catch {
            return .failure(error)
        }
    }()
}

@Suite("Analyze: spike recording and the analyze command", .serialized)
struct AnalyzeTests {
    static let sentence = "The old man sat down near the bank of the river."

    @Test("recording changes no logit; counts match the runtime's counters")
    func recordingInvariance() async throws {
        let model = try ConvertedModel.model.get()
        #expect(model.spike != nil)
        let tokens = model.tokenizer.encode(Self.sentence, addSpecialTokens: true, parseSpecial: false)
        let session = try Session(model: model, contextLength: 64, batchSize: 64)
        #expect(session.isSpikeDriven)
        let plain = try await session.allLogits(for: tokens)

        // Everything at two layers (all neurons of L0.A to compare with the counters).
        let nLayer = model.config.nLayer
        let recorder = SpikeRecorder(sink: SpikeRecording(plan: RecordingPlan(
            layers: [0, 7, nLayer], neurons: .all)))
        let s = recorder.addSentence(SentenceInfo(text: Self.sentence, category: "test"))
        await session.resetSpikeStatistics()
        let recorded = try await session.record(tokens, into: recorder, sentence: s, allLogits: true)
        #expect(recorded.count == plain.count)
        #expect(recorded == plain, "logits changed while recording")
        let stats = await session.spikeStatistics()

        let rec = try #require(recorder.recording)
        #expect(rec.tokens == tokens)
        #expect(rec.keys.count == 4 + 4 + 1)
        #expect(Set(rec.keys.map(\.layer)) == [0, 7, nLayer])
        for key in rec.keys {
            let site = try #require(rec.sites[key])
            #expect(site.tokenCount == tokens.count, "\(key)")
            #expect(site.neuronCount == site.width, "\(key)")
            #expect(site.steps > 0, "\(key)")
            let st = try #require(stats.first { $0.layer == key.layer && $0.site == key.site.name })
            #expect(st.tokens == tokens.count, "\(key)")
            // Every spike the runtime counted is in the recording, and no other.
            var spikes = 0, steps = 0, active = 0
            for i in 0..<site.tokenCount {
                steps += Int(site.tokenSteps[i])
                for j in 0..<site.neuronCount {
                    let n = site.encoding.spikeCount(site.count(token: i, neuron: j), steps: Int(site.tokenSteps[i]))
                    spikes += n
                    active += n > 0 ? 1 : 0
                }
            }
            #expect(spikes == st.spikes, "\(key)")
            #expect(steps == st.timesteps, "\(key)")
            // Weight bytes: a 64-byte line per (input, tile of rows), read for the inputs that
            // fire; fp16 block scales (and Q4_1 mins) per (tile row, block), always read.
            #expect(active == st.activeInputs, "\(key)")
            let c = model.config
            let (nIn, rows): (Int, [Int]) = switch key.site {
            case .A: (c.nEmbd, [c.nEmbd, c.nHeadKV * c.headDim, c.nHeadKV * c.headDim])
            case .O: (c.nEmbd, [c.nEmbd])
            case .F: (c.nEmbd, [c.nFF, c.nFF])
            case .D: (c.nFF, [c.nEmbd])
            case .H: (c.nEmbd, [c.nVocab])
            }
            let tileRows = key.site == .H ? 64 : 128   // Q8_0 head lines, Q4_1 lines
            let padded = rows.map { ($0 + tileRows - 1) / tileRows * tileRows }.reduce(0, +)
            let line = padded / tileRows * 64
            let scales = padded * (nIn / 32) * (key.site == .H ? 2 : 4)
            #expect(st.weightBytesFull == tokens.count * (nIn * line + scales), "\(key)")
            #expect(st.weightBytesRead == active * line + tokens.count * scales, "\(key)")
        }
        let widths = Dictionary(rec.keys.map { ($0.site, rec.sites[$0]!.width) }, uniquingKeysWith: { a, _ in a })
        #expect(widths[.A] == model.config.nEmbd)
        #expect(widths[.D] == model.config.nFF)

        // The recorder is removed afterwards: no more callbacks, same logits again.
        let calls = recorder.callbacks
        let again = try await session.allLogits(for: tokens)
        #expect(again == plain)
        #expect(recorder.callbacks == calls)

        // The plan's neuron subset and layers are respected.
        let small = SpikeRecorder(sink: SpikeRecording(plan: RecordingPlan(
            layers: [3], sites: [.F], neurons: .evenlySpaced(5))))
        let last = try await session.record(tokens, into: small)
        #expect(last == Array(plain.suffix(model.config.nVocab)))
        let r2 = try #require(small.recording)
        #expect(r2.keys == [RecordingKey(layer: 3, site: .F)])
        #expect(r2.sites[r2.keys[0]]!.neuronIndices == (0..<5).map { $0 * model.config.nEmbd / 5 })
    }

    @Test("recording into a streaming writer gives the same files as in memory")
    func streamingRecording() async throws {
        let model = try ConvertedModel.model.get()
        let tokens = model.tokenizer.encode(Self.sentence, addSpecialTokens: true, parseSpecial: false)
        let session = try Session(model: model, contextLength: 64, batchSize: 64)
        let nLayer = model.config.nLayer
        let plan = RecordingPlan(layers: [1, 2, nLayer], sites: [.A, .D, .H], neurons: .first(16))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("spikerun-stream-\(getpid())")
        defer { try? FileManager.default.removeItem(at: dir) }
        let mem = SpikeRecorder(sink: SpikeRecording(plan: plan))
        let disk = SpikeRecorder(sink: try StreamingRecordingWriter(directory: dir, plan: plan))
        for r in [mem, disk] {
            let s = r.addSentence(SentenceInfo(text: Self.sentence, category: "test"))
            _ = try await session.record(tokens, into: r, sentence: s)
        }
        try disk.finish()
        let a = try #require(mem.recording)
        let b = try SpikeRecording.load(from: dir)
        #expect(a.keys == b.keys)
        #expect(a.keys.count == 5)
        // H is recorded for every token even though only the last token's logits were asked for.
        #expect(a.sites[RecordingKey(layer: nLayer, site: .H)]?.tokenCount == tokens.count)
        for k in a.keys {
            #expect(a.sites[k]!.counts == b.sites[k]!.counts)
            #expect(a.sites[k]!.tokenSteps == b.sites[k]!.tokenSteps)
        }
    }

    @Test("recording a dense session is refused")
    func denseSessionRefused() async throws {
        let model = try SharedModel.get()
        let session = try Session(model: model, contextLength: 16, batchSize: 16)
        let recorder = SpikeRecorder(sink: SpikeRecording())
        await #expect(throws: SpikeRunError.self) { _ = try await session.record([1, 2, 3], into: recorder) }
    }

    // MARK: - CLI

    static let exe = TestPaths.executable

    static func tempDir(_ name: String) -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("spikerun-\(name)-\(getpid())")
        try? FileManager.default.removeItem(at: d)
        return d
    }

    @Test("analyze --ambiguity end to end; SciPy agrees with the metrics")
    func analyzeAmbiguityEndToEnd() throws {
        let model = try ConvertedModel.path()
        let out = Self.tempDir("analyze-e2e")
        defer { try? FileManager.default.removeItem(at: out) }
        let r = try runProcess(Self.exe, [
            "analyze", "-m", model, "--ambiguity", "-o", out.path, "--layers", "0,15", "--sites", "A,D,H",
            "--max-neurons", "6", "--shuffles", "10", "--permutations", "2000", "--json", "-t", "2",
        ])
        #expect(r.status == 0, "stderr: \(r.stderr)")
        #expect(r.stderr.contains("recording: 48/48"), "progress: \(r.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stdout)")
        #expect(json["sentences"] as? Int == 48)
        #expect(json["sites"] as? Int == 5)   // L0.A, L0.D, L15.A, L15.D, L30.H
        #expect(json["groups"] as? [String] == ["ambiguous", "unambiguous"])
        #expect((json["strongest"] as? [Any])?.count == 6)   // one per site and measure
        let fm = FileManager.default
        for f in ["recording/index.json", "recording/tokens.npy", "recording/token_sentence.npy",
                  "recording/L00_A.spikes.npy", "recording/L00_A.counts.npy", "recording/L15_D.steps.npy",
                  "recording/L30_H.spikes.npy", "metrics.json", "metrics.csv", "metrics_neurons.csv",
                  "metrics_comparisons.csv", "report.html"] {
            #expect(fm.fileExists(atPath: out.appendingPathComponent(f).path), "\(f) missing")
        }
        #expect(!fm.fileExists(atPath: out.appendingPathComponent("recording/.partial").path))
        let analysis = try SpikeAnalysis.load(from: out.appendingPathComponent("metrics.json"))
        #expect(analysis.sites.count == 5)
        #expect(analysis.sites.allSatisfy { $0.neurons == 6 && $0.tokens > 300 })
        // One comparison per site and measure (A, D, H × SPA, count entropy), rows per layer.
        #expect(analysis.comparisons.count == 6)
        #expect(analysis.comparisons.filter { $0.site == "A" }.allSatisfy { $0.rows.map(\.layer) == [0, 15] })
        let html = try String(contentsOf: out.appendingPathComponent("report.html"), encoding: .utf8)
        #expect(html.contains("<svg") && html.contains("ambiguous vs unambiguous"))

        let check = try runProcess("/usr/bin/env", [
            "python3", TestPaths.root.appendingPathComponent("tools/analysis/check_with_scipy.py").path,
            out.appendingPathComponent("recording").path, out.appendingPathComponent("metrics.json").path,
            "--permutations", "2000",
        ])
        #expect(check.status == 0, "check_with_scipy: \(check.stdout)\n\(check.stderr)")
    }

    @Test("analyze -f: one sentence per line, optional TAB categories")
    func analyzeTextFile() throws {
        let model = try ConvertedModel.path()
        let out = Self.tempDir("analyze-file")
        defer { try? FileManager.default.removeItem(at: out) }
        try fm_mkdir(out)
        let text = out.appendingPathComponent("in.txt")
        try "a\tThe cat sat on the mat.\n\nb\tA dog ran in the park.\na\tThe sun is hot today.\nb\tMy car is very old.\n"
            .write(to: text, atomically: true, encoding: .utf8)
        let r = try runProcess(Self.exe, [
            "analyze", "-m", model, "-f", text.path, "-o", out.appendingPathComponent("o").path,
            "--layers", "2", "--sites", "f", "--max-neurons", "4", "--shuffles", "0", "--permutations", "100", "-t", "2",
        ])
        #expect(r.status == 0, "stderr: \(r.stderr)")
        #expect(r.stdout.contains("report:"))
        let rec = try SpikeRecording.load(from: out.appendingPathComponent("o/recording"))
        #expect(rec.sentences.map(\.category) == ["a", "b", "a", "b"])
        #expect(rec.keys == [RecordingKey(layer: 2, site: .F)])
        let analysis = try SpikeAnalysis.load(from: out.appendingPathComponent("o/metrics.json"))
        #expect(analysis.comparisons.first.map { [$0.groupA, $0.groupB] } == ["a", "b"])
    }

    func fm_mkdir(_ u: URL) throws {
        try FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
    }

    @Test("analyze: bad input gives one clear line and a non-zero exit")
    func analyzeErrors() throws {
        let converted = try ConvertedModel.path()
        let out = Self.tempDir("analyze-err")
        try fm_mkdir(out)
        defer { try? FileManager.default.removeItem(at: out) }
        let blocker = out.appendingPathComponent("plainfile")
        try "x".write(to: blocker, atomically: true, encoding: .utf8)
        let o = out.appendingPathComponent("o").path
        let cases: [([String], String)] = [
            (["-m", TestPaths.modelPath, "--ambiguity", "-o", o], "is a dense model; convert it first with spikerun convert"),
            (["-m", converted, "--ambiguity", "-o", o, "--layers", "0,99"], "layer 99 does not exist"),
            (["-m", converted, "--ambiguity", "-o", o, "--layers", "x"], "'x' is not a layer index"),
            (["-m", converted, "--ambiguity", "-o", o, "--sites", "A,Z"], "unknown site 'Z'"),
            (["-m", converted, "--ambiguity", "-o", blocker.appendingPathComponent("sub").path], "cannot create output directory"),
            (["-m", converted, "--ambiguity", "-o", blocker.path], "is not a directory"),
            (["-m", converted, "-f", "/nonexistent/sentences.txt", "-o", o], "cannot read '/nonexistent/sentences.txt'"),
            (["-m", "/nonexistent/model.gguf", "--ambiguity", "-o", o], "/nonexistent/model.gguf"),
        ]
        for (args, needle) in cases {
            let r = try runProcess(Self.exe, ["analyze"] + args)
            #expect(r.status != 0, "\(args) succeeded")
            #expect(r.stderr.contains(needle), "\(args): stderr \(r.stderr)")
            let lines = r.stderr.split(separator: "\n")
            #expect(lines.count == 1, "\(args): not one line: \(r.stderr)")
        }
        // Parse-time errors (ArgumentParser): neither or both inputs.
        let none = try runProcess(Self.exe, ["analyze", "-m", converted, "-o", o])
        #expect(none.status != 0 && none.stderr.contains("exactly one of -f TEXTFILE and --ambiguity"))
    }
}
