// sr-quant-impl.h - private: ggml block layouts, scalar helpers and the kernel table shared by
// the portable (sr-quant-portable.c) and AVX2 (sr-quant-avx2.c) kernels.
#ifndef SPIKERUN_SR_QUANT_IMPL_H
#define SPIKERUN_SR_QUANT_IMPL_H

#include <stdint.h>
#include <string.h>

#include "spikerun/sr-quant.h"

// Bit-exactness: no implicit a*b+c contraction anywhere in the quant code. Fused steps are
// written as explicit fmaf / _mm256_fmadd_ps where ggml's x86 build fuses them.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#define SR_QK4_0 32
#define SR_QK4_1 32
#define SR_QK5_0 32
#define SR_QK5_1 32
#define SR_QK8_0 32
#define SR_QK8_1 32
#define SR_QK_K 256
#define SR_K_SCALE_SIZE 12

// Block layouts, byte-identical to ggml-common.h (all little-endian, fp16 stored as bits).
typedef struct { uint16_t d; uint8_t qs[SR_QK4_0 / 2]; } sr_block_q4_0;             // 18 B
typedef struct { uint16_t d, m; uint8_t qs[SR_QK4_1 / 2]; } sr_block_q4_1;          // 20 B
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[SR_QK5_0 / 2]; } sr_block_q5_0;  // 22 B: qh = 5th bits
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[SR_QK5_1 / 2]; } sr_block_q5_1; // 24 B
typedef struct { uint16_t d; int8_t qs[SR_QK8_0]; } sr_block_q8_0;                  // 34 B
typedef struct { uint16_t d, s; int8_t qs[SR_QK8_1]; } sr_block_q8_1;               // 36 B: s = d*sum(qs)
typedef struct {
    uint8_t scales[SR_QK_K / 16];      // 4-bit scale (low) and min (high) per 16 elements
    uint8_t qs[SR_QK_K / 4];           // 2-bit quants
    uint16_t d, dmin;                  // super-block scales for the scales / mins
} sr_block_q2_K;                                                                    // 84 B
typedef struct {
    uint8_t hmask[SR_QK_K / 8];        // high bit (set: +0, clear: -4)
    uint8_t qs[SR_QK_K / 4];           // low 2 bits
    uint8_t scales[12];                // 16 6-bit scales, stored +32
    uint16_t d;
} sr_block_q3_K;                                                                    // 110 B
typedef struct {
    uint16_t d, dmin;                  // super-block scales for the 6-bit scales / mins
    uint8_t scales[SR_K_SCALE_SIZE];   // 8 scales + 8 mins, 6 bits each
    uint8_t qs[SR_QK_K / 2];           // 4-bit quants
} sr_block_q4_K;                                                                    // 144 B
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[SR_K_SCALE_SIZE];
    uint8_t qh[SR_QK_K / 8];           // 5th bit
    uint8_t qs[SR_QK_K / 2];           // low 4 bits
} sr_block_q5_K;                                                                    // 176 B
typedef struct {
    uint8_t ql[SR_QK_K / 2];           // low 4 bits
    uint8_t qh[SR_QK_K / 4];           // high 2 bits
    int8_t scales[SR_QK_K / 16];       // 8-bit scales, one per 16 elements
    uint16_t d;
} sr_block_q6_K;                                                                    // 210 B
typedef struct {
    float d;                           // f32 scale
    int8_t qs[SR_QK_K];
    int16_t bsums[SR_QK_K / 16];       // sums of qs in groups of 16
} sr_block_q8_K;                                                                    // 292 B

_Static_assert(sizeof(sr_block_q4_0) == 18, "q4_0 layout");
_Static_assert(sizeof(sr_block_q4_1) == 20, "q4_1 layout");
_Static_assert(sizeof(sr_block_q5_0) == 22, "q5_0 layout");
_Static_assert(sizeof(sr_block_q5_1) == 24, "q5_1 layout");
_Static_assert(sizeof(sr_block_q8_0) == 34, "q8_0 layout");
_Static_assert(sizeof(sr_block_q8_1) == 36, "q8_1 layout");
_Static_assert(sizeof(sr_block_q2_K) == 84, "q2_K layout");
_Static_assert(sizeof(sr_block_q3_K) == 110, "q3_K layout");
_Static_assert(sizeof(sr_block_q4_K) == 144, "q4_K layout");
_Static_assert(sizeof(sr_block_q5_K) == 176, "q5_K layout");
_Static_assert(sizeof(sr_block_q6_K) == 210, "q6_K layout");
_Static_assert(sizeof(sr_block_q8_K) == 292, "q8_K layout");

