// spk_acc_tb.cpp - C-simulation of the spk_acc kernel against the CPU spike kernels.
//
// Builds device buffers exactly as the host backend does (csrc/fpga/sr-fpga-pack.c), runs
// the HLS top function spk_acc() as plain C++, and compares every output float bit for bit
// with sr_spike_matvec_ref (the oracle) and sr_spike_matvec (the optimized CPU kernel):
//   - randomized weights for every format (Q4_1, Q8_0, I8_ROW, TERNARY) x every encoding
//     (sign-magnitude, two's complement, ternary, binary), one scale per token and grouped
//     scales, partial tiles, fewer activations than inputs, several jobs per run with shared
//     input slots, engines with zero chunks;
//   - real SmolLM2-135M weights: rows of blk.0.ffn_gate/attn_k/ffn_down (Q4_1) and
//     token_embd (Q8_0) from Tests/Fixtures/fpga/smollm2_slices.gguf (always), and whole
//     layer-0 tensors plus the whole Q8_0 head from the model when its path is given; the
//     activations are synthetic but shaped like RMSNorm outputs (a few large channels),
//     encoded with the mean rule and the max rule as the runtime does.
// Usage: spk_acc_tb [--seed N] [--fixture F.gguf] [--model M.gguf]
// Prints one line per failure and "csim: N passed, M failed"; exit status 1 on failure.
#include "../kernels/spk_acc.h"
#include "../kernels/spk_core.h"

#include "../../csrc/fpga/sr-fpga-pack.h"
#include "../../include/spikerun/sr-spike.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

// ---------------------------------------------------------------------------------------
// Random numbers (xorshift64*, fixed seed: reproducible).

static uint64_t g_rng = 0x5eed5eed12345678ull;
static uint64_t rnd() {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 0x2545F4914F6CDD1Dull;
}
static int32_t rnd_int(int32_t lo, int32_t hi) {  // inclusive
    return lo + (int32_t)(rnd() % (uint64_t)(hi - lo + 1));
}
static float rnd_unit() { return (float)((rnd() >> 40) * (1.0 / 16777216.0)); }
static float rnd_normal() {  // Box-Muller, float is plenty here
    float u1 = rnd_unit(), u2 = rnd_unit();
    if (u1 < 1e-7f) u1 = 1e-7f;
    return std::sqrt(-2.0f * std::log(u1)) * std::cos(6.2831853f * u2);
}

