// spikerun-fpga.c - the v1 host program on the VCK190's Cortex-A72 (PetaLinux, edge XRT).
//
// A small C driver over csrc/fpga (the same backend the Swift library uses), cross-built with
// the Vitis aarch64 toolchain against the common image's sysroot (firmware/Makefile `host`).
// It does what a first board session needs; full text generation stays with the Swift CLI
// until a Swift toolchain for aarch64 PetaLinux is set up.
//
//   spikerun-fpga --xclbin F --self-test [--model M.gguf]
//       every format and encoding, random and (with --model) SmolLM2 layer-0 weights, compared
//       bit for bit with the CPU kernels (sr_spike_matvec) on the A72; exit 1 on a mismatch
//   spikerun-fpga --xclbin F --bench [--model M.gguf] [--tokens N] [--ctx C]
//       launch latency (one tiny job), read bandwidth per weight port, and a decode-shaped
//       token loop (4 runs per block + 1 for the head, SmolLM2-135M shape, random Q4_1 or the
//       model's weights) with the weight-streaming prediction (docs/fpga-v2-model.md) printed next to each measurement
//
// Build here (x86, for the noop shim): cc -std=c11 -O2 -D_GNU_SOURCE -Iinclude
//   firmware/host/spikerun-fpga.c csrc/fpga/*.c csrc/spike/*.c csrc/core/sr-status.c -ldl -lpthread -lm
// With -DSPIKERUN_FPGA_EMULATE and firmware/kernels/spk_acc.cpp linked in, a run hook
// executes the C-simulation kernel, so the self test also passes under XRT's noop shim.
#include "spikerun/sr-fpga.h"
#include "spikerun/sr-spike.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef SPIKERUN_FPGA_EMULATE
#include "../../csrc/fpga/sr-fpga-internal.h"
void spk_acc(const void *, const void *, const void *, const void *, const void *, void *, unsigned int,
             unsigned int);
static void emulate(void *u, void *const b[6], uint32_t first, uint32_t n) {
    (void)u;
    spk_acc(b[0], b[1], b[2], b[3], b[4], b[5], first, n);
}
#endif

static uint64_t g_rng = 0x243F6A8885A308D3ull;
static uint64_t rnd(void) {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 0x2545F4914F6CDD1Dull;
}
static float rnd_unit(void) { return (float)((rnd() >> 40) * (1.0 / 16777216.0)); }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int die(const char *what) {
    fprintf(stderr, "spikerun-fpga: error: %s: %s\n", what, sr_last_error());
    return 1;
}

// ---------------------------------------------------------------------------------------
// Weights and activations.

static sr_status random_weights(sr_spike_weights *w, int fmt, int32_t n_out, int32_t n_in) {
    const size_t nb = (size_t)n_in / 32, n = (size_t)n_out * nb;
    sr_status s = SR_OK;
    if (fmt == SR_SPIKE_W_Q4_1 || fmt == SR_SPIKE_W_Q8_0) {
        const size_t bb = fmt == SR_SPIKE_W_Q4_1 ? 20 : 34;
        uint8_t *b = malloc(n * bb);
        if (!b) return sr_fail(SR_ERR_NO_MEMORY, "out of memory");
        for (size_t k = 0; k < n; k++) {
            uint8_t *p = b + bb * k;
            uint16_t d = (uint16_t)(0x1000 + rnd() % 0x1800), m = (uint16_t)(0x9000 + rnd() % 0x1800);
            p[0] = (uint8_t)d, p[1] = (uint8_t)(d >> 8);
            size_t q0 = 2;
            if (fmt == SR_SPIKE_W_Q4_1) p[2] = (uint8_t)m, p[3] = (uint8_t)(m >> 8), q0 = 4;
            for (size_t i = q0; i < bb; i++) p[i] = (uint8_t)rnd();
        }
        s = fmt == SR_SPIKE_W_Q4_1 ? sr_spike_weights_pack_q4_1(w, b, n_out, n_in)
                                   : sr_spike_weights_pack_q8_0(w, b, n_out, n_in);
        free(b);
    } else {
        int8_t *c = malloc((size_t)n_out * (size_t)n_in);
        float *rs = malloc((size_t)n_out * sizeof *rs);
        if (!c || !rs) {
            free(c);
            free(rs);
            return sr_fail(SR_ERR_NO_MEMORY, "out of memory");
        }
        for (size_t k = 0; k < (size_t)n_out * (size_t)n_in; k++)
            c[k] = (int8_t)(fmt == SR_SPIKE_W_TERNARY ? (int)(rnd() % 3) - 1 : (int)(rnd() % 255) - 127);
        for (int32_t r = 0; r < n_out; r++) rs[r] = 0.001f + 0.01f * rnd_unit();
        s = fmt == SR_SPIKE_W_TERNARY ? sr_spike_weights_pack_ternary(w, c, rs, n_out, n_in)
                                      : sr_spike_weights_pack_i8(w, c, rs, n_out, n_in);
        free(c);
        free(rs);
    }
    if (s == SR_OK) s = sr_spike_weights_add_row_sums(w);
    return s;
}

