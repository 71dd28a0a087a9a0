// Llama-family forward pass (llama; qwen2 adds q/k/v biases and NEOX RoPE). Numerics follow llama.cpp's x86 CPU build (AVX2, FMA) bit for bit:
// RMSNorm sums squares in double, RoPE angles are built by repeated float multiplication and
// rotated with the one FMA per output that GCC contracts ggml's expression into, K/V are
// cached as fp16, q and the attention weights are rounded to fp16 before their dot products,
// softmax and SiLU use ggml's vector expf and its summation order (non-flash attention path).
#include "spikerun/sr-engine.h"

// No implicit a*b+c contraction: the fused steps are the explicit fmaf calls.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "spikerun/sr-pool.h"
#include "spikerun/sr-quant.h"
#include "spikerun/sr-spike-float.h"

#define SR_KV_ALIGN 32  // V rows are padded to this many positions (f16 dot block size)

struct sr_engine {
    sr_engine_params p;
    sr_engine_weights w;
    sr_block_weights *blocks;
    sr_pool *pool;

    int32_t q_dim, kv_dim, ctx_pad, n_seq;
    int32_t k_rows, v_cols;  // n_seq * n_ctx keys and n_seq * ctx_pad values per (layer, head)
    uint16_t *k_cache;  // [layer][kv_head][n_seq * n_ctx][head_dim] fp16
    uint16_t *v_cache;  // [layer][kv_head][head_dim][n_seq * ctx_pad] fp16, transposed like ggml's V

    // Scratch for n_batch rows.
    float *x, *xn, *q, *k, *v, *att, *tmp, *gate, *up, *head_in;
    void *act;          // quantized activation rows
    size_t act_row_cap; // bytes per activation row
    // Per-thread attention scratch.
    float *scores;      // [n_threads][ctx_pad]
    uint16_t *p16;      // [n_threads][ctx_pad]
    uint16_t *q16;      // [n_threads][head_dim]
    float *rope_cos, *rope_sin;  // [n_batch][rope_dim/2]
    // Per batch row: its sequence, position and attention kernel (tinyBLAS order or not).
    int32_t *row_seq, *row_pos, *tok_buf;  // [n_batch]
    bool *row_gemm;                        // [n_batch]
    int32_t *head_rows;                    // [n_batch] rows whose logits are wanted
    float *seq_logits;                     // [min(n_seq, n_batch)][n_vocab] (n_seq > 1)

    sr_linear_hook hook;
    void *hook_user;
    sr_attention_hook attn_hook;
    void *attn_user;
    sr_attention_seq_hook attn_seq_hook;
    void *attn_seq_user;
    sr_embedding_hook embed_hook;
    void *embed_user;
    sr_token_hook token_hook;
    void *token_user;
    sr_tap_fn tap;
    void *tap_user;
    atomic_bool abort_flag;
    uint64_t mem_bytes;
};

static void *xcalloc(sr_engine *e, size_t n, size_t size) {
    void *ptr = calloc(n ? n : 1, size);
    if (ptr) e->mem_bytes += (uint64_t)n * size;
    return ptr;
}

void sr_engine_free(sr_engine *e) {
    if (!e) return;
    sr_pool_free(e->pool);
    free(e->blocks);
    free(e->k_cache); free(e->v_cache);
    free(e->x); free(e->xn); free(e->q); free(e->k); free(e->v); free(e->att); free(e->tmp);
    free(e->gate); free(e->up); free(e->head_in); free(e->act);
    free(e->scores); free(e->p16); free(e->q16); free(e->rope_cos); free(e->rope_sin);
    free(e->row_seq); free(e->row_pos); free(e->tok_buf); free(e->row_gemm); free(e->head_rows);
    free(e->seq_logits);
    free(e);
}

// any_type: the linear hook computes the layer, so the dense kernels need not read its type.
static bool linear_ok(const sr_linear *l, int32_t n_in, int32_t n_out, bool any_type) {
    if (!l->w || l->n_in != n_in || l->n_out != n_out) return false;
    return any_type || (sr_type_supported(l->type) && n_in % sr_type_block_elems((sr_type)l->type) == 0);
}

