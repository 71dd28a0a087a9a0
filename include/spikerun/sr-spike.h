// sr-spike.h - the spike kernel contract: integer semantics shared by the CPU kernels
// (csrc/spike/) and the FPGA kernels (firmware/), docs/spike-algorithms.md §1-§5, §8.
//
// One header, compiled as C11 (csrc, Swift via the CSpikeRun module) and as C++14 (HLS
// kernel + its C-simulation with g++/clang++). It fixes, bit for bit:
//   1. how a float activation vector becomes integer counts (max rule, mean rule, unsigned
//      fixed-scale rule for attention probabilities): the float32 ops, their order, rhaz;
//   2. how counts become spike planes (four encodings) and the packed plane layout;
//   3. the packed weight layout (Q4_1, Q8_0, int8 rows, ternary rows) - one 64-byte line per
//      (input column, tile of outputs), i.e. one 512-bit FPGA word;
//   4. the integer accumulation (int32, spike-gated adds/subs and shifts only) and its
//      overflow rule;
//   5. the ONE integer->float rescale sequence (sr_spike_rescale_*), which every
//      implementation calls or copies op for op (fixed order, no contraction).
// The static inline parts below use no malloc, no libm, no globals: the HLS kernel can use
// them as they are. Functions declared SR_API are implemented in csrc/spike/ (host only).
//
// ---------------------------------------------------------------------------------------
// Pipeline for one spiking site (one token):
//   float x[n] --sr_spike_encode_mean / _max / _unsigned--> int32 counts[n] + float scales
//   counts     --sr_spike_planes_from_counts(enc, T)----->  sr_spike_planes (bit planes)
//   planes x packed weights --sr_spike_matvec(rows o0..o1)--> float y[o] (+ int32 sums)
// Threads split a matvec by output rows: sr_spike_row_split + sr_spike_matvec_job_run
// (signature of sr_pool_fn).
//
// Integer semantics (decisions, with reasons):
// - Counts are int32; bitwise encodings allow T <= 16 (|n| <= 65535), rate encodings
//   T <= SR_SPIKE_MAX_T. The mean rule caps |n| at 32767 (§1), so T <= 15 planes there.
// - Accumulators are int32. A call is REJECTED (SR_ERR_UNSUPPORTED, nothing written) when
//   the exact bound qmax * sum_j a_j (+ z * len for the binary offset) of an integer segment
//   exceeds INT32_MAX, where a_j = sum_t |c_t| [sigma_jt != 0] (see sr_spike_planes.blk_abs).
//   We reject instead of switching to int64 because (a) for Q4_1/Q8_0 the segment is a
//   32-block and the bound is always < 2^31 (32 * 65535 * 128), and (b) for int8/ternary rows
//   the mean rule itself bounds sum_j |n_j| <= n_in * (k + 0.5), so only pathological inputs
//   (n_in * (k + 0.5) * 128 >= 2^31) can be rejected; the FPGA keeps one accumulator width.
// - Every partial sum of the accumulation (in any order: Horner per plane, shift per event,
//   per-plane sums, any subset of the columns) is bounded by the same qmax * sum_j a_j, so
//   every order gives the same int32 result; implementations may use int16 lanes for any
//   set of columns whose bound is <= 32767 (the AVX2 path proves it per block, or splits a
//   block into column groups that each fit, at run time) and add the parts in int32.
// - Plane t has weight c_t = sign_t * 2^shift_t (sr_spike_plane_shift / _sign); Horner:
//   acc = (acc << horner_t) + sign_t * P_t, where horner_t = 1 for bitwise codes at t > 0.
//
// Float semantics: float32 only, IEEE round-to-nearest, every op a separate rounding (no FMA
// contraction: this header switches contraction off for its own functions; the AVX2 CPU path
// is compiled without "fma" so it cannot contract either). Order of float ops is given with
// each function and must be kept by any reimplementation.
#ifndef SPIKERUN_SR_SPIKE_H
#define SPIKERUN_SR_SPIKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sr-common.h"
#include "sr-status.h"

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

// ---------------------------------------------------------------------------------------
// Constants

#define SR_SPIKE_BLOCK 32          // inputs per block: plane mask word, weight block, event list
#define SR_SPIKE_LINE_BYTES 64     // one packed weight line = 512 bits = one FPGA word
#define SR_SPIKE_MAX_T 256         // most planes per encoding call (rate codes)
#define SR_SPIKE_MAX_T_BITWISE 16  // most planes for the bitwise codes
#define SR_SPIKE_MEAN_CAP 32767    // safety cap of the mean rule, |n| <= 2^15 - 1
#define SR_SPIKE_MAX_TILE 256      // largest tile width (ternary)

/// Spike-train encodings (docs/spike-algorithms.md §2). Sign-magnitude is the default.
typedef enum SR_CLOSED_ENUM sr_spike_encoding {
    SR_SPIKE_SIGN_MAGNITUDE = 0,   // {-1,0,+1}, c_t = 2^(T-1-t), MSB first
    SR_SPIKE_TWOS_COMPLEMENT = 1,  // {0,1} bits of n mod 2^T, c_0 = -2^(T-1), c_t = 2^(T-1-t)
    SR_SPIKE_TERNARY = 2,          // {-1,0,+1}, c_t = 1, fires sign(n) on the first |n| steps
    SR_SPIKE_BINARY = 3,           // {0,1}, c_t = 1, fires on the first n + z steps (offset z)
    SR_SPIKE_NAF = 4,              // {-1,0,+1}, c_t = 2^(T-1-t): non-adjacent form of n (no two
                                   // adjacent non-zero digits), the signed-digit code with the
                                   // fewest spikes; |n| <= (2^(T+1) - 1) / 3
} sr_spike_encoding;

/// The shift-weighted codes (bitwise planes, Horner between planes).
static inline bool sr_spike_encoding_is_bitwise(int32_t enc) {
    return enc == SR_SPIKE_SIGN_MAGNITUDE || enc == SR_SPIKE_TWOS_COMPLEMENT || enc == SR_SPIKE_NAF;
}

/// Packed weight formats (docs/spike-algorithms.md §4).
typedef enum SR_CLOSED_ENUM sr_spike_format {
    SR_SPIKE_W_Q4_1 = 0,     // codes 0..15, per-(row, 32-block) d and m: w = d*q + m (GGUF)
    SR_SPIKE_W_Q8_0 = 1,     // codes -128..127, per-(row, 32-block) d: w = d*q (GGUF)
    SR_SPIKE_W_I8_ROW = 2,   // codes -127..127, per-row scale s_w: w = s_w*q
    SR_SPIKE_W_TERNARY = 3,  // codes -1, 0, +1 (2 bits), per-row scale s_w
    // Packing requests only (never a stored format): GGUF Q4_1 rows stored as SR_SPIKE_W_Q4_1
    // with integer block scales (int_scales = 1): w = sd*D*q + sm*M (sr_spike_weights_int_scales).
    SR_SPIKE_W_Q4_1_INT = 4,
} sr_spike_format;

