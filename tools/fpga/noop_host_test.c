// noop_host_test.c - the whole FPGA host flow (csrc/fpga) under XRT's noop shim.
//
// Run by tools/fpga/run_noop_test.sh, which builds this with ASan (or runs it under
// valgrind) and passes a directory laid out as XILINX_XRT for the noop shim plus the test
// xclbin from tools/xclbin/gen_test_xclbin.c. Under noop the kernel never runs, so a run
// hook executes the C-simulation kernel (firmware/kernels/spk_acc.cpp) on the mapped
// buffers: the outputs the host reads back must then equal sr_spike_matvec bit for bit,
// which checks packing, offsets, syncs and output copying end to end.
//
//   noop_host_test --xrt-root DIR --xclbin F [--wrong-kernel-xclbin F2] [--fixture G.gguf]
//                  [--timeout-test] [--exit-open]
// --exit-open leaves the device open at exit (sr-fpga's atexit handler must close it before
// XRT's static destructors run, or the process crashes in exit).
// Prints "ok ..." / "FAIL ..." lines and "noop_host_test: N passed, M failed".
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "spikerun/sr-fpga.h"
#include "spikerun/sr-spike.h"

#include "../../csrc/fpga/sr-fpga-internal.h"
#include "../../firmware/kernels/spk_acc.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

// The C-simulation kernel (C++, extern "C"; pointers are 64-byte words).
void spk_acc(const void *w0, const void *w1, const void *w2, const void *jobs, const void *spk,
             void *out, unsigned int job_first, unsigned int n_jobs);

static int g_pass, g_fail;

#define CHECK(cond, ...)                                                                         \
    do {                                                                                         \
        if (cond) {                                                                              \
            g_pass++;                                                                            \
        } else {                                                                                 \
            g_fail++;                                                                            \
            printf("FAIL line %d: ", __LINE__);                                                  \
            printf(__VA_ARGS__);                                                                 \
            printf("\n");                                                                        \
        }                                                                                        \
    } while (0)

#define OK(what) printf("ok %s\n", what)

static uint64_t g_rng = 0x1234567887654321ull;
static uint64_t rnd(void) {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 0x2545F4914F6CDD1Dull;
}
static float rnd_unit(void) { return (float)((rnd() >> 40) * (1.0 / 16777216.0)); }

static int g_hook_calls;
static void device_hook(void *user, void *const bufs[6], uint32_t job_first, uint32_t n_jobs) {
    (void)user;
    g_hook_calls++;
    spk_acc(bufs[0], bufs[1], bufs[2], bufs[3], bufs[4], bufs[5], job_first, n_jobs);
}

static void must(sr_status s, const char *what) {
    if (s != SR_OK) {
        printf("FAIL setup: %s: %s\n", what, sr_last_error());
        exit(1);
    }
}

// ---------------------------------------------------------------------------------------
// Weights and inputs.

static void q4_1_random(sr_spike_weights *w, int32_t n_out, int32_t n_in) {
    size_t nb = (size_t)n_in / 32, n = (size_t)n_out * nb;
    uint8_t *b = malloc(n * 20);
    for (size_t k = 0; k < n; k++) {
        uint8_t *p = b + 20 * k;
        uint16_t d = (uint16_t)(0x1000 + rnd() % 0x1800), m = (uint16_t)(0x9000 + rnd() % 0x1800);
        p[0] = (uint8_t)d, p[1] = (uint8_t)(d >> 8), p[2] = (uint8_t)m, p[3] = (uint8_t)(m >> 8);
        for (int i = 0; i < 16; i++) p[4 + i] = (uint8_t)rnd();
    }
    must(sr_spike_weights_pack_q4_1(w, b, n_out, n_in), "pack q4_1");
    free(b);
}

static void q8_0_random(sr_spike_weights *w, int32_t n_out, int32_t n_in) {
    size_t nb = (size_t)n_in / 32, n = (size_t)n_out * nb;
    uint8_t *b = malloc(n * 34);
    for (size_t k = 0; k < n; k++) {
        uint8_t *p = b + 34 * k;
        uint16_t d = (uint16_t)(0x1000 + rnd() % 0x1800);
        p[0] = (uint8_t)d, p[1] = (uint8_t)(d >> 8);
        for (int i = 0; i < 32; i++) p[2 + i] = (uint8_t)rnd();
    }
    must(sr_spike_weights_pack_q8_0(w, b, n_out, n_in), "pack q8_0");
    free(b);
}

