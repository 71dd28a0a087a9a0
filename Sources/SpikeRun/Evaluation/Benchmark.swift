import CSpikeRun
import Foundation

/// llama-bench style throughput measurement: prompt processing of `promptTokens` tokens from an
/// empty cache (pp) and generation of `generateTokens` tokens one at a time (tg), repeated.
public struct BenchmarkResult: Sendable, Hashable, Codable {
    public struct Test: Sendable, Hashable, Codable {
        /// "pp512" or "tg128", as llama-bench names them.
        public var name: String
        public var tokens: Int
        /// Tokens per second of each repetition.
        public var samples: [Double]
        public var median: Double
        public var mean: Double
        public var standardDeviation: Double
        public var minimum: Double
        public var maximum: Double

        init(name: String, tokens: Int, samples: [Double]) {
            self.name = name
            self.tokens = tokens
            self.samples = samples
            let sorted = samples.sorted()
            let n = sorted.count
            median = n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2
            mean = samples.reduce(0, +) / Double(n)
            let m = mean
            standardDeviation = n > 1 ? (samples.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(n - 1)).squareRoot() : 0
            minimum = sorted.first ?? 0
            maximum = sorted.last ?? 0
        }
    }

    public var model: String
    public var backend: String
    /// "dense" or "spike": which kernels computed the linear layers.
    public var path: String
    public var threads: Int
    /// NUMA policy of the thread pool (off, distribute, isolate, numactl) and its layout, e.g.
    /// "2 threads, numa distribute (1 node), workers pinned to cpus 1".
    public var numaPolicy: String
    public var pool: String
    public var activationMode: String
    public var tests: [Test]
    /// Peak resident set size of the process (VmHWM), bytes.
    public var peakRSSBytes: Int
    /// Bytes of weights in the model file.
    public var weightBytes: Int
}

public enum Benchmark {
    public static func run(model: Model, promptTokens: [Int], generateTokens: [Int],
                           repetitions: Int, mode: RunMode = .model,
                           progress: (@Sendable (String, Int, Int) -> Void)? = nil) throws(SpikeRunError) -> BenchmarkResult {
        guard repetitions > 0 else { throw .invalidArgument("repetitions must be positive") }
        let longest = max(promptTokens.max() ?? 0, generateTokens.max() ?? 0, 1)
        let engine = try Engine(model: model, contextLength: longest + 1, batchSize: 512, mode: mode)
        // Random in-vocabulary tokens, as llama-bench uses.
        var rng = SeededGenerator(seed: 42)
        func randomTokens(_ n: Int) -> [Int32] {
            (0..<n).map { _ in Int32(rng.next() % UInt64(model.config.nVocab)) }
        }
        var tests: [BenchmarkResult.Test] = []
        for n in promptTokens where n > 0 {
            let tokens = randomTokens(n)
            _ = try engine.eval(Array(tokens.prefix(min(n, 16))), at: 0)  // warm-up
            var samples: [Double] = []
            for r in 0..<repetitions {
                let t0 = DispatchTime.now().uptimeNanoseconds
                _ = try engine.eval(tokens, at: 0)
                samples.append(Double(n) / (Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9))
                progress?("pp\(n)", r + 1, repetitions)
            }
            tests.append(.init(name: "pp\(n)", tokens: n, samples: samples))
        }
        for n in generateTokens where n > 0 {
            let tokens = randomTokens(n)
            _ = try engine.eval([tokens[0]], at: 0)  // warm-up
            var samples: [Double] = []
            for r in 0..<repetitions {
                let t0 = DispatchTime.now().uptimeNanoseconds
                for i in 0..<n { _ = try engine.eval([tokens[i]], at: i) }
                samples.append(Double(n) / (Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9))
                progress?("tg\(n)", r + 1, repetitions)
            }
            tests.append(.init(name: "tg\(n)", tokens: n, samples: samples))
        }
        var desc = [CChar](repeating: 0, count: 256)
        sr_pool_describe(engine.pool, &desc, Int32(desc.count))
        return BenchmarkResult(
            model: model.info.path, backend: model.options.backend.name, path: engine.spike == nil ? "dense" : "spike",
            threads: Int(sr_pool_threads(engine.pool)),
            numaPolicy: String(cString: sr_numa_policy_name(sr_pool_numa_policy(engine.pool))),
            pool: String(decoding: desc.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self),
            activationMode: model.options.activationMode.rawValue, tests: tests,
            peakRSSBytes: peakResidentBytes(), weightBytes: model.info.weightBytes)
    }

    /// VmHWM from /proc/self/status (0 where unavailable).
    public static func peakResidentBytes() -> Int {
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in s.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let kb = line.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
            return kb * 1024
        }
        return 0
    }
}
