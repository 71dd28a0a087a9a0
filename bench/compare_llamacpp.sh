#!/usr/bin/env bash
# Side-by-side speed of spikerun and llama.cpp on the same model, threads and machine.
#
# llama.cpp runs through llama-cpp-python's low-level API (bench/llamacpp_bench.py: random
# tokens, BOS first, warm-up, flash attention off, n_threads = n_threads_batch = ours), timed
# like llama-bench. spikerun runs `spikerun bench` (dense path, and the spike path with
# --spike-preview k). Runs alternate tool by tool, round by round (the first tool switches every
# round), so that load drift on a shared machine hits both alike; the report gives medians over
# all samples and the ratios spikerun / llama.cpp. Load averages are recorded with each run.
#
#   bench/compare_llamacpp.sh [-m MODEL] [-t 1,2] [-p 64,512] [-n 128] [-k 8,4] [-S A.gguf,B.gguf]
#                             [-R rounds] [-r reps-per-round] [-o out.json] [--harness]
#
#   -k      spike settings (mean rule k at every site, --spike-preview); "" = dense only
#   -S      converted spike models (`spikerun convert` outputs of MODEL) benched as they are
#           (their own rules, time steps and spike attention), named by file
#   --harness  also run bench/build/sr-model-bench (the C runtime without Swift), which reports
#              tokens per CPU second too (useful on a busy machine); spike runs use it when
#              `spikerun bench` cannot run a spike preview.
# Environment: SPIKERUN=path/to/spikerun (default: build release into .build-bench),
#              PYTHON=python3.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
model="$root/models/SmolLM2-135M-Instruct.Q4_1.gguf"
threads="1,2"
pp="64,512"
tg="128"
spike="8,4"
converted=""
rounds=5
reps=1
out=""
harness=0
py=${PYTHON:-python3}

while [ $# -gt 0 ]; do
    case "$1" in
        -m) model=$2; shift 2 ;;
        -t) threads=$2; shift 2 ;;
        -p) pp=$2; shift 2 ;;
        -n) tg=$2; shift 2 ;;
        -k) spike=$2; shift 2 ;;
        -S) converted=$2; shift 2 ;;
        -R) rounds=$2; shift 2 ;;
        -r) reps=$2; shift 2 ;;
        -o) out=$2; shift 2 ;;
        --harness) harness=1; shift ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "compare_llamacpp.sh: unknown argument '$1' (see --help)" >&2; exit 64 ;;
    esac
done

[ -f "$model" ] || { echo "compare_llamacpp.sh: model '$model' not found; run 'make model' or pass -m" >&2; exit 1; }
[ -n "$out" ] || out="$root/bench/results/compare-$(date +%Y%m%d-%H%M%S).json"
mkdir -p "$(dirname "$out")"

# 1. llama.cpp from PyPI (the oracle version of this project)
if ! "$py" -c 'import llama_cpp, sys; sys.exit(0 if llama_cpp.__version__ == "0.3.36" else 1)' 2>/dev/null; then
    echo "installing llama-cpp-python==0.3.36 (CPU build from source; takes a few minutes)" >&2
    PYTHON="$py" bash "$root/tools/pip_install.sh" "llama-cpp-python==0.3.36"
fi

# 2. spikerun, release build
if [ -z "${SPIKERUN:-}" ]; then
    echo "building spikerun (release, .build-bench)" >&2
    (cd "$root" && swift build -c release --product spikerun --scratch-path .build-bench >&2)
    SPIKERUN="$root/.build-bench/release/spikerun"
fi
[ -x "$SPIKERUN" ] || { echo "compare_llamacpp.sh: no spikerun executable at '$SPIKERUN'" >&2; exit 1; }

# Can `spikerun bench` run a spike preview (and say so in its JSON)?
spike_cli=0
if [ -n "$spike" ] && "$SPIKERUN" bench --help 2>&1 | grep -q -- '--spike-preview'; then
    if "$SPIKERUN" bench -m "$model" -t 1 -p 0 -n 1 -r 1 --spike-preview 8 --json 2>/dev/null | grep -q '"path" *: *"spike'; then
        spike_cli=1
    fi
