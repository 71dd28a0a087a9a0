// C-level checks of the runtime for the sanitizer builds (tools/sanitize/run.sh).
//
// A tiny Llama (2 layers, n_embd 128, GQA, Q8_0/Q4_1/F16 weights from a fixed seed) runs
// through the dense engine and through a spike net with spike attention, on 1 and 3 threads,
// with one and two (fake) NUMA nodes, at every SIMD level the CPU has. Checks:
//   - every logit is finite; the dense engine gives the same logits on 1 and 3 threads;
//   - the spike net gives bit-identical logits at every SIMD level, thread count and node
//     count (the kernels promise this), and the KV cache continues correctly (a prompt
//     evaluated at once equals the same prompt fed in two calls);
//   - a failure inside a pool worker of the spike attention reaches the caller's
//     sr_last_error() as a sentence naming the attention layer;
//   - the thread pool runs every task exactly once, many times over.
// Under ASan/UBSan every buffer is sized exactly (malloc) so overreads are caught; under
// TSan the pool, spike-batch and NUMA replica code run with 3 threads.
// Exit status 0 when every check passes; each failure prints one line.

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spikerun/sr-engine.h"
#include "spikerun/sr-pool.h"
#include "spikerun/sr-quant.h"
#include "spikerun/sr-spike-net.h"
#include "spikerun/sr-spike.h"
#include "spikerun/sr-status.h"

static int failures = 0;
#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            failures++;                                                    \
            fprintf(stderr, "sr-sanity: FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
        }                                                                  \
    } while (0)

enum { N_LAYER = 2, N_EMBD = 128, N_FF = 256, N_HEAD = 4, N_HEAD_KV = 2, HEAD_DIM = 32, N_VOCAB = 48,
       N_CTX = 32 };

static uint64_t rng_state = 0x5EED;
static uint32_t rnd(void) {  // splitmix64
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}
static float frand(void) { return (float)(rnd() >> 8) / (float)(1u << 24) * 2.0f - 1.0f; }
static uint16_t f16(float x) {  // via the runtime's own converter direction is not exported: small exact values only
    // x = m * 2^-10 for |m| < 1024 is exact in binary16 with exponent 15 - 10.
    union { float f; uint32_t u; } v = {x};
    const uint32_t sign = (v.u >> 16) & 0x8000u;
    int32_t e = (int32_t)((v.u >> 23) & 0xFF) - 127 + 15;
    uint32_t m = (v.u >> 13) & 0x3FFu;
    if (x == 0.0f) return (uint16_t)sign;
    if (e <= 0 || e >= 31) return (uint16_t)sign;  // tests never need these
    return (uint16_t)(sign | ((uint32_t)e << 10) | m);
}

// One linear's weights as ggml blocks (n_out rows of n_in values).
static void *make_weights(sr_type t, int32_t n_in, int32_t n_out) {
    const size_t row = sr_row_bytes(t, n_in);
    uint8_t *w = malloc(row * (size_t)n_out);
    for (int32_t r = 0; r < n_out; r++) {
        uint8_t *p = w + row * (size_t)r;
        for (int32_t b = 0; b < n_in / 32; b++) {
            if (t == SR_TYPE_Q8_0) {
                uint16_t d = f16(0.002f + 0.001f * (float)(rnd() % 4));
                memcpy(p, &d, 2);
                for (int i = 0; i < 32; i++) p[2 + i] = (uint8_t)(int8_t)((int)(rnd() % 255) - 127);
                p += 34;
            } else if (t == SR_TYPE_Q4_1) {
                uint16_t d = f16(0.01f + 0.005f * (float)(rnd() % 4)), m = f16(-0.08f);
                memcpy(p, &d, 2);
                memcpy(p + 2, &m, 2);
                for (int i = 0; i < 16; i++) p[4 + i] = (uint8_t)rnd();
                p += 20;
            } else {  // F16
                for (int i = 0; i < 32; i++) {
                    uint16_t h = f16(frand() * 0.125f);
                    memcpy(p + 2 * i, &h, 2);
                }
                p += 64;
            }
        }
    }
    return w;
}

static float *ones(int32_t n) {
    float *x = malloc(sizeof(float) * (size_t)n);
    for (int32_t i = 0; i < n; i++) x[i] = 1.0f + 0.01f * (float)(i % 7);
    return x;
}

typedef struct model {
    sr_engine_params p;
    sr_engine_weights w;
    sr_block_weights blocks[N_LAYER];
    void *owned[64];
    int n_owned;
} model;

static const void *own(model *m, void *p) { m->owned[m->n_owned++] = p; return p; }

