// sr-quant-avx2.c - AVX2 (+FMA+F16C) kernels, bit-identical to sr-quant-portable.c (and to
// ggml's x86 AVX2 kernels): same lanes, same FMAs, same horizontal reduction order.
// Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 also come as rows x tokens tiles (up to 4 x 4): several
// weight rows (decode) or rows and tokens (prompt) share each unpacked weight / activation block.
#include "sr-quant-impl.h"

// sr-quant-vnni.c compiles this file a second time for AVX-512 VNNI machines: the same code,
// the u8 x s8 pair sums by one vpdpbusd instead of maddubs + madd (the same integers: the
// unsigned operand is at most 128, so each product lies in [-16384, 16256] and a pair sum in
// [-32768, 32512], where maddubs never saturates), and 32 vector registers, so larger tiles
// stay out of memory; its tiles also hold two weight rows per zmm and take Q4_0/Q5_0/Q8_0
// weights as unsigned values with an offset (q8_tile), the same integers again.
// sr-quant-avxvnni.c compiles it a third time for AVX-VNNI machines without AVX-512 (Alder
// Lake and later client cores): the VEX vpdpbusd, 16 registers, so the AVX2 tile shapes.
#if defined(SR_QUANT_VNNI)
#define SR_TARGET "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni"
#define SR_KERNELS_INIT sr_kernels_init_vnni
#define SR_DPBUSD(ax, sy) _mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, sy)
#elif defined(SR_QUANT_AVXVNNI)
#define SR_TARGET "avx2,fma,f16c,avxvnni"
#define SR_KERNELS_INIT sr_kernels_init_avxvnni
#define SR_DPBUSD(ax, sy) _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), ax, sy)
#else
#define SR_TARGET "avx2,fma,f16c"
#define SR_KERNELS_INIT sr_kernels_init_avx2
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#define SR_AVX2 __attribute__((target(SR_TARGET)))
#define SR_AVX2_INLINE __attribute__((target(SR_TARGET), always_inline)) static inline

// One fp16 to float. The value goes through a general register and vmovd, which zeroes the rest
// of the vector: with _cvtsh_ss compilers load it with a vpinsrw that merges into whatever
// register is free, often a loop's accumulator, which chained every block's scale to the
// previous block's last fma (Q4_0 and Q5_0 tiles, the K-quant tiles' d).
SR_AVX2_INLINE float h2f(uint16_t h) {
    uint32_t v = h;
    __asm__("" : "+r"(v));
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128((int)v)));
}

// scalar FMA: inlined as vfmadd*ss inside target("fma") functions by GCC and clang
SR_AVX2_INLINE float fma1(float a, float b, float c) { return __builtin_fmaf(a, b, c); }

SR_AVX2_INLINE float hsum_float_8(__m256 x) {
    __m128 res = _mm256_extractf128_ps(x, 1);
    res = _mm_add_ps(res, _mm256_castps256_ps128(x));
    res = _mm_add_ps(res, _mm_movehl_ps(res, res));
    res = _mm_add_ss(res, _mm_movehdup_ps(res));
    return _mm_cvtss_f32(res);
}

// GGML_F32x8_REDUCE for 4 registers
SR_AVX2_INLINE float reduce4(__m256 s0, __m256 s1, __m256 s2, __m256 s3) {
    s0 = _mm256_add_ps(s0, s2);
    s1 = _mm256_add_ps(s1, s3);
    s0 = _mm256_add_ps(s0, s1);
    const __m128 t0 = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
    const __m128 t1 = _mm_hadd_ps(t0, t0);
    return _mm_cvtss_f32(_mm_hadd_ps(t1, t1));
}

SR_AVX2_INLINE int hsum_i32_8(__m256i a) {
    const __m128i sum128 = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extractf128_si256(a, 1));
    const __m128i hi64 = _mm_unpackhi_epi64(sum128, sum128);
    const __m128i sum64 = _mm_add_epi32(hi64, sum128);
    const __m128i hi32 = _mm_shuffle_epi32(sum64, _MM_SHUFFLE(2, 3, 0, 1));
    return _mm_cvtsi128_si32(_mm_add_epi32(sum64, hi32));
}

SR_AVX2_INLINE __m256i bytes_from_nibbles_32(const uint8_t *rsi) {
    const __m128i tmp = _mm_loadu_si128((const __m128i *)rsi);
    const __m256i bytes = _mm256_insertf128_si256(_mm256_castsi128_si256(tmp), _mm_srli_epi16(tmp, 4), 1);
    return _mm256_and_si256(_mm256_set1_epi8(0xF), bytes);
}

// Byte j = 0xFF where bit j of the 32-bit little-endian word at x is set, else 0.
SR_AVX2_INLINE __m256i bytes_from_bits_32(const uint8_t *x) {
    uint32_t x32;
    memcpy(&x32, x, 4);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x32), shuf);   // byte j = byte j/8 of x32
    const __m256i others = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe);                 // all bits but j % 8
    return _mm256_cmpeq_epi8(_mm256_or_si256(bytes, others), _mm256_set1_epi64x(-1));
}

// The 32 5-bit values of a Q5_0 / Q5_1 block as bytes: nibbles plus bit j of qh as bit 4.
// Q5_0 (signed = 1) keeps ggml's form nibble | (bit clear ? 0xF0 : 0), i.e. value - 16.
SR_AVX2_INLINE __m256i q5_bytes(const uint8_t *qh, const uint8_t *qs, int is_signed) {
    const __m256i bits = bytes_from_bits_32(qh);
    const __m256i hi = is_signed ? _mm256_andnot_si256(bits, _mm256_set1_epi8((char)0xF0))
                                 : _mm256_and_si256(bits, _mm256_set1_epi8(0x10));
    return _mm256_or_si256(bytes_from_nibbles_32(qs), hi);
}

// Sums of 4 adjacent u8 x s8 products per int32 lane (ggml's sum_i16_pairs of maddubs).
SR_AVX2_INLINE __m256i dot_us8_quads(__m256i ax, __m256i sy) {
#ifdef SR_DPBUSD
    return SR_DPBUSD(ax, sy);
#else
    return _mm256_madd_epi16(_mm256_set1_epi16(1), _mm256_maddubs_epi16(ax, sy));
#endif
}

SR_AVX2_INLINE __m256 mul_sum_us8_pairs_float(__m256i ax, __m256i sy) {
    return _mm256_cvtepi32_ps(dot_us8_quads(ax, sy));
}

#ifdef SR_QUANT_VNNI
// Level-2 tiles hold two rows per zmm: [row 0 | row 1] halves. Row r's half of such a register.
SR_AVX2_INLINE __m256 rows_pair_half(__m512 v, int r) {
    return r ? _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)) : _mm512_castps512_ps256(v);
}
// [a | b] as one zmm (two rows' values, or any two halves).
SR_AVX2_INLINE __m512i rows_pair_si(__m256i a, __m256i b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
}
// The vpermps index that fills the low half with lane a and the high half with lane b.
SR_AVX2_INLINE __m512i rows_pair_lanes(int a, int b) { return rows_pair_si(_mm256_set1_epi32(a), _mm256_set1_epi32(b)); }
#endif

// ---------------------------------------------------------------- activation quantization

SR_AVX2_INLINE float block_amax(__m256 v0, __m256 v1, __m256 v2, __m256 v3) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_andnot_ps(sign, v0);
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v1));
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v2));
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v3));
    __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    return _mm_cvtss_f32(m4);
}

SR_AVX2 static void quant_q8_x(const float *x, void *dst, int64_t n, int with_sum) {
    uint8_t *out = dst;
    const size_t bb = with_sum ? sizeof(sr_block_q8_1) : sizeof(sr_block_q8_0);
    const size_t qo = with_sum ? 4 : 2;   // offset of qs in the block
    for (int64_t i = 0; i < n / 32; ++i, x += 32, out += bb) {
        __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
        __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
        const float amax = block_amax(v0, v1, v2, v3);
        const float d = amax / 127.f;
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        const uint16_t dh = _cvtss_sh(d, 0);
        memcpy(out, &dh, 2);
        const __m256 mul = _mm256_set1_ps(id);
        v0 = _mm256_round_ps(_mm256_mul_ps(v0, mul), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v1 = _mm256_round_ps(_mm256_mul_ps(v1, mul), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v2 = _mm256_round_ps(_mm256_mul_ps(v2, mul), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v3 = _mm256_round_ps(_mm256_mul_ps(v3, mul), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m256i i0 = _mm256_cvtps_epi32(v0), i1 = _mm256_cvtps_epi32(v1);
        __m256i i2 = _mm256_cvtps_epi32(v2), i3 = _mm256_cvtps_epi32(v3);
        if (with_sum) {
            const int s = hsum_i32_8(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
            const uint16_t sh = _cvtss_sh(d * (float)s, 0);
            memcpy(out + 2, &sh, 2);
        }
        i0 = _mm256_packs_epi32(i0, i1);
        i2 = _mm256_packs_epi32(i2, i3);
        i0 = _mm256_packs_epi16(i0, i2);
        i0 = _mm256_permutevar8x32_epi32(i0, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(out + qo), i0);
    }
}

// Q8_K (the K-quants' activations) as ggml's quantize_row_q8_K_ref, which x86 builds use: the
// signed value of largest magnitude (the first one on ties) gives iscale = -127 / max, and
// cvtps rounds iscale * x half to even, as nearest_int's magic-number add does for these
// magnitudes (|iscale * x| <= 127; packs then saturates where the reference clamps at 127).
// A block holding a NaN or an infinity goes to the reference, whose scalar steps define it.
SR_AVX2 static void quant_q8_K(const float *x, void *dst, int64_t n) {
    sr_block_q8_K *y = dst;
    for (int64_t i = 0; i < n / SR_QK_K; ++i, x += SR_QK_K) {
        float amax = 0.0f;
        __m256 bad = _mm256_setzero_ps();
        for (int j = 0; j < SR_QK_K; j += 32) {
            const __m256 v0 = _mm256_loadu_ps(x + j), v1 = _mm256_loadu_ps(x + j + 8);
            const __m256 v2 = _mm256_loadu_ps(x + j + 16), v3 = _mm256_loadu_ps(x + j + 24);
            const float m = block_amax(v0, v1, v2, v3);
            amax = m > amax ? m : amax;
            // x - x is NaN exactly for NaN and infinite x
            bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_sub_ps(v0, v0), _mm256_sub_ps(v1, v1), _CMP_UNORD_Q));
            bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_sub_ps(v2, v2), _mm256_sub_ps(v3, v3), _CMP_UNORD_Q));
        }
        if (!_mm256_testz_ps(bad, bad) || amax == 0.0f) {
            sr_quantize_q8_K_ref(x, &y[i], SR_QK_K);
            continue;
        }
        int first = 0;
        while (fabsf(x[first]) != amax) ++first;
        const float iscale = -127.f / x[first];
        const __m256 mul = _mm256_set1_ps(iscale);
        for (int j = 0; j < SR_QK_K; j += 32) {
            __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(mul, _mm256_loadu_ps(x + j)));
            __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(mul, _mm256_loadu_ps(x + j + 8)));
            __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(mul, _mm256_loadu_ps(x + j + 16)));
            __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(mul, _mm256_loadu_ps(x + j + 24)));
            i0 = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
            i0 = _mm256_permutevar8x32_epi32(i0, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256((__m256i *)(y[i].qs + j), i0);
            // the two 16-value sums: sign-extend, add pairs, then fold
            const __m256i w0 = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(i0));
            const __m256i w1 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(i0, 1));
            const __m256i s = _mm256_hadd_epi16(w0, w1);            // lanes: w0 pairs | w1 pairs, per half
            __m128i t = _mm_add_epi16(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
            t = _mm_hadd_epi16(t, t);
            t = _mm_hadd_epi16(t, t);                               // [sum w0, sum w1, ...]
            y[i].bsums[j / 16] = (int16_t)_mm_extract_epi16(t, 0);
            y[i].bsums[j / 16 + 1] = (int16_t)_mm_extract_epi16(t, 1);
        }
        y[i].d = 1 / iscale;
    }
}

