// sr-spike-float.h - the float32 steps of the spike path between linear layers, as ONE set
// of static inline definitions shared by the CPU (csrc/core/sr-engine.c, csrc/core/
// sr-spike-net.c, csrc/quant/sr-quant-portable.c, csrc/spike/sr-spike-encode.c) and the
// FPGA token program (firmware/kernels/spk_token.cpp), so that a token run on the PL is
// bit-identical to the CPU spike path by construction (docs/fpga-design.md section 7).
//
// Every function states its float ops and their order. FMA contraction is off for the whole
// header (as in sr-spike.h); the one fused step the CPU takes on purpose (RoPE's rotation,
// which reproduces the FMA GCC contracts ggml's expression into) is an explicit fmaf, and
// the vector expf of ggml (SiLU) is written with explicit fmaf as ggml's AVX2 code is.
//
// libm: sr_rope_angles (powf, cosf, sinf) runs on the host only (the token program reads a
// per-position table it fills once); sr_spike_softmax calls expf, the C library's, which is
// what the CPU spike attention has always used; sqrtf and fmaf are correctly rounded by IEEE
// 754, so any conforming implementation (HLS included) gives the same bits. The C-simulation
// of the kernel links the same libm as the CPU; for synthesis expf must be the C library's
// algorithm, not an approximation (docs/fpga-design.md section 8).
//
// Compiles as C11 and as C++14; no malloc, no globals.
#ifndef SPIKERUN_SR_SPIKE_FLOAT_H
#define SPIKERUN_SR_SPIKE_FLOAT_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "sr-spike.h"

#if defined(__clang__)
#pragma float_control(push)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

#ifdef __cplusplus
extern "C" {
#endif

/// RMSNorm (ggml's rms_norm + the weight multiply): sum of (x_i * x_i) in double, ascending
/// i; mean = (float)(sum / n); scale = 1.0f / sqrtf(mean + eps); y_i = (x_i * scale) * w_i.
static inline void sr_rms_norm(const float *x, const float *weight, float *y, int32_t n, float eps) {
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int32_t i = 0; i < n; i++) y[i] = (x[i] * scale) * weight[i];
}

/// RoPE angles of one position as ggml's rope cache builds them: theta_0 = (float)pos,
/// theta_{i+1} = theta_i * base^(-2/d) (powf once); cs_i = cosf(theta_i), sn_i = sinf(theta_i).
/// Host side only (libm); the token program reads a table of these.
static inline void sr_rope_angles(float base, int32_t rope_dim, int32_t pos, float *cs, float *sn) {
    const float theta_scale = powf(base, -2.0f / (float)rope_dim);
    float theta = (float)pos;
    for (int32_t i = 0; i < rope_dim / 2; i++) {
        cs[i] = cosf(theta);
        sn[i] = sinf(theta);
        theta *= theta_scale;
    }
}

/// Llama GGUF ("normal") RoPE on n_heads heads of head_dim: rotate adjacent pairs of the first
/// rope_dim values: x0' = fmaf(x0, c, -(x1 * s)), x1' = fmaf(x0, s, x1 * c).
static inline void sr_rope_apply(float *v, int32_t n_heads, int32_t head_dim, int32_t rope_dim,
                                 const float *cs, const float *sn) {
    for (int32_t h = 0; h < n_heads; h++) {
        float *x = v + (size_t)h * (size_t)head_dim;
        for (int32_t i = 0; i < rope_dim / 2; i++) {
            const float x0 = x[2 * i], x1 = x[2 * i + 1];
            x[2 * i] = fmaf(x0, cs[i], -(x1 * sn[i]));
            x[2 * i + 1] = fmaf(x0, sn[i], x1 * cs[i]);
        }
    }
}

/// NEOX RoPE (ggml's rope_f32 with GGML_ROPE_TYPE_NEOX: rotate_pairs with n_offset =
/// rope_dim/2, the same cos/sin cache and expression as the normal mode): pair i is
/// (x_i, x_{i+rope_dim/2}); x0' = fmaf(x0, c, -(x1 * s)), x1' = fmaf(x0, s, x1 * c).
static inline void sr_rope_apply_neox(float *v, int32_t n_heads, int32_t head_dim, int32_t rope_dim,
                                      const float *cs, const float *sn) {
    const int32_t half = rope_dim / 2;
    for (int32_t h = 0; h < n_heads; h++) {
        float *x = v + (size_t)h * (size_t)head_dim;
        for (int32_t i = 0; i < half; i++) {
            const float x0 = x[i], x1 = x[i + half];
            x[i] = fmaf(x0, cs[i], -(x1 * sn[i]));
            x[i + half] = fmaf(x0, sn[i], x1 * cs[i]);
        }
    }
}

