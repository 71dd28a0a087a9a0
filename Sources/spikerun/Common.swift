import ArgumentParser
import CSpikeRun
import Foundation
import SpikeRun

/// Model selection and runtime options shared by every subcommand that loads a model.
struct ModelOptionsGroup: ParsableArguments {
    @Option(name: [.customShort("m"), .customLong("model")],
            help: "GGUF model path (default: models/SmolLM2-135M-Instruct.Q4_1.gguf).")
    var model: String?

    @Option(name: [.customShort("t"), .customLong("threads")], help: "Threads (default: all online CPUs).")
    var threads: Int?

    @Option(name: .customLong("act"), help: "Dense activation path: q8 (llama.cpp-compatible) or f32 (default: q8).")
    var activation: ActivationMode = .q8

    @Option(name: .customLong("spike-preview"),
            help: "Run a dense Q4_1 model spike-driven without converting: mean rule with this k at every site, float attention.")
    var spikePreview: Float?

    @Flag(name: .customLong("dense"), help: "Run a converted (int4) model through the dense kernels instead of spikes.")
    var dense = false

    @Option(name: .customLong("numa"),
            help: "NUMA policy like llama.cpp's: off, distribute (threads over all nodes, each node's weight rows on it), isolate (the node of the calling thread), numactl (the CPUs numactl gave; nothing migrated). Default: $SPIKERUN_NUMA, else off.")
    var numa: NumaPolicy?

    func validate() throws {
        if let t = threads, t <= 0 { throw ValidationError("threads must be positive, got \(t)") }
        if let k = spikePreview, !(k > 0 && k.isFinite) { throw ValidationError("--spike-preview must be positive, got \(k)") }
        if dense && spikePreview != nil { throw ValidationError("--dense and --spike-preview exclude each other") }
    }

    /// How sessions run this model's linear layers.
    func runMode(for model: Model) throws(SpikeRunError) -> RunMode {
        if dense { return .dense }
        if let k = spikePreview {
            if model.spike != nil { throw .invalidArgument("--spike-preview is for dense models; this one is already converted") }
            return .spike(SpikeSetup(config: .uniform(k: k, nLayer: model.config.nLayer)))
        }
        return .model
    }

    @Option(name: .customLong("backend"), help: "auto, cpu, fpga or fpga-emu (the HLS kernel's C-simulation in process as the device) (default: auto = the FPGA when a device, an xclbin and a spike model are there).")
    var backend: BackendChoice = .auto

    @Option(name: .customLong("xclbin"), help: "FPGA kernel image; with fpga-emu the emulated kernel (default: $SPIKERUN_XCLBIN, else firmware/build/spk_acc.hw.xclbin; fpga-emu: firmware/build/spk_acc.emu.so).")
    var xclbin: String?

    var resolvedPath: String { model ?? DefaultModel.path() }

    func load() throws(SpikeRunError) -> Model {
        if let n = numa {   // process-wide, before the model's thread pool is created
            sr_numa_init(n.policy, sr_numa_default_fake_nodes())
        }
        let path = resolvedPath
        if model == nil && !FileManager.default.fileExists(atPath: path) {
            throw .io("the default model is not at '\(path)'; run 'make model' or pass -m MODEL")
        }
        let file = try Model.openFile(path)
        let isSpike = file.metadata.int("spike.version") != nil && !dense
        // spike models the FPGA kernel cannot run stay on the CPU under auto (a malformed file
        // is reported by the load below)
        let cpuOnly = isSpike ? (try? SpikeConfig.read(from: file))?.fpgaUnsupportedReason : nil
        let chosen = try BackendChoice.resolve(backend, xclbin: xclbin, spikeModel: isSpike || spikePreview != nil,
                                               cpuOnly: cpuOnly)
        do throws(SpikeRunError) {
            return try Model(file: file, options: ModelOptions(threads: threads, activationMode: activation, backend: chosen))
        } catch {
            throw error.kind == .format || error.kind == .unsupported
                ? SpikeRunError(error.kind, "cannot load '\(path)': \(error.message)") : error
        }
    }
}

extension ActivationMode: ExpressibleByArgument {}

/// `--numa`: a policy name as sr_numa_policy_from_name reads it.
struct NumaPolicy: ExpressibleByArgument {
    let policy: Int32

    init?(argument: String) {
        var p: Int32 = 0
        guard sr_numa_policy_from_name(argument, &p) == SR_OK else { return nil }
        policy = p
    }

    static var allValueStrings: [String] { ["off", "distribute", "isolate", "numactl"] }   // listed in errors
    static var defaultCompletionKind: CompletionKind { .list(allValueStrings) }
}

/// `--backend`: what the user asked for, resolved into a `Backend` when the model is known.
enum BackendChoice: String, ExpressibleByArgument, CaseIterable {
    case auto, cpu, fpga
    case fpgaEmu = "fpga-emu"

    /// What `make -C firmware package` writes (the xclbin XRT loads on the board).
    static let xclbinName = "firmware/build/spk_acc.hw.xclbin"
    /// What `make -C firmware emu` writes (the HLS kernel's C-simulation as a shared object).
    static let emulatorName = "firmware/build/spk_acc.emu.so"