sr_status sr_engine_create(const sr_engine_params *p, const sr_engine_weights *w, sr_engine **out) {
    *out = NULL;
    if (p->n_layer <= 0 || p->n_embd <= 0 || p->n_head <= 0 || p->n_head_kv <= 0 ||
        p->head_dim <= 0 || p->n_ff <= 0 || p->n_vocab <= 0 || p->n_ctx <= 0 || p->n_batch <= 0 ||
        p->n_seq < 0 || p->n_head % p->n_head_kv != 0 || p->rope_dim <= 0 || p->rope_dim > p->head_dim ||
        p->rope_dim % 2 != 0 || (p->rope_mode != SR_ROPE_NORM && p->rope_mode != SR_ROPE_NEOX))
        return sr_fail(SR_ERR_INVALID_ARG, "engine parameters are inconsistent");
    const int32_t q_dim = p->n_head * p->head_dim, kv_dim = p->n_head_kv * p->head_dim;
    if (!w->tok_embd || !sr_type_supported(w->tok_embd_type) || !w->output_norm ||
        !linear_ok(&w->output, p->n_embd, p->n_vocab, p->hooked_linears))
        return sr_fail(SR_ERR_INVALID_ARG, "embedding or output weights are missing or mis-shaped");
    const bool hk = p->hooked_linears;
    for (int32_t l = 0; l < p->n_layer; l++) {
        const sr_block_weights *b = &w->blocks[l];
        if (!b->attn_norm || !b->ffn_norm || !linear_ok(&b->q, p->n_embd, q_dim, hk) ||
            !linear_ok(&b->k, p->n_embd, kv_dim, hk) || !linear_ok(&b->v, p->n_embd, kv_dim, hk) ||
            !linear_ok(&b->o, q_dim, p->n_embd, hk) || !linear_ok(&b->gate, p->n_embd, p->n_ff, hk) ||
            !linear_ok(&b->up, p->n_embd, p->n_ff, hk) || !linear_ok(&b->down, p->n_ff, p->n_embd, hk))
            return sr_fail(SR_ERR_INVALID_ARG, "block %d weights are missing or mis-shaped", l);
    }

    sr_engine *e = calloc(1, sizeof *e);
    if (!e) return sr_fail(SR_ERR_NO_MEMORY, "cannot allocate the engine");
    e->p = *p;
    e->w = *w;
    e->q_dim = q_dim;
    e->kv_dim = kv_dim;
    e->ctx_pad = (p->n_ctx + SR_KV_ALIGN - 1) / SR_KV_ALIGN * SR_KV_ALIGN;
    e->n_seq = p->n_seq > 0 ? p->n_seq : 1;
    e->k_rows = e->n_seq * p->n_ctx;
    e->v_cols = e->n_seq * e->ctx_pad;
    e->blocks = malloc(sizeof(sr_block_weights) * (size_t)p->n_layer);
    e->pool = sr_pool_create(p->n_threads);
    if (!e->blocks || !e->pool) goto oom;
    memcpy(e->blocks, w->blocks, sizeof(sr_block_weights) * (size_t)p->n_layer);
    e->w.blocks = e->blocks;
    // NUMA (several nodes only): each node's share of every weight's rows moves to that node.
    if (!p->hooked_linears && sr_pool_nodes(e->pool) > 1) {
        const sr_linear *ls[8];
        for (int32_t l = 0; l <= p->n_layer; l++) {
            const sr_block_weights *b = &e->blocks[l < p->n_layer ? l : 0];
            const int n = l < p->n_layer ? 7 : 1;
            if (l < p->n_layer) {
                ls[0] = &b->q; ls[1] = &b->k; ls[2] = &b->v; ls[3] = &b->o;
                ls[4] = &b->gate; ls[5] = &b->up; ls[6] = &b->down;
            } else {
                ls[0] = &e->w.output;
            }
            for (int i = 0; i < n; i++)
                sr_matmul_place(e->pool, (sr_type)ls[i]->type, ls[i]->w, ls[i]->n_in, ls[i]->n_out);
        }
    }

    const size_t nl = (size_t)p->n_layer, nb = (size_t)p->n_batch;
    e->k_cache = xcalloc(e, nl * (size_t)kv_dim * (size_t)e->k_rows, sizeof(uint16_t));
    e->v_cache = xcalloc(e, nl * (size_t)kv_dim * (size_t)e->v_cols, sizeof(uint16_t));
    e->row_seq = xcalloc(e, nb, sizeof(int32_t));
    e->row_pos = xcalloc(e, nb, sizeof(int32_t));
    e->tok_buf = xcalloc(e, nb, sizeof(int32_t));
    e->row_gemm = xcalloc(e, nb, sizeof(bool));
    e->head_rows = xcalloc(e, nb, sizeof(int32_t));
    if (e->n_seq > 1) {
        const size_t rows = (size_t)(e->n_seq < p->n_batch ? e->n_seq : p->n_batch);
        e->seq_logits = xcalloc(e, rows * (size_t)p->n_vocab, sizeof(float));
        if (!e->seq_logits) goto oom;
    }
    const int32_t wide = p->n_ff > q_dim ? p->n_ff : q_dim;
    const int32_t widest = wide > p->n_embd ? wide : p->n_embd;
    e->x = xcalloc(e, nb * (size_t)p->n_embd, sizeof(float));
    e->xn = xcalloc(e, nb * (size_t)widest, sizeof(float));
    e->q = xcalloc(e, nb * (size_t)q_dim, sizeof(float));
    e->k = xcalloc(e, nb * (size_t)kv_dim, sizeof(float));
    e->v = xcalloc(e, nb * (size_t)kv_dim, sizeof(float));
    e->att = xcalloc(e, nb * (size_t)q_dim, sizeof(float));
    e->tmp = xcalloc(e, nb * (size_t)p->n_embd, sizeof(float));
    e->gate = xcalloc(e, nb * (size_t)p->n_ff, sizeof(float));
    e->up = xcalloc(e, nb * (size_t)p->n_ff, sizeof(float));
    e->head_in = xcalloc(e, nb * (size_t)p->n_embd, sizeof(float));
    // Largest activation row over every weight type the model uses (Q8_K rows are the widest).
    size_t cap = 0;
    const int32_t widths[3] = {p->n_embd, q_dim, p->n_ff};
    const int32_t types[5] = {SR_TYPE_Q8_0, SR_TYPE_Q4_0, SR_TYPE_Q4_K, SR_TYPE_F16, SR_TYPE_F32};
    for (int i = 0; i < 3; i++)
        for (int t = 0; t < 5; t++) {
            if (widths[i] % sr_type_block_elems((sr_type)types[t]) != 0) continue;
            size_t b = sr_act_row_bytes((sr_type)types[t], widths[i]);
            if (b > cap) cap = b;
        }
    e->act_row_cap = cap;
    e->act = xcalloc(e, nb, cap);
    const int nt = sr_pool_threads(e->pool);
    e->scores = xcalloc(e, (size_t)nt * (size_t)e->ctx_pad, sizeof(float));
    e->p16 = xcalloc(e, (size_t)nt * (size_t)e->ctx_pad, sizeof(uint16_t));
    e->q16 = xcalloc(e, (size_t)nt * (size_t)p->head_dim, sizeof(uint16_t));
    e->rope_cos = xcalloc(e, nb * (size_t)(p->rope_dim / 2), sizeof(float));
    e->rope_sin = xcalloc(e, nb * (size_t)(p->rope_dim / 2), sizeof(float));
    if (!e->k_cache || !e->v_cache || !e->x || !e->xn || !e->q || !e->k || !e->v || !e->att ||
        !e->tmp || !e->gate || !e->up || !e->head_in || !e->act || !e->scores || !e->p16 ||
        !e->q16 || !e->rope_cos || !e->rope_sin || !e->row_seq || !e->row_pos || !e->tok_buf ||
        !e->row_gemm || !e->head_rows)
        goto oom;
    atomic_init(&e->abort_flag, false);
    *out = e;
    return SR_OK;
oom:
    sr_engine_free(e);
    return sr_fail(SR_ERR_NO_MEMORY, "cannot allocate the KV cache and scratch buffers (n_ctx %d)",
                   p->n_ctx);
}

