#!/usr/bin/env python3
"""Serving throughput: `spikerun serve` (dense and spike model) against llama.cpp's own
`llama-server`, same model file, same threads, same slots, same prompts, same run.

For each concurrency C in --concurrency, C client threads each send --requests-per-stream
streaming text completions one after the other (POST /v1/completions, "stream": true,
temperature 0, max_tokens --max-tokens, "ignore_eos": true so that every request generates
exactly max_tokens tokens on both servers). Reported per (server, C):
  aggregate tok/s  generated tokens of all requests / wall time from the first request sent to
                   the last stream finished
  ttft p50/p99     time from sending a request to its first non-empty text chunk (with few
                   requests p99 is close to the maximum)
The servers run side by side for the whole run (their idle CPU use is measured and recorded)
and take turns within each concurrency level, the order reversed from one level to the next,
so that each sees the same machine state. Generated tokens are counted from the final chunk's
`usage` when the server sends one, else one per text chunk (both are recorded).

llama-server cannot load spikerun's spike GGUF: the spike model is compared with llama-server
serving the dense source model.

  tools/llamacpp/build.sh native --server        # .build-llamacpp/native/bin/llama-server
  .build/release/spikerun convert -o out/smollm2-spike.gguf
  python3 bench/serve_throughput.py              # writes bench/results/serve-throughput-<date>-<cpu>.json

Standard library only. Prints a Markdown table and writes one JSON file; no absolute paths.
"""
import argparse
import datetime
import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROMPTS = [
    "The history of the printing press begins",
    "Here is a short story about a lighthouse keeper:",
    "Photosynthesis is the process by which",
    "The three most important rules of cooking are",
    "In the year 2150, the city of",
    "A good way to learn a new language is",
    "The mountain village woke up to",
    "Explain how a steam engine works:",
    "The old map showed a path through",
    "Once upon a time in a small harbour town,",
    "The main causes of the French Revolution were",
    "My favourite season is autumn because",
    "The robot looked at the sunrise and",
    "To build a wooden bookshelf you need",
    "The ocean covers most of the Earth, and",
    "A letter to my future self:",
]


