"""Load: 16 concurrent streaming clients (this process) against `spikerun serve` (another).

Every request must complete without error, with the greedy text the same prompt gives when it
runs alone and with `usage` matching max_tokens when it stops for length; the server's RSS
must return to its baseline (taken after a first, warm-up round) afterwards. Bounded: 3 rounds
of 16 requests of 24 tokens, each request with a timeout.
Run: python3 Tests/Serve/load_test.py
"""
import concurrent.futures
import os
import sys
import time

import openai

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ALIAS, Server  # noqa: E402

CLIENTS = 16
MAX_TOKENS = 24
PROMPTS = [
    "Explain why the sky is blue.",
    "Write a short poem about the sea.",
    "What is 12 times 12?",
    "Give me three tips for learning Swift.",
]


def stream_one(base, prompt):
    c = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=180)
    pieces, reasons, usage = [], [], None
    for chunk in c.chat.completions.create(model=ALIAS, messages=[{"role": "user", "content": prompt}],
                                           max_tokens=MAX_TOKENS, temperature=0, stream=True,
                                           stream_options={"include_usage": True}):
        if chunk.usage:
            usage = chunk.usage
        for ch in chunk.choices:
            if ch.delta.content:
                pieces.append(ch.delta.content)
            if ch.finish_reason:
                reasons.append(ch.finish_reason)
    return "".join(pieces), reasons, usage


def main():
    server = Server("--parallel", "8", "-c", "256", "--metrics")
    failures = []
    try:
        # Alone first: the reference texts.
        alone = {p: stream_one(server.base, p) for p in PROMPTS}
        baseline = None
        start = time.monotonic()
        for round_ in range(3):
            if round_ == 1:   # every slot and the step buffers have been used once
                server.wait_metric("spikerun_requests_running", lambda v: v == 0)
                baseline = server.rss_bytes()
            with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
                jobs = [pool.submit(stream_one, server.base, PROMPTS[i % len(PROMPTS)]) for i in range(CLIENTS)]
                for i, job in enumerate(jobs):
                    prompt = PROMPTS[i % len(PROMPTS)]
                    try:
                        text, reasons, usage = job.result(timeout=300)
                    except Exception as e:  # noqa: BLE001 - every failure is reported
                        failures.append(f"round {round_} client {i}: {type(e).__name__}: {e}")
                        continue
                    ref_text, ref_reasons, ref_usage = alone[prompt]
                    if text != ref_text:
                        failures.append(f"client {i}: text differs from the lone run: {text!r} vs {ref_text!r}")
                    if reasons != ref_reasons or len(reasons) != 1:
                        failures.append(f"client {i}: finish reasons {reasons} vs {ref_reasons}")
                    if usage is None or usage.completion_tokens != ref_usage.completion_tokens:
                        failures.append(f"client {i}: usage {usage} vs {ref_usage}")
                    elif reasons == ["length"] and usage.completion_tokens != MAX_TOKENS:
                        failures.append(f"client {i}: length stop after {usage.completion_tokens} tokens")
        elapsed = time.monotonic() - start
        m = server.wait_metric("spikerun_requests_running", lambda v: v == 0)
        metrics = server.metrics()
        after = server.rss_bytes()
        generated = metrics["spikerun_generated_tokens_total"]
        print(f"load: {3 * CLIENTS} streams in {elapsed:.1f}s, {generated:.0f} tokens generated in all, "
              f"{metrics['spikerun_steps_total']:.0f} steps carrying {metrics['spikerun_step_tokens_total']:.0f} tokens; "
              f"RSS {baseline / 2**20:.1f} -> {after / 2**20:.1f} MiB", file=sys.stderr)
        if metrics["spikerun_requests_queued"] != 0 or m != 0:
            failures.append("requests left running or queued")
        if after > baseline + 8 * 2**20:
            failures.append(f"RSS grew from {baseline / 2**20:.1f} to {after / 2**20:.1f} MiB")
        if metrics["spikerun_steps_total"] >= metrics["spikerun_step_tokens_total"]:
            failures.append("no step carried more than one token: nothing was batched")
    finally:
        server.stop()
    for f in failures:
        print("load: FAIL " + f, file=sys.stderr)
    print("load: ok" if not failures else f"load: {len(failures)} failures", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
