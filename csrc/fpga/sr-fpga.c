// sr-fpga.c - XRT host backend of the spk_acc kernel: device, xclbin, kernel, buffers, runs.
//
// Buffers (one per pointer argument, each in the bank xrtKernelArgGroupId names):
//   w0 / w1 / w2  packed weight shards (uploaded once)       DDR4 / LPDDR4 / LPDDR4
//   jobs          one spk_job per matrix (job i = matrix i)  uploaded once
//   spk           one slot per input slot (max size)         per step: used lines only
//   out           float outputs of every job                 per step: the run's range only
#include "sr-fpga-internal.h"
#include "sr-fpga-pack.h"
#include "sr-xrt-decl.h"
#include "../../firmware/kernels/spk_token.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

enum { N_BUF = 6 };

typedef struct fpga_matrix_info {
    sr_spike_weights shape;  // shape fields for sr_spike_matvec_check (sr_fpga_weights_shape)
    int32_t slot;
    uint32_t chunks[3];      // chunks per engine
    uint32_t out_line;       // line offset of the job's outputs in `out`
    uint32_t out_lines;      // lines of outputs (all chunks, padding rows included)
} fpga_matrix_info;

typedef struct fpga_slot_info {
    int32_t  n_in;           // 0 = unused slot number
    uint32_t line;           // offset in `spk`
} fpga_slot_info;

struct sr_fpga {
    const sr_xrt_api *x;
    sr_fpga_params p;
    char xclbin_path[1024];
    char kernel_name[64];
    char platform[128];
    sr_xrt_device dev;
    sr_xrt_xclbin xclbin;
    sr_xrt_kernel kernel;
    sr_xrt_run run;
    sr_xrt_kernel tkernel;   // spk_token (params.token_program), shares the buffers
    sr_xrt_run trun;
    sr_xrt_uuid uuid;
    int group[SPK_ACC_NARGS];
    uint32_t offset[SPK_ACC_NARGS];
    sr_xrt_bo bo[N_BUF];
    void *map[N_BUF];
    uint64_t bo_bytes[N_BUF];
    // uploaded model: one job per matrix, job i = matrix i
    int32_t n_matrices, n_slots;
    fpga_matrix_info *mat;
    fpga_slot_info *slot;
    // token program (sr_fpga_upload_program): descriptors after the jobs, arena after outputs
    uint32_t n_desc, arena_line, arena_lines;
    // state
    int pending;             // a timed-out run may still be in flight (1: spk_acc, 2: spk_token)
    sr_fpga_stats stats;
    sr_fpga_run_hook hook;
    void *hook_user;
    struct sr_fpga *next_open;  // list of open devices (g_open), see close_all_at_exit
};

// XRT must not outlive its own static state: at exit(), the shim's globals (noop: its BO
// table) are destroyed before libxrt_coreutil's handle maps, which then release every handle
// still open and crash (SIGSEGV in xclFreeBO). So devices still open at exit are closed by an
// atexit handler registered after XRT is loaded (handlers run in reverse order: ours first).
// g_lock serializes that with sr_fpga_close running on another thread during exit.
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t g_atexit_once = PTHREAD_ONCE_INIT;
static sr_fpga *g_open;
static int g_exited;