SR_AVX2 static void quant_q8_0(const float *x, void *dst, int64_t n) { quant_q8_x(x, dst, n, 0); }
SR_AVX2 static void quant_q8_1(const float *x, void *dst, int64_t n) { quant_q8_x(x, dst, n, 1); }

SR_AVX2 static void quant_f16(const float *x, void *dst, int64_t n) {
    uint16_t *y = dst;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), 0));
    for (; i < n; ++i) y[i] = _cvtss_sh(x[i], 0);
}

// ---------------------------------------------------------------- Q4_0 / Q4_1 / Q8_0 tiles

// Prefetch the same block SR_DENSE_PF_TILES tiles further down the weight matrix: interleaved
// row streams defeat the hardware prefetchers once the matrix no longer fits in L2. (Integer
// arithmetic: the address may lie past the end of the matrix; prefetches never fault.)
// Measured on a Zen 4 at the AVX2 level (sr-model-bench dense tg128, 1 / 2 threads): 0 tiles
// 87 / 134 t/s, 1 117 / 177, 2 122 / 174, 4 124 / 222, 8 125 / 222, 12 117 / 203. On a Zen 5
// at level 2 (alternating runs) 8 tiles against 4: SmolLM2 Q4_1 1.06x / 1.035x, the 1.1B
// Q4_K_M 1.016x on one thread; 2 tiles 0.82x.
#ifndef SR_DENSE_PF_TILES
#define SR_DENSE_PF_TILES 8
#endif
SR_AVX2_INLINE void sr_prefetch(const void *p, size_t ahead) {
    _mm_prefetch((const char *)((uintptr_t)p + ahead), _MM_HINT_T0);
}
// Every line of one block `ahead` bytes further on (K-quant super-blocks of 84 to 210 bytes
// span up to 4 lines); the K-quant tiles take `ahead` = SR_DENSE_PF_TILES tiles of rows.
SR_AVX2_INLINE void sr_prefetch_block(const void *p, size_t ahead, size_t bytes) {
    for (size_t o = 0; o < bytes; o += 64) sr_prefetch((const char *)p + o, ahead);
}

// NR weight rows x NA activation rows (constants after inlining). Each weight block is unpacked
// once per tile and each activation block loaded once; every (r, k) accumulator sees exactly
// the single-dot sequence of operations.
// Q4_1 and Q5_1 (is_q5; xbb = weight block bytes): both sum u8 x s8 quads; ggml's Q5_1 writes
// fma(q, dx*dy, acc) where Q4_1 writes fma(dx*dy, q, acc): the same rounding.
_Static_assert(SR_TILE_MAX <= 4, "q4_1_tile and q8_tile gather at most 4 rows' scales into one register");
SR_AVX2_INLINE void q4_1_tile(int64_t nb, const char *w, size_t w_rb, size_t xbb, int is_q5, const char *act,
                              size_t a_rb, float *y, size_t y_ts, const int NR, const int NA) {
    // The rows' fp16 (d, m) pairs widen with one vcvtph2ps into lanes (2r, 2r + 1); a token's
    // (d, s) pair repeats in every lane pair, so one multiply gives each row's d0 * d1 in its
    // even lane and one fma each row's summs (ggml's fma(m, s, summs)) in its odd lane.
    __m256 acc[SR_TILE_MAX][SR_TILE_MAX];
    __m256 summs[SR_TILE_MAX];
    for (int k = 0; k < NA; ++k) {
        summs[k] = _mm256_setzero_ps();
        for (int r = 0; r < NR; ++r) acc[r][k] = _mm256_setzero_ps();
    }
#ifdef SR_QUANT_VNNI
    // Level 2, an even number of rows: rows 2p and 2p + 1 share a zmm (a token's q8 block in
    // both halves), so one vpdpbusd, one convert and one fma serve two rows, each lane
    // computing what the ymm form below computes for its row.
    __m512 accw[SR_TILE_MAX / 2][SR_TILE_MAX];
    const bool wide = NR % 2 == 0;
    if (wide)
        for (int p = 0; p < NR / 2; ++p)
            for (int k = 0; k < NA; ++k) accw[p][k] = _mm512_setzero_ps();
#endif
    for (int64_t ib = 0; ib < nb; ++ib) {
        __m256i qx[SR_TILE_MAX];
        __m128i dm16 = _mm_setzero_si128();
        for (int r = 0; r < NR; ++r) {
            const uint8_t *xb = (const uint8_t *)w + r * w_rb + (size_t)ib * xbb;   // d, m, [qh,] qs
            sr_prefetch(xb, SR_DENSE_PF_TILES * NR * w_rb);
            int32_t dm;
            memcpy(&dm, xb, 4);
            dm16 = r == 0 ? _mm_cvtsi32_si128(dm) : r == 1 ? _mm_insert_epi32(dm16, dm, 1)
                 : r == 2 ? _mm_insert_epi32(dm16, dm, 2) : _mm_insert_epi32(dm16, dm, 3);
            qx[r] = is_q5 ? q5_bytes(xb + 4, xb + 8, 0) : bytes_from_nibbles_32(xb + 4);
        }
        const __m256 dmv = _mm256_cvtph_ps(dm16);
#ifdef SR_QUANT_VNNI
        __m512i qxw[SR_TILE_MAX / 2];
        if (wide)
            for (int p = 0; p < NR / 2; ++p) qxw[p] = rows_pair_si(qx[2 * p], qx[2 * p + 1]);
#endif
        for (int k = 0; k < NA; ++k) {
            const sr_block_q8_1 *yb = (const sr_block_q8_1 *)(act + k * a_rb) + ib;
            int32_t ds;
            memcpy(&ds, &yb->d, 4);
            const __m256 dsv = _mm256_cvtph_ps(_mm_set1_epi32(ds));
            const __m256 d0d1 = _mm256_mul_ps(dmv, dsv);
            summs[k] = _mm256_fmadd_ps(dmv, dsv, summs[k]);
#ifdef SR_QUANT_VNNI
            if (wide) {
                const __m512i qy = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)yb->qs));
                for (int p = 0; p < NR / 2; ++p) {
                    // row 2p's d0 * d1 (lane 4p) in the low half, row 2p + 1's (lane 4p + 2) in the high
                    const __m512 d = _mm512_permutexvar_ps(rows_pair_lanes(4 * p, 4 * p + 2), _mm512_castps256_ps512(d0d1));
                    const __m512 q = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), qxw[p], qy));
                    accw[p][k] = _mm512_fmadd_ps(d, q, accw[p][k]);
                }
                continue;
            }
#endif
            const __m256i qy = _mm256_loadu_si256((const __m256i *)yb->qs);
            for (int r = 0; r < NR; ++r) {
                const __m256 d = _mm256_permutevar8x32_ps(d0d1, _mm256_set1_epi32(2 * r));
                acc[r][k] = _mm256_fmadd_ps(d, mul_sum_us8_pairs_float(qx[r], qy), acc[r][k]);
            }
        }
    }
    for (int k = 0; k < NA; ++k) {
        float sm[8];
        _mm256_storeu_ps(sm, summs[k]);
#ifdef SR_QUANT_VNNI
        if (wide) {
            for (int r = 0; r < NR; ++r) y[k * y_ts + r] = hsum_float_8(rows_pair_half(accw[r / 2][k], r % 2)) + sm[2 * r + 1];
            continue;
        }
#endif
        for (int r = 0; r < NR; ++r) y[k * y_ts + r] = hsum_float_8(acc[r][k]) + sm[2 * r + 1];
    }
}

// Q8_0 / Q4_0 / Q5_0 x Q8_0: mul_sum_i8_pairs_float(qx, qy) = maddubs(|qx|, sign(qy, qx)).
// kind: 0 Q8_0, 1 Q4_0, 2 Q5_0.
SR_AVX2_INLINE void q8_tile(int64_t nb, const char *w, size_t w_rb, size_t xbb, int kind,
                            const char *act, size_t a_rb, float *y, size_t y_ts, const int NR, const int NA) {
    __m256 acc[SR_TILE_MAX][SR_TILE_MAX];
    for (int r = 0; r < NR; ++r)
        for (int k = 0; k < NA; ++k) acc[r][k] = _mm256_setzero_ps();
#ifdef SR_QUANT_VNNI
    // Level 2, an even number of rows: two rows per zmm as in q4_1_tile, and no sign trick:
    // the weights go in as unsigned u = q + off (Q4_0's nibbles and Q5_0's 5-bit values as
    // stored, q ^ 0x80 for Q8_0), and each vpdpbusd starts from -off x (the token's 4-byte
    // sums), computed once per token. Each lane gets the same integer as ggml's sign trick
    // (exact int32 arithmetic, |lane| < 2^17), so the floats that follow are its, for
    // activations in [-127, 127], which is what Q8_0 quantizers write (the sign trick would
    // wrap a -128 where these sums do not).
    __m512 accw[SR_TILE_MAX / 2][SR_TILE_MAX];
    const bool wide = NR % 2 == 0;
    const int off = kind == 0 ? 128 : kind == 1 ? 8 : 16;
    if (wide)
        for (int p = 0; p < NR / 2; ++p)
            for (int k = 0; k < NA; ++k) accw[p][k] = _mm512_setzero_ps();
#else
    const bool wide = false;
#endif
    for (int64_t ib = 0; ib < nb; ++ib) {
        __m256i qx[SR_TILE_MAX];
        __m128i dx16 = _mm_setzero_si128();   // the rows' fp16 d, widened at once below
        for (int r = 0; r < NR; ++r) {
            const uint8_t *xb = (const uint8_t *)w + r * w_rb + (size_t)ib * xbb;
            sr_prefetch(xb, SR_DENSE_PF_TILES * NR * w_rb);
            const int dr = sr_rd16(xb);
            dx16 = r == 0 ? _mm_cvtsi32_si128(dr) : r == 1 ? _mm_insert_epi16(dx16, dr, 1)
                 : r == 2 ? _mm_insert_epi16(dx16, dr, 2) : _mm_insert_epi16(dx16, dr, 3);
            if (kind == 1) {
                qx[r] = bytes_from_nibbles_32(xb + 2);
                if (!wide) qx[r] = _mm256_sub_epi8(qx[r], _mm256_set1_epi8(8));
            } else if (kind == 2) {
                qx[r] = q5_bytes(xb + 2, xb + 6, !wide);
            } else {
                qx[r] = _mm256_loadu_si256((const __m256i *)(xb + 2));
                if (wide) qx[r] = _mm256_xor_si256(qx[r], _mm256_set1_epi8((char)0x80));
            }
        }
        const __m256 dxv = _mm256_castps128_ps256(_mm_cvtph_ps(dx16));
#ifdef SR_QUANT_VNNI
        __m512i uw[SR_TILE_MAX / 2];
        if (wide)
            for (int p = 0; p < NR / 2; ++p) uw[p] = rows_pair_si(qx[2 * p], qx[2 * p + 1]);
#endif
        for (int k = 0; k < NA; ++k) {
            const sr_block_q8_0 *yb = (const sr_block_q8_0 *)(act + k * a_rb) + ib;
            const __m256 dxdy = _mm256_mul_ps(dxv, _mm256_set1_ps(h2f(sr_rd16(&yb->d))));   // lane r: dx[r] * dy
#ifdef SR_QUANT_VNNI
            if (wide) {
                const __m512i qy = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)yb->qs));
                const __m512i bias = _mm512_sub_epi32(_mm512_setzero_si512(),
                                                      _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)off), qy));
                for (int p = 0; p < NR / 2; ++p) {
                    // row 2p's dx * dy (lane 2p) in the low half, row 2p + 1's in the high
                    const __m512 d = _mm512_permutexvar_ps(rows_pair_lanes(2 * p, 2 * p + 1), _mm512_castps256_ps512(dxdy));
                    const __m512 q = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(bias, uw[p], qy));
                    accw[p][k] = _mm512_fmadd_ps(d, q, accw[p][k]);
                }
                continue;
            }
