// Spike-driven model runtime: engine hooks that encode each site's activation into spike
// planes once per token and run every layer reading it through sr_spike_matvec (threaded by
// output rows), plus option-A spike attention with int8 K/V caches.
// Linear layers run on the CPU backend's batched job (csrc/cpu/sr-spike-batch.c): one pool
// run per site covers all its layers and up to SR_SPIKE_NET_BATCH tokens, with NUMA-aware
// row ownership; the results are those of one sr_spike_matvec per (layer, token).
#include "spikerun/sr-spike-net.h"
#include "spikerun/sr-spike-float.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spikerun/sr-fpga.h"
#include "spikerun/sr-pool.h"
#include "spikerun/sr-quant.h"
#include "../cpu/sr-cpu-internal.h"
#include "../../firmware/kernels/spk_token.h"

#define SR_SPIKE_NET_BATCH 16  // tokens encoded, then run over each weight slice together

typedef struct attn_scratch {
    sr_spike_planes q, p;
    int32_t *counts;  // (max(n_ctx_pad, head_dim))
    float *scores;    // (n_ctx_pad)
    float *qscale;
    sr_spike_stats sq, sp;  // stats of this thread's current call
    uint64_t q_spikes, p_spikes, q_planes, p_planes, q_tokens, p_tokens, q_acts, p_acts;
} attn_scratch;

struct sr_spike_net {
    sr_spike_net_params p;
    sr_spike_site_cfg *sites;
    float *v_scales;
    sr_spike_weights *lin;  // [(n_layer + 1) * SR_N_PROJ]
    bool *lin_set;
    sr_engine *engine;
    sr_pool *pool;
    int32_t n_max, ctx_pad, n_threads;
    int32_t *counts;
    float *scales;
    int32_t *th_counts;  // [n_threads][n_max] per-thread encoder scratch (batches)
    float *th_scales;    // [n_threads][n_max]
    void *act;  // quantized activation rows for dense sites
    size_t act_bytes;
    bool release_sources;              // sr_spike_net_release_sources
    const void *head_src;              // the data the head was packed from (tied: the embeddings)
    int32_t T_cap;                     // most planes any site needs
    sr_spike_planes *bplanes;          // [SR_SPIKE_NET_BATCH] encoded tokens of one batch
    sr_spike_replica replica;          // node-local copies of bplanes (several NUMA nodes)
    sr_spike_site_stats *stats;  // [(n_layer + 1) * SR_N_SITES_ALL]
    sr_spike_weights *kc, *vc;   // [n_seq][n_layer * n_head_kv]
    int32_t n_seq;
    attn_scratch *as;            // [n_threads]
    sr_spike_record_fn record;
    void *record_user;
    struct sr_fpga *fpga;        // when set, linear layers run on the FPGA
    int32_t *fpga_base;          // [(n_layer * 4 + 1)] first matrix index of each site
    float *fpga_y;               // outputs of one step
    bool fpga_token;             // the whole token runs on the FPGA (one spk_token run per token)
    int32_t token_head;          // matrix index of the head in the token program
    int8_t *head_codes;          // refined head: the head's int8 codes, row-major (n_vocab, n_embd)
    float *head_sel;             // refined head: selection scratch (n_vocab)
    int32_t *head_cand;          // refined head: candidate rows (n_vocab)
    int32_t *head_rows;          // refined head: the chosen rows (head_refine_rows)
};

static int32_t max3(int32_t a, int32_t b, int32_t c) {
    int32_t m = a > b ? a : b;
    return m > c ? m : c;
}

static bool bitwise(int32_t enc) { return sr_spike_encoding_is_bitwise(enc); }

// Most planes a site's encoder can produce (see encode below); 0 for a dense site.
static int32_t site_planes(const sr_spike_site_cfg *c) {
    if (c->rule == SR_SPIKE_RULE_MEAN) return SR_SPIKE_MAX_T_BITWISE;
    if (c->rule != SR_SPIKE_RULE_MAX) return 0;
    const int32_t q = (1 << (c->bits - 1)) - 1, cl = c->clip > 0 ? c->clip : q;
    int32_t T;
    switch (c->encoding) {
    case SR_SPIKE_SIGN_MAGNITUDE: T = c->bits - 1; break;
    case SR_SPIKE_TWOS_COMPLEMENT: T = c->bits; break;
    case SR_SPIKE_TERNARY: T = cl; break;
    default: T = 2 * cl; break;
    }
    return T < SR_SPIKE_MAX_T ? T : SR_SPIKE_MAX_T;
}

static sr_status check_site(const sr_spike_site_cfg *c, int32_t i) {
    if (c->encoding < SR_SPIKE_SIGN_MAGNITUDE || c->encoding > SR_SPIKE_NAF)
        return sr_fail(SR_ERR_INVALID_ARG, "site %d: unknown encoding %d", i, c->encoding);
    if (c->pow2 != 0 && (c->pow2 != 1 || c->rule != SR_SPIKE_RULE_MEAN))
        return sr_fail(SR_ERR_INVALID_ARG, "site %d: power-of-two steps (pow2 = 1) are for the mean rule only", i);
    if (c->encoding == SR_SPIKE_NAF && c->rule == SR_SPIKE_RULE_MAX)
        return sr_fail(SR_ERR_INVALID_ARG, "site %d: the NAF code is for the mean rule (T per token)", i);
    if (c->rule == SR_SPIKE_RULE_MEAN) {
        if (!bitwise(c->encoding))
            return sr_fail(SR_ERR_INVALID_ARG,
                           "site %d: the mean rule needs a bitwise encoding (rate codes need fixed T)", i);
        if (!(c->k > 0.0f) || !isfinite(c->k))
            return sr_fail(SR_ERR_INVALID_ARG, "site %d: k must be positive", i);
    } else if (c->rule == SR_SPIKE_RULE_MAX) {
        if (c->bits < 2 || c->bits > 16)
            return sr_fail(SR_ERR_INVALID_ARG, "site %d: bits must be in 2..16, got %d", i, c->bits);
        if (!(c->gamma > 0.0f && c->gamma <= 1.0f))
            return sr_fail(SR_ERR_INVALID_ARG, "site %d: gamma must be in (0, 1]", i);
    } else if (c->rule == SR_SPIKE_RULE_DENSE) {
        return SR_OK;
    } else {
        return sr_fail(SR_ERR_INVALID_ARG, "site %d: unknown rule %d", i, c->rule);
    }
    if (!(c->rho >= 0.0f && c->rho < 0.5f))
        return sr_fail(SR_ERR_INVALID_ARG, "site %d: rho must be in [0, 0.5)", i);
    if (!(c->tau >= 0.0f && c->tau <= 0.5f))
        return sr_fail(SR_ERR_INVALID_ARG, "site %d: tau must be in [0, 0.5]", i);
    // The thrifty rounding counts NAF digits: with another code it would save nothing.
    if (c->tau > 0.0f && (c->rule != SR_SPIKE_RULE_MEAN || c->encoding != SR_SPIKE_NAF))
        return sr_fail(SR_ERR_INVALID_ARG, "site %d: tau > 0 needs the mean rule with NAF trains", i);
    return SR_OK;
}

void sr_spike_net_free(sr_spike_net *net) {
    if (!net) return;
    if (net->lin)
        for (int32_t i = 0; i < (net->p.n_layer + 1) * SR_N_PROJ; i++) sr_spike_weights_free(&net->lin[i]);
    if (net->kc)
        for (int32_t i = 0; i < net->p.n_layer * net->p.n_head_kv * net->n_seq; i++) {
            sr_spike_weights_free(&net->kc[i]);
            sr_spike_weights_free(&net->vc[i]);
        }
    if (net->as)
        for (int32_t i = 0; i < net->n_threads; i++) {
            sr_spike_planes_free(&net->as[i].q);
            sr_spike_planes_free(&net->as[i].p);
            free(net->as[i].counts);
            free(net->as[i].scores);
            free(net->as[i].qscale);
        }
    if (net->bplanes)
        for (int32_t i = 0; i < SR_SPIKE_NET_BATCH; i++) sr_spike_planes_free(&net->bplanes[i]);
    free(net->bplanes);
    sr_spike_replica_free(&net->replica);
    free(net->as); free(net->kc); free(net->vc); free(net->lin); free(net->lin_set);
    free(net->act);
    free(net->fpga_base);
    free(net->fpga_y);
    free(net->sites); free(net->v_scales); free(net->counts); free(net->scales);
    free(net->th_counts); free(net->th_scales); free(net->stats);
    free(net->head_codes); free(net->head_sel); free(net->head_cand); free(net->head_rows);
    free(net);
}

