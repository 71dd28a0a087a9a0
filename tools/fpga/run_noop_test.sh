#!/bin/sh
# run_noop_test.sh - the FPGA host flow under XRT's noop shim (no board, no Vitis), with a
# leak check. Builds tools/fpga/noop_host_test.c with the host backend (csrc/fpga), the CPU
# spike kernels (csrc/spike) and the C-simulation kernel (run by a hook in place of the
# device), generates the test xclbin, lays out a XILINX_XRT directory for the noop shim and
# runs:
#   1. the main test (guards against XRT's abort trap, open/xclbin/kernel errors, argument
#      banks, upload, 20 steps compared bit for bit with sr_spike_matvec, step errors);
#   2. the timeout test, with [Runtime] noop_completion_delay_us=1000000 via XRT_INI_PATH;
#   3. the main test again, leaving the device open at exit (must not crash in exit);
#   4. the board program firmware/host/spikerun-fpga.c built for x86 with the same run hook
#      (-DSPIKERUN_FPGA_EMULATE): its --self-test must pass under noop;
#   5. a control: raw xrtDeviceOpen with XILINX_XRT unset aborts the process (SIGABRT),
#      which is exactly what the backend's guard prevents.
# Leak check: ASan+LSan+UBSan by default; --valgrind runs the main test and the driver under
# valgrind instead (memcheck, definite leaks are errors; the timeout test then runs natively).
# Usage: tools/fpga/run_noop_test.sh [--valgrind] [--keep]
# Prints "run_noop_test: PASS ..." and exits 0, or "run_noop_test: FAIL ..." and exits 1;
# exits 2 when XRT (libxrt-dev, the noop shim) is not installed.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MODE=asan
KEEP=0
for a in "$@"; do
    case "$a" in
    --valgrind) MODE=valgrind ;;
    --keep) KEEP=1 ;;
    *) echo "usage: $0 [--valgrind] [--keep]" >&2; exit 64 ;;
    esac
done
LIBDIR=""
for d in /usr/lib/x86_64-linux-gnu /usr/lib /opt/xilinx/xrt/lib; do
    if [ -e "$d/libxrt_noop.so.2" ] && [ -e "$d/libxrt_core.so.2" ]; then LIBDIR=$d; break; fi
done
if [ -z "$LIBDIR" ] || [ ! -f /usr/include/xrt/xclbin.h ]; then
    echo "run_noop_test: XRT with the noop shim is not installed (Debian: xrt, libxrt-dev)" >&2
    exit 2
fi
CC=${CC:-gcc}
CXX=${CXX:-g++}
W=$(mktemp -d)
cleanup() { if [ "$KEEP" = 1 ]; then echo "kept $W"; else rm -rf "$W"; fi; }
trap cleanup EXIT INT TERM

# XILINX_XRT layout for the noop shim (XRT loads $XILINX_XRT/lib/libxrt_<shim>.so.2)
R=$W/xrt
mkdir -p "$R/lib"
ln -s "$LIBDIR/libxrt_core.so.2" "$LIBDIR/libxrt_noop.so.2" "$R/lib/"
[ -d "$LIBDIR/xrt" ] && ln -s "$LIBDIR/xrt" "$R/lib/xrt"

SAN=""
if [ "$MODE" = asan ]; then SAN="-fsanitize=address,undefined -fno-omit-frame-pointer"; fi
CFLAGS="-std=c11 -O1 -g -Wall -Wextra -D_GNU_SOURCE -I$ROOT/include $SAN"
CXXFLAGS="-std=c++14 -O1 -g -Wall -Wextra -Wno-unknown-pragmas -I$ROOT/include $SAN"
objs=""
for f in csrc/fpga/sr-fpga.c csrc/fpga/sr-fpga-pack.c csrc/fpga/sr-xrt.c csrc/fpga/sr-fpga-emu.c csrc/core/sr-status.c \
         csrc/spike/sr-spike-encode.c csrc/spike/sr-spike-ref.c csrc/spike/sr-spike-opt.c \
         tools/fpga/noop_host_test.c; do
    o=$W/$(basename "$f" .c).o
    $CC $CFLAGS -c "$ROOT/$f" -o "$o"
    objs="$objs $o"
done
kobjs=""
for k in spk_acc spk_core spk_csim; do  # the kernel and its threaded C-simulation run time
    $CXX $CXXFLAGS -c "$ROOT/firmware/kernels/$k.cpp" -o "$W/$k.o"
    kobjs="$kobjs $W/$k.o"
done
# XRT is NOT linked: the backend dlopens libxrt_coreutil.so.2
$CXX $SAN -o "$W/noop_host_test" $objs $kobjs -ldl -lpthread -lm
if nm -D "$W/noop_host_test" 2>/dev/null | grep -q ' U xrt'; then
    echo "run_noop_test: FAIL: the test binary links XRT symbols directly" >&2; exit 1
fi

$CC -std=c11 -Wall -Wextra -I/usr/include/xrt "$ROOT/tools/xclbin/gen_test_xclbin.c" -o "$W/gen_test_xclbin"
"$W/gen_test_xclbin" "$W/spk_acc.xclbin"
"$W/gen_test_xclbin" "$W/other.xclbin" --kernel other_kernel