#endif
            const __m256i qy = _mm256_loadu_si256((const __m256i *)yb->qs);
            for (int r = 0; r < NR; ++r) {
                const __m256 d = NR == 1 ? _mm256_broadcastss_ps(_mm256_castps256_ps128(dxdy))
                                         : _mm256_permutevar8x32_ps(dxdy, _mm256_set1_epi32(r));
                const __m256i ax = _mm256_sign_epi8(qx[r], qx[r]);   // recomputed: saves registers
                const __m256i sy = _mm256_sign_epi8(qy, qx[r]);
                const __m256 q = mul_sum_us8_pairs_float(ax, sy);
                acc[r][k] = _mm256_fmadd_ps(d, q, acc[r][k]);
            }
        }
    }
#ifdef SR_QUANT_VNNI
    if (wide) {
        for (int k = 0; k < NA; ++k)
            for (int r = 0; r < NR; ++r) y[k * y_ts + r] = hsum_float_8(rows_pair_half(accw[r / 2][k], r % 2));
        return;
    }
#endif
    for (int k = 0; k < NA; ++k)
        for (int r = 0; r < NR; ++r) y[k * y_ts + r] = hsum_float_8(acc[r][k]);
}

// Dispatch (nr, na) to a constant-shape body. Shapes with nr * na > 8 are split in row pairs.
#define SR_TILE_DISPATCH(BODY, ...)                                                          \
    switch (na) {                                                                            \
    case 1:                                                                                  \
        switch (nr) {                                                                        \
        case 1: BODY(__VA_ARGS__, 1, 1); return;                                             \
        case 2: BODY(__VA_ARGS__, 2, 1); return;                                             \
        case 3: BODY(__VA_ARGS__, 3, 1); return;                                             \
        default: BODY(__VA_ARGS__, 4, 1); return;                                            \
        }                                                                                    \
    case 2:                                                                                  \
        switch (nr) {                                                                        \
        case 1: BODY(__VA_ARGS__, 1, 2); return;                                             \
        case 2: BODY(__VA_ARGS__, 2, 2); return;                                             \
        case 3: BODY(__VA_ARGS__, 3, 2); return;                                             \
        default: BODY(__VA_ARGS__, 4, 2); return;                                            \
        }                                                                                    \
    case 3:                                                                                  \
        switch (nr) {                                                                        \
        case 1: BODY(__VA_ARGS__, 1, 3); return;                                             \
        default: BODY(__VA_ARGS__, 2, 3); break;                                             \
        }                                                                                    \
        break;                                                                               \
    default:                                                                                 \
        switch (nr) {                                                                        \
        case 1: BODY(__VA_ARGS__, 1, 4); return;                                             \
        default: BODY(__VA_ARGS__, 2, 4); break;                                             \
        }                                                                                    \
        break;                                                                               \
    }

// With 32 vector registers (VNNI level) every shape up to 4 x 4 keeps its accumulators in
// registers, so it runs as one tile.
#define SR_TILE_ROWS(BODY, NA, ...)                                                          \
    switch (nr) {                                                                            \
    case 1: BODY(__VA_ARGS__, 1, NA); return;                                                \
    case 2: BODY(__VA_ARGS__, 2, NA); return;                                                \
    case 3: BODY(__VA_ARGS__, 3, NA); return;                                                \
    default: BODY(__VA_ARGS__, 4, NA); return;                                               \
    }
#define SR_TILE_DISPATCH_ALL(BODY, ...)                                                      \
    switch (na) {                                                                            \
    case 1: SR_TILE_ROWS(BODY, 1, __VA_ARGS__)                                               \
    case 2: SR_TILE_ROWS(BODY, 2, __VA_ARGS__)                                               \
    case 3: SR_TILE_ROWS(BODY, 3, __VA_ARGS__)                                               \
    default: SR_TILE_ROWS(BODY, 4, __VA_ARGS__)                                              \
    }

#define Q41_BODY(off, bb, isq5, NR, NA) \
    q4_1_tile(nb, (const char *)w + (off) * w_rb, w_rb, bb, isq5, act, a_rb, y + (off), y_ts, NR, NA)
#define Q8_BODY(off, bb, kind, NR, NA) \
    q8_tile(nb, (const char *)w + (off) * w_rb, w_rb, bb, kind, act, a_rb, y + (off), y_ts, NR, NA)

#ifdef SR_QUANT_VNNI
#define SR_TILE_WIDE(...) SR_TILE_DISPATCH_ALL(__VA_ARGS__)
#else
#define SR_TILE_WIDE(...)
#endif
// AVX2: na >= 3 with nr >= 2 runs two rows at a time (16 registers)
#define SR_Q_TILE(name, BODY, bb, kind, qk)                                                             \
    SR_AVX2 static void name(int64_t n, const void *w, size_t w_rb, int nr, const void *act, size_t a_rb, \
                             int na, float *y, size_t y_ts) {                                          \
        const int64_t nb = n / (qk);                                                                   \
        SR_TILE_WIDE(BODY, 0, bb, kind)                                                                \
        for (int off = 0; off < nr;) {                                                                 \
            const int rem = nr - off;                                                                  \
            if (na <= 2 || rem == 1) {                                                                 \
                nr = rem;                                                                              \
                SR_TILE_DISPATCH(BODY, off, bb, kind)                                                  \
                return;                                                                                \
            }                                                                                          \
            if (na == 3) BODY(off, bb, kind, 2, 3);                                                    \
            else BODY(off, bb, kind, 2, 4);                                                            \
            off += 2;                                                                                  \
        }                                                                                              \
    }
SR_Q_TILE(tile_q4_1, Q41_BODY, sizeof(sr_block_q4_1), 0, SR_QK4_1)
SR_Q_TILE(tile_q5_1, Q41_BODY, sizeof(sr_block_q5_1), 1, SR_QK5_1)
SR_Q_TILE(tile_q8_0, Q8_BODY, sizeof(sr_block_q8_0), 0, SR_QK8_0)
SR_Q_TILE(tile_q4_0, Q8_BODY, sizeof(sr_block_q4_0), 1, SR_QK4_0)
SR_Q_TILE(tile_q5_0, Q8_BODY, sizeof(sr_block_q5_0), 2, SR_QK5_0)

// ---------------------------------------------------------------- K-quants (one token at a time)

static const uint8_t k_shuffle_k4[256] = {
     0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,
     2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3,
     4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5,
     6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7,
     8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9,
    10,11,10,11,10,11,10,11,10,11,10,11,10,11,10,11,10,11,10,11,10,11,10,11,10,11,10,11,10,11,10,11,
    12,13,12,13,12,13,12,13,12,13,12,13,12,13,12,13,12,13,12,13,12,13,12,13,12,13,12,13,12,13,12,13,
    14,15,14,15,14,15,14,15,14,15,14,15,14,15,14,15,14,15,14,15,14,15,14,15,14,15,14,15,14,15,14,15,
};

// Q2_K / Q3_K: shuffle i picks 16-bit scale 2i for the low 128-bit lane (elements 0..15 of a
// 32-element group) and 2i + 1 for the high lane, from a register holding 8 scales twice.
static const uint8_t k_shuffle_q3k[128] = {
     0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,   2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3,
     4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5,   6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7,
     8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9,  10,11,10,11,10,11,10,11,10,11,10,11,10,11,10,11,
    12,13,12,13,12,13,12,13,12,13,12,13,12,13,12,13,  14,15,14,15,14,15,14,15,14,15,14,15,14,15,14,15,
};

SR_AVX2_INLINE __m256i scale_shuffle_q3k(int i) { return _mm256_loadu_si256((const __m256i *)k_shuffle_q3k + i); }
SR_AVX2_INLINE __m256i scale_shuffle_k4(int i) { return _mm256_loadu_si256((const __m256i *)k_shuffle_k4 + i); }

// A Q4_K/Q5_K super-block's 8 scales (low 128 bits) and 8 mins (high 128 bits) widened to
// int16, the values ggml_vec_dot_q4_K_q8_K unpacks with its scalar utmp shuffle, here from one
// 16-byte load of the block head (d, dmin, 12 scale bytes): with u0..u2 the scale words, the
// four output words are u0 & 0x3f.., (u2 & 0x0f..) | top bits of u0, u1 & 0x3f.. and
// (u2 >> 4 & 0x0f..) | top bits of u1. *dm gets [d, dmin, -, -] as floats.
SR_AVX2_INLINE __m256i k4_mins_and_scales(const void *block, __m128 *dm) {
    const __m128i v = _mm_loadu_si128((const __m128i *)block);
    *dm = _mm_cvtph_ps(v);
    const __m128i a = _mm_shuffle_epi8(v, _mm_setr_epi8(4, 5, 6, 7, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15));
    const __m128i t = _mm_shuffle_epi8(v, _mm_setr_epi8(4, 5, 6, 7, 4, 5, 6, 7, 8, 9, 10, 11, 8, 9, 10, 11));
    const __m128i lo = _mm_and_si128(_mm_srlv_epi32(a, _mm_setr_epi32(0, 0, 0, 4)),
                                     _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
    const __m128i hi = _mm_and_si128(_mm_srli_epi32(t, 2), _mm_setr_epi32(0, 0x30303030, 0, 0x30303030));
    return _mm256_cvtepu8_epi16(_mm_or_si128(lo, hi));
}

// One token's per-super-block float steps of ggml's Q4_K dot: the mins term into *acc_m and
// d * sumi into *acc (sumi: the super-block's eight int32 lane sums). ggml's dmin is
// -(y.d * x.dmin), so fnmadd with y.d * x.dmin rounds exactly as its fmadd.
SR_AVX2_INLINE void k4_token_step(__m256i mins_and_scales, __m128 dm, const sr_block_q8_K *yb,
                                  __m256i sumi, __m256 *acc, __m128 *acc_m) {
    const __m128 dd = _mm_mul_ps(_mm_broadcast_ss(&yb->d), dm);
    const __m256i q8sums = _mm256_loadu_si256((const __m256i *)yb->bsums);
    const __m128i q8s = _mm_hadd_epi16(_mm256_extracti128_si256(q8sums, 0), _mm256_extracti128_si256(q8sums, 1));
    const __m128i prod = _mm_madd_epi16(_mm256_extracti128_si256(mins_and_scales, 1), q8s);
    *acc_m = _mm_fnmadd_ps(_mm_permute_ps(dd, 0x55), _mm_cvtepi32_ps(prod), *acc_m);
    *acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(dd), _mm256_cvtepi32_ps(sumi), *acc);
}

// The row's result from its two accumulators, as ggml sums them.
SR_AVX2_INLINE float k4_finish(__m256 acc, __m128 acc_m) {
    __m128 m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
    m = _mm_add_ss(m, _mm_movehdup_ps(m));
    return hsum_float_8(acc) + _mm_cvtss_f32(m);
}

