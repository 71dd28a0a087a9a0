// sr-spike-encode.c - encoders (float -> counts), spike planes (counts <-> planes <-> trains),
// weight packing (GGUF blocks -> input-major 64-byte lines), KV-cache stores, dispatch glue.
// Integer and float semantics are fixed in include/spikerun/sr-spike.h.
#include "sr-spike-impl.h"
#include "spikerun/sr-spike-float.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------- helpers

static void *sr_spike_aligned_calloc(size_t bytes) {
    size_t sz = (bytes + 63u) & ~(size_t)63u;
    if (sz == 0) sz = 64;
    void *p = aligned_alloc(64, sz);
    if (p) memset(p, 0, sz);
    return p;
}

static inline int sr_is_finite_f(float f) { return sr_spike_abs_bits(f) < 0x7f800000u; }

static inline uint16_t sr_rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static inline int32_t sr_popc(uint32_t v) { return __builtin_popcount(v); }

// ---------------------------------------------------------------- encoders

sr_spike_max_params sr_spike_max_default_params(int32_t bits) {
    sr_spike_max_params p;
    p.group = 0;
    p.q = (bits >= 2 && bits <= 16) ? (1 << (bits - 1)) - 1 : 127;
    p.clip = 0;
    p.gamma = 1.0f;
    p.rho = 0.0f;
    p.pow2 = 0;
    return p;
}

sr_spike_mean_params sr_spike_mean_default_params(float k) {
    sr_spike_mean_params p;
    p.group = 0;
    p.cap = SR_SPIKE_MEAN_CAP;
    p.k = k;
    p.rho = 0.0f;
    p.tau = 0.0f;
    p.pow2 = 0;
    return p;
}

static sr_status sr_check_group(int32_t n, int32_t group, int32_t *G) {
    if (group < 0 || group > n) return sr_fail(SR_ERR_INVALID_ARG, "spike encoder: group %d is outside 0..n (n = %d)", group, n);
    *G = group == 0 ? n : group;
    if (n % *G != 0) return sr_fail(SR_ERR_INVALID_ARG, "spike encoder: group %d does not divide n = %d", *G, n);
    return SR_OK;
}

static sr_status sr_check_rho(float rho) {
    if (!(rho >= 0.0f && rho < 0.5f)) return sr_fail(SR_ERR_INVALID_ARG, "spike encoder: rho must be in [0, 0.5)");
    return SR_OK;
}

sr_status sr_spike_encode_max(const float *x, int32_t n, const sr_spike_max_params *p,
                              int32_t *counts, float *scales) {
    if (!x || !p || !counts || !scales || n <= 0) return sr_fail(SR_ERR_INVALID_ARG, "spike encoder: null buffer or n <= 0");
    int32_t G;
    sr_status st = sr_check_group(n, p->group, &G);
    if (st != SR_OK) return st;
    if (p->q < 1 || p->q > 32767) return sr_fail(SR_ERR_INVALID_ARG, "spike encoder: Q = %d is outside 1..32767", p->q);
    int32_t C = p->clip == 0 ? p->q : p->clip;
    if (C < 1 || C > p->q) return sr_fail(SR_ERR_INVALID_ARG, "spike encoder: clip C = %d must be in 1..Q (Q = %d)", C, p->q);
    if (!(p->gamma > 0.0f && p->gamma <= 1.0f)) return sr_fail(SR_ERR_INVALID_ARG, "spike encoder: gamma must be in (0, 1]");
    if ((st = sr_check_rho(p->rho)) != SR_OK) return st;
    if (sr_spike_max_abs_bits_(x, n) >= 0x7f800000u) return sr_fail(SR_ERR_NUMERIC, "spike encoder: activation contains NaN or Inf");
    const float th = 0.5f + p->rho;
    for (int32_t g = 0, j0 = 0; j0 < n; g++, j0 += G) {
        uint32_t mb = sr_spike_max_abs_bits_(x + j0, G);
        float s = 1.0f, inv = 0.0f;
        if (mb == 0 || !sr_spike_scale_max(sr_spike_float_from_bits(mb), p->gamma, p->q, p->pow2 != 0, &s, &inv)) {
            memset(counts + j0, 0, (size_t)G * sizeof *counts);
            scales[g] = 1.0f;
            continue;
        }
        sr_spike_quantize_(x + j0, G, inv, th, C, counts + j0);
        scales[g] = s;
    }
    return SR_OK;
}

sr_status sr_spike_encode_mean_ex(const float *x, int32_t n, const sr_spike_mean_params *p,
                                  int32_t *counts, float *scales) {
    if (!x || !p || !counts || !scales || n <= 0) return sr_fail(SR_ERR_INVALID_ARG, "spike encoder: null buffer or n <= 0");
    int32_t G;
    sr_status st = sr_check_group(n, p->group, &G);
    if (st != SR_OK) return st;
    int32_t cap = p->cap == 0 ? SR_SPIKE_MEAN_CAP : p->cap;
    if (cap < 1 || cap > SR_SPIKE_MEAN_CAP) return sr_fail(SR_ERR_INVALID_ARG, "spike encoder: cap %d is outside 1..32767", cap);
    if (!(p->k > 0.0f && p->k <= 3.40282347e38f)) return sr_fail(SR_ERR_INVALID_ARG, "spike encoder: k must be positive and finite");
    if ((st = sr_check_rho(p->rho)) != SR_OK) return st;
    if (!(p->tau >= 0.0f && p->tau <= 0.5f)) return sr_fail(SR_ERR_INVALID_ARG, "spike encoder: tau must be in [0, 0.5]");
    if (sr_spike_max_abs_bits_(x, n) >= 0x7f800000u) return sr_fail(SR_ERR_NUMERIC, "spike encoder: activation contains NaN or Inf");
    const float th = 0.5f + p->rho, lo = 0.5f - p->tau, hi = 0.5f + p->tau;
    // Scales first: an overflowing group is an error before anything is written.
    for (int32_t j0 = 0; j0 < n; j0 += G) {
        float sum = sr_spike_sum_abs_(x + j0, G);
        float s = 1.0f, inv = 0.0f;
        if (sum > 0.0f && sr_spike_scale_mean(sum, G, p->k, p->pow2 != 0, &s, &inv) < 0)
            return sr_fail(SR_ERR_NUMERIC, "spike encoder: mean |x| / k overflows float32 (sum %g, k %g)", (double)sum, (double)p->k);
    }
    for (int32_t g = 0, j0 = 0; j0 < n; g++, j0 += G) {
        float sum = sr_spike_sum_abs_(x + j0, G);
        float s = 1.0f, inv = 0.0f;
        if (!(sum > 0.0f) || sr_spike_scale_mean(sum, G, p->k, p->pow2 != 0, &s, &inv) != 1) {
            memset(counts + j0, 0, (size_t)G * sizeof *counts);
            scales[g] = 1.0f;
            continue;
        }
        if (p->tau > 0.0f) {
            sr_spike_quantize_thrifty_(x + j0, G, inv, th, lo, hi, cap, counts + j0);
        } else {
            sr_spike_quantize_(x + j0, G, inv, th, cap, counts + j0);
        }
        scales[g] = s;
    }
    return SR_OK;
}