sr_status sr_spike_net_set_sites(sr_spike_net *net, const sr_spike_site_cfg *sites, int32_t n) {
    const int32_t want = net->p.n_layer * 4 + 1;
    if (!sites || n != want) return sr_fail(SR_ERR_INVALID_ARG, "spike net: %d site settings, the net has %d", n, want);
    if (net->fpga) return sr_fail(SR_ERR_UNSUPPORTED, "spike net: site settings cannot change while it runs on an FPGA");
    for (int32_t i = 0; i < n; i++) {
        sr_status s = check_site(&sites[i], i);
        if (s != SR_OK) return s;
        if (site_planes(&sites[i]) > net->T_cap)
            return sr_fail(SR_ERR_INVALID_ARG, "site %d needs %d planes, the net was created for %d", i,
                           site_planes(&sites[i]), net->T_cap);
    }
    memcpy(net->sites, sites, sizeof *sites * (size_t)n);
    return SR_OK;
}

sr_status sr_spike_net_create(const sr_spike_net_params *p, sr_spike_net **out) {
    *out = NULL;
    if (p->n_layer <= 0 || p->n_embd <= 0 || p->n_ff <= 0 || p->n_head <= 0 || p->n_head_kv <= 0 ||
        p->head_dim <= 0 || p->n_ctx <= 0 || p->n_seq < 0 || !p->sites || p->head_dim % SR_SPIKE_BLOCK != 0)
        return sr_fail(SR_ERR_INVALID_ARG, "spike net parameters are inconsistent");
    const int32_t n_sites = p->n_layer * 4 + 1;
    for (int32_t i = 0; i < n_sites; i++) {
        sr_status s = check_site(&p->sites[i], i);
        if (s != SR_OK) return s;
    }
    if (p->head_refine_rows < 0 ||
        (p->head_refine_rows > 0 && (p->sites[n_sites - 1].rule != SR_SPIKE_RULE_MEAN ||
                                     p->sites[n_sites - 1].encoding == SR_SPIKE_BINARY ||
                                     !(p->head_refine_k > 0.0f) || !isfinite(p->head_refine_k))))
        return sr_fail(SR_ERR_INVALID_ARG, "a refined head needs a mean-rule head site (no binary code) and a refine k > 0");
    if (p->spike_attention && (!p->v_scales || p->q_bits < 2 || p->q_bits > 16 || p->p_bits < 2 ||
                               p->p_bits > 16))
        return sr_fail(SR_ERR_INVALID_ARG, "spike attention needs V scales, q bits and p bits in 2..16");
    if (p->attn_pow2 != 0 && p->attn_pow2 != 1)
        return sr_fail(SR_ERR_INVALID_ARG, "attention power-of-two steps must be 0 or 1, got %d", p->attn_pow2);

    sr_spike_net *net = calloc(1, sizeof *net);
    if (!net) return sr_fail(SR_ERR_NO_MEMORY, "cannot allocate the spike net");
    net->p = *p;
    net->n_seq = p->n_seq > 0 ? p->n_seq : 1;
    net->n_max = max3(p->n_embd, p->n_ff, p->n_head * p->head_dim);
    net->ctx_pad = (p->n_ctx + SR_SPIKE_BLOCK - 1) / SR_SPIKE_BLOCK * SR_SPIKE_BLOCK;
    net->sites = malloc(sizeof *net->sites * (size_t)n_sites);
    net->lin = calloc((size_t)(p->n_layer + 1) * SR_N_PROJ, sizeof *net->lin);
    net->lin_set = calloc((size_t)(p->n_layer + 1) * SR_N_PROJ, sizeof *net->lin_set);
    net->counts = malloc(sizeof(int32_t) * (size_t)net->n_max);
    net->scales = malloc(sizeof(float) * (size_t)net->n_max);
    net->stats = calloc((size_t)(p->n_layer + 1) * SR_N_SITES_ALL, sizeof *net->stats);
    net->act_bytes = sizeof(float) * (size_t)net->n_max + 1024;  // widest activation row (F32)
    net->act = malloc(net->act_bytes);
    if (!net->act || !net->sites || !net->lin || !net->lin_set || !net->counts || !net->scales || !net->stats)
        goto oom;
    memcpy(net->sites, p->sites, sizeof *net->sites * (size_t)n_sites);
    net->p.sites = net->sites;
    net->T_cap = 1;
    for (int32_t i = 0; i < n_sites; i++) {
        const int32_t t = site_planes(&net->sites[i]);
        if (t > net->T_cap) net->T_cap = t;
    }
    net->bplanes = calloc(SR_SPIKE_NET_BATCH, sizeof *net->bplanes);
    if (!net->bplanes) goto oom;
    for (int32_t i = 0; i < SR_SPIKE_NET_BATCH; i++)
        if (sr_spike_planes_init(&net->bplanes[i], net->n_max, net->T_cap) != SR_OK) goto oom;
    if (p->spike_attention) {
        const size_t kv1 = (size_t)p->n_layer * (size_t)p->n_head_kv, kv = kv1 * (size_t)net->n_seq;
        const size_t vs = (size_t)p->n_layer * (size_t)p->n_head_kv * (size_t)p->head_dim;
        net->v_scales = malloc(sizeof(float) * vs);
        net->kc = calloc(kv, sizeof *net->kc);
        net->vc = calloc(kv, sizeof *net->vc);
        if (!net->v_scales || !net->kc || !net->vc) goto oom;
        memcpy(net->v_scales, p->v_scales, sizeof(float) * vs);
        net->p.v_scales = net->v_scales;
        for (size_t i = 0; i < kv; i++) {
            if (sr_spike_weights_alloc(&net->kc[i], SR_SPIKE_W_I8_ROW, p->n_ctx, p->head_dim) != SR_OK ||
                sr_spike_weights_alloc(&net->vc[i], SR_SPIKE_W_I8_ROW, p->head_dim, net->ctx_pad) != SR_OK)
                goto oom;
            for (int32_t d = 0; d < p->head_dim; d++) {
                float sv = net->v_scales[(i % kv1) * (size_t)p->head_dim + (size_t)d];
                if (!(sv > 0.0f) || !isfinite(sv)) {
                    sr_spike_net_free(net);
                    return sr_fail(SR_ERR_INVALID_ARG, "V scale %zu/%d is not a positive number", i % kv1, d);
                }
                net->vc[i].row_scale[d] = sv;
            }
        }
    }
    *out = net;
    return SR_OK;
oom:
    sr_spike_net_free(net);
    return sr_fail(SR_ERR_NO_MEMORY, "cannot allocate the spike net buffers");
}

static size_t lin_index(const sr_spike_net *net, int32_t layer, sr_proj proj) {
    return (size_t)layer * SR_N_PROJ + (size_t)proj;
}

void sr_spike_net_release_sources(sr_spike_net *net, bool on) { net->release_sources = on; }

// GGUF Q4_1 / Q8_0 blocks packed a chunk of rows at a time; with `release`, each chunk's
// source pages are dropped once packed.
static sr_status pack_blocks(sr_spike_weights *w, sr_spike_format fmt, const void *data, int32_t n_out,
                             int32_t n_in, bool release) {
    if (!data) return sr_fail(SR_ERR_INVALID_ARG, "spike weights: null block data");
    sr_status s = sr_spike_weights_alloc(w, fmt, n_out, n_in);
    if (s != SR_OK) return s;
    const size_t row = sr_row_bytes(fmt == SR_SPIKE_W_Q4_1 ? SR_TYPE_Q4_1 : SR_TYPE_Q8_0, n_in);
    const int32_t chunk = 1024;  // rows: about 0.6 / 1 MB of blocks
    for (int32_t o = 0; o < n_out && s == SR_OK; o += chunk) {
        const int32_t o1 = o + chunk < n_out ? o + chunk : n_out;
        const uint8_t *src = (const uint8_t *)data + (size_t)o * row;
        s = sr_spike_weights_pack_rows(w, src, o, o1);
        if (release) sr_numa_release_file_pages(src, (size_t)(o1 - o) * row);
    }
    if (s != SR_OK) sr_spike_weights_free(w);
    return s;
}

// The refined head reads its chosen rows' codes row-major (the packed tiles hold a row as one
// byte in each of n_in lines): a copy of the codes, plus the selection scratch.
static sr_status keep_head_codes(sr_spike_net *net, const void *data, int32_t n_out, int32_t n_in) {
    free(net->head_codes); free(net->head_sel); free(net->head_cand); free(net->head_rows);
    const int32_t m = net->p.head_refine_rows < n_out ? net->p.head_refine_rows : n_out;
    net->head_codes = malloc((size_t)n_out * (size_t)n_in);
    net->head_sel = malloc(sizeof(float) * (size_t)n_out);
    net->head_cand = malloc(sizeof(int32_t) * (size_t)n_out);
    net->head_rows = malloc(sizeof(int32_t) * (size_t)m);
    if (!net->head_codes || !net->head_sel || !net->head_cand || !net->head_rows)
        return sr_fail(SR_ERR_NO_MEMORY, "cannot allocate the refined head's row codes");
    memcpy(net->head_codes, data, (size_t)n_out * (size_t)n_in);
    return SR_OK;
}

