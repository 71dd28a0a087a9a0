// sr-xrt.c - run-time loading of XRT's C API (libxrt_coreutil.so.2) with the abort trap
// closed: XRT is touched only after the environment check passes, and only when asked.
#include "sr-xrt-decl.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && !S_ISDIR(st.st_mode);
}

// The shim library XRT will load from $XILINX_XRT/lib for the current XCL_EMULATION_MODE,
// or NULL (with a reason) for a mode spikerun refuses.
static const char *shim_for_mode(const char *mode, const char **why) {
    if (!mode || !*mode) return "libxrt_core.so.2";
    if (strcmp(mode, "noop") == 0) return "libxrt_noop.so.2";
    if (strcmp(mode, "sw_emu") == 0) return "libxrt_swemu.so.2";
    if (strcmp(mode, "hw_emu") == 0) return "libxrt_hwemu.so.2";
    *why = "is not one of noop, sw_emu, hw_emu";
    return NULL;
}

sr_status sr_xrt_check_env(void) {
#if defined(__aarch64__)
    // Edge XRT (PetaLinux on the VCK190's A72s) defaults to /usr and does not abort.
    return SR_OK;
#else
    const char *root = getenv("XILINX_XRT");
    if (!root || !*root)
        return sr_fail(SR_ERR_NO_DEVICE,
                       "FPGA backend unavailable: XILINX_XRT is unset (XRT would abort the "
                       "process); set it to the XRT install directory, e.g. /opt/xilinx/xrt");
    if (!is_dir(root))
        return sr_fail(SR_ERR_NO_DEVICE,
                       "FPGA backend unavailable: XILINX_XRT='%s' is not a directory", root);
    const char *mode = getenv("XCL_EMULATION_MODE");
    const char *why = NULL;
    const char *shim = shim_for_mode(mode, &why);
    if (!shim)
        return sr_fail(SR_ERR_NO_DEVICE,
                       "FPGA backend unavailable: XCL_EMULATION_MODE='%s' %s", mode, why);
    char path[4096];
    if (snprintf(path, sizeof path, "%s/lib/%s", root, shim) >= (int)sizeof path)
        return sr_fail(SR_ERR_NO_DEVICE, "FPGA backend unavailable: XILINX_XRT path too long");
    if (!is_file(path))
        return sr_fail(SR_ERR_NO_DEVICE,
                       "FPGA backend unavailable: XILINX_XRT='%s' has no lib/%s (XRT would abort "
                       "the process; on Debian point XILINX_XRT at a directory whose lib/ links "
                       "to /usr/lib/x86_64-linux-gnu/%s)", root, shim, shim);
    return SR_OK;
#endif
}

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static sr_xrt_api g_api;
static sr_status g_status = SR_ERR_NO_DEVICE;
static char g_error[512];

static void load_once(void) {
    const char *libname = "libxrt_coreutil.so.2";
    void *lib = dlopen(libname, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        const char *e = dlerror();
        snprintf(g_error, sizeof g_error,
                 "FPGA backend unavailable: cannot load %s (%s); install XRT (Debian: xrt, "
                 "libxrt2) or add its lib directory to LD_LIBRARY_PATH",
                 libname, e ? e : "not found");
        return;
    }
    sr_xrt_api api;
    memset(&api, 0, sizeof api);
    api.lib = lib;
#define SR_XRT_SYM(ret, name, params)                                                           \
    do {                                                                                        \
        dlerror();                                                                              \
        void *p = dlsym(lib, #name);                                                            \
        if (!p) {                                                                               \
            snprintf(g_error, sizeof g_error,                                                   \
                     "FPGA backend unavailable: %s has no symbol %s (XRT too old? 2.13+ needed)", \
                     libname, #name);                                                           \
            dlclose(lib);                                                                       \
            return;                                                                             \
        }                                                                                       \
        memcpy(&api.name, &p, sizeof p);                                                        \
    } while (0);
    SR_XRT_FUNCS(SR_XRT_SYM)
#undef SR_XRT_SYM
    // Silence XRT's own console output (must precede every other XRT call) unless the user
    // points XRT at an xrt.ini (XRT_INI_PATH, as run_app.sh does on the board): then it wins.
    const char *ini = getenv("XRT_INI_PATH");
    if (!ini || !*ini) {
        api.xrtIniStringSet("Runtime.runtime_log", "null");
        api.xrtIniUintSet("Runtime.verbosity", 0);
    }
    g_api = api;
    g_status = SR_OK;
}

sr_status sr_xrt_load(const sr_xrt_api **out) {
    if (!out) return sr_fail(SR_ERR_INVALID_ARG, "sr_xrt_load: out is NULL");
    sr_status s = sr_xrt_check_env();
    if (s != SR_OK) return s;
    pthread_once(&g_once, load_once);
    if (g_status != SR_OK) return sr_fail(g_status, "%s", g_error);
    *out = &g_api;
    return SR_OK;
}

int sr_xrt_set_arg_bo(const sr_xrt_api *x, sr_xrt_run r, int idx, sr_xrt_bo bo) {
    return x->xrtRunSetArg(r, idx, bo);
}

int sr_xrt_set_arg_u32(const sr_xrt_api *x, sr_xrt_run r, int idx, uint32_t v) {
    return x->xrtRunSetArg(r, idx, (unsigned int)v);
}

int sr_xrt_set_arg_u64(const sr_xrt_api *x, sr_xrt_run r, int idx, uint64_t v) {
    return x->xrtRunSetArg(r, idx, v);
}

const char *sr_xrt_state_name(unsigned int state) {
    switch (state) {
    case SR_ERT_CMD_STATE_NEW: return "new";
    case SR_ERT_CMD_STATE_QUEUED: return "queued";
    case SR_ERT_CMD_STATE_RUNNING: return "running";
    case SR_ERT_CMD_STATE_COMPLETED: return "completed";
    case SR_ERT_CMD_STATE_ERROR: return "error";
    case SR_ERT_CMD_STATE_ABORT: return "abort";
    case SR_ERT_CMD_STATE_SUBMITTED: return "submitted";
    case SR_ERT_CMD_STATE_TIMEOUT: return "timeout";
    case SR_ERT_CMD_STATE_NORESPONSE: return "no response";
    }
    return "unknown";
}
