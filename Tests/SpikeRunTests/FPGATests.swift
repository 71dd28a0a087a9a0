import Foundation
import Testing
@testable import SpikeRun

/// The FPGA backend without a board: the performance model (docs/fpga-v2-model.md), the Swift
/// wrapper's refusal to reach XRT, and the shell checks (XRT declarations, kernel interface,
/// C-simulation with g++ and clang++, the whole host flow under XRT's noop shim with ASan, the
/// SD flash script), run through Process with their results asserted.
@Suite("FPGA backend", .serialized)
struct FPGATests {
    // MARK: performance model (docs/fpga-v2-model.md, weight streaming)

    typealias PM = FPGAPerformanceModel

    @Test("N_w of SmolLM2-135M and the 1.5B Qwen2.5 shape against independent counts")
    func streamedWeights() throws {
        let s = PM.Shape.smolLM2_135M, q = PM.Shape.qwen25_1_5B
        // SmolLM2-135M, counted in the real GGUF file rather than from the shape: every 2-D
        // tensor is a linear weight (the norms are 1-D) and the head is tied to token_embd.
        let file = try GGUFFile(path: TestPaths.modelPath)
        let matrices = file.tensors.filter { $0.shape.count == 2 }
        #expect(matrices.count == 30 * 7 + 1)
        #expect(Int64(matrices.reduce(0) { $0 + $1.elementCount }) == s.streamedWeights)
        let embd = try #require(file.tensors.first { $0.name == "token_embd.weight" })
        #expect(Int64(embd.elementCount) == s.headWeights)
        #expect(s.layerWeights == 106_168_320 && s.headWeights == 28_311_552)
        // Qwen2.5-1.5B by hand (d 1536, 12 query and 2 KV heads of 128, ffn 8960, 28 layers,
        // vocabulary 151,936): q and o 1536·1536 = 2,359,296 each, k and v 1536·256 = 393,216
        // each, gate/up/down 1536·8960 = 13,762,560 each: 46,792,704 per block, ·28 =
        // 1,310,195,712; head 1536·151,936 = 233,373,696; N_w = 1,543,569,408. The published
        // model card (docs/fpga-host.md §6, references) gives 1.54 B parameters of which 1.31 B
        // non-embedding: the norms and biases make the difference below 0.005 B.
        #expect(q.layerWeights == 1_310_195_712)
        #expect(q.headWeights == 233_373_696)
        #expect(q.streamedWeights == 1_543_569_408)
        #expect(abs(Double(q.layerWeights) / 1e9 - 1.31) < 0.005)
        #expect(abs(Double(q.streamedWeights) / 1e9 - 1.54) < 0.005)
    }

    /// One case derived by hand, independently of the model's code: SmolLM2-135M with Q4_1
    /// weights (5 bits each) streamed from both memories at η = 0.8, one launch per token.
    @Test("a hand-derived case: SmolLM2-135M, Q4_1, both memories")
    func handDerivedCase() {
        // 1. Weights of one block (d = 576, 9 query heads and 3 KV heads of 64, ffn 1536):
        let q = 576 * 576          // 331,776
        let kv = 576 * 3 * 64      // 110,592 each for K and V
        let o = 576 * 576          // 331,776
        let ffn = 576 * 1536       // 884,736 each for gate, up, down
        let block = q + 2 * kv + o + 3 * ffn
        #expect(block == 3_538_944)
        // 2. 30 blocks plus the tied head (576 × 49,152 vocabulary rows):
        let nw = 30 * block + 576 * 49_152
        #expect(nw == 106_168_320 + 28_311_552 && nw == 134_479_872)
        // 3. Bytes per token at 5 bits per weight: 134,479,872 · 5 / 8.
        let bytes = 84_049_920.0
        // 4. Bandwidth: DDR4-3200 on a 64-bit bus = 3200e6 · 8 = 25.6 GB/s; LPDDR4 31.25 GB/s
        //    (the board's two memories); both at η = 0.8: 0.8 · 56.85e9 = 45.48e9 B/s.
        let bandwidth = 45.48e9
        // 5. t_mem = 84,049,920 / 45.48e9 = 1.848063 ms; one launch of 50 µs: 1.898063 ms,
        //    i.e. 526.85 tokens/s (541.11 without the launch).
        let tMem = 0.001_848_063
        // 6. Compute at T = 4 with 4096 lanes at 312.5 MHz: 134,479,872 · 4 / (4096 · 312.5e6)
        //    = 0.420250 ms < t_mem, so memory-bound. At T = 20: 2.101248 ms > t_mem,
        //    compute-bound: 1 / (2.101248 + 0.05) ms = 464.85 tokens/s.
        var m = PM(shape: .smolLM2_135M, weightBits: 5, memory: .both)
        m.timeSteps = 4
        m.lanes = 4096
        m.launchesPerToken = 1
        m.launchSeconds = 50e-6
        let e = m.estimate()
        #expect(e.streamedWeights == Int64(nw))
        #expect(abs(e.weightBytesPerToken - bytes) < 1e-3)
        #expect(abs(e.bandwidth - bandwidth) < 1)
        #expect(abs(e.memorySeconds - tMem) < 1e-9, "\(e.memorySeconds)")
        #expect(abs(e.computeSeconds - 0.000_420_250) < 1e-9, "\(e.computeSeconds)")
        #expect(e.bound == .memory && abs(e.tokensPerSecond - 526.85) < 0.01, "\(e.tokensPerSecond)")
        m.timeSteps = 20
        let c = m.estimate()
        #expect(abs(c.computeSeconds - 0.002_101_248) < 1e-9, "\(c.computeSeconds)")
        #expect(c.bound == .compute && abs(c.tokensPerSecond - 464.85) < 0.01, "\(c.tokensPerSecond)")
        // The text table prints one row per (model, bits) with the three memories.
        #expect(PM.referenceTableText().split(separator: "\n").count == 7)
    }

