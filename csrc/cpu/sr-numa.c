// sr-numa.c - NUMA topology (libnuma), process defaults, page placement and node-local memory.
#include "spikerun/sr-numa.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sr-cpu-internal.h"

#if defined(__linux__) && defined(__has_include)
#if __has_include(<numa.h>) && __has_include(<numaif.h>)
#include <numa.h>
#include <numaif.h>
#define SR_HAVE_LIBNUMA 1
#endif
#endif
#ifndef SR_HAVE_LIBNUMA
#define SR_HAVE_LIBNUMA 0
#endif

#define SR_MAX_CPUS 4096

// ---------------------------------------------------------------- process facts (once)

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_allowed[SR_MAX_CPUS];
static int g_n_allowed;
static bool g_libnuma;

static void init_once(void) {
    g_n_allowed = 0;
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        for (int c = 0; c < CPU_SETSIZE && g_n_allowed < SR_MAX_CPUS; c++)
            if (CPU_ISSET(c, &set)) g_allowed[g_n_allowed++] = c;
#endif
    if (g_n_allowed == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        if (n < 1) n = 1;
        for (long c = 0; c < n && c < SR_MAX_CPUS; c++) g_allowed[g_n_allowed++] = (int)c;
    }
#if SR_HAVE_LIBNUMA
    g_libnuma = numa_available() >= 0;
#else
    g_libnuma = false;
#endif
}

int sr_cpu_allowed_(int *cpus, int cap) {
    pthread_once(&g_once, init_once);
    for (int i = 0; i < g_n_allowed && i < cap; i++) cpus[i] = g_allowed[i];
    return g_n_allowed;
}

bool sr_numa_libnuma_ok_(void) {
    pthread_once(&g_once, init_once);
    return g_libnuma;
}

bool sr_numa_supported(void) { return sr_numa_libnuma_ok_(); }

int sr_cpu_pin_self_(const int *cpus, int n) {
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int i = 0; i < n; i++)
        if (cpus[i] >= 0 && cpus[i] < CPU_SETSIZE) CPU_SET(cpus[i], &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
#else
    (void)cpus; (void)n;
    return -1;
#endif
}

// ---------------------------------------------------------------- policies and defaults

static const char *const k_names[] = {"off", "distribute", "isolate", "numactl"};

const char *sr_numa_policy_name(int policy) {
    return policy >= 0 && policy <= SR_NUMA_NUMACTL ? k_names[policy] : "?";
}

sr_status sr_numa_policy_from_name(const char *name, int *policy) {
    if (!name || !*name) { *policy = SR_NUMA_OFF; return SR_OK; }
    for (int i = 0; i <= SR_NUMA_NUMACTL; i++)
        if (!strcmp(name, k_names[i])) { *policy = i; return SR_OK; }
    return sr_fail(SR_ERR_INVALID_ARG, "unknown NUMA policy '%s' (use distribute, isolate, numactl or off)", name);
}

static pthread_mutex_t g_def_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_def_policy = -1, g_def_fake = -1;   // -1: not set, read the environment
static __thread struct { bool on, pin; int policy, fake; } t_override;

static int env_int(const char *name, int dflt) {
    const char *s = getenv(name);
    if (!s || !*s) return dflt;
    char *end;
    long v = strtol(s, &end, 10);
    return *end == '\0' && v >= 0 && v <= 1 << 20 ? (int)v : dflt;
}

static void resolve_defaults(int *policy, int *fake) {
    pthread_mutex_lock(&g_def_mu);
    if (g_def_fake < 0) g_def_fake = env_int("SPIKERUN_FAKE_NUMA", 0);
    if (g_def_policy < 0) {
        int p = SR_NUMA_OFF;
        const char *s = getenv("SPIKERUN_NUMA");
        // An unknown name means off (the library never prints; sr_pool_describe shows the policy).
        if (s && *s && sr_numa_policy_from_name(s, &p) != SR_OK) {
            sr_clear_error();
            p = SR_NUMA_OFF;
        }
        if (p == SR_NUMA_OFF && g_def_fake > 0 && !(s && *s)) p = SR_NUMA_DISTRIBUTE;
        g_def_policy = p;
    }
    *policy = g_def_policy;
    *fake = g_def_fake;
    pthread_mutex_unlock(&g_def_mu);
}

