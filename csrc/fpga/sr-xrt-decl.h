// sr-xrt-decl.h - PRIVATE: spikerun's own prototypes of the XRT C API subset it uses.
//
// XRT is never linked: csrc/fpga/sr-xrt.c dlopen()s libxrt_coreutil.so.2 and looks these
// names up with dlsym, so CPU-only builds need no XRT at all. The types below must match
// XRT's headers exactly; tools/fpga/check_xrt_decls.sh compiles a C file that includes the
// real headers (/usr/include/xrt) and assigns every real function to a pointer of the type
// declared here (-Werror: any mismatch fails to compile), checks the constants with
// _Static_assert, and checks that libxrt_coreutil.so.2 exports every name.
//
// Handles are opaque void* in XRT too. xuid_t is uuid_t = unsigned char[16]. Enum parameters
// and results (xclBOSyncDirection, ert_cmd_state) are `unsigned int`: C compilers give an enum
// without negative values that type, and the check proves the pointer types compatible.
#ifndef SR_XRT_DECL_H
#define SR_XRT_DECL_H

#include <stddef.h>
#include <stdint.h>

typedef void *sr_xrt_device;   // xrtDeviceHandle
typedef void *sr_xrt_xclbin;   // xrtXclbinHandle
typedef void *sr_xrt_kernel;   // xrtKernelHandle
typedef void *sr_xrt_bo;       // xrtBufferHandle
typedef void *sr_xrt_run;      // xrtRunHandle
typedef unsigned char sr_xrt_uuid[16];  // xuid_t

// enum xclBOSyncDirection (xrt.h)
#define SR_XCL_BO_SYNC_BO_TO_DEVICE   0u
#define SR_XCL_BO_SYNC_BO_FROM_DEVICE 1u
// xrtBufferFlags (xrt_mem.h)
#define SR_XRT_BO_FLAGS_NONE          0u
#define SR_XRT_BO_FLAGS_CACHEABLE     (1u << 24)
// enum ert_cmd_state (ert.h)
#define SR_ERT_CMD_STATE_NEW        1u
#define SR_ERT_CMD_STATE_QUEUED     2u
#define SR_ERT_CMD_STATE_RUNNING    3u
#define SR_ERT_CMD_STATE_COMPLETED  4u
#define SR_ERT_CMD_STATE_ERROR      5u
#define SR_ERT_CMD_STATE_ABORT      6u
#define SR_ERT_CMD_STATE_SUBMITTED  7u
#define SR_ERT_CMD_STATE_TIMEOUT    8u
#define SR_ERT_CMD_STATE_NORESPONSE 9u

