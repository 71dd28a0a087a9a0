/// A spiking site of a transformer block (docs/spike-algorithms.md §7). Raw values match the C
/// runtime's `sr_site` (`SR_SITE_A = 0 … SR_SITE_H = 4`).
public enum SpikeSite: Int32, Sendable, Hashable, Codable, CaseIterable, Comparable,
    CustomStringConvertible
{
    /// Input of the q, k and v projections (attention norm output).
    case A = 0
    /// Input of the o projection (attention output).
    case O = 1
    /// Input of the gate and up projections (FFN norm output).
    case F = 2
    /// Input of the down projection (`silu(gate) · up`).
    case D = 3
    /// Input of the output head (output norm); recorded with layer index = number of blocks.
    case H = 4

    /// One-letter name used in files and reports ("A", "O", "F", "D", "H").
    public var name: String { String(describing: self) }

    /// Creates a site from its one-letter name.
    public init?(name: String) {
        guard let s = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = s
    }

    /// Same as ``name``.
    public var description: String {
        switch self {
        case .A: "A"
        case .O: "O"
        case .F: "F"
        case .D: "D"
        case .H: "H"
        }
    }

    /// Orders sites as the C enum does: A, O, F, D, H.
    public static func < (l: SpikeSite, r: SpikeSite) -> Bool { l.rawValue < r.rawValue }
}

/// One recorded (layer, site) pair. Orders by layer, then site.
public struct RecordingKey: Sendable, Hashable, Codable, Comparable, CustomStringConvertible {
    /// Block index (`n_layer` for the head input `H`).
    public var layer: Int
    /// Site inside the block.
    public var site: SpikeSite

    /// Creates a key.
    public init(layer: Int, site: SpikeSite) {
        self.layer = layer
        self.site = site
    }

    /// File stem, e.g. `L03_A`.
    public var stem: String {
        let l = String(layer)
        return "L" + String(repeating: "0", count: max(0, 2 - l.count)) + l + "_" + site.name
    }

    /// `L3.A`-style label.
    public var description: String { "L\(layer).\(site.name)" }

    /// Layer first, then site.
    public static func < (l: RecordingKey, r: RecordingKey) -> Bool {
        (l.layer, l.site.rawValue) < (r.layer, r.site.rawValue)
    }
}

/// Which neurons (activation channels) of a site are kept.
public enum NeuronSelection: Sendable, Hashable, Codable {
    /// Every channel.
    case all
    /// The first `n` channels.
    case first(Int)
    /// `n` channels spread evenly: `i · width / n` for `i = 0 … n−1`.
    case evenlySpaced(Int)
    /// `n` distinct channels drawn with a seeded generator, sorted ascending. The same seed and
    /// width always give the same channels.
    case random(Int, seed: UInt64)
    /// These channels, in this order (each must be `< width`).
    case explicit([Int])

    /// The selected channel indices for an activation of `width` channels.
    public func indices(width: Int) throws(SpikeRunError) -> [Int] {
        switch self {
        case .all: return Array(0..<width)
        case .first(let n): return Array(0..<min(max(n, 0), width))
        case .evenlySpaced(let n):
            let k = min(max(n, 0), width)
            return (0..<k).map { $0 * width / k }
        case .random(let n, let seed):
            let k = min(max(n, 0), width)
            var rng = SeededGenerator(seed: seed)
            var pool = Array(0..<width)
            for i in 0..<k {   // partial Fisher–Yates
                let j = i + Int(rng.next(below: UInt64(width - i)))
                pool.swapAt(i, j)
            }
            return pool[0..<k].sorted()
        case .explicit(let list):
            for j in list where j < 0 || j >= width {
                throw .invalidArgument("neuron index \(j) is outside the site width \(width)")
            }
            return list
        }
    }
}

/// What to record: which layers and sites, how many neurons, how many tokens. Keeps memory
/// bounded: a recording holds at most `tokens × neurons` Int32 counts per recorded site.
public struct RecordingPlan: Sendable, Hashable, Codable {
    /// Layers to record; `nil` = every layer.
    public var layers: Set<Int>? = nil
    /// Sites to record.
    public var sites: Set<SpikeSite> = Set(SpikeSite.allCases)
    /// Neurons kept per site.
    public var neurons: NeuronSelection = .first(64)
    /// Tokens kept; later tokens are dropped. `nil` = no limit (use a streaming writer for
    /// long inputs).
    public var maxTokens: Int? = nil

