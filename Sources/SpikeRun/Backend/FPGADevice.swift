import CSpikeRun

/// An XRT device the FPGA backend can open (the VCK190's PL, or XRT's noop shim in tests).
public struct FPGADevice: Sendable, Hashable, CustomStringConvertible {
    /// XRT device index.
    public let index: Int
    /// XRT shim: "hw" on the board, "noop" / "sw_emu" / "hw_emu" when XCL_EMULATION_MODE says so.
    public let shim: String

    public var description: String { "fpga \(index) (\(shim))" }

    /// Whether the FPGA backend could be used in this process, and if not, why.
    ///
    /// Checks the environment (on x86 XRT terminates the process unless `XILINX_XRT` names a
    /// directory with `lib/libxrt_core.so.2` or the shim `XCL_EMULATION_MODE` selects) and
    /// loads `libxrt_coreutil.so.2`. Never opens a device and never calls XRT otherwise.
    public static var availability: FPGAAvailability {
        let status = sr_fpga_probe()
        if status == SR_OK { return .available }
        return .unavailable(reason: String(cString: sr_last_error()))
    }

    /// The XRT devices that open. Calls XRT (device open/close), after the same environment
    /// check as `availability`; throws `.noDevice` with the reason when the backend is
    /// unavailable.
    public static func list() throws(SpikeRunError) -> [FPGADevice] {
        var found: Int32 = 0
        var infos = [sr_fpga_device_info](repeating: sr_fpga_device_info(), count: 16)
        let status = infos.withUnsafeMutableBufferPointer {
            sr_fpga_list_devices($0.baseAddress, Int32($0.count), &found)
        }
        guard status == SR_OK else { throw fpgaError(status) }
        return infos.prefix(Int(min(found, 16))).map { info in
            var shimBytes = info.shim
            let shim = withUnsafeBytes(of: &shimBytes) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            return FPGADevice(index: Int(info.index), shim: shim)
        }
    }
}

/// Result of `FPGADevice.availability`.
public enum FPGAAvailability: Sendable, Hashable {
    case available
    /// The sentence from the C backend (e.g. "FPGA backend unavailable: XILINX_XRT is unset ...").
    case unavailable(reason: String)

    public var isAvailable: Bool { self == .available }
}

/// An open spk_acc kernel: device, loaded xclbin, kernel and (after an upload) buffers.
/// One thread at a time; closes the device when released.
public final class FPGAAccelerator {
    /// What `FPGAAccelerator(xclbin:)` opens with.
    public struct Options: Sendable, Hashable {
        /// XRT device index.
        public var device: Int = 0
        /// Milliseconds one kernel run may take before a step fails with a timeout; nil = the
        /// backend's default (10 s on a board; 10 min emulated, where a token program runs as
        /// C simulation on a host core whose speed depends on the machine's load).
        public var timeoutMilliseconds: Int? = nil
        /// Share of each matrix's row tiles per weight port [DDR4, LPDDR4, LPDDR4]; nil = by bandwidth.
        public var portShare: [Float]? = nil
        /// Use XRT's blocking wait instead of polling the run state.
        public var blockingWait: Bool = false
        /// Emulate the device in process: `xclbin` is then the C-simulation build of the HLS
        /// kernel (firmware/build/spk_acc.emu.so, `make -C firmware emu`) and XRT is not used.
        public var emulated: Bool = false
        /// Also open the token program's kernel (`spk_token`): a spike model that fits it then
        /// runs each token as ONE kernel run (firmware/kernels/spk_token.h). The xclbin (or the
        /// emulated kernel) must contain it.
        public var tokenProgram: Bool = false

        public init() {}
    }

    let handle: OpaquePointer

    /// Opens the device and loads `xclbin` (built by `make -C firmware package`), or with
    /// `options.emulated` the emulated kernel (`make -C firmware emu`).
    public init(xclbin: String, options: Options = .init()) throws(SpikeRunError) {
        var p = sr_fpga_default_params()
        p.device_index = Int32(options.device)
        p.timeout_ms = UInt32(clamping: options.timeoutMilliseconds ?? 0)
        if let s = options.portShare {
            guard s.count == 3 else { throw .invalidArgument("fpga: portShare needs 3 values, got \(s.count)") }
            p.port_share = (s[0], s[1], s[2])
        }
        p.blocking_wait = options.blockingWait
        p.emulate = options.emulated
        p.token_program = options.tokenProgram
        var out: OpaquePointer? = nil
        let status = xclbin.withCString { path -> sr_status in
            p.xclbin_path = path
            return sr_fpga_open(&p, &out)
        }
        guard status == SR_OK, let out else { throw fpgaError(status) }
        handle = out
    }