static sr_linear lin(model *m, sr_type t, int32_t n_in, int32_t n_out) {
    sr_linear l = {own(m, make_weights(t, n_in, n_out)), (int32_t)t, n_in, n_out};
    return l;
}

static void model_init(model *m, int32_t n_threads) {
    memset(m, 0, sizeof *m);
    rng_state = 0x5EED;
    m->p = (sr_engine_params){.n_layer = N_LAYER, .n_embd = N_EMBD, .n_ff = N_FF, .n_head = N_HEAD,
                              .n_head_kv = N_HEAD_KV, .head_dim = HEAD_DIM, .n_vocab = N_VOCAB,
                              .n_ctx = N_CTX, .n_batch = 8, .n_seq = 1, .rope_dim = HEAD_DIM,
                              .rope_freq_base = 10000.0f, .rms_eps = 1e-5f, .act_mode = SR_ACT_Q8,
                              .n_threads = n_threads, .hooked_linears = false};
    for (int l = 0; l < N_LAYER; l++) {
        sr_block_weights *b = &m->blocks[l];
        b->attn_norm = own(m, ones(N_EMBD));
        b->ffn_norm = own(m, ones(N_EMBD));
        b->q = lin(m, SR_TYPE_Q4_1, N_EMBD, N_HEAD * HEAD_DIM);
        b->k = lin(m, SR_TYPE_Q8_0, N_EMBD, N_HEAD_KV * HEAD_DIM);
        b->v = lin(m, SR_TYPE_Q4_1, N_EMBD, N_HEAD_KV * HEAD_DIM);
        b->o = lin(m, SR_TYPE_Q8_0, N_HEAD * HEAD_DIM, N_EMBD);
        b->gate = lin(m, SR_TYPE_Q4_1, N_EMBD, N_FF);
        b->up = lin(m, SR_TYPE_Q8_0, N_EMBD, N_FF);
        b->down = lin(m, SR_TYPE_F16, N_FF, N_EMBD);
    }
    sr_linear emb = lin(m, SR_TYPE_Q8_0, N_EMBD, N_VOCAB);
    m->w.tok_embd = emb.w;
    m->w.tok_embd_type = emb.type;
    m->w.output_norm = own(m, ones(N_EMBD));
    m->w.output = emb;  // tied head
    m->w.blocks = m->blocks;
}

static void model_free(model *m) {
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
}

static const int32_t prompt[6] = {3, 17, 5, 44, 9, 30};
static int max_nodes_seen = 0;   // NUMA nodes of the engines' pools (fake nodes included)

// Logits (6 x N_VOCAB) of the prompt: 4 tokens in one call, then 2 more.
static int run(model *m, sr_spike_net *net, float *out) {
    sr_engine *e = NULL;
    sr_status s = sr_engine_create(&m->p, &m->w, &e);
    CHECK(s == SR_OK, "sr_engine_create: %s", sr_last_error());
    if (s != SR_OK) return 0;
    const int nodes = sr_pool_nodes(sr_engine_pool(e));
    if (nodes > max_nodes_seen) max_nodes_seen = nodes;
    if (net) {
        s = sr_spike_net_attach(net, e);
        CHECK(s == SR_OK, "sr_spike_net_attach: %s", sr_last_error());
    }
    if (s == SR_OK) s = sr_engine_eval(e, prompt, 4, 0, out, true);
    if (s == SR_OK) s = sr_engine_eval(e, prompt + 4, 2, 4, out + 4 * N_VOCAB, true);
    CHECK(s == SR_OK, "sr_engine_eval: %s", sr_last_error());
    sr_engine_free(e);
    for (int i = 0; s == SR_OK && i < 6 * N_VOCAB; i++)
        if (!isfinite(out[i])) { CHECK(0, "logit %d is not finite", i); break; }
    return s == SR_OK;
}

