import ArgumentParser
import Foundation
import CSpikeRun
import SpikeRun

struct Info: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a model: architecture, hyper-parameters, tensor types and sizes, vocabulary.")

    @Option(name: [.customShort("m"), .customLong("model")], help: "GGUF model path (default: the default model).")
    var model: String?

    @Flag(name: .customLong("json"), help: "Print JSON.")
    var json = false

    @Flag(name: .customLong("tensors"), help: "List every tensor.")
    var tensors = false

    @Flag(name: .customLong("devices"), help: "List what the backends see: CPUs and NUMA nodes (libnuma), FPGA devices (XRT).")
    var devices = false

    func listDevices() {
        let topo = sr_numa_topology_create(0)
        defer { sr_numa_topology_free(topo) }
        let nodes = Int(sr_numa_topology_nodes(topo))
        print("cpu: \(ProcessInfo.processInfo.activeProcessorCount) online CPUs, libnuma \(sr_numa_supported() ? "available" : "unavailable (one node assumed)"), \(nodes) node(s)")
        for n in 0..<nodes {
            var cpus = [Int32](repeating: 0, count: 4096)
            let c = Int(sr_numa_topology_node_cpus(topo, Int32(n), &cpus, Int32(cpus.count)))
            print("  node \(sr_numa_topology_os_node(topo, Int32(n))): cpus \(cpus.prefix(max(0, c)).map(String.init).joined(separator: ","))")
        }
        switch FPGADevice.availability {
        case .unavailable(let reason):
            print("fpga: unavailable: \(reason)")
        case .available:
            do {
                let list = try FPGADevice.list()
                print("fpga: \(list.count) device(s)" + (list.isEmpty ? "" : ": " + list.map(\.description).joined(separator: ", ")))
            } catch {
                print("fpga: \(error.message)")
            }
        }
    }

    func run() async throws {
        try await runReportingErrors {
            if devices { listDevices(); return }
            let path = model ?? DefaultModel.path()
            let m = try Model.load(path)
            let c = m.config
            if json { print(jsonString(m.info)); return }
            print("model:        \(m.info.name ?? "-")  (\(path))")
            print("architecture: \(c.architecture)\(m.info.isSpikeModel ? " (spike-converted)" : "")")
            print("parameters:   \(String(format: "%.1f", Double(m.info.parameterCount) / 1e6)) M, weights \(String(format: "%.1f", Double(m.info.weightBytes) / 1048576)) MiB")
            print("layers \(c.nLayer), embedding \(c.nEmbd), ffn \(c.nFF), heads \(c.nHead) (kv \(c.nHeadKV)), head dim \(c.headDim)")
            print("context \(c.contextLength), rope \(c.ropeType.rawValue) base \(c.ropeFreqBase) (dims \(c.ropeDimensionCount)), q/k/v bias \(c.hasQKVBias ? "yes" : "no"), rms eps \(c.rmsNormEps), output \(c.tiedOutput ? "tied to token_embd" : "separate")")
            print("tensor types: " + m.info.tensorTypes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
            let tok = m.tokenizer
            print("vocabulary:   \(tok.vocabularySize) tokens (\(m.file.metadata.string("tokenizer.ggml.model") ?? "?"), pre '\(m.file.metadata.string("tokenizer.ggml.pre") ?? "default")'), bos \(tok.bosToken.map(String.init) ?? "-"), eos \(tok.eosToken.map(String.init) ?? "-"), add bos \(tok.addBOS)")
            if tensors {
                for t in m.file.tensors {
                    print("  \(t.name)  \(t.type.name)  \(t.shape)  \(t.byteCount) B")
                }
            }
        }
    }
}
