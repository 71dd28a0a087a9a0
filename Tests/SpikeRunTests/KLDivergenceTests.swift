import Foundation
import Testing
@testable import SpikeRun

@Suite("KL divergence against a base model")
struct KLDivergenceTests {
    /// KL(P ‖ Q) over the full vocabulary, written out independently of the library.
    static func exactKL(_ p: [Float], _ q: [Float]) -> Double {
        func logSoftmax(_ x: [Float]) -> [Double] {
            let m = Double(x.max()!)
            let z = log(x.reduce(0.0) { $0 + exp(Double($1) - m) })
            return x.map { Double($0) - m - z }
        }
        let lp = logSoftmax(p), lq = logSoftmax(q)
        return zip(lp, lq).reduce(0.0) { $0 + exp($1.0) * ($1.0 - $1.1) }
    }

    @Test func quantizedRowsGiveTheExactDivergenceToWithinTheirStep() {
        var rng = SplitMix64(seed: 16)
        for trial in 0..<50 {
            let n = 400
            let p = (0..<n).map { _ in Float.random(in: -12...12, using: &rng) }
            let q = p.map { $0 + Float.random(in: -1.5...1.5, using: &rng) * (trial % 2 == 0 ? 1 : 0.01) }
            let exact = Self.exactKL(p, q)
            var cp = [UInt16](repeating: 0, count: n), cq = cp
            let tp = cp.withUnsafeMutableBufferPointer { KLBase.encode(p[...], max: p.max()!, into: $0) }
            _ = cq.withUnsafeMutableBufferPointer { KLBase.encode(q[...], max: q.max()!, into: $0) }
            #expect(tp == p.firstIndex(of: p.max()!)!)
            let kl = cp.withUnsafeBufferPointer { a in cq.withUnsafeBufferPointer { KLDivergence.divergence(base: a, model: $0) } }
            // Each code moves its logit by at most step/2 = 2.4e-4 nats; a log-ratio by a few of those.
            #expect(abs(kl - exact) <= 1e-3, "trial \(trial): \(kl) vs \(exact)")
            let same = cp.withUnsafeBufferPointer { a in cp.withUnsafeBufferPointer { KLDivergence.divergence(base: a, model: $0) } }
            #expect(same == 0)
        }
    }

    @Test func codesRoundHalfUpAndSaturate() {
        #expect(KLBase.code(5, max: 5) == 0)
        #expect(KLBase.code(5 - Float(KLBase.step) * 0.49, max: 5) == 0)
        #expect(KLBase.code(5 - Float(KLBase.step) * 1.51, max: 5) == 2)
        #expect(KLBase.code(-40, max: 5) == 65535)
    }