// refine: the head as int8 rows on a mean-rule NAF train at k = 2 with a power-of-two step, its
// 16 largest logits recomputed at k = 12, and attention with power-of-two steps (as the default
// conversion)
static sr_spike_net *spike_net(model *m, bool poison_q, bool refine) {
    sr_spike_site_cfg sites[N_LAYER * 4 + 1];
    for (int i = 0; i < N_LAYER * 4 + 1; i++)
        sites[i] = (sr_spike_site_cfg){SR_SPIKE_RULE_MAX, SR_SPIKE_SIGN_MAGNITUDE, 0.0f, 8, 1.0f, 0, 0.0f, 0};
    if (refine) sites[N_LAYER * 4] = (sr_spike_site_cfg){SR_SPIKE_RULE_MEAN, SR_SPIKE_NAF, 2.0f, 0, 1.0f, 0, 0.0f, 0, 0.35f, 1};
    static float v_scales[N_LAYER * N_HEAD_KV * HEAD_DIM];   // static per-(head, channel) V scales
    for (int i = 0; i < N_LAYER * N_HEAD_KV * HEAD_DIM; i++) v_scales[i] = 0.05f;
    sr_spike_net_params np = {N_LAYER, N_EMBD, N_FF, N_HEAD, N_HEAD_KV, HEAD_DIM, N_CTX, sites, true, 8, 12,
                              refine ? 1 : 0, v_scales};
    if (refine) {
        np.head_refine_rows = 16;
        np.head_refine_k = 12.0f;
    }
    sr_spike_net *net = NULL;
    sr_status s = sr_spike_net_create(&np, &net);
    CHECK(s == SR_OK, "sr_spike_net_create: %s", sr_last_error());
    if (s != SR_OK) return NULL;
    for (int l = 0; l <= N_LAYER; l++) {
        const sr_linear *ls[7];
        int n = 0;
        if (l < N_LAYER) {
            const sr_block_weights *b = &m->blocks[l];
            const sr_linear *all[7] = {&b->q, &b->k, &b->v, &b->o, &b->gate, &b->up, &b->down};
            memcpy(ls, all, sizeof all);
            n = 7;
        } else {
            ls[0] = &m->w.output;
            n = 1;
        }
        for (int i = 0; i < n && s == SR_OK; i++) {
            const sr_linear *x = ls[i];
            const sr_proj proj = l < N_LAYER ? (sr_proj)i : SR_PROJ_HEAD;
            if (x->type == SR_TYPE_F16 || (refine && proj == SR_PROJ_HEAD)) {  // re-code as int8 rows with a row scale
                int8_t *codes = malloc((size_t)x->n_in * (size_t)x->n_out);
                float *scale = malloc(sizeof(float) * (size_t)x->n_out);
                for (int32_t r = 0; r < x->n_out; r++) {
                    scale[r] = 0.001f;
                    for (int32_t c = 0; c < x->n_in; c++) codes[(size_t)r * x->n_in + c] = (int8_t)((int)(rnd() % 255) - 127);
                }
                s = sr_spike_net_set_linear(net, l, proj, SR_SPIKE_W_I8_ROW, codes, scale, x->n_out, x->n_in);
                free(codes);
                free(scale);
            } else {
                const void *data = x->w;
                void *copy = NULL;
                if (poison_q && l == 0 && proj == SR_PROJ_Q) {  // +Inf block scales: infinite queries
                    const size_t bytes = sr_row_bytes((sr_type)x->type, x->n_in) * (size_t)x->n_out;
                    copy = malloc(bytes);
                    memcpy(copy, x->w, bytes);
                    for (size_t o = 0; o < bytes; o += 20) { ((uint8_t *)copy)[o] = 0x00; ((uint8_t *)copy)[o + 1] = 0x7C; }
                    data = copy;
                }
                // layer 1's Q4_1 blocks with integer block scales (--weights int4i)
                const sr_spike_format q4 = l == 1 ? SR_SPIKE_W_Q4_1_INT : SR_SPIKE_W_Q4_1;
                s = sr_spike_net_set_linear(net, l, proj, x->type == SR_TYPE_Q4_1 ? q4 : SR_SPIKE_W_Q8_0,
                                            data, NULL, x->n_out, x->n_in);
                free(copy);
            }
            CHECK(s == SR_OK, "sr_spike_net_set_linear(%d, %d): %s", l, (int)proj, sr_last_error());
        }
    }
    if (s != SR_OK) { sr_spike_net_free(net); return NULL; }
    return net;
}

typedef struct pool_job { atomic_int hits[64]; int n; } pool_job;
static void pool_task(void *ctx, int ith, int nth) {
    pool_job *j = ctx;
    for (int i = ith; i < j->n; i += nth) atomic_fetch_add(&j->hits[i], 1);
}

