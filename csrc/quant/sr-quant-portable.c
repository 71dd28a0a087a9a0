// sr-quant-portable.c - portable C kernels. Each one mirrors the lane structure and summation
// order of ggml's x86 AVX2 kernel (arch/x86/quants.c, vec.cpp) so that the AVX2 versions in
// sr-quant-avx2.c are bit-identical to these: 8 float lanes, each lane the exact integer sum of
// 4 consecutive byte products, fmaf where ggml's build issues an FMA, then hsum_float_8's order.
#include "sr-quant-impl.h"
#include "spikerun/sr-spike-float.h"

#include <math.h>

// ---------------------------------------------------------------- integer lane emulation

static inline int32_t sat16(int32_t v) { return v > 32767 ? 32767 : (v < -32768 ? -32768 : v); }

// One product of mul_sum_i8_pairs_float: |x| (as unsigned byte) * sign(y, x). That equals x*y
// except for y == -128 with x < 0, where negating y wraps back to -128.
static inline int32_t prod_i8(int8_t x, int8_t y) {
    const int32_t p = (int32_t)x * (int32_t)y;
    return (y == -128 && x < 0) ? -p : p;
}

// One int32 lane of mul_sum_i8_pairs_float(x, y): 4 byte pairs, maddubs saturation included.
static inline int32_t lane_i8_i8(const int8_t x[4], const int8_t y[4]) {
    return sat16(prod_i8(x[0], y[0]) + prod_i8(x[1], y[1])) + sat16(prod_i8(x[2], y[2]) + prod_i8(x[3], y[3]));
}

// sum over 4 bytes of u8 * s8 (maddubs pairs cannot saturate for 2..6-bit unsigned values)
static inline int32_t lane_u_s(const uint8_t u[4], const int8_t s[4]) {
    return u[0] * s[0] + u[1] * s[1] + u[2] * s[2] + u[3] * s[3];
}

// hsum_float_8: (hi + lo), then (0+2, 1+3), then the two.
static inline float hsum8(const float a[8]) {
    const float r0 = a[4] + a[0], r1 = a[5] + a[1], r2 = a[6] + a[2], r3 = a[7] + a[3];
    const float s0 = r0 + r2, s1 = r1 + r3;
    return s0 + s1;
}

// GGML_F32x8_REDUCE over 4 registers: (0+2), (1+3), sum; then lo+hi and two hadds.
static inline float reduce32(const float s[32]) {
    float c[8];
    for (int l = 0; l < 8; ++l) {
        const float a = s[l] + s[16 + l];
        const float b = s[8 + l] + s[24 + l];
        c[l] = a + b;
    }
    const float t0 = c[0] + c[4], t1 = c[1] + c[5], t2 = c[2] + c[6], t3 = c[3] + c[7];
    const float u0 = t0 + t1, u1 = t2 + t3;
    return u0 + u1;
}

// ---------------------------------------------------------------- activation quantization

// AVX2 quantize_row_q8_0 / q8_1 rounding: x * (127/amax), round half to even, saturate.
static inline int32_t cvt_round(float v) {
    if (!(fabsf(v) < 2147483648.0f)) return INT32_MIN;   // cvtps_epi32's "integer indefinite"
    return (int32_t)nearbyintf(v);                         // default mode: nearest even
}

static inline int8_t sat8(int32_t v) { return (int8_t)(v > 127 ? 127 : (v < -128 ? -128 : v)); }

static inline float block_amax32(const float *x) {
    // max of |x| over 4 registers of 8 lanes, then 8 -> 4 -> 2 -> 1 (order is irrelevant for
    // max of non-NaN values; NaN inputs are not modelled)
    float m = 0.0f;
    for (int j = 0; j < 32; ++j) {
        const float a = fabsf(x[j]);
        m = a > m ? a : m;
    }
    return m;
}

static void quant_q8_0(const float *x, void *dst, int64_t n) {
    sr_block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / SR_QK8_0; ++i, x += SR_QK8_0) {
        const float amax = block_amax32(x);
        const float d = amax / 127.f;
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        y[i].d = sr_f2h(d);
        for (int j = 0; j < 32; ++j) y[i].qs[j] = sat8(cvt_round(x[j] * id));
    }
}