    @Test func percentileInterpolatesLikeLlamaPerplexity() {
        let v: [Double] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 10]
        // p = 0.9 · 9 = 8.1 → 0.9 · v[8] + 0.1 · v[9] = 7.2 + 1.0
        #expect(abs(KLDivergenceResult.percentile(v, 0.9) - 8.2) < 1e-12)
        #expect(KLDivergenceResult.percentile(v, 0) == 0)
        #expect(KLDivergenceResult.percentile(v, 1) == 10)
    }

    /// The dense model compared with itself through a base file: exactly 0, 100% and 1.
    @Test func modelAgainstItselfScoresExactlyZero() async throws {
        let model = try SharedModel.get()
        let text = try TextFile.read(TestPaths.dataFile("text/botchan.txt"))
        let session = try Session(model: model, contextLength: 128, batchSize: 128, mode: .dense)
        let (base, ppl) = try await KLBase.record(session: session, text: text, contextLength: 128, maxChunks: 3)
        #expect(base.positions == 3 * 63)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("kl-self-\(getpid()).bin").path
        defer { unlink(path) }
        try base.write(to: path)
        let back = try KLBase.read(from: path)
        #expect(back == base)
        let (r, again) = try await KLDivergence.compare(session: session, base: back)
        #expect(r.meanKLD == 0 && r.maxKLD == 0 && r.minKLD == 0)
        #expect(r.top1AgreementPercent == 100)
        #expect(r.pplRatio == 1 && r.meanLogPPLRatio == 0 && r.pplRatioLow95 == 1 && r.pplRatioHigh95 == 1)
        #expect(r.meanTopLogProbDelta == 0 && r.rmsProbabilityDeltaPercent == 0)
        #expect(again.meanNLL == ppl.meanNLL)
        #expect(abs(r.basePerplexity - ppl.perplexity) <= 1e-12 * ppl.perplexity)
    }

    @Test func corruptBaseFilesAreRefusedWithOneError() async throws {
        let model = try SharedModel.get()
        let session = try Session(model: model, contextLength: 16, batchSize: 16, mode: .dense)
        let tokens = (0..<32).map { Int32($0 * 7 + 100) }
        let (base, _) = try await KLBase.record(session: session, tokens: tokens, contextLength: 16)
        let dir = FileManager.default.temporaryDirectory
        let path = dir.appendingPathComponent("kl-bad-\(getpid()).bin").path
        defer { unlink(path) }
        try base.write(to: path)
        let good = try Data(contentsOf: URL(fileURLWithPath: path))
        var cases: [(String, Data)] = [("truncated", good.prefix(good.count - 3)), ("magic", Data("XXXXXXXX".utf8) + good.dropFirst(8))]
        var huge = good
        huge.replaceSubrange(16..<20, with: [0xFF, 0xFF, 0x0F, 0x00])  // chunks
        cases.append(("header", huge))
        var badID = good
        let top = 24 + base.modelName.utf8.count + 2 * 16 * 4 + 16  // first position's top token
        badID.replaceSubrange(top..<(top + 4), with: [0xFF, 0xFF, 0xFF, 0x7F])
        cases.append(("id", badID))
        var notTop = good
        notTop.replaceSubrange((top + 4)..<(top + 4 + 2 * base.vocabularySize), with: [UInt8](repeating: 7, count: 2 * base.vocabularySize))
        cases.append(("top code", notTop))
        for (what, data) in cases {
            try data.write(to: URL(fileURLWithPath: path))
            #expect(throws: SpikeRunError.self, "\(what)") { _ = try KLBase.read(from: path) }
        }
    }

    /// Our figures against llama-perplexity's on the same pair of models and text (fixture by
    /// tools/fixtures/make_kld_fixture.py). Both engines compute bit-identical logits on this
    /// pair (AVX2 path), so what differs is each tool's own quantization of the base file:
    /// - llama-perplexity stores base log-probabilities in 16-bit steps of (max − min)/65535 with
    ///   min ≥ max − 16 (≤ 2.4e-4 nats), drops base tokens below e^-16 from the sum and caps the
    ///   base NLL at ~16 nats; we use 16-bit steps of 4.9e-4 nats over 32 nats and exact NLLs.
    /// - So the model's perplexity agrees to float rounding, the base's to ~1e-4 relative (the
    ///   cap), each KLD statistic to ~5e-4 nats (two half-steps), and the top-token share to a
    ///   position (both take the first maximum of the same logits).
    @Test func agreesWithLlamaPerplexity() async throws {
        let fx = try JSONSerialization.jsonObject(
            with: Data(contentsOf: TestPaths.fixtures.appendingPathComponent("kld/llamacpp_kld.json"))) as! [String: Any]
        let other = TestPaths.root.appendingPathComponent(fx["other_model"] as! String).path
        if !FileManager.default.fileExists(atPath: other)
            || (try? SHA256Digest.file(other)) != (fx["other_sha256"] as! String) {
            try FileManager.default.createDirectory(atPath: (other as NSString).deletingLastPathComponent,
                                                    withIntermediateDirectories: true)
            let r = try runProcess("/usr/bin/env", ["python3", TestPaths.root.appendingPathComponent("tools/fixtures/requantize.py").path,
                                                    TestPaths.modelPath, other, fx["requantize"] as! String])
            #expect(r.status == 0, "\(r.stderr)")
        }
        #expect(try SHA256Digest.file(other) == (fx["other_sha256"] as! String), "re-quantized model differs from the fixture's")
        let ctx = fx["ctx"] as! Int
        let text = try TextFile.read(TestPaths.dataFile("text/botchan.txt"))
        let base = try await KLBase.record(session: try Session(model: try SharedModel.get(), contextLength: ctx, batchSize: ctx),
                                           text: text, contextLength: ctx, maxChunks: fx["chunks"] as? Int).0
        let m = try Model.load(other, options: .init(threads: 2))
        let (r, _) = try await KLDivergence.compare(session: try Session(model: m, contextLength: ctx, batchSize: ctx), base: base)
        func near(_ ours: Double, _ key: String, abs tol: Double = 0, rel: Double = 0) {
            let theirs = fx[key] as! Double
            #expect(Swift.abs(ours - theirs) <= tol + rel * Swift.abs(theirs), "\(key): ours \(ours), llama.cpp \(theirs)")
        }
        near(r.perplexity, "ppl_q", rel: 1e-5)
        near(r.basePerplexity, "ppl_base", rel: 2e-4)
        near(r.meanLogPPLRatio, "mean_ln_ppl_ratio", abs: 2e-4)
        near(r.meanKLD, "mean_kld", abs: 5e-4)
        near(r.medianKLD, "median_kld", abs: 5e-4)
        near(r.p90KLD, "p90_kld", abs: 5e-4)
        near(r.maxKLD, "max_kld", abs: 1e-3)
        near(r.top1AgreementPercent, "same_top_pct", abs: 100 / Double(r.positions) + 1e-3)
        near(r.rmsProbabilityDeltaPercent, "rms_dp_pct", abs: 0.01)
    }
}
