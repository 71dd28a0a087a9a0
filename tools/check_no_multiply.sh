#!/bin/sh
# check_no_multiply.sh - the spike accumulation inner loops must not multiply.
#
# Compiles csrc/spike/sr-spike-opt.c (every compiler found: clang, gcc; -O2 and -O3) or takes
# object files given as arguments (e.g. SwiftPM's .build/release/CSpikeRun.build/spike/
# sr-spike-opt.c.o), disassembles every function whose name starts with `sr_spike_acc_`
# (the block kernels: event-driven adds/subs, Horner doublings, shifts, mask ops) and fails if
# any instruction is a multiply or fused multiply-add: imul, mul, mulx, (v)mulps/ss/pd/sd,
# (v)pmul*, (v)pmadd*, vpmaddubs*, vfmadd*/vfmsub*/vfnmadd*/vfnmsub*, vpdpbusd (VNNI) ...
#
# Usage: tools/check_no_multiply.sh [object.o ...]
# Exit status: 0 clean, 1 multiply found (or kernels missing), 2 tool/compile problem.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
# Kernels that must be present in an x86-64 build (a rename must not make the check vacuous).
expected="sr_spike_acc_q4_1_portable sr_spike_acc_ternary_portable sr_spike_acc_i8_portable
sr_spike_acc_offset_fix sr_spike_acc_q4_1_i16_avx2 sr_spike_acc_q4_1_half_i16_avx2
sr_spike_acc_q4_1_i32_avx2 sr_spike_acc_ternary_i16_avx2 sr_spike_acc_ternary_i32_avx2
sr_spike_acc_i8_flush_avx2 sr_spike_acc_i8_flush2_avx2 sr_spike_acc_q4_1_i16_avx512
sr_spike_acc_i8_flush_avx512 sr_spike_acc_i8_flush2_avx512 sr_spike_acc_i8_flush4_avx512
sr_spike_acc_row_i8_avx2"

command -v objdump >/dev/null 2>&1 || { echo "check_no_multiply: objdump not found (install binutils)" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/srnomul.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

objs=""
if [ "$#" -gt 0 ]; then
    objs="$*"
else
    for cc in clang gcc; do
        command -v "$cc" >/dev/null 2>&1 || continue
        for opt in -O2 -O3; do
            o="$tmp/$cc$opt.o"
            if ! "$cc" -std=c11 $opt -D_GNU_SOURCE -I"$root/include" -I"$root/csrc/spike" \
                -c "$root/csrc/spike/sr-spike-opt.c" -o "$o" 2>"$tmp/err"; then
                echo "check_no_multiply: $cc $opt failed to compile sr-spike-opt.c:" >&2
                cat "$tmp/err" >&2
                exit 2
            fi
            objs="$objs $o"
        done
    done
    [ -n "$objs" ] || { echo "check_no_multiply: neither clang nor gcc found" >&2; exit 2; }
fi

arch=$(uname -m)
status=0
for o in $objs; do
    [ -f "$o" ] || { echo "check_no_multiply: no such object: $o" >&2; exit 2; }
    objdump -d --no-show-raw-insn "$o" > "$tmp/dis"
    # Function bodies: from "<sr_spike_acc_...>:" to the next blank line.
    awk '/^[0-9a-f]+ <sr_spike_acc_[A-Za-z0-9_.]*>:$/ { on = 1; name = $2; print; next }
         /^$/ { on = 0 }
         on { print name "\t" $0 }' "$tmp/dis" > "$tmp/kern"
    found=$(grep -c '^[0-9a-f]* <sr_spike_acc_' "$tmp/kern" || true)
    if [ "$arch" = x86_64 ]; then
        for f in $expected; do
            if ! grep -q "<$f\(\.[a-z0-9.]*\)\?>:" "$tmp/kern"; then
                echo "check_no_multiply: FAIL $o: kernel $f not found (renamed or inlined?)"
                status=1
            fi
        done
    elif [ "$found" -eq 0 ]; then
        echo "check_no_multiply: FAIL $o: no sr_spike_acc_* function found"
        status=1
    fi
    # Instruction mnemonic = first word after the address column.
    bad=$(awk -F'\t' 'NF >= 3 { split($3, w, " "); m = w[1];
            if (m ~ /mul|madd|msub|vfm|vfnm|dpbusd|dpwssd|dpbssd/) print $1 "  " $2 "  " $3 }' "$tmp/kern")
    if [ -n "$bad" ]; then
        echo "check_no_multiply: FAIL $o: multiply instructions in spike kernels:"
        echo "$bad"
        status=1
    else
        n=$(awk -F'\t' 'NF >= 3' "$tmp/kern" | wc -l)
        echo "check_no_multiply: ok $(basename "$o"): $found kernels, $n instructions, no multiply"
    fi
done
exit $status
