#!/bin/sh
# check_core_no_multiply.sh - the FPGA accumulation core must not multiply.
#
# The core is firmware/kernels/spk_core.cpp with its header spk_core.h (the lanes' datapath
# is a shift-by-one mux and an adder/subtractor). Two checks:
#   1. source: outside comments, string and character literals, neither file contains '*',
#      '/' or '%' (no multiply, divide or remainder; no pointers either, references only),
#      nor a __builtin_*mul* / *div* call;
#   2. objects: the core compiled as in C-simulation (g++ and clang++, -O2 and -O3, or the
#      object files given as arguments) is disassembled; every function in it (the core, the
#      FIFO code inlined into it) must be free of multiply and divide instructions (imul,
#      mul, mulx, div, idiv, (v)pmul*, (v)pmadd*, mulps/ss/pd/sd, vfmadd..., vpdpbusd ...), and
#      spk_core_acc and spk_core_code must be there (a rename must not make the check vacuous).
# --self-test: shows that both checks fail on a core with one multiply in it.
#
# Usage: tools/fpga/check_core_no_multiply.sh [--self-test | object.o ...]
# Exit status: 0 clean, 1 multiply found (or the core's functions missing), 2 tool problem.
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
K=$ROOT/firmware/kernels
command -v objdump >/dev/null 2>&1 || { echo "check_core_no_multiply: objdump not found (install binutils)" >&2; exit 2; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/srcorenomul.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

# Source text without comments and literals (C/C++ lexing good enough for our own files).
strip_source() {
    awk '
    BEGIN { incom = 0 }
    {
        line = $0; out = ""; i = 1; n = length(line)
        while (i <= n) {
            c = substr(line, i, 1); d = substr(line, i, 2)
            if (incom) { if (d == "*/") { incom = 0; i += 2 } else i++; continue }
            if (d == "/*") { incom = 1; i += 2; continue }
            if (d == "//") break
            if (c == "\"" || c == "\047") {
                q = c; i++
                while (i <= n && substr(line, i, 1) != q) { if (substr(line, i, 1) == "\\") i++; i++ }
                i++; out = out " "; continue
            }
            out = out c; i++
        }
        print out
    }' "$1"
}

check_source() {  # file...
    st=0
    for f in "$@"; do
        strip_source "$f" | grep -n '[*/%]' > "$tmp/src" || true
        if [ -s "$tmp/src" ]; then
            echo "check_core_no_multiply: FAIL $(basename "$f"): '*', '/' or '%' in the accumulation core:"
            sed 's/^/  /' "$tmp/src"
            st=1
        fi
        if strip_source "$f" | grep -n '__builtin_[a-z_]*\(mul\|div\)' > "$tmp/src"; then
            echo "check_core_no_multiply: FAIL $(basename "$f"): multiply/divide builtin:"
            sed 's/^/  /' "$tmp/src"
            st=1
        fi
    done
    [ "$st" = 0 ] && echo "check_core_no_multiply: ok source $(for f in "$@"; do printf '%s ' "$(basename "$f")"; done)"
    return $st
}

check_object() {  # object
    o=$1
    objdump -d -C --no-show-raw-insn "$o" > "$tmp/dis"
    st=0
    for f in 'spk_core_acc(' 'spk_core_code('; do
        if ! grep -q "^[0-9a-f]* <$f" "$tmp/dis"; then
            echo "check_core_no_multiply: FAIL $o: function ${f%(} not found (renamed or inlined?)"
            st=1
        fi
    done
    bad=$(awk -F'\t' '/^[0-9a-f]+ <.*>:$/ { fn = $0; next }
          NF >= 2 { split($2, w, " "); m = w[1];
            if (m ~ /mul|madd|msub|vfm|vfnm|dpbusd|dpwssd|dpbssd|div/) print fn "  " $1 "  " $2 }' "$tmp/dis")
    if [ -n "$bad" ]; then
        echo "check_core_no_multiply: FAIL $o: multiply/divide instructions:"
        echo "$bad" | head -20
        st=1
    fi
    if [ "$st" = 0 ]; then
        n=$(awk -F'\t' 'NF >= 2' "$tmp/dis" | wc -l)
        echo "check_core_no_multiply: ok $(basename "$o"): $n instructions, no multiply or divide"
    fi
    return $st
}

compile_all() {  # source -> list of objects in $objs
    src=$1
    objs=""
    for cxx in g++ clang++; do
        command -v "$cxx" >/dev/null 2>&1 || continue
        for opt in -O2 -O3; do
            o="$tmp/$(basename "$src" .cpp)-$cxx$opt.o"
            if ! "$cxx" -std=c++14 $opt -Wno-unknown-pragmas -I"$ROOT/include" -I"$K" -c "$src" -o "$o" 2>"$tmp/err"; then
                echo "check_core_no_multiply: $cxx $opt failed to compile $(basename "$src"):" >&2
                cat "$tmp/err" >&2
                exit 2
            fi
            objs="$objs $o"
        done
    done
    [ -n "$objs" ] || { echo "check_core_no_multiply: neither g++ nor clang++ found" >&2; exit 2; }
}

if [ "${1:-}" = "--self-test" ]; then
    # a core whose lane update multiplies: both checks must fail on it
    sed 's/return neg ? a - v : a + v;/return neg ? a - v : a + v * acc;/' "$K/spk_core.cpp" > "$tmp/spk_core.cpp"
    cmp -s "$K/spk_core.cpp" "$tmp/spk_core.cpp" && { echo "check_core_no_multiply: self-test could not inject a multiply" >&2; exit 2; }
    if check_source "$tmp/spk_core.cpp" >/dev/null; then
        echo "check_core_no_multiply: FAIL self-test: the source check accepted a multiply"; exit 1
    fi
    compile_all "$tmp/spk_core.cpp"
    for o in $objs; do
        if check_object "$o" >/dev/null; then
            echo "check_core_no_multiply: FAIL self-test: the object check accepted a multiply ($(basename "$o"))"; exit 1
        fi
    done
    echo "check_core_no_multiply: ok self-test: both checks reject a core that multiplies"
    exit 0
fi

status=0
check_source "$K/spk_core.cpp" "$K/spk_core.h" || status=1
if [ "$#" -gt 0 ]; then
    objs="$*"
else
    compile_all "$K/spk_core.cpp"
fi
for o in $objs; do
    [ -f "$o" ] || { echo "check_core_no_multiply: no such object: $o" >&2; exit 2; }
    check_object "$o" || status=1
done
exit $status
