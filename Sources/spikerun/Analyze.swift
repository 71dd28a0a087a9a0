import ArgumentParser
import Foundation
import SpikeRun

struct Analyze: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Record a converted model's spike trains over sentences and analyse them (rates, entropy, MI, ambiguity study).",
        discussion: """
        Every sentence is evaluated from an empty KV cache and its tokens are labelled with it. With -f, each non-empty line of the file is one sentence; a line 'CATEGORY<TAB>sentence' labels it with a category (default 'text'), and with exactly two categories (or 'ambiguous' and 'unambiguous') the two groups are compared per layer. With --ambiguity the built-in corpus of 24 ambiguous sentences and 24 length-matched controls is used and ambiguous is compared with unambiguous per layer and site (permutation test on the per-sentence spikes per activation and count entropy, Benjamini-Hochberg across layers).

        OUTDIR receives recording/ (index.json, tokens.npy, token_sentence.npy and per site L<layer>_<site>.spikes.npy, .counts.npy, .steps.npy; numpy.load reads them), metrics.json, metrics.csv, metrics_neurons.csv, metrics_comparisons.csv and report.html. The head input H is recorded (as layer n_layer) whenever site H is selected.
        """)

    @OptionGroup var modelOptions: ModelOptionsGroup

    @Option(name: [.customShort("f"), .customLong("file")], help: "Text file: one sentence per line (optionally 'CATEGORY<TAB>sentence').")
    var file: String?

    @Flag(name: .customLong("ambiguity"), help: "Use the built-in ambiguity corpus (ambiguous vs unambiguous sentences).")
    var ambiguity = false

    @Option(name: [.customShort("o"), .customLong("output")], help: "Output directory (created if needed).")
    var output: String

    @Option(name: .customLong("layers"), help: "Layers to record: comma-separated indices or 'all' (default: all).")
    var layers: String = "all"

    @Option(name: .customLong("sites"), help: "Sites to record, comma-separated from A,O,F,D,H (default: all).")
    var sites: String = "A,O,F,D,H"

    @Option(name: .customLong("max-neurons"), help: "Neurons (channels) kept per site, evenly spaced over its width (default: 64).")
    var maxNeurons: Int = 64

    @Option(name: .customLong("shuffles"), help: "Stimulus shuffles for the MI bias baseline (default: 100).")
    var shuffles: Int = 100

    @Option(name: .customLong("permutations"), help: "Permutations of the group test per layer (default: 10000).")
    var permutations: Int = 10_000

    @Option(name: .customLong("seed"), help: "Seed of shuffles and permutations (default: 20250601).")
    var seed: UInt64 = 20_250_601

    @Flag(name: .customLong("json"), help: "Print a JSON summary on stdout.")
    var json = false

    func validate() throws {
        if ambiguity == (file != nil) { throw ValidationError("give exactly one of -f TEXTFILE and --ambiguity") }
        if maxNeurons <= 0 { throw ValidationError("--max-neurons must be positive, got \(maxNeurons)") }
        if shuffles < 0 { throw ValidationError("--shuffles must be at least 0, got \(shuffles)") }
        if permutations < 1 { throw ValidationError("--permutations must be positive, got \(permutations)") }
    }

    func run() async throws {
        try await runReportingErrors {
            let start = Date()
            // Cheap checks first: sites, input file, output directory, then the model.
            let siteSet = try Self.parseSites(sites)
            let sentences: [SentenceInfo]
            if let file {
                sentences = try Self.readSentences(file)
            } else {
                sentences = AmbiguityCorpus.sentences
            }
            let out = URL(fileURLWithPath: output)
            try Self.checkWritable(out)
            let model = try modelOptions.load()
            let mode = try modelOptions.runMode(for: model)
            switch mode {
            case .dense:
                throw SpikeRunError.invalidArgument("--dense runs no spikes; analyze needs a spike-driven run")
            case .model where model.spike == nil:
                throw SpikeRunError.invalidArgument(
                    "'\(modelOptions.resolvedPath)' is a dense model; convert it first with spikerun convert")
            default: break
            }
            let nLayer = model.config.nLayer
            let layerSet = try Self.parseLayers(layers, nLayer: nLayer)
            let plan = RecordingPlan(layers: layerSet.map { $0.union([nLayer]) }, sites: siteSet,
                                     neurons: .evenlySpaced(maxNeurons))

            // Tokenize every sentence; size the context to the longest.
            let tok = model.tokenizer
            let tokenized = sentences.map { tok.encode($0.text, addSpecialTokens: true, parseSpecial: false) }
            if let i = tokenized.firstIndex(where: \.isEmpty) {
                throw SpikeRunError.invalidArgument("sentence \(i + 1) has no tokens")
            }
            let longest = tokenized.map(\.count).max() ?? 1
            guard longest <= model.config.contextLength else {
                throw SpikeRunError.invalidArgument(
                    "a sentence has \(longest) tokens; the model's context holds \(model.config.contextLength)")
            }
            let session = try Session(model: model, contextLength: longest, batchSize: longest, mode: mode)

            // Record (streamed to disk: bounded memory for long inputs).
            let recDir = out.appendingPathComponent("recording")
            let recorder = SpikeRecorder(sink: try StreamingRecordingWriter(directory: recDir, plan: plan))
            let line = ProgressLine(label: "recording")
            let total = tokenized.reduce(0) { $0 + $1.count }
            var done = 0
            for (i, s) in sentences.enumerated() {
                let idx = recorder.addSentence(s)
                let texts = tokenized[i].map { String(decoding: tok.pieceBytes($0, renderSpecial: true), as: UTF8.self) }
                _ = try await session.record(tokenized[i], into: recorder, sentence: idx, texts: texts)
                done += tokenized[i].count
                line.update(i + 1, sentences.count, "sentences, \(done)/\(total) tokens")
            }
            try recorder.finish()
            let recordSeconds = Date().timeIntervalSince(start)

            // Analyse.
            Stderr.print("analysing \(plan.sites.count) site kinds over \(total) tokens…")
            let recording = try SpikeRecording.load(from: recDir)
            guard !recording.keys.isEmpty else {
                throw SpikeRunError.invalidArgument("nothing was recorded (no selected layer has a selected site)")
            }
            var analysis = SpikeAnalysis.analyze(recording, options: AnalysisOptions(
                shufflePermutations: shuffles, seed: seed))
            let groups = Self.comparisonGroups(sentences)
            if let (a, b) = groups {
                for site in SpikeSite.allCases where recording.keys.contains(where: { $0.site == site }) {
                    for measure in [SentenceMeasure.spikesPerActivation, .countEntropy] {
                        analysis.comparisons.append(try GroupComparison.compare(
                            recording, site: site, measure: measure, groupA: a, groupB: b,
                            permutations: permutations, seed: seed))
                    }
                }
            }
            try analysis.write(to: out)
            let reportURL = out.appendingPathComponent("report.html")
            let source = ambiguity ? "the built-in ambiguity corpus" : "'\(file!)'"
            let strongest = analysis.comparisons.compactMap(Self.strongest)
            var note = "Model \(modelOptions.resolvedPath); \(sentences.count) sentences from \(source), each from an "
                + "empty cache; \(maxNeurons) evenly spaced neurons per site."
            if let (a, b) = groups {
                let sig = analysis.comparisons.filter { !$0.differingLayers.isEmpty }
                    .map { "\($0.measure.rawValue): \($0.summary)" }
                note += " \(a) vs \(b): " + (sig.isEmpty
                    ? "no layer differs after Benjamini–Hochberg correction (alpha 0.05)"
                    : "differing layers: " + sig.joined(separator: "; "))
                if let best = strongest.min(by: { $0.p < $1.p }), !best.significant {
                    note += "; smallest uncorrected p: " + best.text
                }
                note += "."
            }
            try AnalysisReport.write(recording: recording, analysis: analysis, to: reportURL, options: ReportOptions(
                title: "spikerun analyze: \(URL(fileURLWithPath: modelOptions.resolvedPath).lastPathComponent)",
                note: note))
            let seconds = Date().timeIntervalSince(start)

            let differing = analysis.comparisons.flatMap { c in
                c.rows.filter(\.significant).map {
                    AnalyzeJSON.Difference(site: c.site, measure: c.measure.rawValue, layer: $0.layer,
                                           direction: $0.difference > 0 ? "\(c.groupA) > \(c.groupB)" : "\(c.groupA) < \(c.groupB)",
                                           mean_a: $0.meanA, mean_b: $0.meanB, p: $0.p, p_adjusted: $0.pAdjusted)
                }
            }
            if json {
                print(jsonString(AnalyzeJSON(
                    output: out.path, report: reportURL.path, recording: recDir.path,
                    metrics: out.appendingPathComponent("metrics.json").path,
                    sentences: sentences.count, tokens: recording.tokens.count, sites: recording.keys.count,
                    groups: groups.map { [$0.0, $0.1] } ?? [], differing: differing,
                    strongest: strongest.map(\.json),
                    record_seconds: recordSeconds, seconds: seconds)))
            } else {
                print("recorded \(recording.keys.count) sites over \(recording.tokens.count) tokens of \(sentences.count) sentences "
                    + String(format: "(%.1f s), analysed in %.1f s", recordSeconds, seconds - recordSeconds))
                for c in analysis.comparisons { print("\(c.measure.rawValue) @ \(c.site): \(c.summary)") }
                if let best = strongest.min(by: { $0.p < $1.p }) { print("smallest uncorrected p: \(best.text)") }
                print("report: \(reportURL.path)")
            }
        }
    }

    /// The layer with the smallest p of one comparison.
    struct Strongest {
        var json: AnalyzeJSON.Difference
        var p: Double
        var significant: Bool
        var text: String
    }

    static func strongest(_ c: GroupComparison) -> Strongest? {
        guard let r = c.rows.min(by: { $0.p < $1.p }) else { return nil }
        let dir = r.difference > 0 ? "\(c.groupA) > \(c.groupB)" : "\(c.groupA) < \(c.groupB)"
        return Strongest(
            json: .init(site: c.site, measure: c.measure.rawValue, layer: r.layer, direction: dir, mean_a: r.meanA,
                        mean_b: r.meanB, p: r.p, p_adjusted: r.pAdjusted),
            p: r.p, significant: r.significant,
            text: "L\(r.layer).\(c.site) \(c.measure.rawValue) \(dir) (p = \(String(format: "%.3g", r.p)), "
                + "p_BH = \(String(format: "%.3g", r.pAdjusted)))")
    }

    /// Sites from "A,F,…" (case-insensitive).
    static func parseSites(_ s: String) throws(SpikeRunError) -> Set<SpikeSite> {
        var out = Set<SpikeSite>()
        for part in s.split(separator: ",", omittingEmptySubsequences: false) {
            let name = part.trimmingCharacters(in: .whitespaces).uppercased()
            guard let site = SpikeSite(name: name) else {
                throw .invalidArgument("--sites: unknown site '\(part)' (expected A, O, F, D or H)")
            }
            out.insert(site)
        }
        return out
    }

    /// Layers from "all" or "0,5,10"; nil = all.
    static func parseLayers(_ s: String, nLayer: Int) throws(SpikeRunError) -> Set<Int>? {
        if s.lowercased() == "all" { return nil }
        var out = Set<Int>()
        for part in s.split(separator: ",", omittingEmptySubsequences: false) {
            let t = part.trimmingCharacters(in: .whitespaces)
            guard let l = Int(t) else {
                throw .invalidArgument("--layers: '\(t)' is not a layer index (use e.g. 0,5,10 or all)")
            }
            guard l >= 0 && l < nLayer else {
                throw .invalidArgument("--layers: layer \(l) does not exist; the model has layers 0–\(nLayer - 1)")
            }
            out.insert(l)
        }
        return out
    }

    /// Non-empty lines; "CATEGORY<TAB>text" sets the category.
    static func readSentences(_ path: String) throws(SpikeRunError) -> [SentenceInfo] {
        let text = try TextFile.read(path)
        var out: [SentenceInfo] = []
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            guard !line.isEmpty else { continue }
            if let tab = line.firstIndex(of: "\t") {
                let cat = line[..<tab].trimmingCharacters(in: .whitespaces)
                let body = line[line.index(after: tab)...].trimmingCharacters(in: .whitespaces)
                if !cat.isEmpty && !body.isEmpty {
                    out.append(SentenceInfo(text: body, category: cat))
                    continue
                }
            }
            out.append(SentenceInfo(text: line, category: "text"))
        }
        guard !out.isEmpty else { throw .invalidArgument("'\(path)' has no non-empty line") }
        return out
    }

    /// The two groups to compare: ambiguous/unambiguous when present, else exactly two categories.
    static func comparisonGroups(_ s: [SentenceInfo]) -> (String, String)? {
        var cats: [String] = []
        for x in s where !cats.contains(x.category) { cats.append(x.category) }
        if cats.contains(AmbiguityCorpus.ambiguousCategory) && cats.contains(AmbiguityCorpus.controlCategory) {
            return (AmbiguityCorpus.ambiguousCategory, AmbiguityCorpus.controlCategory)
        }
        return cats.count == 2 ? (cats[0], cats[1]) : nil
    }

    /// Creates `dir` and proves that a file can be written in it.
    static func checkWritable(_ dir: URL) throws(SpikeRunError) {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: dir.path, isDirectory: &isDir), !isDir.boolValue {
            throw .io("output '\(dir.path)' exists and is not a directory")
        }
        do { try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true) } catch {
            throw .io("cannot create output directory '\(dir.path)': \(Self.reason(error))")
        }
        let probe = dir.appendingPathComponent(".spikerun-write-test-\(getpid())")
        guard FileManager.default.createFile(atPath: probe.path, contents: Data()) else {
            throw .io("output directory '\(dir.path)' is not writable")
        }
        try? FileManager.default.removeItem(at: probe)
    }

    static func reason(_ e: any Error) -> String {
        let ns = e as NSError
        if let u = ns.userInfo[NSUnderlyingErrorKey] as? NSError, u.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(u.code)))
        }
        return ns.localizedDescription
    }
}

struct AnalyzeJSON: Encodable {
    struct Difference: Encodable {
        var site: String
        var measure: String
        var layer: Int
        var direction: String
        var mean_a: Double
        var mean_b: Double
        var p: Double
        var p_adjusted: Double
    }
    var output: String
    var report: String
    var recording: String
    var metrics: String
    var sentences: Int
    var tokens: Int
    var sites: Int
    var groups: [String]
    /// Layers that differ (BH-adjusted p < 0.05), per site and measure.
    var differing: [Difference]
    /// Per site and measure, the layer with the smallest uncorrected p.
    var strongest: [Difference]
    var record_seconds: Double
    var seconds: Double
}
