#!/usr/bin/env bash
# Fuzzes the GGUF reader (+ ModelConfig and the writer round trip) with libFuzzer and ASan.
#
#   tools/fuzz/run.sh [seconds=60] [extra libFuzzer flags…]
#   tools/fuzz/run.sh 0 path/to/crash-file      # replay one input (0 = no time limit)
#
# Builds .build-fuzz/gguf-fuzzer from Sources/SpikeRun/GGUF/*.swift, ModelConfig.swift and
# tools/fuzz/GGUFFuzzer.swift as one module (no package build needed), seeds the corpus from
# Tests/Fixtures/gguf/ and runs for the given time. New inputs go to .build-fuzz/corpus,
# crashes to .build-fuzz/artifacts/ (copy a fixed crasher into Tests/Fixtures/gguf/ as
# fuzz-<what>.gguf: the tests replay every fixture). Exit status is libFuzzer's (non-zero on
# a crash).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
secs="${1:-60}"
shift || true
out="${FUZZ_OUT:-$root/.build-fuzz}"
mkdir -p "$out/corpus" "$out/artifacts"

sources=("$root/Sources/SpikeRun/Support/SpikeRunError.swift" "$root"/Sources/SpikeRun/GGUF/*.swift
         "$root/Sources/SpikeRun/Model/ModelConfig.swift" "$root/tools/fuzz/GGUFFuzzer.swift")
echo "building $out/gguf-fuzzer" >&2
swiftc -sanitize=fuzzer,address -parse-as-library -O -g -module-name GGUFFuzz \
    "${sources[@]}" -o "$out/gguf-fuzzer"

if [[ $# -gt 0 && -f "$1" ]]; then   # replay mode
    exec "$out/gguf-fuzzer" "$@"
fi
exec "$out/gguf-fuzzer" -max_total_time="$secs" -max_len=32768 -timeout=10 -rss_limit_mb=2048 \
    -dict="$root/tools/fuzz/gguf.dict" -artifact_prefix="$out/artifacts/" -print_final_stats=1 \
    "$@" "$out/corpus" "$root/Tests/Fixtures/gguf"