sr_status sr_spike_encode_mean(const float *x, int32_t n, float k, int32_t *counts, float *scale) {
    sr_spike_mean_params p = sr_spike_mean_default_params(k);
    return sr_spike_encode_mean_ex(x, n, &p, counts, scale);
}

sr_status sr_spike_encode_unsigned(const float *p, int32_t n, int32_t bits, int pow2, int32_t *counts) {
    if (!p || !counts || n <= 0) return sr_fail(SR_ERR_INVALID_ARG, "spike encoder: null buffer or n <= 0");
    if (bits < 1 || bits > 16) return sr_fail(SR_ERR_INVALID_ARG, "spike encoder: unsigned bits %d outside 1..16", bits);
    for (int32_t j = 0; j < n; j++) {
        if (!sr_is_finite_f(p[j])) return sr_fail(SR_ERR_NUMERIC, "spike encoder: probability %d is NaN or Inf", j);
        if (p[j] < 0.0f) return sr_fail(SR_ERR_NUMERIC, "spike encoder: probability %d is negative", j);
    }
    int32_t P = (1 << bits) - 1;
    sr_spike_quantize_(p, n, sr_spike_unsigned_mult(bits, pow2), 0.5f, P, counts);
    return SR_OK;
}

// ---------------------------------------------------------------- planes

sr_status sr_spike_planes_init(sr_spike_planes *p, int32_t n_cap, int32_t T_cap) {
    if (!p || n_cap <= 0 || T_cap <= 0 || T_cap > SR_SPIKE_MAX_T) return sr_fail(SR_ERR_INVALID_ARG, "spike planes: capacity n %d, T %d is invalid (T <= %d)", n_cap, T_cap, SR_SPIKE_MAX_T);
    memset(p, 0, sizeof *p);
    size_t nw = (size_t)(n_cap + 31) / 32;
    size_t ev_cap = (size_t)n_cap * (size_t)T_cap;
    size_t off_bits = 0;
    size_t off_scale = off_bits + (size_t)T_cap * 2 * nw * 4;
    size_t off_abs = off_scale + (size_t)n_cap * 4;
    size_t off_sum = off_abs + nw * 4;
    size_t off_tf = off_sum + nw * 4;
    size_t off_evs = off_tf + nw * 4;
    size_t off_ev = off_evs + ((size_t)T_cap + 1) * 4;
    size_t total = off_ev + ev_cap * 4;
    uint8_t *mem = sr_spike_aligned_calloc(total);
    if (!mem) return sr_fail(SR_ERR_NO_MEMORY, "spike planes: cannot allocate %zu bytes", total);
    p->mem = mem;
    p->bits = (uint32_t *)(mem + off_bits);
    p->scale = (float *)(mem + off_scale);
    p->blk_abs = (int32_t *)(mem + off_abs);
    p->blk_sum = (int32_t *)(mem + off_sum);
    p->blk_tfirst = (int32_t *)(mem + off_tf);
    p->ev_start = (int32_t *)(mem + off_evs);
    p->ev = (uint32_t *)(mem + off_ev);
    p->n_cap = n_cap;
    p->T_cap = T_cap;
    p->ev_cap = ev_cap;
    p->group = 1;
    p->n_groups = 0;
    return SR_OK;
}

void sr_spike_planes_free(sr_spike_planes *p) {
    if (!p) return;
    free(p->mem);
    memset(p, 0, sizeof *p);
}

int32_t sr_spike_min_planes(const int32_t *counts, int32_t n, sr_spike_encoding enc, int32_t offset) {
    int32_t lo = 0, hi = 0;
    for (int32_t j = 0; j < n; j++) {
        if (counts[j] < lo) lo = counts[j];
        if (counts[j] > hi) hi = counts[j];
    }
    int32_t maxT = sr_spike_encoding_is_bitwise(enc) ? SR_SPIKE_MAX_T_BITWISE : SR_SPIKE_MAX_T;
    for (int32_t T = 1; T <= maxT; T++)
        if (sr_spike_count_fits(lo, enc, T, offset) && sr_spike_count_fits(hi, enc, T, offset)) return T;
    return -1;
}

static sr_status sr_planes_setup(sr_spike_planes *p, int32_t n, sr_spike_encoding enc, int32_t T,
                                 int32_t offset, const float *scales, int32_t group) {
    if (!p || !p->mem) return sr_fail(SR_ERR_INVALID_ARG, "spike planes: not initialized (sr_spike_planes_init)");
    if (n <= 0 || n > p->n_cap || T < 1 || T > p->T_cap) return sr_fail(SR_ERR_INVALID_ARG, "spike planes: n %d or T %d exceeds the capacity (%d, %d)", n, T, p->n_cap, p->T_cap);
    if ((int)enc < 0 || (int)enc > 4) return sr_fail(SR_ERR_INVALID_ARG, "spike planes: unknown encoding %d", (int)enc);
    int32_t maxT = sr_spike_encoding_is_bitwise(enc) ? SR_SPIKE_MAX_T_BITWISE : SR_SPIKE_MAX_T;
    if (T > maxT) return sr_fail(SR_ERR_INVALID_ARG, "spike planes: T %d exceeds %d for this encoding", T, maxT);
    if (enc == SR_SPIKE_BINARY && (offset < 0 || (n & 31) != 0)) return sr_fail(SR_ERR_INVALID_ARG, "spike planes: the binary code needs offset >= 0 and n a multiple of 32");
    if (enc != SR_SPIKE_BINARY && offset != 0) return sr_fail(SR_ERR_INVALID_ARG, "spike planes: offset is only for the binary code");
    if (group < 0) return sr_fail(SR_ERR_INVALID_ARG, "spike planes: negative group");
    int32_t G = (group == 0 || group >= n) ? n : group;
    int32_t ng = (n + G - 1) / G;
    for (int32_t g = 0; g < ng; g++) {
        float s = scales ? scales[g] : 1.0f;
        if (!sr_is_finite_f(s)) return sr_fail(SR_ERR_NUMERIC, "spike planes: scale %d is NaN or Inf", g);
    }
    p->n = n;
    p->n_words = (n + 31) / 32;
    p->T = T;
    p->encoding = (int32_t)enc;
    p->offset = offset;
    p->group = G;
    p->n_groups = ng;
    p->has_events = 0;
    for (int32_t g = 0; g < ng; g++) p->scale[g] = scales ? scales[g] : 1.0f;
    memset(p->bits, 0, (size_t)T * 2 * (size_t)p->n_words * sizeof *p->bits);
    return SR_OK;
}