// X(return type, name, parameter list) - the whole subset, nothing else is looked up.
#define SR_XRT_FUNCS(X)                                                                      \
    X(int, xrtIniStringSet, (const char *key, const char *value))                            \
    X(int, xrtIniUintSet, (const char *key, unsigned int value))                             \
    X(sr_xrt_device, xrtDeviceOpen, (unsigned int index))                                    \
    X(int, xrtDeviceClose, (sr_xrt_device dhdl))                                             \
    X(int, xrtDeviceLoadXclbinHandle, (sr_xrt_device dhdl, sr_xrt_xclbin xhdl))              \
    X(sr_xrt_xclbin, xrtXclbinAllocFilename, (const char *filename))                         \
    X(int, xrtXclbinFreeHandle, (sr_xrt_xclbin xhdl))                                        \
    X(int, xrtXclbinGetUUID, (sr_xrt_xclbin xhdl, unsigned char *ret_uuid))                  \
    X(int, xrtXclbinGetXSAName, (sr_xrt_xclbin xhdl, char *name, int size, int *ret_size))   \
    X(sr_xrt_kernel, xrtPLKernelOpen, (sr_xrt_device dhdl, const unsigned char *xclbin_id,   \
                                       const char *name))                                    \
    X(int, xrtKernelClose, (sr_xrt_kernel khdl))                                             \
    X(int, xrtKernelArgGroupId, (sr_xrt_kernel khdl, int argno))                             \
    X(uint32_t, xrtKernelArgOffset, (sr_xrt_kernel khdl, int argno))                         \
    X(sr_xrt_bo, xrtBOAlloc, (sr_xrt_device dhdl, size_t size, uint64_t flags, uint32_t grp))\
    X(int, xrtBOFree, (sr_xrt_bo bhdl))                                                      \
    X(size_t, xrtBOSize, (sr_xrt_bo bhdl))                                                   \
    X(uint64_t, xrtBOAddress, (sr_xrt_bo bhdl))                                              \
    X(int, xrtBOSync, (sr_xrt_bo bhdl, unsigned int dir, size_t size, size_t offset))        \
    X(void *, xrtBOMap, (sr_xrt_bo bhdl))                                                    \
    X(sr_xrt_run, xrtRunOpen, (sr_xrt_kernel khdl))                                          \
    X(int, xrtRunSetArg, (sr_xrt_run rhdl, int index, ...))                                  \
    X(int, xrtRunStart, (sr_xrt_run rhdl))                                                   \
    X(unsigned int, xrtRunWaitFor, (sr_xrt_run rhdl, unsigned int timeout_ms))               \
    X(unsigned int, xrtRunState, (sr_xrt_run rhdl))                                          \
    X(int, xrtRunClose, (sr_xrt_run rhdl))

// One function-pointer type per entry: sr_xrt_<name>_fn.
#define SR_XRT_TYPEDEF(ret, name, params) typedef ret(*sr_xrt_##name##_fn) params;
SR_XRT_FUNCS(SR_XRT_TYPEDEF)
#undef SR_XRT_TYPEDEF

// The loaded library: one pointer per function (all non-NULL once loaded).
typedef struct sr_xrt_api {
    void *lib;  // dlopen handle of libxrt_coreutil.so.2
#define SR_XRT_FIELD(ret, name, params) sr_xrt_##name##_fn name;
    SR_XRT_FUNCS(SR_XRT_FIELD)
#undef SR_XRT_FIELD
} sr_xrt_api;

#include "spikerun/sr-status.h"

// Checks that calling XRT cannot abort the process (x86: XILINX_XRT must name a directory
// holding lib/libxrt_core.so.2, or the shim XCL_EMULATION_MODE selects), then loads
// libxrt_coreutil.so.2 once per process and silences its logging. Never opens a device.
// On failure: a status and sr_last_error() explaining why; *out untouched.
sr_status sr_xrt_load(const sr_xrt_api **out);

// The emulated device (sr-fpga-emu.c): the same API implemented in process, running the
// C-simulation build of the HLS kernel from `kernel_lib` (firmware/build/spk_acc.emu.so,
// `make -C firmware emu`). Checks that the library loads and has spk_acc(); never loads XRT.
sr_status sr_xrt_emu_load(const char *kernel_lib, const sr_xrt_api **out);

// Only the environment check of sr_xrt_load (no dlopen): SR_OK or SR_ERR_NO_DEVICE + reason.
sr_status sr_xrt_check_env(void);

// Fixed-arity wrappers of the variadic xrtRunSetArg (Swift cannot call variadics; and the
// C type passed must be exactly the one in the kernel metadata).
int sr_xrt_set_arg_bo(const sr_xrt_api *x, sr_xrt_run r, int idx, sr_xrt_bo bo);
int sr_xrt_set_arg_u32(const sr_xrt_api *x, sr_xrt_run r, int idx, uint32_t v);  // "unsigned int"
int sr_xrt_set_arg_u64(const sr_xrt_api *x, sr_xrt_run r, int idx, uint64_t v);  // 64-bit scalars

// Name of an ert_cmd_state ("completed", "error", "timeout", ...).
const char *sr_xrt_state_name(unsigned int state);

#endif // SR_XRT_DECL_H