fi
if [ "$harness" = 1 ] || { [ -n "$spike" ] && [ "$spike_cli" = 0 ]; }; then
    make -s -C "$root/bench" build/sr-model-bench CC="${CC:-clang}" >&2
fi
[ -n "$spike" ] && [ "$spike_cli" = 0 ] && echo "note: 'spikerun bench' cannot run --spike-preview yet; spike runs use bench/build/sr-model-bench" >&2

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# run NAME CMD...: stores the JSON with the run's metadata in $tmp
run() {
    local name=$1; shift
    local l0 l1
    l0=$(loadavg)
    if ! "$@" > "$tmp/$name.raw" 2> "$tmp/$name.err"; then
        echo "compare_llamacpp.sh: '$*' failed:" >&2; tail -5 "$tmp/$name.err" >&2; exit 1
    fi
    l1=$(loadavg)
    "$py" - "$tmp/$name.raw" "$name" "$l0" "$l1" > "$tmp/$name.json" <<'EOF'
import json, sys
raw, name, l0, l1 = sys.argv[1:5]
text = open(raw).read()
d = json.loads(text[text.index("{"):])
tool, thr, rnd = name.split("__")[:3]
d["run"] = {"tool": tool, "threads": int(thr[1:]), "round": int(rnd[1:]), "load_before": l0, "load_after": l1}
print(json.dumps(d))
EOF
    echo "  $name  (load $l0 -> $l1)" >&2
}

IFS=',' read -r -a tlist <<< "$threads"
IFS=',' read -r -a klist <<< "$spike"
IFS=',' read -r -a slist <<< "$converted"
for f in "${slist[@]}"; do
    [ -f "$f" ] || { echo "compare_llamacpp.sh: converted model '$f' not found" >&2; exit 1; }
done
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; load $(loadavg)" >&2
for t in "${tlist[@]}"; do
    for r in $(seq 1 "$rounds"); do
        cmds=()
        cmds+=("llamacpp__t${t}__r${r}|$py $root/bench/llamacpp_bench.py -m $model -t $t -p $pp -n $tg -r $reps")
        cmds+=("spikerun-dense__t${t}__r${r}|$SPIKERUN bench -m $model -t $t -p $pp -n $tg -r $reps --json")
        [ "$harness" = 1 ] && cmds+=("harness-dense__t${t}__r${r}|$root/bench/build/sr-model-bench -m $model -t $t -p $pp -n $tg -r $reps --json")
        for k in "${klist[@]}"; do
            [ -n "$k" ] || continue
            if [ "$spike_cli" = 1 ]; then
                cmds+=("spikerun-spike${k}__t${t}__r${r}|$SPIKERUN bench -m $model -t $t -p $pp -n $tg -r $reps --spike-preview $k --json")
            else
                cmds+=("harness-spike${k}__t${t}__r${r}|$root/bench/build/sr-model-bench -m $model -t $t -p $pp -n $tg -r $reps --spike $k --json")
            fi
        done
        for f in "${slist[@]}"; do
            [ -n "$f" ] || continue
            name=$(basename "$f" .gguf | tr -c 'A-Za-z0-9.\n-' '-')
            cmds+=("spikerun-${name}__t${t}__r${r}|$SPIKERUN bench -m $f -t $t -p $pp -n $tg -r $reps --json")
        done
        # alternate: odd rounds in order, even rounds reversed
        if [ $((r % 2)) = 0 ]; then
            rev=(); for ((i=${#cmds[@]}-1; i>=0; i--)); do rev+=("${cmds[$i]}"); done; cmds=("${rev[@]}")
        fi
        for c in "${cmds[@]}"; do
            # shellcheck disable=SC2086
            run "${c%%|*}" ${c#*|}
        done
    done
done

"$py" "$root/bench/compare_report.py" --machine "$(lscpu | sed -n 's/^Model name: *//p')" \
    --out "$out" "$tmp"/*.json
echo "results: $out" >&2