/// SIMD levels of the optimized CPU kernels.
typedef enum SR_CLOSED_ENUM sr_spike_simd {
    SR_SPIKE_SIMD_AUTO = -1,      // best level the CPU supports
    SR_SPIKE_SIMD_PORTABLE = 0,   // plain C (same algorithm, int32 lanes)
    SR_SPIKE_SIMD_AVX2 = 1,       // x86-64 AVX2 (int16 lanes where proven safe)
    SR_SPIKE_SIMD_AVX512 = 2,     // AVX2 plus AVX-512 BW block kernels (Q4_1, int8 codes)
} sr_spike_simd;

// ---------------------------------------------------------------------------------------
// 1. Encoders: float activations -> integer counts (§1, §3)

/// Max rule, per token or per group (§1 steps 1-4, §3 knobs).
typedef struct sr_spike_max_params {
    int32_t group;  // G: channels per scale; 0 = one scale per token; else divides n
    int32_t q;      // Q = 2^(b-1) - 1, 1..32767 (b=8 -> 127)
    int32_t clip;   // membrane clip C, 1..Q; 0 = Q
    float gamma;    // clip level alpha = gamma * max|x|, in (0, 1]
    float rho;      // dead-zone rounding offset, [0, 0.5); 0 = plain rhaz
    int32_t pow2;   // 1: s rounded up to a power of two (sr_spike_pow2_ceil); 0 = off
} sr_spike_max_params;

/// Mean-step rule (§1, recommended default): s = mean|x| / k, no clip but the safety cap.
typedef struct sr_spike_mean_params {
    int32_t group;  // channels per scale; 0 = one scale per token (the spec's rule)
    int32_t cap;    // safety cap on |n|, 1..32767; 0 = 32767
    float k;        // resolution, > 0 and finite
    float rho;      // dead-zone rounding offset, [0, 0.5); 0 = plain rhaz
    float tau;      // spike-thrifty rounding margin [0, 0.5] for NAF trains; 0 = off
    int32_t pow2;   // 1: s snapped to the nearest power of two (sr_spike_pow2_snap); 0 = off
} sr_spike_mean_params;

/// Defaults for a b-bit-equivalent max rule: G = token, Q = C = 2^(b-1)-1, gamma 1, rho 0.
SR_API sr_spike_max_params sr_spike_max_default_params(int32_t bits);
/// Defaults for the mean rule: G = token, cap 32767, rho 0, tau 0.
SR_API sr_spike_mean_params sr_spike_mean_default_params(float k);

/// Max rule. counts: (n); scales: (n / G) floats (one per group, s = 1 for all-zero groups).
/// NaN/Inf anywhere -> SR_ERR_NUMERIC and nothing is written. Bad params -> SR_ERR_INVALID_ARG.
SR_API sr_status sr_spike_encode_max(const float *x, int32_t n, const sr_spike_max_params *p,
                                     int32_t *counts, float *scales);
/// Mean-step rule, one scale per token, cap 32767, rho 0. scale: one float.
SR_API sr_status sr_spike_encode_mean(const float *x, int32_t n, float k, int32_t *counts,
                                      float *scale);
/// Mean-step rule with all knobs. scales: (n / G) floats.
SR_API sr_status sr_spike_encode_mean_ex(const float *x, int32_t n, const sr_spike_mean_params *p,
                                         int32_t *counts, float *scales);
/// Unsigned fixed-scale rule for attention probabilities (§5 option A): P = 2^bits - 1,
/// n_i = min(rhaz(p_i * M), P) with M = P, or M = 2^bits when pow2; the scale is 1/M
/// (sr_spike_unsigned_scale). bits in 1..16. Negative, NaN or Inf p -> SR_ERR_NUMERIC
/// (nothing written).
SR_API sr_status sr_spike_encode_unsigned(const float *p, int32_t n, int32_t bits, int pow2, int32_t *counts);

/// Exact rhaz with dead zone and clip, on one float32 value v = x * inv (§1 step 4, §3):
///   a = |v|; if a >= 2^23: mag = clip; else r = trunc(a) (exact), f = a - r (exact),
///   mag = min(r + (f >= th), clip); result = sign(v) * mag.
/// th = 0.5f + rho (float32 add), so rho = 0 is exactly round-half-away-from-zero
/// (including 0.49999997 -> 0, which floor(a + 0.5f) would get wrong).
static inline int32_t sr_spike_round_clip(float v, float th, int32_t clip) {
    float a = v < 0.0f ? -v : v;
    int32_t mag;
    if (!(a < 8388608.0f)) {
        mag = clip;
    } else {
        int32_t r = (int32_t)a;
        float f = a - (float)r;
        mag = r + (f >= th ? 1 : 0);
        if (mag > clip) mag = clip;
    }
    return v < 0.0f ? -mag : mag;
}

/// Number of non-zero digits of the non-adjacent form of m < 2^31: with h = m >> 1 they are
/// the set bits of h ^ (m + h). Counted with shifts, masks and adds (no multiply, no builtin).
static inline int32_t sr_spike_naf_weight(uint32_t m) {
    const uint32_t h = m >> 1;
    uint32_t c = h ^ (m + h);
    c = c - ((c >> 1) & 0x55555555u);
    c = (c & 0x33333333u) + ((c >> 2) & 0x33333333u);
    c = (c + (c >> 4)) & 0x0f0f0f0fu;
    c = c + (c >> 8);
    c = c + (c >> 16);
    return (int32_t)(c & 0x3fu);
}

/// Spike-thrifty rounding (mean rule with NAF trains, §3): like sr_spike_round_clip, except
/// that of the two neighbours r = trunc(|v|) and r + 1, the one whose NAF fires fewer spikes
/// is taken whenever it lies within 0.5 + tau steps of |v|: r when f <= hi, r + 1 when f >= lo,
/// with hi = 0.5f + tau and lo = 0.5f - tau (float32, computed once per site). Equal weights
/// keep the rhaz choice. The rounding error stays within 0.5 + tau steps; tau = 0 is never
/// passed here (the plain rule is used).
static inline int32_t sr_spike_round_thrifty(float v, float th, float lo, float hi, int32_t clip) {
    const float a = v < 0.0f ? -v : v;
    if (!(a < 8388608.0f)) return sr_spike_round_clip(v, th, clip);
    const int32_t r = (int32_t)a;
    const float f = a - (float)r;
    const int32_t wl = sr_spike_naf_weight((uint32_t)r), wh = sr_spike_naf_weight((uint32_t)r + 1u);
    int32_t mag;
    if (wl < wh && f <= hi) mag = r;
    else if (wh < wl && f >= lo) mag = r + 1;
    else return sr_spike_round_clip(v, th, clip);   // equal weights or too far: plain rule
    if (mag > clip) mag = clip;
    return v < 0.0f ? -mag : mag;
}