sr_status sr_spike_net_set_linear(sr_spike_net *net, int32_t layer, sr_proj proj, sr_spike_format fmt,
                                  const void *data, const float *row_scale, int32_t n_out, int32_t n_in) {
    if (layer < 0 || layer > net->p.n_layer || (layer == net->p.n_layer) != (proj == SR_PROJ_HEAD) ||
        (int)proj < 0 || proj >= SR_N_PROJ)
        return sr_fail(SR_ERR_INVALID_ARG, "no linear layer %d/%d in the spike net", layer, (int)proj);
    sr_spike_weights *w = &net->lin[lin_index(net, layer, proj)];
    sr_spike_weights_free(w);
    const int32_t site = proj <= SR_PROJ_V ? 0 : proj == SR_PROJ_O ? 1 : proj <= SR_PROJ_UP ? 2 : 3;
    const sr_spike_site_cfg *c = &net->sites[proj == SR_PROJ_HEAD ? net->p.n_layer * 4 : layer * 4 + site];
    const bool release = net->release_sources && c->rule != SR_SPIKE_RULE_DENSE;
    if (proj == SR_PROJ_HEAD && net->p.head_refine_rows > 0 && fmt != SR_SPIKE_W_I8_ROW)
        return sr_fail(SR_ERR_UNSUPPORTED, "a refined head needs int8-row head codes (--weights int8 or int4i)");
    sr_status s;
    switch (fmt) {
    case SR_SPIKE_W_Q4_1:
    case SR_SPIKE_W_Q8_0:
        s = pack_blocks(w, fmt, data, n_out, n_in, release);
        break;
    case SR_SPIKE_W_Q4_1_INT:
        if ((s = pack_blocks(w, SR_SPIKE_W_Q4_1, data, n_out, n_in, release)) == SR_OK &&
            (s = sr_spike_weights_int_scales(w, 0, n_out)) != SR_OK)
            sr_spike_weights_free(w);
        break;
    case SR_SPIKE_W_I8_ROW:
        if ((s = sr_spike_weights_pack_i8(w, data, row_scale, n_out, n_in)) == SR_OK && proj == SR_PROJ_HEAD &&
            net->p.head_refine_rows > 0)
            s = keep_head_codes(net, data, n_out, n_in);
        break;
    case SR_SPIKE_W_TERNARY: s = sr_spike_weights_pack_ternary(w, data, row_scale, n_out, n_in); break;
    default: return sr_fail(SR_ERR_INVALID_ARG, "unknown spike weight format %d", (int)fmt);
    }
    if (s != SR_OK) return s;
    // The binary (offset) code needs per-block row sums for its correction term.
    if (c->encoding == SR_SPIKE_BINARY && (s = sr_spike_weights_add_row_sums(w)) != SR_OK) return s;
    net->lin_set[lin_index(net, layer, proj)] = true;
    if (proj == SR_PROJ_HEAD) net->head_src = release ? data : NULL;
    return SR_OK;
}

void sr_spike_net_set_recorder(sr_spike_net *net, sr_spike_record_fn fn, void *user) {
    net->record = fn;
    net->record_user = user;
}

static sr_spike_site_stats *stats_at(sr_spike_net *net, int32_t layer, int32_t site) {
    return &net->stats[(size_t)layer * SR_N_SITES_ALL + (size_t)site];
}

void sr_spike_net_site_stats(const sr_spike_net *net, int32_t layer, int32_t site,
                             sr_spike_site_stats *out) {
    memset(out, 0, sizeof *out);
    if (layer < 0 || layer > net->p.n_layer || site < 0 || site >= SR_N_SITES_ALL) return;
    *out = net->stats[(size_t)layer * SR_N_SITES_ALL + (size_t)site];
}

void sr_spike_net_reset_stats(sr_spike_net *net) {
    memset(net->stats, 0, sizeof *net->stats * (size_t)(net->p.n_layer + 1) * SR_N_SITES_ALL);
}

uint64_t sr_spike_net_memory_bytes(const sr_spike_net *net) {
    uint64_t b = 0;
    for (int32_t i = 0; i < (net->p.n_layer + 1) * SR_N_PROJ; i++) b += net->lin[i].bytes;
    if (net->kc)
        for (int32_t i = 0; i < net->p.n_layer * net->p.n_head_kv; i++) b += net->kc[i].bytes + net->vc[i].bytes;
    return b;
}

// ---------------------------------------------------------------------------------------------
// Encoding one activation vector of a site

static sr_status encode_with(const sr_spike_site_cfg *c, const float *x, int32_t n, sr_spike_planes *planes,
                             int32_t *counts, float *scales) {
    sr_status s;
    int32_t T, offset = 0, group = n;
    if (c->rule == SR_SPIKE_RULE_MEAN) {
        sr_spike_mean_params mp = sr_spike_mean_default_params(c->k);
        mp.rho = c->rho;
        mp.tau = c->tau;
        mp.pow2 = c->pow2;
        if ((s = sr_spike_encode_mean_ex(x, n, &mp, counts, scales)) != SR_OK) return s;
        T = sr_spike_min_planes(counts, n, (sr_spike_encoding)c->encoding, 0);
        if (T < 0) return sr_fail(SR_ERR_NUMERIC, "counts exceed the planes of the encoding");
    } else {
        const int32_t q = (1 << (c->bits - 1)) - 1;
        sr_spike_max_params mp = sr_spike_max_default_params(c->bits);
        mp.group = c->group;
        mp.clip = c->clip;
        mp.gamma = c->gamma;
        mp.rho = c->rho;
        if (c->group > 0) group = c->group;
        if ((s = sr_spike_encode_max(x, n, &mp, counts, scales)) != SR_OK) return s;
        const int32_t cl = c->clip > 0 ? c->clip : q;
        switch (c->encoding) {
        case SR_SPIKE_SIGN_MAGNITUDE: T = c->bits - 1; break;
        case SR_SPIKE_TWOS_COMPLEMENT: T = c->bits; break;
        case SR_SPIKE_TERNARY: T = cl; break;
        default: T = 2 * cl; offset = cl; break;
        }
    }
    return sr_spike_planes_from_counts(planes, counts, n, (sr_spike_encoding)c->encoding, T, offset,
                                       scales, group);
}

static sr_status encode(sr_spike_net *net, const sr_spike_site_cfg *c, const float *x, int32_t n,
                        sr_spike_planes *planes) {
    return encode_with(c, x, n, planes, net->counts, net->scales);
}

// A batch's tokens encoded on every thread (each with its own scratch): encoding one token
// at a time on the caller's thread left the other threads waiting, 7% of pp512 at 2 threads.
typedef struct encode_job {
    sr_spike_net *net;
    const sr_spike_site_cfg *c;
    const float *x;
    int32_t n_in, n_tok;
    sr_status status[SR_SPIKE_MAX_THREADS];
    char error[SR_SPIKE_MAX_THREADS][160];
} encode_job;

static void encode_worker(void *ctx, int ith, int nth) {
    encode_job *j = ctx;
    sr_spike_net *net = j->net;
    if (ith >= SR_SPIKE_MAX_THREADS) return;
    sr_status s = SR_OK;
    int32_t *counts = net->th_counts + (size_t)ith * (size_t)net->n_max;
    float *scales = net->th_scales + (size_t)ith * (size_t)net->n_max;
    for (int32_t t = ith; t < j->n_tok && s == SR_OK; t += nth)
        s = encode_with(j->c, j->x + (size_t)t * (size_t)j->n_in, j->n_in, &net->bplanes[t], counts, scales);
    j->status[ith] = s;
    if (s != SR_OK) snprintf(j->error[ith], sizeof j->error[ith], "%s", sr_last_error());
}

// Float multiplies of `rows` output rows' rescale.
static uint64_t rescale_mults(const sr_spike_weights *w, const sr_spike_planes *x, uint64_t rows) {
    if (w->int_scales) return rows * 4u;   // sx*sd, sx*sm and their two products
    if (w->format == SR_SPIKE_W_Q4_1 || w->format == SR_SPIKE_W_Q8_0) {
        const uint64_t per_block = (w->format == SR_SPIKE_W_Q4_1 ? 2u : 1u) + (x->group < x->n ? 1u : 0u);
        return rows * ((uint64_t)w->n_blocks * per_block + (x->group < x->n ? 0u : 1u));
    }
    return rows * (x->n_groups > 1 ? (uint64_t)x->n_groups + 1u : 2u);
}

// Integer block scales: D*A and M*N per row and block (8-bit constants times int32 sums).
static uint64_t rescale_int_mults(const sr_spike_weights *w, uint64_t rows) {
    return w->int_scales ? rows * (uint64_t)w->n_blocks * 2u : 0u;
}

// A power-of-two step makes its products exponent adds: sx*s_row per row (sx*sd and sx*sm
// with integer block scales; the final sx of a per-block rescale), one token-wide group only.
static uint64_t rescale_shifts(const sr_spike_site_cfg *c, const sr_spike_weights *w, const sr_spike_planes *x,
                               uint64_t rows) {
    if (!c->pow2 || x->n_groups != 1) return 0u;
    return rows * (w->int_scales ? 2u : 1u);
}