void sr_numa_init(int policy, int fake_nodes) {
    if (policy < SR_NUMA_OFF || policy > SR_NUMA_NUMACTL) policy = SR_NUMA_OFF;
    if (fake_nodes < 0) fake_nodes = 0;
    if (policy == SR_NUMA_OFF && fake_nodes > 0) policy = SR_NUMA_DISTRIBUTE;
    pthread_mutex_lock(&g_def_mu);
    g_def_policy = policy;
    g_def_fake = fake_nodes;
    pthread_mutex_unlock(&g_def_mu);
}

int sr_numa_default_policy(void) {
    int p, f;
    resolve_defaults(&p, &f);
    return p;
}

int sr_numa_default_fake_nodes(void) {
    int p, f;
    resolve_defaults(&p, &f);
    return f;
}

void sr_pool_set_thread_defaults(bool enabled, int policy, int fake_nodes, bool pin) {
    if (fake_nodes > 0 && policy == SR_NUMA_OFF) policy = SR_NUMA_DISTRIBUTE;
    t_override.on = enabled;
    t_override.policy = policy;
    t_override.fake = fake_nodes > 0 ? fake_nodes : 0;
    t_override.pin = pin;
}

void sr_pool_defaults_(int *policy, int *fake, bool *pin) {
    const char *s = getenv("SPIKERUN_PIN");
    const bool env_pin = !(s && s[0] == '0');
    if (t_override.on) {
        *policy = t_override.policy;
        *fake = t_override.fake;
        *pin = t_override.pin && env_pin;
        return;
    }
    resolve_defaults(policy, fake);
    *pin = env_pin;
}

// ---------------------------------------------------------------- topology

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

sr_numa_topology *sr_numa_topology_create(int fake_nodes) {
    if (fake_nodes == 0) fake_nodes = env_int("SPIKERUN_FAKE_NUMA", 0);
    if (fake_nodes < 0) fake_nodes = 0;   // -1: the real topology, whatever the environment says
    int *allowed = malloc(sizeof(int) * SR_MAX_CPUS);
    sr_numa_topology *t = calloc(1, sizeof *t);
    if (!allowed || !t) { free(allowed); free(t); return NULL; }
    const int m = sr_cpu_allowed_(allowed, SR_MAX_CPUS);
    qsort(allowed, (size_t)m, sizeof(int), cmp_int);

    if (fake_nodes > 0) {
        const int n = fake_nodes < SR_NUMA_MAX_NODES ? fake_nodes : SR_NUMA_MAX_NODES;
        const int total = m >= n ? m : n;
        t->cpus = malloc(sizeof(int) * (size_t)total);
        if (!t->cpus) { free(allowed); free(t); return NULL; }
        t->fake = true;
        t->n_nodes = n;
        int k = 0;
        for (int i = 0; i < n; i++) {
            t->cpu_start[i] = k;
            t->os_node[i] = -1;
            if (m >= n) {
                for (int c = (int)((int64_t)i * m / n); c < (int)((int64_t)(i + 1) * m / n); c++) t->cpus[k++] = allowed[c];
            } else {
                t->cpus[k++] = allowed[i % m];
            }
        }
        t->cpu_start[n] = k;
        free(allowed);
        return t;
    }

    t->cpus = malloc(sizeof(int) * (size_t)m);
    if (!t->cpus) { free(allowed); free(t); return NULL; }
    int k = 0;
#if SR_HAVE_LIBNUMA
    if (sr_numa_libnuma_ok_()) {
        const int max_node = numa_max_node();
        struct bitmask *bm = numa_allocate_cpumask();
        for (int node = 0; bm && node <= max_node && t->n_nodes < SR_NUMA_MAX_NODES; node++) {
            if (numa_node_to_cpus(node, bm) != 0) continue;
            const int start = k;
            for (int c = 0; c < m; c++)
                if ((unsigned)allowed[c] < bm->size && numa_bitmask_isbitset(bm, (unsigned)allowed[c]))
                    t->cpus[k++] = allowed[c];
            if (k == start) continue;   // memory-only node, or none of our CPUs
            t->cpu_start[t->n_nodes] = start;
            t->os_node[t->n_nodes] = node;
            t->n_nodes++;
        }
        if (bm) numa_free_cpumask(bm);
    }
#endif
    if (t->n_nodes == 0) {   // no libnuma, NUMA unavailable, or nothing matched: one node
        k = 0;
        for (int c = 0; c < m; c++) t->cpus[k++] = allowed[c];
        t->cpu_start[0] = 0;
        t->os_node[0] = sr_numa_libnuma_ok_() ? 0 : -1;
        t->n_nodes = 1;
    }
    t->cpu_start[t->n_nodes] = k;
    free(allowed);
    return t;
}