// An RMSNorm-like activation (a few large channels), encoded as the runtime does.
static sr_status activation(sr_spike_planes *x, int32_t n, int enc, int rule) {
    float *v = malloc((size_t)n * sizeof *v);
    int32_t *counts = malloc((size_t)n * sizeof *counts);
    float *scales = malloc((size_t)n * sizeof *scales);
    sr_status s = (!v || !counts || !scales) ? sr_fail(SR_ERR_NO_MEMORY, "out of memory") : SR_OK;
    int32_t group = 0;
    if (s == SR_OK) {
        for (int32_t j = 0; j < n; j++) v[j] = (rnd_unit() - 0.5f) * 2.0f * (0.3f + rnd_unit());
        for (int k = 0; k < 4; k++) v[rnd() % (uint64_t)n] *= 30.0f;
        if (rule == 0) {
            s = sr_spike_encode_mean(v, n, 2.0f, counts, scales);
        } else {
            sr_spike_max_params p = sr_spike_max_default_params(enc == SR_SPIKE_TERNARY || enc == SR_SPIKE_BINARY ? 4 : 8);
            p.group = group = rule == 2 ? 32 : 0;
            s = sr_spike_encode_max(v, n, &p, counts, scales);
        }
    }
    if (s == SR_OK) {
        int32_t z = 0;
        if (enc == SR_SPIKE_BINARY) {
            for (int32_t j = 0; j < n; j++) if (-counts[j] > z) z = -counts[j];
        }
        int32_t T = sr_spike_min_planes(counts, n, (sr_spike_encoding)enc, z);
        if (T < 1 || T > 16) {
            s = sr_fail(SR_ERR_UNSUPPORTED, "activation needs %d planes", T);
        } else {
            if (!x->mem) s = sr_spike_planes_init(x, n, 16);
            if (s == SR_OK)
                s = sr_spike_planes_from_counts(x, counts, n, (sr_spike_encoding)enc, T, z, scales, group);
        }
    }
    free(v);
    free(counts);
    free(scales);
    return s;
}

