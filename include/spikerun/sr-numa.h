// sr-numa.h - NUMA topology, policies and placement for the CPU backend (libnuma on Linux).
//
// A pool (sr-pool.h) spans one or more NUMA nodes. Its threads are grouped by node: threads
// [first_n, first_n + count_n) are pinned to the CPUs of node n, and every layer's output rows
// are partitioned over the nodes in proportion to their threads (sr_pool_node_rows), then over
// a node's threads (sr_pool_thread_rows). Weights of node n's rows are migrated to node n
// (sr_numa_place*), so each node streams only local memory. Results never depend on the
// partition: every output row is computed by the same instruction sequence wherever it runs.
//
// Policies follow llama.cpp's --numa:
//   off         one node made of every allowed CPU (workers still pinned, see sr_pool_params)
//   distribute  threads spread evenly over all nodes; weights sharded over them
//   isolate     only the node the process runs on when the pool is created
//   numactl     the CPUs of the process affinity mask (set by numactl/taskset) and their nodes
// Without libnuma, or where numa_available() < 0, every policy runs as one node.
//
// Testing: SPIKERUN_FAKE_NUMA=N (or fake_nodes = N in sr_numa_init / sr_pool_params) pretends
// N nodes over the real CPUs (N blocks of CPUs; with fewer CPUs than nodes, CPU i % n_cpus).
// A fake topology partitions, pins and replicates exactly like a real one, but migrates no
// memory. It implies `distribute` unless another policy is given.
#ifndef SPIKERUN_SR_NUMA_H
#define SPIKERUN_SR_NUMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sr-common.h"
#include "sr-status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SR_NUMA_MAX_NODES 64   // nodes per topology (more are folded onto the first 64)

/// NUMA policy of a pool, like llama.cpp's --numa.
typedef enum sr_numa_policy {
    SR_NUMA_OFF = 0,
    SR_NUMA_DISTRIBUTE = 1,
    SR_NUMA_ISOLATE = 2,
    SR_NUMA_NUMACTL = 3,
} sr_numa_policy;

/// True when libnuma is linked and the kernel supports NUMA (numa_available() >= 0).
SR_API bool sr_numa_supported(void);

/// "off", "distribute", "isolate", "numactl" (or "?" for an unknown value).
SR_API const char *sr_numa_policy_name(int policy);

/// Parses a policy name (case-sensitive, as above; "" = off). SR_ERR_INVALID_ARG otherwise.
SR_API sr_status sr_numa_policy_from_name(const char *name, int *policy);

/// Process-wide defaults for pools created by sr_pool_create (like llama_numa_init): call once
/// before models are loaded. fake_nodes > 0 pretends that many nodes (tests, benchmarks).
/// Without a call, SPIKERUN_NUMA (a policy name) and SPIKERUN_FAKE_NUMA are read.
SR_API void sr_numa_init(int policy, int fake_nodes);

/// The default policy / fake node count pools get (after sr_numa_init or the environment).
SR_API int sr_numa_default_policy(void);
SR_API int sr_numa_default_fake_nodes(void);

/// A machine topology: nodes and their CPUs (restricted to the CPUs this process may use).
typedef struct sr_numa_topology sr_numa_topology;

/// fake_nodes > 0: pretend that many nodes over the allowed CPUs; 0: SPIKERUN_FAKE_NUMA if
/// set, else libnuma's view, else one node; < 0: the real view whatever the environment says.
/// NULL only when out of memory.
SR_API sr_numa_topology *sr_numa_topology_create(int fake_nodes);
SR_API void sr_numa_topology_free(sr_numa_topology *t);

/// Number of nodes (>= 1) that have at least one allowed CPU.
SR_API int sr_numa_topology_nodes(const sr_numa_topology *t);

/// Allowed CPUs of node `node` (0-based index among the nodes above): writes up to `cap` CPU
/// numbers, returns how many the node has.
SR_API int sr_numa_topology_node_cpus(const sr_numa_topology *t, int node, int *cpus, int cap);

/// The kernel's node number of a topology node (-1 for a fake topology).
SR_API int sr_numa_topology_os_node(const sr_numa_topology *t, int node);

/// True if the topology is pretended (SPIKERUN_FAKE_NUMA / fake_nodes).
SR_API bool sr_numa_topology_is_fake(const sr_numa_topology *t);

/// The kernel's node number holding the page at p (-1 if unknown: no libnuma, page not
/// resident). Touches nothing.
SR_API int sr_numa_node_of_memory(const void *p);

/// Drops the whole pages of [p, p + bytes) from this process's resident set when they belong
/// to a read-only file mapping (e.g. the mapped GGUF after its weights were repacked): the
/// kernel re-reads them from the page cache if they are touched again. Anything else
/// (anonymous or writable memory) is left alone. Returns the bytes released.
SR_API size_t sr_numa_release_file_pages(const void *p, size_t bytes);

#ifdef __cplusplus
}
#endif

#endif // SPIKERUN_SR_NUMA_H
