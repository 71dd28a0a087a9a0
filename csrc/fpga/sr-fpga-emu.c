// sr-fpga-emu.c - the emulated FPGA device: the XRT C API subset of sr-xrt-decl.h
// implemented in process, running the C-simulation build of the HLS kernel.
//
// The "xclbin" of the emulated device is a shared object built from the HLS sources by
// `make -C firmware emu` (build/spk_acc.emu.so: kernels/spk_acc.cpp, kernels/spk_core.cpp
// and the threaded C-simulation run time kernels/spk_csim.cpp). Everything the host backend
// (sr-fpga.c) does goes through the same calls as on the board: device and kernel open,
// argument banks and offsets from the argument table (firmware/kernels/spk_acc.h), one buffer
// per argument (host memory, 4 KiB aligned; syncs are no-ops because host and "device"
// share it), xrtRunStart starts the kernel's top function (spk_acc(), or spk_token() for the
// token program: same argument table) on its own thread with
// the buffers' addresses, and the run's state is polled or waited for as on hardware.
// XRT itself is never loaded.
#include "sr-xrt-decl.h"
#include "../../firmware/kernels/spk_acc.h"
#include "../../firmware/kernels/spk_token.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef void (*spk_acc_fn)(const void *w0, const void *w1, const void *w2, const void *jobs,
                           const void *spk, void *out, unsigned int job_first, unsigned int n_jobs);

typedef struct emu_xclbin {
    void *lib;        // dlopen handle of the kernel library
    spk_acc_fn top;   // its spk_acc()
    spk_acc_fn token; // its spk_token() (the token program; same argument table), or NULL
} emu_xclbin;

typedef struct emu_kernel {
    spk_acc_fn top;
} emu_kernel;

typedef struct emu_bo {
    void *p;
    size_t size;
} emu_bo;

typedef struct emu_run {
    spk_acc_fn top;
    emu_bo *bo[6];               // buffer arguments 0..5
    unsigned int scalar[2];      // job_first, n_jobs
    pthread_mutex_t m;
    pthread_cond_t done;
    pthread_t thread;
    int started;                 // a thread exists that was not joined yet
    unsigned int state;          // SR_ERT_CMD_STATE_*
    unsigned int job_first, n_jobs;  // of the run in flight
} emu_run;

static int g_device;  // the one emulated device
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static emu_xclbin *g_last_xclbin;  // the xclbin loaded last (its kernel is what opens)

static const int k_bank_group[SPK_ACC_NARGS] = {  // memory group per argument: DDR 0, LPDDR 1
#define X(i, n, k, b, m, o, t, w) (k ? (strcmp(m, "DDR") == 0 ? 0 : 1) : -1),
    SPK_ACC_ARGS(X)
#undef X
};
static const uint32_t k_offset[SPK_ACC_NARGS] = {
#define X(i, n, k, b, m, o, t, w) o,
    SPK_ACC_ARGS(X)
#undef X
};
static const int k_is_ptr[SPK_ACC_NARGS] = {
#define X(i, n, k, b, m, o, t, w) k,
    SPK_ACC_ARGS(X)
#undef X
};

static int emu_ini_string(const char *key, const char *value) { (void)key; (void)value; return 0; }
static int emu_ini_uint(const char *key, unsigned int value) { (void)key; (void)value; return 0; }

static sr_xrt_device emu_device_open(unsigned int index) {
    if (index != 0) {
        errno = ENODEV;
        return NULL;
    }
    return &g_device;
}
static int emu_device_close(sr_xrt_device d) { return d == &g_device ? 0 : -EINVAL; }
static int emu_load_xclbin(sr_xrt_device d, sr_xrt_xclbin x) { return d == &g_device && x ? 0 : -EINVAL; }

static sr_xrt_xclbin emu_xclbin_alloc(const char *filename) {
    void *lib = dlopen(filename, RTLD_NOW | RTLD_LOCAL);
    if (!lib) return NULL;
    void *sym = dlsym(lib, SPK_ACC_KERNEL_NAME);
    if (!sym) {
        dlclose(lib);
        return NULL;
    }
    emu_xclbin *x = calloc(1, sizeof *x);
    if (!x) {
        dlclose(lib);
        return NULL;
    }
    x->lib = lib;
    memcpy(&x->top, &sym, sizeof sym);
    void *tsym = dlsym(lib, SPK_TOKEN_KERNEL_NAME);
    if (tsym) memcpy(&x->token, &tsym, sizeof tsym);
    return x;
}
// The library stays loaded: kernel threads of a timed-out run may still execute its code.
static int emu_xclbin_free(sr_xrt_xclbin x) { free(x); return 0; }
static int emu_xclbin_uuid(sr_xrt_xclbin x, unsigned char *uuid) {
    (void)x;
    memset(uuid, 0, 16);
    memcpy(uuid, "spikerun-emu", 12);
    return 0;
}
static int emu_xclbin_xsa(sr_xrt_xclbin x, char *name, int size, int *ret_size) {
    (void)x;
    const char *s = "spikerun_emulated_vck190";
    int n = (int)strlen(s);
    if (ret_size) *ret_size = n + 1;
    if (name && size > 0) snprintf(name, (size_t)size, "%s", s);
    return 0;
}

