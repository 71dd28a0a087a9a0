import CSpikeRun
import Foundation
import Testing
@testable import SpikeRun

// NUMA awareness of the CPU backend (csrc/cpu/sr-numa.c, sr-pool.c): topology discovery, the
// injectable fake topology (SPIKERUN_FAKE_NUMA / fake_nodes), partitioning, placement and
// bit-identical results for 1, 2 and 4 nodes and 1...N threads, dense and spike paths.

/// Random rows of a ggml block type (Q4_1 or Q8_0) with realistic fp16 scales.
private func randomRows(_ t: sr_type, nOut: Int, nIn: Int, _ rng: inout SplitMix64) -> [UInt8] {
    let rb = sr_row_bytes(t, Int64(nIn)), bb = Int(sr_type_block_bytes(t))
    var b = [UInt8](repeating: 0, count: rb * nOut)
    for i in 0..<b.count { b[i] = UInt8(truncatingIfNeeded: rng.next()) }
    for blk in 0..<(b.count / bb) {
        let o = blk * bb
        let d = sr_fp32_to_fp16(0.001 + 0.02 * rng.unit())
        b[o] = UInt8(d & 0xff); b[o + 1] = UInt8(d >> 8)
        if t == SR_TYPE_Q4_1 {
            let m = sr_fp32_to_fp16(-0.1 * rng.unit())
            b[o + 2] = UInt8(m & 0xff); b[o + 3] = UInt8(m >> 8)
        }
    }
    return b
}

/// NUMA layouts the tests sweep: (threads, fake nodes); 0 fake nodes = policy off.
private func layouts(maxThreads: Int) -> [(Int, Int)] {
    var out: [(Int, Int)] = []
    for t in 1...maxThreads { for n in [0, 1, 2, 4] where n <= max(t, 1) || n == 0 { out.append((t, n)) } }
    return out
}

private let maxTestThreads = max(4, allowedCPUCount)

