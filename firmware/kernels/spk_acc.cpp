// spk_acc.cpp - spike matrix-vector products for the VCK190 (Vitis HLS 2022.1, C++14), v2.
//
// One kernel run executes n_jobs descriptors (spk_job, kernels/spk_acc.h); one job = one
// linear layer y = W x where x arrives as spike planes and W streams from DDR4/LPDDR4. The
// arithmetic is include/spikerun/sr-spike.h's: the integer part is spike-gated accumulation
// (kernels/spk_core.cpp: per plane, per firing input, one add or subtract of that input's
// code line into the lane accumulators, Horner shifts between planes; no multiplier), and
// the integer->float step calls sr_spike_rescale_* (the one shared definition).
//
// Dataflow (canonical: the top body is only calls, every FIFO has one producer and one
// consumer, scalars by value; depths in kernels/spk_core.h):
//
//   read_jobs -+-> load_spikes -+-fire masks-> load_w_e (port w_e: bursts over runs of
//              |                |               firing inputs) --code lines--> acc_e
//              |                +-slot info, plane masks-----------------------> acc_e
//              |                +-scales-------------------------------------> rescale_e
//              +-> load_w_e --scale lines----------------------------------------> rescale_e
//              |   acc_e --N, A lines--> rescale_e --(address, y line)--> store --> out
//              +-> store (run length)                        (e = 0, 1, 2: three engines)
//
// load_spikes reads each job's slot once, sends every engine's load_w the fire mask of each
// 32-input block (inputs that fire in some plane) so that weight lines of silent inputs are
// never fetched, and every acc the plane masks. store writes the three engines' lines as
// they arrive (each line carries its address), so no engine waits for another.
//
// C-simulation (tb/spk_acc_tb.cpp, g++/clang++ -std=c++14): every stage runs as its own
// thread and every FIFO is bounded at its declared depth (kernels/spk_fifo.h); a deadlock
// stops the simulation with the stuck stages named.
#include "spk_acc.h"
#include "spk_core.h"
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
static_assert(sizeof(spk_sinfo) == 32, "slot info is 8 words");

SPK_CSIM_ONLY(spk_load_counters spk_load_count[SPK_N_ENGINES];)

#define SPK_LANES SPK_MAX_TILE   // rescale lanes (rows per line, at most 256)

// ---------------------------------------------------------------------------------------
// Small helpers (no state, no floating point except where noted).

static inline uint32_t line_word(const spk_line &l, int i) {  // 32-bit word i (0..15)
    return (uint32_t)(l.v[i >> 1] >> (32 * (i & 1)));
}