/// |x| as raw bits (sign cleared). For finite floats integer order equals float order, and
/// bits >= 0x7f800000 means NaN or Inf: one integer max finds both max|x| and garbage.
static inline uint32_t sr_spike_abs_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u & 0x7fffffffu;
}

static inline float sr_spike_float_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/// Canonical sum of |x_j| over n values (mean rule): 8 float32 lanes, lane l sums
/// |x_j| for j = l (mod 8) in ascending j; then ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)).
/// (= an 8-wide SIMD accumulator followed by the usual 256->128->64->32 halving.)
static inline float sr_spike_sum_abs(const float *x, int32_t n) {
    float l[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    int32_t j = 0, k = 0;
    for (j = 0; j < n; j++) {
        float a = x[j] < 0.0f ? -x[j] : x[j];
        l[k] = l[k] + a;
        k = (k + 1) & 7;
    }
    float a04 = l[0] + l[4], a15 = l[1] + l[5], a26 = l[2] + l[6], a37 = l[3] + l[7];
    float a0 = a04 + a26, a1 = a15 + a37;
    return a0 + a1;
}

/// 2^(floor(log2 s) + [mantissa field >= up_from]) for a normal s, from the bits alone; zero
/// and subnormal s give 0 (the group is then silent), a result past the float range +Inf,
/// Inf/NaN pass through.
static inline float sr_spike_pow2_round_(float s, uint32_t up_from) {
    uint32_t b;
    memcpy(&b, &s, 4);
    const uint32_t e = (b >> 23) & 0xffu;
    if (e == 0xffu) return s;
    if (e == 0u) return 0.0f;
    const uint32_t up = (b & 0x7fffffu) >= up_from ? 1u : 0u;
    const uint32_t r = (b & 0x80000000u) | ((e + up) << 23);   // e + up = 255: Inf
    float out;
    memcpy(&out, &r, 4);
    return out;
}
/// Nearest power of two to s in the log domain (§1, power-of-two steps of the mean rule): up
/// when 1 + m/2^23 >= sqrt 2, i.e. m >= 0x3504F4.
static inline float sr_spike_pow2_snap(float s) { return sr_spike_pow2_round_(s, 0x3504f4u); }
/// Smallest power of two >= s (the max rule's power-of-two steps: no count grows past Q).
static inline float sr_spike_pow2_ceil(float s) { return sr_spike_pow2_round_(s, 1u); }

/// Scale of the max rule from m = max|x| (m finite, > 0): alpha = gamma * m; s = alpha / Q;
/// inv = 1.0f / s. Returns false when inv is not finite (s below ~2^-128: the group is then
/// treated as all-zero, counts 0, s = 1).
static inline bool sr_spike_scale_max(float m, float gamma, int32_t q, int pow2, float *s, float *inv) {
    float alpha = gamma * m;
    float sv = alpha / (float)q;
    if (pow2) sv = sr_spike_pow2_ceil(sv);
    float iv = 1.0f / sv;
    *s = sv;
    *inv = iv;
    return sv > 0.0f && sv <= 3.40282347e38f && iv <= 3.40282347e38f;
}

/// Scale of the mean rule from sum = sr_spike_sum_abs (finite, > 0) over n values:
/// mean = sum / (float)n; s = mean / k (snapped by sr_spike_pow2_snap when pow2);
/// inv = 1.0f / s. Returns 1 if ok, 0 if inv is not finite (treat as all-zero), -1 if s is
/// not finite (error).
static inline int sr_spike_scale_mean(float sum, int32_t n, float k, int pow2, float *s, float *inv) {
    float mean = sum / (float)n;
    float sv = mean / k;
    if (pow2) sv = sr_spike_pow2_snap(sv);
    float iv = 1.0f / sv;
    *s = sv;
    *inv = iv;
    if (!(sv <= 3.40282347e38f)) return -1;
    return (sv > 0.0f && iv <= 3.40282347e38f) ? 1 : 0;
}

/// Multiplier M of sr_spike_encode_unsigned: 2^bits - 1, or 2^bits with pow2.
static inline float sr_spike_unsigned_mult(int32_t bits, int pow2) {
    return (float)(pow2 ? (1 << bits) : (1 << bits) - 1);
}
/// Activation scale of sr_spike_encode_unsigned: 1.0f / M (exactly 2^-bits with pow2).
static inline float sr_spike_unsigned_scale(int32_t bits, int pow2) {
    return 1.0f / sr_spike_unsigned_mult(bits, pow2);
}

// ---------------------------------------------------------------------------------------
// 2. Counts -> spike planes (§2)

/// Exponent of plane t's weight |c_t| = 2^shift: T-1-t for the bitwise codes, 0 for rate codes.
static inline int32_t sr_spike_plane_shift(int32_t enc, int32_t T, int32_t t) {
    return sr_spike_encoding_is_bitwise(enc) ? T - 1 - t : 0;
}
/// Sign of plane t's weight: -1 only for plane 0 of two's complement.
static inline int32_t sr_spike_plane_sign(int32_t enc, int32_t t) {
    return (enc == SR_SPIKE_TWOS_COMPLEMENT && t == 0) ? -1 : 1;
}
/// Horner doubling before plane t: acc = (acc << h) + sign_t * P_t (1 for bitwise t > 0).
static inline int32_t sr_spike_horner_shift(int32_t enc, int32_t t) {
    return (t > 0 && sr_spike_encoding_is_bitwise(enc)) ? 1 : 0;
}

/// True if `count` is representable with T planes of `enc` (offset z: binary only).
static inline bool sr_spike_count_fits(int32_t count, int32_t enc, int32_t T, int32_t z) {
    switch (enc) {
    case SR_SPIKE_SIGN_MAGNITUDE:
        return T >= 1 && T <= SR_SPIKE_MAX_T_BITWISE && count <= (1 << T) - 1 &&
               count >= -((1 << T) - 1);
    case SR_SPIKE_TWOS_COMPLEMENT:
        return T >= 1 && T <= SR_SPIKE_MAX_T_BITWISE && count <= (1 << (T - 1)) - 1 &&
               count >= -(1 << (T - 1));
    case SR_SPIKE_TERNARY:
        return T >= 1 && T <= SR_SPIKE_MAX_T && count <= T && count >= -T;
    case SR_SPIKE_BINARY:
        return T >= 1 && T <= SR_SPIKE_MAX_T && z >= 0 && count + z >= 0 && count + z <= T;
    case SR_SPIKE_NAF: {  // the NAF of |n| has at most T digits iff |n| <= (2^(T+1) - 1) / 3
        if (T < 1 || T > SR_SPIKE_MAX_T_BITWISE) return false;
        const int32_t lim = (int32_t)(((1u << (T + 1)) - 1u) / 3u);
        return count <= lim && count >= -lim;
    }
    default:
        return false;
    }
}

/// Digit k (weight 2^k) of the non-adjacent form of n, in {-1, 0, +1}: n = sum_k d_k 2^k.
/// Digits come from the low end: an odd remainder m gives d = 2 - (m mod 4), then m = (m - d) / 2.
static inline int32_t sr_spike_naf_digit(int32_t n, int32_t k) {
    int64_t m = n < 0 ? -(int64_t)n : (int64_t)n;
    int32_t d = 0;
    for (int32_t i = 0; i <= k; i++) {
        d = (m & 1) ? 2 - (int32_t)(m & 3) : 0;
        m = (m - d) >> 1;
    }
    return n < 0 ? -d : d;
}

/// Spike sigma_t in {-1, 0, +1} of one count at step t (count must fit, see above).
static inline int32_t sr_spike_sigma(int32_t count, int32_t enc, int32_t T, int32_t z, int32_t t) {
    switch (enc) {
    case SR_SPIKE_SIGN_MAGNITUDE: {
        int32_t mag = count < 0 ? -count : count;
        int32_t bit = (mag >> (T - 1 - t)) & 1;
        return count < 0 ? -bit : bit;
    }
    case SR_SPIKE_TWOS_COMPLEMENT: {
        uint32_t u = (uint32_t)count & ((1u << T) - 1u);
        return (int32_t)((u >> (T - 1 - t)) & 1u);
    }
    case SR_SPIKE_TERNARY: {
        int32_t mag = count < 0 ? -count : count;
        return t < mag ? (count < 0 ? -1 : 1) : 0;
    }
    case SR_SPIKE_BINARY:
        return t < count + z ? 1 : 0;
    case SR_SPIKE_NAF:
        return sr_spike_naf_digit(count, T - 1 - t);
    default:
        return 0;
    }
}

/// Count -> spike train of T steps (train[t] in {-1,0,1}). Returns false if it does not fit.
static inline bool sr_spike_encode_count(int32_t count, int32_t enc, int32_t T, int32_t z,
                                         int8_t *train) {
    if (!sr_spike_count_fits(count, enc, T, z)) return false;
    for (int32_t t = 0; t < T; t++) train[t] = (int8_t)sr_spike_sigma(count, enc, T, z, t);
    return true;
}

/// Spike train -> count: n = sum_t c_t sigma_t - z (shifts only).
static inline int32_t sr_spike_decode_train(const int8_t *train, int32_t enc, int32_t T, int32_t z) {
    int32_t n = 0;
    for (int32_t t = 0; t < T; t++) {
        if (train[t] == 0) continue;
        int32_t v = 1 << sr_spike_plane_shift(enc, T, t);
        if (train[t] < 0) v = -v;
        n += sr_spike_plane_sign(enc, t) < 0 ? -v : v;
    }
    return enc == SR_SPIKE_BINARY ? n - z : n;
}

/// Encoded activation vector: the packed planes every kernel (CPU ref/opt, FPGA) consumes.
///
/// Packed contract (what goes to the FPGA): `bits` and `scale`, plus the scalars.
///   bits[(t * 2 + 0) * n_words + b] bit jj  <=>  sigma(32b + jj, t) = +1
///   bits[(t * 2 + 1) * n_words + b] bit jj  <=>  sigma(32b + jj, t) = -1
/// i.e. for each plane t, one positive and one negative 32-bit mask per 32-input block.
/// Bits for inputs >= n are zero. Encodings with {0,1} spikes never set negative masks.
/// Derived fields (host helpers, filled by sr_spike_planes_finalize from `bits`):
///   blk_abs[b]   = sum_{j in b} a_j, a_j = sum_t 2^shift_t [sigma != 0]  (overflow bound)
///   blk_sum[b]   = N_b = sum_{j in b} n_j (true counts, offset removed)  (Q4_1 m-term)
///   blk_tfirst[b] = first plane with a spike in block b (T if none)
///   spikes       = number of nonzero sigma (events)
/// Event lists (built on demand by sr_spike_planes_events; has_events = 1 after):
///   ev[ev_start[t] .. ev_start[t+1]) holds (j << 1) | (sigma < 0) for the inputs j that
///   fire at step t, ascending j. The kernels iterate the mask bits directly (same order).
typedef struct sr_spike_planes {
    int32_t n;          // activations (inputs); may be < the weights' n_in (rest silent)
    int32_t n_words;    // ceil(n / 32): mask words (blocks) per plane and sign
    int32_t T;          // planes (time steps)
    int32_t encoding;   // sr_spike_encoding
    int32_t offset;     // z of the binary code, 0 otherwise
    int32_t group;      // channels per activation scale (n for one scale per token)
    int32_t n_groups;   // ceil(n / group)
    int32_t has_events; // 1 once ev/ev_start match bits (sr_spike_planes_events)
    uint32_t *bits;     // (T, 2, n_words) masks, see above
    float *scale;       // (n_groups) activation scales s_x
    int32_t *blk_abs;   // (n_words)
    int32_t *blk_sum;   // (n_words)
    int32_t *blk_tfirst;// (n_words)
    int32_t *ev_start;  // (T + 1)
    uint32_t *ev;       // (spikes) events
    uint64_t spikes;    // nonzero sigma over all planes = number of events
    int32_t n_cap;      // capacity (inputs) of this object
    int32_t T_cap;      // capacity (planes)
    uint64_t ev_cap;    // capacity of ev
    void *mem;          // owned allocation (sr_spike_planes_free)
} sr_spike_planes;

/// Allocate planes for up to n_cap inputs and T_cap planes (zeroed). Free with _free.
SR_API sr_status sr_spike_planes_init(sr_spike_planes *p, int32_t n_cap, int32_t T_cap);
/// Frees the buffers and zeroes *p. NULL accepted.
SR_API void sr_spike_planes_free(sr_spike_planes *p);

/// Smallest T that represents every count with `enc` (>= 1), or -1 if none <= the maximum.
SR_API int32_t sr_spike_min_planes(const int32_t *counts, int32_t n, sr_spike_encoding enc,
                                   int32_t offset);

/// Counts -> planes (+ finalize). scales: (ceil(n/group)) floats or NULL (all 1);
/// group 0 = n. SR_ERR_INVALID_ARG if a count does not fit T planes of `enc`, or if the
/// binary code is used with n not a multiple of 32.
SR_API sr_status sr_spike_planes_from_counts(sr_spike_planes *p, const int32_t *counts, int32_t n,
                                             sr_spike_encoding enc, int32_t T, int32_t offset,
                                             const float *scales, int32_t group);
/// Spike trains (T, n) row-major, int8 in {-1,0,1} (the §9 [step][neuron] layout) -> planes.
SR_API sr_status sr_spike_planes_from_trains(sr_spike_planes *p, const int8_t *trains, int32_t n,
                                             sr_spike_encoding enc, int32_t T, int32_t offset,
                                             const float *scales, int32_t group);
/// Recompute the derived fields from `bits` (after filling bits by hand).
SR_API sr_status sr_spike_planes_finalize(sr_spike_planes *p);
/// Build the per-plane event lists from `bits` (O(spikes + T * n / 32)).
SR_API sr_status sr_spike_planes_events(sr_spike_planes *p);
/// Planes -> counts (n values): n_j = sum_t c_t sigma_jt - z.
SR_API void sr_spike_planes_to_counts(const sr_spike_planes *p, int32_t *counts);
/// Planes -> spike trains (T, n) row-major int8.
SR_API void sr_spike_planes_to_trains(const sr_spike_planes *p, int8_t *trains);

/// sigma(j, t) read from the packed masks.
static inline int32_t sr_spike_planes_sigma(const sr_spike_planes *p, int32_t j, int32_t t) {
    const uint32_t *pos = p->bits + (size_t)t * 2u * (size_t)p->n_words;
    const uint32_t *neg = pos + p->n_words;
    uint32_t m = 1u << (j & 31);
    return (pos[j >> 5] & m) ? 1 : ((neg[j >> 5] & m) ? -1 : 0);
}

/// Inputs of block b (bit jj: input 32 b + jj) that fire in some plane; 0 past the last block.
/// Only these inputs' weight lines are read.
static inline uint32_t sr_spike_planes_fired(const sr_spike_planes *p, int32_t b) {
    if (b >= p->n_words) return 0;
    const size_t stride = (size_t)p->n_words * 2;
    uint32_t m = 0;
    for (int32_t t = p->blk_tfirst[b]; t < p->T; t++) {
        const uint32_t *pm = p->bits + stride * (size_t)t + (size_t)b;
        m |= pm[0] | pm[p->n_words];
    }
    return m;
}

// ---------------------------------------------------------------------------------------
// 3. Packed weights (input-major tiles of 64-byte lines) and the spike matvec (§4)
//
// Outputs are cut into tiles of tile_w rows, tile_w = 512 / bits per code:
//   Q4_1: 128 rows (4-bit codes), Q8_0 and I8_ROW: 64 rows (8-bit), TERNARY: 256 (2-bit).
// Inputs are cut into 32-blocks. Line (c, b, jj) holds the codes of input column
// j = 32b + jj for rows c*tile_w .. c*tile_w + tile_w - 1, at byte offset
//   ((c * n_blocks + b) * 32 + jj) * 64           (chunk-major: a row range is contiguous)
// Inside a line (little-endian 16-bit words w = 0..31, half h = w >> 4, lane i = w & 15),
// row r of the tile lives at:
//   Q4_1     r = h*64 + k*16 + i : word h*16+i, bits 4k..4k+3   (k = 0..3), value 0..15
//   TERNARY  r = h*128 + k*16 + i: word h*16+i, bits 2k..2k+1   (k = 0..7), 2-bit two's
//            complement: 00 = 0, 01 = +1, 11 = -1 (10 never stored)
//   Q8_0/I8  r = byte r, int8
// so a 256-bit SIMD load of one half yields 16-lane vectors of consecutive rows with one
// shift+mask each, and an FPGA port gets one column of a tile per 512-bit beat.
// Rows >= n_out are padding (code 0, scales 0).
// Per-row-per-block scales (Q4_1 d and m, Q8_0 d) use the same tiling and stay IEEE fp16
// bits exactly as in the GGUF (0.625 bytes per Q4_1 weight in all, like the GGUF itself):
//   d[(c * n_blocks + b) * tile_w + r]
// Every implementation widens them exactly to float32 (sr_spike_f16_to_f32 / vcvtph2ps)
// before the shared rescale.
// Per-row scales (I8_ROW, TERNARY): row_scale[o], o < n_out_pad.
// Integer block scales (Q4_1 with int_scales = 1): d and m hold int16 integers D, M (two's
// complement bits, |D|, |M| <= 255) in the same tiling, row_scale[o] = sd and
// row_scale_m[o] = sm, so that w = sd*D*q + sm*M (sr_spike_weights_int_scales).
// Optional row sums (needed only for the binary encoding's offset correction):
//   row_sum[(c * n_blocks + b) * tile_w + r] = sum_{jj} q(row, 32b + jj).
typedef struct sr_spike_weights {
    int32_t format;     // sr_spike_format
    int32_t n_in;       // inputs (columns), multiple of 32
    int32_t n_out;      // outputs (rows)
    int32_t n_out_pad;  // n_out rounded up to tile_w
    int32_t tile_w;     // rows per line: 128, 64 or 256
    int32_t n_blocks;   // n_in / 32
    int32_t n_chunks;   // n_out_pad / tile_w
    int32_t qmax;       // largest |code|: 15, 128, 127, 1
    uint8_t *lines;     // (n_chunks, n_blocks, 32) lines of 64 bytes, 64-byte aligned
    uint16_t *d;        // (n_chunks, n_blocks, tile_w) fp16 block scales (Q4_1, Q8_0) or NULL
    uint16_t *m;        // (n_chunks, n_blocks, tile_w) fp16 block mins (Q4_1) or NULL
    float *row_scale;   // (n_out_pad) per-row scales (I8_ROW, TERNARY; sd of int_scales) or NULL
    float *row_scale_m; // (n_out_pad) sm of int_scales, else NULL
    int32_t int_scales; // Q4_1 only: d, m hold integers D, M (one float pair per row)
    int32_t *row_sum;   // (n_chunks, n_blocks, tile_w) or NULL (sr_spike_weights_add_row_sums)
    size_t bytes;       // bytes of the allocation
    void *mem;          // owned allocation
} sr_spike_weights;

/// Exact IEEE half -> float32 (subnormals, Inf and NaN included).
static inline float sr_spike_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (uint32_t)(h >> 10) & 0x1fu, man = (uint32_t)h & 0x3ffu;
    uint32_t u;
    if (exp == 0x1fu) {
        u = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
        u = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (man == 0) {
        u = sign;
    } else {  // subnormal half: normalize
        uint32_t e = 113u;
        while (!(man & 0x400u)) { man <<= 1; e--; }
        u = sign | (e << 23) | ((man & 0x3ffu) << 13);
    }
    return sr_spike_float_from_bits(u);
}

/// Rows per line of a format (128, 64, 64, 256), 0 for an unknown format.
static inline int32_t sr_spike_tile_width(int32_t fmt) {
    switch (fmt) {
    case SR_SPIKE_W_Q4_1: return 128;
    case SR_SPIKE_W_Q8_0: return 64;
    case SR_SPIKE_W_I8_ROW: return 64;
    case SR_SPIKE_W_TERNARY: return 256;
    default: return 0;
    }
}

/// Largest |code| of a format (the qmax of the overflow bound).
static inline int32_t sr_spike_format_qmax(int32_t fmt) {
    switch (fmt) {
    case SR_SPIKE_W_Q4_1: return 15;
    case SR_SPIKE_W_Q8_0: return 128;
    case SR_SPIKE_W_I8_ROW: return 127;
    case SR_SPIKE_W_TERNARY: return 1;
    default: return 0;
    }
}

/// Code of tile row r (0 .. tile_w-1) inside one 64-byte line.
static inline int32_t sr_spike_line_get(const uint8_t *line, int32_t fmt, int32_t r) {
    switch (fmt) {
    case SR_SPIKE_W_Q4_1: {
        int32_t w = ((r >> 6) << 4) | (r & 15), k = (r >> 4) & 3;
        uint32_t word = (uint32_t)line[2 * w] | ((uint32_t)line[2 * w + 1] << 8);
        return (int32_t)((word >> (4 * k)) & 15u);
    }
    case SR_SPIKE_W_TERNARY: {
        int32_t w = ((r >> 7) << 4) | (r & 15), k = (r >> 4) & 7;
        uint32_t word = (uint32_t)line[2 * w] | ((uint32_t)line[2 * w + 1] << 8);
        uint32_t v = (word >> (2 * k)) & 3u;
        return v == 1u ? 1 : (v == 3u ? -1 : 0);
    }
    default:
        return (int32_t)(int8_t)line[r];
    }
}

/// Store code q at tile row r of a line (the inverse of sr_spike_line_get).
static inline void sr_spike_line_set(uint8_t *line, int32_t fmt, int32_t r, int32_t q) {
    switch (fmt) {
    case SR_SPIKE_W_Q4_1: {
        int32_t w = ((r >> 6) << 4) | (r & 15), k = (r >> 4) & 3;
        uint32_t word = (uint32_t)line[2 * w] | ((uint32_t)line[2 * w + 1] << 8);
        word = (word & ~(15u << (4 * k))) | (((uint32_t)q & 15u) << (4 * k));
        line[2 * w] = (uint8_t)word;
        line[2 * w + 1] = (uint8_t)(word >> 8);
        break;
    }
    case SR_SPIKE_W_TERNARY: {
        int32_t w = ((r >> 7) << 4) | (r & 15), k = (r >> 4) & 7;
        uint32_t word = (uint32_t)line[2 * w] | ((uint32_t)line[2 * w + 1] << 8);
        uint32_t v = q > 0 ? 1u : (q < 0 ? 3u : 0u);
        word = (word & ~(3u << (2 * k))) | (v << (2 * k));
        line[2 * w] = (uint8_t)word;
        line[2 * w + 1] = (uint8_t)(word >> 8);
        break;
    }
    default:
        line[r] = (uint8_t)(int8_t)q;
        break;
    }
}

/// Byte offset of line (chunk c, block b, column jj) in w->lines.
static inline size_t sr_spike_line_offset(const sr_spike_weights *w, int32_t c, int32_t b,
                                          int32_t jj) {
    return (((size_t)c * (size_t)w->n_blocks + (size_t)b) * SR_SPIKE_BLOCK + (size_t)jj) *
           SR_SPIKE_LINE_BYTES;
}

/// Index of (row o, block b) in the tiled per-block float arrays d, m, row_sum.
static inline size_t sr_spike_blockvec_index(const sr_spike_weights *w, int32_t o, int32_t b) {
    int32_t c = o / w->tile_w, r = o - c * w->tile_w;
    return ((size_t)c * (size_t)w->n_blocks + (size_t)b) * (size_t)w->tile_w + (size_t)r;
}

/// Code q(o, j) of the packed weights.
static inline int32_t sr_spike_weights_code(const sr_spike_weights *w, int32_t o, int32_t j) {
    int32_t c = o / w->tile_w, r = o - c * w->tile_w;
    return sr_spike_line_get(w->lines + sr_spike_line_offset(w, c, j >> 5, j & 31), w->format, r);
}

/// Allocate zeroed weights of a format (used by the packers and for KV caches).
SR_API sr_status sr_spike_weights_alloc(sr_spike_weights *w, sr_spike_format fmt, int32_t n_out,
                                        int32_t n_in);
/// Frees the buffers and zeroes *w. NULL accepted.
SR_API void sr_spike_weights_free(sr_spike_weights *w);

/// Repack GGUF Q4_1 rows (n_out rows of n_in/32 blocks {fp16 d, fp16 m, u8 qs[16]}, 20 B;
/// element i of a block in qs[i] low nibble (i < 16) or qs[i-16] high nibble).
SR_API sr_status sr_spike_weights_pack_q4_1(sr_spike_weights *w, const void *blocks, int32_t n_out,
                                            int32_t n_in);
/// Repack GGUF Q8_0 rows (blocks {fp16 d, i8 qs[32]}, 34 B).
SR_API sr_status sr_spike_weights_pack_q8_0(sr_spike_weights *w, const void *blocks, int32_t n_out,
                                            int32_t n_in);
/// Replace the fp16 block scales of Q4_1 weights by integers with one float pair per row,
/// rows [o0, o1): per row, sd = max_b |d_b| / 255 (float32), D_b = rhaz(d_b / sd) (float32
/// division), the same for m with sm; a zero row gives sd = 0, D = 0. Sets int_scales.
/// Deterministic (plain float32 operations), so every machine derives the same integers.
SR_API sr_status sr_spike_weights_int_scales(sr_spike_weights *w, int32_t o0, int32_t o1);
/// Q4_1 / Q8_0 weights already allocated (sr_spike_weights_alloc): repack rows [o0, o1) from
/// `blocks`, the GGUF blocks of row o0 onwards (the two functions above are alloc + all rows).
SR_API sr_status sr_spike_weights_pack_rows(sr_spike_weights *w, const void *blocks, int32_t o0,
                                            int32_t o1);
/// Symmetric int8 code of one float row: m = max|w|, s = m / 127, inv = 1 / s,
/// q = clamp(roundf(w * inv), -127, 127) (float32, no contraction); m = 0 gives codes 0 and
/// s = 1. NaN or Inf weights -> SR_ERR_NUMERIC.
SR_API sr_status sr_spike_i8_row_codes(const float *w, int32_t n, int8_t *codes, float *scale);
/// Pack int8 codes (n_out, n_in) row-major in -127..127 with per-row scales.
SR_API sr_status sr_spike_weights_pack_i8(sr_spike_weights *w, const int8_t *codes,
                                          const float *row_scale, int32_t n_out, int32_t n_in);
/// Pack ternary codes (n_out, n_in) row-major in {-1, 0, 1} with per-row scales.
SR_API sr_status sr_spike_weights_pack_ternary(sr_spike_weights *w, const int8_t *codes,
                                               const float *row_scale, int32_t n_out, int32_t n_in);
/// Compute row_sum (needed before a matvec with the binary encoding).
SR_API sr_status sr_spike_weights_add_row_sums(sr_spike_weights *w);
/// Write row o (n_in codes) of an I8_ROW/TERNARY object and its row scale (K cache rows).
SR_API sr_status sr_spike_weights_set_row(sr_spike_weights *w, int32_t o, const int8_t *codes,
                                          float row_scale);
/// Write column j (n_out codes) of an I8_ROW/TERNARY object (V cache positions).
SR_API sr_status sr_spike_weights_set_col(sr_spike_weights *w, int32_t j, const int8_t *codes);

/// Operation counts (§8), summable over threads and calls.
typedef struct sr_spike_stats {
    uint64_t spikes;       // spike events (nonzero sigma) of the activation
    uint64_t sops;         // spikes * fan_out: accumulations (adds/subs) into outputs
    uint64_t horner_adds;  // T * fan_out: combining plane sums (Horner / plane weights)
    uint64_t activations;  // encoded activations (inputs)
} sr_spike_stats;
// Accounting rule: a call over rows [o0, o1) has fan_out = o1 - o0, so sops and horner_adds
// of the row slices of a thread split add up to the whole layer; spikes and activations
// are attributed to the non-empty slice that starts at row 0 only (so they add up too).

static inline void sr_spike_stats_add(sr_spike_stats *into, const sr_spike_stats *s) {
    into->spikes += s->spikes;
    into->sops += s->sops;
    into->horner_adds += s->horner_adds;
    into->activations += s->activations;
}

/// Integer segments of a matvec: Q4_1/Q8_0 -> one per 32-block (n_blocks); I8_ROW/TERNARY
/// -> one per activation group (x->n_groups, 1 with one scale per token). The optional
/// `acc` output holds A[s * n_out + o] (int32) for s < segments.
static inline int32_t sr_spike_segments(const sr_spike_weights *w, const sr_spike_planes *x) {
    return (w->format == SR_SPIKE_W_Q4_1 || w->format == SR_SPIKE_W_Q8_0) ? w->n_blocks
                                                                         : x->n_groups;
}

/// y[o] for o in [o0, o1) (absolute indices; y has n_out entries) from spike planes x.
/// o0 must be a multiple of w->tile_w (sr_spike_row_split); x->n <= w->n_in; x->group a
/// multiple of 32 (or >= x->n); binary encoding needs w->row_sum. acc: NULL or
/// (segments, n_out) int32 (only rows o0..o1 written). stats: NULL or written (not added).
/// Optimized: event-driven, SIMD (sr_spike_set_simd_level). Bit-identical to _ref.
SR_API sr_status sr_spike_matvec(const sr_spike_weights *w, const sr_spike_planes *x, int32_t o0,
                                 int32_t o1, float *y, int32_t *acc, sr_spike_stats *stats);
/// sr_spike_matvec for rows whose weights the caller has just read for another token (a
/// batch's later tokens over an L2-sized group of rows): the same bits, without the software
/// prefetch of each block's lines, which only costs instructions when they are already cached.
SR_API sr_status sr_spike_matvec_hot(const sr_spike_weights *w, const sr_spike_planes *x, int32_t o0,
                                     int32_t o1, float *y, int32_t *acc, sr_spike_stats *stats);
/// Argument and overflow checks shared by every implementation (CPU ref/opt, FPGA host):
/// SR_OK, SR_ERR_INVALID_ARG (shapes, alignment, missing row sums, binary code with
/// x->n != n_in, grouped scales with x->n != n_in or a group not a multiple of 32) or
/// SR_ERR_UNSUPPORTED (int32 bound of a segment exceeded, see the top of this file).
SR_API sr_status sr_spike_matvec_check(const sr_spike_weights *w, const sr_spike_planes *x,
                                       int32_t o0, int32_t o1);
/// The oracle: plain loops over time steps, spikes and rows (per-plane sums, int64 checked).
SR_API sr_status sr_spike_matvec_ref(const sr_spike_weights *w, const sr_spike_planes *x, int32_t o0,
                                     int32_t o1, float *y, int32_t *acc, sr_spike_stats *stats);

/// Head refinement (docs/spike-algorithms.md §4): the rows of the *m largest of y[0..n) (ties:
/// the lower index first) in rows[0..*m); *m becomes the number chosen (fewer only when y has
/// fewer non-NaN values: NaN is never chosen). scratch holds n floats, cand n ints. Returns the
/// comparisons made (energy accounting).
SR_API uint64_t sr_spike_top_rows(const float *y, int32_t n, int32_t *m, float *scratch, int32_t *cand,
                                  int32_t *rows);
/// Spike accumulation of the m chosen rows of row-major int8 codes (n_rows x x->n) from the
/// event lists of x (sr_spike_planes_events; one train, mean rule: one scale, no binary
/// offset), each event an add or a subtract, planes combined by Horner shifts; then the row
/// rescale of sr_spike_matvec:
/// y[rows[i]] is bit-identical to what sr_spike_matvec gives for that row of the same codes.
SR_API sr_status sr_spike_rows_i8(const int8_t *codes, const float *row_scale, int32_t n_rows,
                                  const sr_spike_planes *x, const int32_t *rows, int32_t m, float *y);

/// Row range of thread ith of nth, aligned to the tile width (may be empty).
SR_API void sr_spike_row_split(const sr_spike_weights *w, int32_t n_rows, int ith, int nth,
                               int32_t *o0, int32_t *o1);

/// A matvec cut into row slices for sr_pool_run(pool, sr_spike_matvec_job_run, &job).
#define SR_SPIKE_MAX_THREADS 64
typedef struct sr_spike_matvec_job {
    const sr_spike_weights *w;
    const sr_spike_planes *x;
    int32_t n_rows;                              // rows to compute: [0, n_rows), <= n_out
    float *y;
    int32_t *acc;                                // optional
    sr_status status[SR_SPIKE_MAX_THREADS];      // per thread
    sr_spike_stats stats[SR_SPIKE_MAX_THREADS];  // per thread, sum with sr_spike_stats_add
} sr_spike_matvec_job;
/// sr_pool_fn-compatible: runs the optimized matvec on thread ith's slice (with more than
/// SR_SPIKE_MAX_THREADS threads the extra ones idle).
SR_API void sr_spike_matvec_job_run(void *job, int ith, int nth);

/// Select the SIMD level (SR_SPIKE_SIMD_*). Returns the level now in use (AVX2 requests on
/// CPUs without AVX2 fall back to portable). Process-wide; set it before running kernels.
SR_API int sr_spike_set_simd_level(int level);
SR_API int sr_spike_get_simd_level(void);

// ---------------------------------------------------------------------------------------
// 4. The shared integer->float rescale (one definition, CPU ref, CPU opt and FPGA)
//
// Block formats (Q4_1, Q8_0), per row o, over blocks b = 0 .. n_blocks-1 in order (every
// block, also silent ones: A = 0, N = 0), starting from acc = 0.0f:
//     t = d[o,b] * (float)A[o,b]
//     Q4_1:  u = m[o,b] * (float)N_b ;  t = t + u
//     G < n: t = sx[g(b)] * t                     (g(b) = 32b / G)
//     acc = acc + t
//   y[o] = (G < n) ? acc : sx[0] * acc            (one scale per token: 2 multiplies/block)
// Row formats (I8_ROW, TERNARY), per row o, over groups g in order, A[o,g] int32:
//   one group:  y[o] = (sx[0] * s_w[o]) * (float)A[o]
//   G < n:      acc = 0.0f; acc = acc + sx[g] * (float)A[o,g] for each g; y[o] = s_w[o] * acc
// Q4_1 with integer block scales (int_scales; one scale per token only), per row o, over
// blocks b in order, int64 sums starting at 0:
//     aD = aD + D[o,b] * A[o,b] ;  aM = aM + M[o,b] * N_b
//   u = (sx[0] * sd[o]) * (float)aD ; v = (sx[0] * sm[o]) * (float)aM ; y[o] = u + v
// (4 float multiplies per row instead of 2 per row and block; the integer products are exact).
// Attention scores use the row form with sx = s_q * kq_scale (computed first).
// (float) of an int32 is the IEEE round-to-nearest conversion.

/// One block's contribution for n rows: acc[r] += d[r]*A[r] (+ m[r]*N) (* sxg if grouped).
/// d, m: the block scales already widened from fp16 (exact). m == NULL for Q8_0.
/// grouped = 0 for one scale per token.
static inline void sr_spike_rescale_block(float *acc, const int32_t *A, const float *d,
                                          const float *m, int32_t N, float sxg, int grouped,
                                          int32_t n) {
    float nf = (float)N;
    for (int32_t r = 0; r < n; r++) {
        float t = d[r] * (float)A[r];
        if (m) {
            float u = m[r] * nf;
            t = t + u;
        }
        if (grouped) t = sxg * t;
        acc[r] = acc[r] + t;
    }
}

/// Block formats, final step: y[r] = grouped ? acc[r] : sx0 * acc[r].
static inline void sr_spike_rescale_block_finish(float *y, const float *acc, float sx0, int grouped,
                                                 int32_t n) {
    for (int32_t r = 0; r < n; r++) y[r] = grouped ? acc[r] : sx0 * acc[r];
}

/// Integer block scales, final step (aD, aM: the exact int64 sums of D*A and M*N).
static inline void sr_spike_rescale_int_finish(float *y, const int64_t *aD, const int64_t *aM,
                                               const float *sd, const float *sm, float sx0,
                                               int32_t n) {
    for (int32_t r = 0; r < n; r++) {
        float a = sx0 * sd[r];
        float b = sx0 * sm[r];
        float u = a * (float)aD[r];
        float v = b * (float)aM[r];
        y[r] = u + v;
    }
}

/// Row formats, one group: y[r] = (sx0 * sw[r]) * (float)A[r].
static inline void sr_spike_rescale_rows(float *y, const int32_t *A, const float *sw, float sx0,
                                         int32_t n) {
    for (int32_t r = 0; r < n; r++) {
        float s = sx0 * sw[r];
        y[r] = s * (float)A[r];
    }
}

/// Row formats, grouped: acc[r] = acc[r] + sxg * (float)A[r] (acc starts at 0.0f).
static inline void sr_spike_rescale_rows_group(float *acc, const int32_t *A, float sxg, int32_t n) {
    for (int32_t r = 0; r < n; r++) {
        float t = sxg * (float)A[r];
        acc[r] = acc[r] + t;
    }
}

/// Row formats, grouped, final step: y[r] = sw[r] * acc[r].
static inline void sr_spike_rescale_rows_finish(float *y, const float *acc, const float *sw,
                                                int32_t n) {
    for (int32_t r = 0; r < n; r++) y[r] = sw[r] * acc[r];
}

// ---------------------------------------------------------------------------------------
// 5. Attention products, option A (§5)
//
// K cache of one KV head = I8_ROW weights with n_in = head_dim (inputs = channels) and
// n_out = capacity (rows = positions), row scale = per-(token, head) scale s_k.
// V cache of one KV head = I8_ROW weights with n_in = capacity (inputs = positions) and
// n_out = head_dim (rows = channels), row scale = static per-(head, channel) scale s_v.
// q is spike-encoded per (token, head) (e.g. max rule, 8 bits); p is encoded with
// sr_spike_encode_unsigned at bp >= 10 bits, sign-magnitude planes with T = bp, scale 1/P.

/// K cache: codes q_d = clamp(rhaz(k_d * inv), -127, 127) with the max rule at Q = 127,
/// gamma 1 over the head_dim values (s = 1 for an all-zero row). NaN/Inf -> SR_ERR_NUMERIC.
SR_API sr_status sr_spike_kcache_store(sr_spike_weights *kc, int32_t pos, const float *k);
/// V cache: code_d = clamp(rhaz(v_d * (1.0f / s_v[d])), -127, 127) (static scales =
/// vc->row_scale, set at allocation). NaN/Inf -> SR_ERR_NUMERIC.
SR_API sr_status sr_spike_vcache_store(sr_spike_weights *vc, int32_t pos, const float *v);
/// scores[i] for positions i < n_pos: row form with sx = q->scale[0] * kq_scale (q one group).
SR_API sr_status sr_spike_attn_scores(const sr_spike_weights *kc, const sr_spike_planes *q,
                                      int32_t n_pos, float kq_scale, float *scores, int32_t *acc,
                                      sr_spike_stats *stats);
SR_API sr_status sr_spike_attn_scores_ref(const sr_spike_weights *kc, const sr_spike_planes *q,
                                          int32_t n_pos, float kq_scale, float *scores,
                                          int32_t *acc, sr_spike_stats *stats);
/// out[d] = (s_p * s_v[d]) * (float)sum_i n_i v_{i,d}: a matvec of the V cache with p's
/// planes (p->n = n_pos positions, p->scale[0] = 1/P).
SR_API sr_status sr_spike_attn_pv(const sr_spike_weights *vc, const sr_spike_planes *p, float *out,
                                  int32_t *acc, sr_spike_stats *stats);
SR_API sr_status sr_spike_attn_pv_ref(const sr_spike_weights *vc, const sr_spike_planes *p,
                                      float *out, int32_t *acc, sr_spike_stats *stats);

#ifdef __cplusplus
}
#endif

#if defined(__clang__)
#pragma float_control(pop)
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

#endif // SPIKERUN_SR_SPIKE_H