// Rescale counters of `rows` output rows of one layer for one token.
static void count_rescale(sr_spike_site_stats *st, const sr_spike_site_cfg *c, const sr_spike_weights *w,
                          const sr_spike_planes *x, uint64_t rows) {
    const uint64_t shifts = rescale_shifts(c, w, x, rows);
    st->rescale_mults += rescale_mults(w, x, rows) - shifts;
    st->rescale_shifts += shifts;
    st->rescale_int_mults += rescale_int_mults(w, rows);
}

// Inputs with at least one spike in any plane: only their weight lines are read.
static uint64_t active_inputs(const sr_spike_planes *pl) {
    uint64_t n = 0;
    for (int32_t b = 0; b < pl->n_words; b++) n += (uint64_t)__builtin_popcount(sr_spike_planes_fired(pl, b));
    return n;
}

// Packed weight bytes of one layer for one token: the 64-byte line of each tile for every
// input (full) or every active input (read), plus the scales, which the kernels read whole.
static void count_reads(sr_spike_site_stats *st, const sr_spike_weights *w, uint64_t active) {
    const uint64_t line_tiles = (uint64_t)w->n_chunks * SR_SPIKE_LINE_BYTES;
    const uint64_t per_block = (uint64_t)w->n_chunks * (uint64_t)w->tile_w * 2u;   // fp16 or int16
    const uint64_t scales = (w->d ? per_block : 0u) * (uint64_t)w->n_blocks + (w->m ? per_block : 0u) * (uint64_t)w->n_blocks
                          + (w->row_scale ? 4u * (uint64_t)w->n_out : 0u) + (w->row_scale_m ? 4u * (uint64_t)w->n_out : 0u);
    st->weight_bytes_read += active * line_tiles + scales;
    st->weight_bytes_full += (uint64_t)w->n_in * line_tiles + scales;
}

// One encoded vector's counters; its quantizer products are shifts with a power-of-two step.
// Returns its active inputs (for count_reads).
static uint64_t count_encoded(sr_spike_site_stats *st, const sr_spike_site_cfg *c, const sr_spike_planes *pl,
                              int32_t n_in) {
    const uint64_t active = active_inputs(pl);
    st->tokens++;
    st->active_inputs += active;
    st->activations += (uint64_t)n_in;
    st->spikes += pl->spikes;
    st->planes += (uint64_t)pl->T;
    if (c->pow2) st->quant_shifts += (uint64_t)n_in;
    return active;
}

// A site left dense: llama.cpp's 8-bit activation path on the file's own (ggml) weights.
static sr_status dense_site(sr_spike_net *net, int32_t count, const sr_linear *const *lins,
                            const float *x, int32_t n_tok, float *const *ys) {
    for (int32_t i = 0; i < count; i++) {
        const sr_linear *l = lins[i];
        if (!sr_type_supported(l->type))
            return sr_fail(SR_ERR_UNSUPPORTED, "a dense site needs ggml weights, found type %d", l->type);
        // All tokens at once (batched matmul, as the dense engine does): probes that leave
        // most sites dense run at prompt speed, not token by token.
        const size_t rb = sr_act_row_bytes((sr_type)l->type, l->n_in);
        if (rb * (size_t)n_tok > net->act_bytes) {
            void *a = realloc(net->act, rb * (size_t)n_tok);
            if (!a) return sr_fail(SR_ERR_NO_MEMORY, "dense site: out of memory for %d activation rows", n_tok);
            net->act = a;
            net->act_bytes = rb * (size_t)n_tok;
        }
        for (int32_t t = 0; t < n_tok; t++)
            sr_quantize_act_row((sr_type)l->type, x + (size_t)t * l->n_in, (char *)net->act + rb * (size_t)t, l->n_in);
        sr_matmul(net->pool, (sr_type)l->type, l->w, l->n_in, l->n_out, net->act, n_tok, ys[i]);
    }
    return SR_OK;
}

// The site's layers as one FPGA run per token; counters as the CPU kernels count them.
static sr_status fpga_site(sr_spike_net *net, int32_t layer, sr_site site, const sr_spike_site_cfg *c,
                           int32_t count, const sr_proj *projs, const sr_linear *const *lins,
                           const float *x, int32_t n_tok, float *const *ys) {
    const int32_t n_in = lins[0]->n_in;
    const int32_t idx = layer == net->p.n_layer ? layer * 4 : layer * 4 + (int32_t)site;
    sr_spike_site_stats *st = stats_at(net, layer, (int32_t)site);
    sr_spike_planes *pl = &net->bplanes[0];
    for (int32_t t = 0; t < n_tok; t++) {
        sr_status s = encode(net, c, x + (size_t)t * n_in, n_in, pl);
        if (s != SR_OK) return s;
        if (net->record) net->record(net->record_user, layer, (int32_t)site, net->counts, n_in, pl->T,
                                     pl->encoding);
        sr_fpga_input in = {layer == net->p.n_layer ? 4 : (int32_t)site, pl};  // slots: see use_fpga
        if ((s = sr_fpga_step(net->fpga, net->fpga_base[idx], count, &in, 1, net->fpga_y)) != SR_OK) return s;
        const uint64_t active = count_encoded(st, c, pl, n_in);
        size_t off = 0;
        for (int32_t i = 0; i < count; i++) {
            const sr_spike_weights *w = &net->lin[lin_index(net, layer, projs[i])];
            memcpy(ys[i] + (size_t)t * w->n_out, net->fpga_y + off, sizeof(float) * (size_t)w->n_out);
            off += (size_t)w->n_out;
            st->sops += pl->spikes * (uint64_t)w->n_out;
            st->horner_adds += (uint64_t)pl->T * (uint64_t)w->n_out;
            st->dense_macs += (uint64_t)w->n_in * (uint64_t)w->n_out;
            count_rescale(st, c, w, pl, (uint64_t)w->n_out);
            count_reads(st, w, active);
        }
    }
    return SR_OK;
}

static sr_status spike_site(sr_spike_net *net, int32_t layer, sr_site site, int32_t count,
                            const sr_proj *projs, const sr_linear *const *lins, const float *x,
                            int32_t n_tok, float *const *ys) {
    const int32_t n_in = lins[0]->n_in;
    const sr_spike_site_cfg *c = &net->sites[layer == net->p.n_layer ? layer * 4 : layer * 4 + (int32_t)site];
    sr_spike_site_stats *st = stats_at(net, layer, (int32_t)site);
    if (c->rule == SR_SPIKE_RULE_DENSE) return dense_site(net, count, lins, x, n_tok, ys);
    if (net->fpga) return fpga_site(net, layer, site, c, count, projs, lins, x, n_tok, ys);
    if (count > SR_SPIKE_BATCH_MAX_W)
        return sr_fail(SR_ERR_INVALID_ARG, "a site feeds %d layers (at most %d)", count, SR_SPIKE_BATCH_MAX_W);
    sr_spike_batch job;  // status/stats are written by every thread, error only on failure
    uint64_t active[SR_SPIKE_NET_BATCH];
    job.pool = net->pool;
    job.n_w = count;
    for (int32_t i = 0; i < count; i++) job.w[i] = &net->lin[lin_index(net, layer, projs[i])];
    for (int32_t t0 = 0; t0 < n_tok; t0 += SR_SPIKE_NET_BATCH) {
        const int32_t nb = n_tok - t0 < SR_SPIKE_NET_BATCH ? n_tok - t0 : SR_SPIKE_NET_BATCH;
        // the analysis recorder reads each token's counts: one token at a time for it
        const bool parallel = nb > 1 && net->n_threads > 1 && !net->record && net->th_counts;
        if (parallel) {
            encode_job ej = {.net = net, .c = c, .x = x + (size_t)t0 * (size_t)n_in, .n_in = n_in, .n_tok = nb};
            sr_pool_run(net->pool, encode_worker, &ej);
            for (int th = 0; th < net->n_threads && th < SR_SPIKE_MAX_THREADS; th++)
                if (ej.status[th] != SR_OK) return sr_fail(ej.status[th], "%s", ej.error[th]);
        }
        for (int32_t t = 0; t < nb; t++) {
            sr_spike_planes *pl = &net->bplanes[t];
            if (!parallel) {
                sr_status s = encode(net, c, x + (size_t)(t0 + t) * n_in, n_in, pl);
                if (s != SR_OK) return s;
                if (net->record) net->record(net->record_user, layer, (int32_t)site, net->counts, n_in, pl->T,
                                             pl->encoding);
            }
            active[t] = count_encoded(st, c, pl, n_in);
        }
        for (int32_t i = 0; i < count; i++) job.y[i] = ys[i] + (size_t)t0 * (size_t)job.w[i]->n_out;
        job.n_tok = nb;
        job.xs = net->bplanes;
        sr_spike_replica_fill(&net->replica, net->bplanes, nb, &job);
        atomic_init(&job.next_tile, 0);
        sr_pool_run(net->pool, sr_spike_batch_run, &job);
        for (int th = 0; th < net->n_threads && th < SR_SPIKE_MAX_THREADS; th++) {
            if (job.status[th] != SR_OK) return sr_fail(job.status[th], "%s", job.error[th]);
            st->sops += job.stats[th].sops;
            st->horner_adds += job.stats[th].horner_adds;
        }
        for (int32_t t = 0; t < nb; t++)
            for (int32_t i = 0; i < count; i++) {
                st->dense_macs += (uint64_t)job.w[i]->n_in * (uint64_t)job.w[i]->n_out;
                count_rescale(st, c, job.w[i], &net->bplanes[t], (uint64_t)job.w[i]->n_out);
                count_reads(st, job.w[i], active[t]);
            }
    }
    return SR_OK;
}