sr_status sr_spike_planes_from_counts(sr_spike_planes *p, const int32_t *counts, int32_t n,
                                      sr_spike_encoding enc, int32_t T, int32_t offset,
                                      const float *scales, int32_t group) {
    if (!counts) return sr_fail(SR_ERR_INVALID_ARG, "spike planes: null counts");
    if (enc == SR_SPIKE_SIGN_MAGNITUDE && T >= 1 && T <= SR_SPIKE_MAX_T_BITWISE && n > 0) {
        // fast path: one range check (|n| <= 2^T - 1), then bits and derived fields at once
        uint32_t lim = (1u << T) - 1u, mx = 0;
        for (int32_t j = 0; j < n; j++) {
            uint32_t a = counts[j] < 0 ? 0u - (uint32_t)counts[j] : (uint32_t)counts[j];
            mx = a > mx ? a : mx;
        }
        if (mx > lim) {
            for (int32_t j = 0; j < n; j++)
                if (!sr_spike_count_fits(counts[j], (int32_t)enc, T, offset))
                    return sr_fail(SR_ERR_INVALID_ARG, "spike planes: count %d of input %d does not fit %d planes of encoding %d", counts[j], j, T, (int)enc);
        }
        if (offset == 0) {
            sr_status st = sr_planes_setup(p, n, enc, T, offset, scales, group);
            if (st != SR_OK) return st;
            if (sr_spike_planes_sm_fast_(p, counts, n, T)) return SR_OK;
        }
    }
    if (enc == SR_SPIKE_NAF && n > 0) {
        // fast path: it declines (generic path and its error) when a count does not fit T
        sr_status st = sr_planes_setup(p, n, enc, T, offset, scales, group);
        if (st != SR_OK) return st;
        if (sr_spike_planes_naf_fast_(p, counts, n, T)) return SR_OK;
    }
    for (int32_t j = 0; j < n; j++)
        if (!sr_spike_count_fits(counts[j], (int32_t)enc, T, offset))
            return sr_fail(SR_ERR_INVALID_ARG, "spike planes: count %d of input %d does not fit %d planes of encoding %d", counts[j], j, T, (int)enc);
    sr_status st = sr_planes_setup(p, n, enc, T, offset, scales, group);
    if (st != SR_OK) return st;
    const size_t nw = (size_t)p->n_words;
    uint32_t *bits = p->bits;
    for (int32_t j = 0; j < n; j++) {
        const int32_t c = counts[j];
        const uint32_t bit = 1u << (j & 31);
        const size_t wj = (size_t)(j >> 5);
        switch (enc) {
        case SR_SPIKE_SIGN_MAGNITUDE: {
            uint32_t mag = (uint32_t)(c < 0 ? -c : c);
            size_t sgn = c < 0 ? 1 : 0;
            while (mag) {  // bit k of |n| -> plane T-1-k
                int k = __builtin_ctz(mag);
                mag &= mag - 1u;
                bits[((size_t)(T - 1 - k) * 2 + sgn) * nw + wj] |= bit;
            }
            break;
        }
        case SR_SPIKE_TWOS_COMPLEMENT: {
            uint32_t u = (uint32_t)c & ((1u << T) - 1u);
            while (u) {
                int k = __builtin_ctz(u);
                u &= u - 1u;
                bits[((size_t)(T - 1 - k) * 2) * nw + wj] |= bit;
            }
            break;
        }
        case SR_SPIKE_TERNARY: {
            int32_t mag = c < 0 ? -c : c;
            size_t sgn = c < 0 ? 1 : 0;
            for (int32_t t = 0; t < mag; t++) bits[((size_t)t * 2 + sgn) * nw + wj] |= bit;
            break;
        }
        case SR_SPIKE_BINARY:
            for (int32_t t = 0; t < c + offset; t++) bits[((size_t)t * 2) * nw + wj] |= bit;
            break;
        case SR_SPIKE_NAF: {
            // Non-adjacent form from the low digit up; digit k -> plane T-1-k, its sign (times
            // the count's) as polarity. A carry can make the top digit k = bits(|n|).
            int64_t m = c < 0 ? -(int64_t)c : (int64_t)c;
            for (int32_t k = 0; m; k++) {
                int32_t d = (m & 1) ? 2 - (int32_t)(m & 3) : 0;
                m = (m - d) >> 1;
                if (d) bits[((size_t)(T - 1 - k) * 2 + (size_t)((d < 0) != (c < 0))) * nw + wj] |= bit;
            }
            break;
        }
        }
    }
    return sr_spike_planes_finalize(p);
}