    /// Every figure below is derived by hand in the comments from the board's memory and
    /// clock (docs/fpga-host.md §6: DDR4 25.6 GB/s, LPDDR4 31.25 GB/s, η = 0.8, f = 312.5 MHz),
    /// the bits per weight and N_w = 134,479,872 (SmolLM2-135M, checked against the GGUF file
    /// above), then compared with the model's output.
    @Test("KV traffic, lanes to keep pace and the compute-bound example, derived by hand")
    func computeAndKV() {
        let s = PM.Shape.smolLM2_135M
        // KV read per token, int8: layers · (K and V) · KV heads · head size · context · 1 byte
        // = 30 · 2 · 3 · 64 · 512 = 5,898,240 B at 512 tokens, four times that (23,592,960 B)
        // at 2048.
        #expect(s.kvBytes(context: 512, bytesPerElement: 1) == 5_898_240)
        #expect(s.kvBytes(context: 2048, bytesPerElement: 1) == 23_592_960)
        // Lanes to keep pace: the memory delivers η · (25.6 + 31.25) GB/s = 45.48e9 B/s, i.e.
        // 45.48e9 / 312.5e6 = 145.536 bytes per clock = 1164.288 bits per clock. At b bits per
        // weight that is 1164.288 / b weights per clock, each met by T spike steps, so
        // P = T · 1164.288 / b lanes keep pace (N_w cancels): at T = 3, 2 bits: 1746.432;
        // 4 bits: 873.216; Q4_1's 5 bits (a 32-weight block is 16 bytes of 4-bit codes plus
        // fp16 d and m = 20 bytes = 160 bits): 698.5728.
        for (bits, lanes) in [(2.0, 1746.432), (4.0, 873.216), (5.0, 698.5728)] {
            var m = PM(shape: s, weightBits: bits)
            m.timeSteps = 3
            #expect(abs(m.estimate().lanesToKeepPace - lanes) < 1e-6, "\(bits) bits")
        }
        // Ternary (2 bits) on both memories at T = 4 with P = 4096 lanes, no launches:
        //   t_comp = N_w · T / (P · f) = 134,479,872 · 4 / (4096 · 312.5e6)
        //          = 537,919,488 / 1.28e12 = 420.2496 µs (2379.54 tok/s on compute alone)
        //   t_mem  = N_w · 2 / 8 / 45.48e9 = 33,619,968 B / 45.48e9 B/s = 739.2253 µs
        //          -> 1352.77 tok/s, memory-bound.
        var m = PM(shape: s, weightBits: 2)
        m.timeSteps = 4
        m.lanes = 4096
        m.launchesPerToken = 0
        let e = m.estimate()
        #expect(abs(e.computeSeconds - 420.2496e-6) < 1e-12, "\(e.computeSeconds)")
        #expect(abs(e.memorySeconds - 33_619_968 / 45.48e9) < 1e-12, "\(e.memorySeconds)")
        #expect(e.bound == .memory && abs(e.tokensPerSecond - 1352.77) < 0.01, "\(e.tokensPerSecond)")
        // A quarter of the lanes (P = 1024): t_comp = 4 · 420.2496 µs = 1680.9984 µs > t_mem,
        // compute-bound at 1 / 1680.9984 µs = 594.88 tok/s.
        m.lanes = 1024
        let q = m.estimate()
        #expect(q.bound == .compute && abs(q.tokensPerSecond - 594.88) < 0.01, "\(q.tokensPerSecond)")
        // The v1 host flow: per block one launch each for q/k/v (one input), o, gate/up (one
        // input) and down, plus the head: 4 · 30 + 1 = 121 launches of 50 µs = 6.05 ms.
        // Q4_1 at context 512: (84,049,920 weight bytes + 5,898,240 KV bytes) / 45.48e9
        //   = 89,948,160 / 45.48e9 = 1.977752 ms; total 8.027752 ms -> 124.57 tok/s.
        m = PM(shape: s, weightBits: 5)
        m.context = 512
        m.launchesPerToken = PM.spkAccV1Launches(s)
        m.launchSeconds = 50e-6
        let e2 = m.estimate()
        #expect(m.launchesPerToken == 121)
        #expect(abs(e2.launchSeconds - 6.05e-3) < 1e-12)
        #expect(e2.bytesPerToken == 89_948_160)
        #expect(abs(e2.secondsPerToken - 8.027752e-3) < 1e-9, "\(e2.secondsPerToken)")
        #expect(abs(e2.tokensPerSecond - 124.57) < 0.01, "\(e2.tokensPerSecond)")
        #expect(e2.description.contains("predicted 124.6 tok/s"), "\(e2.description)")
        // spk_acc pads rows to the tile (Q4_1: 128 rows, the head 64): q, o and down have 576
        // rows -> 640, k and v 192 -> 256, gate and up 1536 stay; per block 640·576 · 2 +
        // 256·576 · 2 + 1536·576 · 2 + 640·1536 = 3,784,704 (against 3,538,944), ·30 =
        // 113,541,120; the head's 49,152 rows are a multiple of 64: + 28,311,552 =
        // 141,852,672 weights, 141,852,672 / 134,479,872 = 1.054825 (+5.5 %).
        #expect(s.paddedWeights(tileRows: 128, headTileRows: 64) == 141_852_672)
    }

