import Foundation

/// Turns logits into the next token: repetition penalty, then greedy or
/// top-k → top-p → min-p → temperature → seeded draw (llama.cpp's order).
struct Sampler {
    let parameters: GenerationParameters
    private var rng: SeededGenerator

    init(parameters: GenerationParameters, seed: UInt64) {
        self.parameters = parameters
        self.rng = SeededGenerator(seed: seed)
    }

    mutating func sample(_ logitsIn: [Float], history: ArraySlice<Int32>) -> Int32 {
        var logits = logitsIn
        applyRepeatPenalty(&logits, history: history)
        if parameters.temperature <= 0 { return Int32(Self.argmax(logits)) }

        var candidates = topK(logits, k: parameters.topK)  // sorted by logit, descending
        // Probabilities at temperature 1 decide the top-p and min-p cut-offs (llama.cpp).
        var probs = Self.softmax(candidates.map { $0.logit })
        if parameters.topP < 1 {
            var cum: Float = 0
            var keep = candidates.count
            for i in 0..<probs.count {
                cum += probs[i]
                if cum >= parameters.topP { keep = i + 1; break }
            }
            candidates.removeLast(candidates.count - keep)
            probs.removeLast(probs.count - keep)
        }
        if parameters.minP > 0, let top = probs.first {
            let threshold = top * parameters.minP
            let keep = max(1, probs.prefix { $0 >= threshold }.count)
            candidates.removeLast(candidates.count - keep)
        }
        let final = Self.softmax(candidates.map { $0.logit / parameters.temperature })
        let r = Float(rng.nextDouble())
        var cum: Float = 0
        for (i, p) in final.enumerated() {
            cum += p
            if r < cum { return candidates[i].token }
        }
        return candidates[candidates.count - 1].token
    }

    private func applyRepeatPenalty(_ logits: inout [Float], history: ArraySlice<Int32>) {
        let penalty = parameters.repeatPenalty
        guard penalty != 1, parameters.repeatLastN != 0 else { return }
        let window = parameters.repeatLastN < 0 ? history : history.suffix(parameters.repeatLastN)
        for t in Set(window) where t >= 0 && Int(t) < logits.count {
            let i = Int(t)
            logits[i] = logits[i] > 0 ? logits[i] / penalty : logits[i] * penalty
        }
    }

    /// First index of the largest value (ties go to the lower id, as llama.cpp's greedy sampler).
    static func argmax(_ v: [Float]) -> Int {
        var best = 0
        for i in 1..<v.count where v[i] > v[best] { best = i }
        return best
    }

    struct Candidate { var token: Int32; var logit: Float }

    /// The k largest logits in descending order (all when k <= 0).
    func topK(_ logits: [Float], k: Int) -> [Candidate] {
        let all = logits.indices
        if k <= 0 || k >= logits.count {
            return all.map { Candidate(token: Int32($0), logit: logits[$0]) }
                .sorted { $0.logit > $1.logit || ($0.logit == $1.logit && $0.token < $1.token) }
        }
        // Keep a small sorted buffer: k is tens, the vocabulary tens of thousands.
        var best: [Candidate] = []
        best.reserveCapacity(k + 1)
        for i in all {
            let v = logits[i]
            if best.count == k, let last = best.last, v <= last.logit { continue }
            var lo = 0, hi = best.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if best[mid].logit >= v { lo = mid + 1 } else { hi = mid }
            }
            best.insert(Candidate(token: Int32(i), logit: v), at: lo)
            if best.count > k { best.removeLast() }
        }
        return best
    }

    static func softmax(_ x: [Float]) -> [Float] {
        guard let m = x.max() else { return [] }
        var e = x.map { Float(exp(Double($0 - m))) }
        let s = e.reduce(0, +)
        for i in e.indices { e[i] /= s }
        return e
    }
}
