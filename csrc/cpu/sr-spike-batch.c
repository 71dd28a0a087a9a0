// sr-spike-batch.c - NUMA-aware, token-batched spike matvecs on the pool (see sr-cpu-internal.h).
//
// One pool run covers every layer that reads a site (q, k, v or gate, up) and a batch of
// tokens. Thread ith owns the tile-aligned rows sr_pool_thread_rows(n_out, tile_w, ith) of each
// layer, so with several NUMA nodes a node's threads read only the row chunks that were
// migrated to that node; on one node it owns a share of all the layers' tiles taken as one
// range (better balanced when layers have few tiles each). On one node, batches of at least
// one token per thread are split by tokens instead (whole tiles split rows unevenly: 576 rows
// = 4.5 tiles of 128). Within its rows a thread walks groups of tiles small enough to stay
// in its L2 and runs every token of the batch over a group before moving on: the packed
// weights are fetched from memory once per batch instead of once per token.
//
// Numerics: each (token, row) goes through sr_spike_matvec exactly as in the one-token path;
// integer sums do not depend on the row range and the float rescale is per row, so any split
// over threads, nodes or tile groups gives the same bits.
#include <stdio.h>
#include <string.h>

#include "sr-cpu-internal.h"

// Bytes of packed weights a thread keeps hot while it runs a batch's tokens over them.
#ifndef SR_BATCH_GROUP_BYTES
#define SR_BATCH_GROUP_BYTES (192u * 1024u)
#endif

static size_t row_bytes(const sr_spike_weights *w) {
    // codes + per-block scales (+ mins) of one row
    size_t codes = (size_t)w->n_in * SR_SPIKE_LINE_BYTES / (size_t)w->tile_w;
    size_t scales = (size_t)w->n_blocks * ((w->d ? 2u : 0u) + (w->m ? 2u : 0u));
    return codes + scales + 4;
}

// Tiles of all the job's layers counted as one range (layer i's follow layer i - 1's).
static int64_t job_tiles(const sr_spike_batch *b) {
    int64_t tiles = 0;
    for (int32_t i = 0; i < b->n_w; i++) tiles += b->w[i]->n_chunks;
    return tiles;
}

// Rows [r0, r1) of layer w that the tiles [u0, u1) of the joint range cover, w's tiles
// starting at base (r0 == r1: none).
static void tile_rows(const sr_spike_weights *w, int64_t base, int64_t u0, int64_t u1, int64_t *r0, int64_t *r1) {
    const int64_t lo = u0 > base ? u0 : base, hi = u1 < base + w->n_chunks ? u1 : base + w->n_chunks;
    *r0 = (lo - base) * w->tile_w;
    *r1 = hi > lo ? ((hi - base) * w->tile_w < w->n_out ? (hi - base) * w->tile_w : w->n_out) : *r0;
}

// One token on one node: the threads take runs of tiles of all the job's layers from a shared
// counter until none are left, so a thread that is slower (or delayed by its other work) takes
// fewer, and a layer whose tiles do not divide evenly (576 rows = 9 tiles of 64) is not split
// 4/5. Runs are whole pairs of tiles (the AVX2 int8 kernel takes two per call), about 4 per
// thread over the job, so each call's per-block setup stays small. Zen 4, 2 threads, paired
// runs: 2 runs per thread against 8 of whole quads 1.02x, against 4 of pairs 0.99x (noise).
static sr_status take_tile_runs(sr_spike_batch *b, const sr_spike_planes *x, int nth, sr_spike_stats *sum) {
    const int64_t tiles = job_tiles(b);
    int64_t run = tiles / (4 * (int64_t)nth) / 2 * 2;
    if (run < 2) run = 2;
    for (;;) {
        const int64_t u0 = atomic_fetch_add_explicit(&b->next_tile, run, memory_order_relaxed);
        if (u0 >= tiles) return SR_OK;
        int64_t base = 0;
        for (int32_t i = 0; i < b->n_w; base += b->w[i]->n_chunks, i++) {
            int64_t r0, r1;
            tile_rows(b->w[i], base, u0, u0 + run, &r0, &r1);
            if (r1 <= r0) continue;
            sr_spike_stats s1;
            const sr_status st = sr_spike_matvec(b->w[i], x, (int32_t)r0, (int32_t)r1, b->y[i], NULL, &s1);
            if (st != SR_OK) return st;
            sr_spike_stats_add(sum, &s1);
        }
    }
}