static void quant_q8_1(const float *x, void *dst, int64_t n) {
    sr_block_q8_1 *y = dst;
    for (int64_t i = 0; i < n / SR_QK8_1; ++i, x += SR_QK8_1) {
        const float amax = block_amax32(x);
        const float d = amax / 127.f;
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        int32_t sum = 0;
        for (int j = 0; j < 32; ++j) {
            const int32_t q = cvt_round(x[j] * id);
            sum = (int32_t)((uint32_t)sum + (uint32_t)q);   // wrapping like vpaddd
            y[i].qs[j] = sat8(q);
        }
        y[i].d = sr_f2h(d);
        y[i].s = sr_f2h(d * (float)sum);
    }
}

// quantize_row_q8_K_ref (x86 uses the reference): iscale = -127/max, nearest_int, bsums.
static inline int nearest_int(float fval) {
    const float val = fval + 12582912.f;
    int i;
    memcpy(&i, &val, sizeof(int));
    return (i & 0x007fffff) - 0x00400000;
}

void sr_quantize_q8_K_ref(const float *x, void *dst, int64_t n) {
    sr_block_q8_K *y = dst;
    for (int64_t i = 0; i < n / SR_QK_K; ++i, x += SR_QK_K) {
        float max = 0, amax = 0;
        for (int j = 0; j < SR_QK_K; ++j) {
            const float ax = fabsf(x[j]);
            if (ax > amax) { amax = ax; max = x[j]; }
        }
        if (!amax) {
            y[i].d = 0;
            memset(y[i].qs, 0, sizeof y[i].qs);
            memset(y[i].bsums, 0, sizeof y[i].bsums);   // ggml leaves them stale; callers never read them with d == 0 contributing
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < SR_QK_K; ++j) {
            const int v = nearest_int(iscale * x[j]);
            y[i].qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < SR_QK_K / 16; ++j) {
            int sum = 0;
            for (int ii = 0; ii < 16; ++ii) sum += y[i].qs[j * 16 + ii];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

void sr_quantize_f16_ref(const float *x, void *dst, int64_t n) {
    uint16_t *y = dst;
    for (int64_t i = 0; i < n; ++i) y[i] = sr_f2h(x[i]);
}

void sr_quantize_bf16_ref(const float *x, void *dst, int64_t n) {
    uint16_t *y = dst;
    for (int64_t i = 0; i < n; ++i) y[i] = sr_f2bf(x[i]);
}

void sr_quantize_f32_copy(const float *x, void *dst, int64_t n) {
    memcpy(dst, x, (size_t)n * sizeof(float));
}

// ---------------------------------------------------------------- dot products

// ggml_vec_dot_q4_0_q8_0 (AVX2): nibbles - 8, sign trick, acc = fma(dx*dy, lane, acc).
static float dot_q4_0(int64_t n, const void *vx, const void *vy) {
    const sr_block_q4_0 *x = vx;
    const sr_block_q8_0 *y = vy;
    float acc[8] = {0};
    for (int64_t ib = 0; ib < n / SR_QK4_0; ++ib) {
        const float d = sr_h2f(sr_rd16(&x[ib].d)) * sr_h2f(sr_rd16(&y[ib].d));
        int8_t q[32];
        for (int j = 0; j < 16; ++j) {
            q[j] = (int8_t)((x[ib].qs[j] & 0x0F) - 8);
            q[j + 16] = (int8_t)((x[ib].qs[j] >> 4) - 8);
        }
        for (int l = 0; l < 8; ++l) acc[l] = fmaf(d, (float)lane_i8_i8(q + 4 * l, y[ib].qs + 4 * l), acc[l]);
    }
    return hsum8(acc);
}

// ggml_vec_dot_q4_1_q8_1 (AVX2): unsigned nibbles x signed bytes, fma(d0*d1, lane, acc);
// summs = fma(m, s, summs) (GCC fuses it); result hsum + summs.
static float dot_q4_1(int64_t n, const void *vx, const void *vy) {
    const sr_block_q4_1 *x = vx;
    const sr_block_q8_1 *y = vy;
    float acc[8] = {0};
    float summs = 0;
    for (int64_t ib = 0; ib < n / SR_QK4_1; ++ib) {
        const float d0 = sr_h2f(sr_rd16(&x[ib].d));
        const float d1 = sr_h2f(sr_rd16(&y[ib].d));
        summs = fmaf(sr_h2f(sr_rd16(&x[ib].m)), sr_h2f(sr_rd16(&y[ib].s)), summs);
        const float d0d1 = d0 * d1;
        const uint8_t *qs = x[ib].qs;
        const int8_t *q8 = y[ib].qs;
        for (int l = 0; l < 4; ++l) {   // lanes 0..3: low nibbles, elements 0..15
            const int32_t s = (qs[4 * l] & 15) * q8[4 * l] + (qs[4 * l + 1] & 15) * q8[4 * l + 1] +
                              (qs[4 * l + 2] & 15) * q8[4 * l + 2] + (qs[4 * l + 3] & 15) * q8[4 * l + 3];
            acc[l] = fmaf(d0d1, (float)s, acc[l]);
        }
        for (int l = 0; l < 4; ++l) {   // lanes 4..7: high nibbles, elements 16..31
            const int32_t s = (qs[4 * l] >> 4) * q8[16 + 4 * l] + (qs[4 * l + 1] >> 4) * q8[16 + 4 * l + 1] +
                              (qs[4 * l + 2] >> 4) * q8[16 + 4 * l + 2] + (qs[4 * l + 3] >> 4) * q8[16 + 4 * l + 3];
            acc[4 + l] = fmaf(d0d1, (float)s, acc[4 + l]);
        }
    }
    return hsum8(acc) + summs;
}

// ggml_vec_dot_q5_0_q8_0 (AVX2): as Q4_0 with the 5th bit from qh, values nibble + 16*bit - 16.
static float dot_q5_0(int64_t n, const void *vx, const void *vy) {
    const sr_block_q5_0 *x = vx;
    const sr_block_q8_0 *y = vy;
    float acc[8] = {0};
    for (int64_t ib = 0; ib < n / SR_QK5_0; ++ib) {
        const float d = sr_h2f(sr_rd16(&x[ib].d)) * sr_h2f(sr_rd16(&y[ib].d));
        uint32_t qh;
        memcpy(&qh, x[ib].qh, 4);
        int8_t q[32];
        for (int j = 0; j < 16; ++j) {
            q[j] = (int8_t)(((x[ib].qs[j] & 0x0F) | (((qh >> j) & 1u) << 4)) - 16);
            q[j + 16] = (int8_t)(((x[ib].qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4)) - 16);
        }
        for (int l = 0; l < 8; ++l) acc[l] = fmaf(d, (float)lane_i8_i8(q + 4 * l, y[ib].qs + 4 * l), acc[l]);
    }
    return hsum8(acc);
}

// ggml_vec_dot_q5_1_q8_1 (AVX2): unsigned 5-bit values x signed bytes, fma(dx*dy, lane, acc);
// summs = fma(m, s, summs) as for Q4_1; result hsum + summs.
static float dot_q5_1(int64_t n, const void *vx, const void *vy) {
    const sr_block_q5_1 *x = vx;
    const sr_block_q8_1 *y = vy;
    float acc[8] = {0};
    float summs = 0;
    for (int64_t ib = 0; ib < n / SR_QK5_1; ++ib) {
        const float dxdy = sr_h2f(sr_rd16(&x[ib].d)) * sr_h2f(sr_rd16(&y[ib].d));
        summs = fmaf(sr_h2f(sr_rd16(&x[ib].m)), sr_h2f(sr_rd16(&y[ib].s)), summs);
        uint32_t qh;
        memcpy(&qh, x[ib].qh, 4);
        uint8_t u[32];
        for (int j = 0; j < 16; ++j) {
            u[j] = (uint8_t)((x[ib].qs[j] & 0x0F) | (((qh >> j) & 1u) << 4));
            u[j + 16] = (uint8_t)((x[ib].qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4));
        }
        for (int l = 0; l < 8; ++l) acc[l] = fmaf(dxdy, (float)lane_u_s(u + 4 * l, y[ib].qs + 4 * l), acc[l]);
    }
    return hsum8(acc) + summs;
}

// ggml_vec_dot_q8_0_q8_0 (AVX2)
static float dot_q8_0(int64_t n, const void *vx, const void *vy) {
    const sr_block_q8_0 *x = vx;
    const sr_block_q8_0 *y = vy;
    float acc[8] = {0};
    for (int64_t ib = 0; ib < n / SR_QK8_0; ++ib) {
        const float d = sr_h2f(sr_rd16(&x[ib].d)) * sr_h2f(sr_rd16(&y[ib].d));
        for (int l = 0; l < 8; ++l) acc[l] = fmaf(d, (float)lane_i8_i8(x[ib].qs + 4 * l, y[ib].qs + 4 * l), acc[l]);
    }
    return hsum8(acc);
}

static inline void unpack_scales_k4(const uint8_t *s, uint8_t sc[8], uint8_t mn[8]) {
    for (int j = 0; j < 8; ++j) sr_scale_min_k4(j, s, &sc[j], &mn[j]);
}


// ggml_vec_dot_q2_K_q8_K (AVX2). Int32 lane l of a 32-element group holds elements 4l..4l+3,
// whose 16-element scale is 8h + 2k + l/4 (half h, group k). Per super-block the mins term
// goes in first: lane l = fma(dmin, mins . bsums over bsums 2l and 2l+1, acc), then
// fma(d, sumi, acc), both on the same 8 accumulators.
static float dot_q2_K(int64_t n, const void *vx, const void *vy) {
    const sr_block_q2_K *x = vx;
    const sr_block_q8_K *y = vy;
    float acc[8] = {0};
    for (int64_t i = 0; i < n / SR_QK_K; ++i) {
        float yd;
        memcpy(&yd, &y[i].d, 4);
        const float d = yd * sr_h2f(sr_rd16(&x[i].d));
        const float dmin = -yd * sr_h2f(sr_rd16(&x[i].dmin));
        const uint8_t *sc = x[i].scales;
        int16_t bs[16];
        memcpy(bs, y[i].bsums, sizeof bs);
        for (int l = 0; l < 8; ++l) {
            const int32_t prod = (sc[2 * l] >> 4) * bs[2 * l] + (sc[2 * l + 1] >> 4) * bs[2 * l + 1];
            acc[l] = fmaf(dmin, (float)prod, acc[l]);
        }
        int32_t sumi[8] = {0};
        for (int h = 0; h < 2; ++h) {
            for (int k = 0; k < 4; ++k) {
                const uint8_t *q2 = x[i].qs + 32 * h;
                const int8_t *q8 = y[i].qs + 128 * h + 32 * k;
                for (int l = 0; l < 8; ++l) {
                    uint8_t u[4];
                    for (int b = 0; b < 4; ++b) u[b] = (uint8_t)((q2[4 * l + b] >> (2 * k)) & 3);
                    sumi[l] += (sc[8 * h + 2 * k + l / 4] & 0xF) * lane_u_s(u, q8 + 4 * l);
                }
            }
        }
        for (int l = 0; l < 8; ++l) acc[l] = fmaf(d, (float)sumi[l], acc[l]);
    }
    return hsum8(acc);
}

// ggml_vec_dot_q3_K_q8_K (AVX2): the lanes of Q2_K with signed 6-bit scales and values
// (low 2 bits) - (high bit clear ? 4 : 0); every partial sum is an exact integer.
static float dot_q3_K(int64_t n, const void *vx, const void *vy) {
    const sr_block_q3_K *x = vx;
    const sr_block_q8_K *y = vy;
    float acc[8] = {0};
    for (int64_t i = 0; i < n / SR_QK_K; ++i) {
        float yd;
        memcpy(&yd, &y[i].d, 4);
        const float d = yd * sr_h2f(sr_rd16(&x[i].d));
        int8_t sc[16];
        sr_scales_q3_K(x[i].scales, sc);
        int32_t sumi[8] = {0};
        for (int h = 0; h < 2; ++h) {
            for (int k = 0; k < 4; ++k) {
                const uint8_t *q3 = x[i].qs + 32 * h;
                const int8_t *q8 = y[i].qs + 128 * h + 32 * k;
                const int bit = 4 * h + k;
                for (int l = 0; l < 8; ++l) {
                    int32_t s = 0;
                    for (int b = 0; b < 4; ++b) {
                        const int e = 4 * l + b;
                        const int q = ((q3[e] >> (2 * k)) & 3) - (((x[i].hmask[e] >> bit) & 1) ? 0 : 4);
                        s += q * q8[e];
                    }
                    sumi[l] += sc[8 * h + 2 * k + l / 4] * s;
                }
            }
        }
        for (int l = 0; l < 8; ++l) acc[l] = fmaf(d, (float)sumi[l], acc[l]);
    }
    return hsum8(acc);
}

// ggml_vec_dot_q4_K_q8_K (AVX2)
static float dot_q4_K(int64_t n, const void *vx, const void *vy) {
    const sr_block_q4_K *x = vx;
    const sr_block_q8_K *y = vy;
    float acc[8] = {0}, accm[4] = {0};
    for (int64_t i = 0; i < n / SR_QK_K; ++i) {
        float yd;
        memcpy(&yd, &y[i].d, 4);
        const float d = yd * sr_h2f(sr_rd16(&x[i].d));
        const float dmin = -yd * sr_h2f(sr_rd16(&x[i].dmin));
        uint8_t sc[8], mn[8];
        unpack_scales_k4(x[i].scales, sc, mn);
        int16_t bs[16];
        memcpy(bs, y[i].bsums, sizeof bs);
        for (int j = 0; j < 4; ++j) {
            const int32_t q8s0 = (int16_t)(bs[4 * j] + bs[4 * j + 1]);
            const int32_t q8s1 = (int16_t)(bs[4 * j + 2] + bs[4 * j + 3]);
            const int32_t prod = mn[2 * j] * q8s0 + mn[2 * j + 1] * q8s1;
            accm[j] = fmaf(dmin, (float)prod, accm[j]);
        }
        int32_t sumi[8] = {0};
        for (int j = 0; j < 4; ++j) {
            const uint8_t *q4 = x[i].qs + 32 * j;
            const int8_t *q8 = y[i].qs + 64 * j;
            for (int l = 0; l < 8; ++l) {
                uint8_t lo[4], hi[4];
                for (int k = 0; k < 4; ++k) { lo[k] = q4[4 * l + k] & 15; hi[k] = q4[4 * l + k] >> 4; }
                sumi[l] += sc[2 * j] * lane_u_s(lo, q8 + 4 * l) + sc[2 * j + 1] * lane_u_s(hi, q8 + 32 + 4 * l);
            }
        }
        for (int l = 0; l < 8; ++l) acc[l] = fmaf(d, (float)sumi[l], acc[l]);
    }
    const float m0 = accm[0] + accm[2], m1 = accm[1] + accm[3];
    return hsum8(acc) + (m0 + m1);
}

// ggml_vec_dot_q5_K_q8_K (AVX2); summs = fma(dmin, isum, summs) (GCC fuses it)
static float dot_q5_K(int64_t n, const void *vx, const void *vy) {
    const sr_block_q5_K *x = vx;
    const sr_block_q8_K *y = vy;
    float acc[8] = {0};
    float summs = 0.f;
    for (int64_t i = 0; i < n / SR_QK_K; ++i) {
        float yd;
        memcpy(&yd, &y[i].d, 4);
        const float d = yd * sr_h2f(sr_rd16(&x[i].d));
        const float dmin = -yd * sr_h2f(sr_rd16(&x[i].dmin));
        uint8_t sc[8], mn[8];
        unpack_scales_k4(x[i].scales, sc, mn);
        int16_t bs[16];
        memcpy(bs, y[i].bsums, sizeof bs);
        int32_t hs = 0;
        for (int j = 0; j < 4; ++j) {
            const int32_t q8s0 = (int16_t)(bs[4 * j] + bs[4 * j + 1]);
            const int32_t q8s1 = (int16_t)(bs[4 * j + 2] + bs[4 * j + 3]);
            hs += mn[2 * j] * q8s0 + mn[2 * j + 1] * q8s1;
        }
        summs = fmaf(dmin, (float)hs, summs);
        int32_t sumi[8] = {0};
        for (int j = 0; j < 4; ++j) {
            const uint8_t *q5 = x[i].qs + 32 * j;
            const int8_t *q8 = y[i].qs + 64 * j;
            const uint8_t m0 = (uint8_t)(1u << (2 * j)), m1 = (uint8_t)(2u << (2 * j));
            for (int l = 0; l < 8; ++l) {
                uint8_t lo[4], hi[4];
                for (int k = 0; k < 4; ++k) {
                    const int e = 4 * l + k;
                    lo[k] = (uint8_t)((q5[e] & 15) + ((x[i].qh[e] & m0) ? 16 : 0));
                    hi[k] = (uint8_t)((q5[e] >> 4) + ((x[i].qh[e] & m1) ? 16 : 0));
                }
                sumi[l] += sc[2 * j] * lane_u_s(lo, q8 + 4 * l) + sc[2 * j + 1] * lane_u_s(hi, q8 + 32 + 4 * l);
            }
        }
        for (int l = 0; l < 8; ++l) acc[l] = fmaf(d, (float)sumi[l], acc[l]);
    }
    return hsum8(acc) + summs;
}

// ggml_vec_dot_q6_K_q8_K (AVX2): unsigned 6-bit quants, the -32 offset applied per lane as
// (bsums . scales) << 5 where lane l covers bsums 2l and 2l+1.
static float dot_q6_K(int64_t n, const void *vx, const void *vy) {
    const sr_block_q6_K *x = vx;
    const sr_block_q8_K *y = vy;
    float acc[8] = {0};
    for (int64_t i = 0; i < n / SR_QK_K; ++i) {
        float yd;
        memcpy(&yd, &y[i].d, 4);
        const float d = yd * sr_h2f(sr_rd16(&x[i].d));
        const int8_t *sc = x[i].scales;
        int16_t bs[16];
        memcpy(bs, y[i].bsums, sizeof bs);
        int32_t sumi[8] = {0};
        for (int j = 0; j < 2; ++j) {
            const uint8_t *ql = x[i].ql + 64 * j;
            const uint8_t *qh = x[i].qh + 32 * j;
            const int8_t *q8 = y[i].qs + 128 * j;
            for (int k = 0; k < 4; ++k) {
                const int is = 4 * j + k;
                for (int l = 0; l < 8; ++l) {
                    uint8_t u[4];
                    for (int b = 0; b < 4; ++b) {
                        const int e = 4 * l + b;
                        switch (k) {
                        case 0: u[b] = (uint8_t)((ql[e] & 15) | ((qh[e] & 3) << 4)); break;
                        case 1: u[b] = (uint8_t)((ql[32 + e] & 15) | ((qh[e] & 12) << 2)); break;
                        case 2: u[b] = (uint8_t)((ql[e] >> 4) | (qh[e] & 48)); break;
                        default: u[b] = (uint8_t)((ql[32 + e] >> 4) | ((qh[e] & 192) >> 2)); break;
                        }
                    }
                    sumi[l] += sc[2 * is + (l >= 4)] * lane_u_s(u, q8 + 32 * k + 4 * l);
                }
            }
        }
        for (int l = 0; l < 8; ++l) {
            const int32_t sub = (bs[2 * l] * sc[2 * l] + bs[2 * l + 1] * sc[2 * l + 1]) * 32;
            acc[l] = fmaf(d, (float)(sumi[l] - sub), acc[l]);
        }
    }
    return hsum8(acc);
}

// ggml_vec_dot_f16 (AVX2+F16C): 4x8 fma lanes over 32-element steps, REDUCE, then the tail
// accumulated in double from float products.
static float dot_f16(int64_t n, const void *vx, const void *vy) {
    const uint16_t *x = vx, *y = vy;
    const int64_t np = n & ~(int64_t)31;
    float s[32] = {0};
    for (int64_t i = 0; i < np; i += 32)
        for (int j = 0; j < 32; ++j) s[j] = fmaf(sr_h2f(x[i + j]), sr_h2f(y[i + j]), s[j]);
    double sumf = reduce32(s);
    for (int64_t i = np; i < n; ++i) sumf += (double)(sr_h2f(x[i]) * sr_h2f(y[i]));
    return (float)sumf;
}

// ggml_vec_dot_bf16 (AVX2): 4x8 lanes (mul+add fused by GCC), (c1+c3)+(c2+c4), hsum, double tail.
static float dot_bf16(int64_t n, const void *vx, const void *vy) {
    const uint16_t *x = vx, *y = vy;
    int64_t i = 0;
    float c[32] = {0};
    for (; i + 32 <= n; i += 32)
        for (int j = 0; j < 32; ++j) c[j] = fmaf(sr_bf2f(x[i + j]), sr_bf2f(y[i + j]), c[j]);
    float v[8];
    for (int l = 0; l < 8; ++l) {
        const float a = c[l] + c[16 + l];
        const float b = c[8 + l] + c[24 + l];
        v[l] = a + b;
    }
    double sumf = 0;
    sumf += (double)hsum8(v);
    for (; i < n; ++i) sumf += (double)(sr_bf2f(x[i]) * sr_bf2f(y[i]));
    return (float)sumf;
}

// ggml_vec_dot_f32 (AVX2): 4x8 fma lanes, REDUCE; the tail as GCC compiled it: runs of 8 and
// then 4 products added one by one unfused, the last 1..3 fused.
static float dot_f32(int64_t n, const void *vx, const void *vy) {
    const float *x = vx, *y = vy;
    const int64_t np = n & ~(int64_t)31;
    float s[32] = {0};
    for (int64_t i = 0; i < np; i += 32)
        for (int j = 0; j < 32; ++j) s[j] = fmaf(x[i + j], y[i + j], s[j]);
    float sumf = reduce32(s);
    int64_t i = np;
    for (; n - i >= 8; i += 8)
        for (int j = 0; j < 8; ++j) { const float p = x[i + j] * y[i + j]; sumf = sumf + p; }
    if (n - i >= 4) {
        for (int j = 0; j < 4; ++j) { const float p = x[i + j] * y[i + j]; sumf = sumf + p; }
        i += 4;
    }
    for (; i < n; ++i) sumf = fmaf(x[i], y[i], sumf);
    return sumf;
}

// ---------------------------------------------------------------- table plumbing

#define SR_TILE_FROM_DOT(name, dotfn)                                                          \
    static void name(int64_t n, const void *w, size_t w_rb, int nr, const void *act, size_t a_rb, \
                     int na, float *y, size_t y_ts) {                                          \
        for (int k = 0; k < na; ++k)                                                           \
            for (int r = 0; r < nr; ++r)                                                       \
                y[k * y_ts + r] = dotfn(n, (const char *)w + r * w_rb, (const char *)act + k * a_rb); \
    }

SR_TILE_FROM_DOT(tile_q4_0, dot_q4_0)
SR_TILE_FROM_DOT(tile_q4_1, dot_q4_1)
SR_TILE_FROM_DOT(tile_q8_0, dot_q8_0)
SR_TILE_FROM_DOT(tile_q5_0, dot_q5_0)
SR_TILE_FROM_DOT(tile_q5_1, dot_q5_1)
SR_TILE_FROM_DOT(tile_q2_K, dot_q2_K)
SR_TILE_FROM_DOT(tile_q3_K, dot_q3_K)
SR_TILE_FROM_DOT(tile_q4_K, dot_q4_K)
SR_TILE_FROM_DOT(tile_q5_K, dot_q5_K)
SR_TILE_FROM_DOT(tile_q6_K, dot_q6_K)
SR_TILE_FROM_DOT(tile_f16, dot_f16)

static void f16rows_portable(int64_t n, const uint16_t *x, size_t stride, int64_t rows, const uint16_t *y, float *out) {
    for (int64_t r = 0; r < rows; ++r) out[r] = dot_f16(n, x + (size_t)r * stride, y);
}
SR_TILE_FROM_DOT(tile_bf16, dot_bf16)
SR_TILE_FROM_DOT(tile_f32, dot_f32)

// Fixed-order f32 dot of the float reference path: element i accumulates into lane i % 32
// with fmaf, lanes reduced like GGML_F32x8_REDUCE.
static float fdot_portable(int64_t n, const float *w, const float *x) {
    float s[32] = {0};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int j = 0; j < 32; ++j) s[j] = fmaf(w[i + j], x[i + j], s[j]);
    for (int j = 0; i + j < n; ++j) s[j] = fmaf(w[i + j], x[i + j], s[j]);
    return reduce32(s);
}

// llamafile tinyBLAS<8, __m256> (F16 x F16 on AVX2): one 8-lane FMA accumulator over the whole
// row, then hsum. llama.cpp takes this path for attention products of batches of >= 2 tokens.
static void f16rows_gemm_portable(int64_t n, const uint16_t *x, size_t stride, int64_t rows, const uint16_t *y, float *out) {
    for (int64_t r = 0; r < rows; ++r) {
        const uint16_t *xr = x + (size_t)r * stride;
        float c[8] = {0};
        for (int64_t i = 0; i < n; i += 8)
            for (int l = 0; l < 8; ++l) c[l] = fmaf(sr_h2f(xr[i + l]), sr_h2f(y[i + l]), c[l]);
        out[r] = hsum8(c);
    }
}

// ---------------------------------------------------------------- ggml's vector exp
// ggml_v_expf (ggml-cpu/vec.h) one lane at a time is sr_ggml_expf1 (sr-spike-float.h, shared
// with the FPGA token program): every lane equals the AVX2 version bit for bit.

static double softmax_exp_portable(int64_t n, float *y, const float *x, float max) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i += 8) {
        float v[8] = {0};   // a short last group is padded with exp(-inf) = 0, as ggml's masked row is
        for (int l = 0; l < 8 && i + l < n; ++l) y[i + l] = v[l] = sr_ggml_expf1(x[i + l] - max);
        // the AVX2 horizontal add: (hi + lo), then lanes 0+2 / 1+3, then 0+1
        const float a0 = v[4] + v[0], a1 = v[5] + v[1], a2 = v[6] + v[2], a3 = v[7] + v[3];
        sum += (double)((a0 + a2) + (a1 + a3));
    }
    return sum;
}