// Rows of a Q4_1/Q8_0 tensor of a GGUF file (v2/v3), or -1.
static int gguf_tensor(const char *path, const char *name, int32_t *type, int32_t *n_in, int32_t *n_out,
                       uint8_t **data) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    char magic[4];
    uint32_t ver;
    uint64_t nt, nkv, alignment = 32;
    int ok = fread(magic, 1, 4, f) == 4 && !memcmp(magic, "GGUF", 4) && fread(&ver, 4, 1, f) == 1 &&
             fread(&nt, 8, 1, f) == 1 && fread(&nkv, 8, 1, f) == 1;
    static const int sz[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    for (uint64_t i = 0; ok && i < nkv; i++) {
        uint64_t len;
        uint32_t ty;
        char key[128] = {0};
        ok = fread(&len, 8, 1, f) == 1;
        if (ok && len < sizeof key) ok = fread(key, 1, len, f) == len;
        else if (ok) ok = fseek(f, (long)len, SEEK_CUR) == 0;
        ok = ok && fread(&ty, 4, 1, f) == 1;
        if (!ok) break;
        if (ty == 8) {
            ok = fread(&len, 8, 1, f) == 1 && fseek(f, (long)len, SEEK_CUR) == 0;
        } else if (ty == 9) {
            uint32_t et;
            uint64_t n;
            ok = fread(&et, 4, 1, f) == 1 && fread(&n, 8, 1, f) == 1;
            for (uint64_t k = 0; ok && k < n; k++) {
                if (et == 8) ok = fread(&len, 8, 1, f) == 1 && fseek(f, (long)len, SEEK_CUR) == 0;
                else ok = et < 13 && et != 9 && fseek(f, sz[et], SEEK_CUR) == 0;
            }
        } else if (ty < 13) {
            if (!strcmp(key, "general.alignment") && ty == 4) {
                uint32_t a;
                ok = fread(&a, 4, 1, f) == 1;
                alignment = a;
            } else {
                ok = fseek(f, sz[ty], SEEK_CUR) == 0;
            }
        } else {
            ok = 0;
        }
    }
    uint64_t off = 0, ne0 = 0, ne1 = 0;
    uint32_t tty = 0;
    int found = 0;
    for (uint64_t i = 0; ok && i < nt; i++) {
        uint64_t len, ne[4] = {1, 1, 1, 1}, o;
        uint32_t nd, ty;
        char nm[256];
        ok = fread(&len, 8, 1, f) == 1 && len < sizeof nm && fread(nm, 1, len, f) == len;
        if (!ok) break;
        nm[len] = 0;
        ok = fread(&nd, 4, 1, f) == 1 && nd <= 4;
        for (uint32_t k = 0; ok && k < nd; k++) ok = fread(&ne[k], 8, 1, f) == 1;
        ok = ok && fread(&ty, 4, 1, f) == 1 && fread(&o, 8, 1, f) == 1;
        if (ok && !strcmp(nm, name)) found = 1, off = o, ne0 = ne[0], ne1 = ne[1], tty = ty;
    }
    if (!ok || !found || (tty != 3 && tty != 8)) {
        fclose(f);
        return -1;
    }
    uint64_t start = ((uint64_t)ftell(f) + alignment - 1) / alignment * alignment;
    size_t bytes = (size_t)ne1 * (size_t)(ne0 / 32) * (tty == 3 ? 20 : 34);
    *data = malloc(bytes);
    ok = *data && fseek(f, (long)(start + off), SEEK_SET) == 0 && fread(*data, 1, bytes, f) == bytes;
    fclose(f);
    if (!ok) {
        free(*data);
        return -1;
    }
    *type = (int32_t)tty, *n_in = (int32_t)ne0, *n_out = (int32_t)ne1;
    return 0;
}

static sr_status model_weights(sr_spike_weights *w, const char *model, const char *name) {
    int32_t ty, ni, no;
    uint8_t *raw = NULL;
    if (gguf_tensor(model, name, &ty, &ni, &no, &raw) != 0)
        return sr_fail(SR_ERR_FORMAT, "cannot read Q4_1/Q8_0 tensor %s from %s", name, model);
    sr_status s = ty == 3 ? sr_spike_weights_pack_q4_1(w, raw, no, ni) : sr_spike_weights_pack_q8_0(w, raw, no, ni);
    free(raw);
    if (s == SR_OK) s = sr_spike_weights_add_row_sums(w);  // for the binary code
    return s;
}

static sr_fpga *open_fpga(const char *xclbin, uint32_t timeout_ms) {
    sr_fpga_params p = sr_fpga_default_params();
    p.xclbin_path = xclbin;
    p.timeout_ms = timeout_ms;
    sr_fpga *f = NULL;
    if (sr_fpga_open(&p, &f) != SR_OK) return NULL;
#ifdef SPIKERUN_FPGA_EMULATE
    sr_fpga_set_run_hook(f, emulate, NULL);
#endif
    return f;
}

// ---------------------------------------------------------------------------------------
// Self test.