#ifdef SR_QUANT_VNNI
// Helpers of the level-2 two-row tiles, whose registers hold [row 0 | row 1] halves.
// Step j's int16 scales [scale 2j x 16 | scale 2j + 1 x 16] from k4_mins_and_scales' result.
// The scales in every 128-bit lane, and k_shuffle_k4's entries 2j and 2j + 1, which lie side by
// side, as one 64-byte control: one vpshufb per step.
SR_AVX2_INLINE __m512i k4_scale_pair(__m256i mins_and_scales, int j) {
    const __m512i scales = _mm512_broadcast_i32x4(_mm256_castsi256_si128(mins_and_scales));
    return _mm512_shuffle_epi8(scales, _mm512_loadu_si512((const void *)(k_shuffle_k4 + 64 * j)));
}
// A token's mins products of both rows, [row 0 x 4 | row 1 x 4] (ggml's madd of the mins with
// the q8 block's pair sums), from the rows' mins [row 0 | row 1].
SR_AVX2_INLINE __m256i k4_pair_mins_prod(__m256i mins01, const sr_block_q8_K *yb) {
    const __m256i q8sums = _mm256_loadu_si256((const __m256i *)yb->bsums);
    const __m128i q8s = _mm_hadd_epi16(_mm256_extracti128_si256(q8sums, 0), _mm256_extracti128_si256(q8sums, 1));
    return _mm256_madd_epi16(mins01, _mm256_set_m128i(q8s, q8s));
}
// [a x 8 | b x 8] from the low lanes of a and b.
SR_AVX2_INLINE __m512 rows_pair_ps(__m128 a, __m128 b) {
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_broadcastss_ps(a)), _mm256_castps_pd(_mm256_broadcastss_ps(b)), 1));
}
// Each row's 8 sumi lanes, [lo 0 + hi 0 | lo 1 + hi 1], from two rows' 16-lane sums.
SR_AVX2_INLINE __m512i rows_pair_sum(__m512i s0, __m512i s1) {
    return _mm512_add_epi32(_mm512_shuffle_i64x2(s0, s1, _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_i64x2(s0, s1, _MM_SHUFFLE(3, 2, 3, 2)));
}

// AVX-512 VNNI form of q4_K_tile (level 2): one zmm per token holds a 64-value step, the low
// nibbles against its first 32 q8 in the low half and the high nibbles against the next 32 in
// the high half (one contiguous 64-byte load), and vpdpwssd adds scale x maddubs pair sums.
// The halves hold ggml's p16l and p16h terms; adding them at the end of the super-block gives
// its sumi lane for lane (integer sums: the order does not matter, and nothing saturates:
// |pair sum| <= 3840, scales <= 63), so the float steps, and the result, are ggml's.
SR_AVX2_INLINE void q4_K_tile(int64_t nsb, const sr_block_q4_K *x, const char *act, size_t a_rb,
                              float *y, size_t y_ts, size_t pf, const int NA) {
    const __m512i m4 = _mm512_set1_epi8(0xF);
    const __m512i nib = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
    __m256 acc[SR_TILE_MAX];
    __m128 acc_m[SR_TILE_MAX];
    for (int k = 0; k < NA; ++k) { acc[k] = _mm256_setzero_ps(); acc_m[k] = _mm_setzero_ps(); }
    for (int64_t i = 0; i < nsb; ++i) {
        sr_prefetch_block(&x[i], pf, sizeof x[i]);
        __m128 dm;
        const __m256i mins_and_scales = k4_mins_and_scales(&x[i], &dm);
        __m512i sumi[SR_TILE_MAX];
        for (int k = 0; k < NA; ++k) sumi[k] = _mm512_setzero_si512();
        for (int j = 0; j < SR_QK_K / 64; ++j) {
            const __m512i sc = k4_scale_pair(mins_and_scales, j);
            const __m512i q4 = _mm512_and_si512(
                _mm512_srlv_epi16(_mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * j))), nib), m4);
            for (int k = 0; k < NA; ++k) {
                const int8_t *q8 = ((const sr_block_q8_K *)(act + k * a_rb))[i].qs + 64 * j;
                sumi[k] = _mm512_dpwssd_epi32(sumi[k], sc, _mm512_maddubs_epi16(q4, _mm512_loadu_si512((const void *)q8)));
            }
        }
        for (int k = 0; k < NA; ++k) {
            const __m256i s8 = _mm256_add_epi32(_mm512_castsi512_si256(sumi[k]), _mm512_extracti64x4_epi64(sumi[k], 1));
            k4_token_step(mins_and_scales, dm, (const sr_block_q8_K *)(act + k * a_rb) + i, s8, &acc[k], &acc_m[k]);
        }
    }
    for (int k = 0; k < NA; ++k) y[k * y_ts] = k4_finish(acc[k], acc_m[k]);
}

// Two Q4_K rows against NA tokens (level 2): each q8 load serves both rows, and the
// per-super-block float steps of the two rows share one register ([row 0 | row 1] halves:
// the 8 lanes of sumi and acc, the 4 lanes of the mins terms), every lane computing what
// q4_K_tile computes for its row.
SR_AVX2_INLINE void q4_K_tile2(int64_t nsb, const sr_block_q4_K *x0, const sr_block_q4_K *x1, const char *act,
                               size_t a_rb, float *y, size_t y_ts, size_t pf, const int NA) {
    const __m512i m4 = _mm512_set1_epi8(0xF);
    const __m512i nib = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
    __m512 acc[SR_TILE_MAX];
    __m256 acc_m[SR_TILE_MAX];
    for (int k = 0; k < NA; ++k) { acc[k] = _mm512_setzero_ps(); acc_m[k] = _mm256_setzero_ps(); }
    const sr_block_q4_K *xr[2] = {x0, x1};
    for (int64_t i = 0; i < nsb; ++i) {
        sr_prefetch_block(&x0[i], pf, sizeof x0[i]);
        sr_prefetch_block(&x1[i], pf, sizeof x1[i]);
        __m128 dm[2];
        __m256i ms[2];
        __m512i sumi[2][SR_TILE_MAX];
        for (int r = 0; r < 2; ++r) {
            ms[r] = k4_mins_and_scales(&xr[r][i], &dm[r]);
            for (int k = 0; k < NA; ++k) sumi[r][k] = _mm512_setzero_si512();
        }
        // the rows' d as [row 0 x 8 | row 1 x 8] and -dmin as [row 0 x 4 | row 1 x 4], so that one
        // multiply by a token's d gives each lane ggml's d = y.d * x.d (and -(y.d * x.dmin): the
        // negation is exact)
        const __m512 xdv = rows_pair_ps(dm[0], dm[1]);
        const __m256 xmv = _mm256_xor_ps(_mm256_set_m128(_mm_permute_ps(dm[1], 0x55), _mm_permute_ps(dm[0], 0x55)),
                                         _mm256_set1_ps(-0.0f));
        // mins of both rows: [row 0 | row 1]
        const __m256i mins01 = _mm256_permute2x128_si256(ms[0], ms[1], 0x31);
        for (int j = 0; j < SR_QK_K / 64; ++j) {
            const __m512i sc0 = k4_scale_pair(ms[0], j), sc1 = k4_scale_pair(ms[1], j);
            const __m512i q40 = _mm512_and_si512(
                _mm512_srlv_epi16(_mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x0[i].qs + 32 * j))), nib), m4);
            const __m512i q41 = _mm512_and_si512(
                _mm512_srlv_epi16(_mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x1[i].qs + 32 * j))), nib), m4);
            for (int k = 0; k < NA; ++k) {
                const __m512i q8 = _mm512_loadu_si512((const void *)(((const sr_block_q8_K *)(act + k * a_rb))[i].qs + 64 * j));
                sumi[0][k] = _mm512_dpwssd_epi32(sumi[0][k], sc0, _mm512_maddubs_epi16(q40, q8));
                sumi[1][k] = _mm512_dpwssd_epi32(sumi[1][k], sc1, _mm512_maddubs_epi16(q41, q8));
            }
        }
        for (int k = 0; k < NA; ++k) {
            const sr_block_q8_K *yb = (const sr_block_q8_K *)(act + k * a_rb) + i;
            const __m512 ydv = _mm512_set1_ps(yb->d);
            const __m256i prod = k4_pair_mins_prod(mins01, yb);
            acc_m[k] = _mm256_fmadd_ps(_mm256_mul_ps(_mm512_castps512_ps256(ydv), xmv), _mm256_cvtepi32_ps(prod), acc_m[k]);
            acc[k] = _mm512_fmadd_ps(_mm512_mul_ps(ydv, xdv), _mm512_cvtepi32_ps(rows_pair_sum(sumi[0][k], sumi[1][k])), acc[k]);
        }
    }
    for (int k = 0; k < NA; ++k) {
        for (int r = 0; r < 2; ++r) {
            const __m128 am = r ? _mm256_extractf128_ps(acc_m[k], 1) : _mm256_castps256_ps128(acc_m[k]);
            __m128 m = _mm_add_ps(am, _mm_movehl_ps(am, am));
            m = _mm_add_ss(m, _mm_movehdup_ps(m));
            y[k * y_ts + r] = hsum_float_8(rows_pair_half(acc[k], r)) + _mm_cvtss_f32(m);
        }
    }
}
#else
// One Q4_K row against NA tokens: the row's scales and nibbles are unpacked once per
// super-block and shared by the tokens; each token's accumulators see exactly the sequence of
// operations of ggml's AVX2 ggml_vec_dot_q4_K_q8_K, so tiling never changes a result.
SR_AVX2_INLINE void q4_K_tile(int64_t nsb, const sr_block_q4_K *x, const char *act, size_t a_rb,
                              float *y, size_t y_ts, size_t pf, const int NA) {
    // the shuffles stay vpshufb with a memory index: the compiler would otherwise turn each
    // into a shift and a broadcast (two instructions)
    const uint8_t *shuf = k_shuffle_k4;
    __asm__("" : "+r"(shuf));
    const __m256i m4 = _mm256_set1_epi8(0xF);
    __m256 acc[SR_TILE_MAX];
    __m128 acc_m[SR_TILE_MAX];
    for (int k = 0; k < NA; ++k) { acc[k] = _mm256_setzero_ps(); acc_m[k] = _mm_setzero_ps(); }
    for (int64_t i = 0; i < nsb; ++i) {
        sr_prefetch_block(&x[i], pf, sizeof x[i]);
        __m128 dm;
        const __m256i mins_and_scales = k4_mins_and_scales(&x[i], &dm);
        const __m128i sc128 = _mm256_extracti128_si256(mins_and_scales, 0);
        const __m256i scales = _mm256_set_m128i(sc128, sc128);
        __m256i sumi[SR_TILE_MAX];
        for (int k = 0; k < NA; ++k) sumi[k] = _mm256_setzero_si256();
        for (int j = 0; j < SR_QK_K / 64; ++j) {
            const __m256i scale_l = _mm256_shuffle_epi8(scales, _mm256_loadu_si256((const __m256i *)shuf + 2 * j + 0));
            const __m256i scale_h = _mm256_shuffle_epi8(scales, _mm256_loadu_si256((const __m256i *)shuf + 2 * j + 1));
            const __m256i q4bits = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * j));
            const __m256i q4l = _mm256_and_si256(q4bits, m4);
            const __m256i q4h = _mm256_and_si256(_mm256_srli_epi16(q4bits, 4), m4);
            for (int k = 0; k < NA; ++k) {
                const int8_t *q8 = ((const sr_block_q8_K *)(act + k * a_rb))[i].qs + 64 * j;
                const __m256i p16l = _mm256_madd_epi16(scale_l, _mm256_maddubs_epi16(q4l, _mm256_loadu_si256((const __m256i *)q8)));
                const __m256i p16h = _mm256_madd_epi16(scale_h, _mm256_maddubs_epi16(q4h, _mm256_loadu_si256((const __m256i *)(q8 + 32))));
                sumi[k] = _mm256_add_epi32(sumi[k], _mm256_add_epi32(p16l, p16h));
            }
        }
        for (int k = 0; k < NA; ++k)
            k4_token_step(mins_and_scales, dm, (const sr_block_q8_K *)(act + k * a_rb) + i, sumi[k], &acc[k], &acc_m[k]);
    }
    for (int k = 0; k < NA; ++k) y[k * y_ts] = k4_finish(acc[k], acc_m[k]);
}
#endif


