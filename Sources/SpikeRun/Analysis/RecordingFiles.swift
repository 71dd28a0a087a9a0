import Foundation

/// The `index.json` of a recording directory: what each `.npy` file holds.
///
/// Directory layout (all arrays C-order, little-endian, NumPy format 1.0):
/// - `tokens.npy` int32 `[tokens]`: token ids; `token_sentence.npy` int32 `[tokens]`: sentence
///   index per token (−1 = none).
/// - per site, stem `L<layer>_<site>` (e.g. `L03_A`): `<stem>.spikes.npy` int8
///   `[tokens, steps, neurons]`, `<stem>.counts.npy` int32 `[tokens, neurons]`,
///   `<stem>.steps.npy` int32 `[tokens]` (each token's own `T`).
public struct RecordingIndex: Sendable, Hashable, Codable {
    /// Always `spikerun-recording`.
    public var format = "spikerun-recording"
    /// Layout version (1).
    public var version = 1
    /// Number of tokens.
    public var tokenCount: Int
    /// Token ids.
    public var tokens: [Int32]
    /// Display text per token.
    public var tokenTexts: [String]
    /// Sentence index per token (−1 = none).
    public var tokenSentence: [Int32]
    /// Sentences.
    public var sentences: [SentenceInfo]
    /// `tokens.npy`.
    public var tokensFile = "tokens.npy"
    /// `token_sentence.npy`.
    public var tokenSentenceFile = "token_sentence.npy"
    /// Recorded sites.
    public var sites: [Site]

    /// One recorded (layer, site).
    public struct Site: Sendable, Hashable, Codable {
        /// Block index.
        public var layer: Int
        /// Site name (`A`, `O`, `F`, `D`, `H`).
        public var site: String
        /// Encoding name (``SpikeEncoding/name``).
        public var encoding: String
        /// Binary-code offset `z` (0 otherwise).
        public var offset: Int32
        /// Full activation width.
        public var width: Int
        /// Recorded channel indices (the last axis of the arrays).
        public var neurons: [Int]
        /// Tokens recorded for this site (a prefix of the recording's tokens).
        public var tokenCount: Int
        /// Steps axis of the spike array (largest per-token `T`).
        public var steps: Int
        /// Step weights `c_t` at `steps` (decode: `n = Σ_t c_t σ_t − offset`).
        public var stepWeights: [Int64]
        /// Spike array file.
        public var spikes: String
        /// Counts file.
        public var counts: String
        /// Per-token steps file.
        public var tokenSteps: String

        enum CodingKeys: String, CodingKey {
            case layer, site, encoding, offset, width, neurons, steps, spikes, counts
            case tokenCount = "token_count", stepWeights = "step_weights", tokenSteps = "token_steps"
        }
    }

    enum CodingKeys: String, CodingKey {
        case format, version, tokens, sentences, sites
        case tokenCount = "token_count", tokenTexts = "token_texts", tokenSentence = "token_sentence"
        case tokensFile = "tokens_file", tokenSentenceFile = "token_sentence_file"
    }
}

extension AnalysisIO {
    /// Encodes a value as pretty, key-sorted JSON (NaN and infinities as strings).
    static func encodeJSON<T: Encodable>(_ value: T) throws(SpikeRunError) -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        enc.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        do { return try enc.encode(value) } catch {
            throw .invalidArgument("cannot encode JSON: \(error)")
        }
    }
}

func siteEntry(key: RecordingKey, encoding: SpikeEncoding, width: Int, neurons: [Int],
               tokenCount: Int, steps: Int) -> RecordingIndex.Site {
    .init(layer: key.layer, site: key.site.name, encoding: encoding.name, offset: encoding.offset,
          width: width, neurons: neurons, tokenCount: tokenCount, steps: steps,
          stepWeights: (0..<steps).map { encoding.stepWeight(at: $0, steps: steps) },
          spikes: key.stem + ".spikes.npy", counts: key.stem + ".counts.npy",
          tokenSteps: key.stem + ".steps.npy")
}

