// spk_token_tb.c - C-simulation testbench of the token program (kernels/spk_token.cpp) on a
// small synthetic Llama: 2 layers, n_embd 256, 4 query heads and 2 KV heads of 64, a tied
// Q8_0 head, Q4_1 / Q8_0 / int8-row weights, spike attention, sites with the mean rule
// (sign-magnitude, NAF, two's complement) and the max rule.
//
// The same spike net runs three ways and must agree bit for bit, logit for logit:
//   cpu    the CPU spike path (sr_engine + sr_spike_net on the CPU kernels);
//   token  the emulated device (csrc/fpga/sr-fpga-emu.c, with the C-simulation build of the
//          HLS sources as the device: kernels/spk_acc.cpp, spk_core.cpp, spk_token.cpp) running
//          the token program: ONE kernel run per token, checked by the run counters;
//   layers the same device with one spk_acc run per group of layers (the v2 host flow).
// The prompt is fed at once on the CPU and token by token on the device, then 72 greedy steps
// cross the K cache's 64-position chunk and the V cache's 32-position blocks (position n_ctx is
// refused by the engine before the token hook, as on the CPU); a NaN planted in the device's
// norm weights comes back as a numeric error naming the descriptor that stopped.
//
// Usage: spk_token_tb EMULATED_KERNEL.so      exit 0 and "N passed, 0 failed" when all pass.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spikerun/sr-engine.h"
#include "spikerun/sr-fpga.h"
#include "spikerun/sr-quant.h"
#include "spikerun/sr-spike-net.h"
#include "spikerun/sr-status.h"

static int passed = 0, failed = 0;
#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (cond) {                                                             \
            passed++;                                                           \
        } else {                                                                \
            failed++;                                                           \
            fprintf(stderr, "spk_token_tb: FAIL %s:%d: ", __FILE__, __LINE__);  \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
        }                                                                       \
    } while (0)

enum { N_LAYER = 2, N_EMBD = 256, N_FF = 384, N_HEAD = 4, N_HEAD_KV = 2, HEAD_DIM = 64, N_VOCAB = 160,
       N_CTX = 96, N_PROMPT = 6, N_GEN = 72 };

static uint64_t rng_state = 0x70CE;
static uint32_t rnd(void) {  // splitmix64
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}
static uint16_t f16_small(float x) {  // normal binary16 values only
    union { float f; uint32_t u; } v = {x};
    const uint32_t sign = (v.u >> 16) & 0x8000u;
    int32_t e = (int32_t)((v.u >> 23) & 0xFF) - 127 + 15;
    uint32_t m = (v.u >> 13) & 0x3FFu;
    if (x == 0.0f || e <= 0 || e >= 31) return (uint16_t)sign;
    return (uint16_t)(sign | ((uint32_t)e << 10) | m);
}

static void *blocks(sr_type t, int32_t n_in, int32_t n_out) {
    const size_t row = sr_row_bytes(t, n_in);
    uint8_t *w = malloc(row * (size_t)n_out), *p = w;
    for (int32_t r = 0; r < n_out; r++)
        for (int32_t b = 0; b < n_in / 32; b++) {
            if (t == SR_TYPE_Q8_0) {
                uint16_t d = f16_small(0.004f + 0.002f * (float)(rnd() % 4));
                memcpy(p, &d, 2);
                for (int i = 0; i < 32; i++) p[2 + i] = (uint8_t)(int8_t)((int)(rnd() % 255) - 127);
                p += 34;
            } else {  // Q4_1
                uint16_t d = f16_small(0.01f + 0.005f * (float)(rnd() % 4)), m = f16_small(-0.075f);
                memcpy(p, &d, 2);
                memcpy(p + 2, &m, 2);
                for (int i = 0; i < 16; i++) p[4 + i] = (uint8_t)rnd();
                p += 20;
            }
        }
    return w;
}

static float *norm_weights(int32_t n, float base) {
    float *x = malloc(sizeof(float) * (size_t)n);
    for (int32_t i = 0; i < n; i++) x[i] = base + 0.02f * (float)(i % 11);
    return x;
}

typedef struct model {
    sr_engine_params p;
    sr_engine_weights w;
    sr_block_weights blocks[N_LAYER];
    void *owned[64];
    int n_owned;
} model;

static void *own(model *m, void *p) { m->owned[m->n_owned++] = p; return p; }

static sr_linear lin(model *m, sr_type t, int32_t n_in, int32_t n_out) {
    sr_linear l = {own(m, blocks(t, n_in, n_out)), (int32_t)t, n_in, n_out};
    return l;
}