def rel(path):
    """A path relative to the repository (no absolute machine paths in the results)."""
    p = os.path.relpath(os.path.abspath(path), ROOT)
    return p


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """User + system CPU seconds of a process and its threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick


class Server:
    def __init__(self, name, argv, port, model_id):
        self.name, self.argv, self.port, self.model_id = name, argv, port, model_id
        self.proc = None
        self.log = None

    def start(self, log_dir):
        self.log = open(os.path.join(log_dir, f"serve-{self.name}.log"), "w")
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout=300):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see its log")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", "/health")
                r = c.getresponse()
                r.read()
                c.close()
                if r.status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} not ready after {timeout} s")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log:
            self.log.close()


def stream_completion(port, model_id, prompt, max_tokens):
    """One streaming completion; returns (ttft seconds, total seconds, tokens, counted_by, chunks)."""
    body = json.dumps({
        "model": model_id, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
        "stream": True, "ignore_eos": True, "stream_options": {"include_usage": True},
    })
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
    ttft = None
    chunks = 0
    usage = None
    buf = b""
    done = False
    while not done:
        line = resp.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            break
        obj = json.loads(data)
        if obj.get("usage"):
            usage = obj["usage"]
        for ch in obj.get("choices") or []:
            text = ch.get("text") or ""
            if text:
                chunks += 1
                if ttft is None:
                    ttft = time.perf_counter() - t0
    total = time.perf_counter() - t0
    conn.close()
    if usage and usage.get("completion_tokens"):
        return ttft, total, int(usage["completion_tokens"]), "usage", chunks
    return ttft, total, chunks, "chunks", chunks


def run_level(server, concurrency, per_stream, max_tokens, prompt_offset):
    results = []
    errors = []
    lock = threading.Lock()
    barrier = threading.Barrier(concurrency + 1)

    def worker(w):
        barrier.wait()
        for k in range(per_stream):
            prompt = PROMPTS[(prompt_offset + w * per_stream + k) % len(PROMPTS)]
            try:
                r = stream_completion(server.port, server.model_id, prompt, max_tokens)
                with lock:
                    results.append(r)
            except Exception as e:  # recorded, the level is reported as failed
                with lock:
                    errors.append(str(e))

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(concurrency)]
    for t in threads:
        t.start()
    cpu0 = cpu_seconds(server.proc.pid)
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(server.proc.pid) - cpu0
    tokens = sum(r[2] for r in results)
    ttfts = sorted(r[0] for r in results if r[0] is not None)

    def pct(p):
        if not ttfts:
            return None
        i = min(len(ttfts) - 1, max(0, int(round(p / 100 * len(ttfts) + 0.5)) - 1))
        return ttfts[i]

    return {
        "server": server.name, "concurrency": concurrency, "requests": len(results),
        "errors": errors, "generated_tokens": tokens,
        "counted_by": sorted({r[3] for r in results}),
        "text_chunks": sum(r[4] for r in results),
        "wall_seconds": round(wall, 4), "aggregate_tokens_per_second": round(tokens / wall, 2) if wall else None,
        "ttft_p50_seconds": round(pct(50), 4) if ttfts else None,
        "ttft_p99_seconds": round(pct(99), 4) if ttfts else None,
        "ttft_max_seconds": round(ttfts[-1], 4) if ttfts else None,
        "server_cpu_seconds": round(cpu, 2),
        "loadavg_after": os.getloadavg()[0],
    }


def machine():
    info = {"system": platform.system(), "machine": platform.machine(), "cpus_online": os.cpu_count()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            k, _, v = line.partition(":")
            v = v.strip()
            if k == "Model name":
                info["cpu"] = v
            elif k == "Flags":
                want = ["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile"]
                have = set(v.split())
                info["flags"] = [f for f in want if f in have]
            elif k == "Hypervisor vendor":
                info["hypervisor"] = v
    except OSError:
        pass
    info["loadavg_at_start"] = os.getloadavg()
    return info


def cpu_tag(info):
    """A short machine name for file names: 'xeon', 'epyc', ... from lscpu's model name."""
    words = [w.lower() for w in info.get("cpu", "").replace("(R)", " ").replace("(TM)", " ").split()]
    for w in ("xeon", "epyc", "ryzen", "core", "neoverse"):
        if w in words:
            return w
    return info.get("machine", "cpu")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spikerun", default=".build/release/spikerun")
    ap.add_argument("--llama-server", default=".build-llamacpp/native/bin/llama-server", help="'' to skip")
    ap.add_argument("-m", "--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf", help="dense GGUF (both servers)")
    ap.add_argument("--spike-model", default="out/smollm2-spike.gguf", help="converted spike GGUF ('' to skip)")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--parallel", type=int, default=16, help="slots of every server")
    ap.add_argument("--ctx-per-slot", type=int, default=512)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--concurrency", default="1,2,4,8,16")
    ap.add_argument("--requests-per-stream", type=int, default=2)
    ap.add_argument("--out", default=None, help="JSON path (default bench/results/serve-throughput-<date>-<cpu>.json, <cpu> xeon, epyc, ...)")
    ap.add_argument("--logs", default="out/serve-bench-logs")
    args = ap.parse_args()
    os.chdir(ROOT)
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    date = datetime.date.today().isoformat()
    host = machine()
    out = args.out or f"bench/results/serve-throughput-{date}-{cpu_tag(host)}.json"
    os.makedirs(args.logs, exist_ok=True)

    llama_version = None
    if args.llama_server:
        version = subprocess.run([args.llama_server, "--version"], capture_output=True, text=True)
        llama_version = " ".join((version.stdout + version.stderr).split())
    sdist = os.path.join(".build-llamacpp/src/llama.cpp/LLAMA_CPP_PYTHON_VERSION")
    llama_cpp_python = open(sdist).read().strip() if os.path.exists(sdist) else None

    p = args.parallel
    servers = []
    port = free_port()
    servers.append(Server("spikerun-dense", [args.spikerun, "serve", "-m", args.model, "-t", str(args.threads),
                                             "--parallel", str(p), "-c", str(args.ctx_per_slot),
                                             "--port", str(port), "--alias", "model"], port, "model"))
    if args.spike_model:
        port = free_port()
        servers.append(Server("spikerun-spike", [args.spikerun, "serve", "-m", args.spike_model, "-t", str(args.threads),
                                                 "--parallel", str(p), "-c", str(args.ctx_per_slot),
                                                 "--port", str(port), "--alias", "model"], port, "model"))
    port = free_port()
    # llama-server's -c is the whole context, split evenly over the slots.
    if args.llama_server:
        servers.append(Server("llama-server", [args.llama_server, "-m", args.model, "-t", str(args.threads),
                                               "-tb", str(args.threads), "--parallel", str(p),
                                               "-c", str(p * args.ctx_per_slot), "--port", str(port),
                                               "--host", "127.0.0.1", "--alias", "model", "--no-webui"],
                              port, "model"))
    commands = {s.name: " ".join(rel(a) if os.path.exists(a) else a for a in s.argv) for s in servers}
    for s in servers:
        commands[s.name] = commands[s.name].replace(f"--port {s.port}", "--port PORT")

    results = {"benchmark": "serve_throughput", "date": date, "machine": host,
               "llama_cpp": {"llama_server_version": llama_version, "llama_cpp_python_sdist": llama_cpp_python},
               "settings": {"threads": args.threads, "parallel": p, "ctx_per_slot": args.ctx_per_slot,
                            "max_tokens": args.max_tokens, "temperature": 0, "ignore_eos": True,
                            "requests_per_stream": args.requests_per_stream, "concurrency": levels,
                            "endpoint": "/v1/completions (stream)", "prompts": PROMPTS},
               "commands": commands, "runs": []}
    try:
        for s in servers:
            s.start(args.logs)
        for s in servers:
            s.wait_ready()
        # Warm-up: one request each, then the servers' idle CPU use over 2 s.
        for s in servers:
            stream_completion(s.port, s.model_id, PROMPTS[0], 8)
        idle0 = {s.name: cpu_seconds(s.proc.pid) for s in servers}
        time.sleep(2)
        results["idle_cpu_percent"] = {s.name: round((cpu_seconds(s.proc.pid) - idle0[s.name]) / 2 * 100, 1)
                                       for s in servers}
        order = list(servers)
        for i, c in enumerate(levels):
            for s in order:
                r = run_level(s, c, args.requests_per_stream, args.max_tokens, prompt_offset=i)
                results["runs"].append(r)
                print(f"{s.name:15s} C={c:2d}: {r['aggregate_tokens_per_second']:8.1f} tok/s  "
                      f"ttft p50 {r['ttft_p50_seconds']} p99 {r['ttft_p99_seconds']}  "
                      f"({r['generated_tokens']} tokens in {r['wall_seconds']} s, errors {len(r['errors'])})",
                      flush=True)
            order.reverse()
    finally:
        for s in servers:
            s.stop()
    results["machine"]["loadavg_at_end"] = os.getloadavg()

    # Summary: ratios against llama-server and against each server's single stream.
    by = {(r["server"], r["concurrency"]): r for r in results["runs"]}
    summary = []
    for s in servers:
        for c in levels:
            r = by[(s.name, c)]
            row = {"server": s.name, "concurrency": c, "tok_s": r["aggregate_tokens_per_second"],
                   "ttft_p50": r["ttft_p50_seconds"], "ttft_p99": r["ttft_p99_seconds"]}
            peer = by.get(("llama-server", c))
            if s.name != "llama-server" and peer and peer["aggregate_tokens_per_second"]:
                row["vs_llama_server"] = round(r["aggregate_tokens_per_second"] / peer["aggregate_tokens_per_second"], 2)
            one = by.get((s.name, 1))
            if one and one["aggregate_tokens_per_second"]:
                row["vs_single_stream"] = round(r["aggregate_tokens_per_second"] / one["aggregate_tokens_per_second"], 2)
            summary.append(row)
    results["summary"] = summary
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    print()
    print("| server | streams | aggregate tok/s | × llama-server | × 1 stream | TTFT p50 (s) | TTFT p99 (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in summary:
        print(f"| {row['server']} | {row['concurrency']} | {row['tok_s']:.1f} | {row.get('vs_llama_server', '–')} | "
              f"{row.get('vs_single_stream', '–')} | {row['ttft_p50']} | {row['ttft_p99']} |")
    print(f"\nwritten {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
