// sr-pool.c - persistent worker pool: generation counter + short spin, then futex sleep.
//
// Dispatch: the caller publishes fn/ctx, sets n_pending = nth - 1, bumps `gen` and wakes
// sleepers (only if some are asleep). Workers spin on `gen` for a short while after each job,
// then sleep on it. The last worker to finish wakes the caller if it went to sleep.
// Each worker has its own struct. Workers are pinned at creation (pthread_attr_setaffinity_np,
// so their stacks are first touched on their node) and grouped by NUMA node (sr-numa.h).
#include "spikerun/sr-pool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "spikerun/sr-numa.h"
#include "sr-cpu-internal.h"

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#endif

#define SR_POOL_PAUSE_NS 20000    // busy-spin (pause) this long after a run ...
#define SR_POOL_SPIN_NS 200000    // ... then spin with sched_yield up to this, then sleep
#define SR_CACHE_LINE 64

typedef struct sr_pool_worker {
    pthread_t thread;
    struct sr_pool *pool;
    int ith;
    int cpu;    // CPU it is pinned to, -1 = none
    int node;   // pool node (index into node_first)
    bool started;
} __attribute__((aligned(SR_CACHE_LINE))) sr_pool_worker;

struct sr_pool {
    // hot, written by the caller per run
    _Alignas(SR_CACHE_LINE) atomic_uint gen;   // futex word: bumped once per run (and at stop)
    sr_pool_fn fn;
    void *ctx;
    atomic_int stop;
    atomic_int n_sleeping;                     // workers blocked in futex_wait(gen)
    // written by the workers
    _Alignas(SR_CACHE_LINE) atomic_uint n_pending;   // futex word for the caller
    atomic_int caller_waiting;
    _Alignas(SR_CACHE_LINE) int n_threads;
    sr_pool_worker *workers;   // n_threads entries; [0] describes the caller
    // NUMA layout (read-only after creation)
    int policy;
    bool fake;
    bool pinned;
    int n_nodes;
    int node_first[SR_NUMA_MAX_NODES + 1];   // threads of node n: [node_first[n], node_first[n+1])
    int node_os[SR_NUMA_MAX_NODES];          // kernel node number, -1 fake / unknown
    // the caller is bound to node 0's CPUs while it runs work (several real nodes only)
    bool bind_caller;
    int *caller_cpus;
    int n_caller_cpus;
    pthread_t bound_caller;
    bool caller_bound;
#if !defined(__linux__)
    pthread_mutex_t mu;
    pthread_cond_t cv;
#endif
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

// ---- wait / wake on a 32-bit word

#if defined(__linux__)
static void word_wait(sr_pool *p, atomic_uint *w, unsigned val) {
    (void)p;
    syscall(SYS_futex, (void *)w, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}
static void word_wake(sr_pool *p, atomic_uint *w, int n) {
    (void)p;
    syscall(SYS_futex, (void *)w, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}
#else
static void word_wait(sr_pool *p, atomic_uint *w, unsigned val) {
    pthread_mutex_lock(&p->mu);
    while (atomic_load(w) == val) pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
static void word_wake(sr_pool *p, atomic_uint *w, int n) {
    (void)w; (void)n;
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}
#endif

// Spins until *w != val or the spin window ends: pause first (lowest latency), then
// sched_yield so that an oversubscribed machine can run the thread we are waiting for.
// Returns the last value read.
static unsigned spin_while_equal(atomic_uint *w, unsigned val) {
    uint64_t t0 = 0;
    bool yielding = false;
    for (int i = 0;; ++i) {
        const unsigned v = atomic_load_explicit(w, memory_order_acquire);
        if (v != val) return v;
        if (yielding) sched_yield();
        else cpu_relax();
        if (yielding || (i & 63) == 63) {
            const uint64_t t = now_ns();
            if (!t0) t0 = t;
            else if (t - t0 > SR_POOL_SPIN_NS) return val;
            else if (t - t0 > SR_POOL_PAUSE_NS) yielding = true;
        }
    }
}

// Returns once p->gen != seen.
static unsigned wait_new_gen(sr_pool *p, unsigned seen) {
    unsigned g = spin_while_equal(&p->gen, seen);
    if (g != seen) return g;
    for (;;) {
        atomic_fetch_add(&p->n_sleeping, 1);
        if (atomic_load(&p->gen) == seen) word_wait(p, &p->gen, seen);
        atomic_fetch_sub(&p->n_sleeping, 1);
        g = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (g != seen) return g;
    }
}

static void *worker_main(void *arg) {
    sr_pool_worker *w = arg;
    sr_pool *p = w->pool;
    unsigned seen = 0;
    for (;;) {
        seen = wait_new_gen(p, seen);
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) break;
        p->fn(p->ctx, w->ith, p->n_threads);
        if (atomic_fetch_sub(&p->n_pending, 1) == 1 && atomic_load(&p->caller_waiting))
            word_wake(p, &p->n_pending, 1);
    }
    return NULL;
}

static int online_cpus(void) {
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

sr_pool_params sr_pool_default_params(void) {
    sr_pool_params p;
    memset(&p, 0, sizeof p);
    int policy, fake;
    bool pin;
    sr_pool_defaults_(&policy, &fake, &pin);
    p.numa = policy;
    p.fake_nodes = fake;
    p.pin = pin;
    return p;
}

sr_pool *sr_pool_create(int n_threads) {
    sr_pool_params p = sr_pool_default_params();
    p.n_threads = n_threads;
    return sr_pool_create_ex(&p);
}

// Chooses the pool's nodes and CPUs from the topology and the policy: fills p->n_nodes,
// node_first, node_os and each thread's node and CPU. Returns the thread count used.
static int layout(sr_pool *p, const sr_numa_topology *t, const sr_pool_params *prm, int n_threads,
                  sr_pool_worker *w, int **caller_cpus, int *n_caller_cpus) {
    // candidate nodes: index list into t
    int sel[SR_NUMA_MAX_NODES], n_sel = 0;
    const int policy = prm->numa;
    if (policy == SR_NUMA_ISOLATE) {
        int cpu = -1;
#if defined(__linux__)
        cpu = sched_getcpu();
#endif
        int found = 0;
        for (int n = 0; n < t->n_nodes && !found; n++)
            for (int i = t->cpu_start[n]; i < t->cpu_start[n + 1]; i++)
                if (t->cpus[i] == cpu) { found = n; break; }
        sel[n_sel++] = found;
    } else if (policy == SR_NUMA_DISTRIBUTE || policy == SR_NUMA_NUMACTL) {
        for (int n = 0; n < t->n_nodes; n++) sel[n_sel++] = n;
    }
    // CPU lists per pool node
    int *cpus = NULL, start[SR_NUMA_MAX_NODES + 1];
    int n_nodes;
    if (n_sel == 0) {   // policy off: one node of every CPU (distinct, in topology order)
        cpus = malloc(sizeof(int) * (size_t)(t->cpu_start[t->n_nodes] + 1));
        if (!cpus) return -1;
        int k = 0;
        for (int i = 0; i < t->cpu_start[t->n_nodes]; i++) {
            bool dup = false;
            for (int j = 0; j < k; j++) dup |= cpus[j] == t->cpus[i];
            if (!dup) cpus[k++] = t->cpus[i];
        }
        start[0] = 0;
        start[1] = k;
        n_nodes = 1;
        p->node_os[0] = t->n_nodes == 1 ? t->os_node[0] : -1;
        if (n_threads <= 0) n_threads = online_cpus();
    } else {
        cpus = malloc(sizeof(int) * (size_t)(t->cpu_start[t->n_nodes] + 1));
        if (!cpus) return -1;
        int k = 0;
        for (int i = 0; i < n_sel; i++) {
            start[i] = k;
            p->node_os[i] = t->os_node[sel[i]];
            for (int c = t->cpu_start[sel[i]]; c < t->cpu_start[sel[i] + 1]; c++) cpus[k++] = t->cpus[c];
        }
        start[n_sel] = k;
        n_nodes = n_sel;
        if (n_threads <= 0) {   // one per distinct CPU of the chosen nodes
            int distinct = 0;
            for (int i = 0; i < k; i++) {
                bool dup = false;
                for (int j = 0; j < i; j++) dup |= cpus[j] == cpus[i];
                distinct += !dup;
            }
            n_threads = distinct;
        }
    }
    if (n_nodes > n_threads) n_nodes = n_threads;   // nodes beyond the thread count stay idle
    // threads per node: as even as possible, contiguous
    int ith = 0;
    for (int n = 0; n < n_nodes; n++) {
        const int cnt = n_threads / n_nodes + (n < n_threads % n_nodes ? 1 : 0);
        p->node_first[n] = ith;
        const int nc = start[n + 1] - start[n];
        for (int k = 0; k < cnt; k++, ith++) {
            w[ith].node = n;
            w[ith].cpu = nc > 0 ? cpus[start[n] + k % nc] : -1;
        }
    }
    p->node_first[n_nodes] = n_threads;
    p->n_nodes = n_nodes;
    // pin only if no CPU gets two threads
    bool ok = prm->pin;
    for (int i = 0; i < n_threads && ok; i++) {
        if (w[i].cpu < 0) ok = false;
        for (int j = 0; j < i && ok; j++) ok = w[j].cpu != w[i].cpu;
    }
    p->pinned = ok;
    if (!ok)
        for (int i = 0; i < n_threads; i++) w[i].cpu = -1;
    // the caller: bound to node 0's CPUs (real multi-node only), never to a single CPU
    p->bind_caller = ok && n_nodes > 1 && !t->fake;
    if (p->bind_caller) {
        *n_caller_cpus = start[1] - start[0];
        *caller_cpus = malloc(sizeof(int) * (size_t)*n_caller_cpus);
        if (*caller_cpus) memcpy(*caller_cpus, cpus + start[0], sizeof(int) * (size_t)*n_caller_cpus);
        else p->bind_caller = false;
    }
    free(cpus);
    return n_threads;
}

sr_pool *sr_pool_create_ex(const sr_pool_params *params) {
    sr_pool_params prm = params ? *params : sr_pool_default_params();
    if (prm.numa < SR_NUMA_OFF || prm.numa > SR_NUMA_NUMACTL) prm.numa = SR_NUMA_OFF;
    if (prm.fake_nodes > 0 && prm.numa == SR_NUMA_OFF) prm.numa = SR_NUMA_DISTRIBUTE;
    // prm.fake_nodes is already resolved (defaults read the environment): -1 = real topology
    sr_numa_topology *topo = sr_numa_topology_create(prm.fake_nodes > 0 ? prm.fake_nodes : -1);
    if (!topo) return NULL;
    sr_pool *p = aligned_alloc(SR_CACHE_LINE, (sizeof(sr_pool) + SR_CACHE_LINE - 1) / SR_CACHE_LINE * SR_CACHE_LINE);
    if (!p) { sr_numa_topology_free(topo); return NULL; }
    memset(p, 0, sizeof *p);
    const int cap = prm.n_threads > 0 ? prm.n_threads : (online_cpus() > topo->cpu_start[topo->n_nodes] ? online_cpus() : topo->cpu_start[topo->n_nodes]);
    sr_pool_worker *w = aligned_alloc(SR_CACHE_LINE, sizeof(sr_pool_worker) * (size_t)cap);
    if (!w) { free(p); sr_numa_topology_free(topo); return NULL; }
    memset(w, 0, sizeof(sr_pool_worker) * (size_t)cap);
    p->policy = prm.numa;
    p->fake = topo->fake;
    const int n_threads = layout(p, topo, &prm, prm.n_threads, w, &p->caller_cpus, &p->n_caller_cpus);
    sr_numa_topology_free(topo);
    if (n_threads <= 0) { free(w); free(p); return NULL; }
    p->n_threads = n_threads;
    p->workers = w;
    atomic_init(&p->gen, 0);
    atomic_init(&p->stop, 0);
    atomic_init(&p->n_sleeping, 0);
    atomic_init(&p->n_pending, 0);
    atomic_init(&p->caller_waiting, 0);
#if !defined(__linux__)
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
#endif
    for (int i = 0; i < n_threads; ++i) {
        p->workers[i].pool = p;
        p->workers[i].ith = i;
    }
    p->workers[0].cpu = -1;   // the caller is not pinned to one CPU
    for (int i = 1; i < n_threads; ++i) {
        pthread_attr_t attr;
        pthread_attr_init(&attr);
#if defined(__linux__)
        if (p->workers[i].cpu >= 0) {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(p->workers[i].cpu, &set);
            pthread_attr_setaffinity_np(&attr, sizeof set, &set);
        }
#endif
        int rc = pthread_create(&p->workers[i].thread, &attr, worker_main, &p->workers[i]);
        if (rc != 0 && p->workers[i].cpu >= 0) {   // affinity refused (cgroup change?): unpinned
            pthread_attr_destroy(&attr);
            pthread_attr_init(&attr);
            p->workers[i].cpu = -1;
            rc = pthread_create(&p->workers[i].thread, &attr, worker_main, &p->workers[i]);
        }
        pthread_attr_destroy(&attr);
        if (rc != 0) {
            // run with the workers we got; free() joins only started ones
            p->n_threads = i;
            for (int n = 0; n <= p->n_nodes; n++)
                if (p->node_first[n] > i) p->node_first[n] = i;
            while (p->n_nodes > 1 && p->node_first[p->n_nodes - 1] == i) p->n_nodes--;
            p->node_first[p->n_nodes] = i;
            break;
        }
        p->workers[i].started = true;
    }
    return p;
}

void sr_pool_free(sr_pool *p) {
    if (!p) return;
    atomic_store(&p->stop, 1);
    atomic_fetch_add(&p->gen, 1);
    word_wake(p, &p->gen, INT32_MAX);
    for (int i = 1; i < p->n_threads; ++i)
        if (p->workers[i].started) pthread_join(p->workers[i].thread, NULL);
#if !defined(__linux__)
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
#endif
    free(p->caller_cpus);
    free(p->workers);
    free(p);
}

int sr_pool_threads(const sr_pool *p) { return p ? p->n_threads : 1; }

void sr_pool_run(sr_pool *p, sr_pool_fn fn, void *ctx) {
    if (!p || p->n_threads <= 1) {
        fn(ctx, 0, 1);
        return;
    }
    if (p->bind_caller && (!p->caller_bound || !pthread_equal(p->bound_caller, pthread_self()))) {
        if (sr_cpu_pin_self_(p->caller_cpus, p->n_caller_cpus) == 0) {
            p->bound_caller = pthread_self();
            p->caller_bound = true;
        }
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->n_pending, (unsigned)(p->n_threads - 1), memory_order_relaxed);
    atomic_fetch_add(&p->gen, 1);   // seq_cst: publishes fn/ctx/n_pending
    if (atomic_load(&p->n_sleeping) > 0) word_wake(p, &p->gen, INT32_MAX);

    fn(ctx, 0, p->n_threads);

    // wait for the workers: spin, then sleep on n_pending
    unsigned left = atomic_load_explicit(&p->n_pending, memory_order_acquire);
    while (left != 0) {
        const unsigned v = spin_while_equal(&p->n_pending, left);
        if (v == left) break;   // spin window over without progress
        left = v;
    }
    if (left == 0) return;
    atomic_store(&p->caller_waiting, 1);
    for (;;) {
        const unsigned v = atomic_load(&p->n_pending);
        if (v == 0) break;
        word_wait(p, &p->n_pending, v);
    }
    atomic_store(&p->caller_waiting, 0);
    atomic_thread_fence(memory_order_acquire);
}

// ---------------------------------------------------------------- NUMA layout queries

int sr_pool_nodes(const sr_pool *p) { return p ? p->n_nodes : 1; }
int sr_pool_numa_policy(const sr_pool *p) { return p ? p->policy : SR_NUMA_OFF; }
bool sr_pool_numa_is_fake(const sr_pool *p) { return p && p->fake; }

int sr_pool_node_first_thread(const sr_pool *p, int node) {
    if (!p) return 0;
    if (node < 0) node = 0;
    if (node > p->n_nodes) node = p->n_nodes;
    return p->node_first[node];
}

int sr_pool_node_threads(const sr_pool *p, int node) {
    if (!p) return node == 0 ? 1 : 0;
    if (node < 0 || node >= p->n_nodes) return 0;
    return p->node_first[node + 1] - p->node_first[node];
}

int sr_pool_thread_node(const sr_pool *p, int ith) {
    return p && ith >= 0 && ith < p->n_threads ? p->workers[ith].node : 0;
}

int sr_pool_thread_cpu(const sr_pool *p, int ith) {
    return p && ith >= 0 && ith < p->n_threads ? p->workers[ith].cpu : -1;
}

int sr_pool_node_os_node(const sr_pool *p, int node) {
    return p && node >= 0 && node < p->n_nodes ? p->node_os[node] : -1;
}

// Units of `align` rows are dealt to threads as units * ith / nth, so node n (threads
// [f, f + c)) gets units [units * f / nth, units * (f + c) / nth): in proportion to its threads.
static void unit_range(int64_t n_rows, int64_t align, int64_t a, int64_t b, int nth, int64_t *r0, int64_t *r1) {
    if (align < 1) align = 1;
    const int64_t units = (n_rows + align - 1) / align;
    const int64_t u0 = units * a / nth, u1 = units * b / nth;
    *r0 = u0 * align < n_rows ? u0 * align : n_rows;
    *r1 = u1 * align < n_rows ? u1 * align : n_rows;
}

void sr_pool_node_rows(const sr_pool *p, int64_t n_rows, int64_t align, int node, int64_t *r0, int64_t *r1) {
    if (!p) {
        *r0 = 0;
        *r1 = node == 0 ? n_rows : 0;
        return;
    }
    if (node < 0 || node >= p->n_nodes) { *r0 = *r1 = 0; return; }
    unit_range(n_rows, align, p->node_first[node], p->node_first[node + 1], p->n_threads, r0, r1);
}

void sr_pool_thread_rows(const sr_pool *p, int64_t n_rows, int64_t align, int ith, int64_t *r0, int64_t *r1) {
    const int nth = p ? p->n_threads : 1;
    if (ith < 0 || ith >= nth) { *r0 = *r1 = 0; return; }
    unit_range(n_rows, align, ith, ith + 1, nth, r0, r1);
}

int sr_pool_describe(const sr_pool *p, char *buf, int cap) {
    if (!buf || cap <= 0) return 0;
    if (!p) return snprintf(buf, (size_t)cap, "1 thread (no pool)") < cap ? (int)strlen(buf) : cap - 1;
    int n = snprintf(buf, (size_t)cap, "%d threads, numa %s (%d %snode%s), ", p->n_threads,
                     sr_numa_policy_name(p->policy), p->n_nodes, p->fake ? "fake " : "", p->n_nodes == 1 ? "" : "s");
    if (n >= 0 && n < cap) {
        if (!p->pinned) {
            n += snprintf(buf + n, (size_t)(cap - n), "not pinned");
        } else {
            n += snprintf(buf + n, (size_t)(cap - n), p->n_threads > 1 ? "workers pinned to cpus" : "no workers");
            for (int i = 1; i < p->n_threads && n < cap; i++)
                n += snprintf(buf + n, (size_t)(cap - n), "%s%d", i == 1 ? " " : ",", p->workers[i].cpu);
        }
    }
    if (n < 0) n = 0;
    return n < cap ? n : cap - 1;
}

int sr_cpu_current(void) {
#if defined(__linux__)
    return sched_getcpu();
#else
    return -1;
#endif
}