void sr_engine_set_linear_hook(sr_engine *e, sr_linear_hook hook, void *user) {
    e->hook = hook;
    e->hook_user = user;
}

void sr_engine_set_attention_hook(sr_engine *e, sr_attention_hook hook, void *user) {
    e->attn_hook = hook;
    e->attn_user = user;
}

void sr_engine_set_attention_seq_hook(sr_engine *e, sr_attention_seq_hook hook, void *user) {
    e->attn_seq_hook = hook;
    e->attn_seq_user = user;
}

void sr_engine_set_embedding_hook(sr_engine *e, sr_embedding_hook hook, void *user) {
    e->embed_hook = hook;
    e->embed_user = user;
}

void sr_engine_set_token_hook(sr_engine *e, sr_token_hook hook, void *user) {
    e->token_hook = hook;
    e->token_user = user;
}

const sr_engine_params *sr_engine_get_params(const sr_engine *e) { return &e->p; }

const sr_block_weights *sr_engine_block(const sr_engine *e, int32_t layer) {
    return layer >= 0 && layer < e->p.n_layer ? &e->blocks[layer] : NULL;
}

const sr_engine_weights *sr_engine_get_weights(const sr_engine *e) { return &e->w; }

const void *sr_engine_token_embedding(const sr_engine *e, int32_t *type) {
    if (type) *type = e->w.tok_embd_type;
    return e->w.tok_embd;
}