@Suite("CPU backend: NUMA")
struct NUMATests {
    @Test("the real topology covers every allowed CPU once; policy names round-trip")
    func realTopology() throws {
        let t = try #require(sr_numa_topology_create(-1))
        defer { sr_numa_topology_free(t) }
        #expect(!sr_numa_topology_is_fake(t))
        let nodes = Int(sr_numa_topology_nodes(t))
        #expect(nodes >= 1)
        var all: [Int32] = []
        for n in 0..<nodes {
            var cpus = [Int32](repeating: -1, count: 4096)
            let k = Int(sr_numa_topology_node_cpus(t, Int32(n), &cpus, 4096))
            #expect(k >= 1, "node \(n) has no CPU")
            all += cpus.prefix(k)
            if sr_numa_supported() { #expect(sr_numa_topology_os_node(t, Int32(n)) >= 0) }
        }
        #expect(Set(all).count == all.count, "a CPU is listed on two nodes")
        #expect(all.count == allowedCPUCount)
        for (i, name) in ["off", "distribute", "isolate", "numactl"].enumerated() {
            var p: Int32 = -1
            #expect(sr_numa_policy_from_name(name, &p) == SR_OK && p == Int32(i))
            #expect(String(cString: sr_numa_policy_name(Int32(i))) == name)
        }
        var p: Int32 = -1
        #expect(sr_numa_policy_from_name("interleave", &p) == SR_ERR_INVALID_ARG)
        #expect(String(cString: sr_last_error()).contains("unknown NUMA policy"))
    }

    @Test("a fake topology of N nodes splits the real CPUs into N blocks (or cycles them)", arguments: [1, 2, 3, 4, 8])
    func fakeTopology(nodes: Int) throws {
        let t = try #require(sr_numa_topology_create(Int32(nodes)))
        defer { sr_numa_topology_free(t) }
        #expect(sr_numa_topology_is_fake(t))
        #expect(Int(sr_numa_topology_nodes(t)) == nodes)
        let real = sr_numa_topology_create(-1)
        defer { sr_numa_topology_free(real) }
        var allowed: [Int32] = []
        for n in 0..<sr_numa_topology_nodes(real) {
            var c = [Int32](repeating: -1, count: 4096)
            let k = Int(sr_numa_topology_node_cpus(real, n, &c, 4096))
            allowed += c.prefix(k)
        }
        allowed.sort()
        var listed: [Int32] = []
        for n in 0..<nodes {
            var c = [Int32](repeating: -1, count: 4096)
            let k = Int(sr_numa_topology_node_cpus(t, Int32(n), &c, 4096))
            #expect(k >= 1)
            #expect(sr_numa_topology_os_node(t, Int32(n)) == -1)
            if allowed.count >= nodes {
                #expect(Array(c.prefix(k)) == Array(allowed[(n * allowed.count / nodes)..<((n + 1) * allowed.count / nodes)]))
            } else {
                #expect(Array(c.prefix(k)) == [allowed[n % allowed.count]])
            }
            listed += c.prefix(k)
        }
        #expect(Set(listed) == Set(allowed))
    }

    @Test("fake nodes: threads are grouped by node, pinned to that node's CPUs and run there")
    func fakePlacementOfThreads() throws {
        let cpus = allowedCPUCount
        for nodes in [1, 2, 4] {
            for threads in 1...max(cpus, 2) {
                var prm = poolParams(threads: threads, numa: SR_NUMA_DISTRIBUTE, fakeNodes: nodes)
                let pool = try #require(sr_pool_create_ex(&prm))
                defer { sr_pool_free(pool) }
                #expect(sr_pool_numa_is_fake(pool) && sr_pool_numa_policy(pool) == Int32(SR_NUMA_DISTRIBUTE.rawValue))
                #expect(Int(sr_pool_nodes(pool)) == min(nodes, threads))
                let topo = sr_numa_topology_create(Int32(nodes))
                defer { sr_numa_topology_free(topo) }
                let probe = CPUProbe(slots: threads)
                let ctx = Unmanaged.passUnretained(probe).toOpaque()
                for _ in 0..<20 { sr_pool_run(pool, cpuProbeFn, ctx) }
                for i in 1..<threads {
                    let node = sr_pool_thread_node(pool, Int32(i)), c = sr_pool_thread_cpu(pool, Int32(i))
                    if c < 0 { continue }   // not pinned (more threads than CPUs)
                    var nc = [Int32](repeating: -1, count: 4096)
                    let k = Int(sr_numa_topology_node_cpus(topo, node, &nc, 4096))
                    #expect(nc.prefix(k).contains(c), "thread \(i) of fake node \(node) pinned to cpu \(c)")
                    #expect(probe.cpu[i * CPUProbe.stride] == c, "thread \(i) ran on cpu \(probe.cpu[i * CPUProbe.stride])")
                }
            }
        }
    }

    @Test("placement: node-local allocation and page migration calls succeed; pages report a node")
    func placement() throws {
        var prm = poolParams(threads: 2, numa: SR_NUMA_DISTRIBUTE)
        let pool = try #require(sr_pool_create_ex(&prm))
        defer { sr_pool_free(pool) }
        let bytes = 1 << 20
        for n in 0..<sr_pool_nodes(pool) {
            let m = try #require(sr_numa_alloc(pool, n, bytes))
            memset(m, 1, bytes)
            #expect(sr_numa_place(pool, n, m, bytes) == SR_OK)
            let node = sr_numa_node_of_memory(m)
            if sr_numa_supported() {
                #expect(node == sr_pool_node_os_node(pool, n), "memory of node \(n) is on kernel node \(node)")
            } else {
                #expect(node == -1)
            }
            sr_numa_free(m, bytes)
        }
        #expect(sr_numa_place(pool, 99, nil, 0) == SR_ERR_INVALID_ARG)
        // Rows of a matrix: every node's block is placed (a no-op on one real node).
        var rng = SplitMix64(seed: 1)
        let w = randomRows(SR_TYPE_Q4_1, nOut: 256, nIn: 576, &rng)
        w.withUnsafeBytes { wp in
            #expect(sr_matmul_place(pool, SR_TYPE_Q4_1, wp.baseAddress, 576, 256) == SR_OK)
        }
    }

    @Test("sr_matmul and sr_matmul_multi: every layout (threads x fake nodes) equals the single-threaded result")
    func matmulLayouts() {
        var rng = SplitMix64(seed: 99)
        for t in [SR_TYPE_Q4_1, SR_TYPE_Q8_0] {
            let nIn = 192, outs = [45, 128, 16]
            let ws = outs.map { randomRows(t, nOut: $0, nIn: nIn, &rng) }
            for nTok in [1, 2, 5] {
                let x = (0..<(nIn * nTok)).map { _ in rng.gauss() }
                let arb = sr_act_row_bytes(t, Int64(nIn))
                var act = [UInt8](repeating: 0, count: arb * nTok)
                act.withUnsafeMutableBytes { ap in x.withUnsafeBufferPointer { xp in
                    for k in 0..<nTok {
                        sr_quantize_act_row(t, xp.baseAddress! + k * nIn, ap.baseAddress! + k * arb, Int64(nIn))
                    }
                } }
                func single(_ i: Int, _ pool: OpaquePointer?) -> [Float] {
                    var y = [Float](repeating: .nan, count: outs[i] * nTok)
                    ws[i].withUnsafeBytes { wp in act.withUnsafeBytes { ap in y.withUnsafeMutableBufferPointer {
                        sr_matmul(pool, t, wp.baseAddress, Int64(nIn), Int64(outs[i]), ap.baseAddress, Int64(nTok), $0.baseAddress)
                    } } }
                    return y
                }
                let ref = (0..<outs.count).map { single($0, nil) }
                for (threads, fake) in layouts(maxThreads: maxTestThreads) {
                    var prm = poolParams(threads: threads, numa: fake > 0 ? SR_NUMA_DISTRIBUTE : SR_NUMA_OFF, fakeNodes: fake)
                    let pool = sr_pool_create_ex(&prm)
                    defer { sr_pool_free(pool) }
                    for i in 0..<outs.count {
                        #expect(single(i, pool).map(\.bitPattern) == ref[i].map(\.bitPattern),
                                "type \(t.rawValue) n_tok \(nTok) layout \(threads)x\(fake) matrix \(i)")
                    }
                    // all three in one dispatch
                    var ys = outs.map { [Float](repeating: .nan, count: $0 * nTok) }
                    let wcopies = ws.map { w -> UnsafeMutableRawPointer in
                        let m = UnsafeMutableRawPointer.allocate(byteCount: w.count, alignment: 64)
                        w.withUnsafeBytes { m.copyMemory(from: $0.baseAddress!, byteCount: w.count) }
                        return m
                    }
                    let yps = ys.indices.map { i in UnsafeMutablePointer<Float>.allocate(capacity: ys[i].count) }
                    act.withUnsafeBytes { ap in
                        let types = [sr_type](repeating: t, count: outs.count)
                        let wps: [UnsafeRawPointer?] = wcopies.map { UnsafeRawPointer($0) }
                        let aps: [UnsafeRawPointer?] = Array(repeating: ap.baseAddress, count: outs.count)
                        let nOuts = outs.map { Int64($0) }
                        let yopt: [UnsafeMutablePointer<Float>?] = yps
                        sr_matmul_multi(pool, Int32(outs.count), types, wps, Int64(nIn), nOuts, aps, Int64(nTok), yopt)
                    }
                    for i in ys.indices {
                        ys[i] = Array(UnsafeBufferPointer(start: yps[i], count: ys[i].count))
                        #expect(ys[i].map(\.bitPattern) == ref[i].map(\.bitPattern), "multi: layout \(threads)x\(fake) matrix \(i)")
                        yps[i].deallocate()
                        wcopies[i].deallocate()
                    }
                }
            }
        }
    }

