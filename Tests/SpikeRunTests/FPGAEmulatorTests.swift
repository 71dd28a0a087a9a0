import CSpikeRun
import Foundation
import Testing
@testable import SpikeRun

/// The FPGA path checked numerically end to end: the real default model converted to a spike
/// model runs once on the CPU spike kernels and once on the emulated device (the HLS kernel's
/// C-simulation build, firmware/build/spk_acc.emu.so, in place of the VCK190: the host
/// backend csrc/fpga/sr-fpga.c packs, uploads, steps and syncs exactly as on the board).
/// Logits must be equal bit for bit at every position, and greedy generation token for token.
/// The emulated device runs the token program (firmware/kernels/spk_token.cpp): one kernel
/// launch per token computes the whole token - embedding, RMSNorm, encoders, every linear
/// layer, RoPE, the K/V caches, spike attention, SiLU gate, residuals and the head.
@Suite("FPGA emulated device", .serialized)
struct FPGAEmulatorTests {
    static let kernel: Result<String, SpikeRunError> = {
        let r: ProcessResult
        do {
            r = try runProcess("/usr/bin/env", ["make", "-s", "-C", TestPaths.root.appendingPathComponent("firmware").path, "emu"])
        } catch { return .failure(.io("cannot run make: \(error)")) }
        guard r.status == 0 else { return .failure(.io("make -C firmware emu failed: \(r.stderr)")) }
        return .success(TestPaths.root.appendingPathComponent("firmware/build/spk_acc.emu.so").path)
    }()

    /// Uniform spike setup (mean rule k = 8, sign-magnitude, Q4_1 codes, Q8_0 head) with the
    /// engine's dense attention: the per-layer flow (one spk_acc run per group of layers).
    static let converted: Result<String, SpikeRunError> = convert(spikeAttention: false)
    /// The same with spike attention (untuned V scales 0.05: equality is the point): the whole
    /// token fits the token program (one spk_token run per token).
    static let convertedSpikeAttention: Result<String, SpikeRunError> = convert(spikeAttention: true)

    static func convert(spikeAttention: Bool) -> Result<String, SpikeRunError> {
        do throws(SpikeRunError) {
            let model = try SharedModel.result.get()
            let c = model.config
            var cfg = SpikeConfig.uniform(k: 8, nLayer: c.nLayer)
            cfg.spikeAttention = spikeAttention
            if spikeAttention {  // the token program encodes on the device: the default's NAF thrifty
                cfg.encoding = .naf  // rounding and power-of-two steps
                cfg.sites = cfg.sites.map { _ in .mean(k: 8, tau: ConversionOptions.defaultTau, pow2: true) }
                cfg.attentionPow2 = true
            }
            let setup = SpikeSetup(config: cfg, vScales: spikeAttention
                                   ? [Float](repeating: 0.05, count: c.nLayer * c.nHeadKV * c.headDim) : nil)
            let path = FileManager.default.temporaryDirectory
                .appendingPathComponent("spikerun-emu-\(getpid())-\(spikeAttention ? "sa" : "da").gguf").path
            try SpikeModelWriter.write(source: model, setup: setup, to: path)
            return .success(path)
        } catch { return .failure(error) }
    }

    static func bits(_ v: [Float]) -> [UInt32] { v.map(\.bitPattern) }

    static func argmax(_ v: [Float]) -> Int32 {
        var best = 0
        for i in v.indices where v[i] > v[best] { best = i }
        return Int32(best)
    }

    @Test("one launch per token: prompt and 6 greedy steps of the token program, every logit equal to the CPU spike path's")
    func tokenProgram() throws {
        try Self.compare(path: try Self.convertedSpikeAttention.get(), tokenProgram: true)
    }

    @Test("per-layer flow (dense attention on the A72): prompt and 6 greedy steps, every logit equal")
    func perLayerFlow() throws {
        try Self.compare(path: try Self.converted.get(), tokenProgram: false)
    }