RUN=""
ENVS="ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1"
if [ "$MODE" = valgrind ]; then
    command -v valgrind >/dev/null || { echo "run_noop_test: valgrind not installed" >&2; exit 2; }
    RUN="valgrind --error-exitcode=3 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite -q"
    ENVS=""
fi
ARGS="--xrt-root $R --xclbin $W/spk_acc.xclbin --wrong-kernel-xclbin $W/other.xclbin --fixture $ROOT/Tests/Fixtures/fpga/smollm2_slices.gguf"

status=0
echo "== main test ($MODE)"
# shellcheck disable=SC2086
env -u XILINX_XRT -u XCL_EMULATION_MODE -u XRT_INI_PATH $ENVS $RUN "$W/noop_host_test" $ARGS >"$W/main.log" 2>&1 || status=1
cat "$W/main.log"

# Under valgrind the timing cannot be tested: valgrind runs one thread at a time and the noop
# shim's completer thread busy-waits, so xrtRunStart itself blocks until the delayed run is
# done. In --valgrind mode the timeout test therefore runs natively (ASan mode checks it
# for leaks).
TRUN=$RUN
TMODE=$MODE
if [ "$MODE" = valgrind ]; then TRUN=""; TMODE="native"; fi
echo "== timeout test ($TMODE, noop_completion_delay_us=1000000)"
printf '[Runtime]\nnoop_completion_delay_us=1000000\n' >"$W/slow.ini"
# shellcheck disable=SC2086
env -u XILINX_XRT -u XCL_EMULATION_MODE XRT_INI_PATH="$W/slow.ini" $ENVS $TRUN "$W/noop_host_test" $ARGS --timeout-test >"$W/timeout.log" 2>&1 || status=1
cat "$W/timeout.log"

echo "== exit with the device still open ($TMODE): must exit 0, not crash in XRT's static destructors"
# shellcheck disable=SC2086
env -u XILINX_XRT -u XCL_EMULATION_MODE $ENVS ASAN_OPTIONS=detect_leaks=0 "$W/noop_host_test" $ARGS --exit-open >"$W/exit.log" 2>&1 || status=1
tail -1 "$W/exit.log"
grep -q "^noop_host_test: [0-9]* passed, 0 failed" "$W/exit.log" || status=1

echo "== spikerun-fpga --self-test ($MODE, emulated kernel)"
$CC $CFLAGS -DSPIKERUN_FPGA_EMULATE -c "$ROOT/firmware/host/spikerun-fpga.c" -o "$W/spikerun-fpga.o"
drv_objs=$(echo "$objs" | sed "s| $W/noop_host_test.o||")
$CXX $SAN -o "$W/spikerun-fpga" "$W/spikerun-fpga.o" $drv_objs $kobjs -ldl -lpthread -lm
# shellcheck disable=SC2086
env -u XRT_INI_PATH XILINX_XRT="$R" XCL_EMULATION_MODE=noop $ENVS $RUN "$W/spikerun-fpga" --xclbin "$W/spk_acc.xclbin" --self-test >"$W/driver.log" 2>&1 || status=1
cat "$W/driver.log"
grep -q "self-test: [0-9]* passed, 0 failed" "$W/driver.log" || status=1

echo "== control: XRT itself aborts when XILINX_XRT is unset (what the guard prevents)"
cat >"$W/raw_open.c" <<'CEOF'
#include <dlfcn.h>
#include <stdio.h>
int main(void) {
    void *lib = dlopen("libxrt_coreutil.so.2", RTLD_NOW);
    if (!lib) return 2;
    void *(*open_dev)(unsigned) = (void *(*)(unsigned))dlsym(lib, "xrtDeviceOpen");
    void *d = open_dev(0);
    printf("returned %p\n", d);
    return 0;
}
CEOF
$CC -std=gnu11 "$W/raw_open.c" -o "$W/raw_open" -ldl
set +e
env -u XILINX_XRT -u XCL_EMULATION_MODE "$W/raw_open" >"$W/raw.log" 2>&1
rc=$?
set -e
if [ $rc -eq 134 ] || [ $rc -gt 128 ]; then
    echo "ok raw xrtDeviceOpen without XILINX_XRT killed the process (exit $rc)"
else
    echo "note: raw xrtDeviceOpen without XILINX_XRT did not abort here (exit $rc); the guard stays"
fi

if grep -q "ERROR: LeakSanitizer\|ERROR: AddressSanitizer\|runtime error:\|definitely lost" "$W/main.log" "$W/timeout.log" "$W/driver.log"; then
    echo "run_noop_test: FAIL: sanitizer or valgrind reported a problem" >&2
    status=1
fi
if [ $status -eq 0 ] && grep -q "failed" "$W/main.log" && ! grep -q " [1-9][0-9]* failed" "$W/main.log" "$W/timeout.log"; then
    p1=$(sed -n 's/^noop_host_test: \([0-9]*\) passed.*/\1/p' "$W/main.log")
    p2=$(sed -n 's/^noop_host_test (timeout): \([0-9]*\) passed.*/\1/p' "$W/timeout.log")
    p3=$(sed -n 's/^self-test: \([0-9]*\) passed.*/\1/p' "$W/driver.log")
    echo "run_noop_test: PASS ($p1 + $p2 checks, driver self-test $p3, $MODE: no leaks or memory errors)"
    exit 0
fi
echo "run_noop_test: FAIL" >&2
exit 1