static void model_init(model *m) {
    memset(m, 0, sizeof *m);
    m->p = (sr_engine_params){.n_layer = N_LAYER, .n_embd = N_EMBD, .n_ff = N_FF, .n_head = N_HEAD,
                              .n_head_kv = N_HEAD_KV, .head_dim = HEAD_DIM, .n_vocab = N_VOCAB,
                              .n_ctx = N_CTX, .n_batch = 8, .n_seq = 1, .rope_dim = HEAD_DIM,
                              .rope_freq_base = 10000.0f, .rms_eps = 1e-5f, .act_mode = SR_ACT_Q8,
                              .n_threads = 1, .hooked_linears = true};
    for (int l = 0; l < N_LAYER; l++) {
        sr_block_weights *b = &m->blocks[l];
        b->attn_norm = own(m, norm_weights(N_EMBD, 0.9f));
        b->ffn_norm = own(m, norm_weights(N_EMBD, 1.1f));
        b->q = lin(m, SR_TYPE_Q4_1, N_EMBD, N_HEAD * HEAD_DIM);
        b->k = lin(m, SR_TYPE_Q8_0, N_EMBD, N_HEAD_KV * HEAD_DIM);
        b->v = lin(m, SR_TYPE_Q4_1, N_EMBD, N_HEAD_KV * HEAD_DIM);
        b->o = lin(m, SR_TYPE_Q8_0, N_HEAD * HEAD_DIM, N_EMBD);
        b->gate = lin(m, SR_TYPE_Q4_1, N_EMBD, N_FF);
        b->up = lin(m, SR_TYPE_Q4_1, N_EMBD, N_FF);
        b->down = lin(m, SR_TYPE_Q8_0, N_FF, N_EMBD);  // packed as int8 rows below
    }
    sr_linear emb = lin(m, SR_TYPE_Q8_0, N_EMBD, N_VOCAB);
    m->w.tok_embd = emb.w;
    m->w.tok_embd_type = emb.type;
    m->w.output_norm = own(m, norm_weights(N_EMBD, 1.0f));
    m->w.output = emb;  // tied head
    m->w.blocks = m->blocks;
}

static sr_spike_net *spike_net(model *m) {
    sr_spike_site_cfg sites[N_LAYER * 4 + 1];
    const sr_spike_site_cfg mean_sm = {SR_SPIKE_RULE_MEAN, SR_SPIKE_SIGN_MAGNITUDE, 8.0f, 0, 0.0f, 0, 0.0f, 0};
    const sr_spike_site_cfg mean_naf = {SR_SPIKE_RULE_MEAN, SR_SPIKE_NAF, 12.0f, 0, 0.0f, 0, 0.1f, 0};
    const sr_spike_site_cfg mean_tc = {SR_SPIKE_RULE_MEAN, SR_SPIKE_TWOS_COMPLEMENT, 4.0f, 0, 0.0f, 0, 0.0f, 0};
    const sr_spike_site_cfg mean_thrifty = {SR_SPIKE_RULE_MEAN, SR_SPIKE_NAF, 6.0f, 0, 0.0f, 0, 0.0f, 0, 0.35f, 1};  // pow2 step
    const sr_spike_site_cfg max_sm = {SR_SPIKE_RULE_MAX, SR_SPIKE_SIGN_MAGNITUDE, 0.0f, 8, 0.95f, 0, 0.0f, 0};
    const sr_spike_site_cfg max_tc = {SR_SPIKE_RULE_MAX, SR_SPIKE_TWOS_COMPLEMENT, 0.0f, 6, 1.0f, 20, 0.2f, 0};
    const sr_spike_site_cfg order[N_LAYER * 4 + 1] = {mean_naf, mean_sm, max_sm, mean_tc,
                                                      max_tc, mean_naf, mean_sm, mean_thrifty, mean_sm};
    memcpy(sites, order, sizeof sites);
    static float v_scales[N_LAYER * N_HEAD_KV * HEAD_DIM];
    for (int i = 0; i < N_LAYER * N_HEAD_KV * HEAD_DIM; i++) v_scales[i] = 0.02f + 0.001f * (float)(i % 13);
    // exact attention steps here; the power-of-two ones are checked by FPGAEmulatorTests
    sr_spike_net_params np = {N_LAYER, N_EMBD, N_FF, N_HEAD, N_HEAD_KV, HEAD_DIM, N_CTX, sites, true, 8, 12, 0,
                              v_scales, 1};
    sr_spike_net *net = NULL;
    sr_status s = sr_spike_net_create(&np, &net);
    CHECK(s == SR_OK, "sr_spike_net_create: %s", sr_last_error());
    if (s != SR_OK) return NULL;
    rng_state = 0xC0DE;
    for (int l = 0; l <= N_LAYER && s == SR_OK; l++) {
        const int n = l < N_LAYER ? 7 : 1;
        for (int i = 0; i < n && s == SR_OK; i++) {
            const sr_block_weights *b = &m->blocks[l < N_LAYER ? l : 0];
            const sr_linear *all[7] = {&b->q, &b->k, &b->v, &b->o, &b->gate, &b->up, &b->down};
            const sr_linear *x = l < N_LAYER ? all[i] : &m->w.output;
            const sr_proj proj = l < N_LAYER ? (sr_proj)i : SR_PROJ_HEAD;
            if (proj == SR_PROJ_DOWN) {  // int8 rows with row scales
                int8_t *codes = malloc((size_t)x->n_in * (size_t)x->n_out);
                float *scale = malloc(sizeof(float) * (size_t)x->n_out);
                for (int32_t r = 0; r < x->n_out; r++) {
                    scale[r] = 0.0004f + 0.00001f * (float)(r % 5);
                    for (int32_t c = 0; c < x->n_in; c++)
                        codes[(size_t)r * x->n_in + c] = (int8_t)((int)(rnd() % 255) - 127);
                }
                s = sr_spike_net_set_linear(net, l, proj, SR_SPIKE_W_I8_ROW, codes, scale, x->n_out, x->n_in);
                free(codes);
                free(scale);
            } else {
                s = sr_spike_net_set_linear(net, l, proj, x->type == SR_TYPE_Q4_1 ? SR_SPIKE_W_Q4_1 : SR_SPIKE_W_Q8_0,
                                            x->w, NULL, x->n_out, x->n_in);
            }
            CHECK(s == SR_OK, "set_linear(%d, %d): %s", l, (int)proj, sr_last_error());
        }
    }
    if (s != SR_OK) {
        sr_spike_net_free(net);
        return NULL;
    }
    return net;
}