    static func compare(path: String, tokenProgram: Bool) throws {
        let kernel = try Self.kernel.get()
        let cpuModel = try Model.load(path, options: .init(threads: 2))
        let fpgaModel = try Model.load(path, options: .init(threads: 2, backend: .fpgaEmulator(kernel: kernel)))
        let cpu = try Engine(model: cpuModel, contextLength: 64, batchSize: 16)
        let fpga = try Engine(model: fpgaModel, contextLength: 64, batchSize: 16)
        #expect(cpu.spike != nil && cpu.fpga == nil)
        let acc = try #require(fpga.fpga, "the fpga-emu backend did not attach a device")
        #expect(acc.platform == "spikerun_emulated_vck190")
        #expect(fpga.fpgaTokenProgram == tokenProgram, "token program: \(fpga.fpgaTokenProgram)")

        let prompt = cpuModel.tokenizer.encode("The capital of France is", addSpecialTokens: false)
        #expect(prompt.count >= 4)
        var a = try cpu.eval(prompt, at: 0, allLogits: true)
        var b = try fpga.eval(prompt, at: 0, allLogits: true)
        #expect(a.count == prompt.count * cpu.vocabularySize)
        var diff = zip(Self.bits(a), Self.bits(b)).filter { $0 != $1 }.count
        #expect(diff == 0, "\(diff) of \(a.count) prompt logits differ")
        var tokensCPU: [Int32] = [], tokensFPGA: [Int32] = []
        var pos = prompt.count
        let vocab = cpu.vocabularySize
        var nextCPU = Self.argmax(Array(a.suffix(vocab))), nextFPGA = Self.argmax(Array(b.suffix(vocab)))
        for _ in 0..<6 {
            tokensCPU.append(nextCPU)
            tokensFPGA.append(nextFPGA)
            a = try cpu.eval([nextCPU], at: pos)
            b = try fpga.eval([nextFPGA], at: pos)
            diff = zip(Self.bits(a), Self.bits(b)).filter { $0 != $1 }.count
            #expect(diff == 0, "step at position \(pos): \(diff) of \(a.count) logits differ")
            nextCPU = Self.argmax(a)
            nextFPGA = Self.argmax(b)
            pos += 1
        }
        #expect(tokensCPU == tokensFPGA)
        // one launch per token (token program): every token (prompt ones included) is ONE spk_token run, inside
        // which the descriptor chain passes spk_acc's dataflow 6 times per block (q/k/v, QK,
        // PV, o, gate/up, down) plus once for the head (every token here wants its logits)
        let s = acc.statistics
        let n = cpuModel.config.nLayer
        let tokens = prompt.count + 6
        if tokenProgram {
            #expect(s.runs == tokens && s.tokenRuns == tokens, "\(s)")
            #expect(s.tokenPasses == tokens * (6 * n + 1), "\(s)")
        } else {  // 4 runs per block and token plus the head
            #expect(s.runs == tokens * (4 * n + 1) && s.tokenRuns == 0, "\(s)")
        }
        #expect(s.timeouts == 0)
        #expect(s.bytesToDevice > 0 && s.bytesFromDevice > 0)
    }

    @Test("spikerun generate --backend fpga-emu prints exactly what --backend cpu prints")
    func cliGenerate() throws {
        let kernel = try Self.kernel.get()
        let path = try Self.convertedSpikeAttention.get()   // the token program
        let args = ["generate", "-m", path, "-p", "The capital of France is", "-n", "8", "--temp", "0", "--json", "-t", "2"]
        let cpu = try runProcess(TestPaths.executable, args + ["--backend", "cpu"])
        let emu = try runProcess(TestPaths.executable, args + ["--backend", "fpga-emu", "--xclbin", kernel],
                                 environment: ["XILINX_XRT": ""])
        #expect(cpu.status == 0, "\(cpu.stderr)")
        #expect(emu.status == 0, "\(emu.stderr)")
        let o1 = try JSONSerialization.jsonObject(with: Data(cpu.stdout.utf8)) as? [String: Any]
        let o2 = try JSONSerialization.jsonObject(with: Data(emu.stdout.utf8)) as? [String: Any]
        let text = try #require(o1?["text"] as? String)
        #expect(!text.isEmpty)
        #expect(o2?["text"] as? String == text)
        #expect(o2?["tokens"] as? [Int] == o1?["tokens"] as? [Int])
        #expect((o1?["generated_tokens"] as? Int ?? 0) > 0)
    }