static const char *const k_arg_names[SPK_ACC_NARGS] = {
#define X(i, n, k, b, m, o, t, w) #n,
    SPK_ACC_ARGS(X)
#undef X
};
static const int k_arg_global[SPK_ACC_NARGS] = {
#define X(i, n, k, b, m, o, t, w) k,
    SPK_ACC_ARGS(X)
#undef X
};
static const char *const k_arg_bank[SPK_ACC_NARGS] = {
#define X(i, n, k, b, m, o, t, w) m,
    SPK_ACC_ARGS(X)
#undef X
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *shim_name(void) {
#if defined(__aarch64__)
    return "hw";
#else
    const char *m = getenv("XCL_EMULATION_MODE");
    return (m && *m) ? m : "hw";
#endif
}

sr_fpga_params sr_fpga_default_params(void) {
    sr_fpga_params p;
    memset(&p, 0, sizeof p);
    p.kernel_name = NULL;
    p.device_index = 0;
    p.timeout_ms = 0;
    p.blocking_wait = false;
    return p;
}

sr_status sr_fpga_probe(void) {
    const sr_xrt_api *x;
    return sr_xrt_load(&x);
}

sr_status sr_fpga_list_devices(sr_fpga_device_info *out, int32_t cap, int32_t *n_found) {
    if (!n_found || cap < 0 || (cap > 0 && !out))
        return sr_fail(SR_ERR_INVALID_ARG, "sr_fpga_list_devices: bad arguments");
    *n_found = 0;
    const sr_xrt_api *x;
    sr_status s = sr_xrt_load(&x);
    if (s != SR_OK) return s;
    const char *shim = shim_name();
    // The noop shim opens any index; it stands for one simulated device.
    const int32_t limit = strcmp(shim, "noop") == 0 ? 1 : 16;
    int32_t n = 0;
    for (int32_t i = 0; i < limit; i++) {
        sr_xrt_device d = x->xrtDeviceOpen((unsigned)i);
        if (!d) break;
        x->xrtDeviceClose(d);
        if (n < cap) {
            out[n].index = i;
            snprintf(out[n].shim, sizeof out[n].shim, "%s", shim);
        }
        n++;
    }
    *n_found = n;
    return SR_OK;
}

static sr_status xrt_fail(sr_status s, const char *what, int rc) {
    return sr_fail(s, "fpga: %s failed (XRT returned %d: %s)", what, rc, strerror(rc < 0 ? -rc : rc));
}

static void free_buffers(sr_fpga *f) {
    for (int i = 0; i < N_BUF; i++) {
        if (f->bo[i]) f->x->xrtBOFree(f->bo[i]);
        f->bo[i] = NULL;
        f->map[i] = NULL;
        f->bo_bytes[i] = 0;
    }
    free(f->mat);
    free(f->slot);
    f->mat = NULL;
    f->slot = NULL;
    f->n_matrices = f->n_slots = 0;
}

// Waits for the outstanding run. SR_OK when completed.
static sr_status wait_run_on(sr_fpga *f, sr_xrt_run run, int which, double t_start, uint32_t job_first,
                             uint32_t n_jobs) {
    const char *kname = which == 2 ? SPK_TOKEN_KERNEL_NAME : SPK_ACC_KERNEL_NAME;
    const double limit = (double)f->p.timeout_ms * 1e-3;
    unsigned int st = 0;
    if (f->p.blocking_wait) {
        // Interrupt-driven. Under the noop shim this blocks until completion whatever the
        // timeout; the elapsed-time check below still reports a late run as a timeout.
        double left = limit - (now_s() - t_start);
        unsigned ms = left > 0 ? (unsigned)ceil(left * 1e3) : 1u;
        st = f->x->xrtRunWaitFor(run, ms);
        if (st == SR_ERT_CMD_STATE_COMPLETED && now_s() - t_start > limit + 0.001)
            st = SR_ERT_CMD_STATE_TIMEOUT;
    } else {
        long sleep_ns = 1000;
        for (;;) {
            st = f->x->xrtRunState(run);
            if (st >= SR_ERT_CMD_STATE_COMPLETED) break;
            if (now_s() - t_start >= limit) break;
            struct timespec ts = {0, sleep_ns};
            nanosleep(&ts, NULL);
            if (sleep_ns < 50000) sleep_ns *= 2;
        }
    }
    if (st == SR_ERT_CMD_STATE_COMPLETED) return SR_OK;
    if (st < SR_ERT_CMD_STATE_COMPLETED || st == SR_ERT_CMD_STATE_TIMEOUT ||
        st == SR_ERT_CMD_STATE_SUBMITTED) {
        f->pending = which;
        f->stats.timeouts++;
        return sr_fail(SR_ERR_TIMEOUT,
                       "fpga: %s run (jobs %u..%u) did not complete within %u ms (state: %s); "
                       "the next step waits for it again, close and reopen the device if it hangs",
                       kname, job_first, job_first + n_jobs - 1, f->p.timeout_ms, sr_xrt_state_name(st));
    }
    return sr_fail(SR_ERR_DEVICE, "fpga: %s run (jobs %u..%u) ended in state '%s'", kname, job_first,
                   job_first + n_jobs - 1, sr_xrt_state_name(st));
}

static sr_status wait_run(sr_fpga *f, double t_start, uint32_t job_first, uint32_t n_jobs) {
    return wait_run_on(f, f->run, 1, t_start, job_first, n_jobs);
}

// A run that timed out earlier: has it finished now (or within one more timeout)?
static sr_status settle_pending(sr_fpga *f) {
    if (!f->pending) return SR_OK;
    double t0 = now_s();
    const double limit = (double)f->p.timeout_ms * 1e-3;
    long sleep_ns = 1000;
    sr_xrt_run run = f->pending == 2 ? f->trun : f->run;
    for (;;) {
        unsigned st = f->x->xrtRunState(run);
        if (st >= SR_ERT_CMD_STATE_COMPLETED) {
            f->pending = 0;
            if (st == SR_ERT_CMD_STATE_COMPLETED) return SR_OK;
            return sr_fail(SR_ERR_DEVICE, "fpga: an earlier timed-out spk_acc run ended in state '%s'",
                           sr_xrt_state_name(st));
        }
        if (now_s() - t0 >= limit)
            return sr_fail(SR_ERR_TIMEOUT,
                           "fpga: an earlier spk_acc run is still in flight after another %u ms; "
                           "close and reopen the device", f->p.timeout_ms);
        struct timespec ts = {0, sleep_ns};
        nanosleep(&ts, NULL);
        if (sleep_ns < 50000) sleep_ns *= 2;
    }
}

// Releases f's XRT handles (idempotent: they are NULL afterwards). Caller holds g_lock.
static void release_xrt(sr_fpga *f) {
    if (f->run) {
        if (f->pending) (void)settle_pending(f);
        f->x->xrtRunClose(f->run);
        f->run = NULL;
    }
    if (f->trun) f->x->xrtRunClose(f->trun);
    f->trun = NULL;
    free_buffers(f);
    if (f->tkernel) f->x->xrtKernelClose(f->tkernel);
    f->tkernel = NULL;
    if (f->kernel) f->x->xrtKernelClose(f->kernel);
    if (f->xclbin) f->x->xrtXclbinFreeHandle(f->xclbin);
    if (f->dev) f->x->xrtDeviceClose(f->dev);
    f->kernel = f->xclbin = f->dev = NULL;
}

static void close_all_at_exit(void) {
    pthread_mutex_lock(&g_lock);
    for (sr_fpga *f = g_open; f; f = f->next_open) release_xrt(f);
    g_open = NULL;
    g_exited = 1;
    pthread_mutex_unlock(&g_lock);
}

static void register_atexit(void) { atexit(close_all_at_exit); }

sr_status sr_fpga_open(const sr_fpga_params *p, sr_fpga **out) {
    if (!p || !out) return sr_fail(SR_ERR_INVALID_ARG, "sr_fpga_open: params and out are required");
    if (!p->xclbin_path || !*p->xclbin_path)
        return sr_fail(SR_ERR_INVALID_ARG, "fpga: no xclbin given (build it with `make -C firmware package`)");
    if (strlen(p->xclbin_path) >= 1024) return sr_fail(SR_ERR_INVALID_ARG, "fpga: xclbin path too long");
    const char *kname = p->kernel_name ? p->kernel_name : SPK_ACC_KERNEL_NAME;
    if (strlen(kname) >= 64) return sr_fail(SR_ERR_INVALID_ARG, "fpga: kernel name too long");
    if (p->device_index < 0) return sr_fail(SR_ERR_INVALID_ARG, "fpga: device index %d", (int)p->device_index);
    float share[3];
    float sum = 0;
    for (int e = 0; e < 3; e++) {
        share[e] = p->port_share[e];
        if (!(share[e] >= 0.0f) || !isfinite(share[e]))
            return sr_fail(SR_ERR_INVALID_ARG, "fpga: port_share[%d] = %g is not a share", e, (double)share[e]);
        sum += share[e];
    }
    if (sum == 0.0f) {
        share[0] = 0.45f;
        share[1] = 0.275f;
        share[2] = 0.275f;
    }
    struct stat st;
    if (stat(p->xclbin_path, &st) != 0)
        return sr_fail(SR_ERR_IO, "fpga: cannot open xclbin '%s': %s", p->xclbin_path, strerror(errno));

    const sr_xrt_api *x;
    sr_status s = p->emulate ? sr_xrt_emu_load(p->xclbin_path, &x) : sr_xrt_load(&x);
    if (s != SR_OK) return s;

    sr_fpga *f = calloc(1, sizeof *f);
    if (!f) return sr_fail(SR_ERR_NO_MEMORY, "fpga: out of memory");
    f->x = x;
    f->p = *p;
    memcpy(f->p.port_share, share, sizeof share);
    // a board run is microseconds to milliseconds, so 10 s means a hung kernel; the emulator
    // runs the C-simulated kernel on a host core, where one token program takes seconds and
    // far longer on a loaded machine (a 10 s limit failed CI on 2 busy cores)
    if (f->p.timeout_ms == 0) f->p.timeout_ms = p->emulate ? 600000u : 10000u;
    snprintf(f->xclbin_path, sizeof f->xclbin_path, "%s", p->xclbin_path);
    snprintf(f->kernel_name, sizeof f->kernel_name, "%s", kname);
    f->p.xclbin_path = f->xclbin_path;
    f->p.kernel_name = f->kernel_name;

    errno = 0;
    f->dev = x->xrtDeviceOpen((unsigned)p->device_index);
    if (!f->dev) {
        int e = errno;
        s = sr_fail(SR_ERR_NO_DEVICE, "fpga: no XRT device %d (%s shim: %s)", (int)p->device_index,
                    shim_name(), e ? strerror(e) : "open failed");
        goto fail;
    }
    f->xclbin = x->xrtXclbinAllocFilename(f->xclbin_path);
    if (!f->xclbin) {
        s = sr_fail(SR_ERR_FORMAT, "fpga: '%s' is not a readable xclbin", f->xclbin_path);
        goto fail;
    }
    int n = 0;
    char xsa[sizeof f->platform];
    memset(xsa, 0, sizeof xsa);
    if (x->xrtXclbinGetXSAName(f->xclbin, xsa, (int)sizeof xsa - 1, &n) == 0)
        snprintf(f->platform, sizeof f->platform, "%s", xsa);
    int rc = x->xrtDeviceLoadXclbinHandle(f->dev, f->xclbin);
    if (rc != 0) {
        s = sr_fail(SR_ERR_DEVICE, "fpga: loading '%s' (platform '%s') onto device %d failed (XRT returned %d)",
                    f->xclbin_path, f->platform, (int)p->device_index, rc);
        goto fail;
    }
    rc = x->xrtXclbinGetUUID(f->xclbin, f->uuid);
    if (rc != 0) {
        s = xrt_fail(SR_ERR_DEVICE, "reading the xclbin uuid", rc);
        goto fail;
    }
    f->kernel = x->xrtPLKernelOpen(f->dev, f->uuid, f->kernel_name);
    if (!f->kernel) {
        s = sr_fail(SR_ERR_FORMAT, "fpga: xclbin '%s' has no kernel '%s' (wrong xclbin?)", f->xclbin_path,
                    f->kernel_name);
        goto fail;
    }
    // The kernel's interface must be the one in spk_acc.h: SPK_ACC_NARGS arguments, every
    // pointer argument connected to a memory bank. (Asking XRT about a scalar's group or a
    // missing argument makes it log an error, so only what must exist is queried.)
    for (int i = 0; i < SPK_ACC_NARGS; i++) {
        f->group[i] = k_arg_global[i] ? x->xrtKernelArgGroupId(f->kernel, i) : -1;
        f->offset[i] = x->xrtKernelArgOffset(f->kernel, i);
        if (f->offset[i] == 0xffffffffu) {
            s = sr_fail(SR_ERR_FORMAT, "fpga: kernel '%s' has no argument %d ('%s'); the xclbin does not "
                        "match this spikerun (rebuild firmware/)", f->kernel_name, i, k_arg_names[i]);
            goto fail;
        }
        if (k_arg_global[i] && f->group[i] < 0) {
            s = sr_fail(SR_ERR_FORMAT, "fpga: kernel argument '%s' is not connected to a memory bank "
                        "(link.cfg should say sp=%s.%s:%s)", k_arg_names[i], SPK_ACC_CU_NAME,
                        k_arg_names[i], k_arg_bank[i]);
            goto fail;
        }
    }
    f->run = x->xrtRunOpen(f->kernel);
    if (!f->run) {
        s = sr_fail(SR_ERR_DEVICE, "fpga: cannot create a run handle for '%s'", f->kernel_name);
        goto fail;
    }
    if (p->token_program) {  // the token program's kernel: same argument table, same buffers
        f->tkernel = x->xrtPLKernelOpen(f->dev, f->uuid, SPK_TOKEN_KERNEL_NAME);
        if (!f->tkernel) {
            s = sr_fail(SR_ERR_FORMAT, "fpga: xclbin '%s' has no kernel '%s' (the token program; rebuild "
                        "firmware/ or open without token_program)", f->xclbin_path, SPK_TOKEN_KERNEL_NAME);
            goto fail;
        }
        for (int i = 0; i < SPK_ACC_NARGS; i++)
            if (k_arg_global[i] && x->xrtKernelArgGroupId(f->tkernel, i) != f->group[i]) {
                s = sr_fail(SR_ERR_FORMAT, "fpga: kernel '%s' argument '%s' is in another memory bank than "
                            "spk_acc's (link.cfg)", SPK_TOKEN_KERNEL_NAME, k_arg_names[i]);
                goto fail;
            }
        f->trun = x->xrtRunOpen(f->tkernel);
        if (!f->trun) {
            s = sr_fail(SR_ERR_DEVICE, "fpga: cannot create a run handle for '%s'", SPK_TOKEN_KERNEL_NAME);
            goto fail;
        }
    }
    pthread_once(&g_atexit_once, register_atexit);  // after XRT and its shim have loaded
    pthread_mutex_lock(&g_lock);
    const int exited = g_exited;
    if (!exited) {
        f->next_open = g_open;
        g_open = f;
    }
    pthread_mutex_unlock(&g_lock);
    if (exited) {
        s = sr_fail(SR_ERR_NO_DEVICE, "fpga: the process is exiting");
        goto fail;
    }
    *out = f;
    return SR_OK;
fail:
    sr_fpga_close(f);
    return s;
}

// Splits n chunks over the engines by share (largest remainders, deterministic).
static void split_chunks(const float share[3], uint32_t n, uint32_t out[3]) {
    double sum = (double)share[0] + share[1] + share[2];
    uint32_t given = 0;
    double rem[3];
    for (int e = 0; e < 3; e++) {
        double want = n * (share[e] / sum);
        out[e] = (uint32_t)want;
        rem[e] = want - out[e];
        given += out[e];
    }
    while (given < n) {
        int best = 0;
        for (int e = 1; e < 3; e++)
            if (rem[e] > rem[best]) best = e;
        out[best]++;
        rem[best] = -1.0;
        given++;
    }
}

static sr_status alloc_bo(sr_fpga *f, int arg, uint64_t bytes) {
    if (bytes < 4096) bytes = 4096;
    bytes = (bytes + 4095) & ~(uint64_t)4095;
    uint64_t flags = SR_XRT_BO_FLAGS_NONE;
#if defined(__aarch64__)
    flags = SR_XRT_BO_FLAGS_CACHEABLE;  // the A72 writes inputs and reads outputs; sync flushes
#endif
    f->bo[arg] = f->x->xrtBOAlloc(f->dev, (size_t)bytes, flags, (uint32_t)f->group[arg]);
    if (!f->bo[arg])
        return sr_fail(SR_ERR_NO_MEMORY, "fpga: cannot allocate %.1f MiB for '%s' in bank %d (%s); "
                       "device memory or CMA too small?", (double)bytes / 1048576.0, k_arg_names[arg],
                       f->group[arg], k_arg_bank[arg]);
    size_t got = f->x->xrtBOSize(f->bo[arg]);
    if (got < bytes)
        return sr_fail(SR_ERR_DEVICE, "fpga: buffer '%s' has %zu bytes, asked for %llu", k_arg_names[arg],
                       got, (unsigned long long)bytes);
    f->map[arg] = f->x->xrtBOMap(f->bo[arg]);
    if (!f->map[arg])
        return sr_fail(SR_ERR_DEVICE, "fpga: cannot map buffer '%s'", k_arg_names[arg]);
    if (((uintptr_t)f->map[arg] % SPK_LINE_BYTES) != 0)
        return sr_fail(SR_ERR_DEVICE, "fpga: buffer '%s' is mapped at %p, not 64-byte aligned",
                       k_arg_names[arg], f->map[arg]);
    uint64_t addr = f->x->xrtBOAddress(f->bo[arg]);
    if (addr % SPK_LINE_BYTES != 0 && addr != 0xdeadbeefu)  // noop reports 0xdeadbeef
        return sr_fail(SR_ERR_DEVICE, "fpga: buffer '%s' has device address 0x%llx, not 64-byte aligned",
                       k_arg_names[arg], (unsigned long long)addr);
    f->bo_bytes[arg] = bytes;
    return SR_OK;
}

static sr_status sync_bo(sr_fpga *f, int arg, unsigned dir, uint64_t bytes, uint64_t offset) {
    if (offset + bytes > f->bo_bytes[arg])
        return sr_fail(SR_ERR_INVALID_ARG, "fpga: sync of '%s' [%llu, +%llu) is outside its %llu bytes",
                       k_arg_names[arg], (unsigned long long)offset, (unsigned long long)bytes,
                       (unsigned long long)f->bo_bytes[arg]);
    int rc = f->x->xrtBOSync(f->bo[arg], dir, (size_t)bytes, (size_t)offset);
    if (rc != 0) {
        char what[96];
        snprintf(what, sizeof what, "syncing '%s' %s the device", k_arg_names[arg],
                 dir == SR_XCL_BO_SYNC_BO_TO_DEVICE ? "to" : "from");
        return xrt_fail(SR_ERR_DEVICE, what, rc);
    }
    return SR_OK;
}

// pin: NULL, or per matrix -1 (split by port share) or the engine (0..2) that holds all of
// its chunks. A matrix whose weights pointer repeats an earlier one's shares its shard.
// n_desc descriptor lines follow the jobs, arena_lines lines follow the outputs.
static sr_status upload(sr_fpga *f, const sr_fpga_matrix *m, int32_t n, const int8_t *pin, uint32_t n_desc,
                        uint32_t arena_lines) {
    if (!f || !m || n <= 0)
        return sr_fail(SR_ERR_INVALID_ARG, "sr_fpga_upload_weights: need a device and at least one matrix");
    if (!f->run) return sr_fail(SR_ERR_NO_DEVICE, "fpga: the device was closed at process exit");
    sr_status s = settle_pending(f);
    if (s != SR_OK) return s;
    int32_t n_slots = 0;
    for (int32_t i = 0; i < n; i++) {
        s = sr_fpga_check_weights(m[i].w, i);
        if (s != SR_OK) return s;
        if (m[i].input_slot < 0)
            return sr_fail(SR_ERR_INVALID_ARG, "fpga: matrix %d has input slot %d", (int)i, (int)m[i].input_slot);
        if (m[i].input_slot + 1 > n_slots) n_slots = m[i].input_slot + 1;
    }
    free_buffers(f);
    f->mat = calloc((size_t)n, sizeof *f->mat);
    f->slot = calloc((size_t)n_slots, sizeof *f->slot);
    spk_job *jobs = calloc((size_t)n, sizeof *jobs);
    if (!f->mat || !f->slot || !jobs) {
        s = sr_fail(SR_ERR_NO_MEMORY, "fpga: out of memory");
        goto fail;
    }
    for (int32_t i = 0; i < n; i++) {
        fpga_slot_info *sl = &f->slot[m[i].input_slot];
        if (sl->n_in && sl->n_in != m[i].w->n_in) {
            s = sr_fail(SR_ERR_INVALID_ARG, "fpga: matrix %d has %d inputs but shares slot %d with %d-input "
                        "matrices", (int)i, (int)m[i].w->n_in, (int)m[i].input_slot, (int)sl->n_in);
            goto fail;
        }
        sl->n_in = m[i].w->n_in;
    }
    // layout: slots, outputs, shards per engine
    uint64_t spk_lines = 0, out_lines = 0, w_lines[3] = {0, 0, 0};
    for (int32_t k = 0; k < n_slots; k++) {
        f->slot[k].line = (uint32_t)spk_lines;
        if (f->slot[k].n_in) spk_lines += sr_fpga_slot_capacity(f->slot[k].n_in);
    }
    for (int32_t i = 0; i < n; i++) {
        const sr_spike_weights *w = m[i].w;
        fpga_matrix_info *mi = &f->mat[i];
        mi->shape = sr_fpga_weights_shape(w);
        mi->slot = m[i].input_slot;
        if (pin && pin[i] >= 0 && pin[i] < 3) {
            mi->chunks[0] = mi->chunks[1] = mi->chunks[2] = 0;
            mi->chunks[pin[i]] = (uint32_t)w->n_chunks;
        } else {
            split_chunks(f->p.port_share, (uint32_t)w->n_chunks, mi->chunks);
        }
        int32_t same = -1;  // an earlier matrix with the same weights: share its shard
        for (int32_t k = 0; k < i && same < 0; k++)
            if (m[k].w == w && !memcmp(f->mat[k].chunks, mi->chunks, sizeof mi->chunks)) same = k;
        mi->out_line = (uint32_t)out_lines;
        mi->out_lines = (uint32_t)w->n_chunks * (uint32_t)w->tile_w / 16u;
        out_lines += mi->out_lines;
        spk_job *d = &jobs[i];
        d->fmt = (uint32_t)w->format;
        d->n_in = (uint32_t)w->n_in;
        uint32_t c0 = 0;
        for (int e = 0; e < 3; e++) {
            d->chunks[e] = mi->chunks[e];
            d->w_off[e] = same >= 0 ? jobs[same].w_off[e] : (uint32_t)w_lines[e];
            if (same < 0) w_lines[e] += sr_fpga_shard_lines(w, (int32_t)c0, (int32_t)(c0 + mi->chunks[e]));
            c0 += mi->chunks[e];
        }
        d->reserved[0] = same >= 0 ? 1u : 0u;  // host-side mark, cleared below: shard not packed again
        d->spk_off = f->slot[mi->slot].line;
        d->out_off = mi->out_line;
        if (w_lines[0] > 0xffffffffu || w_lines[1] > 0xffffffffu || w_lines[2] > 0xffffffffu ||
            out_lines > 0xffffffffu || spk_lines > 0xffffffffu) {
            s = sr_fail(SR_ERR_UNSUPPORTED, "fpga: the model exceeds the kernel's 32-bit line offsets (256 GiB)");
            goto fail;
        }
    }
    if (out_lines + arena_lines > 0xffffffffu) {
        s = sr_fail(SR_ERR_UNSUPPORTED, "fpga: the token program's arena exceeds 32-bit line offsets");
        goto fail;
    }
    f->n_matrices = n;
    f->n_slots = n_slots;
    f->n_desc = n_desc;
    f->arena_line = (uint32_t)out_lines;
    f->arena_lines = arena_lines;
    // buffers, each in the bank the xclbin connects its argument to
    const uint64_t bytes[N_BUF] = {w_lines[0] * 64, w_lines[1] * 64, w_lines[2] * 64,
                                   ((uint64_t)n + n_desc) * 64, spk_lines * 64, (out_lines + arena_lines) * 64};
    for (int a = 0; a < N_BUF; a++) {
        s = alloc_bo(f, a, bytes[a]);
        if (s != SR_OK) goto fail;
        memset(f->map[a], 0, (size_t)f->bo_bytes[a]);
    }
    for (int e = 0; e < 3; e++) f->stats.weight_bytes[e] = w_lines[e] * 64;
    for (int32_t i = 0; i < n; i++) {
        uint32_t c0 = 0;
        const int shared = jobs[i].reserved[0] != 0;
        jobs[i].reserved[0] = 0;
        if (shared) continue;
        for (int e = 0; e < 3; e++) {
            uint8_t *dst = (uint8_t *)f->map[e] + (uint64_t)jobs[i].w_off[e] * 64;
            sr_fpga_pack_shard(m[i].w, (int32_t)c0, (int32_t)(c0 + jobs[i].chunks[e]), dst);
            c0 += jobs[i].chunks[e];
        }
    }
    memcpy(f->map[SPK_ARG_jobs], jobs, (size_t)n * sizeof *jobs);
    free(jobs);
    jobs = NULL;
    for (int a = 0; a <= SPK_ARG_jobs; a++) {
        s = sync_bo(f, a, SR_XCL_BO_SYNC_BO_TO_DEVICE, f->bo_bytes[a], 0);
        if (s != SR_OK) goto fail;
    }
    // the buffers never change from now on: set them on the run(s) once
    for (int a = 0; a < N_BUF; a++) {
        int rc = sr_xrt_set_arg_bo(f->x, f->run, a, f->bo[a]);
        if (rc == 0 && f->trun) rc = sr_xrt_set_arg_bo(f->x, f->trun, a, f->bo[a]);
        if (rc != 0) {
            char what[64];
            snprintf(what, sizeof what, "setting kernel argument '%s'", k_arg_names[a]);
            s = xrt_fail(SR_ERR_DEVICE, what, rc);
            goto fail;
        }
    }
    return SR_OK;
fail:
    free(jobs);
    free_buffers(f);
    return s;
}

sr_status sr_fpga_upload_weights(sr_fpga *f, const sr_fpga_matrix *m, int32_t n) {
    return upload(f, m, n, NULL, 0, 0);
}

// ---------------------------------------------------------------------------------------
// The token program (spk_token, firmware/kernels/spk_token.h)

bool sr_fpga_has_token_program(const sr_fpga *f) { return f && f->trun; }

sr_status sr_fpga_upload_program(sr_fpga *f, const sr_fpga_matrix *m, int32_t n, const int8_t *pin,
                                 uint32_t n_desc, uint32_t arena_lines) {
    if (!f || !f->trun) return sr_fail(SR_ERR_UNSUPPORTED, "fpga: the device was opened without the token program");
    if (n_desc == 0 || arena_lines == 0) return sr_fail(SR_ERR_INVALID_ARG, "fpga: a token program needs descriptors and an arena");
    return upload(f, m, n, pin, n_desc, arena_lines);
}

sr_status sr_fpga_program_layout(const sr_fpga *f, sr_fpga_layout *out) {
    if (!f || !out || f->n_matrices == 0) return sr_fail(SR_ERR_INVALID_ARG, "fpga: nothing uploaded");
    memset(out, 0, sizeof *out);
    out->program_line = (uint32_t)f->n_matrices;
    out->n_desc = f->n_desc;
    out->arena_line = f->arena_line;
    out->arena_lines = f->arena_lines;
    return SR_OK;
}

int64_t sr_fpga_matrix_out_line(const sr_fpga *f, int32_t i) {
    return (f && i >= 0 && i < f->n_matrices) ? (int64_t)f->mat[i].out_line : -1;
}

int64_t sr_fpga_slot_line(const sr_fpga *f, int32_t slot) {
    return (f && slot >= 0 && slot < f->n_slots && f->slot[slot].n_in) ? (int64_t)f->slot[slot].line : -1;
}

sr_status sr_fpga_write_program(sr_fpga *f, const void *desc, uint32_t n_desc) {
    if (!f || !desc || n_desc > f->n_desc || !f->map[SPK_ARG_jobs])
        return sr_fail(SR_ERR_INVALID_ARG, "fpga: %u descriptors do not fit the %u reserved", n_desc, f ? f->n_desc : 0);
    const uint64_t off = (uint64_t)f->n_matrices * 64;
    memcpy((uint8_t *)f->map[SPK_ARG_jobs] + off, desc, (size_t)n_desc * 64);
    return sync_bo(f, SPK_ARG_jobs, SR_XCL_BO_SYNC_BO_TO_DEVICE, (uint64_t)n_desc * 64, off);
}

sr_status sr_fpga_write_out(sr_fpga *f, uint64_t float_index, const void *src, uint64_t n_floats) {
    if (!f || !src || !f->map[SPK_ARG_out] || (float_index + n_floats) * 4 > f->bo_bytes[SPK_ARG_out])
        return sr_fail(SR_ERR_INVALID_ARG, "fpga: write outside the output buffer");
    memcpy((float *)f->map[SPK_ARG_out] + float_index, src, (size_t)n_floats * 4);
    return sync_bo(f, SPK_ARG_out, SR_XCL_BO_SYNC_BO_TO_DEVICE, n_floats * 4, float_index * 4);
}

static const char *token_status_text(uint32_t st) {
    switch (st) {
    case SPK_TOKEN_NUMERIC: return "NaN or Inf reached a spike encoder or the K/V cache";
    case SPK_TOKEN_NO_FIT: return "spike counts need more than 16 planes";
    case SPK_TOKEN_OVERFLOW: return "an integer accumulation could exceed int32 (sr_spike_matvec_check)";
    case SPK_TOKEN_BAD_OP: return "a descriptor is invalid";
    case SPK_TOKEN_BUDGET: return "the program did not reach END";
    case SPK_TOKEN_RANGE: return "token id or position outside the model";
    case SPK_TOKEN_PENDING: return "the kernel did not write its status";
    default: return "unknown status";
    }
}

sr_status sr_fpga_run_token(sr_fpga *f, int32_t token, int32_t pos, uint32_t n_vocab, uint32_t n_ctx,
                            int32_t logits_matrix, float *logits) {
    if (!f || !f->trun || f->n_desc == 0) return sr_fail(SR_ERR_INVALID_ARG, "fpga: no token program uploaded");
    if (logits && (logits_matrix < 0 || logits_matrix >= f->n_matrices))
        return sr_fail(SR_ERR_INVALID_ARG, "fpga: logits matrix %d", (int)logits_matrix);
    sr_status s = settle_pending(f);
    if (s != SR_OK) return s;
    spk_token_hdr h;
    memset(&h, 0, sizeof h);
    h.token = (uint32_t)token;
    h.pos = (uint32_t)pos;
    h.want_logits = logits ? 1u : 0u;
    h.status = SPK_TOKEN_PENDING;
    h.n_vocab = n_vocab;
    h.n_ctx = n_ctx;
    uint8_t *hp = (uint8_t *)f->map[SPK_ARG_out] + (uint64_t)f->arena_line * 64;
    memcpy(hp, &h, sizeof h);
    s = sync_bo(f, SPK_ARG_out, SR_XCL_BO_SYNC_BO_TO_DEVICE, 64, (uint64_t)f->arena_line * 64);
    if (s != SR_OK) return s;
    f->stats.bytes_to_device += 64;
    int rc = sr_xrt_set_arg_u32(f->x, f->trun, SPK_ARG_job_first, (uint32_t)f->n_matrices);
    if (rc == 0) rc = sr_xrt_set_arg_u32(f->x, f->trun, SPK_ARG_n_jobs, f->n_desc);
    if (rc != 0) return xrt_fail(SR_ERR_DEVICE, "setting the token program's range", rc);
    double t0 = now_s();
    rc = f->x->xrtRunStart(f->trun);
    if (rc != 0) return xrt_fail(SR_ERR_DEVICE, "starting the spk_token run", rc);
    s = wait_run_on(f, f->trun, 2, t0, (uint32_t)f->n_matrices, f->n_desc);
    if (s != SR_OK) return s;
    f->stats.seconds_in_runs += now_s() - t0;
    f->stats.runs++;
    f->stats.token_runs++;
    s = sync_bo(f, SPK_ARG_out, SR_XCL_BO_SYNC_BO_FROM_DEVICE, 64, (uint64_t)f->arena_line * 64);
    if (s != SR_OK) return s;
    f->stats.bytes_from_device += 64;
    memcpy(&h, hp, sizeof h);
    f->stats.token_passes += h.runs;
    if (h.status != SPK_TOKEN_OK)
        return sr_fail(h.status == SPK_TOKEN_NUMERIC ? SR_ERR_NUMERIC : h.status == SPK_TOKEN_RANGE
                       ? SR_ERR_INVALID_ARG : SR_ERR_DEVICE,
                       "fpga: token program stopped at descriptor %u (token %d, position %d): %s", h.at,
                       (int)token, (int)pos, token_status_text(h.status));
    if (logits) {
        const fpga_matrix_info *mi = &f->mat[logits_matrix];
        s = sync_bo(f, SPK_ARG_out, SR_XCL_BO_SYNC_BO_FROM_DEVICE, (uint64_t)mi->out_lines * 64,
                    (uint64_t)mi->out_line * 64);
        if (s != SR_OK) return s;
        f->stats.bytes_from_device += (uint64_t)mi->out_lines * 64;
        memcpy(logits, (const float *)f->map[SPK_ARG_out] + (uint64_t)mi->out_line * 16,
               (size_t)mi->shape.n_out * sizeof(float));
    }
    return SR_OK;
}

int64_t sr_fpga_step_outputs(const sr_fpga *f, int32_t first, int32_t count) {
    if (!f || first < 0 || count <= 0 || first > f->n_matrices - count) return -1;
    int64_t n = 0;
    for (int32_t i = first; i < first + count; i++) n += f->mat[i].shape.n_out;
    return n;
}

sr_status sr_fpga_step(sr_fpga *f, int32_t first, int32_t count, const sr_fpga_input *in,
                       int32_t n_in, float *y) {
    if (!f) return sr_fail(SR_ERR_INVALID_ARG, "sr_fpga_step: no device");
    if (!f->run) return sr_fail(SR_ERR_NO_DEVICE, "fpga: the device was closed at process exit");
    if (f->n_matrices == 0) return sr_fail(SR_ERR_INVALID_ARG, "fpga: step before sr_fpga_upload_weights");
    if (sr_fpga_step_outputs(f, first, count) < 0)
        return sr_fail(SR_ERR_INVALID_ARG, "fpga: matrices [%d, %d) are outside the %d uploaded", (int)first,
                       (int)(first + count), (int)f->n_matrices);
    if (!y || n_in <= 0 || !in) return sr_fail(SR_ERR_INVALID_ARG, "fpga: step needs inputs and an output");
    // every input names a used slot once and passes the FPGA's own limits
    for (int32_t k = 0; k < n_in; k++) {
        if (in[k].slot < 0 || in[k].slot >= f->n_slots || f->slot[in[k].slot].n_in == 0)
            return sr_fail(SR_ERR_INVALID_ARG, "fpga: input %d names slot %d, which no matrix reads", (int)k,
                           (int)in[k].slot);
        for (int32_t l = 0; l < k; l++)
            if (in[l].slot == in[k].slot)
                return sr_fail(SR_ERR_INVALID_ARG, "fpga: slot %d is given twice", (int)in[k].slot);
        sr_status s = sr_fpga_check_planes(in[k].x, in[k].slot);
        if (s != SR_OK) return s;
        // every input is packed into its slot, also one no matrix of this run reads: it
        // must fit the slot (sized for the slot's n_in at the kernel's maxima)
        const fpga_slot_info *sl = &f->slot[in[k].slot];
        const sr_spike_planes *x = in[k].x;
        if (x->n > sl->n_in)
            return sr_fail(SR_ERR_INVALID_ARG, "fpga: input for slot %d has %d activations; the slot's "
                           "matrices take %d", (int)in[k].slot, (int)x->n, (int)sl->n_in);
        if (spk_slot_lines((uint32_t)x->T, (uint32_t)x->n_words, (uint32_t)x->n_groups) >
            sr_fpga_slot_capacity(sl->n_in))
            return sr_fail(SR_ERR_INVALID_ARG, "fpga: input for slot %d does not fit its slot", (int)in[k].slot);
    }
    // every matrix has its input, and the pair passes the shared contract check
    for (int32_t i = first; i < first + count; i++) {
        const sr_fpga_input *found = NULL;
        for (int32_t k = 0; k < n_in && !found; k++)
            if (in[k].slot == f->mat[i].slot) found = &in[k];
        if (!found)
            return sr_fail(SR_ERR_INVALID_ARG, "fpga: matrix %d reads input slot %d, which this step did not "
                           "provide", (int)i, (int)f->mat[i].slot);
        sr_status s = sr_spike_matvec_check(&f->mat[i].shape, found->x, 0, f->mat[i].shape.n_out);
        if (s != SR_OK) return s;
    }
    sr_status s = settle_pending(f);
    if (s != SR_OK) return s;
    // inputs: pack into their slots, sync only the lines used
    for (int32_t k = 0; k < n_in; k++) {
        const fpga_slot_info *sl = &f->slot[in[k].slot];
        uint8_t *dst = (uint8_t *)f->map[SPK_ARG_spk] + (uint64_t)sl->line * 64;
        uint32_t lines = sr_fpga_pack_planes(in[k].x, dst);
        s = sync_bo(f, SPK_ARG_spk, SR_XCL_BO_SYNC_BO_TO_DEVICE, (uint64_t)lines * 64, (uint64_t)sl->line * 64);
        if (s != SR_OK) return s;
        f->stats.bytes_to_device += (uint64_t)lines * 64;
    }
    const uint32_t job_first = (uint32_t)first, n_jobs = (uint32_t)count;
    int rc = sr_xrt_set_arg_u32(f->x, f->run, SPK_ARG_job_first, job_first);
    if (rc == 0) rc = sr_xrt_set_arg_u32(f->x, f->run, SPK_ARG_n_jobs, n_jobs);
    if (rc != 0) return xrt_fail(SR_ERR_DEVICE, "setting the run's job range", rc);
    double t0 = now_s();
    rc = f->x->xrtRunStart(f->run);
    if (rc != 0) return xrt_fail(SR_ERR_DEVICE, "starting the spk_acc run", rc);
    if (f->hook) f->hook(f->hook_user, f->map, job_first, n_jobs);
    s = wait_run(f, t0, job_first, n_jobs);
    if (s != SR_OK) return s;
    f->stats.seconds_in_runs += now_s() - t0;
    f->stats.runs++;
    f->stats.jobs += n_jobs;
    // outputs: the run's jobs are contiguous in `out`
    const fpga_matrix_info *last = &f->mat[first + count - 1];
    const uint64_t o0 = (uint64_t)f->mat[first].out_line * 64;
    const uint64_t o1 = ((uint64_t)last->out_line + last->out_lines) * 64;
    s = sync_bo(f, SPK_ARG_out, SR_XCL_BO_SYNC_BO_FROM_DEVICE, o1 - o0, o0);
    if (s != SR_OK) return s;
    f->stats.bytes_from_device += o1 - o0;
    const float *out = (const float *)f->map[SPK_ARG_out];
    float *dst = y;
    for (int32_t i = first; i < first + count; i++) {
        memcpy(dst, out + (uint64_t)f->mat[i].out_line * 16, (size_t)f->mat[i].shape.n_out * sizeof(float));
        dst += f->mat[i].shape.n_out;
    }
    return SR_OK;
}

void sr_fpga_get_stats(const sr_fpga *f, sr_fpga_stats *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (f) *out = f->stats;
}

const char *sr_fpga_platform(const sr_fpga *f) { return f ? f->platform : ""; }

void sr_fpga_close(sr_fpga *f) {
    if (!f) return;
    pthread_mutex_lock(&g_lock);
    for (sr_fpga **p = &g_open; *p; p = &(*p)->next_open)
        if (*p == f) {
            *p = f->next_open;
            break;
        }
    release_xrt(f);  // nothing left to release if close_all_at_exit ran first
    pthread_mutex_unlock(&g_lock);
    free(f);
}

void sr_fpga_set_run_hook(sr_fpga *f, sr_fpga_run_hook hook, void *user) {
    if (!f) return;
    f->hook = hook;
    f->hook_user = user;
}

int sr_fpga_arg_group(const sr_fpga *f, int i) {
    return (f && i >= 0 && i < SPK_ACC_NARGS) ? f->group[i] : -1;
}

uint32_t sr_fpga_arg_offset(const sr_fpga *f, int i) {
    return (f && i >= 0 && i < SPK_ACC_NARGS) ? f->offset[i] : 0xffffffffu;
}

uint64_t sr_fpga_buffer_bytes(const sr_fpga *f, int i) {
    return (f && i >= 0 && i < N_BUF) ? f->bo_bytes[i] : 0;
}