    /// Creates a plan.
    public init(layers: Set<Int>? = nil, sites: Set<SpikeSite> = Set(SpikeSite.allCases),
                neurons: NeuronSelection = .first(64), maxTokens: Int? = nil) {
        self.layers = layers
        self.sites = sites
        self.neurons = neurons
        self.maxTokens = maxTokens
    }

    /// Whether `(layer, site)` is recorded. The engine can skip work for sites that are not.
    public func records(layer: Int, site: SpikeSite) -> Bool {
        sites.contains(site) && (layers?.contains(layer) ?? true)
    }
}

/// A sentence (or any stimulus unit) that a run of tokens belongs to.
public struct SentenceInfo: Sendable, Hashable, Codable {
    /// The text shown in reports.
    public var text: String
    /// Group label, e.g. `ambiguous` / `unambiguous`; used as the stimulus category for mutual
    /// information and as the group for comparisons.
    public var category: String
    /// Finer label, e.g. `lexical` / `structural`.
    public var subcategory: String?

    /// Creates a sentence record.
    public init(text: String, category: String, subcategory: String? = nil) {
        self.text = text
        self.category = category
        self.subcategory = subcategory
    }
}

/// Spikes of one (layer, site): per token, the selected neurons' counts `n` and the number of
/// steps `T` the token used, plus the encoding that turns them into trains.
///
/// Trains are stored as counts because all four encodings are lossless: the spike array
/// `[token][step][neuron]` is derived on demand by ``spikes(steps:)``. Tokens may use different
/// `T` (mean-step rule); the array uses the site's ``steps`` (largest `T`), which is the same
/// as encoding every token at that `T` (sign-magnitude and two's complement gain leading
/// planes, the rate codes trailing silent steps).
public struct SiteRecording: Sendable, Hashable {
    /// Which (layer, site).
    public let key: RecordingKey
    /// How counts become spikes.
    public let encoding: SpikeEncoding
    /// Channels of the full activation.
    public let width: Int
    /// The recorded channels (indices into `0 ..< width`).
    public let neuronIndices: [Int]
    /// Counts, `(tokens, neurons)` row-major.
    public internal(set) var counts: [Int32] = []
    /// Steps `T` per token.
    public internal(set) var tokenSteps: [Int32] = []

    /// Creates an empty site recording.
    public init(key: RecordingKey, encoding: SpikeEncoding, width: Int, neuronIndices: [Int]) {
        self.key = key
        self.encoding = encoding
        self.width = width
        self.neuronIndices = neuronIndices
    }

    /// Creates a site recording from stored counts (e.g. read back from disk).
    public init(key: RecordingKey, encoding: SpikeEncoding, width: Int, neuronIndices: [Int],
                counts: [Int32], tokenSteps: [Int32]) throws(SpikeRunError) {
        self.init(key: key, encoding: encoding, width: width, neuronIndices: neuronIndices)
        guard counts.count == tokenSteps.count * neuronIndices.count else {
            throw .format("\(key): \(counts.count) counts for \(tokenSteps.count) tokens × "
                + "\(neuronIndices.count) neurons")
        }
        for (i, T) in tokenSteps.enumerated() {
            try encoding.checkSteps(Int(T))
            let r = encoding.range(steps: Int(T))
            for j in 0..<neuronIndices.count where !r.contains(Int64(counts[i * neuronIndices.count + j])) {
                throw .format("\(key): count \(counts[i * neuronIndices.count + j]) of token \(i) "
                    + "does not fit in its \(T) steps")
            }
        }
        self.counts = counts
        self.tokenSteps = tokenSteps
    }

    /// Number of recorded neurons.
    public var neuronCount: Int { neuronIndices.count }
    /// Number of recorded tokens.
    public var tokenCount: Int { tokenSteps.count }
    /// Steps of the spike array: the largest per-token `T` (0 if empty).
    public var steps: Int { Int(tokenSteps.max() ?? 0) }

    /// Count of token `token`, recorded neuron `neuron` (an index into ``neuronIndices``).
    @inlinable
    public func count(token: Int, neuron: Int) -> Int32 { counts[token * neuronIndices.count + neuron] }

