// spk_core.cpp - the spike-gated accumulation core of spk_acc (one instance per engine).
//
// Integer semantics: include/spikerun/sr-spike.h section 3. For one (chunk, 32-input block)
// the core computes, for every tile row r,
//   A_r = sum over planes p in Horner order of  (A_r << h_p) + sum_{j fires in p} s_jp q_rj
// where s_jp = +-1 is the spike's sign times the plane's sign (two's complement plane 0 is
// negative) and h_p is sr_spike_horner_shift. The binary code's offset z is a constant
// spike train on every input below n: its bits, most significant first, are extra planes
// placed before the code planes, each a -1 spike on every input (then A_r includes
// -z * sum_j q_rj, which is what the CPU kernels subtract with the row sums). Lane N does the
// same with code 1, so N = sum_j n_j, the block's count sum the Q4_1 rescale needs.
//
// Datapath per lane: acc = (shift ? acc << 1 : acc) +/- (enable ? q : 0): a mux and an
// adder/subtractor; no multiplier. Arithmetic is modulo 2^32 (uint32): the true value of
// every output fits int32 (sr_spike_matvec_check, called by the host for every step), so
// the modular result is exact whatever the intermediate values.
//
// Schedule (one loop iteration = one cycle at II = 1, counted in C-simulation):
//   fill:   one cycle per code line of an input that fires in some plane (the others are
//           never fetched: load_w reads only runs of firing inputs);
//   events: one cycle per (plane, firing input); the Horner shift rides on the plane's first
//           event; a plane with no event in this block costs one shift-only cycle (none
//           before the block's first event: the accumulators are still zero);
//   out:    1 + tile_w/16 cycles to send N and A.
#include "spk_core.h"

#include "../../include/spikerun/sr-spike.h"

SPK_CSIM_ONLY(spk_core_counters spk_core_count[SPK_N_ENGINES];)

static inline uint32_t line_field(const spk_line &l, uint32_t pos, uint32_t mask) {
#pragma HLS INLINE
    return (uint32_t)(l.v[pos >> 6] >> (pos & 63u)) & mask;
}

static inline uint32_t lane_code(const spk_line &l, uint32_t fmt, uint32_t r) {
#pragma HLS INLINE
    if (fmt == SR_SPIKE_W_Q4_1) {  // word ((r >> 6) << 4) | (r & 15), nibble (r >> 4) & 3
        const uint32_t w = ((r >> 6) << 4) | (r & 15u), k = (r >> 4) & 3u;
        return line_field(l, (w << 4) | (k << 2), 15u);
    }
    if (fmt == SR_SPIKE_W_TERNARY) {  // word ((r >> 7) << 4) | (r & 15), 2-bit field (r >> 4) & 7
        const uint32_t w = ((r >> 7) << 4) | (r & 15u), k = (r >> 4) & 7u;
        const uint32_t v = line_field(l, (w << 4) | (k << 1), 3u);
        return v == 1u ? 1u : (v == 3u ? 0xffffffffu : 0u);
    }
    const uint32_t b = line_field(l, r << 3, 255u);  // Q8_0, I8_ROW: byte r, int8
    return (b ^ 128u) - 128u;
}

uint32_t spk_core_code(const spk_line &l, uint32_t fmt, uint32_t r) { return lane_code(l, fmt, r); }

// Lane datapath: shift by one (Horner), then add or subtract the gated code.
static inline uint32_t lane_op(uint32_t acc, bool shift, bool enable, bool neg, uint32_t q) {
#pragma HLS INLINE
    const uint32_t a = shift ? (acc << 1) : acc;
    const uint32_t v = enable ? q : 0u;
    return neg ? a - v : a + v;
}

static inline uint32_t lowest_bit(uint32_t m) {  // index of the lowest set bit, m != 0
#pragma HLS INLINE
    return (uint32_t)__builtin_ctz(m);
}