    static func defaultXclbin(_ flag: String?) -> String {
        flag ?? ProcessInfo.processInfo.environment["SPIKERUN_XCLBIN"] ?? CheckoutFile.path(xclbinName)
    }

    static func defaultEmulator(_ flag: String?) -> String {
        flag ?? CheckoutFile.path(emulatorName)
    }

    /// fpga: the FPGA or an error saying why not; fpga-emu: the emulated device or an error;
    /// auto: the FPGA when everything is there, otherwise the CPU with one line on stderr
    /// saying why.
    /// cpuOnly: why this spike model cannot run on the FPGA kernel (nil if it can).
    static func resolve(_ choice: BackendChoice, xclbin: String?, spikeModel: Bool,
                        cpuOnly: String? = nil) throws(SpikeRunError) -> Backend {
        if choice == .fpgaEmu {
            let kernel = defaultEmulator(xclbin)
            if !FileManager.default.fileExists(atPath: kernel) {
                throw SpikeRunError(.noDevice, "FPGA emulation requested but there is no emulated kernel at '\(kernel)' (build it with make -C firmware emu, or pass --xclbin)")
            }
            if !spikeModel { throw SpikeRunError(.noDevice, "FPGA emulation requested but the FPGA runs spike-driven models and this one is dense") }
            if let why = cpuOnly { throw SpikeRunError(.noDevice, "FPGA emulation requested but \(why)") }
            return .fpgaEmulator(kernel: kernel)
        }
        let path = defaultXclbin(xclbin)
        func fpgaProblem() -> String? {
            if case .unavailable(let reason) = FPGADevice.availability { return reason }
            if !FileManager.default.fileExists(atPath: path) { return "no xclbin at '\(path)' (build it with make -C firmware package, or pass --xclbin)" }
            if !spikeModel { return "the FPGA runs spike-driven models and this one is dense" }
            return cpuOnly
        }
        switch choice {
        case .cpu:
            return .cpu
        case .fpga:
            if let why = fpgaProblem() { throw SpikeRunError(.noDevice, "FPGA backend requested but \(why)") }
            return .fpga(xclbin: path)
        case .auto, .fpgaEmu:
            // Nothing FPGA-related is configured (no XILINX_XRT, no xclbin): the CPU, silently.
            let xrt = ProcessInfo.processInfo.environment["XILINX_XRT"] ?? ""
            if xrt.isEmpty && xclbin == nil && !FileManager.default.fileExists(atPath: path) { return .cpu }
            if let why = fpgaProblem() {
                Stderr.print("spikerun: using the CPU backend: \(why)")
                return .cpu
            }
            return .fpga(xclbin: path)
        }
    }
}

/// A file of this checkout: relative to the working directory when it exists there, else
/// beside the checkout that built this executable (.build/<config>/spikerun), else as given.
enum CheckoutFile {
    static func path(_ relative: String) -> String {
        if FileManager.default.fileExists(atPath: relative) { return relative }
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent(relative).path
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
            dir.deleteLastPathComponent()
        }
        return relative
    }
}

enum DefaultModel {
    static let fileName = "SmolLM2-135M-Instruct.Q4_1.gguf"

    /// $SPIKERUN_MODEL, else models/ under the working directory, else models/ beside the
    /// checkout that built this executable (.build/<config>/spikerun).
    static func path() -> String {
        if let env = ProcessInfo.processInfo.environment["SPIKERUN_MODEL"], !env.isEmpty { return env }
        let local = "models/" + fileName
        if FileManager.default.fileExists(atPath: local) { return local }
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("models").appendingPathComponent(fileName).path
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
            dir.deleteLastPathComponent()
        }
        return local
    }
}

/// Runs `body`, turning a SpikeRunError into one line on stderr and exit code 1.
func runReportingErrors(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let e as SpikeRunError {
        Stderr.print("spikerun: error: \(e.message)")
        throw ExitCode(1)
    }
}

enum Stderr {
    static func print(_ s: String, terminator: String = "\n") {
        FileHandle.standardError.write((s + terminator).data(using: .utf8)!)
    }
}

enum Stdout {
    /// Writes and flushes at once, so streamed text appears as it is produced.
    static func write(_ s: String) {
        FileHandle.standardOutput.write(s.data(using: .utf8)!)
    }
}

func jsonString<T: Encodable>(_ value: T) -> String {
    let enc = JSONEncoder()
    enc.outputFormatting = [.sortedKeys]
    return String(data: try! enc.encode(value), encoding: .utf8)!
}

/// A one-line progress display on stderr (only when stderr is a terminal, else sparse lines).
struct ProgressLine: Sendable {
    let label: String
    let isTTY = isatty(STDERR_FILENO) != 0

    func update(_ done: Int, _ total: Int, _ detail: String = "") {
        let pct = total > 0 ? 100 * done / total : 0
        if isTTY {
            Stderr.print("\r\(label): \(done)/\(total) (\(pct)%) \(detail)\u{1B}[K", terminator: done == total ? "\n" : "")
        } else if done == total || total < 20 || done % max(total / 10, 1) == 0 {
            Stderr.print("\(label): \(done)/\(total) (\(pct)%) \(detail)")
        }
    }
}