static void rows_random(sr_spike_weights *w, int ternary, int32_t n_out, int32_t n_in) {
    int8_t *c = malloc((size_t)n_out * (size_t)n_in);
    float *s = malloc((size_t)n_out * sizeof *s);
    for (size_t k = 0; k < (size_t)n_out * (size_t)n_in; k++)
        c[k] = (int8_t)(ternary ? (int)(rnd() % 3) - 1 : (int)(rnd() % 255) - 127);
    for (int32_t r = 0; r < n_out; r++) s[r] = 0.001f + 0.01f * rnd_unit();
    if (ternary)
        must(sr_spike_weights_pack_ternary(w, c, s, n_out, n_in), "pack ternary");
    else
        must(sr_spike_weights_pack_i8(w, c, s, n_out, n_in), "pack i8");
    free(c);
    free(s);
}

static void activation(sr_spike_planes *x, int32_t n, int mean_rule) {
    float *v = malloc((size_t)n * sizeof *v);
    int32_t *counts = malloc((size_t)n * sizeof *counts);
    for (int32_t j = 0; j < n; j++) v[j] = (rnd_unit() - 0.5f) * (j % 97 == 0 ? 40.0f : 2.0f);
    float scale[1024];
    if (mean_rule) {
        must(sr_spike_encode_mean(v, n, 2.0f, counts, scale), "encode mean");
    } else {
        sr_spike_max_params p = sr_spike_max_default_params(8);
        must(sr_spike_encode_max(v, n, &p, counts, scale), "encode max");
    }
    int32_t T = sr_spike_min_planes(counts, n, SR_SPIKE_SIGN_MAGNITUDE, 0);
    if (!x->mem) must(sr_spike_planes_init(x, n, 16), "planes init");
    must(sr_spike_planes_from_counts(x, counts, n, SR_SPIKE_SIGN_MAGNITUDE, T, 0, scale, 0), "planes");
    free(v);
    free(counts);
}

// Reads the first rows of a Q4_1/Q8_0 tensor from a GGUF (enough of a reader for the fixture).
static int gguf_rows(const char *path, const char *name, int32_t *type, int32_t *n_in, int32_t *n_out,
                     uint8_t **data) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    char magic[4];
    uint32_t ver;
    uint64_t nt, nkv;
    int ok = fread(magic, 1, 4, f) == 4 && !memcmp(magic, "GGUF", 4) && fread(&ver, 4, 1, f) == 1 &&
             fread(&nt, 8, 1, f) == 1 && fread(&nkv, 8, 1, f) == 1;
    for (uint64_t i = 0; ok && i < nkv; i++) {  // the fixture has string keys/values only
        uint64_t len;
        uint32_t ty;
        ok = fread(&len, 8, 1, f) == 1 && fseek(f, (long)len, SEEK_CUR) == 0 && fread(&ty, 4, 1, f) == 1;
        if (ok && ty == 8) ok = fread(&len, 8, 1, f) == 1 && fseek(f, (long)len, SEEK_CUR) == 0;
        else if (ok && ty == 4) ok = fseek(f, 4, SEEK_CUR) == 0;
        else ok = 0;
    }
    uint64_t off = 0, found = 0, ne0 = 0, ne1 = 0;
    uint32_t tty = 0;
    for (uint64_t i = 0; ok && i < nt; i++) {
        uint64_t len, ne[4] = {1, 1, 1, 1}, o;
        uint32_t nd, ty;
        char nm[256];
        ok = fread(&len, 8, 1, f) == 1 && len < sizeof nm && fread(nm, 1, len, f) == len;
        if (!ok) break;
        nm[len] = 0;
        ok = fread(&nd, 4, 1, f) == 1 && nd <= 4;
        for (uint32_t d = 0; ok && d < nd; d++) ok = fread(&ne[d], 8, 1, f) == 1;
        ok = ok && fread(&ty, 4, 1, f) == 1 && fread(&o, 8, 1, f) == 1;
        if (ok && !strcmp(nm, name)) {
            found = 1, off = o, ne0 = ne[0], ne1 = ne[1], tty = ty;
        }
    }
    if (!ok || !found) {
        fclose(f);
        return -1;
    }
    long pos = ftell(f);
    uint64_t data_start = ((uint64_t)pos + 31) / 32 * 32;
    size_t bytes = (size_t)ne1 * (size_t)ne0 / 32 * (tty == 3 ? 20 : 34);
    *data = malloc(bytes);
    ok = fseek(f, (long)(data_start + off), SEEK_SET) == 0 && fread(*data, 1, bytes, f) == bytes;
    fclose(f);
    *type = (int32_t)tty, *n_in = (int32_t)ne0, *n_out = (int32_t)ne1;
    return ok ? 0 : -1;
}