static uint16_t f32_to_f16_rne(float f) {  // generator only (values then round-trip exactly)
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u;
    int32_t e = (int32_t)((u >> 23) & 0xff) - 127 + 15;
    uint32_t m = u & 0x7fffffu;
    if (e >= 31) return (uint16_t)(sign | 0x7bffu);  // clamp to max finite
    if (e <= 0) {
        if (e < -10) return (uint16_t)sign;
        m |= 0x800000u;
        uint32_t sh = (uint32_t)(14 - e);
        uint32_t h = m >> sh, rem = m & ((1u << sh) - 1u), half = 1u << (sh - 1);
        if (rem > half || (rem == half && (h & 1u))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((uint32_t)e << 10) | (m >> 13), rem = m & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

static uint16_t rnd_half_scale() {
    // mostly GGUF-like scales (1e-4 .. 1e-1), some subnormal fp16 values, some negative
    uint32_t pick = (uint32_t)(rnd() % 16);
    if (pick == 0) return (uint16_t)rnd_int(1, 0x3ff);                // subnormal
    if (pick == 1) return (uint16_t)(0x8000u | (uint32_t)rnd_int(1, 0x3ff));
    float mag = std::pow(10.0f, -4.0f + 3.0f * rnd_unit());
    return f32_to_f16_rne(pick < 5 ? -mag : mag);
}

// ---------------------------------------------------------------------------------------
// Test bookkeeping.

static int g_pass = 0, g_fail = 0;

static void fail(const std::string &what) {
    g_fail++;
    printf("FAIL %s\n", what.c_str());
}

// ---------------------------------------------------------------------------------------
// The emulated device: six buffers, filled the way sr-fpga.c fills them.

struct Mat {
    const sr_spike_weights *w;
    int slot;
    std::string name;
};
struct In {
    int slot;
    const sr_spike_planes *x;
};

static void split_chunks(const float share[3], uint32_t n, uint32_t out[3]) {
    // same rule as sr-fpga.c (largest remainders)
    double sum = (double)share[0] + share[1] + share[2];
    uint32_t given = 0;
    double rem[3];
    for (int e = 0; e < 3; e++) {
        double want = n * (share[e] / sum);
        out[e] = (uint32_t)want;
        rem[e] = want - out[e];
        given += out[e];
    }
    while (given < n) {
        int best = 0;
        for (int e = 1; e < 3; e++)
            if (rem[e] > rem[best]) best = e;
        out[best]++;
        rem[best] = -1.0;
        given++;
    }
}

// The schedule is spike-driven: the weight loaders fetched the code lines of exactly the
// inputs that fire in some plane (plus the scale lines), and the cores spent exactly one
// event per spike (plus, for the binary code, one per set bit of z per input below n).
static bool g_print_schedule = false;
static void check_schedule(const std::string &name, const std::vector<Mat> &mats,
                           const std::map<int, const sr_spike_planes *> &slot_x,
                           const std::vector<spk_job> &jobs, int lead) {
    uint64_t want_lines = 0, want_events = 0, want_fill = 0;
    for (size_t i = 0; i < mats.size(); i++) {
        const sr_spike_weights *w = mats[i].w;
        const sr_spike_planes *x = slot_x.at(mats[i].slot);
        const spk_job &d = jobs[(size_t)lead + i];
        const uint64_t chunks = (uint64_t)d.chunks[0] + d.chunks[1] + d.chunks[2];
        uint64_t firing = 0;
        for (int32_t j = 0; j < x->n; j++) {
            bool f = x->encoding == SR_SPIKE_BINARY && x->offset > 0;
            for (int32_t t = 0; t < x->T && !f; t++) f = sr_spike_planes_sigma(x, j, t) != 0;
            firing += f;
        }
        const uint64_t offset_events = x->encoding == SR_SPIKE_BINARY
                                           ? (uint64_t)__builtin_popcount((unsigned)x->offset) * (uint64_t)x->n
                                           : 0;
        want_fill += chunks * firing;
        want_events += chunks * (x->spikes + offset_events);
        want_lines += chunks * (firing + (uint64_t)(w->n_in / 32) * spk_block_scale_lines((uint32_t)w->format) +
                                spk_row_scale_lines((uint32_t)w->format));
    }
    spk_core_counters c = {0, 0, 0, 0, 0, 0};
    uint64_t lines = 0, bursts = 0, cycles[3] = {0, 0, 0};
    for (int e = 0; e < 3; e++) {
        c.blocks += spk_csim_last_core[e].blocks;
        c.silent += spk_csim_last_core[e].silent;
        c.fill += spk_csim_last_core[e].fill;
        c.events += spk_csim_last_core[e].events;
        c.bubbles += spk_csim_last_core[e].bubbles;
        c.out += spk_csim_last_core[e].out;
        lines += spk_csim_last_load[e].lines;
        bursts += spk_csim_last_load[e].bursts;
        cycles[e] = spk_csim_last_core[e].fill + spk_csim_last_core[e].events + spk_csim_last_core[e].bubbles +
                    spk_csim_last_core[e].out;
    }
    if (c.fill != want_fill || c.events != want_events || lines != want_lines) {
        fail(name + ": schedule not spike-driven: fill " + std::to_string(c.fill) + " (want " +
             std::to_string(want_fill) + "), events " + std::to_string(c.events) + " (want " +
             std::to_string(want_events) + "), lines " + std::to_string(lines) + " (want " +
             std::to_string(want_lines) + ")");
        return;
    }
    g_pass++;
    if (g_print_schedule)
        printf("schedule %s: blocks %llu silent %llu | fill %llu events %llu bubbles %llu out %llu | "
               "bursts %llu lines %llu | core cycles per engine %llu %llu %llu\n",
               name.c_str(), (unsigned long long)c.blocks, (unsigned long long)c.silent,
               (unsigned long long)c.fill, (unsigned long long)c.events, (unsigned long long)c.bubbles,
               (unsigned long long)c.out, (unsigned long long)bursts, (unsigned long long)lines,
               (unsigned long long)cycles[0], (unsigned long long)cycles[1], (unsigned long long)cycles[2]);
}

// Runs all matrices in one kernel run (jobs first..first+n, after `lead` unrelated jobs
// when lead > 0) and compares each output with the CPU kernels.
static void run_case(const std::string &name, const std::vector<Mat> &mats, const std::vector<In> &ins,
                     const float share[3], int lead = 0) {
    std::map<int, uint32_t> slot_line;
    std::map<int, const sr_spike_planes *> slot_x;
    uint64_t spk_lines = 0;
    for (const In &in : ins) {
        int32_t n_in = in.x->n;  // the slot is sized for its matrices' n_in
        for (const Mat &m : mats)
            if (m.slot == in.slot) {
                n_in = m.w->n_in;
                break;
            }
        slot_line[in.slot] = (uint32_t)spk_lines;
        slot_x[in.slot] = in.x;
        spk_lines += sr_fpga_slot_capacity(n_in);
    }
    std::vector<spk_job> jobs((size_t)lead + mats.size());
    uint64_t w_lines[3] = {0, 0, 0}, out_lines = 0;
    std::vector<uint32_t> out_line(mats.size());
    for (size_t i = 0; i < mats.size(); i++) {
        const sr_spike_weights *w = mats[i].w;
        spk_job &d = jobs[(size_t)lead + i];
        memset(&d, 0, sizeof d);
        d.fmt = (uint32_t)w->format;
        d.n_in = (uint32_t)w->n_in;
        split_chunks(share, (uint32_t)w->n_chunks, d.chunks);
        uint32_t c0 = 0;
        for (int e = 0; e < 3; e++) {
            d.w_off[e] = (uint32_t)w_lines[e];
            w_lines[e] += sr_fpga_shard_lines(w, (int32_t)c0, (int32_t)(c0 + d.chunks[e]));
            c0 += d.chunks[e];
        }
        d.spk_off = slot_line[mats[i].slot];
        d.out_off = (uint32_t)out_lines;
        out_line[i] = (uint32_t)out_lines;
        out_lines += (uint64_t)w->n_chunks * (uint64_t)w->tile_w / 16u;
    }
    for (int k = 0; k < lead; k++) {  // garbage jobs before the run: must be skipped
        memset(&jobs[(size_t)k], 0xA5, sizeof(spk_job));
    }
    std::vector<spk_line> wb[3], jb(jobs.size() + 1), sb(spk_lines + 1), ob(out_lines + 1);
    for (int e = 0; e < 3; e++) wb[e].assign(w_lines[e] + 1, spk_line());
    for (size_t i = 0; i < mats.size(); i++) {
        uint32_t c0 = 0;
        const spk_job &d = jobs[(size_t)lead + i];
        for (int e = 0; e < 3; e++) {
            sr_fpga_pack_shard(mats[i].w, (int32_t)c0, (int32_t)(c0 + d.chunks[e]), wb[e].data() + d.w_off[e]);
            c0 += d.chunks[e];
        }
    }
    memcpy(jb.data(), jobs.data(), jobs.size() * sizeof(spk_job));
    for (const In &in : ins) sr_fpga_pack_planes(in.x, sb.data() + slot_line[in.slot]);
    // poison the outputs: every float must be written by the kernel
    memset(ob.data(), 0xFF, ob.size() * sizeof(spk_line));

    spk_acc(wb[0].data(), wb[1].data(), wb[2].data(), jb.data(), sb.data(), ob.data(),
            (unsigned)lead, (unsigned)mats.size());
    check_schedule(name, mats, slot_x, jobs, lead);

    for (size_t i = 0; i < mats.size(); i++) {
        const sr_spike_weights *w = mats[i].w;
        const sr_spike_planes *x = slot_x[mats[i].slot];
        const std::string what = name + " / " + mats[i].name;
        sr_status st = sr_spike_matvec_check(w, x, 0, w->n_out);
        if (st != SR_OK) {
            fail(what + ": case rejected by sr_spike_matvec_check: " + sr_last_error());
            continue;
        }
        std::vector<float> ref((size_t)w->n_out), opt((size_t)w->n_out);
        st = sr_spike_matvec_ref(w, x, 0, w->n_out, ref.data(), NULL, NULL);
        if (st == SR_OK) st = sr_spike_matvec(w, x, 0, w->n_out, opt.data(), NULL, NULL);
        if (st != SR_OK) {
            fail(what + ": CPU kernel failed: " + sr_last_error());
            continue;
        }
        const float *dev = (const float *)(ob.data() + out_line[i]);
        int bad = 0;
        for (int32_t o = 0; o < w->n_out; o++) {
            uint32_t a, b, c;
            memcpy(&a, &dev[o], 4);
            memcpy(&b, &ref[(size_t)o], 4);
            memcpy(&c, &opt[(size_t)o], 4);
            if (a != b || a != c) {  // the oracle and the optimized CPU kernel, both
                if (bad < 3)
                    printf("  %s row %d: kernel %.9g (%08x), ref %.9g (%08x), opt %08x\n", what.c_str(), o, dev[o],
                           a, ref[(size_t)o], b, c);
                bad++;
            }
        }
        if (bad)
            fail(what + ": " + std::to_string(bad) + " of " + std::to_string(w->n_out) + " rows differ");
        else
            g_pass++;
    }
}

// ---------------------------------------------------------------------------------------
// Generators.

struct WeightsBox {  // owns an sr_spike_weights
    sr_spike_weights w;
    WeightsBox() { memset(&w, 0, sizeof w); }
    ~WeightsBox() { sr_spike_weights_free(&w); }
    WeightsBox(const WeightsBox &) = delete;
    WeightsBox &operator=(const WeightsBox &) = delete;
};
struct PlanesBox {
    sr_spike_planes x;
    PlanesBox() { memset(&x, 0, sizeof x); }
    ~PlanesBox() { sr_spike_planes_free(&x); }
    PlanesBox(const PlanesBox &) = delete;
    PlanesBox &operator=(const PlanesBox &) = delete;
};

static void must(sr_status st, const char *what) {
    if (st != SR_OK) {
        printf("testbench setup failed: %s: %s\n", what, sr_last_error());
        exit(2);
    }
}

static void make_weights(WeightsBox &b, int fmt, int32_t n_out, int32_t n_in, bool row_sums) {
    const int32_t nb = n_in / 32;
    if (fmt == SR_SPIKE_W_Q4_1) {
        std::vector<uint8_t> blk((size_t)n_out * nb * 20);
        for (size_t k = 0; k < (size_t)n_out * nb; k++) {
            uint8_t *p = &blk[k * 20];
            uint16_t d = rnd_half_scale(), m = rnd_half_scale();
            p[0] = (uint8_t)d;
            p[1] = (uint8_t)(d >> 8);
            p[2] = (uint8_t)m;
            p[3] = (uint8_t)(m >> 8);
            for (int i = 0; i < 16; i++) p[4 + i] = (uint8_t)rnd();
        }
        must(sr_spike_weights_pack_q4_1(&b.w, blk.data(), n_out, n_in), "pack q4_1");
    } else if (fmt == SR_SPIKE_W_Q8_0) {
        std::vector<uint8_t> blk((size_t)n_out * nb * 34);
        for (size_t k = 0; k < (size_t)n_out * nb; k++) {
            uint8_t *p = &blk[k * 34];
            uint16_t d = rnd_half_scale();
            p[0] = (uint8_t)d;
            p[1] = (uint8_t)(d >> 8);
            for (int i = 0; i < 32; i++) p[2 + i] = (uint8_t)rnd();  // includes -128
        }
        must(sr_spike_weights_pack_q8_0(&b.w, blk.data(), n_out, n_in), "pack q8_0");
    } else {
        std::vector<int8_t> codes((size_t)n_out * n_in);
        std::vector<float> rs((size_t)n_out);
        for (auto &c : codes) c = (int8_t)(fmt == SR_SPIKE_W_I8_ROW ? rnd_int(-127, 127) : rnd_int(-1, 1));
        for (auto &s : rs) s = (rnd_unit() + 0.01f) * (rnd() & 1 ? 0.02f : -0.02f);
        if (fmt == SR_SPIKE_W_I8_ROW)
            must(sr_spike_weights_pack_i8(&b.w, codes.data(), rs.data(), n_out, n_in), "pack i8");
        else
            must(sr_spike_weights_pack_ternary(&b.w, codes.data(), rs.data(), n_out, n_in), "pack ternary");
    }
    if (row_sums) must(sr_spike_weights_add_row_sums(&b.w), "row sums");
}

// Random counts that fit T planes of enc (sparse: about half zero), then planes.
static void make_planes(PlanesBox &b, int enc, int32_t T, int32_t n, int32_t group, int32_t z) {
    std::vector<int32_t> counts((size_t)n);
    int32_t lo, hi;
    switch (enc) {
    case SR_SPIKE_SIGN_MAGNITUDE: hi = (1 << T) - 1; lo = -hi; break;
    case SR_SPIKE_TWOS_COMPLEMENT: hi = (1 << (T - 1)) - 1; lo = -(1 << (T - 1)); break;
    case SR_SPIKE_TERNARY: hi = T; lo = -T; break;
    case SR_SPIKE_NAF: hi = (int32_t)(((1u << (T + 1)) - 1u) / 3u); lo = -hi; break;
    default: lo = -z; hi = T - z; break;
    }
    for (auto &c : counts) {
        uint64_t r = rnd() % 8;
        c = r < 4 ? 0 : r < 7 ? rnd_int(lo / 4 < -1 ? lo / 4 : -1, hi / 4 > 1 ? hi / 4 : 1) : rnd_int(lo, hi);
        if (c < lo) c = lo;
        if (c > hi) c = hi;
    }
    int32_t G = group > 0 && group < n ? group : n;
    int32_t ng = (n + G - 1) / G;
    std::vector<float> sc((size_t)ng);
    for (auto &s : sc) s = std::pow(2.0f, -6.0f + 4.0f * rnd_unit()) * (0.5f + rnd_unit());
    must(sr_spike_planes_init(&b.x, n, T), "planes init");
    must(sr_spike_planes_from_counts(&b.x, counts.data(), n, (sr_spike_encoding)enc, T, z, sc.data(), group),
         "planes from counts");
}

// Activation shaped like an RMSNorm output: N(0,1) times a per-channel gain, a few channels
// 20-60x larger (SmolLM2 has such outliers).
static std::vector<float> realistic_activation(int32_t n) {
    std::vector<float> x((size_t)n);
    for (int32_t j = 0; j < n; j++) x[(size_t)j] = rnd_normal() * (0.3f + rnd_unit());
    for (int k = 0; k < 4; k++) x[(size_t)rnd_int(0, n - 1)] *= 20.0f + 40.0f * rnd_unit();
    return x;
}

static void encode_mean(PlanesBox &b, const std::vector<float> &x, float k) {
    const int32_t n = (int32_t)x.size();
    std::vector<int32_t> counts((size_t)n);
    float scale = 0;
    must(sr_spike_encode_mean(x.data(), n, k, counts.data(), &scale), "encode mean");
    int32_t T = sr_spike_min_planes(counts.data(), n, SR_SPIKE_SIGN_MAGNITUDE, 0);
    must(sr_spike_planes_init(&b.x, n, 16), "planes init");
    must(sr_spike_planes_from_counts(&b.x, counts.data(), n, SR_SPIKE_SIGN_MAGNITUDE, T, 0, &scale, 0),
         "planes from mean counts");
}

static void encode_max(PlanesBox &b, const std::vector<float> &x, int bits, int32_t group, int enc) {
    const int32_t n = (int32_t)x.size();
    std::vector<int32_t> counts((size_t)n);
    sr_spike_max_params p = sr_spike_max_default_params(bits);
    p.group = group;
    int32_t G = group > 0 ? group : n;
    std::vector<float> sc((size_t)((n + G - 1) / G));
    must(sr_spike_encode_max(x.data(), n, &p, counts.data(), sc.data()), "encode max");
    int32_t T = sr_spike_min_planes(counts.data(), n, (sr_spike_encoding)enc, 0);
    must(sr_spike_planes_init(&b.x, n, 16), "planes init");
    must(sr_spike_planes_from_counts(&b.x, counts.data(), n, (sr_spike_encoding)enc, T, 0, sc.data(), group),
         "planes from max counts");
}

// ---------------------------------------------------------------------------------------
// Tiny GGUF reader (v2/v3): tensor name -> (type, ne0, ne1, file offset of the data).

struct GTensor {
    uint32_t type = 0;
    uint64_t ne0 = 0, ne1 = 1, offset = 0;
};

static bool rd(FILE *f, void *p, size_t n) { return fread(p, 1, n, f) == n; }

static bool skip_value(FILE *f, uint32_t type) {
    static const int sizes[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (type == 8) {
        uint64_t len;
        return rd(f, &len, 8) && fseek(f, (long)len, SEEK_CUR) == 0;
    }
    if (type == 9) {
        uint32_t et;
        uint64_t n;
        if (!rd(f, &et, 4) || !rd(f, &n, 8)) return false;
        for (uint64_t i = 0; i < n; i++)
            if (!skip_value(f, et)) return false;
        return true;
    }
    if (type > 12) return false;
    return fseek(f, sizes[type], SEEK_CUR) == 0;
}

static bool read_gguf(const char *path, std::map<std::string, GTensor> &out, FILE **fp) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    char magic[4];
    uint32_t version;
    uint64_t n_tensors, n_kv;
    if (!rd(f, magic, 4) || memcmp(magic, "GGUF", 4) != 0 || !rd(f, &version, 4) || !rd(f, &n_tensors, 8) ||
        !rd(f, &n_kv, 8)) {
        fclose(f);
        return false;
    }
    uint64_t alignment = 32;
    for (uint64_t i = 0; i < n_kv; i++) {
        uint64_t klen;
        if (!rd(f, &klen, 8) || klen > 4096) { fclose(f); return false; }
        std::string key(klen, '\0');
        uint32_t type;
        if (!rd(f, &key[0], klen) || !rd(f, &type, 4)) { fclose(f); return false; }
        if (key == "general.alignment" && type == 4) {
            uint32_t a;
            if (!rd(f, &a, 4)) { fclose(f); return false; }
            alignment = a;
        } else if (!skip_value(f, type)) {
            fclose(f);
            return false;
        }
    }
    for (uint64_t i = 0; i < n_tensors; i++) {
        uint64_t nlen;
        if (!rd(f, &nlen, 8) || nlen > 4096) { fclose(f); return false; }
        std::string name(nlen, '\0');
        uint32_t nd;
        if (!rd(f, &name[0], nlen) || !rd(f, &nd, 4) || nd > 4) { fclose(f); return false; }
        GTensor t;
        uint64_t ne[4] = {1, 1, 1, 1};
        for (uint32_t d = 0; d < nd; d++)
            if (!rd(f, &ne[d], 8)) { fclose(f); return false; }
        if (!rd(f, &t.type, 4) || !rd(f, &t.offset, 8)) { fclose(f); return false; }
        t.ne0 = ne[0];
        t.ne1 = ne[1] * ne[2] * ne[3];
        out[name] = t;
    }
    long pos = ftell(f);
    uint64_t data = ((uint64_t)pos + alignment - 1) / alignment * alignment;
    for (auto &kv : out) kv.second.offset += data;
    *fp = f;
    return true;
}

static bool load_rows(FILE *f, const GTensor &t, int32_t rows, std::vector<uint8_t> &buf) {
    size_t row_bytes = (size_t)t.ne0 / 32 * (t.type == 3 ? 20 : 34);
    buf.resize(row_bytes * (size_t)rows);
    return fseek(f, (long)t.offset, SEEK_SET) == 0 && fread(buf.data(), 1, buf.size(), f) == buf.size();
}

// Real-weight cases for one file: for each tensor (rows <= limit), mean-rule and max-rule
// (grouped) activations.
static void model_cases(const char *path, const char *label,
                        const std::vector<std::pair<std::string, int32_t>> &want) {
    std::map<std::string, GTensor> ts;
    FILE *f = NULL;
    if (!read_gguf(path, ts, &f)) {
        fail(std::string(label) + ": cannot read '" + path + "' as GGUF");
        return;
    }
    const float share[3] = {0.45f, 0.275f, 0.275f};
    for (const auto &wt : want) {
        auto it = ts.find(wt.first);
        if (it == ts.end() || (it->second.type != 3 && it->second.type != 8)) {
            fail(std::string(label) + ": tensor " + wt.first + " missing or not Q4_1/Q8_0");
            continue;
        }
        const GTensor &t = it->second;
        int32_t rows = wt.second > 0 && (uint64_t)wt.second < t.ne1 ? wt.second : (int32_t)t.ne1;
        std::vector<uint8_t> raw;
        if (!load_rows(f, t, rows, raw)) {
            fail(std::string(label) + ": cannot read " + wt.first);
            continue;
        }
        WeightsBox w;
        if (t.type == 3)
            must(sr_spike_weights_pack_q4_1(&w.w, raw.data(), rows, (int32_t)t.ne0), "pack real q4_1");
        else
            must(sr_spike_weights_pack_q8_0(&w.w, raw.data(), rows, (int32_t)t.ne0), "pack real q8_0");
        const std::string nm = wt.first + " " + std::to_string(rows) + "x" + std::to_string(t.ne0);
        for (int variant = 0; variant < 3; variant++) {
            std::vector<float> x = realistic_activation((int32_t)t.ne0);
            PlanesBox p;
            std::string how;
            if (variant == 0) {
                encode_mean(p, x, 2.0f);
                how = "mean k=2 sign-magnitude T=" + std::to_string(p.x.T);
            } else if (variant == 1) {
                encode_max(p, x, 8, 32, SR_SPIKE_SIGN_MAGNITUDE);
                how = "max b=8 G=32 sign-magnitude T=" + std::to_string(p.x.T);
            } else {
                encode_max(p, x, 4, 0, SR_SPIKE_TWOS_COMPLEMENT);
                how = "max b=4 two's complement T=" + std::to_string(p.x.T);
            }
            run_case(std::string(label) + " " + how, {{&w.w, 0, nm}}, {{0, &p.x}}, share);
        }
    }
    fclose(f);
}

// ---------------------------------------------------------------------------------------

int main(int argc, char **argv) {
    const char *fixture = NULL, *model = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            g_rng = strtoull(argv[++i], NULL, 0) | 1u;
        else if (!strcmp(argv[i], "--fixture") && i + 1 < argc)
            fixture = argv[++i];
        else if (!strcmp(argv[i], "--model") && i + 1 < argc)
            model = argv[++i];
        else if (!strcmp(argv[i], "--schedule"))
            g_print_schedule = true;
        else {
            fprintf(stderr, "usage: spk_acc_tb [--seed N] [--fixture F.gguf] [--model M.gguf] [--schedule]\n");
            return 64;
        }
    }
    const uint64_t seed = g_rng;
    sr_spike_set_simd_level(SR_SPIKE_SIMD_AUTO);

    // 0. the kernel's fp16 widening = sr-spike.h's, on all 65536 inputs
    {
        int bad = 0;
        for (uint32_t h = 0; h < 65536; h++) {
            float a = spk_half_to_float((uint16_t)h), b = sr_spike_f16_to_f32((uint16_t)h);
            if (memcmp(&a, &b, 4) != 0 && bad++ < 3) printf("  fp16 %04x: %08x vs sr-spike\n", h, (unsigned)h);
        }
        if (bad)
            fail("spk_half_to_float differs from sr_spike_f16_to_f32 on " + std::to_string(bad) + " inputs");
        else
            g_pass++;
    }

    // 0b. the core's code extraction (shifts and masks) = sr_spike_line_get, every format/row
    {
        int bad = 0;
        for (int rep = 0; rep < 64; rep++) {
            spk_line l;
            for (int i = 0; i < 8; i++) l.v[i] = rnd();
            uint8_t by[64];
            memcpy(by, &l, 64);
            for (int fmt = 0; fmt < 4; fmt++)
                for (int32_t r = 0; r < sr_spike_tile_width(fmt); r++)
                    if ((int32_t)spk_core_code(l, (uint32_t)fmt, (uint32_t)r) != sr_spike_line_get(by, fmt, r))
                        bad++;
        }
        if (bad)
            fail("spk_core_code differs from sr_spike_line_get in " + std::to_string(bad) + " cases");
        else
            g_pass++;
    }

    // 0c. the bounded-FIFO simulation detects a deadlock and names the stuck stages: a
    //     producer that fills FIFO 'a' (depth 2) before writing 'b', a consumer that reads
    //     'b' first. Run in a child process (the report exits with status 3).
    {
        int fds[2];
        if (pipe(fds) != 0) {
            fail("deadlock self-test: pipe");
        } else {
            pid_t pid = fork();
            if (pid == 0) {
                dup2(fds[1], 2);
                setenv("SPK_CSIM_TIMEOUT_MS", "300", 1);
                spk_fifo<int, 2> a("a"), b("b");
                SPK_DATAFLOW_BEGIN();
                SPK_STAGE("producer", { for (int i = 0; i < 3; i++) a.write(i); b.write(0); });
                SPK_STAGE("consumer", { (void)b.read(); for (int i = 0; i < 3; i++) (void)a.read(); });
                SPK_DATAFLOW_END();
                _exit(0);
            }
            close(fds[1]);
            std::string err;
            char buf[512];
            ssize_t k;
            while ((k = read(fds[0], buf, sizeof buf)) > 0) err.append(buf, (size_t)k);
            close(fds[0]);
            int st = 0;
            waitpid(pid, &st, 0);
            const bool named = err.find("producer") != std::string::npos &&
                               err.find("writes full FIFO 'a'") != std::string::npos &&
                               err.find("consumer") != std::string::npos &&
                               err.find("reads empty FIFO 'b'") != std::string::npos;
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 3 || !named)
                fail("deadlock self-test: want exit 3 naming both stages, got status " + std::to_string(st) +
                     " and: " + err);
            else
                g_pass++;
        }
    }

    // 1. every format x every encoding, token scale and grouped, partial tiles
    const char *fmt_name[4] = {"Q4_1", "Q8_0", "I8_ROW", "TERNARY"};
    const char *enc_name[5] = {"sign-magnitude", "twos-complement", "ternary", "binary", "naf"};
    const float shares[4][3] = {{0.45f, 0.275f, 0.275f}, {1, 0, 0}, {0, 0, 1}, {1, 1, 1}};
    int shape_i = 0;
    for (int fmt = 0; fmt < 4; fmt++) {
        for (int enc = 0; enc < 5; enc++) {
            for (int grouped = 0; grouped < 2; grouped++) {
                for (int rep = 0; rep < 2; rep++, shape_i++) {
                    const int32_t tw = sr_spike_tile_width(fmt);
                    const int32_t n_in = 32 * rnd_int(1, rep ? 48 : 6);
                    const int32_t n_out = rnd_int(1, 3 * tw + 7);
                    const bool binary = enc == SR_SPIKE_BINARY;
                    const int32_t n = (grouped || binary || rnd() % 2) ? n_in : rnd_int(1, n_in);
                    int32_t T;
                    if (sr_spike_encoding_is_bitwise(enc))
                        T = rnd_int(1, rep ? 16 : 8);
                    else
                        T = rnd_int(1, 16);
                    if (enc == SR_SPIKE_TWOS_COMPLEMENT && T < 2) T = 2;
                    const int32_t z = binary ? rnd_int(0, T / 2) : 0;
                    const int32_t group = grouped ? 32 * rnd_int(1, n_in / 32 > 1 ? n_in / 64 + 1 : 1) : 0;
                    WeightsBox w;
                    make_weights(w, fmt, n_out, n_in, binary);
                    PlanesBox p;
                    make_planes(p, enc, T, n, group, z);
                    if (sr_spike_matvec_check(&w.w, &p.x, 0, w.w.n_out) != SR_OK) {
                        // out of the int32 bound (rare with T = 16): same case with T = 4
                        make_planes(p, enc, 4, n, group, binary ? 1 : 0);
                    }
                    char nm[160];
                    snprintf(nm, sizeof nm, "random %s %s T=%d n=%d/%d group=%d z=%d", fmt_name[fmt],
                             enc_name[enc], p.x.T, n, n_in, p.x.group, z);
                    run_case(nm, {{&w.w, 0, std::to_string(n_out) + " rows"}}, {{0, &p.x}},
                             shares[shape_i % 4], shape_i % 3);
                }
            }
        }
    }

    // 2. one run, several jobs: a transformer block's worth (q, k, v share an input; gate
    //    and up share another; mixed formats), engines with different shares
    for (int rep = 0; rep < 3; rep++) {
        const int32_t d = 32 * rnd_int(2, 10), ff = 32 * rnd_int(3, 20);
        WeightsBox q, k, v, o, gate, up, down, tern;
        make_weights(q, SR_SPIKE_W_Q4_1, d, d, false);
        make_weights(k, SR_SPIKE_W_Q4_1, d / 3 + 1, d, false);
        make_weights(v, SR_SPIKE_W_Q8_0, d / 3 + 1, d, false);
        make_weights(o, SR_SPIKE_W_I8_ROW, d, d, false);
        make_weights(gate, SR_SPIKE_W_Q4_1, ff, d, false);
        make_weights(up, SR_SPIKE_W_TERNARY, ff, d, false);
        make_weights(down, SR_SPIKE_W_Q4_1, d, ff, false);
        make_weights(tern, SR_SPIKE_W_TERNARY, 300, ff, false);
        PlanesBox xa, xo, xf, xd;
        encode_mean(xa, realistic_activation(d), 2.0f);
        encode_max(xo, realistic_activation(d), 8, 0, SR_SPIKE_SIGN_MAGNITUDE);
        encode_max(xf, realistic_activation(d), 6, 32, SR_SPIKE_SIGN_MAGNITUDE);
        encode_mean(xd, realistic_activation(ff), 3.0f);
        run_case("block run " + std::to_string(rep),
                 {{&q.w, 0, "q"}, {&k.w, 0, "k"}, {&v.w, 0, "v"}, {&o.w, 1, "o"}, {&gate.w, 2, "gate"},
                  {&up.w, 2, "up"}, {&down.w, 3, "down"}, {&tern.w, 3, "tern"}},
                 {{0, &xa.x}, {1, &xo.x}, {2, &xf.x}, {3, &xd.x}}, shares[rep], rep);
    }

    // 2b. shapes that stress the FIFO depths (bit exact, no deadlock): the widest input
    //     (16384: 512 blocks of fire masks and plane masks per job, T = 16), inputs where
    //     every input or none fires, one engine doing all the work while the others idle,
    //     and a run of 40 small jobs (job FIFOs full, engines on different jobs).
    {
        WeightsBox wide, tall;
        make_weights(wide, SR_SPIKE_W_Q4_1, 300, 16384, false);
        make_weights(tall, SR_SPIKE_W_TERNARY, 256 * 9 + 3, 64, false);
        PlanesBox dense, none, rate, x64;
        {
            std::vector<int32_t> cnt(16384);
            for (auto &c : cnt) c = rnd_int(1, 15) * (rnd() % 2 ? 1 : -1);  // every input fires
            std::vector<float> sc(1, 0.01f);
            must(sr_spike_planes_init(&dense.x, 16384, 16), "planes");
            must(sr_spike_planes_from_counts(&dense.x, cnt.data(), 16384, SR_SPIKE_SIGN_MAGNITUDE, 4, 0, sc.data(), 0),
                 "planes");
            std::fill(cnt.begin(), cnt.end(), 0);  // no input fires
            must(sr_spike_planes_init(&none.x, 16384, 16), "planes");
            must(sr_spike_planes_from_counts(&none.x, cnt.data(), 16384, SR_SPIKE_SIGN_MAGNITUDE, 16, 0, sc.data(), 0),
                 "planes");
        }
        make_planes(rate, SR_SPIKE_TERNARY, 16, 16384, 0, 0);
        make_planes(x64, SR_SPIKE_SIGN_MAGNITUDE, 16, 64, 0, 0);
        const float one[3] = {1, 0, 0}, even[3] = {1, 1, 1}, last[3] = {0, 0, 1};
        run_case("stress all fire n=16384", {{&wide.w, 0, "wide"}}, {{0, &dense.x}}, even);
        run_case("stress none fire n=16384 T=16", {{&wide.w, 0, "wide"}}, {{0, &none.x}}, one);
        run_case("stress ternary T=16 n=16384", {{&wide.w, 0, "wide"}}, {{0, &rate.x}}, last);
        run_case("stress 10 ternary tiles, one engine", {{&tall.w, 0, "tall"}}, {{0, &x64.x}}, one);
        std::vector<WeightsBox> many(40);
        std::vector<Mat> mats;
        for (int i = 0; i < 40; i++) {
            make_weights(many[(size_t)i], i % 4, rnd_int(1, 300), 64, false);
            mats.push_back({&many[(size_t)i].w, 0, "job " + std::to_string(i)});
        }
        run_case("stress 40 jobs in one run", mats, {{0, &x64.x}}, even, 2);
    }

    // 3. real weights: the fixture (always) and the model (when given)
    if (fixture) {
        model_cases(fixture, "fixture",
                    {{"blk.0.ffn_gate.weight", 0}, {"blk.0.attn_k.weight", 0}, {"blk.0.ffn_down.weight", 0},
                     {"token_embd.weight", 0}});
    }
    if (model) {
        model_cases(model, "model",
                    {{"blk.0.attn_q.weight", 0}, {"blk.0.attn_k.weight", 0}, {"blk.0.attn_v.weight", 0},
                     {"blk.0.attn_output.weight", 0}, {"blk.0.ffn_gate.weight", 0}, {"blk.0.ffn_up.weight", 0},
                     {"blk.0.ffn_down.weight", 0}, {"blk.29.ffn_down.weight", 0}, {"token_embd.weight", 0}});
    }

    printf("csim: %d passed, %d failed (seed 0x%llx%s%s)\n", g_pass, g_fail, (unsigned long long)seed,
           fixture ? ", fixture" : ", no fixture", model ? ", model" : "");
    return g_fail ? 1 : 0;
}