sr_status sr_spike_planes_from_trains(sr_spike_planes *p, const int8_t *trains, int32_t n,
                                      sr_spike_encoding enc, int32_t T, int32_t offset,
                                      const float *scales, int32_t group) {
    if (!trains) return sr_fail(SR_ERR_INVALID_ARG, "spike planes: null trains");
    int unsigned_code = enc == SR_SPIKE_TWOS_COMPLEMENT || enc == SR_SPIKE_BINARY;
    for (size_t i = 0; i < (size_t)T * (size_t)n; i++) {
        int8_t v = trains[i];
        if (v < -1 || v > 1 || (unsigned_code && v < 0)) return sr_fail(SR_ERR_INVALID_ARG, "spike planes: train value %d is not a spike of encoding %d", v, (int)enc);
    }
    sr_status st = sr_planes_setup(p, n, enc, T, offset, scales, group);
    if (st != SR_OK) return st;
    const size_t nw = (size_t)p->n_words;
    for (int32_t t = 0; t < T; t++)
        for (int32_t j = 0; j < n; j++) {
            int8_t v = trains[(size_t)t * (size_t)n + (size_t)j];
            if (v) p->bits[((size_t)t * 2 + (v < 0 ? 1 : 0)) * nw + (size_t)(j >> 5)] |= 1u << (j & 31);
        }
    return sr_spike_planes_finalize(p);
}

sr_status sr_spike_planes_finalize(sr_spike_planes *p) {
    if (!p || !p->mem || p->n <= 0) return sr_fail(SR_ERR_INVALID_ARG, "spike planes: not set up");
    const int32_t nw = p->n_words, T = p->T, enc = p->encoding;
    // Clear bits beyond n (contract: zero), and negative masks of {0,1} codes must be empty.
    uint32_t last = (p->n & 31) ? (1u << (p->n & 31)) - 1u : 0xffffffffu;
    uint64_t spikes = 0;
    for (int32_t t = 0; t < T; t++) {
        uint32_t *pos = p->bits + (size_t)t * 2 * (size_t)nw, *neg = pos + nw;
        pos[nw - 1] &= last;
        neg[nw - 1] &= last;
        for (int32_t b = 0; b < nw; b++) {
            if (pos[b] & neg[b]) return sr_fail(SR_ERR_INVALID_ARG, "spike planes: input fires +1 and -1 at step %d", t);
            if ((enc == SR_SPIKE_TWOS_COMPLEMENT || enc == SR_SPIKE_BINARY) && neg[b]) return sr_fail(SR_ERR_INVALID_ARG, "spike planes: negative spike in a {0,1} code");
        }
    }
    for (int32_t b = 0; b < nw; b++) {
        int32_t a = 0, s = 0, tf = T;
        for (int32_t t = 0; t < T; t++) {
            const uint32_t *pos = p->bits + (size_t)t * 2 * (size_t)nw;
            int32_t pp = sr_popc(pos[b]), pn = sr_popc(pos[nw + b]);
            if ((pp | pn) && tf == T) tf = t;
            int32_t sh = sr_spike_plane_shift(enc, T, t);
            a += (pp + pn) << sh;
            int32_t v = (pp - pn) * (1 << sh);
            s += sr_spike_plane_sign(enc, t) < 0 ? -v : v;
            spikes += (uint64_t)(pp + pn);
        }
        if (enc == SR_SPIKE_BINARY) s -= p->offset * 32;  // n is a multiple of 32 for binary
        p->blk_abs[b] = a;
        p->blk_sum[b] = s;
        p->blk_tfirst[b] = tf;
    }
    p->spikes = spikes;
    p->has_events = 0;
    return SR_OK;
}

sr_status sr_spike_planes_events(sr_spike_planes *p) {
    if (!p || !p->mem || p->n <= 0) return sr_fail(SR_ERR_INVALID_ARG, "spike planes: not set up");
    const int32_t nw = p->n_words;
    uint64_t k = 0;
    for (int32_t t = 0; t < p->T; t++) {
        p->ev_start[t] = (int32_t)k;
        const uint32_t *pos = p->bits + (size_t)t * 2 * (size_t)nw, *neg = pos + nw;
        for (int32_t b = 0; b < nw; b++) {
            uint32_t m = pos[b] | neg[b];
            while (m) {
                int jj = __builtin_ctz(m);
                m &= m - 1u;
                uint32_t j = ((uint32_t)b << 5) | (uint32_t)jj;
                p->ev[k++] = (j << 1) | ((neg[b] >> jj) & 1u);
            }
        }
    }
    p->ev_start[p->T] = (int32_t)k;
    p->has_events = 1;
    return SR_OK;
}

void sr_spike_planes_to_counts(const sr_spike_planes *p, int32_t *counts) {
    for (int32_t j = 0; j < p->n; j++) {
        int32_t c = 0;
        for (int32_t t = 0; t < p->T; t++) {
            int32_t s = sr_spike_planes_sigma(p, j, t);
            if (!s) continue;
            int32_t v = 1 << sr_spike_plane_shift(p->encoding, p->T, t);
            if ((s < 0) != (sr_spike_plane_sign(p->encoding, t) < 0)) v = -v;
            c += v;
        }
        counts[j] = c - (p->encoding == SR_SPIKE_BINARY ? p->offset : 0);
    }
}

void sr_spike_planes_to_trains(const sr_spike_planes *p, int8_t *trains) {
    for (int32_t t = 0; t < p->T; t++)
        for (int32_t j = 0; j < p->n; j++)
            trains[(size_t)t * (size_t)p->n + (size_t)j] = (int8_t)sr_spike_planes_sigma(p, j, t);
}

// ---------------------------------------------------------------- weights

sr_status sr_spike_weights_alloc(sr_spike_weights *w, sr_spike_format fmt, int32_t n_out, int32_t n_in) {
    if (!w) return sr_fail(SR_ERR_INVALID_ARG, "spike weights: null");
    memset(w, 0, sizeof *w);
    int32_t tw = sr_spike_tile_width((int32_t)fmt);
    if (tw == 0) return sr_fail(SR_ERR_INVALID_ARG, "spike weights: unknown format %d", (int)fmt);
    if (n_out <= 0 || n_in <= 0 || (n_in & 31)) return sr_fail(SR_ERR_INVALID_ARG, "spike weights: shape %d x %d invalid (n_in must be a positive multiple of 32)", n_out, n_in);
    w->format = (int32_t)fmt;
    w->n_in = n_in;
    w->n_out = n_out;
    w->tile_w = tw;
    w->n_out_pad = (n_out + tw - 1) / tw * tw;
    w->n_blocks = n_in / 32;
    w->n_chunks = w->n_out_pad / tw;
    w->qmax = sr_spike_format_qmax((int32_t)fmt);
    size_t lines = (size_t)w->n_chunks * (size_t)w->n_blocks * 32 * 64;
    size_t nbv = (size_t)w->n_chunks * (size_t)w->n_blocks * (size_t)tw;  // per-row-per-block
    size_t n_d = sr_spike_is_block_format_(w->format) ? nbv : 0;
    size_t n_m = fmt == SR_SPIKE_W_Q4_1 ? nbv : 0;
    size_t n_rs = sr_spike_is_block_format_(w->format) ? 0 : (size_t)w->n_out_pad;
    size_t off_d = lines, off_m = off_d + n_d * 2, off_rs = (off_m + n_m * 2 + 63u) & ~(size_t)63u;
    size_t total = off_rs + n_rs * 4;
    uint8_t *mem = sr_spike_aligned_calloc(total);
    if (!mem) return sr_fail(SR_ERR_NO_MEMORY, "spike weights: cannot allocate %zu bytes", total);
    w->mem = mem;
    w->bytes = total;
    w->lines = mem;
    w->d = n_d ? (uint16_t *)(mem + off_d) : NULL;
    w->m = n_m ? (uint16_t *)(mem + off_m) : NULL;
    w->row_scale = n_rs ? (float *)(mem + off_rs) : NULL;
    return SR_OK;
}

