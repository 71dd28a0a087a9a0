#!/bin/sh
# check_xrt_decls.sh - compile-only proof that csrc/fpga/sr-xrt-decl.h (spikerun's own
# prototypes of the XRT C API, used through dlopen/dlsym) matches XRT's real headers.
#
# For every function in SR_XRT_FUNCS it assigns the real function (from /usr/include/xrt)
# to a pointer of our typedef'd type, with -Werror, in C11 with gcc and with clang when
# present: any difference in a return or parameter type fails to compile. The constants
# (sync directions, BO flags, ert_cmd_state values) are compared with _Static_assert.
# Finally every name must be exported by libxrt_coreutil.so.2 (some declared functions,
# e.g. xrtXclbinAllocAxlf in 2.13, are not).
#
# Usage: tools/fpga/check_xrt_decls.sh        (XRT_INC / XRT_LIB override the locations)
# Exit 0 and "check_xrt_decls: ok ..." on success; 1 on a mismatch; 2 if XRT headers are
# missing (install Debian's libxrt-dev).
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
XRT_INC=${XRT_INC:-/usr/include/xrt}
XRT_LIB=${XRT_LIB:-}
if [ -z "$XRT_LIB" ]; then
    for d in /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib /opt/xilinx/xrt/lib; do
        if [ -e "$d/libxrt_coreutil.so.2" ]; then XRT_LIB=$d; break; fi
    done
fi
if [ ! -f "$XRT_INC/xrt/xrt_kernel.h" ]; then
    echo "check_xrt_decls: XRT headers not found in $XRT_INC (install libxrt-dev)" >&2
    exit 2
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT INT TERM

cat >"$T/check.c" <<'CEOF'
#include <xrt/xrt_device.h>
#include <xrt/xrt_bo.h>
#include <xrt/xrt_kernel.h>
#include <experimental/xrt_xclbin.h>
#include <experimental/xrt_ini.h>
#include <stddef.h>

#include "sr-xrt-decl.h"

/* Each field has our typedef'd pointer type; initializing it with the real function is a
   constraint violation (an error under -Werror) unless the two types are compatible. */
const sr_xrt_api sr_check_api = {
    NULL,
#define SR_CHECK(ret, name, params) &name,
    SR_XRT_FUNCS(SR_CHECK)
#undef SR_CHECK
};

_Static_assert(SR_XCL_BO_SYNC_BO_TO_DEVICE == XCL_BO_SYNC_BO_TO_DEVICE, "sync to device");
_Static_assert(SR_XCL_BO_SYNC_BO_FROM_DEVICE == XCL_BO_SYNC_BO_FROM_DEVICE, "sync from device");
_Static_assert(SR_XRT_BO_FLAGS_NONE == XRT_BO_FLAGS_NONE, "bo flags none");
_Static_assert(SR_XRT_BO_FLAGS_CACHEABLE == XRT_BO_FLAGS_CACHEABLE, "bo flags cacheable");
_Static_assert(SR_ERT_CMD_STATE_NEW == ERT_CMD_STATE_NEW, "new");
_Static_assert(SR_ERT_CMD_STATE_QUEUED == ERT_CMD_STATE_QUEUED, "queued");
_Static_assert(SR_ERT_CMD_STATE_RUNNING == ERT_CMD_STATE_RUNNING, "running");
_Static_assert(SR_ERT_CMD_STATE_COMPLETED == ERT_CMD_STATE_COMPLETED, "completed");
_Static_assert(SR_ERT_CMD_STATE_ERROR == ERT_CMD_STATE_ERROR, "error");
_Static_assert(SR_ERT_CMD_STATE_ABORT == ERT_CMD_STATE_ABORT, "abort");
_Static_assert(SR_ERT_CMD_STATE_SUBMITTED == ERT_CMD_STATE_SUBMITTED, "submitted");
_Static_assert(SR_ERT_CMD_STATE_TIMEOUT == ERT_CMD_STATE_TIMEOUT, "timeout");
_Static_assert(SR_ERT_CMD_STATE_NORESPONSE == ERT_CMD_STATE_NORESPONSE, "noresponse");
_Static_assert(sizeof(sr_xrt_uuid) == sizeof(xuid_t), "uuid size");
_Static_assert(sizeof(sr_xrt_device) == sizeof(xrtDeviceHandle), "device handle");
_Static_assert(sizeof(sr_xrt_bo) == sizeof(xrtBufferHandle), "bo handle");
_Static_assert(sizeof(uint64_t) == sizeof(xrtBufferFlags), "bo flags type");
_Static_assert(sizeof(uint32_t) == sizeof(xrtMemoryGroup), "memory group type");
_Static_assert(sizeof(enum ert_cmd_state) == sizeof(unsigned int), "enum size");
_Static_assert(sizeof(enum xclBOSyncDirection) == sizeof(unsigned int), "enum size");
CEOF

CFLAGS="-std=c11 -Wall -Wextra -Werror -fsyntax-only -I$XRT_INC -I$ROOT/csrc/fpga -I$ROOT/include"
compilers=""
for cc in gcc clang; do
    command -v "$cc" >/dev/null 2>&1 || continue
    if ! "$cc" $CFLAGS "$T/check.c" 2>"$T/err.txt"; then
        echo "check_xrt_decls: FAIL: sr-xrt-decl.h does not match XRT's headers ($cc):" >&2
        grep -E 'error' "$T/err.txt" | head -20 >&2
        exit 1
    fi
    compilers="$compilers $cc"
done
if [ -z "$compilers" ]; then
    echo "check_xrt_decls: no C compiler (gcc or clang) found" >&2
    exit 2
fi

# the names, straight from the macro
printf '#include "sr-xrt-decl.h"\n#define SR_NAME(r, n, p) SR_XRT_NAME n\nSR_XRT_FUNCS(SR_NAME)\n' >"$T/names.c"
names=$(cpp -P -I"$ROOT/csrc/fpga" -I"$ROOT/include" "$T/names.c" | tr ' ' '\n' |
        awk 'p {print; p=0} $0=="SR_XRT_NAME" {p=1}')
count=$(echo "$names" | grep -c .)
exports="not checked (libxrt_coreutil.so.2 not found)"
if [ -n "$XRT_LIB" ] && command -v nm >/dev/null 2>&1; then
    nm -D --defined-only "$XRT_LIB/libxrt_coreutil.so.2" | awk '{print $NF}' | sort -u >"$T/exports.txt"
    missing=""
    for n in $names; do
        grep -qx "$n" "$T/exports.txt" || missing="$missing $n"
    done
    if [ -n "$missing" ]; then
        echo "check_xrt_decls: FAIL: not exported by $XRT_LIB/libxrt_coreutil.so.2:$missing" >&2
        exit 1
    fi
    exports="all exported by $XRT_LIB/libxrt_coreutil.so.2"
fi
echo "check_xrt_decls: ok ($count functions match $XRT_INC with$compilers; $exports)"