/// Streams an int8 spike array `[tokens, steps, neurons]` into `url` (temp file + rename),
/// one token at a time.
func writeSpikesNPY(to url: URL, tokens: Int, steps: Int, neurons: Int,
                    token: (Int, UnsafeMutablePointer<Int8>) throws(SpikeRunError) -> Void) throws(SpikeRunError) {
    let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
    let f = try AppendFile(url: tmp)
    do throws(SpikeRunError) {
        try f.write(array: NPY.header(type: .int8, shape: [tokens, steps, neurons]))
        var buf = [Int8](repeating: 0, count: steps * neurons)
        for i in 0..<tokens {
            var failure: SpikeRunError?
            buf.withUnsafeMutableBufferPointer { b in
                do throws(SpikeRunError) { try token(i, b.baseAddress!) } catch { failure = error }
            }
            if let failure { throw failure }
            try f.write(array: buf)
        }
        f.close()
    } catch {
        f.close()
        unlink(tmp.path)
        throw error
    }
    try AnalysisIO.rename(tmp, to: url)
}

extension SpikeRecording {
    /// Writes the recording as `.npy` files plus `index.json` (see ``RecordingIndex``) into
    /// `directory` (created if needed). Every file is written atomically; `index.json` last.
    public func write(to directory: URL) throws(SpikeRunError) {
        try AnalysisIO.makeDirectory(directory)
        let n = tokens.count
        try AnalysisIO.writeAtomically(NPY.encode(tokens, shape: [n]), to: directory.appendingPathComponent("tokens.npy"))
        try AnalysisIO.writeAtomically(NPY.encode(tokenSentence, shape: [n]),
                                to: directory.appendingPathComponent("token_sentence.npy"))
        var entries: [RecordingIndex.Site] = []
        for key in keys {
            let s = sites[key]!
            let e = siteEntry(key: key, encoding: s.encoding, width: s.width, neurons: s.neuronIndices,
                              tokenCount: s.tokenCount, steps: s.steps)
            try AnalysisIO.writeAtomically(NPY.encode(s.counts, shape: [s.tokenCount, s.neuronCount]),
                                    to: directory.appendingPathComponent(e.counts))
            try AnalysisIO.writeAtomically(NPY.encode(s.tokenSteps, shape: [s.tokenCount]),
                                    to: directory.appendingPathComponent(e.tokenSteps))
            let T = s.steps
            try writeSpikesNPY(to: directory.appendingPathComponent(e.spikes), tokens: s.tokenCount,
                               steps: T, neurons: s.neuronCount) { i, p in s.encodeToken(i, steps: T, into: p) }
            entries.append(e)
        }
        let index = RecordingIndex(tokenCount: n, tokens: tokens, tokenTexts: tokenTexts,
                                   tokenSentence: tokenSentence, sentences: sentences, sites: entries)
        try AnalysisIO.writeAtomically(AnalysisIO.encodeJSON(index), to: directory.appendingPathComponent("index.json"))
    }

    /// Reads a recording directory written by ``write(to:)`` or ``StreamingRecordingWriter``.
    /// Counts and per-token steps are read; the spike arrays are derived from them.
    public static func load(from directory: URL) throws(SpikeRunError) -> SpikeRecording {
        let data = try AnalysisIO.read(directory.appendingPathComponent("index.json"))
        let index: RecordingIndex
        do { index = try JSONDecoder().decode(RecordingIndex.self, from: data) } catch {
            throw .format("'\(directory.path)/index.json' is not a spikerun recording index: \(error)")
        }
        guard index.format == "spikerun-recording", index.version == 1 else {
            throw .unsupported("recording format \(index.format) v\(index.version) is not supported")
        }
        guard index.tokens.count == index.tokenCount, index.tokenSentence.count == index.tokenCount,
              index.tokenTexts.count == index.tokenCount else {
            throw .format("index.json token arrays do not have token_count = \(index.tokenCount) entries")
        }
        var rec = SpikeRecording(plan: RecordingPlan(layers: Set(index.sites.map(\.layer)),
                                                     sites: Set(index.sites.compactMap { SpikeSite(name: $0.site) }),
                                                     neurons: .all))
        for s in index.sentences { _ = rec.addSentence(s) }
        rec.restoreTokens(index.tokens, sentence: index.tokenSentence, texts: index.tokenTexts)
        for e in index.sites {
            guard let site = SpikeSite(name: e.site), let enc = SpikeEncoding(name: e.encoding, offset: e.offset) else {
                throw .format("index.json: unknown site '\(e.site)' or encoding '\(e.encoding)'")
            }
            let key = RecordingKey(layer: e.layer, site: site)
            let (counts, cshape) = try NPY.readInt32(directory.appendingPathComponent(e.counts))
            let (steps, sshape) = try NPY.readInt32(directory.appendingPathComponent(e.tokenSteps))
            guard cshape == [e.tokenCount, e.neurons.count], sshape == [e.tokenCount] else {
                throw .format("\(key): array shapes \(cshape), \(sshape) do not match index.json")
            }
            try rec.insert(SiteRecording(key: key, encoding: enc, width: e.width, neuronIndices: e.neurons,
                                         counts: counts, tokenSteps: steps))
        }
        return rec
    }