void sr_spike_weights_free(sr_spike_weights *w) {
    if (!w) return;
    free(w->mem);
    free(w->row_sum);
    if (w->int_scales) free(w->row_scale);   // its own allocation (sr_spike_weights_int_scales)
    memset(w, 0, sizeof *w);
}

// Rows [o0, o1) of GGUF Q4_1 / Q8_0 blocks (src = row o0) into allocated weights.
sr_status sr_spike_weights_pack_rows(sr_spike_weights *w, const void *blocks, int32_t o0, int32_t o1) {
    if (!blocks) return sr_fail(SR_ERR_INVALID_ARG, "spike weights: null block data");
    if (!w || !w->lines || o0 < 0 || o1 > w->n_out || o0 > o1) return sr_fail(SR_ERR_INVALID_ARG, "spike weights: rows %d..%d outside the allocated %d", o0, o1, w ? w->n_out : 0);
    if (w->int_scales) return sr_fail(SR_ERR_INVALID_ARG, "spike weights: rows cannot be repacked after their scales became integers");
    const uint8_t *src = blocks;
    if (w->format == SR_SPIKE_W_Q4_1) {
        for (int32_t o = o0; o < o1; o++) {
            int32_t c = o / w->tile_w, r = o - c * w->tile_w;
            for (int32_t b = 0; b < w->n_blocks; b++, src += 20) {
                uint16_t dh = sr_rd16(src), mh = sr_rd16(src + 2);
                if (!sr_is_finite_f(sr_spike_f16_to_f32(dh)) || !sr_is_finite_f(sr_spike_f16_to_f32(mh)))
                    return sr_fail(SR_ERR_NUMERIC, "spike weights: Q4_1 row %d block %d has a NaN/Inf scale", o, b);
                size_t bi = sr_spike_blockvec_index(w, o, b);
                w->d[bi] = dh;
                w->m[bi] = mh;
                for (int32_t i = 0; i < 16; i++) {
                    uint8_t q = src[4 + i];
                    sr_spike_line_set(w->lines + sr_spike_line_offset(w, c, b, i), SR_SPIKE_W_Q4_1, r, q & 15);
                    sr_spike_line_set(w->lines + sr_spike_line_offset(w, c, b, i + 16), SR_SPIKE_W_Q4_1, r, q >> 4);
                }
            }
        }
    } else if (w->format == SR_SPIKE_W_Q8_0) {
        for (int32_t o = o0; o < o1; o++) {
            int32_t c = o / w->tile_w, r = o - c * w->tile_w;
            for (int32_t b = 0; b < w->n_blocks; b++, src += 34) {
                uint16_t dh = sr_rd16(src);
                if (!sr_is_finite_f(sr_spike_f16_to_f32(dh)))
                    return sr_fail(SR_ERR_NUMERIC, "spike weights: Q8_0 row %d block %d has a NaN/Inf scale", o, b);
                w->d[sr_spike_blockvec_index(w, o, b)] = dh;
                uint8_t *line = w->lines + sr_spike_line_offset(w, c, b, 0);
                for (int32_t i = 0; i < 32; i++) line[(size_t)i * 64 + (size_t)r] = src[2 + i];
            }
        }
    } else {
        return sr_fail(SR_ERR_INVALID_ARG, "spike weights: format %d has no GGUF blocks", (int)w->format);
    }
    return SR_OK;
}

// Per row: s = max_b |v_b| / 255, I_b = rhaz(v_b / s) (|I_b| <= 255 since |v_b / s| <= 255
// up to one float rounding, clipped to be sure); an all-zero row keeps s = 0, I = 0.
static void sr_int_scales_row(sr_spike_weights *w, uint16_t *v, int32_t o, float *s_out) {
    float mx = 0.0f;
    for (int32_t b = 0; b < w->n_blocks; b++) {
        float f = sr_spike_f16_to_f32(v[sr_spike_blockvec_index(w, o, b)]);
        float a = f < 0.0f ? -f : f;
        if (a > mx) mx = a;
    }
    const float s = mx / 255.0f;
    for (int32_t b = 0; b < w->n_blocks; b++) {
        const size_t bi = sr_spike_blockvec_index(w, o, b);
        int32_t q = 0;
        if (s > 0.0f) q = sr_spike_round_clip(sr_spike_f16_to_f32(v[bi]) / s, 0.5f, 255);
        v[bi] = (uint16_t)(int16_t)q;
    }
    *s_out = s;
}

sr_status sr_spike_weights_int_scales(sr_spike_weights *w, int32_t o0, int32_t o1) {
    if (!w || !w->mem || w->format != SR_SPIKE_W_Q4_1 || !w->d || !w->m)
        return sr_fail(SR_ERR_INVALID_ARG, "spike weights: integer block scales need packed Q4_1 weights");
    if (o0 < 0 || o1 > w->n_out || o0 > o1) return sr_fail(SR_ERR_INVALID_ARG, "spike weights: rows %d..%d outside 0..%d", o0, o1, w->n_out);
    if (!w->row_scale) {
        // its own allocation (sr_spike_weights_free releases it), zero for padding rows
        float *rs = sr_spike_aligned_calloc((size_t)w->n_out_pad * 2u * sizeof(float));
        if (!rs) return sr_fail(SR_ERR_NO_MEMORY, "spike weights: out of memory for row scales");
        w->row_scale = rs;
        w->row_scale_m = rs + w->n_out_pad;
        w->bytes += (size_t)w->n_out_pad * 2u * sizeof(float);
        w->int_scales = 1;   // from here on row_scale is ours to free
    }
    for (int32_t o = o0; o < o1; o++) {
        sr_int_scales_row(w, w->d, o, &w->row_scale[o]);
        sr_int_scales_row(w, w->m, o, &w->row_scale_m[o]);
    }
    return SR_OK;
}