static int self_test(const char *xclbin, const char *model) {
    static const char *const fmt_name[4] = {"Q4_1", "Q8_0", "I8_ROW", "TERNARY"};
    static const char *const enc_name[4] = {"sign-magnitude", "twos-complement", "ternary", "binary"};
    int pass = 0, fail = 0;
    enum { NW = 8 };
    sr_spike_weights w[NW + 7];
    memset(w, 0, sizeof w);
    const char *names[NW + 7];
    int nw = 0;
    for (int fmt = 0; fmt < 4; fmt++) {  // two shapes per format: partial tiles, several chunks
        if (random_weights(&w[nw], fmt, 300 + 37 * fmt, 576) != SR_OK) return die("weights");
        names[nw++] = fmt_name[fmt];
        if (random_weights(&w[nw], fmt, 1000, 1536) != SR_OK) return die("weights");
        names[nw++] = fmt_name[fmt];
    }
    static const char *const layer0[7] = {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight",
                                          "blk.0.attn_output.weight", "blk.0.ffn_gate.weight",
                                          "blk.0.ffn_up.weight", "blk.0.ffn_down.weight"};
    if (model) {
        for (int i = 0; i < 7; i++) {
            if (model_weights(&w[nw], model, layer0[i]) != SR_OK) return die("model weights");
            names[nw++] = layer0[i];
        }
    }
    sr_fpga *f = open_fpga(xclbin, 10000);
    if (!f) return die("open");
    sr_fpga_matrix m[NW + 7];
    for (int i = 0; i < nw; i++) m[i].w = &w[i], m[i].input_slot = w[i].n_in == 576 ? 0 : 1;
    if (sr_fpga_upload_weights(f, m, nw) != SR_OK) return die("upload");
    float *y = malloc(sizeof(float) * 8192), *ref = malloc(sizeof(float) * 8192);
    sr_spike_planes x[2];
    memset(x, 0, sizeof x);
    for (int enc = 0; enc < 4; enc++) {
        for (int rule = 0; rule < 3; rule++) {
            if (rule == 0 && enc != SR_SPIKE_SIGN_MAGNITUDE) continue;  // the mean rule is sign-magnitude
            for (int k = 0; k < 2; k++)
                if (activation(&x[k], k ? 1536 : 576, enc, rule) != SR_OK) return die("activation");
            for (int i = 0; i < nw; i++) {
                sr_fpga_input in = {m[i].input_slot, &x[m[i].input_slot]};
                sr_status s = sr_fpga_step(f, i, 1, &in, 1, y);
                sr_status c = sr_spike_matvec(&w[i], in.x, 0, w[i].n_out, ref, NULL, NULL);
                int ok = s == c && (s != SR_OK || memcmp(y, ref, sizeof(float) * (size_t)w[i].n_out) == 0);
                if (ok) {
                    pass++;
                } else {
                    fail++;
                    printf("FAIL %s %dx%d, %s, rule %d, T=%d: fpga %d cpu %d %s\n", names[i], w[i].n_out, w[i].n_in,
                           enc_name[enc], rule, in.x->T, s, c, s != SR_OK ? sr_last_error() : "(outputs differ)");
                }
            }
        }
    }
    // one run over several jobs: all 576-input matrices read slot 0
    if (activation(&x[0], 576, SR_SPIKE_SIGN_MAGNITUDE, 0) != SR_OK) return die("activation");
    sr_fpga_input in0 = {0, &x[0]};
    if (sr_fpga_step(f, 0, 1, &in0, 1, y) == SR_OK) pass++;
    sr_fpga_stats st;
    sr_fpga_get_stats(f, &st);
    printf("self-test: %d passed, %d failed (%llu runs, %.3f s in runs, platform %s)\n", pass, fail,
           (unsigned long long)st.runs, st.seconds_in_runs, sr_fpga_platform(f));
    sr_fpga_close(f);
    for (int i = 0; i < nw; i++) sr_spike_weights_free(&w[i]);
    sr_spike_planes_free(&x[0]);
    sr_spike_planes_free(&x[1]);
    free(y);
    free(ref);
    return fail ? 1 : 0;
}

// ---------------------------------------------------------------------------------------
// Bench.

// Weight-streaming bound (docs/fpga-v2-model.md, memory-bound part): predicted tok/s for n_w weights at `bits`.
static double predict(double n_w, double bits, double bw, double n_launch, double t_launch, double other_s) {
    double t_mem = n_w * bits / 8 / (0.8 * bw);
    return 1.0 / (t_mem + n_launch * t_launch + other_s);
}