    @Test("sr_vec_dot_f16_rows equals one sr_vec_dot(F16) per row bit for bit, at every SIMD level")
    func f16Rows() {
        var rng = SplitMix64(seed: 5)
        let saved = sr_simd_level()
        defer { sr_set_simd_level(saved) }
        for level: Int32 in (0...3).filter({ sr_simd_level_available($0) }) {
            sr_set_simd_level(level)
            for n in [1, 31, 32, 64, 65, 96, 200, 512] {
                for rows in [1, 2, 3, 7] {
                    let stride = n + 5
                    let x = (0..<(rows * stride)).map { _ in sr_fp32_to_fp16(rng.gauss()) }
                    let y = (0..<n).map { _ in sr_fp32_to_fp16(rng.gauss()) }
                    var out = [Float](repeating: .nan, count: rows)
                    sr_vec_dot_f16_rows(Int64(n), x, stride, Int64(rows), y, &out)
                    for r in 0..<rows {
                        let ref = x.withUnsafeBufferPointer { xp in
                            sr_vec_dot(SR_TYPE_F16, Int64(n), xp.baseAddress! + r * stride, y)
                        }
                        #expect(out[r].bitPattern == ref.bitPattern, "level \(level) n \(n) rows \(rows) row \(r)")
                    }
                }
            }
        }
    }

