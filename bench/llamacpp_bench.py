#!/usr/bin/env python3
"""llama.cpp's speed on a GGUF model, timed like llama-bench, through llama-cpp-python's
low-level API (no Python in the timed loops but one ctypes call per llama_decode).

  pp<N>: N random tokens (BOS first, as llama-bench) decoded in batches of n_batch from an empty
         cache, ending with llama_synchronize; t/s = N / seconds.
  tg<N>: N single-token decodes (BOS first, then random tokens), each synchronized.
A warm-up run precedes each test (as llama-bench); flash attention is off; n_threads is used
for both decode and batch threads. Prints one JSON object on stdout:
  {"tool": "llama.cpp", "version": ..., "threads": T,
   "tests": [{"name": "pp64", "samples": [t/s, ...], "cpu_samples": [tokens per CPU second, ...]}, ...]}
(cpu_samples: a proxy for the unloaded speed of one-thread runs on a busy machine.)
"""
import argparse
import ctypes
import json
import os
import random
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("-t", "--threads", type=int, required=True)
    ap.add_argument("-p", "--n-prompt", default="512", help="comma-separated prompt lengths")
    ap.add_argument("-n", "--n-gen", default="128", help="comma-separated generation lengths")
    ap.add_argument("-r", "--repetitions", type=int, default=5)
    ap.add_argument("-b", "--batch", type=int, default=512, help="n_batch = n_ubatch (llama-bench default 2048/512)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    import llama_cpp as L

    pp = [int(x) for x in args.n_prompt.split(",") if x.strip()]
    tg = [int(x) for x in args.n_gen.split(",") if x.strip()]

    # Silence llama.cpp's logging (it goes to stderr and would interleave with ours).
    log_cb = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)(lambda *a: None)
    L.llama_log_set(log_cb, ctypes.c_void_p(0))
    L.llama_backend_init()

    mp = L.llama_model_default_params()
    mp.n_gpu_layers = 0
    model = L.llama_model_load_from_file(args.model.encode(), mp)
    if not model:
        print(f"llamacpp_bench: cannot load {args.model}", file=sys.stderr)
        return 1
    vocab = L.llama_model_get_vocab(model)
    n_vocab = L.llama_vocab_n_tokens(vocab)
    add_bos = L.llama_vocab_get_add_bos(vocab)
    bos = L.llama_vocab_bos(vocab)

    cp = L.llama_context_default_params()
    cp.n_ctx = max(pp + tg + [16]) + 16
    cp.n_batch = args.batch
    cp.n_ubatch = args.batch
    cp.n_threads = args.threads
    cp.n_threads_batch = args.threads
    cp.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED
    cp.no_perf = True
    ctx = L.llama_init_from_model(model, cp)
    if not ctx:
        print("llamacpp_bench: cannot create a context", file=sys.stderr)
        return 1
    L.llama_set_n_threads(ctx, args.threads, args.threads)
    mem = L.llama_get_memory(ctx)
    rng = random.Random(args.seed)
    buf = (L.llama_token * max(args.batch, 1))()

    def prompt(n: int) -> None:
        done = 0
        while done < n:
            k = min(n - done, args.batch)
            for i in range(k):
                buf[i] = bos if (done == 0 and i == 0 and add_bos) else rng.randrange(n_vocab)
            if L.llama_decode(ctx, L.llama_batch_get_one(buf, k)) != 0:
                raise RuntimeError("llama_decode failed (prompt)")
            done += k
        L.llama_synchronize(ctx)

    def gen(n: int) -> None:
        tok = (L.llama_token * 1)()
        tok[0] = bos if add_bos else rng.randrange(n_vocab)
        for _ in range(n):
            if L.llama_decode(ctx, L.llama_batch_get_one(tok, 1)) != 0:
                raise RuntimeError("llama_decode failed (generation)")
            L.llama_synchronize(ctx)
            tok[0] = rng.randrange(n_vocab)

    def measure(name, n, run, warm_up):
        """llama-bench's timing: a warm-up, then each repetition from an empty cache."""
        L.llama_memory_clear(mem, False)
        warm_up()
        samples, cpu = [], []
        for _ in range(args.repetitions):
            L.llama_memory_clear(mem, False)
            t0, c0 = time.perf_counter_ns(), time.process_time_ns()
            run(n)
            samples.append(n / ((time.perf_counter_ns() - t0) / 1e9))
            cpu.append(n / max((time.process_time_ns() - c0) / 1e9, 1e-9))
        return {"name": name, "tokens": n, "samples": samples, "cpu_samples": cpu}

    tests = [measure(f"pp{n}", n, prompt, lambda n=n: prompt(min(n, args.batch))) for n in pp if n > 0]
    tests += [measure(f"tg{n}", n, gen, lambda: gen(1)) for n in tg if n > 0]

    version = getattr(L, "__version__", "?")
    print(json.dumps({"tool": "llama.cpp", "version": f"llama-cpp-python {version}",
                      "system": L.llama_print_system_info().decode(errors="replace").strip(),
                      "threads": args.threads, "tests": tests,
                      "peak_rss_bytes": peak_rss()}))
    L.llama_free(ctx)
    L.llama_model_free(model)
    return 0


def peak_rss() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