// float32 constants by their bits (hex float literals are not C++14)
#define SR_F32(u) sr_spike_float_from_bits(u)

/// ggml_v_expf (ggml-cpu/vec.h) one lane at a time: the same constants, FMAs and special
/// cases as the AVX2 version (fnmadd(a, b, c) = fmaf(-a, b, c)).
static inline float sr_ggml_expf1(float x) {
    const float r = SR_F32(0x4b400000u);
    const float z = fmaf(x, SR_F32(0x3fb8aa3bu), r);
    const float n = z - r;
    const float b = fmaf(-n, SR_F32(0x35bfbe8eu), fmaf(-n, SR_F32(0x3f317200u), x));
    uint32_t zu, one;
    const float onef = 1.0f;
    memcpy(&zu, &z, 4);
    memcpy(&one, &onef, 4);
    const uint32_t e = zu << 23;
    const float k = sr_spike_float_from_bits(e + one);
    const float u = b * b;
    const float j = fmaf(fmaf(fmaf(SR_F32(0x3c072010u), b, SR_F32(0x3d2b9f17u)), u, fmaf(SR_F32(0x3e2aaf33u), b, SR_F32(0x3efffedbu))),
                         u, SR_F32(0x3f7ffff6u) * b);
    if (!(fabsf(n) > 126.0f)) return fmaf(k, j, k);
    const uint32_t g = n <= 0.0f ? 0x82000000u : 0u;
    const float s1 = sr_spike_float_from_bits(g + 0x7f000000u);
    if (fabsf(n) > 192.0f) return s1 * s1;
    const float s2 = sr_spike_float_from_bits(e - g);
    return fmaf(s2, j, s2) * s1;
}

/// SiLU gate (ggml's swiglu): y_i = (x_i / (1.0f + e_i)) * g_i with e_i = sr_ggml_expf1(0.0f -
/// x_i) for i below the largest multiple of 8 (ggml's vector part), expf(-x_i) after it.
static inline void sr_swiglu_ref(int64_t n, float *y, const float *x, const float *g) {
    const int64_t nv = n & ~(int64_t)7;
    for (int64_t i = 0; i < nv; ++i) y[i] = (x[i] / (1.0f + sr_ggml_expf1(0.0f - x[i]))) * g[i];
    for (int64_t i = nv; i < n; ++i) y[i] = (x[i] / (1.0f + expf(-x[i]))) * g[i];
}

/// Softmax of the spike attention (in place, n >= 1): max over s_i (ascending, strict >),
/// s_i = expf(s_i - max), sum in double ascending, inv = (float)(1.0 / sum), s_i = s_i * inv.
static inline void sr_spike_softmax(float *s, int32_t n) {
    float max = -INFINITY;
    for (int32_t i = 0; i < n; i++) max = s[i] > max ? s[i] : max;
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        s[i] = expf(s[i] - max);
        sum += (double)s[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int32_t i = 0; i < n; i++) s[i] *= inv;
}

