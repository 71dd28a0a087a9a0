#!/usr/bin/env python3
"""Aggregates the runs of bench/compare_llamacpp.sh: medians over every sample of every round
per (tool, threads, test), ratios against llama.cpp, and the spread (min..max of the samples).

Input: JSON files of bench/llamacpp_bench.py, `spikerun bench --json` and
bench/build/sr-model-bench --json, each with a "run" object added by the shell script.
Output: a Markdown table on stdout and everything (samples included) as JSON in --out.
"""
import argparse
import json
import os
import statistics
import sys


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def portable(v):
    """A committed result must not carry this machine's paths: absolute paths inside the
    repository become relative to it, others keep only their file name."""
    if isinstance(v, str) and os.path.isabs(v):
        rel = os.path.relpath(os.path.realpath(v), os.path.realpath(ROOT))
        return rel if not rel.startswith("..") else os.path.basename(v)
    if isinstance(v, dict):
        return {k: portable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [portable(x) for x in v]
    return v


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--machine", default="")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()

    groups = {}   # (tool, threads, test) -> {"samples": [], "cpu": [], "loads": []}
    meta = {}
    for path in a.files:
        with open(path) as f:
            d = json.load(f)
        run = d["run"]
        tool, t = run["tool"], run["threads"]
        meta.setdefault(tool, {k: portable(v) for k, v in d.items() if k not in ("tests", "run")})
        for test in d["tests"]:
            g = groups.setdefault((tool, t, test["name"]), {"samples": [], "cpu": [], "loads": []})
            g["samples"] += test["samples"]
            g["cpu"] += test.get("cpu_samples", [])
            g["loads"].append(run["load_before"].split()[0])

    tools = sorted({k[0] for k in groups}, key=lambda s: (s != "llamacpp", s))
    threads = sorted({k[1] for k in groups})
    tests = sorted({k[2] for k in groups}, key=lambda s: (s[:2] != "pp", int(s[2:])))
    rows = []
    print(f"machine: {a.machine}")
    print("| tool | threads | test | t/s median | min..max | n | vs llama.cpp | t/CPU-s median | CPU vs llama.cpp |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for t in threads:
        for test in tests:
            ref = groups.get(("llamacpp", t, test))
            for tool in tools:
                g = groups.get((tool, t, test))
                if not g:
                    continue
                m = median(g["samples"])
                cm = median(g["cpu"]) if g["cpu"] else None
                ratio = m / median(ref["samples"]) if ref and tool != "llamacpp" else None
                cratio = cm / median(ref["cpu"]) if (cm and ref and ref["cpu"] and tool != "llamacpp") else None
                rows.append({"tool": tool, "threads": t, "test": test, "median": m,
                             "min": min(g["samples"]), "max": max(g["samples"]), "n": len(g["samples"]),
                             "ratio_vs_llamacpp": ratio, "cpu_median": cm, "cpu_ratio_vs_llamacpp": cratio,
                             "samples": g["samples"], "cpu_samples": g["cpu"], "loads": g["loads"]})
                print(f"| {tool} | {t} | {test} | {m:.2f} | {min(g['samples']):.2f}..{max(g['samples']):.2f} | "
                      f"{len(g['samples'])} | {'' if ratio is None else f'{ratio:.2f}x'} | "
                      f"{'' if cm is None else f'{cm:.2f}'} | {'' if cratio is None else f'{cratio:.2f}x'} |")
    with open(a.out, "w") as f:
        json.dump({"machine": a.machine, "tools": meta, "results": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