SR_AVX2 static float dot_q5_K(int64_t n, const void *vx, const void *vy) {
    const sr_block_q5_K *x = vx;
    const sr_block_q8_K *y = vy;
    const __m256i m4 = _mm256_set1_epi8(0xF);
    const __m128i mzero = _mm_setzero_si128();
    const __m256i mone = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    float summs = 0.f;
    for (int64_t i = 0; i < n / SR_QK_K; ++i) {
        const uint8_t *q5 = x[i].qs;
        const int8_t *q8 = y[i].qs;
        float yd;
        memcpy(&yd, &y[i].d, 4);
        __m128 dm;
        const __m256i mins_and_scales = k4_mins_and_scales(&x[i], &dm);
        const float d = yd * _mm_cvtss_f32(dm);
        const float dmin = -yd * _mm_cvtss_f32(_mm_movehdup_ps(dm));
        const __m256i q8sums = _mm256_loadu_si256((const __m256i *)y[i].bsums);
        const __m128i q8s = _mm_hadd_epi16(_mm256_extracti128_si256(q8sums, 0), _mm256_extracti128_si256(q8sums, 1));
        const __m128i prod = _mm_madd_epi16(_mm256_extracti128_si256(mins_and_scales, 1), q8s);
        const __m128i hsum = _mm_hadd_epi32(_mm_hadd_epi32(prod, mzero), mzero);
        summs = fma1(dmin, (float)_mm_extract_epi32(hsum, 0), summs);
        const __m128i sc128 = _mm256_extracti128_si256(mins_and_scales, 0);
        const __m256i scales = _mm256_set_m128i(sc128, sc128);
        const __m256i hbits = _mm256_loadu_si256((const __m256i *)x[i].qh);
        __m256i hmask = mone;
        __m256i sumi = _mm256_setzero_si256();
        int bit = 0;
        for (int j = 0; j < SR_QK_K / 64; ++j) {
            const __m256i scale_0 = _mm256_shuffle_epi8(scales, scale_shuffle_k4(2 * j + 0));
            const __m256i scale_1 = _mm256_shuffle_epi8(scales, scale_shuffle_k4(2 * j + 1));
            const __m256i q5bits = _mm256_loadu_si256((const __m256i *)q5); q5 += 32;
            const __m256i q5l_0 = _mm256_and_si256(q5bits, m4);
            const __m256i q5h_0 = _mm256_slli_epi16(_mm256_srl_epi16(_mm256_and_si256(hbits, hmask), _mm_cvtsi32_si128(bit)), 4);
            bit++;
            const __m256i q5_0 = _mm256_add_epi8(q5l_0, q5h_0);
            hmask = _mm256_slli_epi16(hmask, 1);
            const __m256i q5l_1 = _mm256_and_si256(_mm256_srli_epi16(q5bits, 4), m4);
            const __m256i q5h_1 = _mm256_slli_epi16(_mm256_srl_epi16(_mm256_and_si256(hbits, hmask), _mm_cvtsi32_si128(bit)), 4);
            bit++;
            const __m256i q5_1 = _mm256_add_epi8(q5l_1, q5h_1);
            hmask = _mm256_slli_epi16(hmask, 1);
            const __m256i q8_0 = _mm256_loadu_si256((const __m256i *)q8); q8 += 32;
            const __m256i q8_1 = _mm256_loadu_si256((const __m256i *)q8); q8 += 32;
            const __m256i p16_0 = _mm256_madd_epi16(scale_0, _mm256_maddubs_epi16(q5_0, q8_0));
            const __m256i p16_1 = _mm256_madd_epi16(scale_1, _mm256_maddubs_epi16(q5_1, q8_1));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p16_0, p16_1));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_float_8(acc) + summs;
}

#ifdef SR_QUANT_VNNI
// Two Q5_K rows against NA tokens (level 2), in the manner of q4_K_tile2: a zmm holds step j's
// 64 values, sub-block 2j (low nibbles, high bit 2j of qh) in the low half and 2j + 1 in the
// high half; maddubs and vpdpwssd with the scales give ggml's p16_0 and p16_1 lane for lane
// (|pair sum| <= 7874: nothing saturates), and the halves' sum ends as its sumi. The rows'
// d products share one [row 0 x 8 | row 1 x 8] register, and the mins term is ggml's scalar
// fma per row, two lanes of one vector fma.
SR_AVX2_INLINE void q5_K_tile2(int64_t nsb, const sr_block_q5_K *x0, const sr_block_q5_K *x1, const char *act,
                               size_t a_rb, float *y, size_t y_ts, size_t pf, const int NA) {
    const __m512i m4 = _mm512_set1_epi8(0xF);
    const __m512i one = _mm512_set1_epi8(1);
    const __m512i nib = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
    const sr_block_q5_K *xr[2] = {x0, x1};
    __m512 acc[SR_TILE_MAX];
    __m128 summs[SR_TILE_MAX];   // lane r: row r's ggml summs
    for (int k = 0; k < NA; ++k) { acc[k] = _mm512_setzero_ps(); summs[k] = _mm_setzero_ps(); }
    for (int64_t i = 0; i < nsb; ++i) {
        sr_prefetch_block(&x0[i], pf, sizeof x0[i]);
        sr_prefetch_block(&x1[i], pf, sizeof x1[i]);
        __m128 dm[2];
        __m256i ms[2];
        __m512i qh[2], sumi[2][SR_TILE_MAX];
        for (int r = 0; r < 2; ++r) {
            ms[r] = k4_mins_and_scales(&xr[r][i], &dm[r]);
            qh[r] = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)xr[r][i].qh));
            for (int k = 0; k < NA; ++k) sumi[r][k] = _mm512_setzero_si512();
        }
        const __m512 xdv = rows_pair_ps(dm[0], dm[1]);
        // [-dmin row 0, -dmin row 1, 0, 0]
        const __m128 xmv = _mm_xor_ps(_mm_unpacklo_ps(_mm_movehdup_ps(dm[0]), _mm_movehdup_ps(dm[1])), _mm_set_ps(0, 0, -0.0f, -0.0f));
        const __m256i mins01 = _mm256_permute2x128_si256(ms[0], ms[1], 0x31);
        for (int j = 0; j < SR_QK_K / 64; ++j) {
            const __m512i hshift = _mm512_inserti64x4(_mm512_set1_epi16((short)(2 * j)), _mm256_set1_epi16((short)(2 * j + 1)), 1);
            const __m512i sc0 = k4_scale_pair(ms[0], j), sc1 = k4_scale_pair(ms[1], j);
            __m512i q5[2];
            for (int r = 0; r < 2; ++r) {
                const __m512i lo = _mm512_and_si512(
                    _mm512_srlv_epi16(_mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(xr[r][i].qs + 32 * j))), nib), m4);
                // bit 2j (low half) or 2j + 1 (high half) of each qh byte, moved to bit 4; the
                // 16-bit shift drags bits across the byte boundary only above bit 0
                const __m512i hi = _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh[r], hshift), one), 4);
                q5[r] = _mm512_or_si512(lo, hi);
            }
            for (int k = 0; k < NA; ++k) {
                const __m512i q8 = _mm512_loadu_si512((const void *)(((const sr_block_q8_K *)(act + k * a_rb))[i].qs + 64 * j));
                sumi[0][k] = _mm512_dpwssd_epi32(sumi[0][k], sc0, _mm512_maddubs_epi16(q5[0], q8));
                sumi[1][k] = _mm512_dpwssd_epi32(sumi[1][k], sc1, _mm512_maddubs_epi16(q5[1], q8));
            }
        }
        for (int k = 0; k < NA; ++k) {
            const sr_block_q8_K *yb = (const sr_block_q8_K *)(act + k * a_rb) + i;
            const __m512 ydv = _mm512_set1_ps(yb->d);
            // each row's 4 products summed (ggml's hadd chain: integers), then [row 0, row 1]
            __m256i prod = k4_pair_mins_prod(mins01, yb);
            prod = _mm256_hadd_epi32(prod, prod);
            prod = _mm256_hadd_epi32(prod, prod);
            const __m128i tot = _mm_unpacklo_epi32(_mm256_castsi256_si128(prod), _mm256_extracti128_si256(prod, 1));
            summs[k] = _mm_fmadd_ps(_mm_mul_ps(_mm512_castps512_ps128(ydv), xmv), _mm_cvtepi32_ps(tot), summs[k]);
            acc[k] = _mm512_fmadd_ps(_mm512_mul_ps(ydv, xdv), _mm512_cvtepi32_ps(rows_pair_sum(sumi[0][k], sumi[1][k])), acc[k]);
        }
    }
    for (int k = 0; k < NA; ++k) {
        y[k * y_ts] = hsum_float_8(rows_pair_half(acc[k], 0)) + _mm_cvtss_f32(summs[k]);
        y[k * y_ts + 1] = hsum_float_8(rows_pair_half(acc[k], 1)) + _mm_cvtss_f32(_mm_movehdup_ps(summs[k]));
    }
}

// One Q5_K row (an odd last row at level 2): ggml's dot per token.
SR_AVX2_INLINE void q5_K_tile(int64_t nsb, const sr_block_q5_K *x, const char *act, size_t a_rb, float *y,
                              size_t y_ts, size_t pf, const int NA) {
    (void)pf;
    for (int k = 0; k < NA; ++k) y[k * y_ts] = dot_q5_K(nsb * SR_QK_K, x, act + k * a_rb);
}
#endif

// 16 int8 scales -> two registers of 8 int16 scales, each repeated in both 128-bit lanes
SR_AVX2_INLINE void k_scales_16(__m128i s8, __m256i out[2]) {
    const __m256i all = _mm256_cvtepi8_epi16(s8);
    const __m128i lo = _mm256_extracti128_si256(all, 0), hi = _mm256_extracti128_si256(all, 1);
    out[0] = _mm256_set_m128i(lo, lo);
    out[1] = _mm256_set_m128i(hi, hi);
}

// One Q2_K row against NA tokens (the 2-bit codes and scales unpacked once): per token, per
// super-block ggml_vec_dot_q2_K_q8_K's fma(dmin, mins . bsums, acc) then fma(d, sumi, acc).
// The int32 lane sums are exact (no maddubs saturation with 2-bit values), so only the two
// FMAs and the final hsum round.
SR_AVX2_INLINE void q2_K_tile(int64_t nsb, const sr_block_q2_K *x, const char *act, size_t a_rb,
                              float *y, size_t y_ts, size_t pf, const int NA) {
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m128i m4 = _mm_set1_epi8(0xF);
    __m256 acc[SR_TILE_MAX];
    for (int k = 0; k < NA; ++k) acc[k] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nsb; ++i) {
        sr_prefetch_block(&x[i], pf, sizeof x[i]);
        const float xd = h2f(sr_rd16(&x[i].d)), xdmin = h2f(sr_rd16(&x[i].dmin));
        const __m128i packed = _mm_loadu_si128((const __m128i *)x[i].scales);
        const __m256i mins = _mm256_cvtepi8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), m4));
        __m256i scales[2];
        k_scales_16(_mm_and_si128(packed, m4), scales);
        __m256i sumi[SR_TILE_MAX];
        for (int k = 0; k < NA; ++k) sumi[k] = _mm256_setzero_si256();
        for (int j = 0; j < SR_QK_K / 128; ++j) {
            const __m256i bits = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * j));
            __m256i q2[4], sc[4];
            for (int g = 0; g < 4; ++g) {
                q2[g] = _mm256_and_si256(_mm256_srl_epi16(bits, _mm_cvtsi32_si128(2 * g)), m3);
                sc[g] = _mm256_shuffle_epi8(scales[j], scale_shuffle_q3k(g));
            }
            for (int k = 0; k < NA; ++k) {
                const int8_t *q8 = ((const sr_block_q8_K *)(act + k * a_rb))[i].qs + 128 * j;
                __m256i p[4];
                for (int g = 0; g < 4; ++g)
                    p[g] = _mm256_madd_epi16(sc[g], _mm256_maddubs_epi16(q2[g], _mm256_loadu_si256((const __m256i *)(q8 + 32 * g))));
                sumi[k] = _mm256_add_epi32(sumi[k], _mm256_add_epi32(_mm256_add_epi32(p[0], p[1]), _mm256_add_epi32(p[2], p[3])));
            }
        }
        for (int k = 0; k < NA; ++k) {
            const sr_block_q8_K *yb = (const sr_block_q8_K *)(act + k * a_rb) + i;
            float yd;
            memcpy(&yd, &yb->d, 4);
            const float d = yd * xd, dmin = -yd * xdmin;
            const __m256i prod = _mm256_madd_epi16(mins, _mm256_loadu_si256((const __m256i *)yb->bsums));
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(prod), acc[k]);
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi[k]), acc[k]);
        }
    }
    for (int k = 0; k < NA; ++k) y[k * y_ts] = hsum_float_8(acc[k]);
}

