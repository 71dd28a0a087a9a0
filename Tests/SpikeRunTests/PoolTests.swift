import CSpikeRun
import Foundation
import Testing

// Tests of the CPU backend's thread pool (csrc/cpu/sr-pool.c): pinning, NUMA grouping of the
// threads, row partitions, clean shutdown. NUMA topologies and bit-identical kernels across
// layouts are in NUMATests.swift.

/// Per-thread records; slot ith is written by thread ith only (one cache line each).
private final class ThreadRecord {
    static let stride = 16
    let runs: UnsafeMutablePointer<Int32>
    let cpu: UnsafeMutablePointer<Int32>
    let nth: UnsafeMutablePointer<Int32>
    let slots: Int
    init(slots: Int) {
        self.slots = slots
        runs = .allocate(capacity: slots * Self.stride)
        runs.initialize(repeating: 0, count: slots * Self.stride)
        cpu = .allocate(capacity: slots * Self.stride)
        cpu.initialize(repeating: -2, count: slots * Self.stride)
        nth = .allocate(capacity: slots * Self.stride)
        nth.initialize(repeating: 0, count: slots * Self.stride)
    }
    deinit { runs.deallocate(); cpu.deallocate(); nth.deallocate() }
    func runs(_ i: Int) -> Int32 { runs[i * Self.stride] }
    func cpu(_ i: Int) -> Int32 { cpu[i * Self.stride] }
    func nth(_ i: Int) -> Int32 { nth[i * Self.stride] }
}

private let recordFn: sr_pool_fn = { ctx, ith, nth in
    let r = Unmanaged<ThreadRecord>.fromOpaque(ctx!).takeUnretainedValue()
    guard ith >= 0 && Int(ith) < r.slots else { return }
    let i = Int(ith) * ThreadRecord.stride
    r.runs[i] += 1
    r.cpu[i] = sr_cpu_current()
    r.nth[i] = nth
}

func poolParams(threads: Int, numa: sr_numa_policy = SR_NUMA_OFF, fakeNodes: Int = 0, pin: Bool = true) -> sr_pool_params {
    sr_pool_params(n_threads: Int32(threads), numa: Int32(numa.rawValue), fake_nodes: Int32(fakeNodes), pin: pin)
}

/// CPUs this process may run on (what the pool pins to).
var allowedCPUCount: Int {
    let t = sr_numa_topology_create(-1)
    defer { sr_numa_topology_free(t) }
    var all = Set<Int32>()
    for n in 0..<sr_numa_topology_nodes(t) {
        var cpus = [Int32](repeating: -1, count: 4096)
        let k = sr_numa_topology_node_cpus(t, n, &cpus, 4096)
        all.formUnion(cpus.prefix(Int(k)))
    }
    return all.count
}

