#!/usr/bin/env bash
# Decode and prompt speed of spikerun (dense and spike models) against llama.cpp's own
# llama-bench built natively on this machine (tools/llamacpp/build.sh native), alternating
# tool by tool, round by round, so that load drift hits all alike. Prints medians (t/s) and
# ratios to llama.cpp per thread count and test; writes the samples as JSON with -o.
#
#   bench/speed_vs_llamabench.sh [-m MODEL] [-t 1,2] [-p 512] [-n 128] [-R rounds] [-o out.json] [SPIKE.gguf ...]
#
# MODEL (default: the SmolLM2 Q4_1 file) runs in both tools; SPIKE.gguf files only in spikerun.
#
# Environment: SPIKERUN (default .build/release/spikerun), LLAMA_BENCH (default
# .build-llamacpp/native/bin/llama-bench). Flash attention off in llama-bench (the dense engine
# mirrors its non-flash path).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=1,2 pp=512 tg=128 rounds=3 out="" model=models/SmolLM2-135M-Instruct.Q4_1.gguf
while getopts "m:t:p:n:R:o:" opt; do
    case $opt in
        m) model=$OPTARG ;; t) threads=$OPTARG ;; p) pp=$OPTARG ;; n) tg=$OPTARG ;; R) rounds=$OPTARG ;; o) out=$OPTARG ;;
        *) exit 64 ;;
    esac
done
shift $((OPTIND - 1))
spikerun=${SPIKERUN:-.build/release/spikerun}
llama=${LLAMA_BENCH:-.build-llamacpp/native/bin/llama-bench}
[ -x "$llama" ] || { echo "speed: $llama missing: run tools/llamacpp/build.sh native" >&2; exit 1; }
samples=$(mktemp)
trap 'rm -f "$samples"' EXIT
for r in $(seq 1 "$rounds"); do
    for t in ${threads//,/ }; do
        echo "speed: round $r/$rounds, $t thread(s)" >&2
        "$llama" -m "$model" -t "$t" -p "$pp" -n "$tg" -r 1 -fa 0 -o json 2>/dev/null |
            python3 -c 'import json,sys; [print(json.dumps({"tool":"llama.cpp","threads":'"$t"',"test":("pp%d"%r["n_prompt"] if r["n_prompt"] else "tg%d"%r["n_gen"]),"tps":r["avg_ts"]})) for r in json.load(sys.stdin)]' >> "$samples"
        for m in "$model" "$@"; do
            name=$(basename "$m" .gguf)
            "$spikerun" bench -m "$m" -t "$t" -p "$pp" -n "$tg" -r 1 --json 2>/dev/null |
                python3 -c 'import json,sys
d=json.load(sys.stdin)
for r in d["tests"]:
    print(json.dumps({"tool":"'"$name"'","threads":'"$t"',"test":r["name"],"tps":r["median"]}))' >> "$samples"
        done
    done
done
python3 - "$samples" "$out" <<'PY'
import json, statistics, sys, collections
rows = [json.loads(l) for l in open(sys.argv[1])]
by = collections.defaultdict(list)
for r in rows:
    by[(r["threads"], r["test"], r["tool"])].append(r["tps"])
keys = sorted({(t, test) for t, test, _ in by})
tools = list(dict.fromkeys(r["tool"] for r in rows))
print("| threads | test | " + " | ".join(tools) + " |")
print("|---|---|" + "---|" * len(tools))
for t, test in keys:
    base = statistics.median(by[(t, test, "llama.cpp")]) if by.get((t, test, "llama.cpp")) else None
    cells = []
    for tool in tools:
        v = by.get((t, test, tool))
        if not v:
            cells.append("–")
            continue
        m = statistics.median(v)
        cells.append(f"{m:.1f}" if tool == "llama.cpp" or not base else f"{m:.1f} ({m / base:.2f}×)")
    print(f"| {t} | {test} | " + " | ".join(cells) + " |")
if sys.argv[2]:
    json.dump({"samples": rows}, open(sys.argv[2], "w"), indent=1)
PY