typedef struct runner {
    sr_engine *e;
    sr_spike_net *net;
    sr_fpga *f;
} runner;

// mode 0: CPU, 1: token program, 2: one spk_acc run per group of layers
static int runner_open(runner *r, model *m, int mode, const char *kernel) {
    memset(r, 0, sizeof *r);
    r->net = spike_net(m);
    if (!r->net) return 0;
    sr_status s = sr_engine_create(&m->p, &m->w, &r->e);
    CHECK(s == SR_OK, "sr_engine_create: %s", sr_last_error());
    if (s == SR_OK) s = sr_spike_net_attach(r->net, r->e);
    CHECK(s == SR_OK, "attach: %s", sr_last_error());
    if (s == SR_OK && mode > 0) {
        sr_fpga_params p = sr_fpga_default_params();
        p.xclbin_path = kernel;
        p.emulate = true;
        p.token_program = mode == 1;
        s = sr_fpga_open(&p, &r->f);
        CHECK(s == SR_OK, "sr_fpga_open: %s", sr_last_error());
        if (s == SR_OK) s = sr_spike_net_use_fpga(r->net, r->f);
        CHECK(s == SR_OK, "sr_spike_net_use_fpga: %s", sr_last_error());
        CHECK(s != SR_OK || sr_spike_net_token_program(r->net) == (mode == 1),
              "mode %d: the token program is %s", mode, sr_spike_net_token_program(r->net) ? "on" : "off");
    }
    return s == SR_OK;
}

static void runner_close(runner *r) {
    sr_engine_free(r->e);
    sr_spike_net_free(r->net);
    sr_fpga_close(r->f);
}