// The refined head, per token: the head_refine_rows largest coarse logits are recomputed from
// a train of the same input at k = head_refine_k (bit-identical to running the whole head at
// that k, for those rows). Its spikes, SOPs, rescales and selection compares are counted.
typedef struct refine_job {
    const sr_spike_net *net;
    const sr_spike_planes *pl;
    int32_t m;
    float *y;
    sr_status status[SR_SPIKE_MAX_THREADS];
    char error[SR_SPIKE_MAX_THREADS][160];
} refine_job;

static void refine_worker(void *ctx, int ith, int nth) {
    refine_job *j = ctx;
    if (ith >= SR_SPIKE_MAX_THREADS) return;
    const sr_spike_weights *w = &j->net->lin[lin_index(j->net, j->net->p.n_layer, SR_PROJ_HEAD)];
    const int nt = nth < SR_SPIKE_MAX_THREADS ? nth : SR_SPIKE_MAX_THREADS;
    const int32_t r0 = (int32_t)((int64_t)j->m * ith / nt), r1 = (int32_t)((int64_t)j->m * (ith + 1) / nt);
    j->status[ith] = sr_spike_rows_i8(j->net->head_codes, w->row_scale, w->n_out, j->pl, j->net->head_rows + r0,
                                      r1 - r0, j->y);
    if (j->status[ith] != SR_OK) snprintf(j->error[ith], sizeof j->error[ith], "%s", sr_last_error());
}

static sr_status refine_head(sr_spike_net *net, const float *x, int32_t n_in, int32_t n_tok, float *y) {
    const sr_spike_weights *w = &net->lin[lin_index(net, net->p.n_layer, SR_PROJ_HEAD)];
    sr_spike_site_cfg fine = net->sites[net->p.n_layer * 4];
    fine.k = net->p.head_refine_k;
    sr_spike_site_stats *st = stats_at(net, net->p.n_layer, SR_SITE_H);
    sr_spike_planes *pl = &net->bplanes[0];   // free again once the coarse head has run
    for (int32_t t = 0; t < n_tok; t++) {
        float *yt = y + (size_t)t * (size_t)w->n_out;
        int32_t m = net->p.head_refine_rows < w->n_out ? net->p.head_refine_rows : w->n_out;
        st->select_compares += sr_spike_top_rows(yt, w->n_out, &m, net->head_sel, net->head_cand, net->head_rows);
        sr_status s = encode(net, &fine, x + (size_t)t * (size_t)n_in, n_in, pl);
        if (s == SR_OK) s = sr_spike_planes_events(pl);   // once, for every thread's rows
        if (s != SR_OK) return s;
        refine_job job = {.net = net, .pl = pl, .m = m, .y = yt};
        sr_pool_run(net->pool, refine_worker, &job);
        for (int th = 0; th < net->n_threads && th < SR_SPIKE_MAX_THREADS; th++)
            if (job.status[th] != SR_OK) return sr_fail(job.status[th], "%s", job.error[th]);
        count_encoded(st, &fine, pl, n_in);   // a second encoded vector of the head input
        st->weight_bytes_read += (uint64_t)m * ((uint64_t)n_in + 4u);   // the rows' int8 codes and scales
        st->weight_bytes_full += (uint64_t)m * ((uint64_t)n_in + 4u);
        st->sops += pl->spikes * (uint64_t)m;
        st->horner_adds += (uint64_t)pl->T * (uint64_t)m;
        count_rescale(st, &fine, w, pl, (uint64_t)m);
    }
    return SR_OK;
}

static sr_status linear_hook(void *user, int32_t layer, sr_site site, int32_t count,
                             const sr_proj *projs, const sr_linear *const *lins, const float *x,
                             int32_t n_tok, float *const *ys) {
    sr_spike_net *net = user;
    sr_status s = spike_site(net, layer, site, count, projs, lins, x, n_tok, ys);
    if (s == SR_OK && layer == net->p.n_layer && net->head_codes && !net->fpga &&
        net->sites[layer * 4].rule == SR_SPIKE_RULE_MEAN)
        s = refine_head(net, x, lins[0]->n_in, n_tok, ys[0]);
    return s;
}

// ---------------------------------------------------------------------------------------------
// Attention, option A: q spikes against int8 K codes, probability spikes against int8 V codes.

typedef struct attn_job {
    sr_spike_net *net;
    int32_t layer, seq, n_tok, pos;
    const float *q;
    float *out;
    sr_status status[SR_SPIKE_MAX_THREADS];
    char error[SR_SPIKE_MAX_THREADS][160];   // sr_last_error() of a failing thread (thread-local)
} attn_job;

static void attn_fail(attn_job *j, int ith, sr_status s) {
    j->status[ith] = s;
    snprintf(j->error[ith], sizeof j->error[ith], "%s", sr_last_error());
}

static void attn_worker(void *ctx, int ith, int nth) {
    attn_job *j = ctx;
    sr_spike_net *net = j->net;
    attn_scratch *a = &net->as[ith];
    const int32_t hd = net->p.head_dim, nh = net->p.n_head, group = nh / net->p.n_head_kv;
    const float kq_scale = sr_kq_scale(hd);
    sr_spike_max_params qp = sr_spike_max_default_params(net->p.q_bits);
    qp.pow2 = net->p.attn_pow2;
    j->status[ith] = SR_OK;
    for (int32_t task = ith; task < j->n_tok * nh; task += nth) {
        const int32_t t = task / nh, h = task % nh, kvh = h / group, n_pos = j->pos + t + 1;
        const size_t cache = ((size_t)j->seq * (size_t)net->p.n_layer + (size_t)j->layer) *
                                 (size_t)net->p.n_head_kv + (size_t)kvh;
        sr_status s = sr_spike_encode_max(j->q + (size_t)t * nh * hd + (size_t)h * hd, hd, &qp,
                                           a->counts, a->qscale);
        if (s == SR_OK)
            s = sr_spike_planes_from_counts(&a->q, a->counts, hd, SR_SPIKE_SIGN_MAGNITUDE,
                                            net->p.q_bits - 1, 0, a->qscale, hd);
        sr_spike_stats st;
        if (s == SR_OK) s = sr_spike_attn_scores(&net->kc[cache], &a->q, n_pos, kq_scale, a->scores, NULL, &st);
        if (s != SR_OK) { attn_fail(j, ith, s); return; }
        a->sq.sops += st.sops;
        a->sq.horner_adds += st.horner_adds;
        a->q_spikes += a->q.spikes;
        a->q_planes += (uint64_t)a->q.T;
        a->q_tokens++;
        a->q_acts += (uint64_t)hd;
        sr_spike_softmax(a->scores, n_pos);   // shared with the FPGA token program
        float pscale = sr_spike_unsigned_scale(net->p.p_bits, net->p.attn_pow2);
        s = sr_spike_encode_unsigned(a->scores, n_pos, net->p.p_bits, net->p.attn_pow2, a->counts);
        if (s == SR_OK)
            s = sr_spike_planes_from_counts(&a->p, a->counts, n_pos, SR_SPIKE_SIGN_MAGNITUDE,
                                            net->p.p_bits, 0, &pscale, n_pos);
        if (s == SR_OK)
            s = sr_spike_attn_pv(&net->vc[cache], &a->p,
                                 j->out + (size_t)t * nh * hd + (size_t)h * hd, NULL, &st);
        if (s != SR_OK) { attn_fail(j, ith, s); return; }
        a->sp.sops += st.sops;
        a->sp.horner_adds += st.horner_adds;
        a->p_spikes += a->p.spikes;
        a->p_planes += (uint64_t)a->p.T;
        a->p_tokens++;
        a->p_acts += (uint64_t)n_pos;
    }
}

