// spk_token.cpp - the token program for the VCK190 (Vitis HLS 2022.1, C++14): one run
// executes a chain of descriptors (kernels/spk_token.h) that computes a whole token of a
// spike-driven Llama block stack - embedding, RMSNorm, the spike encoders, every linear layer
// and both attention products through spk_acc's spike-gated dataflow (kernels/spk_acc.cpp,
// spk_core.cpp: unchanged, called once per MATVEC descriptor), RoPE, the K/V caches in
// device memory, softmax, SiLU gate, residual adds and the head.
//
// The float steps are include/spikerun/sr-spike-float.h's static inline functions, the ones
// the CPU spike path calls (sr-engine.c, sr-spike-net.c, sr-quant-portable.c), with the
// spike contract's primitives of sr-spike.h: the same ops in the same order, FMA contraction
// off, so a token is bit-identical to the CPU's by construction. The emulated device
// (csrc/fpga/sr-fpga-emu.c) checks it against the CPU logit for logit; tb/spk_token_tb.cpp
// checks a small synthetic model in C-simulation.
//
// Structure: a sequencer loop reads one descriptor line per step; each op reads its operands
// from `out` into local buffers (BRAM on the device), computes, and writes back. Float ops
// run outside the accumulation core (tools/fpga/check_core_no_multiply.sh covers the core
// only: spk_core.cpp, spk_core.h).
#include "spk_token.h"
#include "spk_acc.h"
#include "spk_fifo.h"

#include "../../include/spikerun/sr-spike.h"
#include "../../include/spikerun/sr-spike-float.h"

#include <stdint.h>
#include <string.h>

#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

static_assert(SPK_TOKEN_MAX_VEC <= SPK_MAX_COLS, "vectors fit one slot");

SPK_CSIM_ONLY(unsigned long long spk_token_runs_total;)