void sr_engine_set_tap(sr_engine *e, sr_tap_fn fn, void *user) {
    e->tap = fn;
    e->tap_user = user;
}

struct sr_pool *sr_engine_pool(sr_engine *e) { return e->pool; }

void sr_engine_abort(sr_engine *e) { atomic_store(&e->abort_flag, true); }

uint64_t sr_engine_memory_bytes(const sr_engine *e) { return e->mem_bytes; }

// ---------------------------------------------------------------------------------------------
// Elementwise pieces

// RMSNorm (sr_rms_norm), RoPE (sr_rope_angles, sr_rope_apply[_neox]): the shared definitions of
// include/spikerun/sr-spike-float.h, which the FPGA token program runs too.
static void rope_angles(const sr_engine *e, int32_t pos, float *cs, float *sn) {
    sr_rope_angles(e->p.rope_freq_base, e->p.rope_dim, pos, cs, sn);
}


// ---------------------------------------------------------------------------------------------
// Linear layers

// Runs up to three linear layers that read the same activation x (n rows), quantizing x once per
// distinct activation type.
static sr_status linear_group(sr_engine *e, int32_t layer, sr_site site, int count,
                              const sr_linear *const *lins, const sr_proj *projs, float *const *ys,
                              const float *x, int32_t n) {
    if (e->tap) e->tap(e->tap_user, layer, (sr_tap_point)site, x, n, lins[0]->n_in);
    if (e->hook) return e->hook(e->hook_user, layer, site, count, projs, lins, x, n, ys);
    if (e->p.act_mode == SR_ACT_Q8 && count > 1 && count <= SR_MATMUL_MULTI_MAX) {
        // One activation type for the whole group (the usual case): quantize once, one dispatch.
        const sr_type at = sr_act_type_for((sr_type)lins[0]->type);
        bool same = true;
        for (int i = 1; i < count; i++) same &= sr_act_type_for((sr_type)lins[i]->type) == at;
        if (same) {
            const size_t row = sr_act_row_bytes((sr_type)lins[0]->type, lins[0]->n_in);
            for (int32_t t = 0; t < n; t++)
                sr_quantize_act_row((sr_type)lins[0]->type, x + (size_t)t * lins[0]->n_in,
                                    (char *)e->act + (size_t)t * row, lins[0]->n_in);
            sr_type types[SR_MATMUL_MULTI_MAX];
            const void *ws[SR_MATMUL_MULTI_MAX], *acts[SR_MATMUL_MULTI_MAX];
            int64_t n_outs[SR_MATMUL_MULTI_MAX];
            for (int i = 0; i < count; i++) {
                types[i] = (sr_type)lins[i]->type;
                ws[i] = lins[i]->w;
                n_outs[i] = lins[i]->n_out;
                acts[i] = e->act;
            }
            sr_matmul_multi(e->pool, count, types, ws, lins[0]->n_in, n_outs, acts, n, ys);
            return SR_OK;
        }
    }
    int prepared = -1;
    for (int i = 0; i < count; i++) {
        const sr_linear *l = lins[i];
        if (e->p.act_mode == SR_ACT_F32) {
            sr_matmul_f32(e->pool, (sr_type)l->type, l->w, l->n_in, l->n_out, x, n, ys[i]);
            continue;
        }
        const sr_type at = sr_act_type_for((sr_type)l->type);
        const size_t row = sr_act_row_bytes((sr_type)l->type, l->n_in);
        if ((int)at != prepared) {
            for (int32_t t = 0; t < n; t++)
                sr_quantize_act_row((sr_type)l->type, x + (size_t)t * l->n_in,
                                    (char *)e->act + (size_t)t * row, l->n_in);
            prepared = (int)at;
        }
        sr_matmul(e->pool, (sr_type)l->type, l->w, l->n_in, l->n_out, e->act, n, ys[i]);
    }
    return SR_OK;
}