// Sequence `seq` (continuous batching) keeps its K/V codes in caches of its own.
static sr_status attention_hook(void *user, int32_t layer, int32_t seq, const float *q,
                                const float *k, const float *v, int32_t n_tok, int32_t pos,
                                float *out) {
    sr_spike_net *net = user;
    const int32_t hd = net->p.head_dim, kv_dim = net->p.n_head_kv * hd;
    sr_status s;
    if (seq < 0 || seq >= net->n_seq)
        return sr_fail(SR_ERR_INVALID_ARG, "sequence %d is outside the spike caches (0..%d)", seq,
                       net->n_seq - 1);
    for (int32_t t = 0; t < n_tok; t++)
        for (int32_t h = 0; h < net->p.n_head_kv; h++) {
            const size_t cache = ((size_t)seq * (size_t)net->p.n_layer + (size_t)layer) *
                                     (size_t)net->p.n_head_kv + (size_t)h;
            const size_t off = (size_t)t * kv_dim + (size_t)h * hd;
            if ((s = sr_spike_kcache_store(&net->kc[cache], pos + t, k + off)) != SR_OK) return s;
            if ((s = sr_spike_vcache_store(&net->vc[cache], pos + t, v + off)) != SR_OK) return s;
        }
    attn_job job;
    memset(&job, 0, sizeof job);
    job.net = net;
    job.layer = layer;
    job.seq = seq;
    job.n_tok = n_tok;
    job.pos = pos;
    job.q = q;
    job.out = out;
    for (int32_t i = 0; i < net->n_threads; i++) {
        attn_scratch *a = &net->as[i];
        memset(&a->sq, 0, sizeof a->sq);
        memset(&a->sp, 0, sizeof a->sp);
        a->q_spikes = a->p_spikes = a->q_planes = a->p_planes = 0;
        a->q_tokens = a->p_tokens = a->q_acts = a->p_acts = 0;
    }
    sr_pool_run(net->pool, attn_worker, &job);
    sr_spike_site_stats *sq = stats_at(net, layer, SR_SITE_ATTN_Q), *sp = stats_at(net, layer, SR_SITE_ATTN_P);
    // Power-of-two steps: q's step times kq_scale is a power of two when kq_scale is one
    // (head_dim 4^i), so each score's product with a K row scale is a shift; every output of
    // P.V has the step 2^-p_bits.
    const bool pow2 = net->p.attn_pow2 != 0;
    const bool q_shift = pow2 && sr_spike_pow2_ceil(sr_kq_scale(hd)) == sr_kq_scale(hd);
    for (int32_t i = 0; i < net->n_threads; i++) {
        if (job.status[i] != SR_OK)
            return sr_fail(job.status[i], "spike attention, layer %d: %s", layer, job.error[i]);
        const attn_scratch *a = &net->as[i];
        sq->tokens += a->q_tokens; sq->activations += a->q_acts; sq->spikes += a->q_spikes;
        sq->planes += a->q_planes; sq->sops += a->sq.sops; sq->horner_adds += a->sq.horner_adds;
        sp->tokens += a->p_tokens; sp->activations += a->p_acts; sp->spikes += a->p_spikes;
        sp->planes += a->p_planes; sp->sops += a->sp.sops; sp->horner_adds += a->sp.horner_adds;
        // Dense attention MACs: q.k over n_pos positions and p.V over n_pos, per head.
        sq->dense_macs += a->p_acts * (uint64_t)hd;
        sp->dense_macs += a->p_acts * (uint64_t)hd;
        sq->rescale_mults += a->p_acts * (q_shift ? 1u : 2u);
        sq->rescale_shifts += q_shift ? a->p_acts : 0u;
        sp->rescale_mults += a->p_tokens * (uint64_t)hd * (pow2 ? 1u : 2u);
        sp->rescale_shifts += pow2 ? a->p_tokens * (uint64_t)hd : 0u;
        if (pow2) {
            sq->quant_shifts += a->q_acts;
            sp->quant_shifts += a->p_acts;
        }
    }
    return SR_OK;
}

// Embedding row of a token from the packed Q8_0 head (tied embeddings): the same float ops as
// dequantizing the GGUF row, (float)q * d per code.
static void embedding_from_head(void *user, int32_t token, float *out) {
    const sr_spike_net *net = user;
    const sr_spike_weights *w = &net->lin[lin_index(net, net->p.n_layer, SR_PROJ_HEAD)];
    const int32_t c = token / w->tile_w, r = token - c * w->tile_w;
    for (int32_t b = 0; b < w->n_blocks; b++) {
        const float d = sr_spike_f16_to_f32(w->d[sr_spike_blockvec_index(w, token, b)]);
        const uint8_t *line = w->lines + sr_spike_line_offset(w, c, b, 0);
        for (int32_t i = 0; i < SR_SPIKE_BLOCK; i++)
            out[b * SR_SPIKE_BLOCK + i] = (float)(int8_t)line[(size_t)i * SR_SPIKE_LINE_BYTES + (size_t)r] * d;
    }
}

sr_status sr_spike_net_attach(sr_spike_net *net, sr_engine *e) {
    for (int32_t l = 0; l <= net->p.n_layer; l++)
        for (int32_t j = 0; j < SR_N_PROJ; j++) {
            if ((l == net->p.n_layer) != (j == SR_PROJ_HEAD)) continue;
            if (!net->lin_set[lin_index(net, l, (sr_proj)j)])
                return sr_fail(SR_ERR_INVALID_ARG, "spike weights of layer %d projection %d are missing", l, j);
        }
    net->engine = e;
    net->pool = sr_engine_pool(e);
    net->n_threads = sr_pool_threads(net->pool);
    if (net->n_threads > SR_SPIKE_MAX_THREADS)
        return sr_fail(SR_ERR_UNSUPPORTED, "at most %d threads are supported by the spike kernels",
                       SR_SPIKE_MAX_THREADS);
    // NUMA: each node's row chunks move to that node; planes are copied to every node per batch.
    for (int32_t i = 0; i < (net->p.n_layer + 1) * SR_N_PROJ; i++)
        if (net->lin_set[i]) sr_numa_place_spike_weights(net->pool, &net->lin[i]);
    free(net->th_counts);
    free(net->th_scales);
    net->th_counts = malloc(sizeof(int32_t) * (size_t)net->n_max * (size_t)net->n_threads);
    net->th_scales = malloc(sizeof(float) * (size_t)net->n_max * (size_t)net->n_threads);
    if (!net->th_counts || !net->th_scales) return sr_fail(SR_ERR_NO_MEMORY, "cannot allocate encoder scratch");
    sr_spike_replica_free(&net->replica);
    sr_status rs = sr_spike_replica_init(&net->replica, net->pool, SR_SPIKE_NET_BATCH, net->n_max, net->T_cap);
    if (rs != SR_OK) return rs;
    if (net->p.spike_attention && !net->as) {
        net->as = calloc((size_t)net->n_threads, sizeof *net->as);
        if (!net->as) return sr_fail(SR_ERR_NO_MEMORY, "cannot allocate attention scratch");
        const int32_t wide = net->ctx_pad > net->p.head_dim ? net->ctx_pad : net->p.head_dim;
        for (int32_t i = 0; i < net->n_threads; i++) {
            attn_scratch *a = &net->as[i];
            a->counts = malloc(sizeof(int32_t) * (size_t)wide);
            a->scores = malloc(sizeof(float) * (size_t)net->ctx_pad);
            a->qscale = malloc(sizeof(float) * (size_t)net->p.head_dim);
            if (!a->counts || !a->scores || !a->qscale ||
                sr_spike_planes_init(&a->q, net->p.head_dim, SR_SPIKE_MAX_T_BITWISE) != SR_OK ||
                sr_spike_planes_init(&a->p, net->ctx_pad, SR_SPIKE_MAX_T_BITWISE) != SR_OK)
                return sr_fail(SR_ERR_NO_MEMORY, "cannot allocate attention scratch");
        }
    }
    sr_engine_set_linear_hook(e, linear_hook, net);
    sr_engine_set_attention_hook(e, NULL, NULL);
    sr_engine_set_attention_seq_hook(e, net->p.spike_attention ? attention_hook : NULL, net);
    // A tied Q8_0 head packed with its pages dropped also serves the embedding rows, so the
    // table is not read back from the file token by token.
    int32_t et = -1;
    const void *emb = sr_engine_token_embedding(e, &et);
    const bool tied = net->head_src && net->head_src == emb && et == SR_TYPE_Q8_0;
    sr_engine_set_embedding_hook(e, tied ? embedding_from_head : NULL, net);
    return SR_OK;
}

// ---------------------------------------------------------------------------------------------
// The FPGA token program (firmware/kernels/spk_token.h, docs/fpga-design.md section 7): one
// descriptor chain runs the whole token on the device with the CPU path's float steps
// (sr-spike-float.h) and its encoders; the host writes the token header and reads the logits.

static uint32_t fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static bool token_site_ok(const sr_spike_site_cfg *c) {
    const bool bits_enc = c->encoding == SR_SPIKE_SIGN_MAGNITUDE || c->encoding == SR_SPIKE_TWOS_COMPLEMENT;
    if (c->rule == SR_SPIKE_RULE_MEAN) return bits_enc || c->encoding == SR_SPIKE_NAF;
    if (c->rule == SR_SPIKE_RULE_MAX) return c->group == 0 && bits_enc && c->bits <= 16;
    return false;
}