    deinit { sr_fpga_close(handle) }

    /// The xclbin's platform, e.g. "xilinx_vck190_base_202210_1".
    public var platform: String { String(cString: sr_fpga_platform(handle)) }

    /// Uploads packed sr-spike weights once (`sr_fpga_upload_weights`); matrix i of the list is
    /// index i in `step`. The weights are read during the call only.
    package func upload(_ matrices: [(weights: UnsafePointer<sr_spike_weights>, inputSlot: Int)])
        throws(SpikeRunError)
    {
        let list = matrices.map { sr_fpga_matrix(w: $0.weights, input_slot: Int32($0.inputSlot)) }
        let status = list.withUnsafeBufferPointer { sr_fpga_upload_weights(handle, $0.baseAddress, Int32($0.count)) }
        guard status == SR_OK else { throw fpgaError(status) }
    }

    /// One kernel run over matrices `first ..< first + count` (`sr_fpga_step`): returns their
    /// outputs concatenated (each matrix's n_out rows).
    package func step(first: Int, count: Int, inputs: [(slot: Int, planes: UnsafePointer<sr_spike_planes>)])
        throws(SpikeRunError) -> [Float]
    {
        let n = sr_fpga_step_outputs(handle, Int32(first), Int32(count))
        guard n >= 0 else { throw .invalidArgument("fpga: matrices \(first)..<\(first + count) are not uploaded") }
        var y = [Float](repeating: 0, count: Int(n))
        let list = inputs.map { sr_fpga_input(slot: Int32($0.slot), x: $0.planes) }
        let status = list.withUnsafeBufferPointer { ins in
            y.withUnsafeMutableBufferPointer { sr_fpga_step(handle, Int32(first), Int32(count), ins.baseAddress,
                                                             Int32(ins.count), $0.baseAddress) }
        }
        guard status == SR_OK else { throw fpgaError(status) }
        return y
    }

    /// Counters since open.
    public var statistics: FPGAStatistics {
        var s = sr_fpga_stats()
        sr_fpga_get_stats(handle, &s)
        return FPGAStatistics(runs: Int(s.runs), jobs: Int(s.jobs), timeouts: Int(s.timeouts),
                              weightBytes: [Int(s.weight_bytes.0), Int(s.weight_bytes.1), Int(s.weight_bytes.2)],
                              bytesToDevice: Int(s.bytes_to_device), bytesFromDevice: Int(s.bytes_from_device),
                              secondsInRuns: s.seconds_in_runs, tokenRuns: Int(s.token_runs),
                              tokenPasses: Int(s.token_passes))
    }
}

/// Counters of an `FPGAAccelerator` (`sr_fpga_stats`).
public struct FPGAStatistics: Sendable, Hashable {
    /// Kernel runs completed.
    public var runs: Int
    /// Job descriptors (linear layers) executed.
    public var jobs: Int
    /// Runs that did not complete within the timeout.
    public var timeouts: Int
    /// Device bytes per weight port (w0 DDR4, w1 and w2 LPDDR4), padding included.
    public var weightBytes: [Int]
    /// Spike-input bytes synced to the device by steps.
    public var bytesToDevice: Int
    /// Output bytes synced back by steps.
    public var bytesFromDevice: Int
    /// Wall time from start to completion, summed over runs.
    public var secondsInRuns: Double
    /// Runs of the token program (`spk_token`, one per token); included in `runs`.
    public var tokenRuns: Int = 0
    /// spk_acc dataflow passes (MATVEC descriptors) inside the token runs.
    public var tokenPasses: Int = 0
}

func fpgaError(_ status: sr_status) -> SpikeRunError {
    let message = String(cString: sr_last_error())
    let kind: SpikeRunError.Kind
    switch status {
    case SR_ERR_NO_DEVICE: kind = .noDevice
    case SR_ERR_INVALID_ARG: kind = .invalidArgument
    case SR_ERR_IO: kind = .io
    case SR_ERR_FORMAT: kind = .format
    case SR_ERR_NO_MEMORY: kind = .noMemory
    case SR_ERR_NUMERIC: kind = .numeric
    case SR_ERR_UNSUPPORTED, SR_ERR_DEVICE, SR_ERR_TIMEOUT: kind = .unsupported
    default: kind = .unsupported
    }
    return SpikeRunError(kind, message.isEmpty ? "fpga: \(String(cString: sr_status_str(status)))" : message)
}
