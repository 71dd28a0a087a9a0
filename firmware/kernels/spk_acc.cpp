// spk_acc.cpp - spike matrix-vector products for the VCK190 (Vitis HLS 2022.1, C++14).
//
// One kernel run executes n_jobs descriptors (spk_job, kernels/spk_acc.h) one after another;
// one job = one linear layer y = W x where x arrives as spike planes and W streams from
// DDR4/LPDDR4. The arithmetic is sr-spike.h's, literally: weight codes are read with
// sr_spike_line_get, plane weights come from sr_spike_plane_shift/_sign, accumulators are
// int32 and the integer->float step calls sr_spike_rescale_* (the one shared definition).
//
// Dataflow (canonical: the top body is only calls, every FIFO has one producer and one
// consumer, scalars by value):
//
//   read_jobs --+--> load_spikes --counts--> acc_e      (x3 engines, e = 0, 1, 2)
//               |                --scales--> rescale_e
//               +--> load_w_e (port w_e, bursts) --code lines--> acc_e --A--> rescale_e
//               |                                --scale lines-------------> rescale_e
//               +--> store <--y lines-- rescale_e
//
// acc_e: for each chunk of tile_w rows, for each 32-input block, 32 code lines (one per
//   input column j, one per cycle); lane r adds the column's code times the column's count.
//   The count n_j = sum_t c_t sigma_jt - z is decoded from the planes once per job by
//   load_spikes (shifts and adds); the product q * n_j is formed by shift-and-add over the
//   bits of the (at most 8-bit) code, so the datapath has adders and shifts only. Integer
//   sums are order-independent below the int32 bound that sr-spike.h enforces (the host
//   rejects inputs above it), so these int32 results equal the CPU kernels' exactly.
// rescale_e: per block (Q4_1, Q8_0) or per activation group (I8_ROW, TERNARY) the float
//   sequence of sr-spike.h section 4, per row in block order.
//
// C-simulation: g++ -std=c++14 -O2 -Wall -Wextra -Wno-unknown-pragmas (tb/spk_acc_tb.cpp).
#include "spk_acc.h"
#include "spk_fifo.h"

#include "../../include/spikerun/sr-spike.h"

#include <stdint.h>
#include <string.h>

// Interface check: the top function's parameter order must be SPK_ACC_ARGS's.
#define SPK_X_IDX(i, n, k, b, m, o, t, w) static_assert(SPK_ARG_##n == i, "argument table");
SPK_ACC_ARGS(SPK_X_IDX)
#undef SPK_X_IDX
static_assert(SPK_ARG_w0 == 0 && SPK_ARG_w1 == 1 && SPK_ARG_w2 == 2 && SPK_ARG_jobs == 3 &&
                  SPK_ARG_spk == 4 && SPK_ARG_out == 5 && SPK_ARG_job_first == 6 &&
                  SPK_ARG_n_jobs == 7 && SPK_ACC_NARGS == 8,
              "spk_acc(w0, w1, w2, jobs, spk, out, job_first, n_jobs) follows SPK_ACC_ARGS");
static_assert(SPK_MAX_TILE == SR_SPIKE_MAX_TILE && SPK_BLOCK == SR_SPIKE_BLOCK &&
                  SPK_LINE_BYTES == SR_SPIKE_LINE_BYTES && SPK_MAX_T <= SR_SPIKE_MAX_T_BITWISE,
              "spk_acc.h and sr-spike.h agree");

#define SPK_LANES SPK_MAX_TILE   // datapath lanes (rows per line, at most 256)

// ---------------------------------------------------------------------------------------
// Small helpers (no state, no floating point except where noted).

static inline uint32_t line_word(const spk_line &l, int i) {  // 32-bit word i (0..15)
    return (uint32_t)(l.v[i >> 1] >> (32 * (i & 1)));
}

static inline void line_set_word(spk_line &l, int i, uint32_t v) {
    uint64_t m = (uint64_t)0xffffffffu << (32 * (i & 1));
    l.v[i >> 1] = (l.v[i >> 1] & ~m) | ((uint64_t)v << (32 * (i & 1)));
}

