// sr-pool.h - persistent worker thread pool of the CPU backend, NUMA-aware.
//
// Workers are created once by sr_pool_create / sr_pool_create_ex and pinned to CPUs;
// sr_pool_run wakes them through a generation counter (short spin, then futex sleep), so a
// dispatch costs no thread creation and no heap allocation. The calling thread always takes
// part as ith 0.
//
// NUMA (sr-numa.h): a pool spans one or more nodes; threads are grouped by node (threads
// [sr_pool_node_first_thread(n), + sr_pool_node_threads(n)) belong to node n; the caller is
// thread 0 of node 0). Kernels split output rows with sr_pool_thread_rows, which gives every
// node the contiguous block sr_pool_node_rows, so the weights of that block can live on the
// node (sr_numa_place_rows) and are streamed only by its threads.
#ifndef SPIKERUN_SR_POOL_H
#define SPIKERUN_SR_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sr-common.h"
#include "sr-status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sr_pool sr_pool;

/// Work item: called once per thread with its index `ith` in [0, nth).
typedef void (*sr_pool_fn)(void *ctx, int ith, int nth);

/// How a pool is built.
typedef struct sr_pool_params {
    int32_t n_threads;   // total, caller included; <= 0: one per allowed CPU of the pool's nodes
                         // (policy off: the online CPUs)
    int32_t numa;        // sr_numa_policy
    int32_t fake_nodes;  // > 0: pretend this many NUMA nodes over the real CPUs (tests)
    bool pin;            // pin each worker to one CPU of its node (only when no CPU would get
                         // two threads); SPIKERUN_PIN=0 in the environment turns it off
} sr_pool_params;

/// Defaults: n_threads 0, the process-wide NUMA policy / fake node count (sr_numa_init, or
/// SPIKERUN_NUMA / SPIKERUN_FAKE_NUMA), pin = true unless SPIKERUN_PIN=0.
SR_API sr_pool_params sr_pool_default_params(void);

/// Creates a pool as described by `params` (NULL = defaults). NULL on failure.
SR_API sr_pool *sr_pool_create_ex(const sr_pool_params *params);

/// Creates a pool of `n_threads` threads in total, the caller included (so n_threads - 1
/// workers are started), with the default NUMA policy and pinning. n_threads <= 0 means the
/// number of online CPUs (policy off) or the CPUs of the policy's nodes. NULL on failure.
SR_API sr_pool *sr_pool_create(int n_threads);

/// Stops and joins the workers, then frees the pool. NULL is accepted.
SR_API void sr_pool_free(sr_pool *p);

/// Total number of threads (caller included); 1 for NULL.
SR_API int sr_pool_threads(const sr_pool *p);

/// Every thread runs fn(ctx, ith, nth) exactly once; the caller runs ith 0. Returns when all
/// have finished. p == NULL runs fn(ctx, 0, 1) on the caller. Not reentrant: one run at a time
/// per pool, and fn must not call sr_pool_run on the same pool.
SR_API void sr_pool_run(sr_pool *p, sr_pool_fn fn, void *ctx);

// ---- NUMA layout of a pool (NULL pool: one node, one thread)

/// Nodes the pool's threads run on (>= 1).
SR_API int sr_pool_nodes(const sr_pool *p);
/// sr_numa_policy of the pool.
SR_API int sr_pool_numa_policy(const sr_pool *p);
/// True if the pool's topology is pretended (SPIKERUN_FAKE_NUMA / fake_nodes).
SR_API bool sr_pool_numa_is_fake(const sr_pool *p);
/// First thread of node `node`, and the number of threads it has.
SR_API int sr_pool_node_first_thread(const sr_pool *p, int node);
SR_API int sr_pool_node_threads(const sr_pool *p, int node);
/// Node of thread ith.
SR_API int sr_pool_thread_node(const sr_pool *p, int ith);
/// CPU thread ith is pinned to, -1 if it is not pinned (the caller, ith 0, never is unless the
/// pool spans several real nodes: then it is bound to node 0's CPUs while it runs work).
SR_API int sr_pool_thread_cpu(const sr_pool *p, int ith);
/// The kernel's node number of pool node `node` (-1 for a fake topology or without libnuma).
SR_API int sr_pool_node_os_node(const sr_pool *p, int node);

/// Rows [r0, r1) of `n_rows` that node `node` owns: contiguous, in proportion to its threads,
/// boundaries multiples of `align` (>= 1; rows are handed out in units of `align`).
SR_API void sr_pool_node_rows(const sr_pool *p, int64_t n_rows, int64_t align, int node,
                              int64_t *r0, int64_t *r1);
/// Rows [r0, r1) that thread ith computes: the node's block split over its threads (the union
/// over a node's threads is sr_pool_node_rows). May be empty.
SR_API void sr_pool_thread_rows(const sr_pool *p, int64_t n_rows, int64_t align, int ith,
                                int64_t *r0, int64_t *r1);

/// One line such as "2 threads, numa off (1 node), pinned cpus 0,1" for logs and benchmarks.
/// Returns the length written (truncated to cap - 1).
SR_API int sr_pool_describe(const sr_pool *p, char *buf, int cap);

// ---- placement (no-ops on one node and on fake topologies)

/// Moves the pages of [addr, addr + bytes) to pool node `node` (each page goes to the node
/// owning its first byte, so adjacent ranges never fight over a page). Best effort.
SR_API sr_status sr_numa_place(const sr_pool *p, int node, const void *addr, size_t bytes);
/// Places a row-major matrix: node n gets the pages of its rows sr_pool_node_rows(n_rows, align).
SR_API sr_status sr_numa_place_rows(const sr_pool *p, const void *rows, size_t row_bytes,
                                    int64_t n_rows, int64_t align);
/// Memory on pool node `node` (page aligned, zeroed; on a fake topology plain pages). Free with
/// sr_numa_free(ptr, bytes).
SR_API void *sr_numa_alloc(const sr_pool *p, int node, size_t bytes);
SR_API void sr_numa_free(void *ptr, size_t bytes);

/// CPU the calling thread is running on right now (-1 if unknown).
SR_API int sr_cpu_current(void);

/// Tests only: for pools created by sr_pool_create on the calling thread, use this policy /
/// fake node count / pinning instead of the process defaults (enabled = false removes it).
SR_API void sr_pool_set_thread_defaults(bool enabled, int policy, int fake_nodes, bool pin);

#ifdef __cplusplus
}
#endif

#endif // SPIKERUN_SR_POOL_H
