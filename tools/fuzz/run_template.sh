#!/usr/bin/env bash
# Fuzzes the chat-template engine (Jinja.swift: parser, renderer, limits) with libFuzzer + ASan.
#
#   tools/fuzz/run_template.sh [seconds=60] [extra libFuzzer flags…]
#   tools/fuzz/run_template.sh 0 path/to/crash-file      # replay one input
#
# Builds .build-fuzz/template-fuzzer from Sources/SpikeRun/Tokenizer/Jinja.swift,
# SpikeRunError.swift and tools/fuzz/TemplateFuzzer.swift as one module (no package build
# needed), seeds the corpus from Tests/Fixtures/template-fuzz/ and runs for the given time
# (-seed=N in the extra flags makes a run repeatable). New inputs go to
# .build-fuzz/template-corpus, crashes to .build-fuzz/template-artifacts/ (copy a fixed crasher
# into Tests/Fixtures/template-fuzz/: the tests replay every file there). Exit status is
# libFuzzer's (non-zero on a crash). FUZZ_SANITIZE=fuzzer drops ASan for throughput (Swift
# code without unsafe pointers; libFuzzer still catches traps, stack overflows and timeouts).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
secs="${1:-60}"
shift || true
out="${FUZZ_OUT:-$root/.build-fuzz}"
mkdir -p "$out/template-corpus" "$out/template-artifacts"

sanitize="${FUZZ_SANITIZE:-fuzzer,address}"
bin="$out/template-fuzzer-${sanitize//,/-}"
sources=("$root/Sources/SpikeRun/Support/SpikeRunError.swift" "$root/Sources/SpikeRun/Tokenizer/Jinja.swift"
         "$root/tools/fuzz/TemplateFuzzer.swift")
if [[ ! -x "$bin" ]] || [[ -n "$(find "${sources[@]}" -newer "$bin")" ]]; then
    echo "building $bin" >&2
    swiftc -sanitize="$sanitize" -parse-as-library -O -g -module-name TemplateFuzz \
        "${sources[@]}" -o "$bin" 2> >(grep -v "Cannot export local symbol" >&2)
fi

if [[ $# -gt 0 && -f "$1" ]]; then   # replay mode
    exec "$bin" "$@"
fi
exec "$bin" -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
    -dict="$root/tools/fuzz/template.dict" -artifact_prefix="$out/template-artifacts/" \
    -print_final_stats=1 "$@" "$out/template-corpus" "$root/Tests/Fixtures/template-fuzz"