    @Test("fpga-emu without the emulated kernel, or on a dense model, is a clear error")
    func errors() throws {
        let path = try Self.converted.get()
        let missing = try runProcess(TestPaths.executable, ["generate", "-m", path, "--backend", "fpga-emu", "--xclbin",
                                                            "/nonexistent/spk_acc.emu.so", "-p", "x", "-n", "1"])
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("make -C firmware emu"), "\(missing.stderr)")
        let kernel = try Self.kernel.get()
        let dense = try runProcess(TestPaths.executable, ["generate", "-m", TestPaths.modelPath, "--backend", "fpga-emu",
                                                          "--xclbin", kernel, "-p", "x", "-n", "1"])
        #expect(dense.status == 1)
        #expect(dense.stderr.contains("spike-driven"), "\(dense.stderr)")
        // CPU-only spike models: integer block scales (--weights int4i; the kernel rescales fp16
        // scales) and a refined head (the kernel has no row refinement). Each is refused by the
        // CLI and by the library with its reason, and runs on the CPU.
        let model = try SharedModel.result.get()
        var int4i = SpikeConfig.uniform(k: 8, nLayer: model.config.nLayer)
        int4i.weights = .int4i
        var refined = SpikeConfig.uniform(k: 8, nLayer: model.config.nLayer)
        refined.weights = .int8
        refined.headRefineRows = 64
        refined.headRefineK = 12
        for (name, cfg, reason) in [("int4i", int4i, "int4i"), ("refined", refined, "refined head")] {
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("spikerun-emu-\(getpid())-\(name).gguf").path
            defer { try? FileManager.default.removeItem(atPath: path) }
            try SpikeModelWriter.write(source: model, setup: SpikeSetup(config: cfg), to: path)
            let emu = try runProcess(TestPaths.executable, ["generate", "-m", path, "--backend", "fpga-emu", "--xclbin", kernel,
                                                            "-p", "x", "-n", "1"])
            #expect(emu.status == 1)
            #expect(emu.stderr.contains(reason), "\(emu.stderr)")
            do {
                let m = try Model.load(path, options: .init(threads: 2, backend: .fpgaEmulator(kernel: kernel)))
                _ = try Session(model: m, contextLength: 16, batchSize: 16)
                Issue.record("a \(name) model loaded onto the emulated FPGA")
            } catch {
                #expect(error.message.contains(reason), "\(error)")
            }
            let cpu = try runProcess(TestPaths.executable, ["generate", "-m", path, "--backend", "cpu", "-p", "x", "-n", "1"])
            #expect(cpu.status == 0, "\(cpu.stderr)")
        }
        // through the library: a missing file, and a file that is not the emulated kernel
        var o = FPGAAccelerator.Options()
        o.emulated = true
        do {
            _ = try FPGAAccelerator(xclbin: "/nonexistent/spk_acc.emu.so", options: o)
            Issue.record("opening a missing emulated kernel succeeded")
        } catch {
            #expect(error.kind == .io, "\(error)")
        }
        do {
            _ = try FPGAAccelerator(xclbin: TestPaths.modelPath, options: o)
            Issue.record("a GGUF file opened as the emulated kernel")
        } catch {
            #expect(error.kind == .noDevice && error.message.contains("make -C firmware emu"), "\(error)")
        }
    }
}