// NULL when the model can run as a token program, else why not.
static const char *token_unsupported(const sr_spike_net *net) {
    const sr_spike_net_params *p = &net->p;
    if (!net->engine) return "the spike net is not attached to an engine";
    if (!p->spike_attention) return "attention is not spike-driven";
    if (net->n_seq > 1) return "the engine holds several sequences";
    if (p->head_dim % 64 != 0) return "the head size is not a multiple of 64";
    if (net->ctx_pad > (int32_t)SPK_MAX_COLS) return "the context exceeds 16384 positions";
    if (p->n_embd > (int32_t)SPK_TOKEN_MAX_VEC || p->n_ff > (int32_t)SPK_TOKEN_MAX_VEC ||
        p->n_head * p->head_dim > (int32_t)SPK_TOKEN_MAX_VEC)
        return "a vector exceeds 16384 values";
    const sr_engine_params *ep = sr_engine_get_params(net->engine);
    if (ep->rope_dim > p->head_dim || ep->rope_dim / 2 > (int32_t)SPK_MAX_TILE) return "unsupported RoPE";
    // the token program's ROPE op rotates adjacent pairs and it has no bias op (qwen2 needs both)
    if (ep->rope_mode != SR_ROPE_NORM) return "NEOX RoPE (qwen2) is not in the token program";
    for (int32_t l = 0; l < p->n_layer; l++) {
        const sr_block_weights *b = sr_engine_block(net->engine, l);
        if (b->q_bias || b->k_bias || b->v_bias) return "q/k/v biases (qwen2) are not in the token program";
    }
    const sr_engine_weights *w = sr_engine_get_weights(net->engine);
    const sr_spike_weights *head = &net->lin[lin_index(net, p->n_layer, SR_PROJ_HEAD)];
    if (w->output.w != w->tok_embd || w->tok_embd_type != SR_TYPE_Q8_0 || head->format != SR_SPIKE_W_Q8_0 ||
        head->n_out != ep->n_vocab)
        return "the embeddings are not the tied Q8_0 head";
    for (int32_t i = 0; i < p->n_layer * 4 + 1; i++)
        if (!token_site_ok(&net->sites[i])) return "a site's encoder is not one the token program has";
    return NULL;
}

static spk_desc desc(uint32_t op) {
    spk_desc d;
    memset(&d, 0, sizeof d);
    d.op = op;
    d.m = 1;
    return d;
}

static spk_desc encode_desc(const sr_spike_site_cfg *c, uint32_t src, uint32_t n, uint32_t slot_line) {
    spk_desc d = desc(SPK_OP_ENCODE);
    d.src0 = src;
    d.n = n;
    d.dst = slot_line;
    if (c->rule == SR_SPIKE_RULE_MEAN) {
        d.enc = SPK_RULE_MEAN | (uint32_t)c->encoding << 4;
        d.f0 = fbits(c->k);
        d.f1 = fbits(c->rho);
        d.f2 = fbits(c->tau);
        if (c->pow2) d.flags |= SPK_F_POW2;
    } else {
        d.enc = SPK_RULE_MAX | (uint32_t)c->encoding << 4 | (uint32_t)c->bits << 8 | (uint32_t)c->clip << 16;
        d.f0 = fbits(c->gamma);
        d.f2 = fbits(c->rho);
    }
    return d;
}

static sr_status token_hook(void *user, int32_t token, int32_t pos, float *logits) {
    sr_spike_net *net = user;
    const sr_spike_weights *head = &net->lin[lin_index(net, net->p.n_layer, SR_PROJ_HEAD)];
    return sr_fpga_run_token(net->fpga, token, pos, (uint32_t)head->n_out, (uint32_t)net->p.n_ctx,
                             net->token_head, logits);
}