static int bench(const char *xclbin, const char *model, int tokens) {
    // 1. launch latency: a run of one tiny job (64 rows x 32 inputs, Q8_0)
    sr_fpga *f = open_fpga(xclbin, 10000);
    if (!f) return die("open");
    sr_spike_weights tiny;
    memset(&tiny, 0, sizeof tiny);
    if (random_weights(&tiny, SR_SPIKE_W_Q8_0, 64, 32) != SR_OK) return die("weights");
    sr_fpga_matrix mt = {&tiny, 0};
    if (sr_fpga_upload_weights(f, &mt, 1) != SR_OK) return die("upload");
    sr_spike_planes xt;
    memset(&xt, 0, sizeof xt);
    if (activation(&xt, 32, SR_SPIKE_SIGN_MAGNITUDE, 1) != SR_OK) return die("activation");
    float y[64];
    sr_fpga_input it = {0, &xt};
    double best = 1e9, sum = 0;
    const int reps = 200;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        if (sr_fpga_step(f, 0, 1, &it, 1, y) != SR_OK) return die("step");
        double dt = now_s() - t0;
        sum += dt;
        if (dt < best) best = dt;
    }
    const double t_launch = sum / reps;
    printf("launch: one tiny run (sync in, start, wait, sync out): mean %.1f us, best %.1f us over %d\n",
           t_launch * 1e6, best * 1e6, reps);
    sr_fpga_close(f);
    sr_spike_weights_free(&tiny);

    // 2. read bandwidth per port: one 8192 x 8192 Q4_1 matrix (40 MiB) on one port at a time
    static const float shares[4][3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}, {0.45f, 0.275f, 0.275f}};
    static const char *const port_name[4] = {"w0 (DDR4)", "w1 (LPDDR4)", "w2 (LPDDR4)", "all three"};
    sr_spike_weights big;
    memset(&big, 0, sizeof big);
    if (random_weights(&big, SR_SPIKE_W_Q4_1, 8192, 8192) != SR_OK) return die("weights");
    sr_spike_planes xb;
    memset(&xb, 0, sizeof xb);
    if (activation(&xb, 8192, SR_SPIKE_SIGN_MAGNITUDE, 0) != SR_OK) return die("activation");
    float *yb = malloc(sizeof(float) * 8192);
    for (int k = 0; k < 4; k++) {
        sr_fpga_params p = sr_fpga_default_params();
        p.xclbin_path = xclbin;
        memcpy(p.port_share, shares[k], sizeof p.port_share);
        sr_fpga *g = NULL;
        if (sr_fpga_open(&p, &g) != SR_OK) return die("open");
#ifdef SPIKERUN_FPGA_EMULATE
        sr_fpga_set_run_hook(g, emulate, NULL);
#endif
        sr_fpga_matrix mb = {&big, 0};
        if (sr_fpga_upload_weights(g, &mb, 1) != SR_OK) return die("upload");
        sr_fpga_input ib = {0, &xb};
        double t0 = now_s();
        const int n = 5;
        for (int r = 0; r < n; r++)
            if (sr_fpga_step(g, 0, 1, &ib, 1, yb) != SR_OK) return die("step");
        double dt = (now_s() - t0) / n;
        sr_fpga_stats st;
        sr_fpga_get_stats(g, &st);
        double bytes = (double)(st.weight_bytes[0] + st.weight_bytes[1] + st.weight_bytes[2]);
        printf("bandwidth: %-12s %.1f MiB in %.3f ms = %.2f GB/s\n", port_name[k], bytes / 1048576.0, dt * 1e3,
               bytes / dt / 1e9);
        sr_fpga_close(g);
    }
    free(yb);
    sr_spike_weights_free(&big);
    sr_spike_planes_free(&xb);

    // 3. decode-shaped loop: SmolLM2-135M's linear layers (30 blocks + head), 4 runs per block
    const int L = 30, d = 576, ff = 1536, kv = 192, vocab = 49152;
    const int nm = 7 * L + 1;
    sr_spike_weights *w = calloc((size_t)nm, sizeof *w);
    sr_fpga_matrix *m = calloc((size_t)nm, sizeof *m);
    if (!w || !m) return die("memory");
    static const char *const tn[7] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    const int rows[7] = {d, kv, kv, d, ff, ff, d}, cols[7] = {d, d, d, d, d, d, ff}, slot[7] = {0, 0, 0, 1, 2, 2, 3};
    for (int l = 0; l < L; l++)
        for (int k = 0; k < 7; k++) {
            int i = 7 * l + k;
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, tn[k]);
            sr_status s = model ? model_weights(&w[i], model, name) : random_weights(&w[i], SR_SPIKE_W_Q4_1, rows[k], cols[k]);
            if (s != SR_OK) return die(name);
            m[i].w = &w[i];
            m[i].input_slot = 4 * l + slot[k];
        }
    sr_status s = model ? model_weights(&w[nm - 1], model, "token_embd.weight")
                        : random_weights(&w[nm - 1], SR_SPIKE_W_Q8_0, vocab, d);
    if (s != SR_OK) return die("head");
    m[nm - 1].w = &w[nm - 1];
    m[nm - 1].input_slot = 4 * L;
    f = open_fpga(xclbin, 10000);
    if (!f) return die("open");
    double t0 = now_s();
    if (sr_fpga_upload_weights(f, m, nm) != SR_OK) return die("upload");
    sr_fpga_stats st;
    sr_fpga_get_stats(f, &st);
    const double wbytes = (double)(st.weight_bytes[0] + st.weight_bytes[1] + st.weight_bytes[2]);
    printf("decode: uploaded %d matrices, %.1f MiB (w0 %.1f, w1 %.1f, w2 %.1f) in %.2f s\n", nm, wbytes / 1048576.0,
           st.weight_bytes[0] / 1048576.0, st.weight_bytes[1] / 1048576.0, st.weight_bytes[2] / 1048576.0,
           now_s() - t0);
    sr_spike_planes xd, xf;
    memset(&xd, 0, sizeof xd);
    memset(&xf, 0, sizeof xf);
    if (activation(&xd, d, SR_SPIKE_SIGN_MAGNITUDE, 0) != SR_OK || activation(&xf, ff, SR_SPIKE_SIGN_MAGNITUDE, 0) != SR_OK)
        return die("activation");
    float *yy = malloc(sizeof(float) * (size_t)vocab);
    const int groups[4][2] = {{0, 3}, {3, 1}, {4, 2}, {6, 1}};
    double tok_t = 0;
    for (int t = 0; t < tokens; t++) {
        double ts = now_s();
        for (int l = 0; l < L; l++)
            for (int g = 0; g < 4; g++) {
                sr_fpga_input in = {4 * l + (g == 0 ? 0 : g), g == 3 ? &xf : &xd};
                if (sr_fpga_step(f, 7 * l + groups[g][0], groups[g][1], &in, 1, yy) != SR_OK) return die("step");
            }
        sr_fpga_input ih = {4 * L, &xd};
        if (sr_fpga_step(f, nm - 1, 1, &ih, 1, yy) != SR_OK) return die("head step");
        tok_t += now_s() - ts;
    }
    sr_fpga_get_stats(f, &st);
    const double measured = tokens / tok_t;
    const double n_w = 134.5e6, launches = 4.0 * L + 1;
    printf("decode: %d tokens, %.2f ms/token = %.1f tok/s (PL linear layers only; %llu runs, %.1f KiB in + %.1f KiB out per token)\n",
           tokens, tok_t / tokens * 1e3, measured, (unsigned long long)st.runs,
           st.bytes_to_device / 1024.0 / tokens, st.bytes_from_device / 1024.0 / tokens);
    printf("model:  weight streaming (docs/fpga-v2-model.md) at 5 bits/weight, η 0.8, both memories: %.0f tok/s without launches, "
           "%.0f tok/s with %d launches x %.1f us (measured above)\n",
           predict(n_w, 5, 56.85e9, 0, 0, 0), predict(n_w, 5, 56.85e9, launches, t_launch, 0), (int)launches,
           t_launch * 1e6);
    sr_fpga_close(f);
    for (int i = 0; i < nm; i++) sr_spike_weights_free(&w[i]);
    free(w);
    free(m);
    free(yy);
    sr_spike_planes_free(&xd);
    sr_spike_planes_free(&xf);
    return 0;
}

int main(int argc, char **argv) {
    const char *xclbin = NULL, *model = NULL;
    int do_self = 0, do_bench = 0, tokens = 16;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--xclbin") && i + 1 < argc) xclbin = argv[++i];
        else if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--tokens") && i + 1 < argc) tokens = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--self-test")) do_self = 1;
        else if (!strcmp(argv[i], "--bench")) do_bench = 1;
        else {
            fprintf(stderr, "usage: spikerun-fpga --xclbin F (--self-test | --bench) [--model M.gguf] [--tokens N]\n");
            return 64;
        }
    }
    if (!xclbin || (!do_self && !do_bench) || tokens < 1) {
        fprintf(stderr, "usage: spikerun-fpga --xclbin F (--self-test | --bench) [--model M.gguf] [--tokens N]\n");
        return 64;
    }
    if (sr_fpga_probe() != SR_OK) return die("FPGA backend");
    int rc = 0;
    if (do_self) rc |= self_test(xclbin, model);
    if (do_bench) rc |= bench(xclbin, model, tokens);
    return rc;
}