// ---------------------------------------------------------------------------------------

static int bits_equal(const float *a, const float *b, int64_t n, int64_t *first_bad) {
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], 4) != 0) {
            *first_bad = i;
            return 0;
        }
    return 1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void guard_tests(const char *xrt_root, const char *xclbin) {
    // XRT would abort the process in each of these; spikerun must refuse instead.
    sr_fpga_params p = sr_fpga_default_params();
    p.xclbin_path = xclbin;
    sr_fpga *f = NULL;
    unsetenv("XILINX_XRT");
    unsetenv("XCL_EMULATION_MODE");
    sr_status s = sr_fpga_probe();
    CHECK(s == SR_ERR_NO_DEVICE && strstr(sr_last_error(), "XILINX_XRT is unset"),
          "probe without XILINX_XRT: %d '%s'", s, sr_last_error());
    s = sr_fpga_open(&p, &f);
    CHECK(s == SR_ERR_NO_DEVICE && f == NULL, "open without XILINX_XRT: %d", s);
    int32_t nd = -1;
    s = sr_fpga_list_devices(NULL, 0, &nd);
    CHECK(s == SR_ERR_NO_DEVICE && nd == 0, "list without XILINX_XRT: %d", s);
    printf("ok refused without XILINX_XRT: %s\n", sr_last_error());
    setenv("XILINX_XRT", "/usr", 1);  // Debian's layout: lib/x86_64-linux-gnu, no lib/libxrt_core.so.2
    s = sr_fpga_probe();
    CHECK(s == SR_ERR_NO_DEVICE && strstr(sr_last_error(), "lib/libxrt_core.so.2"),
          "probe with XILINX_XRT=/usr: %d '%s'", s, sr_last_error());
    printf("ok refused XILINX_XRT=/usr: %s\n", sr_last_error());
    setenv("XILINX_XRT", "/nonexistent/xrt", 1);
    s = sr_fpga_open(&p, &f);
    CHECK(s == SR_ERR_NO_DEVICE && strstr(sr_last_error(), "not a directory"), "bad dir: '%s'", sr_last_error());
    setenv("XILINX_XRT", xrt_root, 1);
    setenv("XCL_EMULATION_MODE", "bogus", 1);
    s = sr_fpga_probe();
    CHECK(s == SR_ERR_NO_DEVICE && strstr(sr_last_error(), "XCL_EMULATION_MODE"), "bogus mode: '%s'",
          sr_last_error());
    setenv("XCL_EMULATION_MODE", "sw_emu", 1);  // root has no libxrt_swemu.so.2
    s = sr_fpga_probe();
    CHECK(s == SR_ERR_NO_DEVICE && strstr(sr_last_error(), "libxrt_swemu.so.2"), "sw_emu: '%s'", sr_last_error());
    OK("XRT never called with an environment that would abort");
}