static sr_status linear1(sr_engine *e, int32_t layer, sr_site site, sr_proj proj,
                         const sr_linear *l, const float *x, int32_t n, float *y) {
    const sr_linear *lins[1] = {l};
    sr_proj projs[1] = {proj};
    float *ys[1] = {y};
    return linear_group(e, layer, site, 1, lins, projs, ys, x, n);
}

// ---------------------------------------------------------------------------------------------
// Attention

typedef struct attn_job {
    sr_engine *e;
    int32_t layer, n;  // rows of the batch (each with its sequence and position in e->row_*)
} attn_job;

static void attn_worker(void *ctx, int ith, int nth) {
    const attn_job *j = ctx;
    sr_engine *e = j->e;
    const int32_t hd = e->p.head_dim, nh = e->p.n_head, group = nh / e->p.n_head_kv;
    const size_t layer_k = (size_t)e->kv_dim * (size_t)e->k_rows;
    const size_t layer_v = (size_t)e->kv_dim * (size_t)e->v_cols;
    const uint16_t *kc = e->k_cache + (size_t)j->layer * layer_k;
    const uint16_t *vc = e->v_cache + (size_t)j->layer * layer_v;
    float *scores = e->scores + (size_t)ith * e->ctx_pad;
    uint16_t *p16 = e->p16 + (size_t)ith * e->ctx_pad;
    uint16_t *q16 = e->q16 + (size_t)ith * hd;
    const float scale = 1.0f / sqrtf((float)hd);

    for (int32_t task = ith; task < j->n * nh; task += nth) {
        const int32_t t = task / nh, h = task % nh, kvh = h / group, seq = e->row_seq[t];
        const int32_t n_kv = e->row_pos[t] + 1;  // causal: positions 0 ..= pos+t
        // llama.cpp's summation order depends on the batch: its dot product for one token,
        // llamafile's tinyBLAS for two or more (per sequence: as if it were evaluated alone)
        void (*const dot_rows)(int64_t, const uint16_t *, size_t, int64_t, const uint16_t *, float *) =
            e->row_gemm[t] ? sr_f16_rows_gemm : sr_vec_dot_f16_rows;
        const float *q = e->q + (size_t)t * e->q_dim + (size_t)h * hd;
        sr_quantize_act_row(SR_TYPE_F16, q, q16, hd);   // = sr_fp32_to_fp16 per element
        const uint16_t *kh = kc + ((size_t)kvh * e->k_rows + (size_t)seq * e->p.n_ctx) * hd;
        float max = -INFINITY;
        dot_rows(hd, kh, (size_t)hd, n_kv, q16, scores);   // all key dots in one call
        for (int32_t i = 0; i < n_kv; i++) {
            scores[i] = scores[i] * scale;
            if (scores[i] > max) max = scores[i];
        }
        // ggml's soft_max: its vector expf and its summation order (bit-exact with llama.cpp)
        const double sum = sr_softmax_exp(n_kv, scores, scores, max);
        const float inv = (float)(1.0 / sum);
        const int32_t n_pad = (n_kv + SR_KV_ALIGN - 1) / SR_KV_ALIGN * SR_KV_ALIGN;
        for (int32_t i = 0; i < n_kv; i++) scores[i] = scores[i] * inv;
        sr_quantize_act_row(SR_TYPE_F16, scores, p16, n_kv);   // = sr_fp32_to_fp16 per element
        for (int32_t i = n_kv; i < n_pad; i++) p16[i] = 0;
        const uint16_t *vh = vc + (size_t)kvh * hd * e->v_cols + (size_t)seq * e->ctx_pad;
        float *out = e->att + (size_t)t * e->q_dim + (size_t)h * hd;
        dot_rows(n_pad, vh, (size_t)e->v_cols, hd, p16, out);
    }
}

// ---------------------------------------------------------------------------------------------
// Forward

// A run of consecutive batch rows that belong to one sequence.
typedef struct seg {
    int32_t seq, row0, n, pos;
} seg;

