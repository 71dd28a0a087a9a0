import Foundation
import Testing
@testable import SpikeRun

/// The FPGA backend through the CLI under XRT's noop shim: the whole host path of a spike
/// model (open, xclbin, upload of every layer, one kernel run per site and token). noop never
/// runs the kernel body, so outputs are not checked here; FPGAEmulatorTests checks them logit
/// for logit on the emulated device, and C-simulation checks every layer shape.
@Suite("FPGA backend selection", .serialized)
struct FPGABackendTests {
    static let converted: Result<String, SpikeRunError> = {
        do throws(SpikeRunError) {
            let model = try SharedModel.result.get()
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("spikerun-fpga-\(getpid()).gguf").path
            try SpikeModelWriter.write(source: model, setup: SpikeSetup(config: .uniform(k: 8, nLayer: model.config.nLayer)), to: path)
            return .success(path)
        } catch { return .failure(error) }
    }()

    /// A directory XILINX_XRT can name: the real core library and the noop shim.
    func noopRoot() throws -> String? {
        let lib = "/usr/lib/x86_64-linux-gnu"
        guard FileManager.default.fileExists(atPath: lib + "/libxrt_noop.so.2") else { return nil }
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("xrt-noop-\(getpid())").path
        try? FileManager.default.createDirectory(atPath: root + "/lib", withIntermediateDirectories: true)
        for name in ["libxrt_core.so.2", "libxrt_noop.so.2"] {
            try? FileManager.default.createSymbolicLink(atPath: "\(root)/lib/\(name)", withDestinationPath: "\(lib)/\(name)")
        }
        return root
    }

    func testXclbin() throws -> String {
        let r = try runProcess("/usr/bin/make", ["-s", "-C", TestPaths.root.appendingPathComponent("firmware").path, "test-xclbin"])
        #expect(r.status == 0, "\(r.stderr)")
        return TestPaths.root.appendingPathComponent("firmware/build/spk_acc.test.xclbin").path
    }

    @Test("a spike model runs end to end on the FPGA backend under noop", .requires(.xrtNoopShim))
    func spikeModelOnNoop() throws {
        guard Prerequisite.xrtNoopShim.check(), let root = try noopRoot() else { return }
        let model = try Self.converted.get()
        let xclbin = try testXclbin()
        let r = try runProcess(TestPaths.executable,
                               ["generate", "-m", model, "--backend", "fpga", "--xclbin", xclbin, "-p", "Hello", "-n", "3", "--temp", "0", "--json"],
                               environment: ["XILINX_XRT": root, "XCL_EMULATION_MODE": "noop"])
        // Exits cleanly: devices still open at exit are closed before XRT's static destructors (issue 5).
        #expect(r.status == 0, "\(r.stderr)")
        let obj = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        #expect(obj?["prompt_tokens"] as? Int == 1)
    }

    @Test("--backend fpga on a dense model is a clear error", .requires(.xrtNoopShim))
    func denseModelOnFPGA() throws {
        guard Prerequisite.xrtNoopShim.check(), let root = try noopRoot() else { return }
        let xclbin = try testXclbin()
        let r = try runProcess(TestPaths.executable,
                               ["generate", "-m", TestPaths.modelPath, "--backend", "fpga", "--xclbin", xclbin, "-p", "x", "-n", "1"],
                               environment: ["XILINX_XRT": root, "XCL_EMULATION_MODE": "noop"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("FPGA backend requested but"), "\(r.stderr)")
    }

    @Test("--backend auto without XRT falls back to the CPU with one line saying why")
    func autoFallsBack() throws {
        let model = try Self.converted.get()
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "XILINX_XRT")
        let xclbin = try testXclbin()
        let r = try runProcess(TestPaths.executable, ["generate", "-m", model, "--xclbin", xclbin, "-p", "Hello", "-n", "2", "--temp", "0"],
                               environment: ["XILINX_XRT": ""])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.split(separator: "\n").first?.hasPrefix("spikerun: using the CPU backend:") == true, "\(r.stderr)")
        let fpga = try runProcess(TestPaths.executable, ["generate", "-m", model, "--backend", "fpga", "-p", "x"],
                                  environment: ["XILINX_XRT": ""])
        #expect(fpga.status != 0)
        #expect(fpga.stderr.contains("FPGA backend requested but"))
    }

    @Test("info --devices lists the CPU/NUMA view and the FPGA view")
    func devices() throws {
        let r = try runProcess(TestPaths.executable, ["info", "--devices"], environment: ["XILINX_XRT": ""])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("cpu:"))
        #expect(r.stdout.contains("fpga: unavailable"))
    }
}