void spk_core_acc(int e, uint32_t n_jobs, spk_fifo<spk_job, SPK_D_JOB> &j_in,
                  spk_fifo<spk_job, SPK_D_JOB> &j_out, spk_fifo<spk_sinfo, SPK_D_INFO> &s_in,
                  spk_fifo<uint32_t, SPK_D_WORDS> &masks, spk_fifo<spk_line, SPK_D_CODES> &codes,
                  spk_fifo<spk_line, SPK_D_A> &a_out) {
    uint32_t bits[SPK_MAX_T][2][SPK_MAX_WORDS];  // the job's plane masks (t, sign, block)
#pragma HLS ARRAY_PARTITION variable = bits complete dim = 1
#pragma HLS ARRAY_PARTITION variable = bits complete dim = 2
    spk_line lb[SPK_BLOCK];  // code lines of the block's firing inputs, by column
#pragma HLS ARRAY_PARTITION variable = lb complete
    uint32_t A[SPK_MAX_TILE];
#pragma HLS ARRAY_PARTITION variable = A complete
    uint32_t pm[SPK_MAX_PLANES], nm[SPK_MAX_PLANES];  // +1 / -1 masks of the block per plane
#pragma HLS ARRAY_PARTITION variable = pm complete
#pragma HLS ARRAY_PARTITION variable = nm complete
    SPK_CSIM_ONLY(spk_core_counters &cnt = spk_core_count[e];)
    for (uint32_t ji = 0; ji < n_jobs; ji++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 256
        const spk_job job = j_in.read();
        j_out.write(job);
        const spk_sinfo si = s_in.read();
        const uint32_t T = si.ok ? si.T : 0u;
        const uint32_t nw = si.ok ? si.n_words : 0u;
        for (uint32_t t = 0; t < T; t++)
            for (uint32_t s = 0; s < 2; s++)
                for (uint32_t b = 0; b < nw; b++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 18 max = 512
                    bits[t][s][b] = masks.read();
                }
        const uint32_t z = si.ok ? si.z : 0u;
        const uint32_t kz = z ? 32u - (uint32_t)__builtin_clz(z) : 0u;  // offset planes
        const uint32_t P = kz + T;
        const bool bitwise = sr_spike_encoding_is_bitwise((int32_t)si.enc);
        const bool twos = si.enc == SR_SPIKE_TWOS_COMPLEMENT;
        const uint32_t nb = job.n_in >> 5;
        const uint32_t tile_w = spk_tile_rows(job.fmt);
        const uint32_t lines16 = tile_w >> 4;
        const uint32_t n_full = si.n >> 5, n_part = si.n & 31u;
        for (uint32_t c = 0; c < job.chunks[e]; c++) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 128
            for (uint32_t b = 0; b < nb; b++) {
#pragma HLS LOOP_TRIPCOUNT min = 18 max = 512
                // the block's planes: offset planes (binary z, MSB first), then code planes
                const uint32_t valid = !si.ok ? 0u
                                       : b < n_full ? 0xffffffffu
                                       : (b == n_full && n_part) ? (1u << n_part) - 1u : 0u;
                uint32_t fire = 0, nz = 0;
                for (uint32_t p = 0; p < SPK_MAX_PLANES; p++) {
#pragma HLS UNROLL
                    uint32_t pos = 0, neg = 0;
                    if (p < kz) {
                        neg = ((z >> (kz - 1u - p)) & 1u) ? valid : 0u;
                    } else if (p < P && b < nw) {
                        pos = bits[p - kz][0][b];
                        neg = bits[p - kz][1][b];
                    }
                    pm[p] = pos;
                    nm[p] = neg;
                    fire |= pos | neg;
                    if (pos | neg) nz |= 1u << p;
                }
                SPK_CSIM_ONLY(cnt.blocks++; if (!fire) cnt.silent++;)
                // fill: the lines of the firing inputs arrive in ascending column order
                for (uint32_t rem = fire; rem; rem &= rem - 1u) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 0 max = 32
                    lb[lowest_bit(rem)] = codes.read();
                    SPK_CSIM_ONLY(cnt.fill++;)
                }
                for (uint32_t r = 0; r < SPK_MAX_TILE; r++) {
#pragma HLS UNROLL
                    A[r] = 0;
                }
                uint32_t N = 0;
                // events: per plane, per firing input, one add/sub of its line into every lane
                if (nz) {
                    uint32_t p = lowest_bit(nz);
                    uint32_t cur = pm[p] | nm[p];
                    bool shift = false;  // the accumulators are zero before the first event
                    for (;;) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 1024
                        if (cur == 0) {
                            if (p + 1u >= P) break;
                            p++;
                            cur = pm[p] | nm[p];
                            shift = p < kz ? true : (p > kz && bitwise);  // sr_spike_horner_shift
                            if (cur == 0) {  // empty plane: shift only (or nothing)
                                if (shift) {
                                    for (uint32_t r = 0; r < SPK_MAX_TILE; r++) {
#pragma HLS UNROLL
                                        A[r] = lane_op(A[r], true, false, false, 0u);
                                    }
                                    N = lane_op(N, true, false, false, 0u);
                                }
                                SPK_CSIM_ONLY(cnt.bubbles++;)
                                continue;
                            }
                        }
                        const uint32_t jj = lowest_bit(cur);
                        cur &= cur - 1u;
                        const bool plane_neg = p >= kz && twos && p == kz;  // two's complement t = 0
                        const bool neg = (((nm[p] >> jj) & 1u) != 0) != plane_neg;
                        const spk_line &l = lb[jj];
                        for (uint32_t r = 0; r < SPK_MAX_TILE; r++) {
#pragma HLS UNROLL
                            if (r < tile_w) A[r] = lane_op(A[r], shift, true, neg, lane_code(l, job.fmt, r));
                        }
                        N = lane_op(N, shift, true, neg, 1u);
                        shift = false;
                        SPK_CSIM_ONLY(cnt.events++;)
                    }
                }
                spk_line hdr = {{N, 0, 0, 0, 0, 0, 0, 0}};
                a_out.write(hdr);
                for (uint32_t k = 0; k < lines16; k++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT min = 4 max = 16
                    spk_line o;
                    for (uint32_t i = 0; i < 8; i++) {
#pragma HLS UNROLL
                        const uint32_t r = (k << 4) | (i << 1);
                        o.v[i] = (uint64_t)A[r] | ((uint64_t)A[r | 1u] << 32);
                    }
                    a_out.write(o);
                }
                SPK_CSIM_ONLY(cnt.out += 1u + lines16;)
            }
        }
    }
}