// One forward pass over n rows grouped into sequence segments (e->row_* filled for every row);
// the head runs on the n_head rows listed in e->head_rows, writing n_head * n_vocab floats.
static sr_status forward(sr_engine *e, const int32_t *tokens, int32_t n, const seg *segs,
                         int32_t n_segs, int32_t n_head, float *head_out) {
    const sr_engine_params *p = &e->p;
    const int32_t d = p->n_embd, hd = p->head_dim, half = p->rope_dim / 2;
    const size_t emb_row = sr_row_bytes((sr_type)e->w.tok_embd_type, d);
    sr_status s;

    for (int32_t t = 0; t < n; t++) {
        if (tokens[t] < 0 || tokens[t] >= p->n_vocab)
            return sr_fail(SR_ERR_INVALID_ARG, "token id %d is outside the vocabulary (0..%d)",
                           tokens[t], p->n_vocab - 1);
        if (e->embed_hook)
            e->embed_hook(e->embed_user, tokens[t], e->x + (size_t)t * d);
        else
            sr_dequantize_row((sr_type)e->w.tok_embd_type,
                              (const char *)e->w.tok_embd + (size_t)tokens[t] * emb_row,
                              e->x + (size_t)t * d, d);
        rope_angles(e, e->row_pos[t], e->rope_cos + (size_t)t * half, e->rope_sin + (size_t)t * half);
    }

    for (int32_t l = 0; l < p->n_layer; l++) {
        if (atomic_load(&e->abort_flag))
            return sr_fail(SR_ERR_ABORTED, "evaluation was cancelled");
        const sr_block_weights *b = &e->blocks[l];
        if (e->tap) e->tap(e->tap_user, l, SR_TAP_BLOCK, e->x, n, d);
        for (int32_t t = 0; t < n; t++)
            sr_rms_norm(e->x + (size_t)t * d, b->attn_norm, e->xn + (size_t)t * d, d, p->rms_eps);
        {
            const sr_linear *lins[3] = {&b->q, &b->k, &b->v};
            sr_proj projs[3] = {SR_PROJ_Q, SR_PROJ_K, SR_PROJ_V};
            float *ys[3] = {e->q, e->k, e->v};
            if ((s = linear_group(e, l, SR_SITE_A, 3, lins, projs, ys, e->xn, n)) != SR_OK) return s;
        }
        // qwen2: ggml_add of each bias right after its projection (dense or hooked), before RoPE
        for (int32_t t = 0; t < n; t++) {
            if (b->q_bias) sr_add_inplace(e->q + (size_t)t * e->q_dim, b->q_bias, e->q_dim);
            if (b->k_bias) sr_add_inplace(e->k + (size_t)t * e->kv_dim, b->k_bias, e->kv_dim);
            if (b->v_bias) sr_add_inplace(e->v + (size_t)t * e->kv_dim, b->v_bias, e->kv_dim);
        }
        if (e->tap) e->tap(e->tap_user, l, SR_TAP_V, e->v, n, e->kv_dim);
        void (*const rope)(float *, int32_t, int32_t, int32_t, const float *, const float *) =
            p->rope_mode == SR_ROPE_NEOX ? sr_rope_apply_neox : sr_rope_apply;
        for (int32_t t = 0; t < n; t++) {
            const float *cs = e->rope_cos + (size_t)t * half, *sn = e->rope_sin + (size_t)t * half;
            rope(e->q + (size_t)t * e->q_dim, p->n_head, hd, p->rope_dim, cs, sn);
            rope(e->k + (size_t)t * e->kv_dim, p->n_head_kv, hd, p->rope_dim, cs, sn);
        }
        if (e->attn_seq_hook || e->attn_hook) {
            for (int32_t i = 0; i < n_segs; i++) {
                const seg *g = &segs[i];
                const size_t qo = (size_t)g->row0 * e->q_dim, ko = (size_t)g->row0 * e->kv_dim;
                s = e->attn_seq_hook
                        ? e->attn_seq_hook(e->attn_seq_user, l, g->seq, e->q + qo, e->k + ko, e->v + ko,
                                           g->n, g->pos, e->att + qo)
                        : e->attn_hook(e->attn_user, l, e->q + qo, e->k + ko, e->v + ko, g->n, g->pos,
                                       e->att + qo);
                if (s != SR_OK) return s;
            }
        } else {
            // Append K and V to each sequence's cache region as fp16 (V transposed), then attend.
            uint16_t *kc = e->k_cache + (size_t)l * e->kv_dim * e->k_rows;
            uint16_t *vc = e->v_cache + (size_t)l * e->kv_dim * e->v_cols;
            for (int32_t t = 0; t < n; t++) {
                const float *kt = e->k + (size_t)t * e->kv_dim, *vt = e->v + (size_t)t * e->kv_dim;
                const size_t krow = (size_t)e->row_seq[t] * p->n_ctx + (size_t)e->row_pos[t];
                const size_t vcol = (size_t)e->row_seq[t] * e->ctx_pad + (size_t)e->row_pos[t];
                for (int32_t h = 0; h < p->n_head_kv; h++)
                    for (int32_t i = 0; i < hd; i++) {
                        kc[((size_t)h * e->k_rows + krow) * hd + i] = sr_fp32_to_fp16(kt[h * hd + i]);
                        vc[((size_t)h * hd + i) * e->v_cols + vcol] = sr_fp32_to_fp16(vt[h * hd + i]);
                    }
            }
            attn_job job = {e, l, n};
            sr_pool_run(e->pool, attn_worker, &job);
        }
        if ((s = linear1(e, l, SR_SITE_O, SR_PROJ_O, &b->o, e->att, n, e->tmp)) != SR_OK) return s;
        sr_add_inplace(e->x, e->tmp, (int64_t)n * d);

        for (int32_t t = 0; t < n; t++)
            sr_rms_norm(e->x + (size_t)t * d, b->ffn_norm, e->xn + (size_t)t * d, d, p->rms_eps);
        {
            const sr_linear *lins[2] = {&b->gate, &b->up};
            sr_proj projs[2] = {SR_PROJ_GATE, SR_PROJ_UP};
            float *ys[2] = {e->gate, e->up};
            if ((s = linear_group(e, l, SR_SITE_F, 2, lins, projs, ys, e->xn, n)) != SR_OK) return s;
        }
        for (int32_t t = 0; t < n; t++) {   // per row: ggml's groups of 8 restart at each row
            float *g = e->gate + (size_t)t * p->n_ff;
            sr_swiglu(p->n_ff, g, g, e->up + (size_t)t * p->n_ff);
        }
        if ((s = linear1(e, l, SR_SITE_D, SR_PROJ_DOWN, &b->down, e->gate, n, e->tmp)) != SR_OK)
            return s;
        sr_add_inplace(e->x, e->tmp, (int64_t)n * d);
    }

    if (n_head == 0) return SR_OK;
    for (int32_t t = 0; t < n_head; t++)
        sr_rms_norm(e->x + (size_t)e->head_rows[t] * d, e->w.output_norm, e->head_in + (size_t)t * d, d,
                 p->rms_eps);
    return linear1(e, p->n_layer, SR_SITE_H, SR_PROJ_HEAD, &e->w.output, e->head_in, n_head, head_out);
}