static sr_status sr_pack_blocks(sr_spike_weights *w, sr_spike_format fmt, const void *blocks, int32_t n_out,
                                int32_t n_in) {
    if (!blocks) return sr_fail(SR_ERR_INVALID_ARG, "spike weights: null %s data", fmt == SR_SPIKE_W_Q4_1 ? "Q4_1" : "Q8_0");
    sr_status st = sr_spike_weights_alloc(w, fmt, n_out, n_in);
    if (st != SR_OK) return st;
    if ((st = sr_spike_weights_pack_rows(w, blocks, 0, n_out)) != SR_OK) sr_spike_weights_free(w);
    return st;
}

sr_status sr_spike_weights_pack_q4_1(sr_spike_weights *w, const void *blocks, int32_t n_out, int32_t n_in) {
    return sr_pack_blocks(w, SR_SPIKE_W_Q4_1, blocks, n_out, n_in);
}

sr_status sr_spike_weights_pack_q8_0(sr_spike_weights *w, const void *blocks, int32_t n_out, int32_t n_in) {
    return sr_pack_blocks(w, SR_SPIKE_W_Q8_0, blocks, n_out, n_in);
}

sr_status sr_spike_i8_row_codes(const float *w, int32_t n, int8_t *codes, float *scale) {
    if (!w || !codes || !scale || n <= 0) return sr_fail(SR_ERR_INVALID_ARG, "int8 row codes: null buffer or n <= 0");
    float m = 0.0f;
    for (int32_t j = 0; j < n; j++) {
        if (!sr_is_finite_f(w[j])) return sr_fail(SR_ERR_NUMERIC, "int8 row codes: weight %d is NaN or Inf", j);
        const float a = w[j] < 0.0f ? -w[j] : w[j];
        if (a > m) m = a;
    }
    memset(codes, 0, (size_t)n);
    *scale = 1.0f;
    if (!(m > 0.0f)) return SR_OK;
    const float s = m / 127.0f, inv = 1.0f / s;
    for (int32_t j = 0; j < n; j++) {
        float v = roundf(w[j] * inv);
        codes[j] = (int8_t)(v > 127.0f ? 127 : v < -127.0f ? -127 : (int32_t)v);
    }
    *scale = s;
    return SR_OK;
}

static sr_status sr_pack_rows(sr_spike_weights *w, sr_spike_format fmt, const int8_t *codes,
                              const float *row_scale, int32_t n_out, int32_t n_in) {
    if (!codes || !row_scale) return sr_fail(SR_ERR_INVALID_ARG, "spike weights: null codes or scales");
    int32_t qmax = sr_spike_format_qmax((int32_t)fmt);
    for (size_t i = 0; i < (size_t)n_out * (size_t)n_in; i++)
        if (codes[i] > qmax || codes[i] < -qmax) return sr_fail(SR_ERR_INVALID_ARG, "spike weights: code %d outside -%d..%d", codes[i], qmax, qmax);
    for (int32_t o = 0; o < n_out; o++)
        if (!sr_is_finite_f(row_scale[o])) return sr_fail(SR_ERR_NUMERIC, "spike weights: row scale %d is NaN or Inf", o);
    sr_status st = sr_spike_weights_alloc(w, fmt, n_out, n_in);
    if (st != SR_OK) return st;
    if (fmt == SR_SPIKE_W_I8_ROW) {
        // Line by line (set_row writes one byte into each of n_in lines per row): the model's
        // head is 28 M codes, packed at every load.
        for (int32_t o0 = 0; o0 < n_out; o0 += w->tile_w) {
            const int32_t c = o0 / w->tile_w, rn = n_out - o0 < w->tile_w ? n_out - o0 : w->tile_w;
            for (int32_t j = 0; j < n_in; j++) {
                uint8_t *line = w->lines + sr_spike_line_offset(w, c, j >> 5, j & 31);
                for (int32_t r = 0; r < rn; r++) line[r] = (uint8_t)codes[(size_t)(o0 + r) * (size_t)n_in + (size_t)j];
            }
        }
        memcpy(w->row_scale, row_scale, sizeof(float) * (size_t)n_out);
        return SR_OK;
    }
    for (int32_t o = 0; o < n_out; o++) {
        st = sr_spike_weights_set_row(w, o, codes + (size_t)o * (size_t)n_in, row_scale[o]);
        if (st != SR_OK) { sr_spike_weights_free(w); return st; }
    }
    return SR_OK;
}

sr_status sr_spike_weights_pack_i8(sr_spike_weights *w, const int8_t *codes, const float *row_scale,
                                   int32_t n_out, int32_t n_in) {
    return sr_pack_rows(w, SR_SPIKE_W_I8_ROW, codes, row_scale, n_out, n_in);
}

sr_status sr_spike_weights_pack_ternary(sr_spike_weights *w, const int8_t *codes, const float *row_scale,
                                        int32_t n_out, int32_t n_in) {
    return sr_pack_rows(w, SR_SPIKE_W_TERNARY, codes, row_scale, n_out, n_in);
}