    /// The per-token counts of one recorded neuron.
    public func countSeries(neuron: Int) -> [Int32] {
        let n = neuronCount
        return (0..<tokenCount).map { counts[$0 * n + neuron] }
    }

    /// The spike array `[token][step][neuron]` (row-major, values in the encoding's alphabet)
    /// with `steps` steps per token (default: ``steps``).
    public func spikes(steps: Int? = nil) -> [Int8] {
        let T = steps ?? self.steps
        let n = neuronCount
        var out = [Int8](repeating: 0, count: tokenCount * T * n)
        out.withUnsafeMutableBufferPointer { buf in
            for i in 0..<tokenCount { encodeToken(i, steps: T, into: buf.baseAddress! + i * T * n) }
        }
        return out
    }

    /// Writes token `token`'s `[step][neuron]` planes at `steps` steps to `out`.
    func encodeToken(_ token: Int, steps T: Int, into out: UnsafeMutablePointer<Int8>) {
        let n = neuronCount
        for j in 0..<n {
            encoding.encodeUnchecked(counts[token * n + j], steps: T, into: out + j, stride: n)
        }
    }

    /// The spike train of one recorded neuron: tokens concatenated, time index
    /// `token · steps + step` (§9), at the site's ``steps``.
    public func train(neuron: Int) -> [Int8] {
        let T = steps
        var out = [Int8](repeating: 0, count: tokenCount * T)
        out.withUnsafeMutableBufferPointer { buf in
            for i in 0..<tokenCount {
                encoding.encodeUnchecked(count(token: i, neuron: neuron), steps: T,
                                         into: buf.baseAddress! + i * T, stride: 1)
            }
        }
        return out
    }

    /// Appends `tokens` rows of a full-width count matrix, keeping the selected neurons.
    mutating func appendRows(_ rows: UnsafeBufferPointer<Int32>, tokens: Int,
                             steps: (Int) -> Int) throws(SpikeRunError) {
        let (sel, T) = try gatherCounts(rows, tokens: tokens, width: width, neurons: neuronIndices,
                                        encoding: encoding, key: key, steps: steps)
        counts += sel
        tokenSteps += T
    }
}

/// Validates `tokens` rows of full-width counts and returns the selected columns and the
/// per-token steps. Changes nothing and throws on the first count outside its `T` steps.
func gatherCounts(_ rows: UnsafeBufferPointer<Int32>, tokens: Int, width: Int, neurons: [Int],
                  encoding: SpikeEncoding, key: RecordingKey,
                  steps: (Int) -> Int) throws(SpikeRunError) -> ([Int32], [Int32]) {
    var sel = [Int32]()
    sel.reserveCapacity(tokens * neurons.count)
    var ts = [Int32]()
    ts.reserveCapacity(tokens)
    for i in 0..<tokens {
        let T = steps(i)
        try encoding.checkSteps(T)
        let r = encoding.range(steps: T)
        for j in neurons {
            let v = rows[i * width + j]
            guard r.contains(Int64(v)) else {
                throw .invalidArgument("\(key): count \(v) of channel \(j) does not fit in \(T) "
                    + "steps of the \(encoding.name) code; pass the token's real T")
            }
            sel.append(v)
        }
        ts.append(Int32(T))
    }
    return (sel, ts)
}

/// Something the engine can feed counts to: ``SpikeRecording`` (in memory) or
/// ``StreamingRecordingWriter`` (appends to disk).
///
/// Call order per forward pass: ``appendTokens(_:sentence:texts:)`` for the tokens about to be
/// evaluated, then one `append` per recorded (layer, site) with those tokens' counts. Not
/// thread-safe: call from one thread (or serialize).
public protocol SpikeSink {
    /// What is recorded.
    var plan: RecordingPlan { get }
    /// Registers the ids of the next tokens, with the sentence they belong to (an index into
    /// the sentences added by ``addSentence(_:)``, or `nil`) and optional display texts.
    mutating func appendTokens(_ ids: [Int32], sentence: Int?, texts: [String]?) throws(SpikeRunError)
    /// Adds a sentence and returns its index.
    mutating func addSentence(_ sentence: SentenceInfo) -> Int
    /// Records the counts of `counts.count / width` consecutive tokens of one (layer, site).
    mutating func append(layer: Int, site: SpikeSite, counts: UnsafeBufferPointer<Int32>,
                         width: Int, T: Int, encoding: SpikeEncoding) throws(SpikeRunError)
    /// As above with one `T` per token (mean-step rule).
    mutating func append(layer: Int, site: SpikeSite, counts: UnsafeBufferPointer<Int32>,
                         width: Int, perTokenT: [Int], encoding: SpikeEncoding) throws(SpikeRunError)
}