static inline float sr_h2f(uint16_t h) {
    // exact IEEE half -> float
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13) | (mant ? 0x00400000u : 0);   // NaN: quiet, like F16C
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;
    } else {
        // subnormal half: normalize
        int e = -1;
        do { mant <<= 1; e++; } while ((mant & 0x400u) == 0);
        bits = sign | ((uint32_t)(112 - e) << 23) | ((mant & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t sr_f2h(float f) {
    // float -> half, round to nearest even; NaN -> quiet NaN keeping the top payload bits
    // (what vcvtps2ph does).
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    const uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);      // rounds to >= 65520: inf
    if (ax >= 0x38800000u) {                                       // normal half range
        const uint32_t r = ax + 0x0fffu + ((ax >> 13) & 1u) - 0x38000000u;
        return (uint16_t)(sign | (r >> 13));
    }
    if (ax < 0x33000000u) return sign;                             // < 2^-25: rounds to 0
    // subnormal half: value = ax_float / 2^-24, rounded to nearest even integer
    const uint32_t e = ax >> 23;                                   // 102..112
    const uint32_t m = (ax & 0x7fffffu) | 0x800000u;               // 24-bit significand
    const uint32_t shift = 126 - e;                                // 14..24
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return (uint16_t)(sign | q);
}

static inline float sr_bf2f(uint16_t h) {
    const uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t sr_f2bf(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 64);  // quiet NaN
    return (uint16_t)((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
}

static inline uint16_t sr_rd16(const void *p) { uint16_t v; memcpy(&v, p, 2); return v; }

// The 6-bit scale/min pair j (0..7) of a Q4_K/Q5_K block.
static inline void sr_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

// The 16 signed scales of a Q3_K block (6 bits stored +32: low 4 bits in bytes 0..7, the top
// 2 bits packed in bytes 8..11), in element order; the same bytes ggml's kmask shuffle builds.
static inline void sr_scales_q3_K(const uint8_t *s, int8_t out[16]) {
    uint32_t aux[3];
    const uint32_t km1 = 0x03030303u, km2 = 0x0f0f0f0fu;
    memcpy(aux, s, 12);
    const uint32_t w[4] = {
        (aux[0] & km2) | (((aux[2] >> 0) & km1) << 4),
        (aux[1] & km2) | (((aux[2] >> 2) & km1) << 4),
        ((aux[0] >> 4) & km2) | (((aux[2] >> 4) & km1) << 4),
        ((aux[1] >> 4) & km2) | (((aux[2] >> 6) & km1) << 4),
    };
    uint8_t b[16];
    memcpy(b, w, 16);
    for (int j = 0; j < 16; ++j) out[j] = (int8_t)(b[j] - 32);
}

// Kernel table. A tile kernel computes y[k*y_ts + r] = dot(w + r*w_rb, act + k*a_rb) for
// r < nr <= SR_TILE_MAX, k < na <= SR_TILE_MAX. Every (row, token) result is bit-identical to
// the single dot: tiling only interleaves independent accumulator chains and shares loads.
#define SR_TILE_MAX 4
typedef void (*sr_tile_fn)(int64_t n, const void *w, size_t w_rb, int nr, const void *act,
                           size_t a_rb, int na, float *y, size_t y_ts);
typedef void (*sr_quant_fn)(const float *x, void *dst, int64_t n);
typedef float (*sr_fdot_fn)(int64_t n, const float *w, const float *x);

typedef struct sr_kernels {
    sr_tile_fn tile[32];     // indexed by weight sr_type
    uint8_t tile_rows[32];   // preferred tile shape (rows x tokens) for n_tok >= 2 ...
    uint8_t tile_toks[32];
    uint8_t tile_rows1[32];  // ... and rows per tile when n_tok == 1
    sr_quant_fn quant[32];   // indexed by activation sr_type
    sr_fdot_fn fdot;         // fixed-order f32 dot of the float reference path
    // out[r] = F16 dot of row r of x (rows `stride` halves apart) with y, n elements each:
    // several rows share each load of y; every result equals the single F16 dot bit for bit.
    void (*f16rows)(int64_t n, const uint16_t *x, size_t stride, int64_t rows, const uint16_t *y, float *out);
    // the same products in llamafile's tinyBLAS order (one 8-lane accumulator, n % 8 == 0)
    void (*f16rows_gemm)(int64_t n, const uint16_t *x, size_t stride, int64_t rows, const uint16_t *y, float *out);
    double (*softmax_exp)(int64_t n, float *y, const float *x, float max);   // see sr-quant.h
    void (*swiglu)(int64_t n, float *y, const float *x, const float *g);
} sr_kernels;

void sr_kernels_init_portable(sr_kernels *k);
int  sr_kernels_init_avx2(sr_kernels *k);   // returns 0 when not compiled for x86-64
int  sr_kernels_init_vnni(sr_kernels *k);   // the same for AVX-512 VNNI (+VL, BW)
int  sr_kernels_init_avxvnni(sr_kernels *k); // the same for AVX-VNNI (VEX, no AVX-512)

// Scalar pieces shared by every level (identical arithmetic).
void sr_quantize_q8_K_ref(const float *x, void *dst, int64_t n);
void sr_quantize_f16_ref(const float *x, void *dst, int64_t n);
void sr_quantize_bf16_ref(const float *x, void *dst, int64_t n);
void sr_quantize_f32_copy(const float *x, void *dst, int64_t n);

#endif // SPIKERUN_SR_QUANT_IMPL_H