@Suite("CPU backend: thread pool")
struct PoolTests {
    @Test("every ith runs exactly once per run: 1...5 threads, policies off and distribute, pinned or not")
    func runsOnce() {
        for threads in 1...5 {
            for (numa, fake) in [(SR_NUMA_OFF, 0), (SR_NUMA_DISTRIBUTE, 2), (SR_NUMA_DISTRIBUTE, 4)] {
                for pin in [true, false] {
                    var prm = poolParams(threads: threads, numa: numa, fakeNodes: fake, pin: pin)
                    guard let pool = sr_pool_create_ex(&prm) else { Issue.record("sr_pool_create_ex failed"); continue }
                    defer { sr_pool_free(pool) }
                    #expect(sr_pool_threads(pool) == Int32(threads))
                    let rec = ThreadRecord(slots: 8)
                    let ctx = Unmanaged.passUnretained(rec).toOpaque()
                    for r in 0..<400 {
                        sr_pool_run(pool, recordFn, ctx)
                        if r == 200 { usleep(3000) }   // workers fall asleep: the futex wake path
                    }
                    for i in 0..<8 {
                        #expect(rec.runs(i) == (i < threads ? 400 : 0), "threads \(threads) fake \(fake) pin \(pin) ith \(i)")
                        if i < threads { #expect(rec.nth(i) == Int32(threads)) }
                    }
                }
            }
        }
    }

    @Test("pinned workers run on the CPU the pool reports; oversubscribed pools pin nothing")
    func pinning() {
        let cpus = allowedCPUCount
        for threads in 1...(cpus + 1) {
            var prm = poolParams(threads: threads)
            guard let pool = sr_pool_create_ex(&prm) else { Issue.record("sr_pool_create_ex failed"); continue }
            defer { sr_pool_free(pool) }
            let rec = ThreadRecord(slots: threads)
            let ctx = Unmanaged.passUnretained(rec).toOpaque()
            for _ in 0..<50 { sr_pool_run(pool, recordFn, ctx) }
            #expect(sr_pool_thread_cpu(pool, 0) == -1, "the caller is never pinned to one CPU")
            var seen = Set<Int32>()
            for i in 1..<threads {
                let c = sr_pool_thread_cpu(pool, Int32(i))
                if threads <= cpus {
                    #expect(c >= 0, "worker \(i) of \(threads) should be pinned")
                    #expect(rec.cpu(i) == c, "worker \(i) ran on cpu \(rec.cpu(i)), pinned to \(c)")
                    #expect(!seen.contains(c), "two workers on cpu \(c)")
                    seen.insert(c)
                } else {
                    #expect(c == -1, "oversubscribed: worker \(i) must not be pinned")
                }
            }
        }
        // pin = false: nothing pinned
        var prm = poolParams(threads: min(2, cpus), pin: false)
        let pool = sr_pool_create_ex(&prm)
        defer { sr_pool_free(pool) }
        for i in 0..<sr_pool_threads(pool) { #expect(sr_pool_thread_cpu(pool, i) == -1) }
    }

    @Test("row partitions: contiguous, aligned, cover every row once; node blocks = their threads' rows")
    func rowPartitions() {
        for fake in [0, 2, 3, 4] {
            for threads in 1...6 {
                var prm = poolParams(threads: threads, numa: fake > 0 ? SR_NUMA_DISTRIBUTE : SR_NUMA_OFF,
                                     fakeNodes: fake, pin: false)
                guard let pool = sr_pool_create_ex(&prm) else { Issue.record("create failed"); continue }
                defer { sr_pool_free(pool) }
                let nodes = Int(sr_pool_nodes(pool))
                #expect(nodes == (fake == 0 ? 1 : min(fake, threads)))
                // threads grouped by node, contiguous, balanced within one
                var counts: [Int] = []
                for n in 0..<nodes {
                    let first = Int(sr_pool_node_first_thread(pool, Int32(n)))
                    let k = Int(sr_pool_node_threads(pool, Int32(n)))
                    #expect(first == counts.reduce(0, +))
                    for i in first..<(first + k) { #expect(sr_pool_thread_node(pool, Int32(i)) == Int32(n)) }
                    counts.append(k)
                }
                #expect(counts.reduce(0, +) == threads)
                #expect((counts.max() ?? 0) - (counts.min() ?? 0) <= 1)
                for rows in [0, 1, 15, 16, 17, 100, 192, 576, 1536, 49152] {
                    for align in [1, 16, 64, 128] {
                        var next: Int64 = 0
                        for n in 0..<nodes {
                            var n0: Int64 = 0, n1: Int64 = 0
                            sr_pool_node_rows(pool, Int64(rows), Int64(align), Int32(n), &n0, &n1)
                            #expect(n0 == next, "node \(n) starts at \(n0), expected \(next)")
                            #expect(n0 % Int64(align) == 0 || n0 == Int64(rows))
                            let first = Int(sr_pool_node_first_thread(pool, Int32(n)))
                            var t = n0
                            for i in first..<(first + counts[n]) {
                                var r0: Int64 = 0, r1: Int64 = 0
                                sr_pool_thread_rows(pool, Int64(rows), Int64(align), Int32(i), &r0, &r1)
                                #expect(r0 == t && r1 >= r0, "thread \(i) rows \(r0)..<\(r1), expected start \(t)")
                                t = r1
                            }
                            #expect(t == n1, "node \(n)'s threads end at \(t), node block ends at \(n1)")
                            next = max(next, n1)
                        }
                        #expect(next == Int64(rows), "\(rows) rows, align \(align): covered up to \(next)")
                    }
                }
            }
        }
    }

    @Test("create/free cycles (also right after create), NULL pool queries, describe")
    func lifecycle() {
        let rec = ThreadRecord(slots: 8)
        let ctx = Unmanaged.passUnretained(rec).toOpaque()
        for k in 0..<60 {
            var prm = poolParams(threads: 1 + k % 5, numa: k % 3 == 0 ? SR_NUMA_OFF : SR_NUMA_DISTRIBUTE,
                                 fakeNodes: k % 3, pin: k % 2 == 0)
            let p = sr_pool_create_ex(&prm)
            #expect(p != nil)
            if k % 2 == 1 { sr_pool_run(p, recordFn, ctx) }
            sr_pool_free(p)
        }
        #expect(sr_pool_nodes(nil) == 1 && sr_pool_node_threads(nil, 0) == 1 && sr_pool_thread_node(nil, 0) == 0)
        var r0: Int64 = -1, r1: Int64 = -1
        sr_pool_thread_rows(nil, 100, 16, 0, &r0, &r1)
        #expect(r0 == 0 && r1 == 100)
        var prm = poolParams(threads: 2, numa: SR_NUMA_DISTRIBUTE, fakeNodes: 2)
        let p = sr_pool_create_ex(&prm)
        defer { sr_pool_free(p) }
        var buf = [CChar](repeating: 0, count: 200)
        let n = sr_pool_describe(p, &buf, 200)
        let s = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        #expect(n == Int32(s.utf8.count))
        #expect(s.hasPrefix("2 threads, numa distribute (2 fake nodes)"), "\(s)")
        var small = [CChar](repeating: 0, count: 8)
        #expect(sr_pool_describe(p, &small, 8) == 7)
    }

    @Test("thread defaults override the process defaults on this thread only")
    func threadDefaults() {
        sr_pool_set_thread_defaults(true, Int32(SR_NUMA_DISTRIBUTE.rawValue), 3, false)
        let d = sr_pool_default_params()
        #expect(d.numa == Int32(SR_NUMA_DISTRIBUTE.rawValue) && d.fake_nodes == 3 && !d.pin)
        let p = sr_pool_create(3)
        #expect(sr_pool_nodes(p) == 3 && sr_pool_numa_is_fake(p))
        sr_pool_free(p)
        sr_pool_set_thread_defaults(false, 0, 0, true)
        let q = sr_pool_create(2)
        #expect(sr_pool_numa_is_fake(q) == (sr_numa_default_fake_nodes() > 0))
        sr_pool_free(q)
    }
}