static inline void line_set_word(spk_line &l, int i, uint32_t v) {
    uint64_t m = (uint64_t)0xffffffffu << (32 * (i & 1));
    l.v[i >> 1] = (l.v[i >> 1] & ~m) | ((uint64_t)v << (32 * (i & 1)));
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

// Processes.

static void read_jobs(const spk_line *jobs, uint32_t job_first, uint32_t n_jobs,
                      spk_fifo<spk_job, SPK_D_JOB> &j_spk, spk_fifo<spk_job, SPK_D_JOB> &j_w0,
                      spk_fifo<spk_job, SPK_D_JOB> &j_w1, spk_fifo<spk_job, SPK_D_JOB> &j_w2,
                      spk_fifo<spk_job, SPK_D_JOB> &j_out) {
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

// Reads each job's input slot once and sends: slot info and scales to the rescalers, the fire
// mask of every block to the weight loaders, slot info and plane masks to the accumulators.
static void load_spikes(const spk_line *spk, uint32_t n_jobs, spk_fifo<spk_job, SPK_D_JOB> &j_in,
                        spk_fifo<spk_xinfo, SPK_D_INFO> &x0, spk_fifo<spk_xinfo, SPK_D_INFO> &x1,
                        spk_fifo<spk_xinfo, SPK_D_INFO> &x2, spk_fifo<uint32_t, SPK_D_WORDS> &s0,
                        spk_fifo<uint32_t, SPK_D_WORDS> &s1, spk_fifo<uint32_t, SPK_D_WORDS> &s2,
                        spk_fifo<uint32_t, SPK_D_WORDS> &f0, spk_fifo<uint32_t, SPK_D_WORDS> &f1,
                        spk_fifo<uint32_t, SPK_D_WORDS> &f2, spk_fifo<spk_sinfo, SPK_D_INFO> &i0,
                        spk_fifo<spk_sinfo, SPK_D_INFO> &i1, spk_fifo<spk_sinfo, SPK_D_INFO> &i2,
                        spk_fifo<uint32_t, SPK_D_WORDS> &m0, spk_fifo<uint32_t, SPK_D_WORDS> &m1,
                        spk_fifo<uint32_t, SPK_D_WORDS> &m2) {
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
                        h.enc <= SR_SPIKE_NAF && h.n >= 1 && h.n <= job.n_in &&
                        h.n_words == (h.n + SPK_BLOCK - 1) / SPK_BLOCK && h.group >= 1 &&
                        h.n_groups >= 1 && h.n_groups <= h.n_words &&
                        h.n_groups == (h.n + h.group - 1) / h.group &&
                        (h.enc == SR_SPIKE_BINARY ? (h.offset >= 0 && h.offset <= (int32_t)SPK_MAX_OFFSET)
                                                  : h.offset == 0);
        const uint32_t T = ok ? h.T : 0u;
        const uint32_t n_words = ok ? h.n_words : 0u;
        const uint32_t n_groups = ok ? h.n_groups : 0u;
        const uint32_t z = ok ? (uint32_t)h.offset : 0u;
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
        // rescalers: slot info and activation scales
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
        // weight loaders: per block, the inputs that fire in some plane (with the binary
        // code's offset every input below n does: the offset is a spike train of its own)
        const uint32_t nb = job.n_in / SPK_BLOCK;
        for (uint32_t bb = 0; bb < nb; bb++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 18 max = 512
            uint32_t fire = 0;
            for (uint32_t tt = 0; tt < SPK_MAX_T; tt++) {
#pragma HLS UNROLL
                if (tt < T && bb < n_words) fire |= bits[tt][0][bb] | bits[tt][1][bb];
            }
            if (z && bb < n_words) {
                const uint32_t part = h.n % SPK_BLOCK;
                fire |= (bb + 1 == n_words && part) ? (1u << part) - 1u : 0xffffffffu;
            }
            f0.write(fire);
            f1.write(fire);
            f2.write(fire);
        }
        // accumulators: slot info and the plane masks
        spk_sinfo si;
        si.ok = ok ? 1u : 0u;
        si.T = T;
        si.enc = h.enc;
        si.z = z;
        si.n = ok ? h.n : 0u;
        si.n_words = n_words;
        si.pad[0] = si.pad[1] = 0;
        i0.write(si);
        i1.write(si);
        i2.write(si);
        t = 0;
        s = 0;
        b = 0;
        for (uint32_t k = 0; k < n_bits_words; k++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 36 max = 16384
            const uint32_t v = bits[t][s][b];
            m0.write(v);
            m1.write(v);
            m2.write(v);
            if (++b == n_words) {
                b = 0;
                if (++s == 2) {
                    s = 0;
                    ++t;
                }
            }
        }
    }
}

// Streams engine e's shard of each job: per chunk, per block, bursts over the runs of
// firing inputs' code lines (to acc_e), the block's scale lines (to rescale_e; a run that
// reaches column 31 continues into them in the same burst), and per chunk the row-scale
// lines. Lines of inputs that fire in no plane are never read.
static void load_w(const spk_line *w, int e, uint32_t n_jobs, spk_fifo<spk_job, SPK_D_JOB> &j_in,
                   spk_fifo<spk_job, SPK_D_JOB> &j_acc, spk_fifo<uint32_t, SPK_D_WORDS> &f_in,
                   spk_fifo<spk_line, SPK_D_CODES> &codes, spk_fifo<spk_line, SPK_D_SCALE> &scales) {
    uint32_t fm[SPK_MAX_WORDS];  // fire masks of the job's blocks
    for (uint32_t ji = 0; ji < n_jobs; ji++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 256
        const spk_job job = j_in.read();
        j_acc.write(job);
        const uint32_t nb = job.n_in / SPK_BLOCK;
        for (uint32_t b = 0; b < nb; b++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 18 max = 512
            fm[b] = f_in.read();
        }
        const uint32_t bs = spk_block_scale_lines(job.fmt);
        const uint32_t per_block = SPK_BLOCK + bs;
        const uint32_t rs = spk_row_scale_lines(job.fmt);
        const uint64_t scale_bits = (((uint64_t)1 << bs) - 1u) << SPK_BLOCK;
        uint64_t base = job.w_off[e];  // line of the current block
        for (uint32_t c = 0; c < job.chunks[e]; c++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 128
            for (uint32_t b = 0; b < nb; b++) {
#pragma HLS LOOP_TRIPCOUNT min = 18 max = 512
                uint64_t m = (uint64_t)fm[b] | scale_bits;  // lines to read: 32 codes + bs scales
                while (m) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 17
                    const uint32_t start = (uint32_t)__builtin_ctzll(m);
                    const uint64_t above = ~(m >> start);
                    const uint32_t len = (uint32_t)__builtin_ctzll(above);  // run of set bits
                    m &= ~((((uint64_t)1 << len) - 1u) << start);
                    for (uint32_t k = 0; k < len; k++) {  // one burst
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 40
                        const uint32_t pos = start + k;
                        const spk_line l = w[base + pos];
                        if (pos < SPK_BLOCK)
                            codes.write(l);
                        else
                            scales.write(l);
                    }
                    SPK_CSIM_ONLY(spk_load_count[e].bursts++; spk_load_count[e].lines += len;)
                }
                base += per_block;
            }
            for (uint32_t k = 0; k < rs; k++) {  // row scales of the chunk: one burst
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 0 max = 16
                scales.write(w[base + k]);
            }
            SPK_CSIM_ONLY(if (rs) { spk_load_count[e].bursts++; spk_load_count[e].lines += rs; })
            base += rs;
        }
    }
}