static inline void line_bytes(const spk_line &l, uint8_t by[64]) {
#pragma HLS INLINE
    for (int i = 0; i < 64; i++) {
#pragma HLS UNROLL
        by[i] = (uint8_t)(l.v[i >> 3] >> (8 * (i & 7)));
    }
}

static inline float bits_to_float(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint32_t float_to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

// q * n for a code q in -128..127 by shift-and-add over q's bits (two's complement:
// bit 7 weighs -128). Shifts are done on uint32 so negative n is well defined; the sum is
// within int32 by the bound sr-spike.h enforces.
static inline int32_t code_times_count(int32_t q, int32_t n) {
#pragma HLS INLINE
    uint32_t uq = (uint32_t)q & 0xffu;
    uint32_t un = (uint32_t)n;
    uint32_t s = 0;
    for (int k = 0; k < 7; k++) {
#pragma HLS UNROLL
        if ((uq >> k) & 1u) s += un << k;
    }
    if ((uq >> 7) & 1u) s -= un << 7;
    return (int32_t)s;
}

static inline bool is_block_format(uint32_t fmt) {
    return fmt == SR_SPIKE_W_Q4_1 || fmt == SR_SPIKE_W_Q8_0;
}

static inline bool job_valid(const spk_job &j) {
    return j.fmt <= SR_SPIKE_W_TERNARY && j.n_in >= SPK_BLOCK && j.n_in <= SPK_MAX_COLS &&
           j.n_in % SPK_BLOCK == 0;
}

static inline spk_job line_to_job(const spk_line &l) {
    spk_job j;
    uint32_t w[16];
    for (int i = 0; i < 16; i++) w[i] = line_word(l, i);
    j.fmt = w[0];
    j.n_in = w[1];
    j.chunks[0] = w[2];
    j.chunks[1] = w[3];
    j.chunks[2] = w[4];
    j.w_off[0] = w[5];
    j.w_off[1] = w[6];
    j.w_off[2] = w[7];
    j.spk_off = w[8];
    j.out_off = w[9];
    for (int i = 0; i < 6; i++) j.reserved[i] = w[10 + i];
    if (!job_valid(j)) {  // never produced by the host; do no work rather than misbehave
        j.chunks[0] = j.chunks[1] = j.chunks[2] = 0;
        j.n_in = SPK_BLOCK;
        j.fmt = SR_SPIKE_W_Q8_0;
    }
    return j;
}

// Per-job message from load_spikes to a rescale stage (scales follow as words).
struct spk_xinfo {
    uint32_t ok;        // slot valid
    uint32_t n;         // activations
    uint32_t group;     // channels per scale
    uint32_t n_groups;  // scales that follow
};

// ---------------------------------------------------------------------------------------
// Processes.

static void read_jobs(const spk_line *jobs, uint32_t job_first, uint32_t n_jobs,
                      spk_fifo<spk_job, 4> &j_spk, spk_fifo<spk_job, 4> &j_w0,
                      spk_fifo<spk_job, 4> &j_w1, spk_fifo<spk_job, 4> &j_w2,
                      spk_fifo<spk_job, 8> &j_out) {
    for (uint32_t i = 0; i < n_jobs; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 256
        spk_job j = line_to_job(jobs[job_first + i]);
        j_spk.write(j);
        j_w0.write(j);
        j_w1.write(j);
        j_w2.write(j);
        j_out.write(j);
    }
}

// Reads each job's input slot, decodes every input column's count from the planes and
// sends the counts to the three accumulators and the scales to the three rescalers.
static void load_spikes(const spk_line *spk, uint32_t n_jobs, spk_fifo<spk_job, 4> &j_in,
                        spk_fifo<int32_t, 64> &c0, spk_fifo<int32_t, 64> &c1,
                        spk_fifo<int32_t, 64> &c2, spk_fifo<spk_xinfo, 2> &x0,
                        spk_fifo<spk_xinfo, 2> &x1, spk_fifo<spk_xinfo, 2> &x2,
                        spk_fifo<uint32_t, 64> &s0, spk_fifo<uint32_t, 64> &s1,
                        spk_fifo<uint32_t, 64> &s2) {
    uint32_t bits[SPK_MAX_T][2][SPK_MAX_WORDS];  // (t, sign, word) of the slot
#pragma HLS ARRAY_PARTITION variable = bits complete dim = 1
#pragma HLS ARRAY_PARTITION variable = bits complete dim = 2
#pragma HLS BIND_STORAGE variable = bits type = ram_2p impl = bram
    for (uint32_t ji = 0; ji < n_jobs; ji++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 256
        const spk_job job = j_in.read();
        const spk_line hl = spk[job.spk_off];
        spk_slot_hdr h;
        h.T = line_word(hl, 0);
        h.enc = line_word(hl, 1);
        h.offset = (int32_t)line_word(hl, 2);
        h.group = line_word(hl, 3);
        h.n = line_word(hl, 4);
        h.n_words = line_word(hl, 5);
        h.n_groups = line_word(hl, 6);
        h.magic = line_word(hl, 7);
        const bool ok = h.magic == SPK_SLOT_MAGIC && h.T >= 1 && h.T <= SPK_MAX_T &&
                        h.enc <= SR_SPIKE_BINARY && h.n >= 1 && h.n <= job.n_in &&
                        h.n_words == (h.n + SPK_BLOCK - 1) / SPK_BLOCK && h.group >= 1 &&
                        h.n_groups >= 1 && h.n_groups <= h.n_words &&
                        h.n_groups == (h.n + h.group - 1) / h.group &&
                        (h.enc == SR_SPIKE_BINARY || h.offset == 0);
        const uint32_t T = ok ? h.T : 0u;
        const uint32_t n_words = ok ? h.n_words : 0u;
        const uint32_t n_groups = ok ? h.n_groups : 0u;
        // planes: word k of the bits run is (t, s, b) with k = (2t + s) * n_words + b
        const uint32_t n_bits_words = 2u * T * n_words;
        uint32_t t = 0, s = 0, b = 0;
        spk_line cur = {{0, 0, 0, 0, 0, 0, 0, 0}};
        for (uint32_t k = 0; k < n_bits_words; k++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 36 max = 16384
            if (k % 16u == 0) cur = spk[job.spk_off + 1u + k / 16u];  // one read per line
            bits[t][s][b] = line_word(cur, (int)(k % 16u));
            if (++b == n_words) {
                b = 0;
                if (++s == 2) {
                    s = 0;
                    ++t;
                }
            }
        }
        const spk_xinfo xi = {ok ? 1u : 0u, h.n, h.group, n_groups};
        x0.write(xi);
        x1.write(xi);
        x2.write(xi);
        const uint32_t sc_line = job.spk_off + 1u + spk_slot_bits_lines(T, n_words);
        for (uint32_t g = 0; g < n_groups; g++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 512
            if (g % 16u == 0) cur = spk[sc_line + g / 16u];
            const uint32_t v = line_word(cur, (int)(g % 16u));
            s0.write(v);
            s1.write(v);
            s2.write(v);
        }
        // counts: n_j = sum_t sign_t * 2^shift_t * sigma_jt - z, zero past n
        for (uint32_t j = 0; j < job.n_in; j++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 576 max = 16384
            int32_t cnt = 0;
            if (ok && j < h.n) {
                const uint32_t w = j / SPK_BLOCK, m = 1u << (j % SPK_BLOCK);
                uint32_t acc = 0;
                for (uint32_t tt = 0; tt < SPK_MAX_T; tt++) {
#pragma HLS UNROLL
                    if (tt < T) {
                        const int32_t sh = sr_spike_plane_shift((int32_t)h.enc, (int32_t)T, (int32_t)tt);
                        const int32_t sg = sr_spike_plane_sign((int32_t)h.enc, (int32_t)tt);
                        const uint32_t c = 1u << sh;
                        const bool pos = (bits[tt][0][w] & m) != 0;
                        const bool neg = (bits[tt][1][w] & m) != 0;
                        // sigma * sign * c, in modular uint32 arithmetic
                        if (pos) acc = sg < 0 ? acc - c : acc + c;
                        if (neg) acc = sg < 0 ? acc + c : acc - c;
                    }
                }
                if (h.enc == SR_SPIKE_BINARY) acc -= (uint32_t)h.offset;
                cnt = (int32_t)acc;
            }
            c0.write(cnt);
            c1.write(cnt);
            c2.write(cnt);
        }
    }
}

// Streams engine e's shard of each job: code lines to the accumulator, scale lines (block
// d/m, row scales) to the rescaler, in the order they are stored.
static void load_w(const spk_line *w, int e, uint32_t n_jobs, spk_fifo<spk_job, 4> &j_in,
                   spk_fifo<spk_job, 4> &j_acc, spk_fifo<spk_line, 64> &codes,
                   spk_fifo<spk_line, 32> &scales) {
    for (uint32_t ji = 0; ji < n_jobs; ji++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 256
        const spk_job job = j_in.read();
        j_acc.write(job);
        const uint32_t nb = job.n_in / SPK_BLOCK;
        const uint32_t bs = spk_block_scale_lines(job.fmt);
        const uint32_t per_block = SPK_BLOCK + bs;
        const uint32_t rs = spk_row_scale_lines(job.fmt);
        const uint64_t per_chunk = (uint64_t)nb * per_block + rs;
        const uint64_t total = per_chunk * job.chunks[e];
        // one flat burst per shard; position inside the chunk decides the destination
        uint64_t in_chunk = 0;
        for (uint64_t k = 0; k < total; k++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1440 max = 1000000
            const spk_line l = w[(uint64_t)job.w_off[e] + k];
            const bool row_scale = in_chunk >= (uint64_t)nb * per_block;
            const bool block_scale = !row_scale && (in_chunk % per_block) >= SPK_BLOCK;
            if (row_scale || block_scale)
                scales.write(l);
            else
                codes.write(l);
            if (++in_chunk == per_chunk) in_chunk = 0;
        }
    }
}

// Integer part of engine e: per chunk, per block, A[r] = sum_jj q(r, jj) * n_(32b+jj).
// Sends, per block, one header line (word 0 = N_b, the block's count sum) and tile_w/16
// lines of A (16 int32 per line).
static void acc(int e, uint32_t n_jobs, spk_fifo<spk_job, 4> &j_in, spk_fifo<spk_job, 4> &j_out,
                spk_fifo<int32_t, 64> &cnt_in, spk_fifo<spk_line, 64> &codes,
                spk_fifo<spk_line, 32> &a_out) {
    int32_t cnt[SPK_MAX_COLS];
#pragma HLS ARRAY_PARTITION variable = cnt cyclic factor = 2
    int32_t A[SPK_LANES];
#pragma HLS ARRAY_PARTITION variable = A complete
    for (uint32_t ji = 0; ji < n_jobs; ji++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 256
        const spk_job job = j_in.read();
        j_out.write(job);
        for (uint32_t j = 0; j < job.n_in; j++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 576 max = 16384
            cnt[j] = cnt_in.read();
        }
        const uint32_t nb = job.n_in / SPK_BLOCK;
        const int32_t fmt = (int32_t)job.fmt;
        const uint32_t tile_w = spk_tile_rows(job.fmt);
        for (uint32_t c = 0; c < job.chunks[e]; c++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 128
            for (uint32_t b = 0; b < nb; b++) {
#pragma HLS LOOP_TRIPCOUNT min = 18 max = 512
                for (int r = 0; r < (int)SPK_LANES; r++) {
#pragma HLS UNROLL
                    A[r] = 0;
                }
                int32_t N = 0;
                for (uint32_t jj = 0; jj < SPK_BLOCK; jj++) {
#pragma HLS PIPELINE II = 1
                    const spk_line l = codes.read();
                    uint8_t by[64];
#pragma HLS ARRAY_PARTITION variable = by complete
                    line_bytes(l, by);
                    const int32_t n = cnt[b * SPK_BLOCK + jj];
                    N += n;
                    for (int r = 0; r < (int)SPK_LANES; r++) {
#pragma HLS UNROLL
                        if ((uint32_t)r < tile_w) {
                            const int32_t q = sr_spike_line_get(by, fmt, r);
                            A[r] += code_times_count(q, n);
                        }
                    }
                }
                spk_line hdr = {{0, 0, 0, 0, 0, 0, 0, 0}};
                line_set_word(hdr, 0, (uint32_t)N);
                a_out.write(hdr);
                for (uint32_t k = 0; k < tile_w / 16u; k++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 4 max = 16
                    spk_line o = {{0, 0, 0, 0, 0, 0, 0, 0}};
                    for (int i = 0; i < 16; i++) {
#pragma HLS UNROLL
                        line_set_word(o, i, (uint32_t)A[16 * k + (uint32_t)i]);
                    }
                    a_out.write(o);
                }
            }
        }
    }
}

// Float part of engine e: sr-spike.h section 4 per row, then tile_w/16 output lines per
// chunk. Rows are handled 16 at a time (one line of A).
static void rescale(int e, uint32_t n_jobs, spk_fifo<spk_job, 4> &j_in,
                    spk_fifo<spk_xinfo, 2> &x_in, spk_fifo<uint32_t, 64> &sx_in,
                    spk_fifo<spk_line, 32> &a_in, spk_fifo<spk_line, 32> &scales,
                    spk_fifo<spk_line, 32> &y_out) {
    float sx[SPK_MAX_WORDS];
    float accf[SPK_LANES];   // float accumulators of the chunk's rows
    int32_t arow[SPK_LANES]; // int32 group sums (row formats)
    float d[SPK_LANES], m[SPK_LANES], sw[SPK_LANES];
#pragma HLS ARRAY_PARTITION variable = accf cyclic factor = 16
#pragma HLS ARRAY_PARTITION variable = arow cyclic factor = 16
#pragma HLS ARRAY_PARTITION variable = d cyclic factor = 16
#pragma HLS ARRAY_PARTITION variable = m cyclic factor = 16
#pragma HLS ARRAY_PARTITION variable = sw cyclic factor = 16
    for (uint32_t r = 0; r < SPK_LANES; r++) {
#pragma HLS UNROLL
        d[r] = 0.0f;
        m[r] = 0.0f;
        sw[r] = 0.0f;
    }
    for (uint32_t ji = 0; ji < n_jobs; ji++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 256
        const spk_job job = j_in.read();
        const spk_xinfo xi = x_in.read();
        for (uint32_t g = 0; g < xi.n_groups; g++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 512
            sx[g] = bits_to_float(sx_in.read());
        }
        const uint32_t fmt = job.fmt;
        const uint32_t nb = job.n_in / SPK_BLOCK;
        const uint32_t tile_w = spk_tile_rows(fmt);
        const uint32_t lines16 = tile_w / 16u;
        const bool block_fmt = is_block_format(fmt);
        const int grouped = xi.group < xi.n ? 1 : 0;
        const float sx0 = xi.n_groups ? sx[0] : 0.0f;
        const float nan = bits_to_float(0x7fc00000u);
        for (uint32_t c = 0; c < job.chunks[e]; c++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 128
            for (uint32_t r = 0; r < SPK_LANES; r++) {
#pragma HLS UNROLL
                accf[r] = 0.0f;
                arow[r] = 0;
            }
            for (uint32_t b = 0; b < nb; b++) {
#pragma HLS LOOP_TRIPCOUNT min = 18 max = 512
                const spk_line hdr = a_in.read();
                const int32_t N = (int32_t)line_word(hdr, 0);
                const uint32_t g = grouped ? (b * SPK_BLOCK) / xi.group : 0u;
                const bool g_valid = g < xi.n_groups;
                const float sxg = g_valid ? sx[g] : 0.0f;
                if (block_fmt) {
                    // d (and m for Q4_1): fp16, 32 rows per line
                    for (uint32_t k = 0; k < spk_block_scale_lines(fmt); k++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 2 max = 8
                        const spk_line l = scales.read();
                        const uint32_t half_lines = tile_w / 32u;  // lines of d (= of m)
                        const bool is_m = k >= half_lines;
                        const uint32_t r0 = (is_m ? k - half_lines : k) * 32u;
                        for (int i = 0; i < 32; i++) {
#pragma HLS UNROLL
                            const uint16_t hv = (uint16_t)(l.v[i >> 2] >> (16 * (i & 3)));
                            if (is_m)
                                m[r0 + (uint32_t)i] = spk_half_to_float(hv);
                            else
                                d[r0 + (uint32_t)i] = spk_half_to_float(hv);
                        }
                    }
                    for (uint32_t k = 0; k < lines16; k++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 4 max = 8
                        const spk_line al = a_in.read();
                        int32_t a16[16];
                        float acc16[16], d16[16], m16[16];
                        for (int i = 0; i < 16; i++) {
#pragma HLS UNROLL
                            a16[i] = (int32_t)line_word(al, i);
                            acc16[i] = accf[16 * k + (uint32_t)i];
                            d16[i] = d[16 * k + (uint32_t)i];
                            m16[i] = m[16 * k + (uint32_t)i];
                        }
                        sr_spike_rescale_block(acc16, a16, d16,
                                               fmt == SR_SPIKE_W_Q4_1 ? m16 : (const float *)0, N,
                                               sxg, grouped, 16);
                        for (int i = 0; i < 16; i++) {
#pragma HLS UNROLL
                            accf[16 * k + (uint32_t)i] = acc16[i];
                        }
                    }
                } else {
                    // row formats: integer group sums, one float step per finished group
                    const bool last = b + 1 == nb;
                    const bool group_end =
                        grouped && (last || ((b + 1) * SPK_BLOCK) / xi.group != g);
                    for (uint32_t k = 0; k < lines16; k++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 4 max = 16
                        const spk_line al = a_in.read();
                        int32_t a16[16];
                        float acc16[16];
                        for (int i = 0; i < 16; i++) {
#pragma HLS UNROLL
                            const uint32_t r = 16 * k + (uint32_t)i;
                            a16[i] = (int32_t)((uint32_t)arow[r] + line_word(al, i));
                            acc16[i] = accf[r];
                        }
                        if (group_end && g_valid) {
                            sr_spike_rescale_rows_group(acc16, a16, sxg, 16);
                            for (int i = 0; i < 16; i++) a16[i] = 0;
                        } else if (group_end) {
                            for (int i = 0; i < 16; i++) a16[i] = 0;
                        }
                        for (int i = 0; i < 16; i++) {
#pragma HLS UNROLL
                            const uint32_t r = 16 * k + (uint32_t)i;
                            arow[r] = a16[i];
                            accf[r] = acc16[i];
                        }
                    }
                }
            }
            // chunk done: final step and output
            if (!block_fmt) {
                for (uint32_t k = 0; k < lines16; k++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 4 max = 16
                    const spk_line l = scales.read();
                    for (int i = 0; i < 16; i++) {
#pragma HLS UNROLL
                        sw[16 * k + (uint32_t)i] = bits_to_float(line_word(l, i));
                    }
                }
            }
            for (uint32_t k = 0; k < lines16; k++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 4 max = 16
                float y16[16], acc16[16], sw16[16];
                int32_t a16[16];
                for (int i = 0; i < 16; i++) {
#pragma HLS UNROLL
                    acc16[i] = accf[16 * k + (uint32_t)i];
                    sw16[i] = sw[16 * k + (uint32_t)i];
                    a16[i] = arow[16 * k + (uint32_t)i];
                }
                if (block_fmt)
                    sr_spike_rescale_block_finish(y16, acc16, sx0, grouped, 16);
                else if (grouped)
                    sr_spike_rescale_rows_finish(y16, acc16, sw16, 16);
                else
                    sr_spike_rescale_rows(y16, a16, sw16, sx0, 16);
                spk_line o = {{0, 0, 0, 0, 0, 0, 0, 0}};
                for (int i = 0; i < 16; i++) {
#pragma HLS UNROLL
                    line_set_word(o, i, float_to_bits(xi.ok ? y16[i] : nan));
                }
                y_out.write(o);
            }
        }
    }
}

// Writes each job's outputs: engine 0's chunks, then engine 1's, then engine 2's.
static void store(spk_line *out, uint32_t n_jobs, spk_fifo<spk_job, 8> &j_in,
                  spk_fifo<spk_line, 32> &y0, spk_fifo<spk_line, 32> &y1,
                  spk_fifo<spk_line, 32> &y2) {
    for (uint32_t ji = 0; ji < n_jobs; ji++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 256
        const spk_job job = j_in.read();
        const uint32_t per_chunk = spk_tile_rows(job.fmt) / 16u;
        uint64_t pos = job.out_off;
        const uint64_t n0 = (uint64_t)job.chunks[0] * per_chunk;
        const uint64_t n1 = (uint64_t)job.chunks[1] * per_chunk;
        const uint64_t n2 = (uint64_t)job.chunks[2] * per_chunk;
        for (uint64_t k = 0; k < n0; k++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 4 max = 4096
            out[pos + k] = y0.read();
        }
        pos += n0;
        for (uint64_t k = 0; k < n1; k++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 4 max = 4096
            out[pos + k] = y1.read();
        }
        pos += n1;
        for (uint64_t k = 0; k < n2; k++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 4 max = 4096
            out[pos + k] = y2.read();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Top.

extern "C" void spk_acc(const spk_line *w0, const spk_line *w1, const spk_line *w2,
                        const spk_line *jobs, const spk_line *spk, spk_line *out,
                        unsigned int job_first, unsigned int n_jobs) {
#pragma HLS INTERFACE m_axi port = w0 offset = slave bundle = gmem0 max_read_burst_length = 64 num_read_outstanding = 16 depth = 4096
#pragma HLS INTERFACE m_axi port = w1 offset = slave bundle = gmem1 max_read_burst_length = 64 num_read_outstanding = 16 depth = 4096
#pragma HLS INTERFACE m_axi port = w2 offset = slave bundle = gmem2 max_read_burst_length = 64 num_read_outstanding = 16 depth = 4096
#pragma HLS INTERFACE m_axi port = jobs offset = slave bundle = gmem3 max_read_burst_length = 16 depth = 64
#pragma HLS INTERFACE m_axi port = spk offset = slave bundle = gmem4 max_read_burst_length = 64 num_read_outstanding = 8 depth = 4096
#pragma HLS INTERFACE m_axi port = out offset = slave bundle = gmem5 max_write_burst_length = 64 num_write_outstanding = 16 depth = 4096
#pragma HLS INTERFACE s_axilite port = w0
#pragma HLS INTERFACE s_axilite port = w1
#pragma HLS INTERFACE s_axilite port = w2
#pragma HLS INTERFACE s_axilite port = jobs
#pragma HLS INTERFACE s_axilite port = spk
#pragma HLS INTERFACE s_axilite port = out
#pragma HLS INTERFACE s_axilite port = job_first
#pragma HLS INTERFACE s_axilite port = n_jobs
#pragma HLS INTERFACE s_axilite port = return
#pragma HLS DATAFLOW

    spk_fifo<spk_job, 4> j_spk, j_w0, j_w1, j_w2, j_a0, j_a1, j_a2, j_r0, j_r1, j_r2;
    spk_fifo<spk_job, 8> j_out;
    spk_fifo<int32_t, 64> c0, c1, c2;
    spk_fifo<spk_xinfo, 2> x0, x1, x2;
    spk_fifo<uint32_t, 64> s0, s1, s2;
    spk_fifo<spk_line, 64> l0, l1, l2;
    spk_fifo<spk_line, 32> sc0, sc1, sc2, a0, a1, a2, y0, y1, y2;

    read_jobs(jobs, job_first, n_jobs, j_spk, j_w0, j_w1, j_w2, j_out);
    load_spikes(spk, n_jobs, j_spk, c0, c1, c2, x0, x1, x2, s0, s1, s2);
    load_w(w0, 0, n_jobs, j_w0, j_a0, l0, sc0);
    load_w(w1, 1, n_jobs, j_w1, j_a1, l1, sc1);
    load_w(w2, 2, n_jobs, j_w2, j_a2, l2, sc2);
    acc(0, n_jobs, j_a0, j_r0, c0, l0, a0);
    acc(1, n_jobs, j_a1, j_r1, c1, l1, a1);
    acc(2, n_jobs, j_a2, j_r2, c2, l2, a2);
    rescale(0, n_jobs, j_r0, x0, s0, a0, sc0, y0);
    rescale(1, n_jobs, j_r1, x1, s1, a1, sc1, y1);
    rescale(2, n_jobs, j_r2, x2, s2, a2, sc2, y2);
    store(out, n_jobs, j_out, y0, y1, y2);
}