    mutating func restoreTokens(_ ids: [Int32], sentence: [Int32], texts: [String]) {
        tokens = ids
        tokenSentence = sentence
        tokenTexts = texts
    }
}

/// Records spike counts straight to disk for inputs too long to keep in memory.
///
/// Counts go to raw files under `<directory>/.partial/` as they arrive (only the plan's
/// neurons); ``finish()`` turns them into the same `.npy` + `index.json` layout as
/// ``SpikeRecording/write(to:)`` (streaming, one token at a time) and removes the partial files.
/// Memory use is the token ids and texts plus one token's planes.
public final class StreamingRecordingWriter: SpikeSink {
    /// What is recorded.
    public let plan: RecordingPlan
    /// Output directory.
    public let directory: URL
    private let partial: URL
    private var tokens: [Int32] = []
    private var tokenSentence: [Int32] = []
    private var tokenTexts: [String] = []
    private var sentences: [SentenceInfo] = []
    private var sites: [RecordingKey: SiteState] = [:]
    private var finished = false

    private final class SiteState {
        let encoding: SpikeEncoding
        let width: Int
        let neurons: [Int]
        var tokenCount = 0
        var maxSteps = 0
        let counts: AppendFile
        let steps: AppendFile
        init(encoding: SpikeEncoding, width: Int, neurons: [Int], counts: AppendFile, steps: AppendFile) {
            self.encoding = encoding
            self.width = width
            self.neurons = neurons
            self.counts = counts
            self.steps = steps
        }
    }

    /// Creates the directory (and its `.partial/` work area).
    public init(directory: URL, plan: RecordingPlan) throws(SpikeRunError) {
        self.directory = directory
        self.plan = plan
        partial = directory.appendingPathComponent(".partial")
        try AnalysisIO.makeDirectory(partial)
    }

    /// Adds a sentence and returns its index.
    public func addSentence(_ sentence: SentenceInfo) -> Int {
        sentences.append(sentence)
        return sentences.count - 1
    }

    /// Registers the ids of the next tokens (see ``SpikeSink``).
    public func appendTokens(_ ids: [Int32], sentence: Int? = nil, texts: [String]? = nil) throws(SpikeRunError) {
        if let s = sentence, s < 0 || s >= sentences.count {
            throw .invalidArgument("sentence index \(s) is not one of the \(sentences.count) added")
        }
        if let t = texts, t.count != ids.count {
            throw .invalidArgument("\(t.count) token texts for \(ids.count) token ids")
        }
        let k = min(ids.count, plan.maxTokens.map { max(0, $0 - tokens.count) } ?? ids.count)
        tokens += ids[0..<k]
        tokenSentence += Array(repeating: Int32(sentence ?? -1), count: k)
        tokenTexts += texts.map { Array($0[0..<k]) } ?? Array(repeating: "", count: k)
    }

    /// Records counts for one (layer, site), `T` steps for every token (see
    /// ``SpikeRecording/append(layer:site:counts:width:perTokenT:encoding:)``).
    public func append(layer: Int, site: SpikeSite, counts: UnsafeBufferPointer<Int32>, width: Int,
                       T: Int, encoding: SpikeEncoding = .signMagnitude) throws(SpikeRunError) {
        try appendImpl(layer: layer, site: site, counts: counts, width: width, encoding: encoding) { _ in T }
    }

    /// Records counts for one (layer, site) with one `T` per token.
    public func append(layer: Int, site: SpikeSite, counts: UnsafeBufferPointer<Int32>, width: Int,
                       perTokenT: [Int], encoding: SpikeEncoding = .signMagnitude) throws(SpikeRunError) {
        guard width > 0, counts.count % width == 0, perTokenT.count == counts.count / width else {
            throw .invalidArgument("\(counts.count) counts with width \(width) do not match "
                + "\(perTokenT.count) per-token T values")
        }
        try appendImpl(layer: layer, site: site, counts: counts, width: width, encoding: encoding) { perTokenT[$0] }
    }