sr_status sr_spike_weights_set_row(sr_spike_weights *w, int32_t o, const int8_t *codes, float row_scale) {
    if (!w || !w->mem || !codes || sr_spike_is_block_format_(w->format)) return sr_fail(SR_ERR_INVALID_ARG, "spike weights: set_row needs an int8/ternary row object");
    if (o < 0 || o >= w->n_out) return sr_fail(SR_ERR_INVALID_ARG, "spike weights: row %d outside 0..%d", o, w->n_out - 1);
    int32_t c = o / w->tile_w, r = o - c * w->tile_w;
    for (int32_t j = 0; j < w->n_in; j++) {
        int32_t q = codes[j];
        if (q > w->qmax || q < -w->qmax) return sr_fail(SR_ERR_INVALID_ARG, "spike weights: code %d outside -%d..%d", q, w->qmax, w->qmax);
        sr_spike_line_set(w->lines + sr_spike_line_offset(w, c, j >> 5, j & 31), w->format, r, q);
    }
    w->row_scale[o] = row_scale;
    if (w->row_sum) {  // keep row sums current (cache rows change at run time)
        for (int32_t b = 0; b < w->n_blocks; b++) {
            int32_t s = 0;
            for (int32_t jj = 0; jj < 32; jj++) s += codes[b * 32 + jj];
            w->row_sum[sr_spike_blockvec_index(w, o, b)] = s;
        }
    }
    return SR_OK;
}

sr_status sr_spike_weights_set_col(sr_spike_weights *w, int32_t j, const int8_t *codes) {
    if (!w || !w->mem || !codes || sr_spike_is_block_format_(w->format)) return sr_fail(SR_ERR_INVALID_ARG, "spike weights: set_col needs an int8/ternary row object");
    if (j < 0 || j >= w->n_in) return sr_fail(SR_ERR_INVALID_ARG, "spike weights: column %d outside 0..%d", j, w->n_in - 1);
    for (int32_t o = 0; o < w->n_out; o++) {
        int32_t q = codes[o];
        if (q > w->qmax || q < -w->qmax) return sr_fail(SR_ERR_INVALID_ARG, "spike weights: code %d outside -%d..%d", q, w->qmax, w->qmax);
    }
    for (int32_t o = 0; o < w->n_out; o++) {
        int32_t c = o / w->tile_w, r = o - c * w->tile_w;
        uint8_t *line = w->lines + sr_spike_line_offset(w, c, j >> 5, j & 31);
        if (w->row_sum) {
            size_t bi = sr_spike_blockvec_index(w, o, j >> 5);
            w->row_sum[bi] += codes[o] - sr_spike_line_get(line, w->format, r);
        }
        sr_spike_line_set(line, w->format, r, codes[o]);
    }
    return SR_OK;
}

sr_status sr_spike_weights_add_row_sums(sr_spike_weights *w) {
    if (!w || !w->mem) return sr_fail(SR_ERR_INVALID_ARG, "spike weights: not allocated");
    size_t nbv = (size_t)w->n_chunks * (size_t)w->n_blocks * (size_t)w->tile_w;
    if (!w->row_sum) {
        w->row_sum = sr_spike_aligned_calloc(nbv * sizeof(int32_t));
        if (!w->row_sum) return sr_fail(SR_ERR_NO_MEMORY, "spike weights: cannot allocate row sums");
    }
    for (int32_t c = 0; c < w->n_chunks; c++)
        for (int32_t b = 0; b < w->n_blocks; b++) {
            int32_t *rs = w->row_sum + ((size_t)c * (size_t)w->n_blocks + (size_t)b) * (size_t)w->tile_w;
            for (int32_t r = 0; r < w->tile_w; r++) {
                int32_t s = 0;
                for (int32_t jj = 0; jj < 32; jj++) s += sr_spike_line_get(w->lines + sr_spike_line_offset(w, c, b, jj), w->format, r);
                rs[r] = s;
            }
        }
    return SR_OK;
}

// ---------------------------------------------------------------- checks, split, jobs

sr_status sr_spike_matvec_check(const sr_spike_weights *w, const sr_spike_planes *x, int32_t o0, int32_t o1) {
    if (!w || !w->mem || !x || !x->mem || x->n <= 0) return sr_fail(SR_ERR_INVALID_ARG, "spike matvec: weights or planes not set up");
    if (x->n > w->n_in) return sr_fail(SR_ERR_INVALID_ARG, "spike matvec: %d activations for a layer with %d inputs", x->n, w->n_in);
    if (o0 < 0 || o1 < o0 || o1 > w->n_out || (o0 % w->tile_w) != 0) return sr_fail(SR_ERR_INVALID_ARG, "spike matvec: row range %d..%d invalid (n_out %d, start aligned to %d)", o0, o1, w->n_out, w->tile_w);
    if (x->n_groups < 1) return sr_fail(SR_ERR_INVALID_ARG, "spike matvec: planes have no scale");
    if (x->n_groups > 1 && (x->n != w->n_in || (x->group & 31))) return sr_fail(SR_ERR_INVALID_ARG, "spike matvec: grouped scales need all %d inputs and a group multiple of 32 (group %d)", w->n_in, x->group);
    if (w->int_scales && x->n_groups > 1) return sr_fail(SR_ERR_UNSUPPORTED, "spike matvec: integer block scales need one activation scale per token (the mean rule), found %d groups", x->n_groups);
    if (x->encoding == SR_SPIKE_BINARY) {
        if (!w->row_sum) return sr_fail(SR_ERR_INVALID_ARG, "spike matvec: the binary code needs row sums (sr_spike_weights_add_row_sums)");
        if (x->n != w->n_in) return sr_fail(SR_ERR_INVALID_ARG, "spike matvec: the binary code needs all %d inputs", w->n_in);
    }
    // int32 bound per integer segment: qmax * (sum a_j + 32 z per block).
    const int64_t z32 = (int64_t)x->offset * 32;
    if (sr_spike_is_block_format_(w->format)) {
        for (int32_t b = 0; b < x->n_words; b++)
            if ((int64_t)w->qmax * ((int64_t)x->blk_abs[b] + z32) > INT32_MAX) return sr_fail(SR_ERR_UNSUPPORTED, "spike matvec: block %d may overflow int32", b);
    } else {
        int32_t bpg = x->n_groups > 1 ? x->group / 32 : w->n_blocks;
        for (int32_t b0 = 0; b0 < x->n_words; b0 += bpg) {
            int64_t s = 0;
            for (int32_t b = b0; b < b0 + bpg && b < x->n_words; b++) s += (int64_t)x->blk_abs[b] + z32;
            if ((int64_t)w->qmax * s > INT32_MAX) return sr_fail(SR_ERR_UNSUPPORTED, "spike matvec: activation too large for int32 accumulation (sum of |counts| %lld x qmax %d > 2^31-1); lower k or clip the site", (long long)s, w->qmax);
        }
    }
    return SR_OK;
}