// One Q3_K row against NA tokens: value = low 2 bits - (high bit clear ? 4 : 0), summed as
// maddubs(low, q8) - maddubs(4 or 0, q8) with signed 6-bit scales, like ggml's AVX2 kernel;
// again exact integers, then fma(d, sumi, acc) per super-block.
SR_AVX2_INLINE void q3_K_tile(int64_t nsb, const sr_block_q3_K *x, const char *act, size_t a_rb,
                              float *y, size_t y_ts, size_t pf, const int NA) {
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m256i four = _mm256_set1_epi8(4);
    __m256 acc[SR_TILE_MAX];
    for (int k = 0; k < NA; ++k) acc[k] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nsb; ++i) {
        sr_prefetch_block(&x[i], pf, sizeof x[i]);
        const float xd = h2f(sr_rd16(&x[i].d));
        int8_t sc16[16];
        sr_scales_q3_K(x[i].scales, sc16);
        __m256i scales[2];
        k_scales_16(_mm_loadu_si128((const __m128i *)sc16), scales);
        const __m256i hbits = _mm256_loadu_si256((const __m256i *)x[i].hmask);
        __m256i sumi[SR_TILE_MAX];
        for (int k = 0; k < NA; ++k) sumi[k] = _mm256_setzero_si256();
        for (int j = 0; j < SR_QK_K / 128; ++j) {
            const __m256i bits = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * j));
            __m256i ql[4], qh[4], sc[4];
            for (int g = 0; g < 4; ++g) {
                const __m256i hb = _mm256_and_si256(hbits, _mm256_set1_epi8((char)(1 << (4 * j + g))));
                ql[g] = _mm256_and_si256(_mm256_srl_epi16(bits, _mm_cvtsi32_si128(2 * g)), m3);
                qh[g] = _mm256_and_si256(_mm256_cmpeq_epi8(hb, _mm256_setzero_si256()), four);
                sc[g] = _mm256_shuffle_epi8(scales[j], scale_shuffle_q3k(g));
            }
            for (int k = 0; k < NA; ++k) {
                const int8_t *q8 = ((const sr_block_q8_K *)(act + k * a_rb))[i].qs + 128 * j;
                __m256i p[4];
                for (int g = 0; g < 4; ++g) {
                    const __m256i q8g = _mm256_loadu_si256((const __m256i *)(q8 + 32 * g));
                    const __m256i p16 = _mm256_sub_epi16(_mm256_maddubs_epi16(ql[g], q8g), _mm256_maddubs_epi16(qh[g], q8g));
                    p[g] = _mm256_madd_epi16(sc[g], p16);
                }
                sumi[k] = _mm256_add_epi32(sumi[k], _mm256_add_epi32(_mm256_add_epi32(p[0], p[1]), _mm256_add_epi32(p[2], p[3])));
            }
        }
        for (int k = 0; k < NA; ++k) {
            const sr_block_q8_K *yb = (const sr_block_q8_K *)(act + k * a_rb) + i;
            float yd;
            memcpy(&yd, &yb->d, 4);
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(yd * xd), _mm256_cvtepi32_ps(sumi[k]), acc[k]);
        }
    }
    for (int k = 0; k < NA; ++k) y[k * y_ts] = hsum_float_8(acc[k]);
}

#ifdef SR_QUANT_VNNI
// Q6_K scale shuffles at level 2: shuffle g broadcasts int8 scales 2g, 2g + 1 over 8 bytes each.
static const uint8_t k_shuffle_q6[128] = {
     0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,   2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
     4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5,   6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7,
     8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9,  10,10,10,10,10,10,10,10,11,11,11,11,11,11,11,11,
    12,12,12,12,12,12,12,12,13,13,13,13,13,13,13,13, 14,14,14,14,14,14,14,14,15,15,15,15,15,15,15,15,
};
SR_AVX2_INLINE __m128i scale_shuffle_q6(int i) { return _mm_loadu_si128((const __m128i *)k_shuffle_q6 + i); }

// Step j (128 values) of a Q6_K super-block at level 2: q01 holds ggml's 32-value groups
// q4_0 | q4_1 and q23 q4_2 | q4_3 as unsigned 6-bit codes, sc01 and sc23 their int16 scales.
SR_AVX2_INLINE void q6_K_step(const sr_block_q6_K *x, __m128i scales, int j, __m512i *q01, __m512i *q23,
                              __m512i *sc01, __m512i *sc23) {
    const __m512i m15 = _mm512_set1_epi8(15);
    const __m512i hmask01 = _mm512_inserti64x4(_mm512_set1_epi8(3), _mm256_set1_epi8(12), 1);
    const __m512i hshl01 = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i hmask23 = _mm512_inserti64x4(_mm512_set1_epi8(48), _mm256_set1_epi8(-64), 1);
    const __m512i hshr23 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    const __m512i ql = _mm512_loadu_si512((const void *)(x->ql + 64 * j));
    const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x->qh + 32 * j)));
    *q01 = _mm512_or_si512(_mm512_and_si512(ql, m15), _mm512_sllv_epi16(_mm512_and_si512(qh, hmask01), hshl01));
    *q23 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m15),
                           _mm512_srlv_epi16(_mm512_and_si512(qh, hmask23), hshr23));
    *sc01 = rows_pair_si(_mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, scale_shuffle_q6(4 * j + 0))),
                         _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, scale_shuffle_q6(4 * j + 1))));
    *sc23 = rows_pair_si(_mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, scale_shuffle_q6(4 * j + 2))),
                         _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, scale_shuffle_q6(4 * j + 3))));
}

// AVX-512 VNNI form of q6_K_tile: a zmm holds two of ggml's 32-value groups (q4_0 | q4_1, then
// q4_2 | q4_3) against 64 contiguous q8; the halves' sum at the end of the super-block is
// ggml's sumi lane for lane (|pair sum| <= 16128, scales int8: nothing saturates).
SR_AVX2_INLINE void q6_K_tile(int64_t nsb, const sr_block_q6_K *x, const char *act, size_t a_rb,
                              float *y, size_t y_ts, size_t pf, const int NA) {
    __m256 acc[SR_TILE_MAX];
    for (int k = 0; k < NA; ++k) acc[k] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nsb; ++i) {
        sr_prefetch_block(&x[i], pf, sizeof x[i]);
        const float xd = h2f(sr_rd16(&x[i].d));
        const __m128i scales = _mm_loadu_si128((const __m128i *)x[i].scales);
        __m512i sumi[SR_TILE_MAX];
        for (int k = 0; k < NA; ++k) sumi[k] = _mm512_setzero_si512();
        for (int j = 0; j < SR_QK_K / 128; ++j) {
            __m512i q01, q23, sc01, sc23;
            q6_K_step(&x[i], scales, j, &q01, &q23, &sc01, &sc23);
            for (int k = 0; k < NA; ++k) {
                const int8_t *q8 = ((const sr_block_q8_K *)(act + k * a_rb))[i].qs + 128 * j;
                sumi[k] = _mm512_dpwssd_epi32(sumi[k], sc01, _mm512_maddubs_epi16(q01, _mm512_loadu_si512((const void *)q8)));
                sumi[k] = _mm512_dpwssd_epi32(sumi[k], sc23, _mm512_maddubs_epi16(q23, _mm512_loadu_si512((const void *)(q8 + 64))));
            }
        }
        const __m256i scales_16 = _mm256_cvtepi8_epi16(scales);
        for (int k = 0; k < NA; ++k) {
            const sr_block_q8_K *yb = (const sr_block_q8_K *)(act + k * a_rb) + i;
            float yd;
            memcpy(&yd, &yb->d, 4);
            const __m256i q8sums = _mm256_loadu_si256((const __m256i *)yb->bsums);
            const __m256i q8sclsub = _mm256_slli_epi32(_mm256_madd_epi16(q8sums, scales_16), 5);
            const __m256i s8 = _mm256_add_epi32(_mm512_castsi512_si256(sumi[k]), _mm512_extracti64x4_epi64(sumi[k], 1));
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(yd * xd), _mm256_cvtepi32_ps(_mm256_sub_epi32(s8, q8sclsub)), acc[k]);
        }
    }
    for (int k = 0; k < NA; ++k) y[k * y_ts] = hsum_float_8(acc[k]);
}

// Two Q6_K rows against NA tokens (level 2), as q4_K_tile2: each q8 load serves both rows, and
// the per-super-block float steps of the two rows share one register ([row 0 | row 1]), every
// lane computing what q6_K_tile computes for its row.
SR_AVX2_INLINE void q6_K_tile2(int64_t nsb, const sr_block_q6_K *x0, const sr_block_q6_K *x1, const char *act,
                               size_t a_rb, float *y, size_t y_ts, size_t pf, const int NA) {
    const sr_block_q6_K *xr[2] = {x0, x1};
    __m512 acc[SR_TILE_MAX];
    for (int k = 0; k < NA; ++k) acc[k] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nsb; ++i) {
        sr_prefetch_block(&x0[i], pf, sizeof x0[i]);
        sr_prefetch_block(&x1[i], pf, sizeof x1[i]);
        __m128i scales[2];
        __m512i sumi[2][SR_TILE_MAX];
        for (int r = 0; r < 2; ++r) {
            scales[r] = _mm_loadu_si128((const __m128i *)xr[r][i].scales);
            for (int k = 0; k < NA; ++k) sumi[r][k] = _mm512_setzero_si512();
        }
        for (int j = 0; j < SR_QK_K / 128; ++j) {
            __m512i q01[2], q23[2], sc01[2], sc23[2];
            for (int r = 0; r < 2; ++r) q6_K_step(&xr[r][i], scales[r], j, &q01[r], &q23[r], &sc01[r], &sc23[r]);
            for (int k = 0; k < NA; ++k) {
                const int8_t *q8 = ((const sr_block_q8_K *)(act + k * a_rb))[i].qs + 128 * j;
                const __m512i y01 = _mm512_loadu_si512((const void *)q8), y23 = _mm512_loadu_si512((const void *)(q8 + 64));
                for (int r = 0; r < 2; ++r) {
                    sumi[r][k] = _mm512_dpwssd_epi32(sumi[r][k], sc01[r], _mm512_maddubs_epi16(q01[r], y01));
                    sumi[r][k] = _mm512_dpwssd_epi32(sumi[r][k], sc23[r], _mm512_maddubs_epi16(q23[r], y23));
                }
            }
        }
        // [row 0 | row 1]: the rows' int16 scales and their d
        const __m512i scales_16 = rows_pair_si(_mm256_cvtepi8_epi16(scales[0]), _mm256_cvtepi8_epi16(scales[1]));
        const __m512 xdv = rows_pair_ps(_mm_set_ss(h2f(sr_rd16(&x0[i].d))), _mm_set_ss(h2f(sr_rd16(&x1[i].d))));
        for (int k = 0; k < NA; ++k) {
            const sr_block_q8_K *yb = (const sr_block_q8_K *)(act + k * a_rb) + i;
            const __m512i q8sums = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)yb->bsums));
            const __m512i q8sclsub = _mm512_slli_epi32(_mm512_madd_epi16(q8sums, scales_16), 5);
            const __m512i s8 = rows_pair_sum(sumi[0][k], sumi[1][k]);
            acc[k] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(yb->d), xdv), _mm512_cvtepi32_ps(_mm512_sub_epi32(s8, q8sclsub)), acc[k]);
        }
    }
    for (int k = 0; k < NA; ++k) {
        y[k * y_ts] = hsum_float_8(rows_pair_half(acc[k], 0));
        y[k * y_ts + 1] = hsum_float_8(rows_pair_half(acc[k], 1));
    }
}
#else
// One Q6_K row against NA tokens, as q4_K_tile: the row's 6-bit codes and scales are unpacked
// once per 128 values; each token's sums follow ggml_vec_dot_q6_K_q8_K's AVX2 operations.
SR_AVX2_INLINE void q6_K_tile(int64_t nsb, const sr_block_q6_K *x, const char *act, size_t a_rb,
                              float *y, size_t y_ts, size_t pf, const int NA) {
    const uint8_t *shuf = k_shuffle_k4;   // kept as vpshufb (see q4_K_tile)
    __asm__("" : "+r"(shuf));
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m256i m15 = _mm256_set1_epi8(15);
    __m256 acc[SR_TILE_MAX];
    for (int k = 0; k < NA; ++k) acc[k] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nsb; ++i) {
        sr_prefetch_block(&x[i], pf, sizeof x[i]);
        const float xd = h2f(sr_rd16(&x[i].d));
        const __m128i scales = _mm_loadu_si128((const __m128i *)x[i].scales);
        // int16 scales, even ones in the low lane and odd ones in the high lane: group i's
        // [s(2i) x 8 | s(2i+1) x 8] (ggml's q6 scale shuffle, widened) is one in-lane vpshufb
        const __m256i even_odd = _mm256_cvtepi8_epi16(
            _mm_shuffle_epi8(scales, _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15)));
        __m256i sumi[SR_TILE_MAX];
        for (int k = 0; k < NA; ++k) sumi[k] = _mm256_setzero_si256();
        for (int j = 0; j < SR_QK_K / 128; ++j) {
            const uint8_t *q4 = x[i].ql + 64 * j, *qh = x[i].qh + 32 * j;
            const __m256i q4bits1 = _mm256_loadu_si256((const __m256i *)q4);
            const __m256i q4bits2 = _mm256_loadu_si256((const __m256i *)(q4 + 32));
            const __m256i q4bitsH = _mm256_loadu_si256((const __m256i *)qh);
            const __m256i q4h_0 = _mm256_slli_epi16(_mm256_and_si256(q4bitsH, m3), 4);
            const __m256i q4h_1 = _mm256_slli_epi16(_mm256_and_si256(q4bitsH, _mm256_set1_epi8(12)), 2);
            const __m256i q4h_2 = _mm256_and_si256(q4bitsH, _mm256_set1_epi8(48));
            const __m256i q4h_3 = _mm256_srli_epi16(_mm256_and_si256(q4bitsH, _mm256_set1_epi8(-64)), 2);
            const __m256i q4_0 = _mm256_or_si256(_mm256_and_si256(q4bits1, m15), q4h_0);
            const __m256i q4_1 = _mm256_or_si256(_mm256_and_si256(q4bits2, m15), q4h_1);
            const __m256i q4_2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4bits1, 4), m15), q4h_2);
            const __m256i q4_3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4bits2, 4), m15), q4h_3);
            const __m256i sc0 = _mm256_shuffle_epi8(even_odd, _mm256_loadu_si256((const __m256i *)shuf + 4 * j + 0));
            const __m256i sc1 = _mm256_shuffle_epi8(even_odd, _mm256_loadu_si256((const __m256i *)shuf + 4 * j + 1));
            const __m256i sc2 = _mm256_shuffle_epi8(even_odd, _mm256_loadu_si256((const __m256i *)shuf + 4 * j + 2));
            const __m256i sc3 = _mm256_shuffle_epi8(even_odd, _mm256_loadu_si256((const __m256i *)shuf + 4 * j + 3));
            for (int k = 0; k < NA; ++k) {
                const int8_t *q8 = ((const sr_block_q8_K *)(act + k * a_rb))[i].qs + 128 * j;
                const __m256i p16_0 = _mm256_madd_epi16(sc0, _mm256_maddubs_epi16(q4_0, _mm256_loadu_si256((const __m256i *)q8)));
                const __m256i p16_1 = _mm256_madd_epi16(sc1, _mm256_maddubs_epi16(q4_1, _mm256_loadu_si256((const __m256i *)(q8 + 32))));
                const __m256i p16_2 = _mm256_madd_epi16(sc2, _mm256_maddubs_epi16(q4_2, _mm256_loadu_si256((const __m256i *)(q8 + 64))));
                const __m256i p16_3 = _mm256_madd_epi16(sc3, _mm256_maddubs_epi16(q4_3, _mm256_loadu_si256((const __m256i *)(q8 + 96))));
                sumi[k] = _mm256_add_epi32(sumi[k], _mm256_add_epi32(p16_0, p16_1));
                sumi[k] = _mm256_add_epi32(sumi[k], _mm256_add_epi32(p16_2, p16_3));
            }
        }
        const __m256i scales_16 = _mm256_cvtepi8_epi16(scales);
        for (int k = 0; k < NA; ++k) {
            const sr_block_q8_K *yb = (const sr_block_q8_K *)(act + k * a_rb) + i;
            float yd;
            memcpy(&yd, &yb->d, 4);
            const __m256i q8sums = _mm256_loadu_si256((const __m256i *)yb->bsums);
            const __m256i q8sclsub = _mm256_slli_epi32(_mm256_madd_epi16(q8sums, scales_16), 5);
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(yd * xd), _mm256_cvtepi32_ps(_mm256_sub_epi32(sumi[k], q8sclsub)), acc[k]);
        }
    }
    for (int k = 0; k < NA; ++k) y[k * y_ts] = hsum_float_8(acc[k]);
}
#endif

