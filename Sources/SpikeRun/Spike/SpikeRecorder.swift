import CSpikeRun

/// Feeds the spike runtime's per-token spike counts into a ``SpikeSink`` (an in-memory
/// ``SpikeRecording`` or a ``StreamingRecordingWriter``), keeping only what the sink's
/// ``RecordingPlan`` asks for (layers, sites, neurons, tokens).
///
/// The C runtime calls back once per encoded token and site (`sr_spike_net_set_recorder`);
/// the callback only reads the counts, so recording never changes what the model computes.
/// Use it through ``Session/record(_:into:sentence:texts:allLogits:)``:
///
/// ```swift
/// let recorder = SpikeRecorder(sink: SpikeRecording(plan: RecordingPlan(layers: [0, 5], neurons: .first(32))))
/// let s = recorder.addSentence(SentenceInfo(text: text, category: "ambiguous"))
/// _ = try await session.record(tokens, into: recorder, sentence: s)
/// let recording = recorder.recording!
/// ```
///
/// Not thread-safe: a recorder belongs to one session at a time (the session's evaluation
/// calls it on the evaluating thread). Marked `Sendable` only so that it can be handed to
/// the `Session` actor.
public final class SpikeRecorder: @unchecked Sendable {
    /// Where counts go.
    public private(set) var sink: any SpikeSink
    /// Encoded tokens seen (per site, before the plan's filtering), for progress and tests.
    public private(set) var callbacks = 0
    private var failure: SpikeRunError?
    /// Per C site index (layer * 4 + site, then H): whether the site uses the max rule, whose
    /// binary code has offset z = T / 2 (the mean rule's has z = 0).
    var maxRuleSites: [Bool] = []
    var nLayer = 0

    /// Creates a recorder over `sink`.
    public init(sink: any SpikeSink) { self.sink = sink }

    /// The in-memory recording, when the sink is a ``SpikeRecording``.
    public var recording: SpikeRecording? { sink as? SpikeRecording }

    /// What is recorded.
    public var plan: RecordingPlan { sink.plan }

    /// Adds a sentence to the sink and returns its index.
    public func addSentence(_ sentence: SentenceInfo) -> Int { sink.addSentence(sentence) }

    /// Finishes a streaming sink (writes its `.npy` files and `index.json`).
    @discardableResult
    public func finish() throws(SpikeRunError) -> RecordingIndex? {
        guard let w = sink as? StreamingRecordingWriter else { return nil }
        return try w.finish()
    }

    /// Registers the tokens about to be evaluated (before any of their counts arrive).
    func begin(tokens: [Int32], sentence: Int?, texts: [String]?, nLayer: Int,
               sites: [SpikeSiteSetting]) throws(SpikeRunError) {
        failure = nil
        self.nLayer = nLayer
        maxRuleSites = sites.map { $0.rule == .max }
        try sink.appendTokens(tokens, sentence: sentence, texts: texts)
    }

    /// Throws the first error a callback met (a count the sink rejected, a width change).
    func end() throws(SpikeRunError) {
        if let f = failure {
            failure = nil
            throw f
        }
    }

    /// The encoding behind the C `encoding` value of (layer, site) at `T` steps.
    func encoding(_ c: Int32, layer: Int, site: SpikeSite, T: Int) -> SpikeEncoding? {
        switch c {
        case 0: return .signMagnitude
        case 1: return .twosComplement
        case 2: return .ternary
        case 3:
            let idx = site == .H ? nLayer * 4 : layer * 4 + Int(site.rawValue)
            let isMax = idx < maxRuleSites.count && maxRuleSites[idx]
            return .binary(offset: isMax ? Int32(T / 2) : 0)
        case 4: return .naf
        default: return nil
        }
    }

    /// One encoded token of one site (called by the C runtime).
    func receive(layer: Int32, site: Int32, counts: UnsafePointer<Int32>, n: Int32, T: Int32, encoding: Int32) {
        callbacks += 1
        guard failure == nil, let s = SpikeSite(rawValue: site) else { return }  // Q/P sites are not recorded
        let l = Int(layer)
        guard sink.plan.records(layer: l, site: s) else { return }
        guard let enc = self.encoding(encoding, layer: l, site: s, T: Int(T)) else {
            failure = .unsupported("L\(l).\(s.name): unknown spike encoding \(encoding)")
            return
        }
        do throws(SpikeRunError) {
            try sink.append(layer: l, site: s, counts: UnsafeBufferPointer(start: counts, count: Int(n)),
                            width: Int(n), T: Int(T), encoding: enc)
        } catch {
            failure = error
        }
    }
}

extension SpikeRuntime {
    /// Installs `recorder` (or removes it with nil). The runtime keeps it alive while installed.
    func setRecorder(_ recorder: SpikeRecorder?) {
        recorderBox.recorder = recorder
        guard let recorder else {
            sr_spike_net_set_recorder(net, nil, nil)
            return
        }
        sr_spike_net_set_recorder(net, { user, layer, site, counts, n, T, encoding in
            guard let user, let counts else { return }
            Unmanaged<SpikeRecorder>.fromOpaque(user).takeUnretainedValue()
                .receive(layer: layer, site: site, counts: counts, n: n, T: T, encoding: encoding)
        }, Unmanaged.passUnretained(recorder).toOpaque())
    }
}

/// Holds the installed recorder of a ``SpikeRuntime`` (keeps it alive while the C side
/// points at it).
final class SpikeRecorderSlot {
    var recorder: SpikeRecorder?
}