static void swiglu_portable(int64_t n, float *y, const float *x, const float *g) {
    sr_swiglu_ref(n, y, x, g);   // ggml: vector silu in groups of 8, libm expf after
}

void sr_kernels_init_portable(sr_kernels *k) {
    memset(k, 0, sizeof *k);
    k->tile[SR_TYPE_Q4_0] = tile_q4_0;
    k->tile[SR_TYPE_Q4_1] = tile_q4_1;
    k->tile[SR_TYPE_Q8_0] = tile_q8_0;
    k->tile[SR_TYPE_Q5_0] = tile_q5_0;
    k->tile[SR_TYPE_Q5_1] = tile_q5_1;
    k->tile[SR_TYPE_Q2_K] = tile_q2_K;
    k->tile[SR_TYPE_Q3_K] = tile_q3_K;
    k->tile[SR_TYPE_Q4_K] = tile_q4_K;
    k->tile[SR_TYPE_Q5_K] = tile_q5_K;
    k->tile[SR_TYPE_Q6_K] = tile_q6_K;
    k->tile[SR_TYPE_F16] = tile_f16;
    k->tile[SR_TYPE_BF16] = tile_bf16;
    k->tile[SR_TYPE_F32] = tile_f32;
    k->quant[SR_TYPE_Q8_0] = quant_q8_0;
    k->quant[SR_TYPE_Q8_1] = quant_q8_1;
    k->quant[SR_TYPE_Q8_K] = sr_quantize_q8_K_ref;
    k->quant[SR_TYPE_F16] = sr_quantize_f16_ref;
    k->quant[SR_TYPE_BF16] = sr_quantize_bf16_ref;
    k->quant[SR_TYPE_F32] = sr_quantize_f32_copy;
    k->fdot = fdot_portable;
    k->f16rows = f16rows_portable;
    k->f16rows_gemm = f16rows_gemm_portable;
    k->softmax_exp = softmax_exp_portable;
    k->swiglu = swiglu_portable;
    for (int t = 0; t < 32; ++t) { k->tile_rows[t] = 1; k->tile_toks[t] = 4; k->tile_rows1[t] = 1; }
}