namespace {

// ---------------------------------------------------------------------------------------
// Device memory access: `out` as float32 / uint32 words (little-endian, as the host's).

inline void ld(const spk_line *buf, uint64_t idx, float *dst, uint32_t n) {
    memcpy(dst, (const char *)buf + idx * 4u, (size_t)n * 4u);
}
inline void st(spk_line *buf, uint64_t idx, const float *src, uint32_t n) {
    memcpy((char *)buf + idx * 4u, src, (size_t)n * 4u);
}
inline uint32_t ld_u32(const spk_line *buf, uint64_t idx) {
    uint32_t v;
    memcpy(&v, (const char *)buf + idx * 4u, 4);
    return v;
}
inline void st_u32(spk_line *buf, uint64_t idx, uint32_t v) { memcpy((char *)buf + idx * 4u, &v, 4); }
inline float f_of(uint32_t u) { return sr_spike_float_from_bits(u); }

inline spk_job job_at(const spk_line *jobs, uint32_t i) {
    spk_job j;
    memcpy(&j, &jobs[i], sizeof j);
    return j;
}

// ---------------------------------------------------------------------------------------
// Ops.

// Row `token` of a Q8_0 matrix (the tied head) from its shards: (float)(int8)code * d per
// 32-block, d the fp16 block scale widened exactly (embedding_from_head in sr-spike-net.c).
bool op_embed(const spk_line *const w[3], const spk_line *jobs, const spk_desc &d, uint32_t token, float *x) {
    const spk_job j = job_at(jobs, d.job);
    if (j.fmt != SR_SPIKE_W_Q8_0 || d.n != j.n_in) return false;
    const uint32_t tw = spk_tile_rows(j.fmt), c = token / tw, r = token % tw, nb = j.n_in / SPK_BLOCK;
    uint32_t c0 = 0;
    for (int e = 0; e < 3; e++) {
        if (c < c0 + j.chunks[e]) {
            const uint64_t base = (uint64_t)j.w_off[e] + (uint64_t)(c - c0) * spk_chunk_lines(j.fmt, j.n_in);
            for (uint32_t b = 0; b < nb; b++) {
                const uint8_t *blk = (const uint8_t *)(w[e] + base + (uint64_t)b * (SPK_BLOCK + 2u));
                uint16_t h;
                memcpy(&h, blk + SPK_BLOCK * SPK_LINE_BYTES + 2u * r, 2);
                const float dv = spk_half_to_float(h);
                for (uint32_t i = 0; i < SPK_BLOCK; i++)
                    x[b * SPK_BLOCK + i] = (float)(int8_t)blk[i * SPK_LINE_BYTES + r] * dv;
            }
            return true;
        }
        c0 += j.chunks[e];
    }
    return false;
}

// Counts -> the slot's lines (spk_acc.h): header, plane masks, one scale. Also stores
// sum_j a_j (a_j = sum over planes of 2^shift where input j spikes) in reserved[0].
void write_slot(spk_line *spk, uint32_t line, const int32_t *counts, uint32_t n, uint32_t enc, uint32_t T,
                float scale) {
    const uint32_t nw = (n + SPK_BLOCK - 1) / SPK_BLOCK;
    uint32_t *hdr = (uint32_t *)(void *)&spk[line];
    spk_slot_hdr h;
    memset(&h, 0, sizeof h);
    h.T = T;
    h.enc = enc;
    h.offset = 0;
    h.group = n;
    h.n = n;
    h.n_words = nw;
    h.n_groups = 1;
    h.magic = SPK_SLOT_MAGIC;
    uint64_t abs_sum = 0;
    const uint32_t bits_lines = spk_slot_bits_lines(T, nw);
    memset(&spk[line + 1], 0, (size_t)(bits_lines + 1) * SPK_LINE_BYTES);
    uint32_t *bits = (uint32_t *)(void *)&spk[line + 1];
    for (uint32_t t = 0; t < T; t++) {
        const int32_t sh = sr_spike_plane_shift((int32_t)enc, (int32_t)T, (int32_t)t);
        for (uint32_t b = 0; b < nw; b++) {
            uint32_t pos = 0, neg = 0;
            for (uint32_t jj = 0; jj < SPK_BLOCK; jj++) {
                const uint32_t j = b * SPK_BLOCK + jj;
                if (j >= n) break;
                const int32_t s = sr_spike_sigma(counts[j], (int32_t)enc, (int32_t)T, 0, (int32_t)t);
                if (s > 0) pos |= 1u << jj;
                if (s < 0) neg |= 1u << jj;
            }
            bits[(t * 2u + 0u) * nw + b] = pos;
            bits[(t * 2u + 1u) * nw + b] = neg;
            abs_sum += (uint64_t)__builtin_popcount(pos | neg) << sh;
        }
    }
    h.reserved[0] = abs_sum > 0xffffffffu ? 0xffffffffu : (uint32_t)abs_sum;
    memcpy(hdr, &h, sizeof h);
    float *sc = (float *)(void *)&spk[line + 1 + bits_lines];
    sc[0] = scale;
}

uint32_t op_encode(const spk_line *out, spk_line *spk, const spk_desc &d, uint32_t n_pos) {
    float x[SPK_TOKEN_MAX_VEC];
    int32_t counts[SPK_TOKEN_MAX_VEC];
    const uint32_t n = (d.flags & SPK_F_NPOS) ? n_pos : d.n;
    const uint32_t rule = d.enc & 15u, enc = (d.enc >> 4) & 15u, bits = (d.enc >> 8) & 255u;
    const uint32_t clip = d.enc >> 16;
    if (n == 0 || n > SPK_TOKEN_MAX_VEC) return SPK_TOKEN_BAD_OP;
    for (uint32_t h = 0; h < d.m; h++) {
        ld(out, (uint64_t)d.src0 + (uint64_t)h * d.stride, x, n);
        float s = 1.0f;
        int32_t T;
        int rc;
        if (rule == SPK_RULE_MEAN) {
            rc = sr_spike_encode_mean_group(x, (int32_t)n, f_of(d.f0), f_of(d.f1), f_of(d.f2),
                                            (d.flags & SPK_F_POW2) != 0, SR_SPIKE_MEAN_CAP,
                                            counts, &s);
            if (rc != 0) return SPK_TOKEN_NUMERIC;
            T = sr_spike_min_planes_bitwise(counts, (int32_t)n, (int32_t)enc);
            if (T < 0 || T > (int32_t)SPK_MAX_T) return SPK_TOKEN_NO_FIT;
        } else if (rule == SPK_RULE_MAX) {
            const int32_t q = (1 << (bits - 1)) - 1, cl = clip ? (int32_t)clip : q;
            rc = sr_spike_encode_max_group(x, (int32_t)n, q, cl, f_of(d.f0), f_of(d.f2), (d.flags & SPK_F_POW2) != 0,
                                           counts, &s);
            if (rc != 0) return SPK_TOKEN_NUMERIC;
            T = enc == SR_SPIKE_SIGN_MAGNITUDE ? (int32_t)bits - 1 : (int32_t)bits;  // two's complement
            if (d.flags & SPK_F_KQ) s = s * f_of(d.f1);
        } else if (rule == SPK_RULE_UNSIGNED) {
            rc = sr_spike_encode_unsigned_group(x, (int32_t)n, (int32_t)bits, (d.flags & SPK_F_POW2) != 0, counts);
            if (rc != 0) return SPK_TOKEN_NUMERIC;
            T = (int32_t)bits;
            s = sr_spike_unsigned_scale((int32_t)bits, (d.flags & SPK_F_POW2) != 0);
        } else {
            return SPK_TOKEN_BAD_OP;
        }
        for (uint32_t j = 0; j < n; j++)
            if (!sr_spike_count_fits(counts[j], (int32_t)enc, T, 0)) return SPK_TOKEN_NO_FIT;
        write_slot(spk, d.dst + h * d.dstride, counts, n, enc, (uint32_t)T, s);
    }
    return SPK_TOKEN_OK;
}

// sr_spike_matvec_check's int32 bound for row formats: qmax * sum_j a_j <= INT32_MAX (block
// formats: 32 inputs per segment, always below 2^31).
bool job_fits(const spk_line *jobs, const spk_line *spk, uint32_t i) {
    const spk_job j = job_at(jobs, i);
    if (j.fmt == SR_SPIKE_W_Q4_1 || j.fmt == SR_SPIKE_W_Q8_0) return true;
    spk_slot_hdr h;
    memcpy(&h, &spk[j.spk_off], sizeof h);
    const uint64_t qmax = j.fmt == SR_SPIKE_W_I8_ROW ? 127u : 1u;
    return qmax * (uint64_t)h.reserved[0] <= 0x7fffffffu;
}

uint32_t op_rope(spk_line *out, const spk_desc &d, uint32_t pos) {
    float v[SPK_TOKEN_MAX_VEC];
    float cs[SPK_MAX_TILE], sn[SPK_MAX_TILE];
    const uint32_t total = d.m * d.n, half = d.aux / 2u;
    if (total > SPK_TOKEN_MAX_VEC || half > SPK_MAX_TILE || d.aux > d.n) return SPK_TOKEN_BAD_OP;
    ld(out, (uint64_t)d.src1 + (uint64_t)pos * d.aux, cs, half);
    ld(out, (uint64_t)d.src1 + (uint64_t)pos * d.aux + half, sn, half);
    ld(out, d.src0, v, total);
    sr_rope_apply(v, (int32_t)d.m, (int32_t)d.n, (int32_t)d.aux, cs, sn);
    st(out, d.src0, v, total);
    return SPK_TOKEN_OK;
}

// K row `pos` of I8_ROW matrix job + h*stride: codes at byte r of the chunk's code lines, the row
// scale in the chunk's row-scale lines. V column `pos` of matrix n_jobs + h: byte d of the
// line of input column pos (matrix n_jobs + h*stride). Both caches live in engine 0's shard (w0), pinned by the host.
uint32_t op_kv_store(spk_line *w0, const spk_line *jobs, const spk_line *out, const spk_desc &d, uint32_t pos) {
    float x[SPK_MAX_TILE];
    int8_t codes[SPK_MAX_TILE];
    if (d.n > SPK_MAX_TILE) return SPK_TOKEN_BAD_OP;
    for (uint32_t h = 0; h < d.m; h++) {
        const uint32_t step = d.stride ? d.stride : 1u;  // jobs between KV heads (query heads per KV head)
        const spk_job kj = job_at(jobs, d.job + h * step), vj = job_at(jobs, d.n_jobs + h * step);
        if (kj.fmt != SR_SPIKE_W_I8_ROW || vj.fmt != SR_SPIKE_W_I8_ROW || kj.n_in != d.n || vj.n_in <= pos ||
            kj.chunks[1] || kj.chunks[2] || vj.chunks[1] || vj.chunks[2] || vj.chunks[0] * 64u < d.n)
            return SPK_TOKEN_BAD_OP;
        // K: max rule at Q = 127 over the head's values
        ld(out, (uint64_t)d.src0 + (uint64_t)h * d.n, x, d.n);
        float s = 1.0f;
        if (sr_spike_kcache_codes(x, (int32_t)d.n, codes, &s) != 0) return SPK_TOKEN_NUMERIC;
        const uint32_t c = pos / 64u, r = pos % 64u, nb = kj.n_in / SPK_BLOCK;
        const uint64_t base = (uint64_t)kj.w_off[0] + (uint64_t)c * spk_chunk_lines(kj.fmt, kj.n_in);
        for (uint32_t i = 0; i < d.n; i++) ((uint8_t *)(void *)&w0[base + i])[r] = (uint8_t)codes[i];
        memcpy((uint8_t *)(void *)&w0[base + (uint64_t)nb * SPK_BLOCK + r / 16u] + 4u * (r % 16u), &s, 4);
        // V: static per-channel scales (the V matrix's row scales)
        ld(out, (uint64_t)d.src1 + (uint64_t)h * d.n, x, d.n);
        const uint32_t vnb = vj.n_in / SPK_BLOCK;
        const uint8_t *rs = (const uint8_t *)(const void *)&w0[(uint64_t)vj.w_off[0] + (uint64_t)vnb * SPK_BLOCK];
        uint8_t *col = (uint8_t *)(void *)&w0[(uint64_t)vj.w_off[0] + pos];
        for (uint32_t i = 0; i < d.n; i++) {
            float sv;
            memcpy(&sv, rs + 4u * i, 4);
            if (sr_spike_abs_bits(x[i]) >= 0x7f800000u) return SPK_TOKEN_NUMERIC;
            col[i] = (uint8_t)sr_spike_vcache_code(x[i], sv);
        }
    }
    return SPK_TOKEN_OK;
}

uint32_t op_softmax(spk_line *out, const spk_desc &d, uint32_t n_pos) {
    float s[SPK_TOKEN_MAX_VEC];
    if (n_pos > SPK_TOKEN_MAX_VEC) return SPK_TOKEN_BAD_OP;
    for (uint32_t h = 0; h < d.m; h++) {
        ld(out, (uint64_t)d.src0 + (uint64_t)h * d.stride, s, n_pos);
        sr_spike_softmax(s, (int32_t)n_pos);
        st(out, (uint64_t)d.src0 + (uint64_t)h * d.stride, s, n_pos);
    }
    return SPK_TOKEN_OK;
}

uint32_t op_binary(spk_line *out, const spk_desc &d) {
    float a[SPK_TOKEN_MAX_VEC], b[SPK_TOKEN_MAX_VEC];
    if (d.n > SPK_TOKEN_MAX_VEC) return SPK_TOKEN_BAD_OP;
    if (d.op == SPK_OP_RMSNORM) {
        ld(out, d.src0, a, d.n);
        ld(out, d.src1, b, d.n);
        sr_rms_norm(a, b, a, (int32_t)d.n, f_of(d.f0));
    } else if (d.op == SPK_OP_SILU_MUL) {
        ld(out, d.src0, a, d.n);
        ld(out, d.src1, b, d.n);
        sr_swiglu_ref((int64_t)d.n, a, a, b);
    } else {  // ADD: dst += src0
        ld(out, d.dst, a, d.n);
        ld(out, d.src0, b, d.n);
        sr_add_inplace(a, b, (int64_t)d.n);
    }
    st(out, d.dst, a, d.n);
    return SPK_TOKEN_OK;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Top: the sequencer.

extern "C" void spk_token(const spk_line *w0, const spk_line *w1, const spk_line *w2, const spk_line *jobs,
                          const spk_line *spk, spk_line *out, unsigned int prog_first, unsigned int max_desc) {
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
#pragma HLS INTERFACE s_axilite port = prog_first
#pragma HLS INTERFACE s_axilite port = max_desc
#pragma HLS INTERFACE s_axilite port = return
    // The program writes the K/V caches (w0), the attention jobs' lengths (jobs) and the
    // spike slots (spk): these ports are read-write on the device.
    spk_line *w0w = const_cast<spk_line *>(w0);
    spk_line *jobsw = const_cast<spk_line *>(jobs);
    spk_line *spkw = const_cast<spk_line *>(spk);
    const spk_line *const w[3] = {w0, w1, w2};
    float vec[SPK_TOKEN_MAX_VEC];  // local buffers: BRAM on the device, the run thread's stack in C-simulation (no state shared between two devices in one process)

    // The header is the first line of the arena; the first descriptor names it (EMBED's
    // src1 is the header's float index).
    uint32_t status = SPK_TOKEN_BUDGET, at = 0, executed = 0, runs = 0;
    uint64_t hdr_idx = 0;
    uint32_t token = 0, pos = 0, want_logits = 0, n_vocab = 0, n_ctx = 0;
    bool have_hdr = false;
    for (uint32_t i = 0; i < max_desc; i++) {
        spk_desc d;
        memcpy(&d, &jobs[prog_first + i], sizeof d);
        at = i;
        executed++;
        uint32_t rc = SPK_TOKEN_OK;
        if (!have_hdr && d.op != SPK_OP_EMBED) {
            status = SPK_TOKEN_BAD_OP;
            break;
        }
        switch (d.op) {
        case SPK_OP_END: rc = 0xfffffffeu; break;
        case SPK_OP_EMBED:
            hdr_idx = d.src1;
            token = ld_u32(out, hdr_idx + 0);
            pos = ld_u32(out, hdr_idx + 1);
            want_logits = ld_u32(out, hdr_idx + 2);
            n_vocab = ld_u32(out, hdr_idx + 7);
            n_ctx = ld_u32(out, hdr_idx + 8);
            have_hdr = true;
            if (token >= n_vocab || pos >= n_ctx) { rc = SPK_TOKEN_RANGE; break; }
            if (d.n > SPK_TOKEN_MAX_VEC || !op_embed(w, jobs, d, token, vec)) { rc = SPK_TOKEN_BAD_OP; break; }
            st(out, d.dst, vec, d.n);
            break;
        case SPK_OP_RMSNORM:
        case SPK_OP_SILU_MUL:
        case SPK_OP_ADD: rc = op_binary(out, d); break;
        case SPK_OP_ENCODE: rc = op_encode(out, spkw, d, pos + 1u); break;
        case SPK_OP_MATVEC:
            for (uint32_t k = 0; k < d.n_jobs && rc == SPK_TOKEN_OK; k++) {
                if (d.flags & SPK_F_NPOS) {  // attention scores: the positions written so far
                    spk_job j = job_at(jobs, d.job + k);
                    const uint32_t tw = spk_tile_rows(j.fmt);
                    j.chunks[0] = (pos + 1u + tw - 1u) / tw;
                    memcpy(&jobsw[d.job + k], &j, sizeof j);
                }
                if (!job_fits(jobs, spk, d.job + k)) rc = SPK_TOKEN_OVERFLOW;
            }
            if (rc != SPK_TOKEN_OK) break;
            spk_acc(w0, w1, w2, jobs, spk, out, d.job, d.n_jobs);
            runs++;
            break;
        case SPK_OP_ROPE: rc = op_rope(out, d, pos); break;
        case SPK_OP_KV_STORE: rc = op_kv_store(w0w, jobs, out, d, pos); break;
        case SPK_OP_SOFTMAX: rc = op_softmax(out, d, pos + 1u); break;
        case SPK_OP_IF_LOGITS:
            if (!want_logits) rc = 0xfffffffeu;
            break;
        default: rc = SPK_TOKEN_BAD_OP; break;
        }
        if (rc == 0xfffffffeu) {
            status = SPK_TOKEN_OK;
            break;
        }
        if (rc != SPK_TOKEN_OK) {
            status = rc;
            break;
        }
    }
    if (have_hdr) {
        st_u32(out, hdr_idx + 3, status);
        st_u32(out, hdr_idx + 4, at);
        st_u32(out, hdr_idx + 5, executed);
        st_u32(out, hdr_idx + 6, runs);
    }
    SPK_CSIM_ONLY(__atomic_add_fetch(&spk_token_runs_total, 1ull, __ATOMIC_RELAXED);)
}