static sr_xrt_kernel emu_kernel_open(sr_xrt_device d, const unsigned char *uuid, const char *name) {
    (void)uuid;
    if (d != &g_device || !name) return NULL;
    const int token = strcmp(name, SPK_TOKEN_KERNEL_NAME) == 0;
    if (!token && strcmp(name, SPK_ACC_KERNEL_NAME) != 0) return NULL;
    pthread_mutex_lock(&g_lock);
    spk_acc_fn top = g_last_xclbin ? (token ? g_last_xclbin->token : g_last_xclbin->top) : NULL;
    pthread_mutex_unlock(&g_lock);
    if (!top) return NULL;
    emu_kernel *k = calloc(1, sizeof *k);
    if (k) k->top = top;
    return k;
}
static int emu_kernel_close(sr_xrt_kernel k) { free(k); return 0; }
static int emu_arg_group(sr_xrt_kernel k, int argno) {
    (void)k;
    return argno >= 0 && argno < SPK_ACC_NARGS ? k_bank_group[argno] : -1;
}
static uint32_t emu_arg_offset(sr_xrt_kernel k, int argno) {
    (void)k;
    return argno >= 0 && argno < SPK_ACC_NARGS ? k_offset[argno] : 0xffffffffu;
}

static sr_xrt_bo emu_bo_alloc(sr_xrt_device d, size_t size, uint64_t flags, uint32_t grp) {
    (void)flags;
    if (d != &g_device || grp > 1 || size == 0) return NULL;
    emu_bo *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    size_t bytes = (size + 4095) & ~(size_t)4095;
    b->p = aligned_alloc(4096, bytes);
    if (!b->p) {
        free(b);
        return NULL;
    }
    b->size = bytes;
    return b;
}
static int emu_bo_free(sr_xrt_bo bo) {
    emu_bo *b = bo;
    if (b) free(b->p);
    free(b);
    return 0;
}
static size_t emu_bo_size(sr_xrt_bo bo) { return ((emu_bo *)bo)->size; }
static uint64_t emu_bo_address(sr_xrt_bo bo) { return (uint64_t)(uintptr_t)((emu_bo *)bo)->p; }
static int emu_bo_sync(sr_xrt_bo bo, unsigned int dir, size_t size, size_t offset) {
    emu_bo *b = bo;
    if (dir > 1 || offset > b->size || size > b->size - offset) return -EINVAL;
    return 0;  // host and emulated device share the memory
}
static void *emu_bo_map(sr_xrt_bo bo) { return ((emu_bo *)bo)->p; }

static sr_xrt_run emu_run_open(sr_xrt_kernel k) {
    emu_kernel *kk = k;
    emu_run *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->top = kk->top;
    pthread_mutex_init(&r->m, NULL);
    pthread_cond_init(&r->done, NULL);
    r->state = SR_ERT_CMD_STATE_NEW;
    return r;
}

static int emu_run_set_arg(sr_xrt_run run, int index, ...) {
    emu_run *r = run;
    if (index < 0 || index >= SPK_ACC_NARGS) return -EINVAL;
    va_list ap;
    va_start(ap, index);
    if (k_is_ptr[index])
        r->bo[index] = va_arg(ap, emu_bo *);
    else
        r->scalar[index - 6] = va_arg(ap, unsigned int);
    va_end(ap);
    return 0;
}

static void *emu_run_thread(void *arg) {
    emu_run *r = arg;
    r->top(r->bo[0]->p, r->bo[1]->p, r->bo[2]->p, r->bo[3]->p, r->bo[4]->p, r->bo[5]->p, r->job_first,
           r->n_jobs);
    pthread_mutex_lock(&r->m);
    r->state = SR_ERT_CMD_STATE_COMPLETED;
    pthread_cond_broadcast(&r->done);
    pthread_mutex_unlock(&r->m);
    return NULL;
}

static void join_finished(emu_run *r) {  // caller holds r->m; joins a completed run's thread
    if (r->started && r->state == SR_ERT_CMD_STATE_COMPLETED) {
        pthread_join(r->thread, NULL);
        r->started = 0;
    }
}

