// sr-pool.c - persistent worker pool: generation counter + short spin, then futex sleep.
//
// Dispatch: the caller publishes fn/ctx, sets n_pending = nth - 1, bumps `gen` and wakes
// sleepers (only if some are asleep). Workers spin on `gen` for a short while after each job,
// then sleep on it. The last worker to finish wakes the caller if it went to sleep.
// Each worker has its own struct (cpu/node slots for the pinning / NUMA placement to come).
#include "spikerun/sr-pool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
    int cpu;    // CPU to pin to, -1 = none (pinning: later issue)
    int node;   // NUMA node, -1 = none (libnuma placement: later issue)
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

sr_pool *sr_pool_create(int n_threads) {
    if (n_threads <= 0) n_threads = online_cpus();
    sr_pool *p = aligned_alloc(SR_CACHE_LINE, (sizeof(sr_pool) + SR_CACHE_LINE - 1) / SR_CACHE_LINE * SR_CACHE_LINE);
    if (!p) return NULL;
    memset(p, 0, sizeof *p);
    p->n_threads = n_threads;
    p->workers = aligned_alloc(SR_CACHE_LINE, sizeof(sr_pool_worker) * (size_t)n_threads);
    if (!p->workers) { free(p); return NULL; }
    memset(p->workers, 0, sizeof(sr_pool_worker) * (size_t)n_threads);
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
        p->workers[i].cpu = -1;
        p->workers[i].node = -1;
    }
    for (int i = 1; i < n_threads; ++i) {
        if (pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]) != 0) {
            p->n_threads = i;   // run with the workers we got; free() joins only started ones
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
    free(p->workers);
    free(p);
}

int sr_pool_threads(const sr_pool *p) { return p ? p->n_threads : 1; }

void sr_pool_run(sr_pool *p, sr_pool_fn fn, void *ctx) {
    if (!p || p->n_threads <= 1) {
        fn(ctx, 0, 1);
        return;
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