/// An in-memory recording of spike trains, for any set of (layer, site) pairs.
///
/// ```swift
/// var rec = SpikeRecording(plan: RecordingPlan(layers: [0, 1], neurons: .evenlySpaced(32)))
/// let s = rec.addSentence(SentenceInfo(text: "The bank was steep.", category: "ambiguous"))
/// try rec.appendTokens(ids, sentence: s, texts: nil)
/// // inside the engine's linear hook, once per site and batch of tokens:
/// try counts.withUnsafeBufferPointer {
///     try rec.append(layer: 0, site: .A, counts: $0, width: 576, T: 4, encoding: .signMagnitude)
/// }
/// ```
public struct SpikeRecording: SpikeSink, Sendable {
    /// What is recorded.
    public let plan: RecordingPlan
    /// Token ids in evaluation order.
    public internal(set) var tokens: [Int32] = []
    /// Sentence index per token (−1 = none).
    public internal(set) var tokenSentence: [Int32] = []
    /// Display text per token ("" where unknown).
    public internal(set) var tokenTexts: [String] = []
    /// Sentences referenced by ``tokenSentence``.
    public private(set) var sentences: [SentenceInfo] = []
    /// Recorded sites.
    public private(set) var sites: [RecordingKey: SiteRecording] = [:]

    /// Creates an empty recording.
    public init(plan: RecordingPlan = RecordingPlan()) { self.plan = plan }

    /// Recorded keys in layer, site order.
    public var keys: [RecordingKey] { sites.keys.sorted() }
    /// Recorded layers, ascending.
    public var layers: [Int] { Array(Set(sites.keys.map(\.layer))).sorted() }

    /// Category of each token's sentence (`nil` for tokens outside any sentence).
    public var tokenCategories: [String?] {
        tokenSentence.map { $0 >= 0 ? sentences[Int($0)].category : nil }
    }

    /// Adds a sentence and returns its index.
    public mutating func addSentence(_ sentence: SentenceInfo) -> Int {
        sentences.append(sentence)
        return sentences.count - 1
    }

    /// Registers the ids of the next tokens (see ``SpikeSink``). Tokens beyond
    /// `plan.maxTokens` are dropped.
    public mutating func appendTokens(_ ids: [Int32], sentence: Int? = nil,
                                      texts: [String]? = nil) throws(SpikeRunError) {
        if let s = sentence, s < 0 || s >= sentences.count {
            throw .invalidArgument("sentence index \(s) is not one of the \(sentences.count) added")
        }
        if let t = texts, t.count != ids.count {
            throw .invalidArgument("\(t.count) token texts for \(ids.count) token ids")
        }
        let room = plan.maxTokens.map { max(0, $0 - tokens.count) } ?? ids.count
        let k = min(room, ids.count)
        tokens += ids[0..<k]
        tokenSentence += Array(repeating: Int32(sentence ?? -1), count: k)
        tokenTexts += texts.map { Array($0[0..<k]) } ?? Array(repeating: "", count: k)
    }

    /// Records counts for one (layer, site), `T` steps for every token. See
    /// ``append(layer:site:counts:width:perTokenT:encoding:)``.
    public mutating func append(layer: Int, site: SpikeSite, counts: UnsafeBufferPointer<Int32>,
                                width: Int, T: Int,
                                encoding: SpikeEncoding = .signMagnitude) throws(SpikeRunError) {
        try appendImpl(layer: layer, site: site, counts: counts, width: width, encoding: encoding) { _ in T }
    }

