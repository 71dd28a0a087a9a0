// sr-pool.h - persistent worker thread pool for the dense CPU kernels.
//
// Workers are created once by sr_pool_create; sr_pool_run wakes them through a generation
// counter (short spin, then futex sleep), so a dispatch costs no thread creation and no heap
// allocation. The calling thread always takes part as ith 0.
#ifndef SPIKERUN_SR_POOL_H
#define SPIKERUN_SR_POOL_H

#include "sr-common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sr_pool sr_pool;

/// Work item: called once per thread with its index `ith` in [0, nth).
typedef void (*sr_pool_fn)(void *ctx, int ith, int nth);

/// Creates a pool of `n_threads` threads in total, the caller included (so n_threads - 1
/// workers are started). n_threads <= 0 means the number of online CPUs. NULL on failure.
SR_API sr_pool *sr_pool_create(int n_threads);

/// Stops and joins the workers, then frees the pool. NULL is accepted.
SR_API void sr_pool_free(sr_pool *p);

/// Total number of threads (caller included); 1 for NULL.
SR_API int sr_pool_threads(const sr_pool *p);

/// Every thread runs fn(ctx, ith, nth) exactly once; the caller runs ith 0. Returns when all
/// have finished. p == NULL runs fn(ctx, 0, 1) on the caller. Not reentrant: one run at a time
/// per pool, and fn must not call sr_pool_run on the same pool.
SR_API void sr_pool_run(sr_pool *p, sr_pool_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif

#endif // SPIKERUN_SR_POOL_H