/// Residual add: x_i = x_i + y_i.
static inline void sr_add_inplace(float *x, const float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

/// Attention score scale: 1.0f / sqrtf((float)head_dim).
static inline float sr_kq_scale(int32_t head_dim) { return 1.0f / sqrtf((float)head_dim); }

/// Largest |x| as bits (sr_spike_abs_bits), NaN/Inf => >= 0x7f800000.
static inline uint32_t sr_spike_max_abs_bits(const float *x, int32_t n) {
    uint32_t m = 0;
    for (int32_t j = 0; j < n; j++) {
        uint32_t a = sr_spike_abs_bits(x[j]);
        m = a > m ? a : m;
    }
    return m;
}

// ---------------------------------------------------------------------------------------
// Encoders of one group (one scale per token), the compositions sr-spike-encode.c performs
// with the contract's primitives. Each returns 0 on success, -1 on NaN/Inf input.

/// Mean rule, one group: sum = sr_spike_sum_abs; if sum > 0 and sr_spike_scale_mean(...) == 1:
/// counts_j = sr_spike_round_clip(x_j * inv, 0.5f + rho, cap) (sr_spike_round_thrifty when
/// tau > 0), scale = s (a power of two when pow2); else all 0, scale 1.
/// Returns -2 when mean / k overflows float32 (an error on the CPU as well).
static inline int sr_spike_encode_mean_group(const float *x, int32_t n, float k, float rho, float tau,
                                             int pow2, int32_t cap, int32_t *counts, float *scale) {
    if (sr_spike_max_abs_bits(x, n) >= 0x7f800000u) return -1;
    const float th = 0.5f + rho, lo = 0.5f - tau, hi = 0.5f + tau;
    const float sum = sr_spike_sum_abs(x, n);
    float s = 1.0f, inv = 0.0f;
    int ok = sum > 0.0f ? sr_spike_scale_mean(sum, n, k, pow2, &s, &inv) : 0;
    if (ok < 0) return -2;
    if (ok != 1) {
        for (int32_t j = 0; j < n; j++) counts[j] = 0;
        *scale = 1.0f;
        return 0;
    }
    for (int32_t j = 0; j < n; j++)
        counts[j] = tau > 0.0f ? sr_spike_round_thrifty(x[j] * inv, th, lo, hi, cap)
                               : sr_spike_round_clip(x[j] * inv, th, cap);
    *scale = s;
    return 0;
}

/// Max rule, one group: m = max|x|; if m > 0 and sr_spike_scale_max(m, gamma, q, pow2) holds:
/// counts_j = sr_spike_round_clip(x_j * inv, 0.5f + rho, clip), scale = s; else 0 and 1.
static inline int sr_spike_encode_max_group(const float *x, int32_t n, int32_t q, int32_t clip, float gamma,
                                            float rho, int pow2, int32_t *counts, float *scale) {
    const uint32_t mb = sr_spike_max_abs_bits(x, n);
    if (mb >= 0x7f800000u) return -1;
    const float th = 0.5f + rho;
    float s = 1.0f, inv = 0.0f;
    if (mb == 0 || !sr_spike_scale_max(sr_spike_float_from_bits(mb), gamma, q, pow2, &s, &inv)) {
        for (int32_t j = 0; j < n; j++) counts[j] = 0;
        *scale = 1.0f;
        return 0;
    }
    for (int32_t j = 0; j < n; j++) counts[j] = sr_spike_round_clip(x[j] * inv, th, clip);
    *scale = s;
    return 0;
}

/// Unsigned fixed-scale rule (attention probabilities): counts_j = sr_spike_round_clip(p_j *
/// sr_spike_unsigned_mult(bits, pow2), 0.5f, P), P = 2^bits - 1. -1 on NaN, Inf or a
/// negative p_j.
static inline int sr_spike_encode_unsigned_group(const float *p, int32_t n, int32_t bits, int pow2,
                                                 int32_t *counts) {
    for (int32_t j = 0; j < n; j++)
        if (sr_spike_abs_bits(p[j]) >= 0x7f800000u || p[j] < 0.0f) return -1;
    const int32_t P = (1 << bits) - 1;
    const float M = sr_spike_unsigned_mult(bits, pow2);
    for (int32_t j = 0; j < n; j++) counts[j] = sr_spike_round_clip(p[j] * M, 0.5f, P);
    return 0;
}

/// K cache row of one (position, head): the max rule at Q = 127, gamma 1, rho 0 over the
/// head_dim values; codes_j = counts_j; *row_scale = s (1 for an all-zero key).
static inline int sr_spike_kcache_codes(const float *k, int32_t n, int8_t *codes, float *row_scale) {
    const uint32_t mb = sr_spike_max_abs_bits(k, n);
    if (mb >= 0x7f800000u) return -1;
    float s = 1.0f, inv = 0.0f;
    if (mb == 0 || !sr_spike_scale_max(sr_spike_float_from_bits(mb), 1.0f, 127, 0, &s, &inv)) {
        for (int32_t j = 0; j < n; j++) codes[j] = 0;
        *row_scale = 1.0f;
        return 0;
    }
    for (int32_t j = 0; j < n; j++) codes[j] = (int8_t)sr_spike_round_clip(k[j] * inv, 0.5f, 127);
    *row_scale = s;
    return 0;
}

/// V cache code of one channel: sr_spike_round_clip(v * (1.0f / s_v), 0.5f, 127).
static inline int8_t sr_spike_vcache_code(float v, float s_v) {
    const float inv = 1.0f / s_v;
    return (int8_t)sr_spike_round_clip(v * inv, 0.5f, 127);
}

/// Smallest T (1..16) whose planes of a bitwise encoding hold every count; -1 if none.
static inline int32_t sr_spike_min_planes_bitwise(const int32_t *counts, int32_t n, int32_t enc) {
    int32_t lo = 0, hi = 0;
    for (int32_t j = 0; j < n; j++) {
        if (counts[j] < lo) lo = counts[j];
        if (counts[j] > hi) hi = counts[j];
    }
    for (int32_t T = 1; T <= SR_SPIKE_MAX_T_BITWISE; T++)
        if (sr_spike_count_fits(lo, enc, T, 0) && sr_spike_count_fits(hi, enc, T, 0)) return T;
    return -1;
}

#ifdef __cplusplus
}
#endif

#if defined(__clang__)
#pragma float_control(pop)
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

#endif // SPIKERUN_SR_SPIKE_FLOAT_H