// Thread ith's status and counters (and its error text on failure) for the caller.
static void batch_done(sr_spike_batch *b, int ith, sr_status st, const sr_spike_stats *sum) {
    b->status[ith] = st;
    b->stats[ith] = *sum;
    if (st != SR_OK) snprintf(b->error[ith], sizeof b->error[ith], "%s", sr_last_error());
}

void sr_spike_batch_run(void *ctx, int ith, int nth) {
    sr_spike_batch *b = ctx;
    if (ith >= SR_SPIKE_MAX_THREADS) return;
    const int node = sr_pool_thread_node(b->pool, ith);
    const sr_spike_planes *xs = b->xs_node[node] ? b->xs_node[node] : b->xs;
    sr_spike_stats sum;
    memset(&sum, 0, sizeof sum);
    sr_status st = SR_OK;
    // One node and at least a token per thread: split the tokens instead of the rows. Rows come
    // in whole tiles (128 for Q4_1), so a 576-row layer splits 256/320 over 2 threads; tokens
    // split evenly, and the weights are shared in the one node's caches anyway.
    int32_t t0 = 0, t1 = b->n_tok;
    const bool by_tokens = b->n_tok >= nth && nth > 1 && sr_pool_nodes(b->pool) == 1;
    if (by_tokens) {
        t0 = (int32_t)((int64_t)b->n_tok * ith / nth);
        t1 = (int32_t)((int64_t)b->n_tok * (ith + 1) / nth);
    }
    // One token on one node: threads take runs of tiles from a shared counter (take_tile_runs).
    if (b->n_tok == 1 && nth > 1 && sr_pool_nodes(b->pool) == 1) {
        batch_done(b, ith, take_tile_runs(b, &xs[0], nth, &sum), &sum);
        return;
    }
    // On one node, the rows of all the job's layers are split as one range of tiles: q, k and v
    // (9 + 3 + 3 tiles of 64 rows) go 7 / 8 over two threads, where a split per layer gave one
    // thread 4 + 1 + 1 tiles and the other 5 + 2 + 2. With several nodes each layer is split as
    // its rows were placed (sr_pool_thread_rows).
    const bool joint = !by_tokens && b->n_w > 1 && sr_pool_nodes(b->pool) == 1;
    int64_t u_lo = 0, u_hi = 0, u_base = 0;   // this thread's tiles, counted over all the layers
    if (joint) sr_pool_thread_rows(b->pool, job_tiles(b), 1, ith, &u_lo, &u_hi);
    for (int32_t i = 0; i < b->n_w && st == SR_OK; i++) {
        const sr_spike_weights *w = b->w[i];
        int64_t r0 = 0, r1 = w->n_out;
        if (joint) {
            tile_rows(w, u_base, u_lo, u_hi, &r0, &r1);
            u_base += w->n_chunks;
        } else if (!by_tokens) {
            sr_pool_thread_rows(b->pool, w->n_out, w->tile_w, ith, &r0, &r1);
        }
        if (r1 <= r0 || t1 <= t0) continue;
        // whole multiples of 4 tiles: the row kernels run 4 tiles per call (sr-spike-opt.c), and a
        // group of 5 left a one-tile call per group, 16% of pp512 in the slower one-tile kernel
        const int64_t quad = 4 * (int64_t)w->tile_w;
        int64_t group = (int64_t)(SR_BATCH_GROUP_BYTES / row_bytes(w)) / quad * quad;
        if (group < quad) group = quad;
        if (t1 - t0 == 1) group = r1 - r0;   // one token: one call over the whole slice
        for (int64_t g0 = r0; g0 < r1 && st == SR_OK; g0 += group) {
            const int64_t g1 = g0 + group < r1 ? g0 + group : r1;
            for (int32_t t = t0; t < t1; t++) {
                sr_spike_stats s1;
                // the group's weights come from memory for its first token only: prefetching
                // them again for the others took 9% of pp512 (2 threads, Xeon)
                st = (t == t0 ? sr_spike_matvec : sr_spike_matvec_hot)(
                    w, &xs[t], (int32_t)g0, (int32_t)g1, b->y[i] + (size_t)t * (size_t)w->n_out, NULL, &s1);
                if (st != SR_OK) break;
                sr_spike_stats_add(&sum, &s1);
            }
        }
    }
    batch_done(b, ith, st, &sum);
}

// ---------------------------------------------------------------- node-local plane copies

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