int main(int argc, char **argv) {
    const char *xrt_root = NULL, *xclbin = NULL, *wrong_xclbin = NULL, *fixture = NULL;
    int timeout_test = 0, exit_open = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--xrt-root") && i + 1 < argc) xrt_root = argv[++i];
        else if (!strcmp(argv[i], "--xclbin") && i + 1 < argc) xclbin = argv[++i];
        else if (!strcmp(argv[i], "--wrong-kernel-xclbin") && i + 1 < argc) wrong_xclbin = argv[++i];
        else if (!strcmp(argv[i], "--fixture") && i + 1 < argc) fixture = argv[++i];
        else if (!strcmp(argv[i], "--timeout-test")) timeout_test = 1;
        else if (!strcmp(argv[i], "--exit-open")) exit_open = 1;
        else {
            fprintf(stderr, "usage: noop_host_test --xrt-root DIR --xclbin F [--wrong-kernel-xclbin F2] "
                            "[--fixture G] [--timeout-test] [--exit-open]\n");
            return 64;
        }
    }
    if (!xrt_root || !xclbin) return 64;
    setvbuf(stdout, NULL, _IONBF, 0);  // keep the log complete if a sanitizer aborts

    if (!timeout_test) guard_tests(xrt_root, xclbin);

    // --- the noop shim from here on ---
    setenv("XILINX_XRT", xrt_root, 1);
    setenv("XCL_EMULATION_MODE", "noop", 1);
    must(sr_fpga_probe(), "probe under noop");
    sr_fpga_device_info devs[4];
    int32_t nd = 0;
    must(sr_fpga_list_devices(devs, 4, &nd), "list devices");
    CHECK(nd == 1 && devs[0].index == 0 && !strcmp(devs[0].shim, "noop"), "devices: %d", nd);
    printf("ok devices: %d (%s shim)\n", nd, nd ? devs[0].shim : "-");

    sr_fpga_params p = sr_fpga_default_params();
    sr_fpga *f = NULL;
    sr_status s;
    if (!timeout_test) {
        p.xclbin_path = "/nonexistent/spk.xclbin";
        s = sr_fpga_open(&p, &f);
        CHECK(s == SR_ERR_IO && !f, "missing xclbin: %d '%s'", s, sr_last_error());
        printf("ok missing xclbin: %s\n", sr_last_error());
        p.xclbin_path = argv[0];  // not an xclbin
        s = sr_fpga_open(&p, &f);
        CHECK(s == SR_ERR_FORMAT && !f, "not an xclbin: %d '%s'", s, sr_last_error());
        printf("ok not an xclbin: %s\n", sr_last_error());
        if (wrong_xclbin) {
            p.xclbin_path = wrong_xclbin;
            s = sr_fpga_open(&p, &f);
            CHECK(s == SR_ERR_FORMAT && !f && strstr(sr_last_error(), "no kernel 'spk_acc'"), "wrong kernel: '%s'",
                  sr_last_error());
            printf("ok wrong kernel: %s\n", sr_last_error());
        }
        p.xclbin_path = xclbin;
        p.kernel_name = "spk_acc_nope";
        s = sr_fpga_open(&p, &f);
        CHECK(s == SR_ERR_FORMAT && !f, "wrong kernel name: %d", s);
        p.kernel_name = NULL;
    }

    p.xclbin_path = xclbin;
    if (timeout_test) p.timeout_ms = 50;
    must(sr_fpga_open(&p, &f), "open");
    CHECK(!strcmp(sr_fpga_platform(f), "xilinx_vck190_base_202210_1"), "platform '%s'", sr_fpga_platform(f));
    // the interface as the xclbin metadata describes it = spk_acc.h's table
    static const int want_group[SPK_ACC_NARGS] = {0, 1, 1, 0, 0, 0, -1, -1};  // DDR = 0, LPDDR = 1
    static const uint32_t want_off[SPK_ACC_NARGS] = {
#define X(i, n, k, b, m, o, t, w) o,
        SPK_ACC_ARGS(X)
#undef X
    };
    for (int i = 0; i < SPK_ACC_NARGS; i++) {
        CHECK(sr_fpga_arg_group(f, i) == want_group[i], "arg %d group %d", i, sr_fpga_arg_group(f, i));
        CHECK(sr_fpga_arg_offset(f, i) == want_off[i], "arg %d offset 0x%x", i, sr_fpga_arg_offset(f, i));
    }
    OK("kernel found; argument banks and offsets match spk_acc.h");

    // --- weights: a transformer block's linear layers + a head slice, several formats ---
    enum { NM = 10 };
    sr_spike_weights w[NM];
    memset(w, 0, sizeof w);
    const int32_t d = 576, ff = 1536;
    uint8_t *raw = NULL;
    int32_t ty, ni, no;
    if (fixture && gguf_rows(fixture, "blk.0.attn_k.weight", &ty, &ni, &no, &raw) == 0 && ty == 3 && ni == d) {
        must(sr_spike_weights_pack_q4_1(&w[1], raw, no, ni), "pack real k");  // real SmolLM2 rows
        free(raw);
        OK("real blk.0.attn_k.weight rows from the fixture");
    } else {
        CHECK(fixture == NULL, "cannot read attn_k from fixture '%s'", fixture ? fixture : "");
        q4_1_random(&w[1], 192, d);
    }
    q4_1_random(&w[0], d, d);            // q     slot 0
    q4_1_random(&w[2], 192, d);          // v     slot 0
    rows_random(&w[3], 0, d, d);         // o (int8 rows)    slot 1
    q4_1_random(&w[4], ff, d);           // gate  slot 2
    rows_random(&w[5], 1, ff, d);        // up (ternary)      slot 2
    q4_1_random(&w[6], d, ff);           // down  slot 3
    q8_0_random(&w[7], 1000, d);         // head slice (Q8_0) slot 4
    rows_random(&w[8], 1, 300, ff);      // ternary, reads the down input   slot 3
    q8_0_random(&w[9], 64, d);           // slot 5 (never given: error test)
    const int32_t slot_of[NM] = {0, 0, 0, 1, 2, 2, 3, 4, 3, 5};
    sr_fpga_matrix m[NM];
    for (int i = 0; i < NM; i++) m[i].w = &w[i], m[i].input_slot = slot_of[i];
    // reorder so that matrices read together are adjacent: q k v | o | gate up | down tern | head | x
    sr_fpga_matrix mo[NM] = {m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[8], m[7], m[9]};
    const sr_spike_weights *wo[NM] = {&w[0], &w[1], &w[2], &w[3], &w[4], &w[5], &w[6], &w[8], &w[7], &w[9]};
    s = sr_fpga_upload_weights(f, mo, NM);
    must(s, "upload weights");
    sr_fpga_stats st;
    sr_fpga_get_stats(f, &st);
    uint64_t want_w[3] = {0, 0, 0};
    for (int e = 0; e < 3; e++) CHECK(st.weight_bytes[e] > 0, "port %d has no weights", e);
    // every weight byte is accounted for: lines per chunk x chunks, all ports together
    for (int i = 0; i < NM; i++) want_w[0] += (uint64_t)wo[i]->n_chunks * spk_chunk_lines((uint32_t)wo[i]->format, (uint32_t)wo[i]->n_in) * 64;
    CHECK(st.weight_bytes[0] + st.weight_bytes[1] + st.weight_bytes[2] == want_w[0], "weight bytes %llu vs %llu",
          (unsigned long long)(st.weight_bytes[0] + st.weight_bytes[1] + st.weight_bytes[2]),
          (unsigned long long)want_w[0]);
    for (int a = 0; a < 6; a++) {
        uint64_t b = sr_fpga_buffer_bytes(f, a);
        CHECK(b >= 4096 && b % 4096 == 0, "buffer %d has %llu bytes", a, (unsigned long long)b);
    }
    CHECK(sr_fpga_buffer_bytes(f, SPK_ARG_jobs) == 4096, "jobs buffer");
    printf("ok uploaded %d matrices: %.2f / %.2f / %.2f MiB on w0 (DDR) / w1 / w2 (LPDDR)\n", NM,
           st.weight_bytes[0] / 1048576.0, st.weight_bytes[1] / 1048576.0, st.weight_bytes[2] / 1048576.0);

    sr_fpga_set_run_hook(f, device_hook, NULL);
    sr_spike_planes xs[5];
    memset(xs, 0, sizeof xs);
    const int32_t slot_n[5] = {d, d, d, ff, d};
    float *y = malloc(sizeof(float) * 4096), *ref = malloc(sizeof(float) * 4096);
    // (first, count, slots)
    const int32_t groups[5][2] = {{0, 3}, {3, 1}, {4, 2}, {6, 2}, {8, 1}};
    const int tokens = timeout_test ? 1 : 4;
    int steps_ok = 0, all_equal = 1;
    double t_start = now_s();
    for (int tok = 0; tok < tokens && !timeout_test; tok++) {
        for (int k = 0; k < 5; k++) activation(&xs[k], slot_n[k], (tok + k) % 2);
        for (int g = 0; g < 5; g++) {
            const int32_t first = groups[g][0], count = groups[g][1];
            sr_fpga_input inputs[1];
            inputs[0].slot = mo[first].input_slot;
            inputs[0].x = &xs[inputs[0].slot];
            int64_t n_out = sr_fpga_step_outputs(f, first, count);
            s = sr_fpga_step(f, first, count, inputs, 1, y);
            CHECK(s == SR_OK, "step token %d group %d: %s", tok, g, sr_last_error());
            if (s != SR_OK) continue;
            steps_ok++;
            int64_t at = 0;
            for (int32_t i = first; i < first + count; i++) {
                must(sr_spike_matvec(wo[i], inputs[0].x, 0, wo[i]->n_out, ref + at, NULL, NULL), "cpu matvec");
                at += wo[i]->n_out;
            }
            int64_t bad = -1;
            int eq = at == n_out && bits_equal(y, ref, at, &bad);
            if (!eq) all_equal = 0;
            CHECK(eq, "token %d group %d: output %lld differs: %g vs %g", tok, g, (long long)bad,
                  bad >= 0 ? y[bad] : 0.0, bad >= 0 ? ref[bad] : 0.0);
        }
    }
    if (!timeout_test) {
        sr_fpga_get_stats(f, &st);
        CHECK(st.runs == (uint64_t)steps_ok && g_hook_calls == steps_ok, "runs %llu hooks %d steps %d",
              (unsigned long long)st.runs, g_hook_calls, steps_ok);
        printf("ok %d runs (start/wait/sync per step) in %.3f s; every output bit-equal to sr_spike_matvec: %s\n",
               steps_ok, now_s() - t_start, all_equal ? "yes" : "NO");
        printf("ok per-step traffic: %.1f KiB in, %.1f KiB out per run on average\n",
               st.bytes_to_device / 1024.0 / (double)(st.runs ? st.runs : 1),
               st.bytes_from_device / 1024.0 / (double)(st.runs ? st.runs : 1));

        // --- error paths of a step ---
        sr_fpga_input in_bad = {1, &xs[1]};
        s = sr_fpga_step(f, 0, 3, &in_bad, 1, y);  // q,k,v read slot 0
        CHECK(s == SR_ERR_INVALID_ARG && strstr(sr_last_error(), "did not provide"), "missing slot: %s",
              sr_last_error());
        printf("ok missing input: %s\n", sr_last_error());
        s = sr_fpga_step(f, 9, 2, &in_bad, 1, y);
        CHECK(s == SR_ERR_INVALID_ARG, "range: %s", sr_last_error());
        sr_fpga_input twice[2] = {{0, &xs[0]}, {0, &xs[0]}};
        s = sr_fpga_step(f, 0, 3, twice, 2, y);
        CHECK(s == SR_ERR_INVALID_ARG && strstr(sr_last_error(), "twice"), "twice: %s", sr_last_error());
        // an input for a slot this run does not read is still packed: it must fit its slot
        // (slot 1 holds d activations; xs[3] has ff > d)
        sr_fpga_input extra[2] = {{0, &xs[0]}, {1, &xs[3]}};
        s = sr_fpga_step(f, 0, 3, extra, 2, y);
        CHECK(s == SR_ERR_INVALID_ARG && strstr(sr_last_error(), "slot 1 has"), "oversized unread slot: %s",
              sr_last_error());
        printf("ok oversized input for an unread slot: %s\n", sr_last_error());
        // rate code with too many planes for the FPGA (fine for the CPU)
        sr_spike_planes big;
        memset(&big, 0, sizeof big);
        must(sr_spike_planes_init(&big, d, 40), "planes");
        int32_t *c = calloc((size_t)d, sizeof *c);
        c[3] = 30;
        float one = 0.01f;
        must(sr_spike_planes_from_counts(&big, c, d, SR_SPIKE_TERNARY, 30, 0, &one, 0), "planes");
        sr_fpga_input in_big = {0, &big};
        s = sr_fpga_step(f, 0, 3, &in_big, 1, y);
        CHECK(s == SR_ERR_UNSUPPORTED && strstr(sr_last_error(), "T = 30"), "T=30: %s", sr_last_error());
        printf("ok too many planes: %s\n", sr_last_error());
        // the int32 bound: an int8-row layer (o, slot 1) with huge counts is rejected exactly
        // as sr_spike_matvec_check rejects it on the CPU
        for (int32_t j = 0; j < d; j++) c[j] = 65535;
        must(sr_spike_planes_from_counts(&big, c, d, SR_SPIKE_SIGN_MAGNITUDE, 16, 0, &one, 0), "planes");
        sr_fpga_input in_over = {1, &big};
        sr_status cpu = sr_spike_matvec_check(&w[3], &big, 0, w[3].n_out);
        s = sr_fpga_step(f, 3, 1, &in_over, 1, y);
        CHECK(s == SR_ERR_UNSUPPORTED && cpu == SR_ERR_UNSUPPORTED, "bound: fpga %d cpu %d: %s", s, cpu,
              sr_last_error());
        printf("ok int32 bound enforced like the CPU: %s\n", sr_last_error());
        free(c);
        sr_spike_planes_free(&big);
        sr_fpga_input never = {5, &xs[0]};
        s = sr_fpga_step(f, 9, 1, &never, 1, y);
        CHECK(s == SR_OK, "slot 5 step: %s", sr_last_error());
        sr_fpga_get_stats(f, &st);
        CHECK(st.runs == (uint64_t)steps_ok + 1, "failed steps must not start runs");
    } else {
        // --- timeout: the noop shim completes runs 1 s late (noop_completion_delay_us in xrt.ini) ---
        activation(&xs[0], d, 1);
        sr_fpga_input in = {0, &xs[0]};
        double t0 = now_s();
        s = sr_fpga_step(f, 0, 3, &in, 1, y);
        double dt = now_s() - t0;
        CHECK(s == SR_ERR_TIMEOUT && strstr(sr_last_error(), "did not complete within 50 ms"),
              "timeout: %d '%s'", s, sr_last_error());
        CHECK(dt < 0.8, "timed out after %.3f s; the run takes 1 s, the timeout is 0.05 s", dt);
        printf("ok timeout after %.0f ms: %s\n", dt * 1e3, sr_last_error());
        sr_fpga_get_stats(f, &st);
        CHECK(st.timeouts == 1 && st.runs == 0, "timeouts %llu runs %llu", (unsigned long long)st.timeouts,
              (unsigned long long)st.runs);
        usleep(1300 * 1000);  // the late run completes meanwhile
        s = sr_fpga_step(f, 0, 3, &in, 1, y);  // settles it, then starts a new (slow) run
        CHECK(s == SR_ERR_TIMEOUT && strstr(sr_last_error(), "did not complete within"),
              "second step should settle the old run and time out on its own: '%s'", sr_last_error());
        s = sr_fpga_step(f, 0, 3, &in, 1, y);  // at once: the previous run is still in flight
        CHECK(s == SR_ERR_TIMEOUT && strstr(sr_last_error(), "still in flight"), "in flight: '%s'",
              sr_last_error());
        printf("ok next step while a run is in flight: %s\n", sr_last_error());
        sr_fpga_get_stats(f, &st);
        CHECK(st.timeouts == 2 && st.runs == 0, "timeouts %llu", (unsigned long long)st.timeouts);
        sr_fpga_close(f);  // waits (bounded) for the run in flight, then frees everything
        // a timeout longer than the run succeeds
        p.timeout_ms = 3000;
        must(sr_fpga_open(&p, &f), "reopen");
        must(sr_fpga_upload_weights(f, mo, NM), "upload again");
        sr_fpga_set_run_hook(f, device_hook, NULL);
        t0 = now_s();
        s = sr_fpga_step(f, 0, 3, &in, 1, y);
        dt = now_s() - t0;
        CHECK(s == SR_OK, "slow run with a long timeout: %s", sr_last_error());
        printf("ok slow run completes in %.0f ms with timeout 3000 ms\n", dt * 1e3);
        // blocking wait: XRT's own wait blocks in noop until completion; still reported
        sr_fpga_close(f);
        p.timeout_ms = 50;
        p.blocking_wait = true;
        must(sr_fpga_open(&p, &f), "reopen blocking");
        must(sr_fpga_upload_weights(f, mo, NM), "upload again");
        s = sr_fpga_step(f, 0, 3, &in, 1, y);
        CHECK(s == SR_ERR_TIMEOUT, "blocking wait timeout: %d '%s'", s, sr_last_error());
        printf("ok blocking wait: %s\n", sr_last_error());
        // blocking wait with a timeout longer than the run
        p.timeout_ms = 3000;
        sr_fpga_close(f);
        must(sr_fpga_open(&p, &f), "reopen");
        must(sr_fpga_upload_weights(f, mo, NM), "upload again");
        s = sr_fpga_step(f, 0, 3, &in, 1, y);
        CHECK(s == SR_OK, "after timeouts: %s", sr_last_error());
    }
    if (!exit_open) sr_fpga_close(f);
    sr_fpga_close(NULL);
    for (int i = 0; i < 5; i++) sr_spike_planes_free(&xs[i]);
    for (int i = 0; i < NM; i++) sr_spike_weights_free(&w[i]);
    free(y);
    free(ref);
    printf("noop_host_test%s: %d passed, %d failed\n", timeout_test ? " (timeout)" : "", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