static sr_status token_build(sr_spike_net *net, sr_fpga *f, const sr_fpga_matrix *lin_m, int32_t n_lin,
                             const int32_t *base) {
    const sr_spike_net_params *p = &net->p;
    const sr_engine_params *ep = sr_engine_get_params(net->engine);
    const int32_t L = p->n_layer, d = p->n_embd, ff = p->n_ff, nh = p->n_head, nkv = p->n_head_kv;
    const int32_t hd = p->head_dim, group = nh / nkv, rd = ep->rope_dim;
    const int32_t n = n_lin + L * nh * 2;
    sr_fpga_matrix *m = malloc(sizeof *m * (size_t)n);
    int8_t *pin = malloc((size_t)n);
    spk_desc *prog = NULL;
    float *arena = NULL;
    sr_status s = SR_OK;
    if (!m || !pin) {
        s = sr_fail(SR_ERR_NO_MEMORY, "cannot allocate the token program");
        goto done;
    }
    memcpy(m, lin_m, sizeof *m * (size_t)n_lin);
    memset(pin, -1, (size_t)n);
    int32_t k = n_lin;
    for (int32_t l = 0; l < L; l++) {  // attention: QK jobs (one per query head), then PV jobs
        for (int32_t h = 0; h < nh; h++, k++) {
            m[k].w = &net->kc[(size_t)l * nkv + (size_t)(h / group)];
            m[k].input_slot = 5 + h;
            pin[k] = 0;  // the caches live in engine 0's memory (w0), where KV_STORE writes
        }
        for (int32_t h = 0; h < nh; h++, k++) {
            m[k].w = &net->vc[(size_t)l * nkv + (size_t)(h / group)];
            m[k].input_slot = 5 + nh + h;
            pin[k] = 0;
        }
    }
    // arena (floats from the arena's first line): header, x, xn, norm weights, RoPE table
    const uint32_t pd = (uint32_t)((d + 15) / 16 * 16);
    const uint32_t o_x = 16, o_xn = o_x + pd, o_norm = o_xn + pd, o_rope = o_norm + (uint32_t)(2 * L + 1) * pd;
    const uint64_t total = (uint64_t)o_rope + (uint64_t)p->n_ctx * (uint64_t)rd;
    const uint32_t n_desc = 1 + (uint32_t)L * 21 + 5;
    s = sr_fpga_upload_program(f, m, n, pin, n_desc, (uint32_t)((total + 15) / 16));
    if (s != SR_OK) goto done;
    sr_fpga_layout lay;
    if ((s = sr_fpga_program_layout(f, &lay)) != SR_OK) goto done;
    const uint32_t A = lay.arena_line * 16u;
    arena = calloc((size_t)total, sizeof(float));
    prog = calloc(n_desc, sizeof *prog);
    if (!arena || !prog) {
        s = sr_fail(SR_ERR_NO_MEMORY, "cannot allocate the token program");
        goto done;
    }
    for (int32_t l = 0; l < L; l++) {
        const sr_block_weights *b = sr_engine_block(net->engine, l);
        memcpy(arena + o_norm + (size_t)(2 * l) * pd, b->attn_norm, sizeof(float) * (size_t)d);
        memcpy(arena + o_norm + (size_t)(2 * l + 1) * pd, b->ffn_norm, sizeof(float) * (size_t)d);
    }
    memcpy(arena + o_norm + (size_t)(2 * L) * pd, sr_engine_get_weights(net->engine)->output_norm,
           sizeof(float) * (size_t)d);
    for (int32_t pos = 0; pos < p->n_ctx; pos++) {  // the engine's angles, computed once
        float *row = arena + o_rope + (size_t)pos * (size_t)rd;
        sr_rope_angles(ep->rope_freq_base, rd, pos, row, row + rd / 2);
    }
    if ((s = sr_fpga_write_out(f, A + 16, arena + 16, total - 16)) != SR_OK) goto done;

#define OUT(i) ((uint32_t)sr_fpga_matrix_out_line(f, (i)) * 16u)
#define SLOT(i) ((uint32_t)sr_fpga_slot_line(f, (i)))
    const int32_t head = base[L * 4];
    uint32_t nd = 0;
    spk_desc x = desc(SPK_OP_EMBED);
    x.job = (uint32_t)head;
    x.src1 = A;
    x.dst = A + o_x;
    x.n = (uint32_t)d;
    prog[nd++] = x;
    const uint32_t qk_stride = (uint32_t)(OUT(n_lin + 1) - OUT(n_lin));
    const uint32_t q_slot_stride = nh > 1 ? SLOT(6) - SLOT(5) : 0;
    const uint32_t p_slot_stride = nh > 1 ? SLOT(5 + nh + 1) - SLOT(5 + nh) : 0;
    for (int32_t l = 0; l < L; l++) {
        const int32_t bq = base[l * 4], bo = base[l * 4 + 1], bf = base[l * 4 + 2], bd = base[l * 4 + 3];
        const int32_t qk0 = n_lin + l * nh * 2, pv0 = qk0 + nh;
        const sr_spike_site_cfg *cs = &net->sites[l * 4];
        x = desc(SPK_OP_RMSNORM);
        x.src0 = A + o_x; x.src1 = A + o_norm + (uint32_t)(2 * l) * pd; x.dst = A + o_xn; x.n = (uint32_t)d;
        x.f0 = fbits(ep->rms_eps);
        prog[nd++] = x;
        prog[nd++] = encode_desc(&cs[0], A + o_xn, (uint32_t)d, SLOT(0));
        x = desc(SPK_OP_MATVEC); x.job = (uint32_t)bq; x.n_jobs = 3;
        prog[nd++] = x;
        x = desc(SPK_OP_ROPE); x.src0 = OUT(bq); x.m = (uint32_t)nh; x.n = (uint32_t)hd; x.aux = (uint32_t)rd;
        x.src1 = A + o_rope;
        prog[nd++] = x;
        x.src0 = OUT(bq + 1); x.m = (uint32_t)nkv;
        prog[nd++] = x;
        x = desc(SPK_OP_KV_STORE); x.src0 = OUT(bq + 1); x.src1 = OUT(bq + 2); x.m = (uint32_t)nkv;
        x.n = (uint32_t)hd; x.job = (uint32_t)qk0; x.n_jobs = (uint32_t)pv0; x.stride = (uint32_t)group;
        prog[nd++] = x;
        x = desc(SPK_OP_ENCODE); x.src0 = OUT(bq); x.n = (uint32_t)hd; x.m = (uint32_t)nh; x.stride = (uint32_t)hd;
        x.dst = SLOT(5); x.dstride = q_slot_stride; x.flags = SPK_F_KQ | (p->attn_pow2 ? SPK_F_POW2 : 0u);
        x.enc = SPK_RULE_MAX | (uint32_t)SR_SPIKE_SIGN_MAGNITUDE << 4 | (uint32_t)p->q_bits << 8;
        x.f0 = fbits(1.0f); x.f1 = fbits(sr_kq_scale(hd)); x.f2 = fbits(0.0f);
        prog[nd++] = x;
        x = desc(SPK_OP_MATVEC); x.job = (uint32_t)qk0; x.n_jobs = (uint32_t)nh; x.flags = SPK_F_NPOS;
        prog[nd++] = x;
        x = desc(SPK_OP_SOFTMAX); x.src0 = OUT(qk0); x.m = (uint32_t)nh; x.stride = qk_stride; x.flags = SPK_F_NPOS;
        prog[nd++] = x;
        x = desc(SPK_OP_ENCODE); x.src0 = OUT(qk0); x.m = (uint32_t)nh; x.stride = qk_stride;
        x.flags = SPK_F_NPOS | (p->attn_pow2 ? SPK_F_POW2 : 0u);
        x.dst = SLOT(5 + nh); x.dstride = p_slot_stride;
        x.enc = SPK_RULE_UNSIGNED | (uint32_t)SR_SPIKE_SIGN_MAGNITUDE << 4 | (uint32_t)p->p_bits << 8;
        prog[nd++] = x;
        x = desc(SPK_OP_MATVEC); x.job = (uint32_t)pv0; x.n_jobs = (uint32_t)nh;
        prog[nd++] = x;
        prog[nd++] = encode_desc(&cs[1], OUT(pv0), (uint32_t)(nh * hd), SLOT(1));
        x = desc(SPK_OP_MATVEC); x.job = (uint32_t)bo; x.n_jobs = 1;
        prog[nd++] = x;
        x = desc(SPK_OP_ADD); x.dst = A + o_x; x.src0 = OUT(bo); x.n = (uint32_t)d;
        prog[nd++] = x;
        x = desc(SPK_OP_RMSNORM);
        x.src0 = A + o_x; x.src1 = A + o_norm + (uint32_t)(2 * l + 1) * pd; x.dst = A + o_xn; x.n = (uint32_t)d;
        x.f0 = fbits(ep->rms_eps);
        prog[nd++] = x;
        prog[nd++] = encode_desc(&cs[2], A + o_xn, (uint32_t)d, SLOT(2));
        x = desc(SPK_OP_MATVEC); x.job = (uint32_t)bf; x.n_jobs = 2;
        prog[nd++] = x;
        x = desc(SPK_OP_SILU_MUL); x.src0 = OUT(bf); x.src1 = OUT(bf + 1); x.dst = OUT(bf); x.n = (uint32_t)ff;
        prog[nd++] = x;
        prog[nd++] = encode_desc(&cs[3], OUT(bf), (uint32_t)ff, SLOT(3));
        x = desc(SPK_OP_MATVEC); x.job = (uint32_t)bd; x.n_jobs = 1;
        prog[nd++] = x;
        x = desc(SPK_OP_ADD); x.dst = A + o_x; x.src0 = OUT(bd); x.n = (uint32_t)d;
        prog[nd++] = x;
    }
    prog[nd++] = desc(SPK_OP_IF_LOGITS);
    x = desc(SPK_OP_RMSNORM);
    x.src0 = A + o_x; x.src1 = A + o_norm + (uint32_t)(2 * L) * pd; x.dst = A + o_xn; x.n = (uint32_t)d;
    x.f0 = fbits(ep->rms_eps);
    prog[nd++] = x;
    prog[nd++] = encode_desc(&net->sites[L * 4], A + o_xn, (uint32_t)d, SLOT(4));
    x = desc(SPK_OP_MATVEC); x.job = (uint32_t)head; x.n_jobs = 1;
    prog[nd++] = x;
    prog[nd++] = desc(SPK_OP_END);
#undef OUT
#undef SLOT
    if (nd != n_desc) {
        s = sr_fail(SR_ERR_INVALID_ARG, "token program: %u descriptors, %u planned", nd, n_desc);
        goto done;
    }
    s = sr_fpga_write_program(f, prog, nd);
    if (s == SR_OK) net->token_head = head;
done:
    free(m);
    free(pin);
    free(prog);
    free(arena);
    return s;
}

bool sr_spike_net_token_program(const sr_spike_net *net) { return net && net->fpga && net->fpga_token; }

sr_status sr_spike_net_use_fpga(sr_spike_net *net, struct sr_fpga *f) {
    net->fpga = NULL;
    if (net->fpga_token && net->engine) sr_engine_set_token_hook(net->engine, NULL, NULL);
    net->fpga_token = false;
    if (!f) return SR_OK;
    if (net->p.head_refine_rows > 0)
        return sr_fail(SR_ERR_UNSUPPORTED, "the refined head runs on the CPU only (the FPGA kernel has no row refinement): convert with --head-refine 0 for the FPGA");
    const int32_t n_sites = net->p.n_layer * 4 + 1;
    static const sr_proj groups[4][3] = {
        {SR_PROJ_Q, SR_PROJ_K, SR_PROJ_V}, {SR_PROJ_O, SR_PROJ_O, SR_PROJ_O},
        {SR_PROJ_GATE, SR_PROJ_UP, SR_PROJ_UP}, {SR_PROJ_DOWN, SR_PROJ_DOWN, SR_PROJ_DOWN}};
    static const int32_t group_n[4] = {3, 1, 2, 1};
    sr_fpga_matrix *m = malloc(sizeof *m * (size_t)(net->p.n_layer * SR_N_PROJ + 1));
    int32_t *base = malloc(sizeof *base * (size_t)n_sites);
    if (!m || !base) {
        free(m);
        free(base);
        return sr_fail(SR_ERR_NO_MEMORY, "cannot allocate the FPGA job list");
    }
    int32_t n = 0;
    for (int32_t l = 0; l < net->p.n_layer; l++)
        for (int32_t g = 0; g < 4; g++) {
            base[l * 4 + g] = n;
            for (int32_t i = 0; i < group_n[g]; i++) {
                m[n].w = &net->lin[lin_index(net, l, groups[g][i])];
                m[n++].input_slot = g;  // one input slot per site kind (A, O, F, D): same width
            }
        }
    base[net->p.n_layer * 4] = n;
    m[n].w = &net->lin[lin_index(net, net->p.n_layer, SR_PROJ_HEAD)];
    m[n++].input_slot = 4;
    // The whole token on the device when the xclbin has the token program and the model fits
    // it; otherwise one spk_acc run per group of layers.
    const bool token = sr_fpga_has_token_program(f) && token_unsupported(net) == NULL;
    sr_status s = token ? token_build(net, f, m, n, base) : sr_fpga_upload_weights(f, m, n);
    free(m);
    if (s != SR_OK) {
        free(base);
        return s;
    }
    int64_t widest = 1;
    for (int32_t i = 0; i < n_sites; i++) {
        const int64_t o = sr_fpga_step_outputs(f, base[i], i == n_sites - 1 ? 1 : group_n[i % 4]);
        if (o > widest) widest = o;
    }
    float *y = malloc(sizeof(float) * (size_t)widest);
    if (!y) {
        free(base);
        return sr_fail(SR_ERR_NO_MEMORY, "cannot allocate the FPGA outputs");
    }
    free(net->fpga_base);
    free(net->fpga_y);
    net->fpga_base = base;
    net->fpga_y = y;
    net->fpga = f;
    net->fpga_token = token;
    if (token) sr_engine_set_token_hook(net->engine, token_hook, net);
    return SR_OK;
}

const char *sr_spike_net_token_unsupported(const sr_spike_net *net) { return token_unsupported(net); }