static sr_status check_hooks(const sr_engine *e) {
    if (e->p.hooked_linears && !e->hook)
        return sr_fail(SR_ERR_INVALID_ARG, "this model's linear layers need the spike runtime attached");
    return SR_OK;
}

sr_status sr_engine_eval(sr_engine *e, const int32_t *tokens, int32_t n, int32_t pos, float *logits,
                         bool all_logits) {
    if (n <= 0 || pos < 0) return sr_fail(SR_ERR_INVALID_ARG, "nothing to evaluate");
    if ((int64_t)pos + n > e->p.n_ctx)
        return sr_fail(SR_ERR_CONTEXT_FULL, "%d tokens at position %d exceed the context of %d",
                       n, pos, e->p.n_ctx);
    sr_status s = check_hooks(e);
    if (s != SR_OK) return s;
    if (e->n_seq > 1 && e->attn_hook && !e->attn_seq_hook)
        return sr_fail(SR_ERR_UNSUPPORTED, "the attention hook serves one sequence, the engine has %d",
                       e->n_seq);
    atomic_store(&e->abort_flag, false);
    if (e->token_hook) {  // a whole token per call (the FPGA token program): token by token
        for (int32_t t = 0; t < n; t++) {
            if (atomic_load(&e->abort_flag)) return sr_fail(SR_ERR_ABORTED, "evaluation was cancelled");
            if (tokens[t] < 0 || tokens[t] >= e->p.n_vocab)
                return sr_fail(SR_ERR_INVALID_ARG, "token id %d is outside the vocabulary (0..%d)", tokens[t],
                               e->p.n_vocab - 1);
            float *out = NULL;
            if (logits && all_logits) out = logits + (size_t)t * e->p.n_vocab;
            else if (logits && t == n - 1) out = logits;
            if ((s = e->token_hook(e->token_user, tokens[t], pos + t, out)) != SR_OK) return s;
        }
        return SR_OK;
    }
    for (int32_t done = 0; done < n; done += e->p.n_batch) {
        const int32_t m = n - done < e->p.n_batch ? n - done : e->p.n_batch;
        const bool last = done + m == n;
        float *out = NULL;
        if (logits && all_logits) out = logits + (size_t)done * e->p.n_vocab;
        else if (logits && last) out = logits;
        for (int32_t t = 0; t < m; t++) {
            e->row_seq[t] = 0;
            e->row_pos[t] = pos + done + t;
            e->row_gemm[t] = m >= 2;
        }
        int32_t n_head = 0;
        if (out && all_logits)
            for (int32_t t = 0; t < m; t++) e->head_rows[n_head++] = t;
        else if (out)
            e->head_rows[n_head++] = m - 1;
        const seg g = {0, 0, m, pos + done};
        if ((s = forward(e, tokens + done, m, &g, 1, n_head, out)) != SR_OK) return s;
    }
    return SR_OK;
}