int main(void) {
    const size_t n_logits = 6 * N_VOCAB;
    float *dense1 = malloc(sizeof(float) * n_logits), *dense3 = malloc(sizeof(float) * n_logits);
    float *ref = malloc(sizeof(float) * n_logits), *got = malloc(sizeof(float) * n_logits);
    model m;

    // Thread pool: every task exactly once, many rounds.
    sr_pool *pool = sr_pool_create(3);
    CHECK(pool != NULL, "sr_pool_create(3) failed");
    if (pool) {
        pool_job j;
        j.n = 64;
        for (int round = 0; round < 200; round++) {
            for (int i = 0; i < 64; i++) atomic_init(&j.hits[i], 0);
            sr_pool_run(pool, pool_task, &j);
            for (int i = 0; i < 64; i++) CHECK(atomic_load(&j.hits[i]) == 1, "pool task %d ran %d times", i, atomic_load(&j.hits[i]));
        }
        sr_pool_free(pool);
    }

    // Dense engine: same logits on 1 and 3 threads.
    model_init(&m, 1);
    run(&m, NULL, dense1);
    model_free(&m);
    model_init(&m, 3);
    run(&m, NULL, dense3);
    model_free(&m);
    CHECK(memcmp(dense1, dense3, sizeof(float) * n_logits) == 0, "dense logits differ between 1 and 3 threads");

    // Spike net: bit-identical across SIMD levels, threads and (fake) NUMA nodes.
    const int best = sr_spike_set_simd_level(SR_SPIKE_SIMD_AUTO);
    int have_ref = 0;
    for (int nodes = 1; nodes <= 2; nodes++) {
        sr_pool_set_thread_defaults(nodes > 1, nodes > 1 ? 1 /* distribute */ : 0, nodes > 1 ? 2 : 0, false);
        for (int threads = 1; threads <= 3; threads += 2) {
            for (int level = 0; level <= best; level++) {
                sr_spike_set_simd_level(level);
                model_init(&m, threads);
                sr_spike_net *net = spike_net(&m, false, false);
                if (net && run(&m, net, got)) {
                    if (!have_ref) { memcpy(ref, got, sizeof(float) * n_logits); have_ref = 1; }
                    CHECK(memcmp(ref, got, sizeof(float) * n_logits) == 0,
                          "spike logits differ at SIMD level %d, %d threads, %d nodes", level, threads, nodes);
                }
                sr_spike_net_free(net);
                model_free(&m);
            }
        }
    }
    sr_pool_set_thread_defaults(false, 0, 0, false);
    sr_spike_set_simd_level(SR_SPIKE_SIMD_AUTO);

    // The refined head: its row choice and row sums split over the pool, the same bits on 1
    // and 3 threads.
    have_ref = 0;
    for (int threads = 1; threads <= 3; threads += 2) {
        model_init(&m, threads);
        sr_spike_net *net = spike_net(&m, false, true);
        if (net && run(&m, net, got)) {
            if (!have_ref) { memcpy(ref, got, sizeof(float) * n_logits); have_ref = 1; }
            CHECK(memcmp(ref, got, sizeof(float) * n_logits) == 0, "refined-head logits differ on %d threads", threads);
        }
        CHECK(net != NULL, "cannot set up the refined-head spike net");
        sr_spike_net_free(net);
        model_free(&m);
    }

    // A worker's failure inside spike attention keeps its sentence.
    for (int threads = 1; threads <= 3; threads += 2) {
        model_init(&m, threads);
        // Layer 0's attention RMSNorm weight at 1e30: q and k stay finite (about 1e32) but their
        // scores overflow to Inf, so softmax yields NaN and the probability encoder fails on a
        // pool worker.
        for (int i = 0; i < N_EMBD; i++) ((float *)m.blocks[0].attn_norm)[i] = 1e30f;
        sr_spike_net *net = spike_net(&m, false, false);
        sr_engine *e = NULL;
        if (net && sr_engine_create(&m.p, &m.w, &e) == SR_OK && sr_spike_net_attach(net, e) == SR_OK) {
            sr_status s = sr_engine_eval(e, prompt, 4, 0, got, false);
            CHECK(s == SR_ERR_NUMERIC, "overflowing scores: status %d (%s), expected SR_ERR_NUMERIC", (int)s, sr_status_str(s));
            CHECK(strstr(sr_last_error(), "spike attention, layer 0") && strstr(sr_last_error(), "NaN or Inf"),
                  "overflowing scores on %d threads: sr_last_error() is '%s'", threads, sr_last_error());
        } else {
            CHECK(0, "cannot set up the poisoned spike net: %s", sr_last_error());
        }
        sr_engine_free(e);
        sr_spike_net_free(net);
        model_free(&m);
    }

    CHECK(max_nodes_seen == 2, "no engine pool had the 2 fake NUMA nodes (saw at most %d)", max_nodes_seen);
    free(dense1); free(dense3); free(ref); free(got);
    if (failures) { fprintf(stderr, "sr-sanity: %d check(s) failed\n", failures); return 1; }
    printf("sr-sanity: ok (SIMD levels 0..%d, 1/3 threads, 1/2 NUMA nodes)\n", best);
    return 0;
}