    private func appendImpl(layer: Int, site: SpikeSite, counts: UnsafeBufferPointer<Int32>, width: Int,
                            encoding: SpikeEncoding, steps: (Int) -> Int) throws(SpikeRunError) {
        guard !finished else { throw .invalidArgument("the recording was already finished") }
        guard plan.records(layer: layer, site: site) else { return }
        guard width > 0, counts.count % width == 0 else {
            throw .invalidArgument("\(counts.count) counts are not a multiple of width \(width)")
        }
        let key = RecordingKey(layer: layer, site: site)
        let st: SiteState
        if let s = sites[key] {
            guard s.width == width, s.encoding == encoding else {
                throw .invalidArgument("\(key) was recorded with width \(s.width) and \(s.encoding.name) "
                    + "coding; got width \(width) and \(encoding.name)")
            }
            st = s
        } else {
            st = SiteState(encoding: encoding, width: width, neurons: try plan.neurons.indices(width: width),
                           counts: try AppendFile(url: partial.appendingPathComponent(key.stem + ".counts.raw")),
                           steps: try AppendFile(url: partial.appendingPathComponent(key.stem + ".steps.raw")))
            sites[key] = st
        }
        let m = counts.count / width
        let take = min(m, plan.maxTokens.map { max(0, $0 - st.tokenCount) } ?? m)
        guard st.tokenCount + take <= tokens.count else {
            throw .invalidArgument("\(key) got counts for token \(st.tokenCount + take) but only "
                + "\(tokens.count) token ids were registered; call appendTokens first")
        }
        let (sel, ts) = try gatherCounts(counts, tokens: take, width: width, neurons: st.neurons,
                                         encoding: encoding, key: key, steps: steps)
        try st.counts.write(array: sel.map(\.littleEndian))
        try st.steps.write(array: ts.map(\.littleEndian))
        st.tokenCount += take
        st.maxSteps = max(st.maxSteps, Int(ts.max() ?? 0))
    }

    /// Writes the `.npy` files and `index.json`, removes `.partial/`, and returns the index.
    @discardableResult
    public func finish() throws(SpikeRunError) -> RecordingIndex {
        guard !finished else { throw .invalidArgument("the recording was already finished") }
        finished = true
        let n = tokens.count
        try AnalysisIO.writeAtomically(NPY.encode(tokens, shape: [n]), to: directory.appendingPathComponent("tokens.npy"))
        try AnalysisIO.writeAtomically(NPY.encode(tokenSentence, shape: [n]),
                                to: directory.appendingPathComponent("token_sentence.npy"))
        var entries: [RecordingIndex.Site] = []
        for key in sites.keys.sorted() {
            let st = sites[key]!
            st.counts.close()
            st.steps.close()
            let e = siteEntry(key: key, encoding: st.encoding, width: st.width, neurons: st.neurons,
                              tokenCount: st.tokenCount, steps: st.maxSteps)
            let rawCounts = try AnalysisIO.read(st.counts.url, mapped: true), rawSteps = try AnalysisIO.read(st.steps.url)
            var c = Data(NPY.header(type: .int32, shape: [st.tokenCount, st.neurons.count]))
            c.append(rawCounts)
            try AnalysisIO.writeAtomically(c, to: directory.appendingPathComponent(e.counts))
            var s = Data(NPY.header(type: .int32, shape: [st.tokenCount]))
            s.append(rawSteps)
            try AnalysisIO.writeAtomically(s, to: directory.appendingPathComponent(e.tokenSteps))
            let k = st.neurons.count, T = st.maxSteps, enc = st.encoding
            try writeSpikesNPY(to: directory.appendingPathComponent(e.spikes), tokens: st.tokenCount,
                               steps: T, neurons: k) { i, p in
                rawCounts.withUnsafeBytes { raw in
                    for j in 0..<k {
                        let v = Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * (i * k + j), as: Int32.self))
                        enc.encodeUnchecked(v, steps: T, into: p + j, stride: k)
                    }
                }
            }
            unlink(st.counts.url.path)
            unlink(st.steps.url.path)
            entries.append(e)
        }
        let index = RecordingIndex(tokenCount: n, tokens: tokens, tokenTexts: tokenTexts,
                                   tokenSentence: tokenSentence, sentences: sentences, sites: entries)
        try AnalysisIO.writeAtomically(AnalysisIO.encodeJSON(index), to: directory.appendingPathComponent("index.json"))
        rmdir(partial.path)
        return index
    }
}