// K-quant tiles: rows r0 .. nr - 1 one at a time against 1 to 4 tokens (one token = ggml's
// single dot); the level-2 pair tiles end with it for an odd last row.
#define SR_K_ROWS(block, tilefn, r0)                                                                   \
    for (int r = (r0); r < nr; ++r) {                                                                  \
        const block *x = (const block *)((const char *)w + r * w_rb);                                  \
        switch (na) {                                                                                  \
        case 1: tilefn(n / SR_QK_K, x, act, a_rb, y + r, y_ts, pf, 1); break;                          \
        case 2: tilefn(n / SR_QK_K, x, act, a_rb, y + r, y_ts, pf, 2); break;                          \
        case 3: tilefn(n / SR_QK_K, x, act, a_rb, y + r, y_ts, pf, 3); break;                          \
        default: tilefn(n / SR_QK_K, x, act, a_rb, y + r, y_ts, pf, 4); break;                         \
        }                                                                                              \
    }
#define SR_K_TILE(name, block, tilefn)                                                                 \
    SR_AVX2 static void name(int64_t n, const void *w, size_t w_rb, int nr, const void *act, size_t a_rb, \
                             int na, float *y, size_t y_ts) {                                          \
        const size_t pf = SR_DENSE_PF_TILES * w_rb;                                                    \
        SR_K_ROWS(block, tilefn, 0)                                                                    \
    }
#ifdef SR_QUANT_VNNI
// K-quant tiles at level 2 with a two-row form: rows in pairs (tile2fn), an odd last row alone.
#define SR_K_TILE_PAIRS(name, block, tile2fn, tilefn)                                                  \
    SR_AVX2 static void name(int64_t n, const void *w, size_t w_rb, int nr, const void *act, size_t a_rb, \
                             int na, float *y, size_t y_ts) {                                          \
        const size_t pf = SR_DENSE_PF_TILES * w_rb;                                                    \
        int r2 = 0;                                                                                    \
        for (; r2 + 2 <= nr; r2 += 2) {                                                                \
            const block *x0 = (const block *)((const char *)w + r2 * w_rb);                            \
            const block *x1 = (const block *)((const char *)w + (r2 + 1) * w_rb);                      \
            switch (na) {                                                                              \
            case 1: tile2fn(n / SR_QK_K, x0, x1, act, a_rb, y + r2, y_ts, 2 * pf, 1); break;           \
            case 2: tile2fn(n / SR_QK_K, x0, x1, act, a_rb, y + r2, y_ts, 2 * pf, 2); break;           \
            case 3: tile2fn(n / SR_QK_K, x0, x1, act, a_rb, y + r2, y_ts, 2 * pf, 3); break;           \
            default: tile2fn(n / SR_QK_K, x0, x1, act, a_rb, y + r2, y_ts, 2 * pf, 4); break;          \
            }                                                                                          \
        }                                                                                              \
        SR_K_ROWS(block, tilefn, r2)                                                                   \
    }
SR_K_TILE_PAIRS(tile_q4_K, sr_block_q4_K, q4_K_tile2, q4_K_tile)
SR_K_TILE_PAIRS(tile_q6_K, sr_block_q6_K, q6_K_tile2, q6_K_tile)
SR_K_TILE_PAIRS(tile_q5_K, sr_block_q5_K, q5_K_tile2, q5_K_tile)
#else
SR_K_TILE(tile_q4_K, sr_block_q4_K, q4_K_tile)
SR_K_TILE(tile_q6_K, sr_block_q6_K, q6_K_tile)
#endif
SR_K_TILE(tile_q2_K, sr_block_q2_K, q2_K_tile)
SR_K_TILE(tile_q3_K, sr_block_q3_K, q3_K_tile)

// ---------------------------------------------------------------- float types

SR_AVX2 static float dot_f16(int64_t n, const void *vx, const void *vy) {
    const uint16_t *x = vx, *y = vy;
    const int64_t np = n & ~(int64_t)31;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
#define LD(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
    for (int64_t i = 0; i < np; i += 32) {
        s0 = _mm256_fmadd_ps(LD(x + i), LD(y + i), s0);
        s1 = _mm256_fmadd_ps(LD(x + i + 8), LD(y + i + 8), s1);
        s2 = _mm256_fmadd_ps(LD(x + i + 16), LD(y + i + 16), s2);
        s3 = _mm256_fmadd_ps(LD(x + i + 24), LD(y + i + 24), s3);
    }
#undef LD
    double sumf = reduce4(s0, s1, s2, s3);
    for (int64_t i = np; i < n; ++i) sumf += (double)(h2f(x[i]) * h2f(y[i]));
    return (float)sumf;
}

SR_AVX2 static float dot_bf16(int64_t n, const void *vx, const void *vy) {
    const uint16_t *x = vx, *y = vy;
    int64_t i = 0;
    __m256 c1 = _mm256_setzero_ps(), c2 = c1, c3 = c1, c4 = c1;
#define LD(p) _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))
    for (; i + 32 <= n; i += 32) {
        c1 = _mm256_fmadd_ps(LD(x + i), LD(y + i), c1);
        c2 = _mm256_fmadd_ps(LD(x + i + 8), LD(y + i + 8), c2);
        c3 = _mm256_fmadd_ps(LD(x + i + 16), LD(y + i + 16), c3);
        c4 = _mm256_fmadd_ps(LD(x + i + 24), LD(y + i + 24), c4);
    }
#undef LD
    c1 = _mm256_add_ps(_mm256_add_ps(c1, c3), _mm256_add_ps(c2, c4));
    double sumf = 0;
    sumf += (double)hsum_float_8(c1);
    for (; i < n; ++i) sumf += (double)(sr_bf2f(x[i]) * sr_bf2f(y[i]));
    return (float)sumf;
}

SR_AVX2 static float dot_f32(int64_t n, const void *vx, const void *vy) {
    const float *x = vx, *y = vy;
    const int64_t np = n & ~(int64_t)31;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (int64_t i = 0; i < np; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), s3);
    }
    float sumf = reduce4(s0, s1, s2, s3);
    int64_t i = np;
    for (; n - i >= 8; i += 8)
        for (int j = 0; j < 8; ++j) { const float p = x[i + j] * y[i + j]; sumf = sumf + p; }
    if (n - i >= 4) {
        for (int j = 0; j < 4; ++j) { const float p = x[i + j] * y[i + j]; sumf = sumf + p; }
        i += 4;
    }
    for (; i < n; ++i) sumf = fma1(x[i], y[i], sumf);
    return sumf;
}

// fixed-order f32 dot of the float reference path (see fdot_portable)
SR_AVX2 static float fdot_avx2(int64_t n, const float *w, const float *x) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(x + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(x + i + 24), s3);
    }
    if (i < n) {
        float s[32];
        _mm256_storeu_ps(s, s0); _mm256_storeu_ps(s + 8, s1);
        _mm256_storeu_ps(s + 16, s2); _mm256_storeu_ps(s + 24, s3);
        for (int j = 0; i + j < n; ++j) s[j] = fma1(w[i + j], x[i + j], s[j]);
        s0 = _mm256_loadu_ps(s); s1 = _mm256_loadu_ps(s + 8);
        s2 = _mm256_loadu_ps(s + 16); s3 = _mm256_loadu_ps(s + 24);
    }
    return reduce4(s0, s1, s2, s3);
}

#define SR_TILE_FROM_DOT(name, dotfn)                                                              \
    SR_AVX2 static void name(int64_t n, const void *w, size_t w_rb, int nr, const void *act, size_t a_rb, \
                             int na, float *y, size_t y_ts) {                                      \
        for (int k = 0; k < na; ++k)                                                               \
            for (int r = 0; r < nr; ++r) {                                                         \
                const char *row = (const char *)w + r * w_rb;                                      \
                if (k == 0) sr_prefetch_block(row, SR_DENSE_PF_TILES * w_rb, w_rb);                \
                y[k * y_ts + r] = dotfn(n, row, (const char *)act + k * a_rb);                     \
            }                                                                                      \
    }