void sr_numa_topology_free(sr_numa_topology *t) {
    if (!t) return;
    free(t->cpus);
    free(t);
}

int sr_numa_topology_nodes(const sr_numa_topology *t) { return t ? t->n_nodes : 1; }

int sr_numa_topology_node_cpus(const sr_numa_topology *t, int node, int *cpus, int cap) {
    if (!t || node < 0 || node >= t->n_nodes) return 0;
    const int n = t->cpu_start[node + 1] - t->cpu_start[node];
    for (int i = 0; i < n && i < cap; i++) cpus[i] = t->cpus[t->cpu_start[node] + i];
    return n;
}

int sr_numa_topology_os_node(const sr_numa_topology *t, int node) {
    return t && node >= 0 && node < t->n_nodes ? t->os_node[node] : -1;
}

bool sr_numa_topology_is_fake(const sr_numa_topology *t) { return t && t->fake; }

int sr_numa_node_of_memory(const void *p) {
#if SR_HAVE_LIBNUMA
    if (!sr_numa_libnuma_ok_() || !p) return -1;
    const long page = sysconf(_SC_PAGESIZE);
    void *pg = (void *)((uintptr_t)p & ~(uintptr_t)(page - 1));
    int status = -1;
    if (move_pages(0, 1, &pg, NULL, &status, 0) != 0) return -1;
    return status >= 0 ? status : -1;
#else
    (void)p;
    return -1;
#endif
}

// ---------------------------------------------------------------- placement

// Pages whose first byte lies in [addr, addr + bytes).
static void page_span(const void *addr, size_t bytes, uintptr_t *lo, uintptr_t *hi) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t a = (uintptr_t)addr, e = a + bytes;
    *lo = (a + page - 1) & ~(page - 1);
    *hi = (e + page - 1) & ~(page - 1);
}

static bool placement_active(const sr_pool *p) {
    return p && sr_pool_nodes(p) > 1 && !sr_pool_numa_is_fake(p) && sr_pool_numa_policy(p) != SR_NUMA_NUMACTL &&
           sr_numa_libnuma_ok_();
}

sr_status sr_numa_place(const sr_pool *p, int node, const void *addr, size_t bytes) {
    if (!addr || bytes == 0 || node < 0 || node >= sr_pool_nodes(p))
        return node < 0 || node >= sr_pool_nodes(p) ? sr_fail(SR_ERR_INVALID_ARG, "no node %d in the pool", node) : SR_OK;
    if (!placement_active(p)) return SR_OK;
#if SR_HAVE_LIBNUMA
    const int os = sr_pool_node_os_node(p, node);
    if (os < 0) return SR_OK;
    uintptr_t lo, hi;
    page_span(addr, bytes, &lo, &hi);
    if (hi <= lo) return SR_OK;
    unsigned long mask[SR_NUMA_MAX_NODES * 2 / (8 * sizeof(unsigned long)) + 16];
    memset(mask, 0, sizeof mask);
    const unsigned long bits = 8 * sizeof(unsigned long);
    if ((unsigned long)os >= bits * (sizeof mask / sizeof mask[0])) return SR_OK;
    mask[(unsigned long)os / bits] |= 1ul << ((unsigned long)os % bits);
    // Map every page first (one read per page): MOVE only migrates pages this process maps, and
    // file pages already in the page cache would otherwise stay wherever they were read.
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    volatile unsigned char sink = 0;
    for (uintptr_t a = lo; a < hi; a += page) sink ^= *(const volatile unsigned char *)a;
    (void)sink;
    // Preferred (not bind): a full node falls back to others instead of failing; MOVE migrates
    // the pages already present (mapped by this process only). Best effort: errors ignored.
    (void)mbind((void *)lo, hi - lo, MPOL_PREFERRED, mask, bits * (sizeof mask / sizeof mask[0]), MPOL_MF_MOVE);
#endif
    return SR_OK;
}

sr_status sr_numa_place_rows(const sr_pool *p, const void *rows, size_t row_bytes, int64_t n_rows,
                             int64_t align) {
    if (!placement_active(p) || !rows) return SR_OK;
    for (int n = 0; n < sr_pool_nodes(p); n++) {
        int64_t r0, r1;
        sr_pool_node_rows(p, n_rows, align, n, &r0, &r1);
        if (r1 > r0) {
            sr_status s = sr_numa_place(p, n, (const char *)rows + (size_t)r0 * row_bytes, (size_t)(r1 - r0) * row_bytes);
            if (s != SR_OK) return s;
        }
    }
    return SR_OK;
}