    /// Logits of a 20-token prompt (all positions: more than one spike batch of 16) and three
    /// decode steps on the real model, under a given pool layout.
    private func logits(model: Model, mode: RunMode, threads: Int, fakeNodes: Int, batch: Int = 64) throws -> [[Float]] {
        sr_pool_set_thread_defaults(true, Int32((fakeNodes > 0 ? SR_NUMA_DISTRIBUTE : SR_NUMA_OFF).rawValue),
                                    Int32(fakeNodes), true)
        defer { sr_pool_set_thread_defaults(false, 0, 0, true) }
        let m = try Model(file: model.file, options: .init(threads: threads))
        let engine = try Engine(model: m, contextLength: 32, batchSize: batch, mode: mode)
        #expect(Int(sr_pool_threads(engine.pool)) == threads)
        #expect(Int(sr_pool_nodes(engine.pool)) == (fakeNodes == 0 ? 1 : min(fakeNodes, threads)))
        let prompt: [Int32] = [1, 9690, 28, 940, 314, 253, 1345, 30, 260, 4711, 282, 5248, 314, 216, 3006, 30, 378, 1032, 3458, 28]
        var out = [try engine.eval(prompt, at: 0, allLogits: true)]
        var next = Int32(Sampler.argmax(Array(out[0].suffix(m.config.nVocab))))
        for step in 0..<3 {
            let l = try engine.eval([next], at: prompt.count + step)
            out.append(l)
            next = Int32(Sampler.argmax(l))
        }
        return out
    }

    @Test("dense path: identical logits for 1...N threads and 1, 2, 4 fake nodes (real model)")
    func denseBitIdentical() throws {
        let model = try SharedModel.get()
        let ref = try logits(model: model, mode: .dense, threads: 1, fakeNodes: 0)
        for (threads, fake) in layouts(maxThreads: maxTestThreads) where !(threads == 1 && fake == 0) {
            let l = try logits(model: model, mode: .dense, threads: threads, fakeNodes: fake)
            #expect(l.map { $0.map(\.bitPattern) } == ref.map { $0.map(\.bitPattern) }, "\(threads) threads, \(fake) fake nodes")
        }
    }

    @Test("spike path (k = 8): identical logits for 1...N threads and 1, 2, 4 fake nodes; batches of 4 == one batch of 20")
    func spikeBitIdentical() throws {
        let model = try SharedModel.get()
        let mode = RunMode.spike(SpikeSetup(config: .uniform(k: 8, nLayer: model.config.nLayer)))
        // Batches of 4, not 1: the float attention (like llama.cpp's) sums in another order for a
        // single token; every spike kernel result is per token and must not depend on batching.
        let ref = try logits(model: model, mode: mode, threads: 1, fakeNodes: 0, batch: 4)
        for (threads, fake) in layouts(maxThreads: maxTestThreads) {
            let l = try logits(model: model, mode: mode, threads: threads, fakeNodes: fake)
            #expect(l.map { $0.map(\.bitPattern) } == ref.map { $0.map(\.bitPattern) }, "\(threads) threads, \(fake) fake nodes")
        }
    }
}

/// Which CPU each thread ran on last.
private final class CPUProbe {
    static let stride = 16
    let cpu: UnsafeMutablePointer<Int32>
    let slots: Int
    init(slots: Int) {
        self.slots = slots
        cpu = .allocate(capacity: slots * Self.stride)
        cpu.initialize(repeating: -2, count: slots * Self.stride)
    }
    deinit { cpu.deallocate() }
}

private let cpuProbeFn: sr_pool_fn = { ctx, ith, _ in
    let p = Unmanaged<CPUProbe>.fromOpaque(ctx!).takeUnretainedValue()
    if ith >= 0 && Int(ith) < p.slots { p.cpu[Int(ith) * CPUProbe.stride] = sr_cpu_current() }
}