// Bytes of one replica slot (everything the matvec reads; no event lists).
static size_t slot_bytes(int32_t n_cap, int32_t T_cap) {
    const size_t nw = (size_t)(n_cap + 31) / 32;
    return align64((size_t)T_cap * 2 * nw * 4) + align64((size_t)n_cap * 4) + 3 * align64(nw * 4);
}

sr_status sr_spike_replica_init(sr_spike_replica *r, const sr_pool *pool, int32_t n_tok_cap, int32_t n_cap,
                                int32_t T_cap) {
    memset(r, 0, sizeof *r);
    r->n_nodes = sr_pool_nodes(pool);
    r->n_tok_cap = n_tok_cap;
    r->n_cap = n_cap;
    r->T_cap = T_cap;
    if (r->n_nodes <= 1) return SR_OK;
    const size_t slot = slot_bytes(n_cap, T_cap);
    const size_t head = align64(sizeof(sr_spike_planes) * (size_t)n_tok_cap);
    for (int n = 0; n < r->n_nodes; n++) {
        r->bytes[n] = head + slot * (size_t)n_tok_cap;
        r->mem[n] = sr_numa_alloc(pool, n, r->bytes[n]);
        if (!r->mem[n]) {
            sr_spike_replica_free(r);
            return sr_fail(SR_ERR_NO_MEMORY, "cannot allocate node-local spike planes (%zu bytes)", r->bytes[0]);
        }
        r->planes[n] = r->mem[n];
        const size_t nw = (size_t)(n_cap + 31) / 32;
        for (int32_t t = 0; t < n_tok_cap; t++) {
            uint8_t *m = (uint8_t *)r->mem[n] + head + slot * (size_t)t;
            sr_spike_planes *p = &r->planes[n][t];
            memset(p, 0, sizeof *p);
            p->bits = (uint32_t *)m;
            m += align64((size_t)T_cap * 2 * nw * 4);
            p->scale = (float *)m;
            m += align64((size_t)n_cap * 4);
            p->blk_abs = (int32_t *)m;
            m += align64(nw * 4);
            p->blk_sum = (int32_t *)m;
            m += align64(nw * 4);
            p->blk_tfirst = (int32_t *)m;
            p->n_cap = n_cap;
            p->T_cap = T_cap;
            p->mem = r->mem[n];   // non-NULL marks it initialized; never passed to sr_spike_planes_free
        }
    }
    return SR_OK;
}

void sr_spike_replica_free(sr_spike_replica *r) {
    if (!r) return;
    for (int n = 0; n < SR_NUMA_MAX_NODES; n++)
        if (r->mem[n]) sr_numa_free(r->mem[n], r->bytes[n]);
    memset(r, 0, sizeof *r);
}

void sr_spike_replica_fill(sr_spike_replica *r, const sr_spike_planes *xs, int32_t n_tok, sr_spike_batch *b) {
    for (int n = 0; n < SR_NUMA_MAX_NODES; n++) b->xs_node[n] = NULL;
    if (r->n_nodes <= 1 || n_tok > r->n_tok_cap) return;
    for (int n = 0; n < r->n_nodes; n++) {
        for (int32_t t = 0; t < n_tok; t++) {
            const sr_spike_planes *s = &xs[t];
            sr_spike_planes *d = &r->planes[n][t];
            if (s->n > r->n_cap || s->T > r->T_cap) return;   // does not fit: everyone reads xs
            d->n = s->n;
            d->n_words = s->n_words;
            d->T = s->T;
            d->encoding = s->encoding;
            d->offset = s->offset;
            d->group = s->group;
            d->n_groups = s->n_groups;
            d->has_events = 0;
            d->spikes = s->spikes;
            memcpy(d->bits, s->bits, sizeof(uint32_t) * (size_t)s->T * 2 * (size_t)s->n_words);
            memcpy(d->scale, s->scale, sizeof(float) * (size_t)s->n_groups);
            memcpy(d->blk_abs, s->blk_abs, sizeof(int32_t) * (size_t)s->n_words);
            memcpy(d->blk_sum, s->blk_sum, sizeof(int32_t) * (size_t)s->n_words);
            memcpy(d->blk_tfirst, s->blk_tfirst, sizeof(int32_t) * (size_t)s->n_words);
        }
    }
    for (int n = 0; n < r->n_nodes; n++) b->xs_node[n] = r->planes[n];
}