// Float part of engine e: sr-spike.h section 4 per row, then tile_w/16 output lines per
// chunk, each with its address in `out`. Rows are handled 16 at a time (one line of A).
static void rescale(int e, uint32_t n_jobs, spk_fifo<spk_job, SPK_D_JOB> &j_in,
                    spk_fifo<spk_xinfo, SPK_D_INFO> &x_in, spk_fifo<uint32_t, SPK_D_WORDS> &sx_in,
                    spk_fifo<spk_line, SPK_D_A> &a_in, spk_fifo<spk_line, SPK_D_SCALE> &scales,
                    spk_fifo<spk_yline, SPK_D_Y> &y_out) {
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
        // output line address: the job's rows of engines 0 .. e-1 come first
        uint32_t addr = job.out_off;
        for (int k = 0; k < e; k++) addr += job.chunks[k] * lines16;
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
                spk_yline yl;
                yl.data = o;
                yl.addr = addr++;
                y_out.write(yl);
            }
        }
    }
}

// Writes the engines' output lines to `out` as they arrive, whichever engine has one (each
// line carries its address), so a slow engine never holds up the others. The descriptors
// only tell how many lines the run has.
static void store(spk_line *out, uint32_t n_jobs, spk_fifo<spk_job, SPK_D_JOB> &j_in,
                  spk_fifo<spk_yline, SPK_D_Y> &y0, spk_fifo<spk_yline, SPK_D_Y> &y1,
                  spk_fifo<spk_yline, SPK_D_Y> &y2) {
    uint32_t jobs_read = 0;
    uint64_t total = 0, written = 0;
    uint32_t turn = 0;  // engine tried first: rotates, so no engine starves
    while (jobs_read < n_jobs || written < total) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 8 max = 100000
        spk_job j = spk_job();
        spk_yline y = spk_yline();
        bool got = false;
        if (jobs_read < n_jobs && j_in.read_nb(j)) {
            total += (uint64_t)(j.chunks[0] + j.chunks[1] + j.chunks[2]) * (spk_tile_rows(j.fmt) / 16u);
            jobs_read++;
            SPK_CSIM_ONLY(spk_csim_progress();)
            continue;
        }
        for (uint32_t k = 0; k < SPK_N_ENGINES && !got; k++) {
            const uint32_t e = turn + k < SPK_N_ENGINES ? turn + k : turn + k - SPK_N_ENGINES;
            got = e == 0 ? y0.read_nb(y) : e == 1 ? y1.read_nb(y) : y2.read_nb(y);
        }
        turn = turn + 1 == SPK_N_ENGINES ? 0 : turn + 1;
        if (got) {
            out[y.addr] = y.data;
            written++;
            SPK_CSIM_ONLY(spk_csim_progress();)
        } else {
            SPK_CSIM_ONLY(spk_csim_idle("waits for output lines from rescale_0/1/2");)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Top.

extern "C" void spk_acc(const spk_line *w0, const spk_line *w1, const spk_line *w2,
                        const spk_line *jobs, const spk_line *spk, spk_line *out,
                        unsigned int job_first, unsigned int n_jobs) {
#pragma HLS INTERFACE m_axi port = w0 offset = slave bundle = gmem0 max_read_burst_length = 64 num_read_outstanding = 32 depth = 4096
#pragma HLS INTERFACE m_axi port = w1 offset = slave bundle = gmem1 max_read_burst_length = 64 num_read_outstanding = 32 depth = 4096
#pragma HLS INTERFACE m_axi port = w2 offset = slave bundle = gmem2 max_read_burst_length = 64 num_read_outstanding = 32 depth = 4096
#pragma HLS INTERFACE m_axi port = jobs offset = slave bundle = gmem3 max_read_burst_length = 16 depth = 64
#pragma HLS INTERFACE m_axi port = spk offset = slave bundle = gmem4 max_read_burst_length = 64 num_read_outstanding = 8 depth = 4096
#pragma HLS INTERFACE m_axi port = out offset = slave bundle = gmem5 max_write_burst_length = 16 num_write_outstanding = 16 depth = 4096
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

    spk_fifo<spk_job, SPK_D_JOB> j_spk("j_spk"), j_w0("j_w0"), j_w1("j_w1"), j_w2("j_w2"),
        j_a0("j_a0"), j_a1("j_a1"), j_a2("j_a2"), j_r0("j_r0"), j_r1("j_r1"), j_r2("j_r2"),
        j_out("j_out");
    spk_fifo<spk_xinfo, SPK_D_INFO> x0("x0"), x1("x1"), x2("x2");
    spk_fifo<spk_sinfo, SPK_D_INFO> i0("i0"), i1("i1"), i2("i2");
    spk_fifo<uint32_t, SPK_D_WORDS> s0("s0"), s1("s1"), s2("s2"), f0("f0"), f1("f1"), f2("f2"),
        m0("m0"), m1("m1"), m2("m2");
    spk_fifo<spk_line, SPK_D_CODES> l0("l0"), l1("l1"), l2("l2");
    spk_fifo<spk_line, SPK_D_SCALE> sc0("sc0"), sc1("sc1"), sc2("sc2");
    spk_fifo<spk_line, SPK_D_A> a0("a0"), a1("a1"), a2("a2");
    spk_fifo<spk_yline, SPK_D_Y> y0("y0"), y1("y1"), y2("y2");

    SPK_DATAFLOW_BEGIN();
    SPK_STAGE("read_jobs", read_jobs(jobs, job_first, n_jobs, j_spk, j_w0, j_w1, j_w2, j_out));
    SPK_STAGE("load_spikes", load_spikes(spk, n_jobs, j_spk, x0, x1, x2, s0, s1, s2, f0, f1, f2, i0,
                                         i1, i2, m0, m1, m2));
    SPK_STAGE("load_w_0", load_w(w0, 0, n_jobs, j_w0, j_a0, f0, l0, sc0));
    SPK_STAGE("load_w_1", load_w(w1, 1, n_jobs, j_w1, j_a1, f1, l1, sc1));
    SPK_STAGE("load_w_2", load_w(w2, 2, n_jobs, j_w2, j_a2, f2, l2, sc2));
    SPK_STAGE("acc_0", spk_core_acc(0, n_jobs, j_a0, j_r0, i0, m0, l0, a0));
    SPK_STAGE("acc_1", spk_core_acc(1, n_jobs, j_a1, j_r1, i1, m1, l1, a1));
    SPK_STAGE("acc_2", spk_core_acc(2, n_jobs, j_a2, j_r2, i2, m2, l2, a2));
    SPK_STAGE("rescale_0", rescale(0, n_jobs, j_r0, x0, s0, a0, sc0, y0));
    SPK_STAGE("rescale_1", rescale(1, n_jobs, j_r1, x1, s1, a1, sc1, y1));
    SPK_STAGE("rescale_2", rescale(2, n_jobs, j_r2, x2, s2, a2, sc2, y2));
    SPK_STAGE("store", store(out, n_jobs, j_out, y0, y1, y2));
    SPK_DATAFLOW_END();
    SPK_CSIM_ONLY(spk_csim_count_run(n_jobs);)
}