    @Test("NSLLM's 161.8 tok/s at 13.849 W for 1.5B needs ≤ 1.82 bits per streamed weight")
    func nsllm() {
        // NSLLM's published board figures (docs/fpga-host.md §6): 161.8 tok/s at 13.849 W for
        // a 1.5B model on the VCK190, so 13.849 / 161.8 = 0.085593 J = 85.6 mJ per token.
        // At 100 % of both memories (56.85e9 B/s = 454.8e9 bit/s) a token may stream at most
        // 454.8e9 / 161.8 = 2.81088e9 bits; over N_w = 1,543,569,408 weights that is
        // 1.821 bits per weight.
        let r = PM.nsllm1_5B
        let bits = PM.bitsPerWeightNeeded(tokensPerSecond: r.tokensPerSecond, shape: r.shape, memory: .both,
                                          efficiency: 1)
        #expect(abs(bits - 1.82102) < 1e-4, "\(bits)")
        // Ternary streams at η = 0.8 (45.48e9 B/s) predict less than they measured:
        // 2 bits: 45.48e9 / (1,543,569,408 · 2 / 8 = 385,892,352 B) = 117.86 tok/s;
        // 1.6 bits (5 trits per byte): 45.48e9 / 308,713,881.6 B = 147.32 tok/s.
        let ternary2 = PM(shape: r.shape, weightBits: 2).estimate()
        let ternary16 = PM(shape: r.shape, weightBits: 1.6).estimate()
        var t2 = PM(shape: r.shape, weightBits: 2)
        t2.launchesPerToken = 0
        var t16 = PM(shape: r.shape, weightBits: 1.6)
        t16.launchesPerToken = 0
        #expect(abs(t2.estimate().tokensPerSecond - 117.86) < 0.01, "\(t2.estimate().tokensPerSecond)")
        #expect(abs(t16.estimate().tokensPerSecond - 147.32) < 0.01, "\(t16.estimate().tokensPerSecond)")
        #expect(ternary2.tokensPerSecond < r.tokensPerSecond && ternary16.tokensPerSecond < r.tokensPerSecond)
        #expect(abs(r.joulesPerToken - 0.085593) < 1e-6)
    }

    // MARK: Swift wrapper