// F16 dots of NR rows against one y (attention: keys x query, V rows x probabilities): the y
// halves are widened once per step for all rows; per row the lanes, FMAs, REDUCE and double
// tail are dot_f16's exactly.
SR_AVX2_INLINE void f16rows_tile(int64_t n, const uint16_t *x, size_t stride, const uint16_t *y, float *out, const int NR) {
    const int64_t np = n & ~(int64_t)31;
    __m256 s[2][4];
    for (int r = 0; r < NR; ++r) s[r][0] = s[r][1] = s[r][2] = s[r][3] = _mm256_setzero_ps();
#define LD(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
    for (int64_t i = 0; i < np; i += 32) {
        const __m256 y0 = LD(y + i), y1 = LD(y + i + 8), y2 = LD(y + i + 16), y3 = LD(y + i + 24);
        for (int r = 0; r < NR; ++r) {
            const uint16_t *xr = x + (size_t)r * stride + i;
            s[r][0] = _mm256_fmadd_ps(LD(xr), y0, s[r][0]);
            s[r][1] = _mm256_fmadd_ps(LD(xr + 8), y1, s[r][1]);
            s[r][2] = _mm256_fmadd_ps(LD(xr + 16), y2, s[r][2]);
            s[r][3] = _mm256_fmadd_ps(LD(xr + 24), y3, s[r][3]);
        }
    }
#undef LD
    for (int r = 0; r < NR; ++r) {
        const uint16_t *xr = x + (size_t)r * stride;
        double sumf = reduce4(s[r][0], s[r][1], s[r][2], s[r][3]);
        for (int64_t i = np; i < n; ++i) sumf += (double)(h2f(xr[i]) * h2f(y[i]));
        out[r] = (float)sumf;
    }
}

SR_AVX2 static void f16rows_avx2(int64_t n, const uint16_t *x, size_t stride, int64_t rows, const uint16_t *y, float *out) {
    int64_t r = 0;
    for (; r + 2 <= rows; r += 2) f16rows_tile(n, x + (size_t)r * stride, stride, y, out + r, 2);
    if (r < rows) f16rows_tile(n, x + (size_t)r * stride, stride, y, out + r, 1);
}

// tinyBLAS<8, __m256> order: per row one accumulator, fmadd per 8 halves, hsum (n % 8 == 0).
SR_AVX2 static void f16rows_gemm_avx2(int64_t n, const uint16_t *x, size_t stride, int64_t rows, const uint16_t *y, float *out) {
#define LD(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
    int64_t r = 0;
    // 8 rows: eight independent fma chains (four left the FMA units half idle)
    for (; r + 8 <= rows; r += 8) {
        const uint16_t *x0 = x + (size_t)r * stride;
        __m256 c[8];
        for (int k = 0; k < 8; ++k) c[k] = _mm256_setzero_ps();
        for (int64_t i = 0; i < n; i += 8) {
            const __m256 yv = LD(y + i);
            for (int k = 0; k < 8; ++k) c[k] = _mm256_fmadd_ps(LD(x0 + (size_t)k * stride + i), yv, c[k]);
        }
        for (int k = 0; k < 8; ++k) out[r + k] = hsum_float_8(c[k]);
    }
    for (; r + 4 <= rows; r += 4) {
        const uint16_t *x0 = x + (size_t)r * stride;
        __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
        for (int64_t i = 0; i < n; i += 8) {
            const __m256 yv = LD(y + i);
            c0 = _mm256_fmadd_ps(LD(x0 + i), yv, c0);
            c1 = _mm256_fmadd_ps(LD(x0 + stride + i), yv, c1);
            c2 = _mm256_fmadd_ps(LD(x0 + 2 * stride + i), yv, c2);
            c3 = _mm256_fmadd_ps(LD(x0 + 3 * stride + i), yv, c3);
        }
        out[r] = hsum_float_8(c0); out[r + 1] = hsum_float_8(c1);
        out[r + 2] = hsum_float_8(c2); out[r + 3] = hsum_float_8(c3);
    }
    for (; r < rows; ++r) {
        const uint16_t *xr = x + (size_t)r * stride;
        __m256 c = _mm256_setzero_ps();
        for (int64_t i = 0; i < n; i += 8) c = _mm256_fmadd_ps(LD(xr + i), LD(y + i), c);
        out[r] = hsum_float_8(c);
    }
#undef LD
}

// ggml_v_expf, AVX2 + FMA (ggml-cpu/vec.h): max error 1.45 ulp + 0.5; above 88.38 -> inf,
// below -103.97 -> 0. Mirrored lane by lane by ggml_expf1 in sr-quant-portable.c.
SR_AVX2_INLINE __m256 v_expf(__m256 x) {
    const __m256 r = _mm256_set1_ps(0x1.8p23f);
    const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), r);
    const __m256 n = _mm256_sub_ps(z, r);
    const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f),
                                      _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
    const __m256i e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
    const __m256 k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(_mm256_set1_ps(1))));
    const __m256i c = _mm256_castps_si256(
        _mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.f), n), _mm256_set1_ps(126), _CMP_GT_OQ));
    const __m256 u = _mm256_mul_ps(b, b);
    const __m256 j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
                        _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f))),
        u, _mm256_mul_ps(_mm256_set1_ps(0x1.ffffecp-1f), b));
    if (!_mm256_movemask_ps(_mm256_castsi256_ps(c))) return _mm256_fmadd_ps(j, k, k);
    const __m256i g = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)),
                                       _mm256_set1_epi32((int)0x82000000u));
    const __m256 s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f000000)));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
    const __m256i d = _mm256_castps_si256(
        _mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.f), n), _mm256_set1_ps(192), _CMP_GT_OQ));
    return _mm256_or_ps(
        _mm256_and_ps(_mm256_castsi256_ps(d), _mm256_mul_ps(s1, s1)),
        _mm256_andnot_ps(_mm256_castsi256_ps(d),
                         _mm256_or_ps(_mm256_and_ps(_mm256_castsi256_ps(c), _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1)),
                                      _mm256_andnot_ps(_mm256_castsi256_ps(c), _mm256_fmadd_ps(k, j, k)))));
}

SR_AVX2 static double softmax_exp_avx2(int64_t n, float *y, const float *x, float max) {
    double sum = 0.0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = v_expf(_mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_set1_ps(max)));
        _mm256_storeu_ps(y + i, v);
        sum += (double)hsum_float_8(v);
    }
    if (i < n) {   // short last group: padded with -inf, whose exp is 0 (ggml's masked columns)
        float in[8], out[8];
        for (int l = 0; l < 8; ++l) in[l] = i + l < n ? x[i + l] : -INFINITY;
        const __m256 v = v_expf(_mm256_sub_ps(_mm256_loadu_ps(in), _mm256_set1_ps(max)));
        _mm256_storeu_ps(out, v);
        for (int64_t l = 0; i + l < n; ++l) y[i + l] = out[l];
        sum += (double)hsum_float_8(v);
    }
    return sum;
}

SR_AVX2 static void swiglu_avx2(int64_t n, float *y, const float *x, const float *g) {
    const __m256 one = _mm256_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 xv = _mm256_loadu_ps(x + i);
        const __m256 s = _mm256_div_ps(xv, _mm256_add_ps(one, v_expf(_mm256_sub_ps(_mm256_setzero_ps(), xv))));
        _mm256_storeu_ps(y + i, _mm256_mul_ps(s, _mm256_loadu_ps(g + i)));
    }
    for (; i < n; ++i) y[i] = (x[i] / (1.0f + expf(-x[i]))) * g[i];   // ggml's scalar tail
}

#ifndef SR_QUANT_VNNI
SR_TILE_FROM_DOT(tile_q5_K, dot_q5_K)
#endif
SR_TILE_FROM_DOT(tile_f16, dot_f16)
SR_TILE_FROM_DOT(tile_bf16, dot_bf16)
SR_TILE_FROM_DOT(tile_f32, dot_f32)

int SR_KERNELS_INIT(sr_kernels *k) {
    sr_kernels_init_portable(k);   // scalar pieces (Q8_K, BF16, F32 copy) are shared
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
    k->quant[SR_TYPE_Q8_K] = quant_q8_K;
    k->quant[SR_TYPE_F16] = quant_f16;
    k->fdot = fdot_avx2;
    k->f16rows = f16rows_avx2;
    k->f16rows_gemm = f16rows_gemm_avx2;
    k->softmax_exp = softmax_exp_avx2;
    k->swiglu = swiglu_avx2;
    // Tile shapes. Decode (n_tok == 1) interleaves 4 rows of the compute-bound 4-bit types, while
    // Q8_0 is memory-bound and streams best one row at a time (Zen 3). Prompts: rows x tokens
    // per type, measured on Zen 4 at the AVX2 level (2026-12-04, pp512 of SmolLM2 requantized
    // by llama-quantize, SPIKERUN_TILE): Q4_0 4 x 2 1.45x the 2 x 3 tile, Q4_1 4 x 2 1.06x;
    // Q5_0, Q5_1 and Q8_0 2 x 3 (4 x 2 0.95-0.99x; Q8_0 2 x 4 spills, 0.64x).
    const sr_type fast[] = {SR_TYPE_Q4_0, SR_TYPE_Q4_1, SR_TYPE_Q5_0, SR_TYPE_Q5_1, SR_TYPE_Q8_0};
    for (size_t i = 0; i < sizeof fast / sizeof fast[0]; ++i) {
        const bool q8 = fast[i] == SR_TYPE_Q8_0;
        const bool four_rows = fast[i] == SR_TYPE_Q4_0 || fast[i] == SR_TYPE_Q4_1;
        k->tile_rows1[fast[i]] = q8 ? 1 : 4;
        k->tile_rows[fast[i]] = four_rows ? 4 : 2;
        k->tile_toks[fast[i]] = four_rows ? 2 : 3;
#ifdef SR_QUANT_VNNI
        // 4 x 4 in registers: pp512 of SmolLM2 Q4_1 1.29x the 2 x 3 AVX2 tile on the Xeon
        // (family 6 model 207; 2 x 3 with VNNI alone: 1.18x). With two rows per zmm (q4_1_tile,
        // q8_tile) Q8_0 takes 4 x 4 too, and 4 rows in decode: on a Zen 5, SmolLM2 requantized
        // to Q8_0 ran pp512 1.37x and tg128 1.8x its 2 x 3 and 1-row tiles.
        k->tile_rows[fast[i]] = k->tile_toks[fast[i]] = 4;
        k->tile_rows1[fast[i]] = 4;
#endif
    }
#ifdef SR_QUANT_VNNI
    // Q4_K and Q5_K: two rows per tile (q4_K_tile2, q5_K_tile2) for decode and prompts alike.
    // Q6_K: two rows (q6_K_tile2) for prompts only: one-thread decode of the 1.1B Q4_K_M ran 4%
    // slower with them (Zen 5), prompts 1-3% faster.
    k->tile_rows1[SR_TYPE_Q4_K] = k->tile_rows[SR_TYPE_Q4_K] = 2;
    k->tile_rows[SR_TYPE_Q6_K] = 2;
    k->tile_rows1[SR_TYPE_Q5_K] = k->tile_rows[SR_TYPE_Q5_K] = 2;
#endif
    const char *env = getenv("SPIKERUN_TILE");   // tuning aid: "rows1,rows,toks"
    int r1, r, t;
    if (env && sscanf(env, "%d,%d,%d", &r1, &r, &t) == 3 && r1 >= 1 && r1 <= 4 && r >= 1 && r <= 4 && t >= 1 && t <= 4)
        for (size_t i = 0; i < sizeof fast / sizeof fast[0]; ++i) {
            k->tile_rows1[fast[i]] = (uint8_t)r1;
            k->tile_rows[fast[i]] = (uint8_t)r;
            k->tile_toks[fast[i]] = (uint8_t)t;
        }
    return 1;
}

#else

int SR_KERNELS_INIT(sr_kernels *k) { (void)k; return 0; }

#endif
