import ArgumentParser
import Foundation
import SpikeRun

struct Convert: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a dense Llama GGUF into a spike-driven GGUF (calibrated on text).")

    @Option(name: [.customShort("m"), .customLong("model")],
            help: "Dense GGUF to convert (default: models/SmolLM2-135M-Instruct.Q4_1.gguf).")
    var model: String?

    @Option(name: [.customShort("o"), .customLong("output")], help: "Converted GGUF to write.")
    var output: String

    @Option(name: .customLong("encoding"), help: "naf (non-adjacent form, default with the mean rule: the fewest spikes for the same counts), bitwise (sign-magnitude; default with --timesteps), twos-complement, ternary or binary.")
    var encoding: String?

    @Option(name: .customLong("timesteps"), help: "Fixed T: max rule, G = 32 groups, gamma calibrated per site.")
    var timesteps: Int?

    @Option(name: .customLong("ppl-budget"), help: "Mixed per-block k from sensitivity probes within this perplexity increase (percent).")
    var pplBudget: Double?

    @Option(name: .customLong("probes"), help: "With --ppl-budget: reuse the sensitivity probes of an earlier 'convert --ppl-budget … --json' report (same model and calibration) instead of re-measuring them.")
    var probes: String?

    @Option(name: [.customShort("k"), .customLong("k")], help: "Mean rule with this k at every site (default: k per site kind, \(ConversionOptions.defaultSiteK.sorted { $0.key < $1.key }.map { "\($0.key)=\(Int($0.value))" }.joined(separator: ",")); other kinds 12).")
    var k: Float?

    @Option(name: .customLong("site-k"), help: "Mean rule: k per site kind, e.g. A=8,O=3,F=8,D=4,H=8 (A: q/k/v input, O: o input, F: gate/up input, D: down input, H: head input); unnamed kinds use -k.")
    var siteK: String?

    @Option(name: .customLong("thrifty"), help: "Mean rule with NAF trains: of the two integers next to x/s, take the one that fires fewer spikes when it lies within 0.5 + TAU steps (0 = plain rounding; default \(ConversionOptions.defaultTau)).")
    var thrifty: Float?

    @Option(name: .customLong("calib"), help: "Calibration text file (default: the corpus shipped with spikerun, \(CalibrationCorpus.name)).")
    var calib: String?

    @Option(name: .customLong("calib-tokens"), help: "Calibration tokens (default 512; sequences of 256).")
    var calibTokens: Int = 512

    @Option(name: .customLong("weights"), help: "int8 (per-row codes requantized from the GGUF: one float rescale per output row; default), int4 (the GGUF's own Q4_1 codes: exact, but a float rescale per 32-block), int4i (the Q4_1 codes with 8-bit integer block scales: integer block products, 4 float multiplies per row; mean rule only) or ternary.")
    var weights: String = "int8"

    @Option(name: .customLong("head-refine"), help: "Refined head (mean rule, --weights int8 or int4i; default \(ConversionOptions.defaultHeadRefineRows)): the head input spikes at --head-coarse-k, then this many rows (the largest logits) are recomputed from a train at the head's k (H). 0 = a plain head at H.")
    var headRefine: Int?

    @Option(name: .customLong("head-coarse-k"), help: "Refined head: k of the coarse train every head row reads (default \(Int(ConversionOptions.defaultHeadCoarseK))).")
    var headCoarseK: Float?

    @Flag(name: .customLong("no-spike-attention"), help: "Keep attention's QK and PV products in float.")
    var noSpikeAttention = false

    @Option(name: .customLong("attention-q-bits"), help: "Spike attention: bits of the query's max-rule code (default 8).")
    var attentionQBits: Int = 8

    @Option(name: .customLong("attention-p-bits"), help: "Spike attention: bits of the probabilities' unsigned code (default 12).")
    var attentionPBits: Int = 12

    @Flag(name: .customLong("pow2-steps"), inversion: .prefixedNo,
          help: "Power-of-two steps (default on): each mean-rule step snapped to the nearest power of two, spike attention's query step rounded up to one and its probabilities scaled by 2^-bits, so quantizing and rescaling by them are exponent adds.")
    var pow2Steps = true

    @Option(name: .customLong("v-scale-headroom"), help: "Spike attention: V-cache scales = calibration max|v| × this / 127 (default 2).")
    var vScaleHeadroom: Float = 2

    @Option(name: [.customShort("t"), .customLong("threads")], help: "Threads (default: all online CPUs).")
    var threads: Int?

    @Flag(name: .customLong("json"), help: "Print a JSON report.")
    var json = false

    func validate() throws {
        let modes = [timesteps != nil, pplBudget != nil, k != nil].filter { $0 }.count
        if modes > 1 { throw ValidationError("--timesteps, --ppl-budget and -k exclude each other") }
        if probes != nil && pplBudget == nil { throw ValidationError("--probes needs --ppl-budget") }
        if calibTokens < 16 { throw ValidationError("--calib-tokens must be at least 16, got \(calibTokens)") }
        if !(2...16).contains(attentionQBits) { throw ValidationError("--attention-q-bits must be in 2...16, got \(attentionQBits)") }
        if !(2...16).contains(attentionPBits) { throw ValidationError("--attention-p-bits must be in 2...16, got \(attentionPBits)") }
        if let t = threads, t <= 0 { throw ValidationError("threads must be positive, got \(t)") }
        if let r = headRefine, r < 0 { throw ValidationError("--head-refine must be 0 or more rows, got \(r)") }
        if let k = headCoarseK, !(k > 0 && k.isFinite) { throw ValidationError("--head-coarse-k must be positive, got \(k)") }
        if let t = thrifty, !(t >= 0 && t <= 0.5) { throw ValidationError("--thrifty must be in 0...0.5, got \(t)") }
    }

    func options() throws(SpikeRunError) -> ConversionOptions {
        var o = ConversionOptions()
        switch encoding ?? (timesteps != nil ? "bitwise" : "naf") {
        case "bitwise", "sign-magnitude": o.encoding = .signMagnitude
        case "twos-complement": o.encoding = .twosComplement
        case "ternary": o.encoding = .ternary
        case "binary": o.encoding = .binary(offset: 0)
        case "naf": o.encoding = .naf
        default: throw .invalidArgument("unknown --encoding '\(encoding ?? "")' (naf, bitwise, twos-complement, ternary, binary)")
        }
        guard let w = SpikeWeightFormat(rawValue: weights) else {
            throw .invalidArgument("unknown --weights '\(weights)' (\(SpikeWeightFormat.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        o.weights = w
        if let t = thrifty {
            guard t == 0 || (o.encoding == .naf && timesteps == nil) else {
                throw .invalidArgument("--thrifty needs NAF trains and the mean rule (not --timesteps or --encoding \(encoding ?? "bitwise"))")
            }
            o.tau = t
        }
        if k != nil && siteK == nil { o.siteK = [:] }  // -k alone: one k at every site
        if let spec = siteK {
            o.siteK = [:]
            guard timesteps == nil, pplBudget == nil else { throw .invalidArgument("--site-k is for the mean rule (not with --timesteps or --ppl-budget)") }
            for item in spec.split(separator: ",") {
                let kv = item.split(separator: "=")
                guard kv.count == 2, ["A", "O", "F", "D", "H"].contains(String(kv[0])), let v = Float(kv[1]), v > 0, v.isFinite else {
                    throw .invalidArgument("--site-k: '\(item)' is not KIND=k with KIND one of A, O, F, D, H and k > 0")
                }
                o.siteK[String(kv[0])] = v
            }
        }
        if let t = timesteps { o.mode = .timesteps(t) } else if let p = pplBudget { o.mode = .pplBudget(p) } else { o.mode = .mean(k: k ?? 12) }
        if let path = probes {
            guard let data = FileManager.default.contents(atPath: path),
                  let r = try? JSONDecoder().decode(ConversionReport.self, from: data),
                  let sens = r.sensitivity, let sops = r.unitSOPs, let dense = r.calibrationDenseNLL else {
                throw .invalidArgument("--probes '\(path)' is not a 'convert --ppl-budget … --json' report")
            }
            o.budgetProbes = .init(sensitivity: sens, unitSOPs: sops, denseNLL: dense)
        }
        if let r = headRefine { o.headRefineRows = r }
        if let k = headCoarseK { o.headCoarseK = k }
        if (headRefine ?? 0) > 0 || headCoarseK != nil, !o.refinesHead {
            throw .invalidArgument("--head-refine and --head-coarse-k need the mean rule (not --timesteps or --ppl-budget), --weights int8 or int4i and rows > 0")
        }
        o.pow2Steps = pow2Steps
        o.spikeAttention = !noSpikeAttention
        o.attentionQBits = attentionQBits
        o.attentionPBits = attentionPBits
        guard vScaleHeadroom >= 1, vScaleHeadroom <= 16 else { throw .invalidArgument("--v-scale-headroom must be in 1...16, got \(vScaleHeadroom)") }
        o.vScaleHeadroom = vScaleHeadroom
        o.calibrationTokens = calibTokens
        o.calibrationContext = min(256, calibTokens)
        return o
    }

    func run() async throws {
        try await runReportingErrors {
            let opts = try options()
            let path = model ?? DefaultModel.path()
            if model == nil && !FileManager.default.fileExists(atPath: path) {
                throw SpikeRunError.io("the default model is not at '\(path)'; run 'make model' or pass -m MODEL")
            }
            if let calib, !FileManager.default.fileExists(atPath: calib) {
                throw SpikeRunError.io("calibration text '\(calib)' does not exist")
            }
            // Fail early on an unwritable destination, before minutes of calibration.
            let dir = URL(fileURLWithPath: output).deletingLastPathComponent().path
            var isDir: ObjCBool = false
            if !FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) || !isDir.boolValue
                || !FileManager.default.isWritableFile(atPath: dir) {
                throw SpikeRunError.io("cannot write '\(output)': directory '\(dir)' does not exist or is not writable")
            }
            if URL(fileURLWithPath: output).standardized.path == URL(fileURLWithPath: path).standardized.path {
                throw SpikeRunError.invalidArgument("the output must not overwrite the input model")
            }
            let text = try calib.map { path throws(SpikeRunError) in try TextFile.read(path) } ?? CalibrationCorpus.text
            let m = try Model.load(path, options: ModelOptions(threads: threads, activationMode: .q8))
            try SpikeConverter.validate(model: m, options: opts)
            Stderr.print("convert: hashing \(path)")
            let prov: [String: String] = [
                "spike.source.name": URL(fileURLWithPath: path).lastPathComponent,
                "spike.source.sha256": try SHA256Digest.file(path),
                "spike.calibration.file": calib.map { URL(fileURLWithPath: $0).lastPathComponent } ?? CalibrationCorpus.name,
                "spike.calibration.sha256": SHA256Digest.hex(Array(text.utf8)),
            ]
            let line = ProgressLine(label: "write")
            let probes = ProgressLine(label: "sensitivity probes")
            final class Last: @unchecked Sendable { var pct = -1 }
            let last = Last()
            let report = try await SpikeConverter.convert(
                model: m, options: opts, calibrationText: text, provenance: prov, to: output,
                progress: { Stderr.print("convert: " + $0) },
                probeProgress: { done, total in probes.update(done, total) },
                writeProgress: { f in
                    let pct = Int(f * 100)
                    if pct != last.pct { last.pct = pct; line.update(pct, 100) }
                })
            if json {
                print(jsonString(report))
            } else {
                var msg = "wrote \(output): \(report.mode), \(report.encoding), weights \(report.weights), spike attention \(report.spikeAttention ? "on" : "off")"
                if let d = report.calibrationPPLChangePercent {
                    msg += String(format: "; calibration ppl change %+.2f%% (%d tokens)", d, report.calibrationTokens)
                }
                if let k = report.calibrationKLD {
                    msg += String(format: ", KLD %.4f, same top token %.1f%%", k.meanKLD, k.top1AgreementPercent)
                }
                if let spa = report.calibrationSpikesPerActivation { msg += String(format: ", %.3f spikes/activation", spa) }
                msg += String(format: ", %.1f s", report.seconds)
                print(msg)
            }
        }
    }
}