    /// Records counts for one (layer, site).
    ///
    /// - Parameters:
    ///   - counts: `(m, width)` row-major counts of the next `m` tokens of this site (the
    ///     tokens registered by ``appendTokens(_:sentence:texts:)`` and not yet recorded here).
    ///   - width: channels of the site's activation (e.g. 576 for `A`, 1536 for `D`).
    ///   - perTokenT: steps per token (`m` values).
    ///   - encoding: the code the engine uses; planes are derived from counts by it (§2).
    /// - Throws: if the site is not in the plan's layers/sites (nothing is recorded then, no
    ///   error: check ``RecordingPlan/records(layer:site:)`` to skip work), on a width or
    ///   encoding change, more tokens than registered, or a count outside its `T` steps.
    public mutating func append(layer: Int, site: SpikeSite, counts: UnsafeBufferPointer<Int32>,
                                width: Int, perTokenT: [Int],
                                encoding: SpikeEncoding = .signMagnitude) throws(SpikeRunError) {
        guard width > 0, counts.count % width == 0, perTokenT.count == counts.count / width else {
            throw .invalidArgument("\(counts.count) counts with width \(width) do not match "
                + "\(perTokenT.count) per-token T values")
        }
        try appendImpl(layer: layer, site: site, counts: counts, width: width, encoding: encoding) {
            perTokenT[$0]
        }
    }

    /// Records spike planes for one (layer, site): `planes` is `(m, T, width)` row-major with
    /// values of `encoding`; counts are decoded from them (for engines that produce planes).
    public mutating func append(layer: Int, site: SpikeSite, planes: UnsafeBufferPointer<Int8>,
                                width: Int, T: Int,
                                encoding: SpikeEncoding = .signMagnitude) throws(SpikeRunError) {
        guard width > 0, T > 0, planes.count % (width * T) == 0 else {
            throw .invalidArgument("\(planes.count) spike values do not form (tokens, \(T), \(width))")
        }
        let m = planes.count / (width * T)
        var counts = [Int32](repeating: 0, count: m * width)
        var train = [Int8](repeating: 0, count: T)
        for i in 0..<m {
            for j in 0..<width {
                for t in 0..<T { train[t] = planes[(i * T + t) * width + j] }
                counts[i * width + j] = try encoding.decode(train)
            }
        }
        try counts.withUnsafeBufferPointer { (c) throws(SpikeRunError) in
            try append(layer: layer, site: site, counts: c, width: width, T: T, encoding: encoding)
        }
    }

    private mutating func appendImpl(layer: Int, site: SpikeSite, counts: UnsafeBufferPointer<Int32>,
                                     width: Int, encoding: SpikeEncoding,
                                     steps: (Int) -> Int) throws(SpikeRunError) {
        guard plan.records(layer: layer, site: site) else { return }
        guard width > 0, counts.count % width == 0 else {
            throw .invalidArgument("\(counts.count) counts are not a multiple of width \(width)")
        }
        let key = RecordingKey(layer: layer, site: site)
        var rec: SiteRecording
        let existed = sites[key] != nil
        if let r = sites[key] {
            guard r.width == width, r.encoding == encoding else {
                throw .invalidArgument("\(key) was recorded with width \(r.width) and \(r.encoding.name) "
                    + "coding; got width \(width) and \(encoding.name)")
            }
            rec = r
        } else {
            rec = SiteRecording(key: key, encoding: encoding, width: width,
                                neuronIndices: try plan.neurons.indices(width: width))
        }
        let m = counts.count / width
        let take = min(m, plan.maxTokens.map { max(0, $0 - rec.tokenCount) } ?? m)
        guard rec.tokenCount + take <= tokens.count else {
            throw .invalidArgument("\(key) got counts for token \(rec.tokenCount + take) but only "
                + "\(tokens.count) token ids were registered; call appendTokens first")
        }
        sites[key] = nil   // keep the arrays uniquely referenced while appending
        defer { if existed || rec.tokenCount > 0 { sites[key] = rec } }   // appendRows changes nothing when it throws
        try rec.appendRows(counts, tokens: take, steps: steps)
    }

    /// Adds a finished site (used when reading recordings back).
    public mutating func insert(_ site: SiteRecording) throws(SpikeRunError) {
        guard site.tokenCount <= tokens.count else {
            throw .format("\(site.key) has \(site.tokenCount) tokens but the recording has \(tokens.count)")
        }
        sites[site.key] = site
    }
}