static int32_t argmax(const float *v) {
    int32_t b = 0;
    for (int32_t i = 1; i < N_VOCAB; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

static int differing(const float *a, const float *b, int n) {
    int d = 0;
    for (int i = 0; i < n; i++) d += memcmp(&a[i], &b[i], 4) != 0;
    return d;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: spk_token_tb EMULATED_KERNEL.so\n");
        return 64;
    }
    model m;
    rng_state = 0x70CE;
    model_init(&m);
    runner cpu, tok, lay;
    const int ok = runner_open(&cpu, &m, 0, NULL) && runner_open(&tok, &m, 1, argv[1]) &&
                   runner_open(&lay, &m, 2, argv[1]);
    if (!ok) {
        printf("%d passed, %d failed\n", passed, failed);
        return 1;
    }
    static const int32_t prompt[N_PROMPT] = {3, 17, 150, 44, 9, 130};
    static float a[N_PROMPT * N_VOCAB], b[N_PROMPT * N_VOCAB], c[N_PROMPT * N_VOCAB];
    sr_status s1 = sr_engine_eval(cpu.e, prompt, N_PROMPT, 0, a, true);
    sr_status s2 = sr_engine_eval(tok.e, prompt, N_PROMPT, 0, b, true);
    sr_status s3 = sr_engine_eval(lay.e, prompt, N_PROMPT, 0, c, true);
    CHECK(s1 == SR_OK && s2 == SR_OK && s3 == SR_OK, "prompt: %s", sr_last_error());
    int d = differing(a, b, N_PROMPT * N_VOCAB);
    CHECK(d == 0, "prompt: %d of %d token-program logits differ from the CPU's", d, N_PROMPT * N_VOCAB);
    d = differing(a, c, N_PROMPT * N_VOCAB);
    CHECK(d == 0, "prompt: %d of %d per-layer logits differ from the CPU's", d, N_PROMPT * N_VOCAB);
    int finite = 1;
    for (int i = 0; i < N_PROMPT * N_VOCAB; i++) finite &= isfinite(a[i]) != 0;
    CHECK(finite, "prompt logits are finite");
    sr_fpga_stats st0;
    sr_fpga_get_stats(tok.f, &st0);
    CHECK(st0.runs == N_PROMPT && st0.token_runs == N_PROMPT, "prompt: %llu runs (%llu token runs) for %d tokens",
          (unsigned long long)st0.runs, (unsigned long long)st0.token_runs, N_PROMPT);

    int32_t next = argmax(a + (N_PROMPT - 1) * N_VOCAB), pos = N_PROMPT, steps_equal = 0, distinct = 0;
    int seen[N_VOCAB] = {0};
    for (int step = 0; step < N_GEN; step++, pos++) {
        float la[N_VOCAB], lb[N_VOCAB], lc[N_VOCAB];
        s1 = sr_engine_eval(cpu.e, &next, 1, pos, la, false);
        s2 = sr_engine_eval(tok.e, &next, 1, pos, lb, false);
        s3 = sr_engine_eval(lay.e, &next, 1, pos, lc, false);
        if (s1 != SR_OK || s2 != SR_OK || s3 != SR_OK) {
            CHECK(0, "step %d: %s", step, sr_last_error());
            break;
        }
        d = differing(la, lc, N_VOCAB);
        if (d) CHECK(0, "position %d: %d per-layer logits differ", pos, d);
        d = differing(la, lb, N_VOCAB);
        if (d) fprintf(stderr, "spk_token_tb: position %d: %d token-program logits differ\n", pos, d);
        steps_equal += d == 0;
        next = argmax(la);
        distinct += !seen[next];
        seen[next] = 1;
    }
    CHECK(steps_equal == N_GEN, "%d of %d greedy steps have every token-program logit equal to the CPU's",
          steps_equal, N_GEN);
    CHECK(distinct >= 3, "greedy generation visits %d distinct tokens (a degenerate model tests little)", distinct);
    sr_fpga_stats st;
    sr_fpga_get_stats(tok.f, &st);
    CHECK(st.runs == N_PROMPT + N_GEN && st.token_runs == N_PROMPT + N_GEN && st.timeouts == 0,
          "one launch per token: %llu runs, %llu token runs for %d tokens", (unsigned long long)st.runs,
          (unsigned long long)st.token_runs, N_PROMPT + N_GEN);
    // the context is full: the device refuses position N_CTX like the CPU
    if (pos < N_CTX) {
        float la[N_VOCAB];
        sr_status se = sr_engine_eval(tok.e, &next, 1, N_CTX, la, false);
        CHECK(se == SR_ERR_CONTEXT_FULL, "position n_ctx: status %d", (int)se);
    }
    // a NaN in the device's first attention-norm weight (arena: header line, x, xn, then the
    // norm weights) stops the chain at the first encoder: a numeric error naming the step
    sr_fpga_layout layout;
    if (sr_fpga_program_layout(tok.f, &layout) == SR_OK) {
        const float nan = NAN;
        sr_status sw = sr_fpga_write_out(tok.f, (uint64_t)layout.arena_line * 16 + 16 + 2 * N_EMBD, &nan, 1);
        float la[N_VOCAB];
        sr_status se = sw == SR_OK ? sr_engine_eval(tok.e, &next, 1, 10, la, false) : sw;
        CHECK(se == SR_ERR_NUMERIC && strstr(sr_last_error(), "NaN") && strstr(sr_last_error(), "descriptor 2"),
              "NaN in a norm weight: status %d, '%s'", (int)se, sr_last_error());
    } else {
        CHECK(0, "sr_fpga_program_layout: %s", sr_last_error());
    }
    runner_close(&cpu);
    runner_close(&tok);
    runner_close(&lay);
    for (int i = 0; i < m.n_owned; i++) free(m.owned[i]);
    printf("spk_token_tb: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
