import Hummingbird
import SpikeRun

extension OpenAIServer {
    /// GET /metrics: Prometheus text. `spikerun_*` names, plus the names the Kubernetes Gateway
    /// API inference extension's model-server protocol recommends (vLLM's) for the queue, the
    /// running requests and the KV-cache utilization its endpoint picker scrapes.
    func metrics() throws -> Response {
        let s = try ready()
        let m = s.metrics()
        var out = ""
        func metric(_ name: String, _ type: String, _ help: String, _ samples: [(String, Double)]) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for (labels, v) in samples {
                let value = v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : String(v)
                out += "\(name)\(labels) \(value)\n"
            }
        }
        let capacity = Double(m.slots * m.contextLength)
        let busyTokens = zip(m.slotTokens, m.slotBusy).reduce(0) { $0 + ($1.1 ? $1.0 : 0) }
        metric("spikerun_requests_running", "gauge", "Requests holding a slot.", [("", Double(m.running))])
        metric("spikerun_requests_queued", "gauge", "Requests waiting for a slot.", [("", Double(m.queued))])
        metric("spikerun_slots", "gauge", "Slots (sequences decoded together).", [("", Double(m.slots))])
        metric("spikerun_prompt_tokens_total", "counter", "Prompt tokens of admitted requests.",
               [("", Double(m.promptTokens))])
        metric("spikerun_prompt_tokens_evaluated_total", "counter",
               "Prompt tokens evaluated (the others were reused from a slot's KV cache).",
               [("", Double(m.promptTokensEvaluated))])
        metric("spikerun_generated_tokens_total", "counter", "Generated tokens.", [("", Double(m.generatedTokens))])
        metric("spikerun_requests_finished_total", "counter", "Requests that ran to a stop.",
               [("", Double(m.requestsFinished))])
        metric("spikerun_requests_cancelled_total", "counter", "Requests cancelled (client gone) while queued or running.",
               [("", Double(m.requestsCancelled))])
        metric("spikerun_steps_total", "counter", "Forward passes (one per step over all active slots).",
               [("", Double(m.steps))])
        metric("spikerun_step_tokens_total", "counter", "Tokens carried by the forward passes.",
               [("", Double(m.stepTokens))])
        metric("spikerun_busy_seconds_total", "counter", "Seconds the engine thread spent in steps.",
               [("", m.busySeconds)])
        metric("spikerun_generated_tokens_per_second", "gauge",
               "Generated tokens per busy second of the engine (aggregate over slots).",
               [("", m.busySeconds > 0 ? Double(m.generatedTokens) / m.busySeconds : 0)])
        metric("spikerun_kv_cache_tokens", "gauge", "Tokens held in each slot's KV cache region.",
               m.slotTokens.enumerated().map { ("{slot=\"\($0.offset)\"}", Double($0.element)) })
        metric("spikerun_kv_cache_usage_ratio", "gauge", "Fraction of each slot's KV cache region in use.",
               m.slotTokens.enumerated().map { ("{slot=\"\($0.offset)\"}", Double($0.element) / Double(m.contextLength)) })
        metric("spikerun_slot_busy", "gauge", "1 while a slot serves a request.",
               m.slotBusy.enumerated().map { ("{slot=\"\($0.offset)\"}", $0.element ? 1 : 0) })
        metric("spikerun_http_requests_total", "counter", "HTTP responses by status code.",
               state.httpRequests.sorted { $0.key < $1.key }.map { ("{code=\"\($0.key)\"}", Double($0.value)) })
        metric("vllm:num_requests_waiting", "gauge", "TotalQueuedRequests (model-server protocol).",
               [("", Double(m.queued))])
        metric("vllm:num_requests_running", "gauge", "TotalRunningRequests (model-server protocol).",
               [("", Double(m.running))])
        metric("vllm:gpu_cache_usage_perc", "gauge",
               "KVCacheUtilization (model-server protocol): KV cache of busy slots over all slots, 1 = full.",
               [("", capacity > 0 ? Double(busyTokens) / capacity : 0)])
        return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                        body: .init(byteBuffer: ByteBuffer(string: out)))
    }
}