void sr_spike_row_split(const sr_spike_weights *w, int32_t n_rows, int ith, int nth, int32_t *o0, int32_t *o1) {
    if (n_rows > w->n_out) n_rows = w->n_out;
    if (nth < 1) nth = 1;
    int64_t chunks = (n_rows + w->tile_w - 1) / w->tile_w;
    int64_t c0 = chunks * ith / nth, c1 = chunks * (ith + 1) / nth;
    int64_t a = c0 * w->tile_w, b = c1 * w->tile_w;
    if (a > n_rows) a = n_rows;
    if (b > n_rows) b = n_rows;
    *o0 = (int32_t)a;
    *o1 = (int32_t)b;
}

void sr_spike_matvec_job_run(void *ctx, int ith, int nth) {
    sr_spike_matvec_job *job = ctx;
    if (nth > SR_SPIKE_MAX_THREADS) nth = SR_SPIKE_MAX_THREADS;  // extra threads idle
    if (ith >= nth) return;
    int32_t o0, o1;
    sr_spike_row_split(job->w, job->n_rows, ith, nth, &o0, &o1);
    if (o0 >= o1 && ith > 0) {
        job->status[ith] = SR_OK;
        memset(&job->stats[ith], 0, sizeof job->stats[ith]);
        return;
    }
    job->status[ith] = sr_spike_matvec(job->w, job->x, o0, o1, job->y, job->acc, &job->stats[ith]);
}

// ---------------------------------------------------------------- attention (option A)

sr_status sr_spike_kcache_store(sr_spike_weights *kc, int32_t pos, const float *k) {
    if (!kc || !kc->mem || !k || kc->format != SR_SPIKE_W_I8_ROW) return sr_fail(SR_ERR_INVALID_ARG, "spike kcache: needs an I8_ROW cache");
    if (pos < 0 || pos >= kc->n_out) return sr_fail(SR_ERR_INVALID_ARG, "spike kcache: position %d outside the capacity %d", pos, kc->n_out);
    const int32_t n = kc->n_in;
    int8_t codes[SR_SPIKE_MAX_TILE * 4];
    if (n > (int32_t)(sizeof codes)) return sr_fail(SR_ERR_INVALID_ARG, "spike kcache: head size %d too large", n);
    float s = 1.0f;
    // the shared definition (sr-spike-float.h), also the FPGA token program's KV_STORE
    if (sr_spike_kcache_codes(k, n, codes, &s) != 0) return sr_fail(SR_ERR_NUMERIC, "spike kcache: key contains NaN or Inf");
    return sr_spike_weights_set_row(kc, pos, codes, s);
}

sr_status sr_spike_vcache_store(sr_spike_weights *vc, int32_t pos, const float *v) {
    if (!vc || !vc->mem || !v || vc->format != SR_SPIKE_W_I8_ROW) return sr_fail(SR_ERR_INVALID_ARG, "spike vcache: needs an I8_ROW cache");
    if (pos < 0 || pos >= vc->n_in) return sr_fail(SR_ERR_INVALID_ARG, "spike vcache: position %d outside the capacity %d", pos, vc->n_in);
    const int32_t n = vc->n_out;
    int8_t codes[SR_SPIKE_MAX_TILE * 4];
    if (n > (int32_t)(sizeof codes)) return sr_fail(SR_ERR_INVALID_ARG, "spike vcache: head size %d too large", n);
    for (int32_t d = 0; d < n; d++) {
        if (!sr_is_finite_f(v[d])) return sr_fail(SR_ERR_NUMERIC, "spike vcache: value contains NaN or Inf");
        float inv = 1.0f / vc->row_scale[d];
        if (!(vc->row_scale[d] > 0.0f) || !sr_is_finite_f(inv)) return sr_fail(SR_ERR_INVALID_ARG, "spike vcache: static scale of channel %d must be positive (set row_scale)", d);
        codes[d] = sr_spike_vcache_code(v[d], vc->row_scale[d]);   // shared with the token program
    }
    return sr_spike_weights_set_col(vc, pos, codes);
}

sr_status sr_spike_attn_scores(const sr_spike_weights *kc, const sr_spike_planes *q, int32_t n_pos,
                               float kq_scale, float *scores, int32_t *acc, sr_spike_stats *stats) {
    if (!kc || !q || q->n_groups != 1 || kc->format != SR_SPIKE_W_I8_ROW) return sr_fail(SR_ERR_INVALID_ARG, "spike attention: q needs one scale and K an I8_ROW cache");
    float sx = q->scale[0] * kq_scale;
    return sr_spike_matvec_opt_(kc, q, 0, n_pos, scores, acc, stats, 1, sx, 0);
}

sr_status sr_spike_attn_scores_ref(const sr_spike_weights *kc, const sr_spike_planes *q, int32_t n_pos,
                                   float kq_scale, float *scores, int32_t *acc, sr_spike_stats *stats) {
    if (!kc || !q || q->n_groups != 1 || kc->format != SR_SPIKE_W_I8_ROW) return sr_fail(SR_ERR_INVALID_ARG, "spike attention: q needs one scale and K an I8_ROW cache");
    float sx = q->scale[0] * kq_scale;
    return sr_spike_matvec_ref_(kc, q, 0, n_pos, scores, acc, stats, 1, sx);
}

sr_status sr_spike_attn_pv(const sr_spike_weights *vc, const sr_spike_planes *p, float *out,
                           int32_t *acc, sr_spike_stats *stats) {
    if (!vc || vc->format != SR_SPIKE_W_I8_ROW) return sr_fail(SR_ERR_INVALID_ARG, "spike attention: V must be an I8_ROW cache");
    return sr_spike_matvec_opt_(vc, p, 0, vc->n_out, out, acc, stats, 0, 0.0f, 0);
}

sr_status sr_spike_attn_pv_ref(const sr_spike_weights *vc, const sr_spike_planes *p, float *out,
                               int32_t *acc, sr_spike_stats *stats) {
    if (!vc || vc->format != SR_SPIKE_W_I8_ROW) return sr_fail(SR_ERR_INVALID_ARG, "spike attention: V must be an I8_ROW cache");
    return sr_spike_matvec_ref_(vc, p, 0, vc->n_out, out, acc, stats, 0, 0.0f);
}