sr_status sr_engine_eval_seqs(sr_engine *e, const sr_seq_batch *seqs, int32_t n_seqs) {
    if (n_seqs <= 0 || !seqs) return sr_fail(SR_ERR_INVALID_ARG, "nothing to evaluate");
    if (n_seqs > e->n_seq || n_seqs > e->p.n_batch)
        return sr_fail(SR_ERR_INVALID_ARG, "%d sequences in one step, the engine holds %d",
                       n_seqs, e->n_seq);
    sr_status s = check_hooks(e);
    if (s != SR_OK) return s;
    if (e->n_seq > 1 && e->attn_hook && !e->attn_seq_hook)
        return sr_fail(SR_ERR_UNSUPPORTED, "the attention hook serves one sequence, the engine has %d",
                       e->n_seq);
    seg segs[n_seqs];
    int32_t n = 0, n_head = 0;
    for (int32_t i = 0; i < n_seqs; i++) {
        const sr_seq_batch *b = &seqs[i];
        if (b->seq < 0 || b->seq >= e->n_seq)
            return sr_fail(SR_ERR_INVALID_ARG, "sequence %d is outside 0..%d", b->seq, e->n_seq - 1);
        for (int32_t k = 0; k < i; k++)
            if (seqs[k].seq == b->seq)
                return sr_fail(SR_ERR_INVALID_ARG, "sequence %d appears twice in one step", b->seq);
        if (b->n_tok <= 0 || b->pos < 0 || !b->tokens)
            return sr_fail(SR_ERR_INVALID_ARG, "sequence %d has nothing to evaluate", b->seq);
        if ((int64_t)b->pos + b->n_tok > e->p.n_ctx)
            return sr_fail(SR_ERR_CONTEXT_FULL, "%d tokens at position %d exceed the context of %d",
                           b->n_tok, b->pos, e->p.n_ctx);
        if ((int64_t)n + b->n_tok > e->p.n_batch)
            return sr_fail(SR_ERR_INVALID_ARG, "the step holds more than %d tokens", e->p.n_batch);
        segs[i] = (seg){b->seq, n, b->n_tok, b->pos};
        for (int32_t t = 0; t < b->n_tok; t++) {
            e->tok_buf[n + t] = b->tokens[t];
            e->row_seq[n + t] = b->seq;
            e->row_pos[n + t] = b->pos + t;
            e->row_gemm[n + t] = (b->kernel_n > 0 ? b->kernel_n : b->n_tok) >= 2;
        }
        n += b->n_tok;
        if (b->logits) e->head_rows[n_head++] = n - 1;
    }
    atomic_store(&e->abort_flag, false);
    if (e->token_hook) {  // the token program keeps one sequence's caches
        if (e->n_seq > 1 || n_seqs != 1 || seqs[0].seq != 0)
            return sr_fail(SR_ERR_UNSUPPORTED, "the FPGA token program serves one sequence");
        return sr_engine_eval(e, seqs[0].tokens, seqs[0].n_tok, seqs[0].pos, seqs[0].logits, false);
    }
    float *head_out = e->n_seq > 1 ? e->seq_logits : (n_head ? seqs[0].logits : NULL);
    if ((s = forward(e, e->tok_buf, n, segs, n_seqs, n_head, head_out)) != SR_OK) return s;
    if (head_out == e->seq_logits)
        for (int32_t i = 0, r = 0; i < n_seqs; i++)
            if (seqs[i].logits)
                memcpy(seqs[i].logits, e->seq_logits + (size_t)r++ * e->p.n_vocab,
                       sizeof(float) * (size_t)e->p.n_vocab);
    return SR_OK;
}
