// sr-model-bench.c - the C runtime alone on a GGUF model: llama-bench style pp/tg timing of the
// dense path or the spike path (mean rule with k at every site, as `--spike-preview k`), a
// bit-exact checksum of the logits (to compare thread counts / NUMA layouts), and a per-token
// split of decode time by kernel family. No Swift, no tokenizer: random token ids.
//
// Build (bench/Makefile): make -C bench model-bench
// Run:   bench/build/sr-model-bench -m models/SmolLM2-135M-Instruct.Q4_1.gguf -t 2 -p 64,512 -n 128
//        ... --spike 8          spike path, k = 8
//        ... --numa distribute  (isolate | numactl | off), --fake-numa 4
//        ... --check            print the logits checksum of a fixed prompt + 16 decode steps
//        ... --tokens 1,2,3     print the top-10 logits after these ids; with --dump FILE also
//                               write every tap (block inputs, site inputs) and all logits rows
//                               for tools/fixtures/compare_layers.py
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "spikerun/sr-engine.h"
#ifndef SR_BENCH_BASELINE  // SR_BENCH_BASELINE: builds against an older tree without sr-numa.h
#include "spikerun/sr-numa.h"
#endif
#include "spikerun/sr-pool.h"
#include "spikerun/sr-quant.h"
#include "spikerun/sr-spike-net.h"
#include "sr-gguf-mini.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// CPU seconds of the whole process (all threads): on a loaded machine tokens / CPU second of a
// one-thread run estimates the unloaded speed better than the wall clock.
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static uint64_t rng_state = 42;
static uint64_t rng_next(void) {  // splitmix64
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void die(const char *what) {
    fprintf(stderr, "sr-model-bench: %s: %s\n", what, sr_last_error());
    exit(1);
}

static sr_linear lin(const gm_file *f, const char *name) {
    const gm_tensor *t = gm_find(f, name);
    if (!t) { fprintf(stderr, "sr-model-bench: tensor '%s' missing\n", name); exit(1); }
    sr_linear l = {t->data, (int32_t)t->type, (int32_t)t->dims[0], (int32_t)t->dims[1]};
    return l;
}

static const float *vec(const gm_file *f, const char *name) {
    const gm_tensor *t = gm_find(f, name);
    if (!t || t->type != 0) { fprintf(stderr, "sr-model-bench: F32 tensor '%s' missing\n", name); exit(1); }
    return t->data;
}

// Recorder: silent inputs (count 0) and silent 32-blocks per site, for the skipping report.
static uint64_t rec_inputs[5], rec_zero[5], rec_blocks[5], rec_zero_blocks[5];
static void recorder(void *user, int32_t layer, int32_t site, const int32_t *counts, int32_t n, int32_t T,
                     int32_t encoding) {
    (void)user; (void)layer; (void)T; (void)encoding;
    if (site < 0 || site > 4) return;
    rec_inputs[site] += (uint64_t)n;
    for (int32_t b = 0; b < n; b += 32) {
        int z = 0;
        for (int32_t j = b; j < b + 32 && j < n; j++) z += counts[j] == 0;
        rec_zero[site] += (uint64_t)z;
        rec_blocks[site]++;
        rec_zero_blocks[site] += z == (n - b < 32 ? n - b : 32);
    }
}

// Output: one human line per test, or (--json) one object like spikerun bench --json's.
// --dump: records of int32 {layer, point, n_tok, dim} then n_tok*dim floats (logits: -1, 99).
static FILE *dump_file;
static void dump_tap(void *user, int32_t layer, sr_tap_point point, const float *data, int32_t n_tok, int32_t dim) {
    (void)user;
    const int32_t h[4] = {layer, (int32_t)point, n_tok, dim};
    fwrite(h, sizeof h, 1, dump_file);
    fwrite(data, sizeof(float), (size_t)n_tok * (size_t)dim, dump_file);
}

static char json_buf[1 << 16];
static size_t json_len;
static void report(const char *name, double *samples, double *csamples, int reps, int json) {
    if (json) {
        json_len += (size_t)snprintf(json_buf + json_len, sizeof json_buf - json_len, "%s{\"name\": \"%s\", \"samples\": [",
                                     json_len ? ", " : "", name);
        for (int r = 0; r < reps; r++)
            json_len += (size_t)snprintf(json_buf + json_len, sizeof json_buf - json_len, "%s%.4f", r ? ", " : "", samples[r]);
        json_len += (size_t)snprintf(json_buf + json_len, sizeof json_buf - json_len, "], \"cpu_samples\": [");
        for (int r = 0; r < reps; r++)
            json_len += (size_t)snprintf(json_buf + json_len, sizeof json_buf - json_len, "%s%.4f", r ? ", " : "", csamples[r]);
        json_len += (size_t)snprintf(json_buf + json_len, sizeof json_buf - json_len, "]}");
    }
    qsort(samples, (size_t)reps, sizeof(double), cmp_d);
    qsort(csamples, (size_t)reps, sizeof(double), cmp_d);
    fprintf(json ? stderr : stdout, "%s %.2f t/s (median of %d; min %.2f max %.2f) cpu %.2f t/cpu-s\n", name,
            samples[reps / 2], reps, samples[0], samples[reps - 1], csamples[reps / 2]);
}

static void parse_list(const char *s, int *v, int *n) {
    *n = 0;
    while (*s && *n < 8) {
        v[(*n)++] = atoi(s);
        const char *c = strchr(s, ',');
        if (!c) break;
        s = c + 1;
    }
}

int main(int argc, char **argv) {
    const char *path = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    int threads = 0, reps = 5, check = 0, fake = 0, numa = 0, numa_set = 0, json = 0;
    const char *prompt_ids = NULL;   // --tokens 1,2,3: print the top-10 logits after them
    const char *dump_path = NULL;    // --dump FILE: with --tokens, every tap and all logits
    float spike_k = 0.0f;
    int pp[8] = {512}, n_pp = 1, tg[8] = {128}, n_tg = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-m") && v) { path = v; i++; }
        else if (!strcmp(a, "-t") && v) { threads = atoi(v); i++; }
        else if (!strcmp(a, "-p") && v) { parse_list(v, pp, &n_pp); i++; }
        else if (!strcmp(a, "-n") && v) { parse_list(v, tg, &n_tg); i++; }
        else if (!strcmp(a, "-r") && v) { reps = atoi(v); i++; }
        else if (!strcmp(a, "--spike") && v) { spike_k = (float)atof(v); i++; }
        else if (!strcmp(a, "--fake-numa") && v) { fake = atoi(v); i++; }
#ifndef SR_BENCH_BASELINE
        else if (!strcmp(a, "--numa") && v) {
            if (sr_numa_policy_from_name(v, &numa) != SR_OK) die("--numa");
            numa_set = 1;
            i++;
        }
#endif
        else if (!strcmp(a, "--check")) check = 1;
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--tokens") && v) { prompt_ids = v; i++; }
        else if (!strcmp(a, "--dump") && v) { dump_path = v; i++; }
        else { fprintf(stderr, "usage: %s [-m gguf] [-t n] [-p 64,512] [-n 128] [-r 5] [--spike k] [--numa policy] [--fake-numa n] [--check] [--json] [--tokens ids [--dump file]]\n", argv[0]); return 64; }
    }
#ifndef SR_BENCH_BASELINE
    if (numa_set || fake) sr_numa_init(numa, fake);
#else
    (void)numa; (void)numa_set;
#endif

    gm_file f;
    if (gm_open(path, &f) != 0) { fprintf(stderr, "sr-model-bench: cannot read '%s'\n", path); return 1; }
    const int nl = (int)f.block_count, d = (int)f.embedding_length;
    const int hd = d / (int)f.head_count;
    int max_ctx = 16;
    for (int i = 0; i < n_pp; i++) max_ctx = pp[i] + 1 > max_ctx ? pp[i] + 1 : max_ctx;
    for (int i = 0; i < n_tg; i++) max_ctx = tg[i] + 1 > max_ctx ? tg[i] + 1 : max_ctx;
    if (check && max_ctx < 80) max_ctx = 80;
    if (prompt_ids) {
        int n = 1;
        for (const char *c = prompt_ids; *c; c++) n += *c == ',';
        if (n + 1 > max_ctx) max_ctx = n + 1;
    }
    const gm_tensor *embd = gm_find(&f, "token_embd.weight");
    const int n_vocab = (int)embd->dims[1];

    sr_block_weights *blocks = calloc((size_t)nl, sizeof *blocks);
    char name[128];
    for (int l = 0; l < nl; l++) {
#define T(s) (snprintf(name, sizeof name, "blk.%d." s ".weight", l), name)
        blocks[l].attn_norm = vec(&f, T("attn_norm"));
        blocks[l].ffn_norm = vec(&f, T("ffn_norm"));
        blocks[l].q = lin(&f, T("attn_q"));
        blocks[l].k = lin(&f, T("attn_k"));
        blocks[l].v = lin(&f, T("attn_v"));
        blocks[l].o = lin(&f, T("attn_output"));
        blocks[l].gate = lin(&f, T("ffn_gate"));
        blocks[l].up = lin(&f, T("ffn_up"));
        blocks[l].down = lin(&f, T("ffn_down"));
#undef T
    }
    sr_engine_weights w = {
        .tok_embd = embd->data, .tok_embd_type = (int32_t)embd->type,
        .output_norm = vec(&f, "output_norm.weight"),
        .output = gm_find(&f, "output.weight") ? lin(&f, "output.weight") : lin(&f, "token_embd.weight"),
        .blocks = blocks,
    };
    sr_engine_params p = {
        .n_layer = nl, .n_embd = d, .n_ff = (int32_t)f.ff_length, .n_head = (int32_t)f.head_count,
        .n_head_kv = (int32_t)f.head_count_kv, .head_dim = hd, .n_vocab = n_vocab, .n_ctx = max_ctx,
        .n_batch = 512, .rope_dim = f.rope_dim ? (int32_t)f.rope_dim : hd,
        .rope_freq_base = f.rope_freq_base > 0 ? (float)f.rope_freq_base : 10000.0f,
        .rms_eps = (float)f.rms_eps, .act_mode = SR_ACT_Q8, .n_threads = threads,
        .hooked_linears = spike_k > 0,
    };
    sr_engine *e;
    if (sr_engine_create(&p, &w, &e) != SR_OK) die("engine");
    sr_spike_net *net = NULL;
    if (spike_k > 0) {
        const int ns = nl * 4 + 1;
        sr_spike_site_cfg *sites = calloc((size_t)ns, sizeof *sites);
        for (int i = 0; i < ns; i++) {
            sites[i].rule = SR_SPIKE_RULE_MEAN;
            sites[i].encoding = SR_SPIKE_SIGN_MAGNITUDE;
            sites[i].k = spike_k;
            sites[i].gamma = 1.0f;
        }
        sr_spike_net_params sp = {
            .n_layer = nl, .n_embd = d, .n_ff = p.n_ff, .n_head = p.n_head, .n_head_kv = p.n_head_kv,
            .head_dim = hd, .n_ctx = max_ctx, .sites = sites, .q_bits = 8, .p_bits = 12,
        };
        if (sr_spike_net_create(&sp, &net) != SR_OK) die("spike net");
#ifndef SR_BENCH_BASELINE
        // the packed copy is all the spike path reads: drop the mapped original while packing
        sr_spike_net_release_sources(net, !getenv("SR_BENCH_KEEP_PAGES"));
#endif
        for (int l = 0; l <= nl; l++)
            for (int j = 0; j < SR_N_PROJ; j++) {
                if ((l == nl) != (j == SR_PROJ_HEAD)) continue;
                const sr_linear *L = l == nl ? &w.output
                    : (const sr_linear *[]){&blocks[l].q, &blocks[l].k, &blocks[l].v, &blocks[l].o,
                                            &blocks[l].gate, &blocks[l].up, &blocks[l].down}[j];
                sr_spike_format fmt = L->type == SR_TYPE_Q4_1 ? SR_SPIKE_W_Q4_1 : SR_SPIKE_W_Q8_0;
                if (sr_spike_net_set_linear(net, l, (sr_proj)j, fmt, L->w, NULL, L->n_out, L->n_in) != SR_OK)
                    die("spike weights");
            }
        if (sr_spike_net_attach(net, e) != SR_OK) die("attach");
        if (getenv("SR_BENCH_RECORD")) sr_spike_net_set_recorder(net, recorder, NULL);
        fprintf(stderr, "spike net: %.1f MiB of packed weights and buffers\n",
                (double)sr_spike_net_memory_bytes(net) / 1048576.0);
        free(sites);
    }
    sr_pool *pool = sr_engine_pool(e);
    char desc[256];
#ifndef SR_BENCH_BASELINE
    sr_pool_describe(pool, desc, sizeof desc);
#else
    snprintf(desc, sizeof desc, "%d threads (baseline tree)", sr_pool_threads(pool));
#endif
    fprintf(stderr, "model %s: %d layers, d %d, vocab %d; %s; path %s\n", path, nl, d, n_vocab, desc,
            spike_k > 0 ? "spike" : "dense");

    float *logits = malloc(sizeof(float) * (size_t)n_vocab);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)max_ctx);

    if (prompt_ids) {
        int n = 0;
        for (const char *c = prompt_ids; *c && n < max_ctx; ) {
            tok[n++] = atoi(c);
            c = strchr(c, ',');
            if (!c) break;
            c++;
        }
        if (dump_path) {
            if (!(dump_file = fopen(dump_path, "wb"))) die("--dump: cannot write the file");
            float *all = malloc(sizeof(float) * (size_t)n * (size_t)n_vocab);
            sr_engine_set_tap(e, dump_tap, NULL);
            if (!all || sr_engine_eval(e, tok, n, 0, all, true) != SR_OK) die("eval");
            sr_engine_set_tap(e, NULL, NULL);
            dump_tap(NULL, -1, (sr_tap_point)99, all, n, n_vocab);
            if (fclose(dump_file) != 0) die("--dump: write failed");
            memcpy(logits, all + (size_t)(n - 1) * (size_t)n_vocab, sizeof(float) * (size_t)n_vocab);
            free(all);
        } else if (sr_engine_eval(e, tok, n, 0, logits, false) != SR_OK) die("eval");
        for (int k = 0; k < 10; k++) {
            int best = -1;
            for (int i = 0; i < n_vocab; i++)
                if (!isnan(logits[i]) && (best < 0 || logits[i] > logits[best])) best = i;
            printf("%d %.6f\n", best, logits[best]);
            logits[best] = NAN;
        }
    }
    if (check) {
        // Fixed prompt of 64 tokens + 16 greedy decode steps; checksum of every logits row.
        rng_state = 7;
        for (int i = 0; i < 64; i++) tok[i] = (int32_t)(rng_next() % (uint64_t)n_vocab);
        uint64_t h = 1469598103934665603ull;
        if (sr_engine_eval(e, tok, 64, 0, logits, false) != SR_OK) die("eval");
        for (int s = 0; s <= 16; s++) {
            int best = 0;
            for (int i = 0; i < n_vocab; i++) {
                uint32_t u;
                memcpy(&u, &logits[i], 4);
                h = (h ^ u) * 1099511628211ull;
                if (logits[i] > logits[best]) best = i;
            }
            if (s == 16) break;
            tok[64 + s] = best;
            if (sr_engine_eval(e, &tok[64 + s], 1, 64 + s, logits, false) != SR_OK) die("eval");
        }
        printf("checksum %016llx\n", (unsigned long long)h);
    }

    double samples[64], csamples[64];
    if (reps > 64) reps = 64;
    for (int i = 0; i < n_pp; i++) {
        const int n = pp[i];
        if (n <= 0) continue;
        for (int j = 0; j < n; j++) tok[j] = (int32_t)(rng_next() % (uint64_t)n_vocab);
        if (sr_engine_eval(e, tok, n < 16 ? n : 16, 0, logits, false) != SR_OK) die("eval");  // warm-up
        for (int r = 0; r < reps; r++) {
            double t0 = now_s(), c0 = cpu_s();
            if (sr_engine_eval(e, tok, n, 0, logits, false) != SR_OK) die("eval");
            samples[r] = n / (now_s() - t0);
            csamples[r] = n / (cpu_s() - c0);
        }
        char tn[32];
        snprintf(tn, sizeof tn, "pp%d", n);
        report(tn, samples, csamples, reps, json);
    }
    for (int i = 0; i < n_tg; i++) {
        const int n = tg[i];
        if (n <= 0) continue;
        for (int j = 0; j < n; j++) tok[j] = (int32_t)(rng_next() % (uint64_t)n_vocab);
        if (sr_engine_eval(e, tok, 1, 0, logits, false) != SR_OK) die("eval");
        for (int r = 0; r < reps; r++) {
            double t0 = now_s(), c0 = cpu_s();
            for (int j = 0; j < n; j++)
                if (sr_engine_eval(e, &tok[j], 1, j, logits, false) != SR_OK) die("eval");
            samples[r] = n / (now_s() - t0);
            csamples[r] = n / (cpu_s() - c0);
        }
        char tn[32];
        snprintf(tn, sizeof tn, "tg%d", n);
        report(tn, samples, csamples, reps, json);
    }
    if (json) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        FILE *st = fopen("/proc/self/status", "r");
        long hwm = 0;
        char line[256];
        while (st && fgets(line, sizeof line, st))
            if (!strncmp(line, "VmHWM:", 6)) hwm = atol(line + 6);
        if (st) fclose(st);
        printf("{\"tool\": \"sr-model-bench\", \"mode\": \"%s\", \"spike_k\": %g, \"threads\": %d, \"pool\": \"%s\", "
               "\"peak_rss_bytes\": %ld, \"file_bytes\": %zu, \"tests\": [%s]}\n",
               spike_k > 0 ? "spike" : "dense", spike_k, sr_pool_threads(pool), desc, hwm * 1024, f.size, json_buf);
    }
    if (net) {
        uint64_t spikes = 0, acts = 0;
        for (int l = 0; l <= nl; l++)
            for (int s = 0; s < SR_N_SITES; s++) {
                sr_spike_site_stats st;
                sr_spike_net_site_stats(net, l, s, &st);
                spikes += st.spikes;
                acts += st.activations;
            }
        fprintf(stderr, "spikes per activation %.3f\n", acts ? (double)spikes / (double)acts : 0.0);
        const char *names = "AOFDH";
        for (int s = 0; s < 5; s++)
            if (rec_inputs[s])
                fprintf(stderr, "site %c: silent inputs %.2f%%, silent 32-blocks %.2f%%\n", names[s],
                        100.0 * (double)rec_zero[s] / (double)rec_inputs[s],
                        100.0 * (double)rec_zero_blocks[s] / (double)rec_blocks[s]);
    }
    sr_engine_free(e);
    sr_spike_net_free(net);
    free(blocks); free(logits); free(tok);
    return 0;
}
