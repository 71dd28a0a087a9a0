// sr-cpu-internal.h - private glue of the CPU backend (csrc/cpu): topology internals shared by
// sr-numa.c and sr-pool.c, and the NUMA-aware batched spike matvec used by the spike runtime
// (csrc/core/sr-spike-net.c).
#ifndef SPIKERUN_SR_CPU_INTERNAL_H
#define SPIKERUN_SR_CPU_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "spikerun/sr-numa.h"
#include "spikerun/sr-pool.h"
#include "spikerun/sr-spike.h"

struct sr_numa_topology {
    int n_nodes;
    bool fake;
    int os_node[SR_NUMA_MAX_NODES];   // kernel node number, -1 when fake / unknown
    int cpu_start[SR_NUMA_MAX_NODES + 1];
    int *cpus;                        // CPUs of node n: cpus[cpu_start[n] .. cpu_start[n+1])
};

// CPUs this process may run on, as captured on first use (sorted). Returns the count (>= 1).
int sr_cpu_allowed_(int *cpus, int cap);
// True when libnuma reports NUMA support.
bool sr_numa_libnuma_ok_(void);
// Pin the calling thread to `cpus` (n entries). Returns 0 on success.
int sr_cpu_pin_self_(const int *cpus, int n);
// The defaults a pool gets on this thread (process defaults or the thread's override).
void sr_pool_defaults_(int *policy, int *fake, bool *pin);

// ---------------------------------------------------------------------------------------
// Batched, NUMA-aware spike matvec: one pool run computes `n_w` layers that read the same
// site for `n_tok` tokens. Thread ith computes, for each layer i, the rows
// sr_pool_thread_rows(pool, n_out_i, tile_w_i, ith) of every token, so its weight slice is
// read once per batch while it is hot in its caches. With several nodes each node reads the
// planes from its own copy (xs_node[node], filled by sr_spike_batch_replicate).
// Results equal sr_spike_matvec token by token, bit for bit.
#define SR_SPIKE_BATCH_MAX_W 3
typedef struct sr_spike_batch {
    sr_pool *pool;
    int32_t n_w;
    const sr_spike_weights *w[SR_SPIKE_BATCH_MAX_W];
    float *y[SR_SPIKE_BATCH_MAX_W];         // (n_tok, n_out_i)
    int32_t n_tok;
    const sr_spike_planes *xs;              // (n_tok) planes as encoded
    const sr_spike_planes *xs_node[SR_NUMA_MAX_NODES];  // per-node copies, or NULL = xs
    sr_status status[SR_SPIKE_MAX_THREADS];
    sr_spike_stats stats[SR_SPIKE_MAX_THREADS];  // summed over layers and tokens
    char error[SR_SPIKE_MAX_THREADS][160];       // sr_last_error() of a failing thread
    _Atomic int64_t next_tile;              // one token on one node: the next tile to take
} sr_spike_batch;

// sr_pool_fn: runs thread ith's share of the batch.
void sr_spike_batch_run(void *batch, int ith, int nth);

// Node-local copies of planes (several nodes only): a buffer per node that holds `n_tok`
// planes of up to n_cap inputs and T_cap planes each.
typedef struct sr_spike_replica {
    int32_t n_nodes, n_tok_cap, n_cap, T_cap;
    void *mem[SR_NUMA_MAX_NODES];
    size_t bytes[SR_NUMA_MAX_NODES];
    sr_spike_planes *planes[SR_NUMA_MAX_NODES];   // (n_tok_cap) per node
} sr_spike_replica;

sr_status sr_spike_replica_init(sr_spike_replica *r, const sr_pool *pool, int32_t n_tok_cap,
                                int32_t n_cap, int32_t T_cap);
void sr_spike_replica_free(sr_spike_replica *r);
// Copies xs[0 .. n_tok) into every node's buffer and points b->xs_node at them.
void sr_spike_replica_fill(sr_spike_replica *r, const sr_spike_planes *xs, int32_t n_tok,
                           sr_spike_batch *b);

// Migrates each node's row chunks of packed spike weights to that node.
sr_status sr_numa_place_spike_weights(const sr_pool *pool, const sr_spike_weights *w);

#endif // SPIKERUN_SR_CPU_INTERNAL_H
