#!/bin/sh
# check_interface.sh - the spk_acc interface has one definition (SPK_ACC_ARGS in
# firmware/kernels/spk_acc.h); check that firmware/link.cfg and the kernel's m_axi pragmas
# agree with it. Needs a C compiler and /usr/include/xrt/xclbin.h (libxrt-dev).
# Prints "check_interface: ok ..." and exits 0, or lists the differences and exits 1.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT INT TERM
[ -f /usr/include/xrt/xclbin.h ] || { echo "check_interface: /usr/include/xrt/xclbin.h missing (install libxrt-dev)" >&2; exit 2; }
${CC:-cc} -std=c11 -Wall -Wextra -I/usr/include/xrt "$ROOT/tools/xclbin/gen_test_xclbin.c" -o "$T/gen"
"$T/gen" --link-cfg | grep -v "^\[" >"$T/want_acc.txt"
# spk_token (kernels/spk_token.h) has the same argument table and connectivity
{ cat "$T/want_acc.txt"; sed 's/spk_acc/spk_token/g' "$T/want_acc.txt"; } >"$T/want.txt"
# the [connectivity] section of link.cfg, comments and blank lines dropped
awk '/^\[/{sec=$0; next} sec=="[connectivity]" && !/^[ \t]*#/ && NF' "$ROOT/firmware/link.cfg" >"$T/got.txt"
status=0
if ! diff -u "$T/want.txt" "$T/got.txt" | sed 's/^/  /' >"$T/diff.txt"; then :; fi
if ! cmp -s "$T/want.txt" "$T/got.txt"; then
    echo "check_interface: firmware/link.cfg [connectivity] differs from spk_acc.h's table:" >&2
    cat "$T/diff.txt" >&2
    status=1
fi
# every pointer argument's m_axi pragma names the table's bundle
"$T/gen" --xml | sed -n 's/.*<arg name="\([a-z0-9_]*\)" addressQualifier="1".*port="M_AXI_\([A-Z0-9]*\)".*/\1 \2/p' >"$T/ptrs.txt"
n=0
while read -r arg bundle; do
    b=$(echo "$bundle" | tr 'A-Z' 'a-z')
    for k in spk_acc spk_token; do
        if ! grep -Eq "INTERFACE m_axi port = $arg offset = slave bundle = $b( |\$)" "$ROOT/firmware/kernels/$k.cpp"; then
            echo "check_interface: $k.cpp has no 'm_axi port = $arg ... bundle = $b' pragma" >&2
            status=1
        fi
    done
    n=$((n + 1))
done <"$T/ptrs.txt"
[ "$status" -eq 0 ] && echo "check_interface: ok (link.cfg and $n m_axi bundles of spk_acc and spk_token match SPK_ACC_ARGS)"
exit "$status"
