import CSpikeRun

/// Where an `EngineTap` observes the forward pass (sr_tap_point).
public enum TapPoint: Int, Sendable, Hashable, CaseIterable {
    /// Input of q/k/v (site A), of o (O), of gate/up (F), of down (D), of the output head (H).
    case siteA = 0, siteO, siteF, siteD, siteH
    /// Output of the V projection, (n_tok, n_head_kv * head_dim).
    case v
    /// Residual stream entering a block, (n_tok, n_embd).
    case block
}

/// Observes activations during evaluation (calibration, analysis) through `sr_engine_set_tap`.
///
/// The handler is called synchronously on the evaluating thread with
/// `(layer, point, rows, nTok, dim)`; `rows` (nTok × dim, row-major) is only valid during the
/// call and must not be kept. The head input arrives with `layer == n_layer`.
/// Keep the tap alive while it is installed (`Session.removeTap()` before releasing it).
public final class EngineTap: @unchecked Sendable {
    public typealias Handler = (_ layer: Int, _ point: TapPoint, _ rows: UnsafeBufferPointer<Float>,
                                _ nTok: Int, _ dim: Int) -> Void
    let handler: Handler

    public init(_ handler: @escaping Handler) { self.handler = handler }

    /// The C trampoline: `user` is an unretained pointer to the tap.
    static let callback: sr_tap_fn = { user, layer, point, data, nTok, dim in
        guard let user, let data, let p = TapPoint(rawValue: Int(point.rawValue)) else { return }
        let tap = Unmanaged<EngineTap>.fromOpaque(user).takeUnretainedValue()
        tap.handler(Int(layer), p, UnsafeBufferPointer(start: data, count: Int(nTok) * Int(dim)),
                    Int(nTok), Int(dim))
    }
}

extension Engine {
    /// Installs `tap` (nil removes it). The caller keeps `tap` alive while installed.
    func setTap(_ tap: EngineTap?) {
        if let tap {
            sr_engine_set_tap(handle, EngineTap.callback, Unmanaged.passUnretained(tap).toOpaque())
        } else {
            sr_engine_set_tap(handle, nil, nil)
        }
    }
}

extension Session {
    /// Observes every following evaluation with `tap` until `removeTap()`; the caller keeps
    /// `tap` alive meanwhile.
    public func installTap(_ tap: EngineTap) { engine.setTap(tap) }

    /// Stops observing.
    public func removeTap() { engine.setTap(nil) }
}