static int emu_run_start(sr_xrt_run run) {
    emu_run *r = run;
    for (int i = 0; i < 6; i++)
        if (!r->bo[i]) return -EINVAL;
    pthread_mutex_lock(&r->m);
    join_finished(r);
    if (r->started) {  // still running
        pthread_mutex_unlock(&r->m);
        return -EBUSY;
    }
    r->job_first = r->scalar[0];
    r->n_jobs = r->scalar[1];
    r->state = SR_ERT_CMD_STATE_RUNNING;
    int rc = pthread_create(&r->thread, NULL, emu_run_thread, r);
    if (rc == 0) r->started = 1;
    else r->state = SR_ERT_CMD_STATE_ERROR;
    pthread_mutex_unlock(&r->m);
    return rc == 0 ? 0 : -rc;
}

static unsigned int emu_run_state(sr_xrt_run run) {
    emu_run *r = run;
    pthread_mutex_lock(&r->m);
    join_finished(r);
    unsigned int st = r->state;
    pthread_mutex_unlock(&r->m);
    return st;
}

static unsigned int emu_run_wait_for(sr_xrt_run run, unsigned int timeout_ms) {
    emu_run *r = run;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000u;
    until.tv_nsec += (long)(timeout_ms % 1000u) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&r->m);
    while (r->state == SR_ERT_CMD_STATE_RUNNING)
        if (pthread_cond_timedwait(&r->done, &r->m, &until) == ETIMEDOUT) break;
    join_finished(r);
    unsigned int st = r->state;
    pthread_mutex_unlock(&r->m);
    return st;
}

static int emu_run_close(sr_xrt_run run) {
    emu_run *r = run;
    pthread_mutex_lock(&r->m);
    int started = r->started;
    pthread_mutex_unlock(&r->m);
    if (started) pthread_join(r->thread, NULL);  // a run in flight finishes first
    pthread_mutex_destroy(&r->m);
    pthread_cond_destroy(&r->done);
    free(r);
    return 0;
}

static sr_xrt_xclbin emu_xclbin_alloc_tracked(const char *filename) {
    emu_xclbin *x = emu_xclbin_alloc(filename);
    pthread_mutex_lock(&g_lock);
    if (x) g_last_xclbin = x;
    pthread_mutex_unlock(&g_lock);
    return x;
}

static int emu_xclbin_free_tracked(sr_xrt_xclbin x) {
    pthread_mutex_lock(&g_lock);
    if (x == g_last_xclbin) g_last_xclbin = NULL;
    pthread_mutex_unlock(&g_lock);
    return emu_xclbin_free(x);
}

static const sr_xrt_api g_emu = {
    .lib = NULL,
    .xrtIniStringSet = emu_ini_string,
    .xrtIniUintSet = emu_ini_uint,
    .xrtDeviceOpen = emu_device_open,
    .xrtDeviceClose = emu_device_close,
    .xrtDeviceLoadXclbinHandle = emu_load_xclbin,
    .xrtXclbinAllocFilename = emu_xclbin_alloc_tracked,
    .xrtXclbinFreeHandle = emu_xclbin_free_tracked,
    .xrtXclbinGetUUID = emu_xclbin_uuid,
    .xrtXclbinGetXSAName = emu_xclbin_xsa,
    .xrtPLKernelOpen = emu_kernel_open,
    .xrtKernelClose = emu_kernel_close,
    .xrtKernelArgGroupId = emu_arg_group,
    .xrtKernelArgOffset = emu_arg_offset,
    .xrtBOAlloc = emu_bo_alloc,
    .xrtBOFree = emu_bo_free,
    .xrtBOSize = emu_bo_size,
    .xrtBOAddress = emu_bo_address,
    .xrtBOSync = emu_bo_sync,
    .xrtBOMap = emu_bo_map,
    .xrtRunOpen = emu_run_open,
    .xrtRunSetArg = emu_run_set_arg,
    .xrtRunStart = emu_run_start,
    .xrtRunWaitFor = emu_run_wait_for,
    .xrtRunState = emu_run_state,
    .xrtRunClose = emu_run_close,
};

sr_status sr_xrt_emu_load(const char *kernel_lib, const sr_xrt_api **out) {
    if (!kernel_lib || !out) return sr_fail(SR_ERR_INVALID_ARG, "sr_xrt_emu_load: arguments");
    void *lib = dlopen(kernel_lib, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        const char *e = dlerror();
        return sr_fail(SR_ERR_NO_DEVICE, "FPGA emulation unavailable: cannot load the emulated kernel '%s' (%s); "
                       "build it with `make -C firmware emu`", kernel_lib, e ? e : "dlopen failed");
    }
    const int ok = dlsym(lib, SPK_ACC_KERNEL_NAME) != NULL;
    dlclose(lib);
    if (!ok)
        return sr_fail(SR_ERR_FORMAT, "FPGA emulation unavailable: '%s' has no %s() (not built by `make -C "
                       "firmware emu`)", kernel_lib, SPK_ACC_KERNEL_NAME);
    *out = &g_emu;
    return SR_OK;
}
