#!/usr/bin/env bash
# Builds the C runtime (csrc/) with sanitizers and runs tools/sanitize/sr-sanity.c on it:
#
#   tools/sanitize/run.sh            # both: ASan+UBSan, then TSan
#   tools/sanitize/run.sh asan       # AddressSanitizer + UndefinedBehaviorSanitizer
#   tools/sanitize/run.sh tsan       # ThreadSanitizer (thread pool, NUMA replicas, spike batch)
#
# Uses $CC, else Swift's clang next to `swift` on the PATH, else `clang`. Binaries go to
# .build-sanitize/. Any sanitizer report fails the run (halt_on_error, non-zero exit).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$root/.build-sanitize"
mkdir -p "$out"
cc="${CC:-}"
if [[ -z "$cc" ]]; then
    swift_bin="$(dirname "$(command -v swift 2>/dev/null || echo /nonexistent/swift)")"
    if [[ -x "$swift_bin/clang" ]]; then cc="$swift_bin/clang"; else cc=clang; fi
fi
sources=("$root"/csrc/core/*.c "$root"/csrc/cpu/*.c "$root"/csrc/quant/*.c "$root"/csrc/spike/*.c
         "$root"/csrc/fpga/*.c "$root/tools/sanitize/sr-sanity.c")
flags=(-std=gnu11 -O1 -g -fno-omit-frame-pointer -D_GNU_SOURCE -I"$root/include" -pthread)
libs=(-lnuma -ldl -lm)

run() {  # name, sanitizer flags…
    local name="$1"; shift
    local obj="$out/obj-$name" san=("$@")
    mkdir -p "$obj"
    echo "sanitize: building $name with ${san[*]}" >&2
    # One object per source, rebuilt when the source or any header is newer; two at a time.
    local newest_header objs=() pids=() fail=0
    newest_header="$(ls -t "$root"/include/spikerun/*.h "$root"/csrc/*/*.h | head -1)"
    for src in "${sources[@]}"; do
        local o="$obj/$(echo "${src#"$root"/}" | tr '/' '_').o"
        objs+=("$o")
        if [[ ! -f "$o" || "$src" -nt "$o" || "$newest_header" -nt "$o" ]]; then
            "$cc" "${flags[@]}" "${san[@]}" -c "$src" -o "$o" &
            pids+=($!)
            if (( ${#pids[@]} >= ${SANITIZE_JOBS:-2} )); then
                wait "${pids[0]}" || fail=1
                pids=("${pids[@]:1}")
            fi
        fi
    done
    for p in "${pids[@]}"; do wait "$p" || fail=1; done
    (( fail == 0 )) || { echo "sanitize: compiling failed" >&2; return 1; }
    local extra=()
    if [[ "$name" == tsan ]]; then
        # Swift's TSan runtime carries libdispatch interceptors: link libdispatch and the
        # blocks runtime that ship next to it.
        local swiftlib
        swiftlib="$(cd "$(dirname "$cc")/.." && pwd)/lib/swift/linux"
        [[ -f "$swiftlib/libdispatch.so" ]] && extra=(-L"$swiftlib" -ldispatch -lBlocksRuntime -Wl,-rpath,"$swiftlib")
    fi
    "$cc" "${flags[@]}" "${san[@]}" "${objs[@]}" -o "$out/sr-sanity-$name" "${libs[@]}" "${extra[@]}" \
        2> >(grep -v "Cannot export local symbol" >&2)
    echo "sanitize: running $name" >&2
    ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:abort_on_error=0 \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    SPIKERUN_PIN=0 "$out/sr-sanity-$name"
}

what="${1:-all}"
if [[ "$what" == all || "$what" == asan ]]; then
    run asan -fsanitize=address,undefined -fno-sanitize-recover=all
fi
if [[ "$what" == all || "$what" == tsan ]]; then
    run tsan -fsanitize=thread
fi