    @Test("without XILINX_XRT the backend is unavailable, says why, and never calls XRT", .requires(.noXilinxXRT))
    func availabilityWithoutXRT() throws {
        guard Prerequisite.noXilinxXRT.check() else { return }
        let a = FPGADevice.availability
        guard case .unavailable(let reason) = a else {
            Issue.record("expected unavailable, got \(a)")
            return
        }
        #expect(reason.contains("XILINX_XRT is unset"))
        #expect(throws: SpikeRunError.self) { try FPGADevice.list() }
        do {
            _ = try FPGAAccelerator(xclbin: "/nonexistent.xclbin")
            Issue.record("opening must fail")
        } catch {
            #expect(error.kind == .noDevice || error.kind == .io, "\(error)")
        }
    }

    // MARK: shell checks

    static var root: String { TestPaths.root.path }

    func sh(_ script: String, _ args: [String] = [], env: [String: String]? = nil) throws -> ProcessResult {
        try runProcess("/bin/sh", [Self.root + "/" + script] + args, environment: env)
    }

    /// XRT's headers must be installed for the checks below (Debian: libxrt-dev, xrt).
    func requireXRT() -> Bool { Prerequisite.xrtHeaders.check() }

    @Test("our XRT prototypes match the real headers (compile-only) and libxrt_coreutil exports them", .requires(.xrtHeaders))
    func xrtDeclarations() throws {
        guard requireXRT() else { return }
        let r = try sh("tools/fpga/check_xrt_decls.sh")
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains("check_xrt_decls: ok (25 functions"), "\(r.stdout)")
        #expect(r.stdout.contains("all exported"), "\(r.stdout)")
    }

    @Test("link.cfg and the kernel's m_axi bundles follow the one argument table", .requires(.xrtHeaders))
    func kernelInterface() throws {
        guard requireXRT() else { return }
        let r = try sh("tools/fpga/check_interface.sh")
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains("check_interface: ok"), "\(r.stdout)")
    }

    @Test("C-simulation: the HLS kernel equals the CPU spike kernels bit for bit (g++ and clang++)",
          arguments: [("g++", "gcc"), ("clang++", "clang")])
    func csim(cxx: String, cc: String) throws {
        let r = try runProcess("/usr/bin/env", ["make", "-s", "-C", Self.root + "/firmware", "csim",
                                                "CXX=\(cxx)", "CC=\(cc)"])
        #expect(r.status == 0, "\(r.stdout.suffix(2000))\(r.stderr.suffix(2000))")
        let line = r.stdout.split(separator: "\n").last { $0.hasPrefix("csim: ") && $0.contains("passed") }
        let summary = try #require(line.map(String.init), "no summary line in \(r.stdout.suffix(500))")
        #expect(summary.contains(" 0 failed"), "\(summary)")
        let passed = Int(summary.dropFirst("csim: ".count).prefix { $0.isNumber }) ?? 0
        #expect(passed >= 100, "\(summary)")
        #expect(summary.contains("fixture"), "\(summary)")
    }

    @Test("the whole host flow under XRT's noop shim: bit-exact outputs, timeouts, no leaks (ASan)", .requires(.xrtHeaders))
    func noopHostFlow() throws {
        guard requireXRT() else { return }
        let r = try sh("tools/fpga/run_noop_test.sh")
        #expect(r.status == 0, "\(r.stdout.suffix(3000))\(r.stderr.suffix(2000))")
        #expect(r.stdout.contains("run_noop_test: PASS"), "\(r.stdout.suffix(1000))")
        #expect(r.stdout.contains("noop_host_test: ") && r.stdout.contains(" 0 failed"))
        #expect(r.stdout.contains("every output bit-equal to sr_spike_matvec: yes"))
        #expect(r.stdout.contains("did not complete within 50 ms"))
        #expect(!r.stdout.contains("LeakSanitizer") && !r.stdout.contains("AddressSanitizer"))
    }

    @Test("the FPGA accumulation core has no multiply: source, g++/clang++ objects, and the check fails on one")
    func coreHasNoMultiply() throws {
        let r = try sh("tools/fpga/check_core_no_multiply.sh")
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains("check_core_no_multiply: ok source"), "\(r.stdout)")
        #expect(r.stdout.components(separatedBy: "no multiply or divide").count >= 3, "\(r.stdout)")
        let t = try sh("tools/fpga/check_core_no_multiply.sh", ["--self-test"])
        #expect(t.status == 0, "\(t.stdout)\(t.stderr)")
        #expect(t.stdout.contains("both checks reject a core that multiplies"), "\(t.stdout)")
    }

    // MARK: v2 schedule model

    @Test("schedule model: a hand-computed Q4_1 layer (core-bound and memory-bound cases)")
    func scheduleModel() {
        typealias SM = FPGAScheduleModel
        #expect(SM.split(10, [0.45, 0.275, 0.275]) == [4, 3, 3])  // as sr-fpga.c: largest remainders
        #expect(SM.split(7, [1, 0, 0]) == [7, 0, 0])
        // 128 x 64 Q4_1 on engine 0 only: 1 chunk, 2 blocks. Every input fires with 2 spikes:
        // core = 32 + 64 + 0 + 9 = 105 cycles per block; memory = (40 lines + 2 burst overhead)
        // * 64 B at the port's 20 GB/s (below 0.8 * 25.6) = 42 cycles; rescale = 8 + 9 = 17.
        var m = SM(shape: .smolLM2_135M, activity: .dense(eventsPerInput: 2))
        m.shares = [1, 0, 0]
        m.jobLatencyCycles = 0
        let f = 312.5e6
        let r = m.matrixSeconds(rows: 128, cols: 64, format: .q4_1)
        #expect(r.bound == "core")
        #expect(abs(r.seconds - 2 * 105 / f) < 1e-12, "\(r.seconds)")
        // silent input: only the 8 scale lines per block are read: rescale (8 + 9 = 17 cycles)
        // beats core (9) and memory ((8 + 2) * 64 B / 20 GB/s = 32 ns = 10 cycles)
        m.activity = SM.Activity(fireFraction: 0, eventsPerInput: 0, bubblesPerBlock: 0, burstsPerBlock: 1)
        let s = m.matrixSeconds(rows: 128, cols: 64, format: .q4_1)
        #expect(s.bound == "rescale")
        #expect(abs(s.seconds - 2 * 17 / f) < 1e-12, "\(s.seconds)")
        // launches and host time add per token
        var t = SM(shape: .smolLM2_135M, activity: .dense(eventsPerInput: 1))
        let e1 = t.estimate()
        t.launchesPerToken = 1
        let e2 = t.estimate()
        #expect(abs((e1.secondsPerToken - e2.secondsPerToken) - 120 * 50e-6) < 1e-9)
        #expect(e1.kernelSeconds == e2.kernelSeconds)
        // the token program: one launch, plus its attention jobs and float steps on the PL.
        // SmolLM2 at 16 positions, per block: 12·576 + 6·9·64 + 4·1536 + 6·9·16 + 12·64 + 3·3·64
        // = 6912 + 3456 + 6144 + 864 + 768 + 576 = 18720 elements; 30 blocks + 5·576 for the head
        var u = SM(shape: .smolLM2_135M, activity: .dense(eventsPerInput: 1))
        u.tokenProgram = true
        u.context = 16
        #expect(u.tokenFloatElements == 30 * 18720 + 2880)
        // attention: every job reads one K chunk (16 rows) or one V chunk of 16 positions on
        // engine 0 only: QK 2 blocks, PV 1 block of int8 rows, each with its job latency
        var one = u
        one.shares = [1, 0, 0]
        let qk = one.matrixSeconds(rows: 16, cols: 64, format: .int8Rows).seconds
        let pv = one.matrixSeconds(rows: 64, cols: 32, format: .int8Rows).seconds
        #expect(abs(u.tokenAttentionSeconds - 270 * (qk + pv)) < 1e-12)
        let e3 = u.estimate()
        #expect(abs(e3.launchSeconds - 50e-6) < 1e-12)
        #expect(abs(e3.kernelSeconds - (e1.kernelSeconds + 270 * (qk + pv) + (30 * 18720 + 2880) / 312.5e6)) < 1e-12)
        // the prediction of docs/fpga-v2-model.md (measured activity, Q4_1, 16 positions): 108 tok/s
        var v = SM(shape: .smolLM2_135M, activity: SM.Activity(fireFraction: 0.940, eventsPerInput: 1.79,
                                                                bubblesPerBlock: 0.13, burstsPerBlock: 2.71))
        v.tokenProgram = true
        v.context = 16
        #expect(Int(v.estimate().tokensPerSecond.rounded()) == 108, "\(v.estimate())")
    }

    @Test("flash.sh refuses non-removable targets, writes and verifies with the override")
    func flash() throws {
        let r = try sh("tools/fpga/test_flash.sh")
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains(" 0 failed"), "\(r.stdout)")
        #expect(r.stdout.contains("regular file refused without --force-not-removable"))
        #expect(r.stdout.contains("corrupted write fails the sha256 verify"))
    }
}