void *sr_numa_alloc(const sr_pool *p, int node, size_t bytes) {
    if (bytes == 0) bytes = 1;
#if SR_HAVE_LIBNUMA
    if (placement_active(p) && node >= 0 && node < sr_pool_nodes(p) && sr_pool_node_os_node(p, node) >= 0) {
        void *m = numa_alloc_onnode(bytes, sr_pool_node_os_node(p, node));
        if (m) memset(m, 0, bytes);   // touch: the pages are placed now
        return m;
    }
#else
    (void)p; (void)node;
#endif
    void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return m == MAP_FAILED ? NULL : m;
}

void sr_numa_free(void *ptr, size_t bytes) {
    if (!ptr) return;
    if (bytes == 0) bytes = 1;
    // numa_alloc_onnode memory is an mmap as well: munmap releases both kinds.
    munmap(ptr, bytes);
}

sr_status sr_numa_place_spike_weights(const sr_pool *p, const sr_spike_weights *w) {
    if (!placement_active(p) || !w || !w->lines) return SR_OK;
    const size_t line_chunk = (size_t)w->n_blocks * SR_SPIKE_BLOCK * SR_SPIKE_LINE_BYTES;
    const size_t bv_chunk = (size_t)w->n_blocks * (size_t)w->tile_w;
    for (int n = 0; n < sr_pool_nodes(p); n++) {
        int64_t r0, r1;
        sr_pool_node_rows(p, w->n_out, w->tile_w, n, &r0, &r1);
        if (r1 <= r0) continue;
        const int64_t c0 = r0 / w->tile_w, c1 = (r1 + w->tile_w - 1) / w->tile_w;
        sr_numa_place(p, n, w->lines + (size_t)c0 * line_chunk, (size_t)(c1 - c0) * line_chunk);
        if (w->d) sr_numa_place(p, n, w->d + (size_t)c0 * bv_chunk, (size_t)(c1 - c0) * bv_chunk * sizeof *w->d);
        if (w->m) sr_numa_place(p, n, w->m + (size_t)c0 * bv_chunk, (size_t)(c1 - c0) * bv_chunk * sizeof *w->m);
        if (w->row_sum)
            sr_numa_place(p, n, w->row_sum + (size_t)c0 * bv_chunk, (size_t)(c1 - c0) * bv_chunk * sizeof *w->row_sum);
        if (w->row_scale)
            sr_numa_place(p, n, w->row_scale + (size_t)c0 * (size_t)w->tile_w,
                          (size_t)(c1 - c0) * (size_t)w->tile_w * sizeof *w->row_scale);
        if (w->row_scale_m)
            sr_numa_place(p, n, w->row_scale_m + (size_t)c0 * (size_t)w->tile_w,
                          (size_t)(c1 - c0) * (size_t)w->tile_w * sizeof *w->row_scale_m);
    }
    return SR_OK;
}

// ---------------------------------------------------------------- resident set

size_t sr_numa_release_file_pages(const void *p, size_t bytes) {
#if defined(__linux__)
    if (!p || bytes == 0) return 0;
    uintptr_t lo, hi;
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    lo = ((uintptr_t)p + page - 1) & ~(page - 1);           // whole pages inside the range only
    hi = ((uintptr_t)p + bytes) & ~(page - 1);
    if (hi <= lo) return 0;
    FILE *maps = fopen("/proc/self/maps", "r");
    if (!maps) return 0;
    size_t released = 0;
    char line[512];
    while (fgets(line, sizeof line, maps)) {
        unsigned long a, b, off, inode;
        char perms[8], dev[16];
        if (sscanf(line, "%lx-%lx %7s %lx %15s %lu", &a, &b, perms, &off, dev, &inode) != 6) continue;
        if (b <= lo || a >= hi) continue;
        // read-only, private, backed by a file: dropping pages loses nothing
        if (inode == 0 || perms[0] != 'r' || perms[1] != '-' || perms[3] != 'p') continue;
        const uintptr_t s0 = a > lo ? a : lo, s1 = b < hi ? b : hi;
        if (s1 > s0 && madvise((void *)s0, s1 - s0, MADV_DONTNEED) == 0) released += s1 - s0;
    }
    fclose(maps);
    return released;
#else
    (void)p; (void)bytes;
    return 0;
#endif
}
