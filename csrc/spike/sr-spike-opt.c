// sr-spike-opt.c - optimized spike kernels: event-driven, tiled, SIMD with runtime dispatch
// (AVX2 or portable C). Bit-identical to sr-spike-ref.c (integers: any accumulation order
// gives the same int32 below the bound of sr-spike.h; floats: the shared rescale functions).
//
// Loop structure of a matvec (rows o0..o1 of one thread):
//   for each output tile c (64-byte lines of tile_w rows):
//     for each 32-input block b:                       (silent blocks: A = 0, no work)
//       A = block kernel: for t = first spiking plane .. T-1:
//             acc = acc + acc            (Horner doubling, bitwise codes)
//             for each set bit jj of the +mask of (t, b): acc += codes of line (c, b, jj)
//             for each set bit jj of the -mask of (t, b): acc -= codes of line (c, b, jj)
//       block formats: float rescale of this block (sr_spike_rescale_block)
//       row formats:   A added into the segment's int32 sum; rescale at the segment end
// Only columns that fire are read (work scales with the spike count); the lines of one (c, b)
// are 2 KiB contiguous and all prefetched right before the block's kernel (SR_PF_DIST).
// AVX2 / AVX-512 accumulate in int16 lanes. The int8 kernels flush them into int32 whenever
// the next plane could overflow (sr_spike_acc_i8_flush_*), so any block runs in one pass. The
// Q4_1 and ternary kernels use int16 when qmax * blk_abs[b] <= 32767 (every partial sum is
// bounded by that, see sr-spike.h); a block above the bound is split into column groups that
// each fit (usually 2), run as separate int16 passes, and columns that cannot fit alone (an
// outlier count) go to one int32 pass; the parts are added in int32. Q4_1 tiles whose rows
// are all in the first half (576 = 4.5 x 128) use a half kernel. The block kernels
// (sr_spike_acc_*) contain adds, subs, shifts and bit ops only: tools/check_no_multiply.sh
// disassembles them.
//
// Cost model (AVX2, Q4_1, 128 rows): per event 2 loads + 2 shifts + 4 ands + 4 adds = 12 uops
// (two rows per int16 lane between flushes, see sr_spike_acc_q4_1_i16_avx2), i.e. 0.09 uops
// per (event, row), plus a 24-op flush when the pair sums' bound requires it (at most every
// 8 events; the AVX-512 form still flushes at every plane's end); per tile and plane 8 + 4
// Horner adds and two mask loops; per tile and block the shared float rescale (2 mul + 2 add / row,
// fp16 scales widened in registers).
#include "sr-spike-impl.h"
#include "spikerun/sr-spike-float.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if SR_SPIKE_X86
#include <immintrin.h>
#define SR_AVX2 __attribute__((target("avx2,f16c")))  // never "fma": no contraction possible
#define SR_AVX512 __attribute__((target("avx512f,avx512bw,avx2,f16c")))
#endif

#define SR_NOINLINE __attribute__((noinline))

// ---------------------------------------------------------------- SIMD level

static _Atomic int sr_spike_level = -2;  // -2: not resolved yet (relaxed: a plain flag)

static int sr_spike_cpu_avx2(void) {
#if SR_SPIKE_X86
    __builtin_cpu_init();
    return (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c")) ? 1 : 0;
#else
    return 0;
#endif
}

static int sr_spike_cpu_avx512(void) {
#if SR_SPIKE_X86
    __builtin_cpu_init();
    return sr_spike_cpu_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
#else
    return 0;
#endif
}

int sr_spike_set_simd_level(int level) {
    int best = sr_spike_cpu_avx512() ? SR_SPIKE_SIMD_AVX512
             : sr_spike_cpu_avx2()   ? SR_SPIKE_SIMD_AVX2 : SR_SPIKE_SIMD_PORTABLE;
    const char *env = getenv("SPIKERUN_SPIKE_SIMD");  // A/B aid: AUTO resolves to at most this
    if (level < 0 && env && env[0] >= '0' && env[0] <= '9' && env[0] - '0' < best) best = env[0] - '0';
    if (level < 0 || level > best) level = best;
    sr_spike_level = level;
    return level;
}

int sr_spike_get_simd_level(void) { return sr_spike_simd_level_(); }

int sr_spike_simd_level_(void) {
    if (sr_spike_level == -2) sr_spike_set_simd_level(SR_SPIKE_SIMD_AUTO);
    return sr_spike_level;
}

// ---------------------------------------------------------------- encoder loops

static void sr_quantize_portable(const float *x, int32_t n, float inv, float th, int32_t clip, int32_t *counts) {
    for (int32_t j = 0; j < n; j++) counts[j] = sr_spike_round_clip(x[j] * inv, th, clip);
}

static void sr_quantize_thrifty_portable(const float *x, int32_t n, float inv, float th, float lo, float hi,
                                         int32_t clip, int32_t *counts) {
    for (int32_t j = 0; j < n; j++) counts[j] = sr_spike_round_thrifty(x[j] * inv, th, lo, hi, clip);
}

#if SR_SPIKE_X86
// NAF digit counts of 8 non-negative int32 lanes, as sr_spike_naf_weight.
SR_AVX2 static inline __m256i sr_naf_weight_avx2(__m256i m) {
    const __m256i h = _mm256_srli_epi32(m, 1);
    __m256i c = _mm256_xor_si256(h, _mm256_add_epi32(m, h));
    c = _mm256_sub_epi32(c, _mm256_and_si256(_mm256_srli_epi32(c, 1), _mm256_set1_epi32(0x55555555)));
    c = _mm256_add_epi32(_mm256_and_si256(c, _mm256_set1_epi32(0x33333333)),
                         _mm256_and_si256(_mm256_srli_epi32(c, 2), _mm256_set1_epi32(0x33333333)));
    c = _mm256_and_si256(_mm256_add_epi32(c, _mm256_srli_epi32(c, 4)), _mm256_set1_epi32(0x0f0f0f0f));
    c = _mm256_add_epi32(c, _mm256_srli_epi32(c, 8));
    c = _mm256_add_epi32(c, _mm256_srli_epi32(c, 16));
    return _mm256_and_si256(c, _mm256_set1_epi32(0x3f));
}

// sr_spike_round_clip (thrifty = 0) or sr_spike_round_thrifty (1) on 8 lanes without branches:
// the thrifty choice where it applies, else the plain rule, then the clip (lanes at or above
// 2^23 take the clip, as the scalar rules). The tail goes through the portable loops.
SR_AVX2 static inline __attribute__((always_inline)) void
sr_quantize_lanes_avx2(const float *x, int32_t n, float inv, float th, float lo, float hi, int32_t clip,
                       int32_t *counts, const int thrifty) {
    const __m256 vinv = _mm256_set1_ps(inv), vth = _mm256_set1_ps(th), vbig = _mm256_set1_ps(8388608.0f);
    const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256i vclip = _mm256_set1_epi32(clip), one = _mm256_set1_epi32(1);
    int32_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + j), vinv);
        const __m256 a = _mm256_and_ps(v, absm);
        const __m256 big = _mm256_cmp_ps(a, vbig, _CMP_GE_OQ);
        const __m256i r = _mm256_cvttps_epi32(a);   // big lanes: replaced below
        const __m256 f = _mm256_sub_ps(a, _mm256_cvtepi32_ps(r));
        // all-ones where the magnitude is r + 1 (subtracting the mask adds 1): plain r + (f >= th)
        __m256i inc = _mm256_castps_si256(_mm256_cmp_ps(f, vth, _CMP_GE_OQ));
        if (thrifty) {   // down: r, up: r + 1, when that neighbour fires fewer NAF digits
            const __m256i wl = sr_naf_weight_avx2(r), wh = sr_naf_weight_avx2(_mm256_add_epi32(r, one));
            const __m256i down = _mm256_and_si256(_mm256_cmpgt_epi32(wh, wl), _mm256_castps_si256(_mm256_cmp_ps(f, vhi, _CMP_LE_OQ)));
            const __m256i up = _mm256_and_si256(_mm256_cmpgt_epi32(wl, wh), _mm256_castps_si256(_mm256_cmp_ps(f, vlo, _CMP_GE_OQ)));
            inc = _mm256_or_si256(_mm256_andnot_si256(down, inc), up);
        }
        __m256i mag = _mm256_sub_epi32(r, inc);
        mag = _mm256_blendv_epi8(mag, vclip, _mm256_castps_si256(big));
        mag = _mm256_min_epi32(mag, vclip);
        _mm256_storeu_si256((__m256i *)(counts + j), _mm256_sign_epi32(mag, _mm256_castps_si256(v)));
    }
    if (thrifty) sr_quantize_thrifty_portable(x + j, n - j, inv, th, lo, hi, clip, counts + j);
    else sr_quantize_portable(x + j, n - j, inv, th, clip, counts + j);
}

SR_AVX2 static void sr_quantize_avx2(const float *x, int32_t n, float inv, float th, int32_t clip, int32_t *counts) {
    sr_quantize_lanes_avx2(x, n, inv, th, 0.0f, 0.0f, clip, counts, 0);
}

SR_AVX2 static void sr_quantize_thrifty_avx2(const float *x, int32_t n, float inv, float th, float lo, float hi,
                                             int32_t clip, int32_t *counts) {
    sr_quantize_lanes_avx2(x, n, inv, th, lo, hi, clip, counts, 1);
}

SR_AVX2 static float sr_sum_abs_avx2(const float *x, int32_t n) {
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 acc = _mm256_setzero_ps();
    int32_t j = 0;
    for (; j + 8 <= n; j += 8) acc = _mm256_add_ps(acc, _mm256_and_ps(_mm256_loadu_ps(x + j), absm));
    if (j < n) {  // lanes past the end add +0.0f, which leaves a sum of |x| unchanged
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - j), lane);
        acc = _mm256_add_ps(acc, _mm256_and_ps(_mm256_maskload_ps(x + j, mask), absm));
    }
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));  // l0+l4 ..
    __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));                                  // (04+26, 15+37)
    __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
    return _mm_cvtss_f32(s1);
}

SR_AVX2 static uint32_t sr_max_abs_bits_avx2(const float *x, int32_t n) {
    const __m256i absm = _mm256_set1_epi32(0x7fffffff);
    __m256i m = _mm256_setzero_si256();
    int32_t j = 0;
    for (; j + 8 <= n; j += 8) m = _mm256_max_epu32(m, _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + j)), absm));
    uint32_t lanes[8];
    _mm256_storeu_si256((__m256i *)lanes, m);
    uint32_t r = 0;
    for (int i = 0; i < 8; i++) r = lanes[i] > r ? lanes[i] : r;
    for (; j < n; j++) {
        uint32_t a = sr_spike_abs_bits(x[j]);
        r = a > r ? a : r;
    }
    return r;
}
#endif

void sr_spike_quantize_(const float *x, int32_t n, float inv, float th, int32_t clip, int32_t *counts) {
#if SR_SPIKE_X86
    if (sr_spike_simd_level_() >= SR_SPIKE_SIMD_AVX2) { sr_quantize_avx2(x, n, inv, th, clip, counts); return; }
#endif
    sr_quantize_portable(x, n, inv, th, clip, counts);
}

void sr_spike_quantize_thrifty_(const float *x, int32_t n, float inv, float th, float lo, float hi, int32_t clip,
                                int32_t *counts) {
#if SR_SPIKE_X86
    if (sr_spike_simd_level_() >= SR_SPIKE_SIMD_AVX2) { sr_quantize_thrifty_avx2(x, n, inv, th, lo, hi, clip, counts); return; }
#endif
    sr_quantize_thrifty_portable(x, n, inv, th, lo, hi, clip, counts);
}

float sr_spike_sum_abs_(const float *x, int32_t n) {
#if SR_SPIKE_X86
    if (sr_spike_simd_level_() >= SR_SPIKE_SIMD_AVX2) return sr_sum_abs_avx2(x, n);
#endif
    return sr_spike_sum_abs(x, n);
}

uint32_t sr_spike_max_abs_bits_(const float *x, int32_t n) {
#if SR_SPIKE_X86
    if (sr_spike_simd_level_() >= SR_SPIKE_SIMD_AVX2) return sr_max_abs_bits_avx2(x, n);
#endif
    return sr_spike_max_abs_bits(x, n);  // sr-spike-float.h
}

// ---------------------------------------------------------------- sign-magnitude planes (AVX2)

#if SR_SPIKE_X86
// The 32 counts of block b (zero-padded past n through buf).
static inline const int32_t *sr_block_counts(const int32_t *counts, int32_t n, int32_t b, int32_t *buf) {
    const int32_t *c = counts + (size_t)b * 32;
    if (n - b * 32 >= 32) return c;
    memset(buf, 0, 32 * sizeof *buf);
    memcpy(buf, c, (size_t)(n - b * 32) * sizeof *buf);
    return buf;
}

// Block b's derived fields from lane vectors: blk_abs = the lanes' sum of sa, blk_sum of sv,
// blk_tfirst from the top bit of the lanes' OR of mx (returned).
SR_AVX2 static inline uint32_t sr_block_fields(sr_spike_planes *p, int32_t b, int32_t T, __m256i sa, __m256i sv,
                                               __m256i mx) {
    _Alignas(32) int32_t la[8], ls[8], lm[8];
    _mm256_store_si256((__m256i *)la, sa);
    _mm256_store_si256((__m256i *)ls, sv);
    _mm256_store_si256((__m256i *)lm, mx);
    int32_t babs = 0, bsum = 0;
    uint32_t bor = 0;
    for (int i = 0; i < 8; i++) { babs += la[i]; bsum += ls[i]; bor |= (uint32_t)lm[i]; }
    p->blk_abs[b] = babs;
    p->blk_sum[b] = bsum;
    p->blk_tfirst[b] = bor ? T - 32 + __builtin_clz(bor) : T;
    return bor;
}

// Counts -> sign-magnitude planes and the derived fields in one pass: per 32-input word,
// plane t's mask is the movemask of bit T-1-t of |n| shifted into the sign position.
// Same bits and fields as the generic path (sr_spike_planes_from_counts + finalize).
SR_AVX2 static int sr_planes_sm_avx2(sr_spike_planes *p, const int32_t *counts, int32_t n, int32_t T) {
    const int32_t nw = p->n_words;
    const size_t stride = (size_t)nw * 2;
    uint64_t spikes = 0;
    _Alignas(32) int32_t buf[32];
    for (int32_t b = 0; b < nw; b++) {
        const int32_t *c = sr_block_counts(counts, n, b, buf);
        __m256i v0 = _mm256_loadu_si256((const __m256i *)(c + 0)), v1 = _mm256_loadu_si256((const __m256i *)(c + 8));
        __m256i v2 = _mm256_loadu_si256((const __m256i *)(c + 16)), v3 = _mm256_loadu_si256((const __m256i *)(c + 24));
        uint32_t neg = (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(v0)) |
                       ((uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(v1)) << 8) |
                       ((uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(v2)) << 16) |
                       ((uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(v3)) << 24);
        __m256i a0 = _mm256_abs_epi32(v0), a1 = _mm256_abs_epi32(v1), a2 = _mm256_abs_epi32(v2), a3 = _mm256_abs_epi32(v3);
        __m256i sa = _mm256_add_epi32(_mm256_add_epi32(a0, a1), _mm256_add_epi32(a2, a3));
        __m256i sv = _mm256_add_epi32(_mm256_add_epi32(v0, v1), _mm256_add_epi32(v2, v3));
        __m256i mx = _mm256_or_si256(_mm256_or_si256(a0, a1), _mm256_or_si256(a2, a3));  // same top bit as max
        sr_block_fields(p, b, T, sa, sv, mx);
        uint32_t *pm = p->bits + (size_t)b;
        for (int32_t t = 0; t < T; t++, pm += stride) {
            const __m128i sh = _mm_cvtsi32_si128(31 - (T - 1 - t));
            uint32_t m = (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_sll_epi32(a0, sh))) |
                         ((uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_sll_epi32(a1, sh))) << 8) |
                         ((uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_sll_epi32(a2, sh))) << 16) |
                         ((uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_sll_epi32(a3, sh))) << 24);
            pm[0] = m & ~neg;
            pm[nw] = m & neg;
            spikes += (uint64_t)__builtin_popcount(m);
        }
    }
    p->spikes = spikes;
    return 1;
}

// Counts -> NAF planes and the derived fields in one pass. For m = |n|, h = m >> 1,
// x3 = m + h, c = h ^ x3: the NAF's +1 digits are x3 & c and its -1 digits h & c (bit k =
// digit k), so plane T-1-k's masks come from movemasks as in the sign-magnitude path, with
// the polarities swapped for negative counts. The digits' total weight sum_k 2^k |d_k| is
// P + M (blk_abs) and their value P - M = m (blk_sum = the counts' sum). Same bits and
// fields as the generic path; returns 0 (generic path) when a digit does not fit T planes.
SR_AVX2 static int sr_planes_naf_avx2(sr_spike_planes *p, const int32_t *counts, int32_t n, int32_t T) {
    const int32_t nw = p->n_words;
    const size_t stride = (size_t)nw * 2;
    uint64_t spikes = 0;
    _Alignas(32) int32_t buf[32];
    for (int32_t b = 0; b < nw; b++) {
        const int32_t *c = sr_block_counts(counts, n, b, buf);
        __m256i P[4], M[4], sv = _mm256_setzero_si256(), sa = sv, mx = sv;
        uint32_t neg = 0;
        for (int i = 0; i < 4; i++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(c + 8 * i));
            neg |= (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(v)) << (8 * i);
            const __m256i m = _mm256_abs_epi32(v), h = _mm256_srli_epi32(m, 1);
            const __m256i x3 = _mm256_add_epi32(m, h), cc = _mm256_xor_si256(h, x3);
            P[i] = _mm256_and_si256(x3, cc);
            M[i] = _mm256_and_si256(h, cc);
            sv = _mm256_add_epi32(sv, v);
            sa = _mm256_add_epi32(sa, _mm256_add_epi32(P[i], M[i]));
            mx = _mm256_or_si256(mx, _mm256_or_si256(P[i], M[i]));
        }
        const uint32_t bor = sr_block_fields(p, b, T, sa, sv, mx);
        if (T < 32 && (bor >> T)) return 0;
        uint32_t *pm = p->bits + (size_t)b;
        for (int32_t t = 0; t < T; t++, pm += stride) {
            const __m128i sh = _mm_cvtsi32_si128(31 - (T - 1 - t));
            uint32_t mp = 0, mm = 0;
            for (int i = 0; i < 4; i++) {
                mp |= (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_sll_epi32(P[i], sh))) << (8 * i);
                mm |= (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_sll_epi32(M[i], sh))) << (8 * i);
            }
            pm[0] = (mp & ~neg) | (mm & neg);
            pm[nw] = (mm & ~neg) | (mp & neg);
            spikes += (uint64_t)__builtin_popcount(mp | mm);
        }
    }
    p->spikes = spikes;
    return 1;
}
#endif

int sr_spike_planes_naf_fast_(sr_spike_planes *p, const int32_t *counts, int32_t n, int32_t T) {
#if SR_SPIKE_X86
    if (sr_spike_simd_level_() >= SR_SPIKE_SIMD_AVX2) return sr_planes_naf_avx2(p, counts, n, T);
#endif
    (void)p; (void)counts; (void)n; (void)T;
    return 0;
}

int sr_spike_planes_sm_fast_(sr_spike_planes *p, const int32_t *counts, int32_t n, int32_t T) {
#if SR_SPIKE_X86
    if (sr_spike_simd_level_() >= SR_SPIKE_SIMD_AVX2) return sr_planes_sm_avx2(p, counts, n, T);
#endif
    (void)p; (void)counts; (void)n; (void)T;
    return 0;
}

// ---------------------------------------------------------------- block kernels (no multiply)

// One (tile c, block b) of work: 32 lines of 64 bytes and the masks of planes t0 .. T-1.
typedef struct sr_blk_args {
    const uint8_t *tile;   // line jj at tile + (jj << 6)
    const uint32_t *pm;    // +mask of (plane t0, block b); its -mask at pm[nw]
    size_t stride;         // words from one plane to the next (2 * n_words)
    int32_t nw;            // n_words
    int32_t t0, T;         // planes to run
    int32_t bitwise;       // Horner doubling before planes t > 0
    int32_t neg0;          // plane 0 carries a negative weight (two's complement)
    int32_t halves;        // 2, or 1 when only the first half of the tile's rows is needed
    uint32_t colmask;      // columns jj of the block to include (int16 passes split a block)
    size_t tile2;          // multi-tile kernels: bytes from a line to the same line of the next tile
    // AVX2 multi-tile int8 kernel: prefetch the lines of pf_mask's inputs at pf (+ tile2 per
    // further tile), one input per event, and leave the inputs not reached in *pf_left
    const uint8_t *pf;
    uint32_t pf_mask;
    uint32_t *pf_left;
} sr_blk_args;

typedef void (*sr_blk_fn)(const sr_blk_args *a, int32_t *A);

static inline void sr_q4_line_add(int32_t *A, const uint8_t *l, int neg) {
    for (int32_t w = 0; w < 32; w++) {
        uint32_t word = (uint32_t)l[2 * w] | ((uint32_t)l[2 * w + 1] << 8);
        int32_t *p = A + (((w >> 4) << 6) | (w & 15));
        int32_t v0 = (int32_t)(word & 15u), v1 = (int32_t)((word >> 4) & 15u);
        int32_t v2 = (int32_t)((word >> 8) & 15u), v3 = (int32_t)(word >> 12);
        if (neg) { p[0] -= v0; p[16] -= v1; p[32] -= v2; p[48] -= v3; }
        else { p[0] += v0; p[16] += v1; p[32] += v2; p[48] += v3; }
    }
}

static inline void sr_t2_line_add(int32_t *A, const uint8_t *l, int neg) {
    for (int32_t w = 0; w < 32; w++) {
        uint32_t word = (uint32_t)l[2 * w] | ((uint32_t)l[2 * w + 1] << 8);
        int32_t *p = A + (((w >> 4) << 7) | (w & 15));
        for (int32_t k = 0; k < 8; k++) {
            uint32_t v = (word >> (k << 1)) & 3u;
            int32_t q = (int32_t)(v & 1u) - (int32_t)(v & 2u);  // 01 -> +1, 11 -> -1
            if (neg) p[k << 4] -= q;
            else p[k << 4] += q;
        }
    }
}

static inline void sr_i8_line_add(int32_t *A, const uint8_t *l, int neg) {
    for (int32_t r = 0; r < 64; r++) {
        int32_t q = (int8_t)l[r];
        if (neg) A[r] -= q;
        else A[r] += q;
    }
}

// Portable kernels: one per format, int32 lanes. FORMAT_ADD(A, line, neg), rows = tile width.
#define SR_PORTABLE_KERNEL(name, LINE_ADD, ROWS)                                              \
    SR_NOINLINE static void name(const sr_blk_args *a, int32_t *A) {                           \
        for (int32_t r = 0; r < (ROWS); r++) A[r] = 0;                                         \
        const uint32_t *pm = a->pm;                                                            \
        for (int32_t t = a->t0; t < a->T; t++, pm += a->stride) {                              \
            if (a->bitwise && t > 0)                                                           \
                for (int32_t r = 0; r < (ROWS); r++) A[r] = A[r] + A[r];                       \
            uint32_t p = pm[0] & a->colmask, n = pm[a->nw] & a->colmask;                       \
            if (a->neg0 && t == 0) { uint32_t s_ = p; p = n; n = s_; }                         \
            while (p) {                                                                        \
                const uint8_t *l = a->tile + ((size_t)__builtin_ctz(p) << 6);                  \
                p &= p - 1u;                                                                   \
                LINE_ADD(A, l, 0);                                                             \
            }                                                                                  \
            while (n) {                                                                        \
                const uint8_t *l = a->tile + ((size_t)__builtin_ctz(n) << 6);                  \
                n &= n - 1u;                                                                   \
                LINE_ADD(A, l, 1);                                                             \
            }                                                                                  \
        }                                                                                      \
    }

SR_PORTABLE_KERNEL(sr_spike_acc_q4_1_portable, sr_q4_line_add, 128)
SR_PORTABLE_KERNEL(sr_spike_acc_ternary_portable, sr_t2_line_add, 256)
SR_PORTABLE_KERNEL(sr_spike_acc_i8_portable, sr_i8_line_add, 64)

// A[r] -= z * R[r] by shift-and-add over the bits of z (binary code offset correction).
SR_NOINLINE static void sr_spike_acc_offset_fix(int32_t *A, const int32_t *R, int32_t z, int32_t n) {
    for (int32_t r = 0; r < n; r++) {
        int32_t rs = R[r], sub = 0;
        for (uint32_t zz = (uint32_t)z; zz; zz >>= 1) {
            if (zz & 1u) sub += rs;
            rs = rs + rs;
        }
        A[r] -= sub;
    }
}

#if SR_SPIKE_X86
#define SR_LOAD(p) _mm256_load_si256((const __m256i *)(const void *)(p))

// Store 16 int16 lanes as int32 at A.
#define SR_STORE16(A, v)                                                                         \
    do {                                                                                         \
        _mm256_storeu_si256((__m256i *)(A), _mm256_cvtepi16_epi32(_mm256_castsi256_si128(v)));   \
        _mm256_storeu_si256((__m256i *)((A) + 8), _mm256_cvtepi16_epi32(_mm256_extracti128_si256(v, 1))); \
    } while (0)

// Q4_1, int16 lanes, two codes per lane between flushes. A 16-bit word of a line holds the
// codes of 4 rows (bits 0-3, 4-7, 8-11, 12-15). w & 0x0F0F leaves codes 0 and 2 as the low
// and high byte of the lane, (w >> 4) & 0x0F0F codes 1 and 3, so one add accumulates two
// rows: S = a + 256 b with a, b the two rows' partial sums. After at most 8 events
// |a|, |b| <= 8 * 15 = 120 < 128, so a is S's low byte sign-extended and b = (S - a) >> 8
// (exact, whatever the wrap of S). The representation is linear, so the Horner doubling can
// double S as well; the pairs are split into the row accumulators (flush) only when a bound B
// on |a|, |b| (15 per event, doubled per plane) could pass 127, not at the end of every plane:
// planes with few events (a 32-input block's plane holds about 5 on average, the high planes
// fewer) now share one flush.
// Per event and 64 rows: 1 load, 1 shift, 2 ands, 2 adds (the one-code-per-lane form needs
// 1 + 3 + 3 + 4).
#define SR_PAIR_FLUSH(S, ca, cb)                                                                  \
    do {                                                                                          \
        const __m256i lo_ = _mm256_srai_epi16(_mm256_slli_epi16(S, 8), 8);                        \
        ca = _mm256_add_epi16(ca, lo_);                                                           \
        cb = _mm256_add_epi16(cb, _mm256_srai_epi16(_mm256_sub_epi16(S, lo_), 8));                \
        S = _mm256_setzero_si256();                                                               \
    } while (0)
#define SR_PAIR_EVENTS_MAX 8

// One body for the whole tile (H = 2) and its first half (H = 1: rows 0..63, a partial last
// tile). Half h reads bytes 32h..32h+31 of each line; c[h][k] holds rows 64h + 16k + i, and
// the pair sums s[h][0], s[h][1] hold (c[h][0], c[h][2]), (c[h][1], c[h][3]).
#define SR_FLUSH_PAIRS(H)                                                                         \
    do {                                                                                          \
        for (int h_ = 0; h_ < (H); h_++) {                                                        \
            SR_PAIR_FLUSH(s[h_][0], c[h_][0], c[h_][2]);                                          \
            SR_PAIR_FLUSH(s[h_][1], c[h_][1], c[h_][3]);                                          \
        }                                                                                         \
    } while (0)
SR_AVX2 static inline __attribute__((always_inline)) void sr_q4_1_pairs_avx2(const sr_blk_args *a, int32_t *A,
                                                                             const int H) {
    const __m256i m = _mm256_set1_epi16(0x0F0F);
    __m256i c[2][4], s[2][2];
    for (int h = 0; h < H; h++) {
        for (int k = 0; k < 4; k++) c[h][k] = _mm256_setzero_si256();
        s[h][0] = s[h][1] = _mm256_setzero_si256();
    }
    const uint8_t *tile = a->tile;
    const uint32_t *pm = a->pm;
    const int32_t nw = a->nw;
    // B bounds |a| and |b| of every pair sum (the sums since the last flush, Horner-doubled with
    // the row sums): a flush is due only when the next event or doubling could pass 127.
    int32_t B = 0;
    for (int32_t t = a->t0; t < a->T; t++, pm += a->stride) {
        if (a->bitwise && t > 0) {
            if (2 * B > 127) { SR_FLUSH_PAIRS(H); B = 0; }
            for (int h = 0; h < H; h++) {
                for (int k = 0; k < 4; k++) c[h][k] = _mm256_add_epi16(c[h][k], c[h][k]);
                if (B) { s[h][0] = _mm256_add_epi16(s[h][0], s[h][0]); s[h][1] = _mm256_add_epi16(s[h][1], s[h][1]); }
            }
            B *= 2;
        }
        uint32_t p = pm[0] & a->colmask, n = pm[nw] & a->colmask;
        if (a->neg0 && t == 0) { uint32_t s_ = p; p = n; n = s_; }
        while (p) {
            const uint8_t *l = tile + ((size_t)__builtin_ctz(p) << 6);
            p &= p - 1u;
            if (B > 127 - 15) { SR_FLUSH_PAIRS(H); B = 0; }
            for (int h = 0; h < H; h++) {
                const __m256i w = SR_LOAD(l + 32 * h);
                s[h][0] = _mm256_add_epi16(s[h][0], _mm256_and_si256(w, m));
                s[h][1] = _mm256_add_epi16(s[h][1], _mm256_and_si256(_mm256_srli_epi16(w, 4), m));
            }
            B += 15;
        }
        while (n) {
            const uint8_t *l = tile + ((size_t)__builtin_ctz(n) << 6);
            n &= n - 1u;
            if (B > 127 - 15) { SR_FLUSH_PAIRS(H); B = 0; }
            for (int h = 0; h < H; h++) {
                const __m256i w = SR_LOAD(l + 32 * h);
                s[h][0] = _mm256_sub_epi16(s[h][0], _mm256_and_si256(w, m));
                s[h][1] = _mm256_sub_epi16(s[h][1], _mm256_and_si256(_mm256_srli_epi16(w, 4), m));
            }
            B += 15;
        }
    }
    if (B) SR_FLUSH_PAIRS(H);
    for (int h = 0; h < H; h++)
        for (int k = 0; k < 4; k++) SR_STORE16(A + 64 * h + 16 * k, c[h][k]);
    if (H == 1) {
        const __m256i zero = _mm256_setzero_si256();
        for (int32_t r = 64; r < 128; r += 8) _mm256_storeu_si256((__m256i *)(A + r), zero);
    }
}
#undef SR_FLUSH_PAIRS

SR_AVX2 SR_NOINLINE static void sr_spike_acc_q4_1_i16_avx2(const sr_blk_args *a, int32_t *A) {
    sr_q4_1_pairs_avx2(a, A, 2);
}

SR_AVX2 SR_NOINLINE static void sr_spike_acc_q4_1_half_i16_avx2(const sr_blk_args *a, int32_t *A) {
    sr_q4_1_pairs_avx2(a, A, 1);
}
#undef SR_PAIR_FLUSH

// AVX-512 BW forms of the two hottest int16 kernels (Q4_1 decode, int8 head / caches): a
// 64-byte line is one register, so an event is 1 load + 1 shift + 2 ands + 2 adds for all 128
// Q4_1 rows (lanes 0-15 of accumulator k: rows 16k + i, lanes 16-31: rows 64 + 16k + i), or
// 2 widening loads + 2 adds for the 64 int8 rows. Same pair-sum flushes as above.
#define SR_PAIR_FLUSH512(S, ca, cb)                                                               \
    do {                                                                                          \
        const __m512i lo_ = _mm512_srai_epi16(_mm512_slli_epi16(S, 8), 8);                        \
        ca = _mm512_add_epi16(ca, lo_);                                                           \
        cb = _mm512_add_epi16(cb, _mm512_srai_epi16(_mm512_sub_epi16(S, lo_), 8));                \
        S = _mm512_setzero_si512();                                                               \
    } while (0)

SR_AVX512 SR_NOINLINE static void sr_spike_acc_q4_1_i16_avx512(const sr_blk_args *a, int32_t *A) {
    const __m512i m = _mm512_set1_epi16(0x0F0F);
    __m512i c0 = _mm512_setzero_si512(), c1 = c0, c2 = c0, c3 = c0, s0 = c0, s1 = c0;  // (c0, c2), (c1, c3)
    const uint8_t *tile = a->tile;
    const uint32_t *pm = a->pm;
    const int32_t nw = a->nw;
    for (int32_t t = a->t0; t < a->T; t++, pm += a->stride) {
        if (a->bitwise && t > 0) {
            c0 = _mm512_add_epi16(c0, c0); c1 = _mm512_add_epi16(c1, c1);
            c2 = _mm512_add_epi16(c2, c2); c3 = _mm512_add_epi16(c3, c3);
        }
        uint32_t p = pm[0] & a->colmask, n = pm[nw] & a->colmask;
        if (a->neg0 && t == 0) { uint32_t s_ = p; p = n; n = s_; }
        if (!(p | n)) continue;
        int32_t cnt = 0;
        while (p) {
            const __m512i h = _mm512_load_si512((const void *)(tile + ((size_t)__builtin_ctz(p) << 6)));
            p &= p - 1u;
            s0 = _mm512_add_epi16(s0, _mm512_and_si512(h, m));
            s1 = _mm512_add_epi16(s1, _mm512_and_si512(_mm512_srli_epi16(h, 4), m));
            if (++cnt == SR_PAIR_EVENTS_MAX) { SR_PAIR_FLUSH512(s0, c0, c2); SR_PAIR_FLUSH512(s1, c1, c3); cnt = 0; }
        }
        while (n) {
            const __m512i h = _mm512_load_si512((const void *)(tile + ((size_t)__builtin_ctz(n) << 6)));
            n &= n - 1u;
            s0 = _mm512_sub_epi16(s0, _mm512_and_si512(h, m));
            s1 = _mm512_sub_epi16(s1, _mm512_and_si512(_mm512_srli_epi16(h, 4), m));
            if (++cnt == SR_PAIR_EVENTS_MAX) { SR_PAIR_FLUSH512(s0, c0, c2); SR_PAIR_FLUSH512(s1, c1, c3); cnt = 0; }
        }
        if (cnt) { SR_PAIR_FLUSH512(s0, c0, c2); SR_PAIR_FLUSH512(s1, c1, c3); }
    }
    const __m512i cs[4] = {c0, c1, c2, c3};
    for (int32_t k = 0; k < 4; k++) {
        _mm512_storeu_si512((void *)(A + 16 * k), _mm512_cvtepi16_epi32(_mm512_castsi512_si256(cs[k])));
        _mm512_storeu_si512((void *)(A + 64 + 16 * k), _mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(cs[k], 1)));
    }
}
#undef SR_PAIR_FLUSH512

// int8 codes (Q8_0, I8_ROW): int16 lanes with int32 flushes, exact for any block. The
// int16 accumulators c hold the Horner sum since the last flush, bounded by B (|code| <= 128
// times the events added, doubled with every plane); when the next plane could leave int16
// they are flushed into int32 accumulators F, which are owed `fs` doublings (applied at the
// next flush and at the end). A block costs no column split and one pass over its planes,
// whatever its inputs' magnitudes.
#define SR_I8_LANE_BOUND 32767
#define SR_I8_EVENT_BOUND 128
// NT = 2 or 4 runs that many tiles (rows 64 apart in the output, tile2 bytes apart in memory)
// over the same masks: the mask walk, the Horner and flush bookkeeping and the call are shared
// by 64 NT rows. A[64u + r] is row r of tile u. ADD = 1 adds the block's sums into A (the
// multi-tile kernels, which the driver runs block after block into one row sum) instead of
// storing them: reloading a stored block result as narrower lanes stalled store forwarding.
SR_AVX512 static inline __attribute__((always_inline)) void sr_i8_flush_avx512(const sr_blk_args *a, int32_t *A,
                                                                               const int NT, const int ADD) {
    __m512i c[8], f[16];
    const size_t tu[4] = {0, a->tile2, a->tile2 + a->tile2, a->tile2 + a->tile2 + a->tile2};
    for (int i = 0; i < 2 * NT; i++) c[i] = _mm512_setzero_si512();
    for (int i = 0; i < 4 * NT; i++) f[i] = _mm512_setzero_si512();
    int32_t B = 0, fs = 0;
    const uint8_t *tile = a->tile;
    const uint32_t *pm = a->pm;
    const int32_t nw = a->nw;
#define SR_I8Z(off) _mm512_cvtepi8_epi16(_mm256_load_si256((const __m256i *)(const void *)(l + (off))))
#define SR_FLUSH512()                                                                             \
    do {                                                                                          \
        const __m128i sh_ = _mm_cvtsi32_si128(fs);                                                \
        for (int i_ = 0; i_ < 2 * NT; i_++) {                                                     \
            f[2 * i_] = _mm512_add_epi32(_mm512_sll_epi32(f[2 * i_], sh_),                        \
                                         _mm512_cvtepi16_epi32(_mm512_castsi512_si256(c[i_])));   \
            f[2 * i_ + 1] = _mm512_add_epi32(_mm512_sll_epi32(f[2 * i_ + 1], sh_),                \
                                             _mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64(c[i_], 1))); \
            c[i_] = _mm512_setzero_si512();                                                       \
        }                                                                                         \
        B = fs = 0;                                                                               \
    } while (0)
    for (int32_t t = a->t0; t < a->T; t++, pm += a->stride) {
        uint32_t p = pm[0] & a->colmask, n = pm[nw] & a->colmask;
        if (a->neg0 && t == 0) { uint32_t s_ = p; p = n; n = s_; }
        const int32_t add = SR_I8_EVENT_BOUND * __builtin_popcount(p | n);
        const int dbl = a->bitwise && t > 0;   // Horner doubling before this plane
        if ((dbl ? 2 * B : B) + add > SR_I8_LANE_BOUND) SR_FLUSH512();
        if (dbl) {
            for (int i = 0; i < 2 * NT; i++) c[i] = _mm512_add_epi16(c[i], c[i]);
            B *= 2;
            fs++;
        }
        B += add;
        while (p) {
            const uint8_t *l = tile + ((size_t)__builtin_ctz(p) << 6);
            p &= p - 1u;
            for (int u = 0; u < NT; u++) {
                const size_t o_ = tu[u];  // no multiply, even in address arithmetic
                c[2 * u] = _mm512_add_epi16(c[2 * u], SR_I8Z(o_));
                c[2 * u + 1] = _mm512_add_epi16(c[2 * u + 1], SR_I8Z(o_ + 32));
            }
        }
        while (n) {
            const uint8_t *l = tile + ((size_t)__builtin_ctz(n) << 6);
            n &= n - 1u;
            for (int u = 0; u < NT; u++) {
                const size_t o_ = tu[u];  // no multiply, even in address arithmetic
                c[2 * u] = _mm512_sub_epi16(c[2 * u], SR_I8Z(o_));
                c[2 * u + 1] = _mm512_sub_epi16(c[2 * u + 1], SR_I8Z(o_ + 32));
            }
        }
    }
    SR_FLUSH512();
#undef SR_FLUSH512
#undef SR_I8Z
    for (int32_t i = 0; i < 4 * NT; i++) {
        __m512i *d_ = (__m512i *)(void *)(A + 16 * i);
        _mm512_storeu_si512(d_, ADD ? _mm512_add_epi32(_mm512_loadu_si512(d_), f[i]) : f[i]);
    }
}

SR_AVX512 SR_NOINLINE static void sr_spike_acc_i8_flush_avx512(const sr_blk_args *a, int32_t *A) {
    sr_i8_flush_avx512(a, A, 1, 0);
}

// the multi-tile kernels add into A (sr_kernels.k2, k4)
SR_AVX512 SR_NOINLINE static void sr_spike_acc_i8_flush2_avx512(const sr_blk_args *a, int32_t *A) {
    sr_i8_flush_avx512(a, A, 2, 1);
}

SR_AVX512 SR_NOINLINE static void sr_spike_acc_i8_flush4_avx512(const sr_blk_args *a, int32_t *A) {
    sr_i8_flush_avx512(a, A, 4, 1);
}

#undef SR_PAIR_EVENTS_MAX

// Ternary, int16 lanes: the 256-row tile as two halves of 128 rows (8 accumulators each).
SR_AVX2 SR_NOINLINE static void sr_spike_acc_ternary_i16_avx2(const sr_blk_args *a, int32_t *A) {
    const int32_t nw = a->nw;
    for (int32_t h = 0; h < 2; h++) {
        if (h >= a->halves) {  // partial last tile: rows 128..255 are padding
            const __m256i zero = _mm256_setzero_si256();
            for (int32_t r = 128; r < 256; r += 8) _mm256_storeu_si256((__m256i *)(A + r), zero);
            break;
        }
        __m256i c0 = _mm256_setzero_si256(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
        const uint8_t *tile = a->tile + (h << 5);
        const uint32_t *pm = a->pm;
        for (int32_t t = a->t0; t < a->T; t++, pm += a->stride) {
            if (a->bitwise && t > 0) {
                c0 = _mm256_add_epi16(c0, c0); c1 = _mm256_add_epi16(c1, c1);
                c2 = _mm256_add_epi16(c2, c2); c3 = _mm256_add_epi16(c3, c3);
                c4 = _mm256_add_epi16(c4, c4); c5 = _mm256_add_epi16(c5, c5);
                c6 = _mm256_add_epi16(c6, c6); c7 = _mm256_add_epi16(c7, c7);
            }
            uint32_t p = pm[0] & a->colmask, n = pm[nw] & a->colmask;
            if (a->neg0 && t == 0) { uint32_t s_ = p; p = n; n = s_; }
            while (p) {
                const uint8_t *l = tile + ((size_t)__builtin_ctz(p) << 6);
                p &= p - 1u;
                __m256i v = SR_LOAD(l);
                c0 = _mm256_add_epi16(c0, _mm256_srai_epi16(_mm256_slli_epi16(v, 14), 14));
                c1 = _mm256_add_epi16(c1, _mm256_srai_epi16(_mm256_slli_epi16(v, 12), 14));
                c2 = _mm256_add_epi16(c2, _mm256_srai_epi16(_mm256_slli_epi16(v, 10), 14));
                c3 = _mm256_add_epi16(c3, _mm256_srai_epi16(_mm256_slli_epi16(v, 8), 14));
                c4 = _mm256_add_epi16(c4, _mm256_srai_epi16(_mm256_slli_epi16(v, 6), 14));
                c5 = _mm256_add_epi16(c5, _mm256_srai_epi16(_mm256_slli_epi16(v, 4), 14));
                c6 = _mm256_add_epi16(c6, _mm256_srai_epi16(_mm256_slli_epi16(v, 2), 14));
                c7 = _mm256_add_epi16(c7, _mm256_srai_epi16(v, 14));
            }
            while (n) {
                const uint8_t *l = tile + ((size_t)__builtin_ctz(n) << 6);
                n &= n - 1u;
                __m256i v = SR_LOAD(l);
                c0 = _mm256_sub_epi16(c0, _mm256_srai_epi16(_mm256_slli_epi16(v, 14), 14));
                c1 = _mm256_sub_epi16(c1, _mm256_srai_epi16(_mm256_slli_epi16(v, 12), 14));
                c2 = _mm256_sub_epi16(c2, _mm256_srai_epi16(_mm256_slli_epi16(v, 10), 14));
                c3 = _mm256_sub_epi16(c3, _mm256_srai_epi16(_mm256_slli_epi16(v, 8), 14));
                c4 = _mm256_sub_epi16(c4, _mm256_srai_epi16(_mm256_slli_epi16(v, 6), 14));
                c5 = _mm256_sub_epi16(c5, _mm256_srai_epi16(_mm256_slli_epi16(v, 4), 14));
                c6 = _mm256_sub_epi16(c6, _mm256_srai_epi16(_mm256_slli_epi16(v, 2), 14));
                c7 = _mm256_sub_epi16(c7, _mm256_srai_epi16(v, 14));
            }
        }
        int32_t *Ah = A + (h << 7);
        SR_STORE16(Ah + 0, c0); SR_STORE16(Ah + 16, c1); SR_STORE16(Ah + 32, c2); SR_STORE16(Ah + 48, c3);
        SR_STORE16(Ah + 64, c4); SR_STORE16(Ah + 80, c5); SR_STORE16(Ah + 96, c6); SR_STORE16(Ah + 112, c7);
    }
}

// Q4_1 and ternary, int32 lanes (blocks or columns whose bound exceeds int16): the tile is
// run in passes of 64 rows (8 accumulators x 8 rows). Pass (h, kk) covers rows
// h*HALF + (4kk + k')*16 + i, k' = 0..3, i = 0..15: the low / high 8 words of half h,
// widened to 32 bits, give lanes i = 0..7 / 8..15; field k = 4kk + k' of the word is the code.
#define SR_Q4F(v, k) _mm256_and_si256(_mm256_srli_epi32(v, 4 * (k)), m4)
#define SR_T2F(v, k) _mm256_srai_epi32(_mm256_slli_epi32(v, 30 - 2 * (k)), 30)
#define SR_I32_PASS_KERNEL(name, HALF_ROWS, NKK, FIELD, WIDEN)                                  \
    SR_AVX2 SR_NOINLINE static void name(const sr_blk_args *a, int32_t *A) {                     \
        const __m256i m4 = _mm256_set1_epi32(15);                                               \
        const int32_t nw = a->nw;                                                               \
        (void)m4;                                                                               \
        for (int32_t h = 0; h < 2; h++) {                                                       \
            for (int32_t kk = 0; kk < (NKK); kk++) {                                            \
                int32_t *Ap = A + h * (HALF_ROWS) + kk * 64;                                    \
                if (h >= a->halves) {                                                           \
                    for (int32_t r = 0; r < 64; r++) Ap[r] = 0;                                 \
                    continue;                                                                   \
                }                                                                               \
                __m256i c0 = _mm256_setzero_si256(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0; \
                const uint8_t *tile = a->tile + (h << 5);                                       \
                const uint32_t *pm = a->pm;                                                     \
                const int32_t k0 = kk << 2;                                                     \
                for (int32_t t = a->t0; t < a->T; t++, pm += a->stride) {                       \
                    if (a->bitwise && t > 0) {                                                  \
                        c0 = _mm256_add_epi32(c0, c0); c1 = _mm256_add_epi32(c1, c1);           \
                        c2 = _mm256_add_epi32(c2, c2); c3 = _mm256_add_epi32(c3, c3);           \
                        c4 = _mm256_add_epi32(c4, c4); c5 = _mm256_add_epi32(c5, c5);           \
                        c6 = _mm256_add_epi32(c6, c6); c7 = _mm256_add_epi32(c7, c7);           \
                    }                                                                           \
                    uint32_t p = pm[0] & a->colmask, n = pm[nw] & a->colmask;                   \
                    if (a->neg0 && t == 0) { uint32_t s_ = p; p = n; n = s_; }                  \
                    while (p) {                                                                 \
                        const uint8_t *l = tile + ((size_t)__builtin_ctz(p) << 6);              \
                        p &= p - 1u;                                                            \
                        __m256i lo = WIDEN(_mm_load_si128((const __m128i *)(const void *)l));   \
                        __m256i hi = WIDEN(_mm_load_si128((const __m128i *)(const void *)(l + 16))); \
                        if (k0 == 0) {                                                          \
                            c0 = _mm256_add_epi32(c0, FIELD(lo, 0)); c1 = _mm256_add_epi32(c1, FIELD(hi, 0)); \
                            c2 = _mm256_add_epi32(c2, FIELD(lo, 1)); c3 = _mm256_add_epi32(c3, FIELD(hi, 1)); \
                            c4 = _mm256_add_epi32(c4, FIELD(lo, 2)); c5 = _mm256_add_epi32(c5, FIELD(hi, 2)); \
                            c6 = _mm256_add_epi32(c6, FIELD(lo, 3)); c7 = _mm256_add_epi32(c7, FIELD(hi, 3)); \
                        } else {                                                                \
                            c0 = _mm256_add_epi32(c0, FIELD(lo, 4)); c1 = _mm256_add_epi32(c1, FIELD(hi, 4)); \
                            c2 = _mm256_add_epi32(c2, FIELD(lo, 5)); c3 = _mm256_add_epi32(c3, FIELD(hi, 5)); \
                            c4 = _mm256_add_epi32(c4, FIELD(lo, 6)); c5 = _mm256_add_epi32(c5, FIELD(hi, 6)); \
                            c6 = _mm256_add_epi32(c6, FIELD(lo, 7)); c7 = _mm256_add_epi32(c7, FIELD(hi, 7)); \
                        }                                                                       \
                    }                                                                           \
                    while (n) {                                                                 \
                        const uint8_t *l = tile + ((size_t)__builtin_ctz(n) << 6);              \
                        n &= n - 1u;                                                            \
                        __m256i lo = WIDEN(_mm_load_si128((const __m128i *)(const void *)l));   \
                        __m256i hi = WIDEN(_mm_load_si128((const __m128i *)(const void *)(l + 16))); \
                        if (k0 == 0) {                                                          \
                            c0 = _mm256_sub_epi32(c0, FIELD(lo, 0)); c1 = _mm256_sub_epi32(c1, FIELD(hi, 0)); \
                            c2 = _mm256_sub_epi32(c2, FIELD(lo, 1)); c3 = _mm256_sub_epi32(c3, FIELD(hi, 1)); \
                            c4 = _mm256_sub_epi32(c4, FIELD(lo, 2)); c5 = _mm256_sub_epi32(c5, FIELD(hi, 2)); \
                            c6 = _mm256_sub_epi32(c6, FIELD(lo, 3)); c7 = _mm256_sub_epi32(c7, FIELD(hi, 3)); \
                        } else {                                                                \
                            c0 = _mm256_sub_epi32(c0, FIELD(lo, 4)); c1 = _mm256_sub_epi32(c1, FIELD(hi, 4)); \
                            c2 = _mm256_sub_epi32(c2, FIELD(lo, 5)); c3 = _mm256_sub_epi32(c3, FIELD(hi, 5)); \
                            c4 = _mm256_sub_epi32(c4, FIELD(lo, 6)); c5 = _mm256_sub_epi32(c5, FIELD(hi, 6)); \
                            c6 = _mm256_sub_epi32(c6, FIELD(lo, 7)); c7 = _mm256_sub_epi32(c7, FIELD(hi, 7)); \
                        }                                                                       \
                    }                                                                           \
                }                                                                               \
                _mm256_storeu_si256((__m256i *)(Ap + 0), c0);  _mm256_storeu_si256((__m256i *)(Ap + 8), c1);  \
                _mm256_storeu_si256((__m256i *)(Ap + 16), c2); _mm256_storeu_si256((__m256i *)(Ap + 24), c3); \
                _mm256_storeu_si256((__m256i *)(Ap + 32), c4); _mm256_storeu_si256((__m256i *)(Ap + 40), c5); \
                _mm256_storeu_si256((__m256i *)(Ap + 48), c6); _mm256_storeu_si256((__m256i *)(Ap + 56), c7); \
            }                                                                                   \
        }                                                                                       \
    }

// Q4_1: a half (64 rows) is one pass; fields 0..3 (k0 == 0 always).
SR_I32_PASS_KERNEL(sr_spike_acc_q4_1_i32_avx2, 64, 1, SR_Q4F, _mm256_cvtepu16_epi32)
// Ternary: a half (128 rows) is two passes, fields 0..3 and 4..7; sign-extending 2-bit fields.
SR_I32_PASS_KERNEL(sr_spike_acc_ternary_i32_avx2, 128, 2, SR_T2F, _mm256_cvtepu16_epi32)

// int8 codes, AVX2: the same int16 lanes with int32 flushes as the AVX-512 kernel above,
// 4 accumulators x 16 rows per tile (NT tiles); F (64 NT int32) lives in memory between flushes.
SR_AVX2 static inline __attribute__((always_inline)) void sr_i8_flush_avx2(const sr_blk_args *a, int32_t *A,
                                                                           const int NT, const int ADD) {
    __m256i c[8];
    for (int i = 0; i < 4 * NT; i++) c[i] = _mm256_setzero_si256();
    _Alignas(32) int32_t F[128];
    memset(F, 0, sizeof(int32_t) * 64 * (size_t)NT);
    int32_t B = 0, fs = 0;
    const uint8_t *tile = a->tile;
    const size_t t2 = a->tile2;
    const uint32_t *pm = a->pm;
    const int32_t nw = a->nw;
    uint32_t q = a->pf_mask;
    // one of the next block's lines per event, in every tile: spread over the block's work
    // instead of one burst before it
#define SR_PF_NEXT()                                                                              \
    if (q) {                                                                                      \
        const uint8_t *f_ = a->pf + ((size_t)__builtin_ctz(q) << 6);                              \
        q &= q - 1u;                                                                              \
        for (int u_ = 0; u_ < NT; u_++) __builtin_prefetch(f_ + (u_ ? t2 : 0));                   \
    }
#define SR_I8Y(off) _mm256_cvtepi8_epi16(_mm_load_si128((const __m128i *)(const void *)(l + (off))))
#define SR_FLUSH256()                                                                             \
    do {                                                                                          \
        const __m128i sh_ = _mm_cvtsi32_si128(fs);                                                \
        for (int i_ = 0; i_ < 4 * NT; i_++) {                                                     \
            __m256i *f_ = (__m256i *)(void *)(F + 16 * i_);                                       \
            f_[0] = _mm256_add_epi32(_mm256_sll_epi32(f_[0], sh_), _mm256_cvtepi16_epi32(_mm256_castsi256_si128(c[i_])));      \
            f_[1] = _mm256_add_epi32(_mm256_sll_epi32(f_[1], sh_), _mm256_cvtepi16_epi32(_mm256_extracti128_si256(c[i_], 1))); \
            c[i_] = _mm256_setzero_si256();                                                       \
        }                                                                                         \
        B = fs = 0;                                                                               \
    } while (0)
    for (int32_t t = a->t0; t < a->T; t++, pm += a->stride) {
        uint32_t p = pm[0] & a->colmask, n = pm[nw] & a->colmask;
        if (a->neg0 && t == 0) { uint32_t s_ = p; p = n; n = s_; }
        const int32_t add = SR_I8_EVENT_BOUND * __builtin_popcount(p | n);
        const int dbl = a->bitwise && t > 0;   // Horner doubling before this plane
        if ((dbl ? 2 * B : B) + add > SR_I8_LANE_BOUND) SR_FLUSH256();
        if (dbl) {
            for (int i = 0; i < 4 * NT; i++) c[i] = _mm256_add_epi16(c[i], c[i]);
            B *= 2;
            fs++;
        }
        B += add;
        while (p) {
            const uint8_t *l = tile + ((size_t)__builtin_ctz(p) << 6);
            p &= p - 1u;
            SR_PF_NEXT();
            for (int i = 0; i < 4 * NT; i++) c[i] = _mm256_add_epi16(c[i], SR_I8Y(((i >> 2) ? t2 : 0) + 16 * (size_t)(i & 3)));
        }
        while (n) {
            const uint8_t *l = tile + ((size_t)__builtin_ctz(n) << 6);
            n &= n - 1u;
            SR_PF_NEXT();
            for (int i = 0; i < 4 * NT; i++) c[i] = _mm256_sub_epi16(c[i], SR_I8Y(((i >> 2) ? t2 : 0) + 16 * (size_t)(i & 3)));
        }
    }
    if (a->pf_left) *a->pf_left = q;
#undef SR_PF_NEXT
    SR_FLUSH256();
#undef SR_FLUSH256
#undef SR_I8Y
    if (!ADD) {
        memcpy(A, F, sizeof(int32_t) * 64 * (size_t)NT);
        return;
    }
    for (int32_t i = 0; i < 8 * NT; i++) {
        __m256i *d_ = (__m256i *)(void *)(A + 8 * i);
        _mm256_storeu_si256(d_, _mm256_add_epi32(_mm256_loadu_si256(d_), _mm256_load_si256((const __m256i *)(const void *)(F + 8 * i))));
    }
}

SR_AVX2 SR_NOINLINE static void sr_spike_acc_i8_flush_avx2(const sr_blk_args *a, int32_t *A) {
    sr_i8_flush_avx2(a, A, 1, 0);
}

SR_AVX2 SR_NOINLINE static void sr_spike_acc_i8_flush2_avx2(const sr_blk_args *a, int32_t *A) {   // adds into A
    sr_i8_flush_avx2(a, A, 2, 1);
}
#endif  // SR_SPIKE_X86

// ---------------------------------------------------------------- matvec driver

typedef struct sr_kernels {
    sr_blk_fn k16;       // used when qmax * blk_abs[b] <= 32767 (int16 lanes), may equal k32
    sr_blk_fn k32;       // always safe (int32 lanes)
    sr_blk_fn k16_half;  // int16, first half of the tile only (or NULL)
    int k2_spreads;      // k2 takes the next block's prefetches (sr_blk_args.pf)
    sr_blk_fn k2, k4;    // row formats: two / four tiles at once, exact for any block, adding
                         // the block's sums into A (or NULL)
    // sr_spike_rescale_block on the block's fp16 scales d, m (m NULL for Q8_0), n rows
    void (*rescale)(float *acc, const int32_t *A, const uint16_t *d, const uint16_t *m, int32_t N,
                    float sxg, int grouped, int32_t n);
} sr_kernels;

static void sr_rescale_block_portable(float *acc, const int32_t *A, const uint16_t *d, const uint16_t *m,
                                      int32_t N, float sxg, int grouped, int32_t n) {
    _Alignas(64) float df[SR_SPIKE_MAX_TILE], mf[SR_SPIKE_MAX_TILE];
    for (int32_t i = 0; i < n; i++) df[i] = sr_spike_f16_to_f32(d[i]);
    if (m)
        for (int32_t i = 0; i < n; i++) mf[i] = sr_spike_f16_to_f32(m[i]);
    sr_spike_rescale_block(acc, A, df, m ? mf : NULL, N, sxg, grouped, n);
}

#if SR_SPIKE_X86
// The same operations in the same order, 8 rows at a time, the scales widened in registers
// (vcvtph2ps is exact; no FMA: this file is compiled without it).
SR_AVX2 static void sr_rescale_block_f16c(float *acc, const int32_t *A, const uint16_t *d, const uint16_t *m,
                                          int32_t N, float sxg, int grouped, int32_t n) {
    const __m256 nf = _mm256_set1_ps((float)N), sg = _mm256_set1_ps(sxg);
    for (int32_t r = 0; r < n; r += 8) {  // n is a multiple of 64
        const __m256 df = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(d + r)));
        __m256 t = _mm256_mul_ps(df, _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(const void *)(A + r))));
        if (m) {
            const __m256 mf = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(m + r)));
            t = _mm256_add_ps(t, _mm256_mul_ps(mf, nf));
        }
        if (grouped) t = _mm256_mul_ps(sg, t);
        _mm256_storeu_ps(acc + r, _mm256_add_ps(_mm256_loadu_ps(acc + r), t));
    }
}
#endif

static sr_kernels sr_pick_kernels(int32_t fmt, int level) {
    sr_kernels k;
    k.k16_half = NULL;
    k.k2 = k.k4 = NULL;
    k.k2_spreads = 0;
    k.rescale = sr_rescale_block_portable;
    switch (fmt) {
    case SR_SPIKE_W_Q4_1: k.k16 = k.k32 = sr_spike_acc_q4_1_portable; break;
    case SR_SPIKE_W_TERNARY: k.k16 = k.k32 = sr_spike_acc_ternary_portable; break;
    default: k.k16 = k.k32 = sr_spike_acc_i8_portable; break;
    }
#if SR_SPIKE_X86
    if (level >= SR_SPIKE_SIMD_AVX2) {
        switch (fmt) {
        case SR_SPIKE_W_Q4_1:
            k.k16 = sr_spike_acc_q4_1_i16_avx2; k.k16_half = sr_spike_acc_q4_1_half_i16_avx2;
            k.k32 = sr_spike_acc_q4_1_i32_avx2;
            break;
        case SR_SPIKE_W_TERNARY: k.k16 = sr_spike_acc_ternary_i16_avx2; k.k32 = sr_spike_acc_ternary_i32_avx2; break;
        default: k.k16 = k.k32 = sr_spike_acc_i8_flush_avx2; break;   // exact for any block: no split
        }
        if (fmt == SR_SPIKE_W_I8_ROW) { k.k2 = sr_spike_acc_i8_flush2_avx2; k.k2_spreads = 1; }
        if (level >= SR_SPIKE_SIMD_AVX512) {
            if (fmt == SR_SPIKE_W_Q4_1) k.k16 = sr_spike_acc_q4_1_i16_avx512;
            else if (fmt != SR_SPIKE_W_TERNARY) k.k16 = k.k32 = sr_spike_acc_i8_flush_avx512;
            if (fmt == SR_SPIKE_W_I8_ROW) {
                k.k2 = sr_spike_acc_i8_flush2_avx512;
                k.k4 = sr_spike_acc_i8_flush4_avx512;
                k.k2_spreads = 0;
            }
        }
        k.rescale = sr_rescale_block_f16c;
    }
#else
    (void)level;
#endif
    return k;
}

// How block b's columns are run: int16 passes over column groups whose bound
// qmax * sum a_j <= 32767 (usually one group = the whole block), plus one int32 pass over
// the remaining columns (a column with qmax * a_j > 32767, or more groups than fit).
#define SR_SPLIT_MAX 4
typedef struct sr_split {
    uint32_t m16[SR_SPLIT_MAX];
    int32_t n16;
    uint32_t m32;
} sr_split;

static void sr_make_split(const sr_spike_planes *x, int32_t b, int32_t qmax, int has16, sr_split *sp) {
    sp->n16 = 0;
    sp->m32 = 0;
    if (b >= x->n_words || x->blk_tfirst[b] >= x->T) return;           // silent
    if (!has16) { sp->m32 = 0xffffffffu; return; }
    if ((int64_t)qmax * x->blk_abs[b] <= 32767) { sp->m16[0] = 0xffffffffu; sp->n16 = 1; return; }
    uint32_t aj[32] = {0};
    const size_t stride = (size_t)x->n_words * 2;
    for (int32_t t = x->blk_tfirst[b]; t < x->T; t++) {
        const uint32_t *pm = x->bits + stride * (size_t)t + (size_t)b;
        uint32_t m = pm[0] | pm[x->n_words];
        uint32_t add = 1u << sr_spike_plane_shift(x->encoding, x->T, t);
        while (m) { aj[__builtin_ctz(m)] += add; m &= m - 1u; }
    }
    const uint32_t lim = (uint32_t)(32767 / qmax);
    uint32_t cur = 0, sum = 0;
    for (int32_t jj = 0; jj < 32; jj++) {
        if (!aj[jj]) continue;
        uint32_t bit = 1u << jj;
        if (aj[jj] > lim) { sp->m32 |= bit; continue; }
        if (sum + aj[jj] > lim) {
            if (sp->n16 == SR_SPLIT_MAX - 1) { sp->m32 |= bit; continue; }  // keep the last slot
            sp->m16[sp->n16++] = cur;
            cur = 0;
            sum = 0;
        }
        cur |= bit;
        sum += aj[jj];
    }
    if (cur) {
        if (sp->n16 < SR_SPLIT_MAX) sp->m16[sp->n16++] = cur;
        else sp->m32 |= cur;
    }
}

// Kernel arguments of block b (a non-silent block of x) for the tile whose lines start at `tile`.
static inline sr_blk_args sr_blk_setup(const sr_spike_planes *x, int32_t b, const uint8_t *tile) {
    sr_blk_args a;
    a.tile = tile;
    a.stride = (size_t)x->n_words * 2;
    a.pm = x->bits + a.stride * (size_t)x->blk_tfirst[b] + (size_t)b;
    a.nw = x->n_words;
    a.t0 = x->blk_tfirst[b];
    a.T = x->T;
    a.bitwise = sr_spike_encoding_is_bitwise(x->encoding);
    a.neg0 = x->encoding == SR_SPIKE_TWOS_COMPLEMENT;
    a.halves = 2;
    a.colmask = 0xffffffffu;
    a.tile2 = 0;
    a.pf = NULL;
    a.pf_mask = 0;
    a.pf_left = NULL;
    return a;
}

// Integer sums of block b for the tile whose lines start at `tile` (A: tile_w int32).
static inline void sr_run_block(const sr_spike_weights *w, const sr_spike_planes *x, sr_kernels k,
                                const sr_split *sp, const uint8_t *tile, int32_t b,
                                const int32_t *row_sum_b, int32_t rn, int32_t *A) {
    const int32_t tw = w->tile_w;
    if (sp->n16 == 0 && sp->m32 == 0) {
        memset(A, 0, (size_t)tw * sizeof *A);
    } else {
        sr_blk_args a = sr_blk_setup(x, b, tile);
        a.halves = rn * 2 <= tw ? 1 : 2;
        _Alignas(64) int32_t T2[SR_SPIKE_MAX_TILE];
        for (int32_t i = 0; i <= sp->n16; i++) {
            if (i == sp->n16 && !sp->m32) break;
            a.colmask = i < sp->n16 ? sp->m16[i] : sp->m32;
            sr_blk_fn f = i < sp->n16 ? (a.halves == 1 && k.k16_half ? k.k16_half : k.k16) : k.k32;
            f(&a, i == 0 ? A : T2);
            if (i > 0)
                for (int32_t r = 0; r < tw; r++) A[r] += T2[r];
        }
    }
    if (x->encoding == SR_SPIKE_BINARY && x->offset != 0) sr_spike_acc_offset_fix(A, row_sum_b, x->offset, tw);
}

// Software prefetch of a (tile, block)'s lines SR_PF_DIST blocks ahead. The kernels
// touch a block's lines in spike order (plane by plane, a line per firing input), which the
// hardware prefetchers do not follow; prefetching the whole block's 2 KiB right before its
// kernel (distance 0) puts all its misses in flight at once. Measured on the project machine
// (AMD EPYC, Zen 4; sr-model-bench --spike 16, tg128, 1 thread): distance 0 105 t/s, 1 83,
// 2 76, 4 74, none 70. SR_PF_DIST < 0 disables it.
#ifndef SR_PF_DIST
#define SR_PF_DIST 0
#endif
// Prefetch the lines of the inputs in m in tiles tb, tb + next, ... (nt tiles). m is a block's
// inputs that fire at some step (sr_spike_planes_fired): a silent input's line is never read.
// On a Zen 4 at the AVX2 level, issuing all 64 lines of two tiles back to back made spike
// decode 0.64x as fast as this (tg128, 1 thread: 47 against 73 t/s, alternating runs); fewer
// prefetches stop the burst from delaying the kernel's loads.
static inline __attribute__((always_inline)) void sr_prefetch_lines(uint32_t m, const uint8_t *tb, int32_t nt, size_t next) {
    while (m) {
        const size_t off = (size_t)__builtin_ctz(m) << 6;
        m &= m - 1u;
        for (int32_t u = 0; u < nt; u++) __builtin_prefetch(tb + (size_t)u * next + off);
    }
}

static inline __attribute__((always_inline)) sr_status
sr_matvec_driver(const sr_spike_weights *w, const sr_spike_planes *x, int32_t o0, int32_t o1,
                 float *y, int32_t *acc, float s0, sr_kernels k, int hot) {
    const int32_t tw = w->tile_w, nb = w->n_blocks;
    const int block_fmt = sr_spike_is_block_format_(w->format);
    const int grouped = x->n_groups > 1;
    const int32_t bpg = grouped ? x->group >> 5 : nb;     // blocks per scale group
    const size_t tile_bytes = (size_t)SR_SPIKE_BLOCK * SR_SPIKE_LINE_BYTES;
    _Alignas(64) int32_t A[SR_SPIKE_MAX_TILE];
    _Alignas(64) int32_t Aseg[SR_SPIKE_MAX_TILE];
    _Alignas(64) float yacc[SR_SPIKE_MAX_TILE];
    _Alignas(64) int64_t aD[SR_SPIKE_MAX_TILE], aM[SR_SPIKE_MAX_TILE];   // integer block scales
    _Alignas(64) int32_t sD[SR_SPIKE_MAX_TILE], sM[SR_SPIKE_MAX_TILE];
    const int32_t c0 = o0 / tw, c1 = (o1 + tw - 1) / tw;
    // Column split and firing inputs per block, computed once per call for all its tiles (up
    // to SR_SPLIT_CACHE blocks cached; beyond that recomputed per tile).
    enum { SR_SPLIT_CACHE = 256 };
    sr_split splits[SR_SPLIT_CACHE];
    uint32_t fired[SR_SPLIT_CACHE];
    const int has16 = k.k16 != k.k32;
    const int cached = nb <= SR_SPLIT_CACHE;
    const int prefetch = !hot && SR_PF_DIST >= 0;
    // integer block scales: |D*A| <= 255 * qmax * (sum a_j + 32 z) per block, |M*N| <= 255 * sum |N|
    int int32_sums = 0;
    if (w->int_scales) {
        int64_t sa = 0, sn = 0;
        for (int32_t b = 0; b < x->n_words; b++) {
            sa += (int64_t)x->blk_abs[b] + 32 * (int64_t)x->offset;
            sn += x->blk_sum[b] < 0 ? -(int64_t)x->blk_sum[b] : x->blk_sum[b];
        }
        int32_sums = 255 * ((int64_t)w->qmax * sa + sn) <= INT32_MAX;
    }
    if (cached)
        for (int32_t b = 0; b < nb; b++) {
            sr_make_split(x, b, w->qmax, has16, &splits[b]);
            fired[b] = prefetch ? sr_spike_planes_fired(x, b) : 0;
        }
    sr_split one;
#define SR_SPLIT(b) (cached ? &splits[b] : (sr_make_split(x, (b), w->qmax, has16, &one), &one))
#define SR_FIRED(b) (!prefetch || (b) >= nb ? 0u : cached ? fired[b] : sr_spike_planes_fired(x, (b)))
#define SR_PREFETCH(tile, b) sr_prefetch_lines(SR_FIRED((b) + SR_PF_DIST), (tile) + SR_PF_DIST * tile_bytes, 1, 0)
    const uint8_t *tile = w->lines + (size_t)c0 * (size_t)nb * tile_bytes;
    size_t bv = (size_t)c0 * (size_t)nb * (size_t)tw;     // (c, b = 0) in the per-block arrays
    for (int32_t c = c0; c < c1; c++) {
        const int32_t row0 = c * tw;
        const int32_t rn = o1 - row0 < tw ? o1 - row0 : tw;
        for (int32_t r = 0; r < tw; r++) yacc[r] = 0.0f;
        if (block_fmt) {
            int32_t g = 0, gb = 0;
            // integer block scales (never grouped): exact sums of D*A and M*N, int32 when the
            // call's bound allows (always in practice), else int64; the same integers either way
            if (w->int_scales)
                for (int32_t r = 0; r < tw; r++) aD[r] = aM[r] = 0, sD[r] = sM[r] = 0;
            for (int32_t b = 0; b < nb; b++, tile += tile_bytes, bv += (size_t)tw) {
                SR_PREFETCH(tile, b);
                sr_run_block(w, x, k, SR_SPLIT(b), tile, b, w->row_sum ? w->row_sum + bv : NULL, rn, A);
                if (acc) memcpy(acc + (size_t)b * (size_t)w->n_out + (size_t)row0, A, (size_t)rn * sizeof *A);
                int32_t N = b < x->n_words ? x->blk_sum[b] : 0;
                if (w->int_scales) {
                    const int16_t *D = (const int16_t *)(const void *)(w->d + bv), *M = (const int16_t *)(const void *)(w->m + bv);
                    if (int32_sums)
                        for (int32_t r = 0; r < tw; r++) sD[r] += (int32_t)D[r] * A[r], sM[r] += (int32_t)M[r] * N;
                    else
                        for (int32_t r = 0; r < tw; r++) aD[r] += (int64_t)D[r] * A[r], aM[r] += (int64_t)M[r] * N;
                    continue;
                }
                float sxg = grouped ? x->scale[g] : 1.0f;
                k.rescale(yacc, A, w->d + bv, w->m ? w->m + bv : NULL, N, sxg, grouped, tw);
                if (++gb == bpg) { gb = 0; g++; }
            }
            if (w->int_scales) {
                if (int32_sums)
                    for (int32_t r = 0; r < tw; r++) aD[r] = sD[r], aM[r] = sM[r];
                sr_spike_rescale_int_finish(y + row0, aD, aM, w->row_scale + row0, w->row_scale_m + row0, s0, rn);
            } else {
                sr_spike_rescale_block_finish(y + row0, yacc, s0, grouped, rn);
            }
        } else if (k.k2 && !grouped && c + 1 < c1 && !(x->encoding == SR_SPIKE_BINARY && x->offset != 0)) {
            // tiles c .. c + nt - 1 together (one scale per token: a single segment)
            const int32_t nt = k.k4 && c + 3 < c1 ? 4 : 2;
            const sr_blk_fn f = nt == 4 ? k.k4 : k.k2;
            const size_t next = (size_t)nb * tile_bytes;
            for (int32_t r = 0; r < nt * tw; r++) Aseg[r] = 0;
            for (int32_t b = 0; b < nb && b < x->n_words; b++) {
                const uint8_t *tb = tile + (size_t)b * tile_bytes;
                // the next block's lines, one block ahead (the current block's were issued a block
                // earlier): 0.96x the decode time of prefetching right before the kernel
                // (farm-bench, Xeon, 1 and 2 threads). The AVX2 two-tile kernel issues them
                // itself, one input per event: 1.2x the decode speed of one burst before the call
                // (Zen 4 at the AVX2 level, 1 and 2 threads)
                if (b == 0) sr_prefetch_lines(SR_FIRED(0), tb, nt, next);
                uint32_t pf = SR_FIRED(b + 1);   // the next block's firing inputs still to prefetch
                const int spread = nt == 2 && k.k2_spreads && x->blk_tfirst[b] < x->T;
                if (!spread) { sr_prefetch_lines(pf, tb + tile_bytes, nt, next); pf = 0; }
                if (x->blk_tfirst[b] >= x->T) continue;  // silent block
                sr_blk_args a = sr_blk_setup(x, b, tb);
                a.tile2 = next;
                if (spread) { a.pf = tb + tile_bytes; a.pf_mask = pf; a.pf_left = &pf; }
                f(&a, Aseg);
                sr_prefetch_lines(pf, tb + tile_bytes, nt, next);   // the inputs the events did not reach
            }
            for (int32_t u = 0; u < nt; u++) {
                const int32_t ru = row0 + u * tw, rnu = o1 - ru < tw ? o1 - ru : tw;
                if (acc) memcpy(acc + (size_t)ru, Aseg + u * tw, (size_t)rnu * sizeof *Aseg);
                sr_spike_rescale_rows(y + ru, Aseg + u * tw, w->row_scale + ru, s0, rnu);
            }
            tile += (size_t)nt * next;
            bv += (size_t)nt * (size_t)nb * (size_t)tw;
            c += nt - 1;
        } else {
            int32_t s = 0;
            for (int32_t b0 = 0; b0 < nb; b0 += bpg, s++) {
                for (int32_t r = 0; r < tw; r++) Aseg[r] = 0;
                for (int32_t b = b0; b < b0 + bpg && b < nb; b++, tile += tile_bytes, bv += (size_t)tw) {
                    if (b >= x->n_words) continue;  // silent block (inputs beyond x->n)
                    SR_PREFETCH(tile, b);
                    sr_run_block(w, x, k, SR_SPLIT(b), tile, b, w->row_sum ? w->row_sum + bv : NULL, rn, A);
                    for (int32_t r = 0; r < tw; r++) Aseg[r] += A[r];
                }
                if (acc) memcpy(acc + (size_t)s * (size_t)w->n_out + (size_t)row0, Aseg, (size_t)rn * sizeof *Aseg);
                if (!grouped) sr_spike_rescale_rows(y + row0, Aseg, w->row_scale + row0, s0, rn);
                else sr_spike_rescale_rows_group(yacc, Aseg, x->scale[s], tw);
            }
            if (grouped) sr_spike_rescale_rows_finish(y + row0, yacc, w->row_scale + row0, rn);
        }
    }
#undef SR_PREFETCH
#undef SR_FIRED
#undef SR_SPLIT
    return SR_OK;
}

static SR_NOINLINE sr_status sr_matvec_portable(const sr_spike_weights *w, const sr_spike_planes *x,
                                                int32_t o0, int32_t o1, float *y, int32_t *acc,
                                                float s0, sr_kernels k, int hot) {
    return sr_matvec_driver(w, x, o0, o1, y, acc, s0, k, hot);
}

#if SR_SPIKE_X86
SR_AVX2 static SR_NOINLINE sr_status sr_matvec_avx2(const sr_spike_weights *w, const sr_spike_planes *x,
                                                    int32_t o0, int32_t o1, float *y, int32_t *acc,
                                                    float s0, sr_kernels k, int hot) {
    return sr_matvec_driver(w, x, o0, o1, y, acc, s0, k, hot);
}
#endif

sr_status sr_spike_matvec_opt_(const sr_spike_weights *w, const sr_spike_planes *x, int32_t o0,
                               int32_t o1, float *y, int32_t *acc, sr_spike_stats *stats,
                               int sx0_override, float sx0, int hot) {
    sr_status st = sr_spike_matvec_check(w, x, o0, o1);
    if (st != SR_OK) return st;
    if (!y) return sr_fail(SR_ERR_INVALID_ARG, "spike matvec: null output");
    if (o1 > o0) {
        int level = sr_spike_simd_level_();
        sr_kernels k = sr_pick_kernels(w->format, level);
        float s0 = sx0_override ? sx0 : x->scale[0];
#if SR_SPIKE_X86
        if (level >= SR_SPIKE_SIMD_AVX2) st = sr_matvec_avx2(w, x, o0, o1, y, acc, s0, k, hot);
        else
#endif
            st = sr_matvec_portable(w, x, o0, o1, y, acc, s0, k, hot);
        if (st != SR_OK) return st;
    }
    sr_spike_fill_stats_(stats, x, o0, o1);
    return SR_OK;
}

sr_status sr_spike_matvec(const sr_spike_weights *w, const sr_spike_planes *x, int32_t o0, int32_t o1,
                          float *y, int32_t *acc, sr_spike_stats *stats) {
    return sr_spike_matvec_opt_(w, x, o0, o1, y, acc, stats, 0, 0.0f, 0);
}

sr_status sr_spike_matvec_hot(const sr_spike_weights *w, const sr_spike_planes *x, int32_t o0, int32_t o1,
                              float *y, int32_t *acc, sr_spike_stats *stats) {
    return sr_spike_matvec_opt_(w, x, o0, o1, y, acc, stats, 0, 0.0f, 1);
}

// ---------------------------------------------------------------- refined head rows (AVX2)

#if SR_SPIKE_X86
// 32 bytes, 0xFF where bit i of m is set (byte i is input 32 b + i of the mask's block b).
SR_AVX2 static inline __m256i sr_mask_bytes_avx2(uint32_t m) {
    const __m256i sel = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                         2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    const __m256i v = _mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32((int)m), sel), bit);
    return _mm256_cmpeq_epi8(v, bit);
}

// One row's spike sum over planes 0..T-1. Per plane and block, the row's codes biased to
// unsigned (code + 128) under the + and - byte masks are summed by vpsadbw (absolute
// differences from zero: adds only) in 64-bit lanes; corr[t] takes the 128 per spike back
// out; then the Horner step of the event loop. Exact: no partial sum leaves its lane.
SR_AVX2 SR_NOINLINE static int64_t sr_spike_acc_row_i8_avx2(const uint8_t *biased, const __m256i *mk,
                                                           const int64_t *corr, int32_t nw, int32_t T,
                                                           int32_t enc) {
    const __m256i zero = _mm256_setzero_si256();
    int64_t acc = 0;
    for (int32_t t = 0; t < T; t++, mk += 2 * nw) {
        __m256i sp = zero, sn = zero;
        const uint8_t *c = biased;
        for (int32_t b = 0; b < nw; b++, c += 32) {
            const __m256i v = SR_LOAD(c);
            sp = _mm256_add_epi64(sp, _mm256_sad_epu8(_mm256_and_si256(v, mk[2 * b]), zero));
            sn = _mm256_add_epi64(sn, _mm256_sad_epu8(_mm256_and_si256(v, mk[2 * b + 1]), zero));
        }
        const __m256i d = _mm256_sub_epi64(sp, sn);
        const __m128i h = _mm_add_epi64(_mm256_castsi256_si128(d), _mm256_extracti128_si256(d, 1));
        const int64_t P = _mm_cvtsi128_si64(h) + _mm_extract_epi64(h, 1) - corr[t];
        if (sr_spike_horner_shift(enc, t)) acc += acc;
        acc = sr_spike_plane_sign(enc, t) < 0 ? acc - P : acc + P;
    }
    return acc;
}

SR_AVX2 static int sr_rows_i8_sums_avx2(const int8_t *codes, const sr_spike_planes *x, const int32_t *rows,
                                        int32_t m, int64_t *sums) {
    const int32_t nw = x->n_words, T = x->T, n = x->n;
    enum { SR_ROWS_MAX_IN = 8192 };
    if (n > SR_ROWS_MAX_IN || T < 1) return 0;
    const size_t stride = (size_t)nw * 2;
    if (T > SR_SPIKE_MAX_T) return 0;
    int64_t corr[SR_SPIKE_MAX_T];
    void *mem = NULL;
    if (posix_memalign(&mem, 64, sizeof(__m256i) * stride * (size_t)T) != 0) return 0;
    __m256i *mk = mem;
    // every row's masks and spike counts, once per call
    for (int32_t t = 0; t < T; t++) {
        int64_t np = 0;
        for (int32_t b = 0; b < nw; b++) {
            const uint32_t p = x->bits[stride * (size_t)t + (size_t)b], q = x->bits[stride * (size_t)t + (size_t)nw + (size_t)b];
            mk[stride * (size_t)t + 2 * (size_t)b] = sr_mask_bytes_avx2(p);
            mk[stride * (size_t)t + 2 * (size_t)b + 1] = sr_mask_bytes_avx2(q);
            np += __builtin_popcount(p) - __builtin_popcount(q);
        }
        corr[t] = np * 128;
    }
    _Alignas(32) uint8_t biased[SR_ROWS_MAX_IN];
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    // The chosen rows are scattered over the head's codes (28 MB for SmolLM2), so each one is
    // a run of cache misses: the rows SR_ROWS_AHEAD ahead are prefetched while this one is summed.
    enum { SR_ROWS_AHEAD = 2 };
    for (int32_t i = 0; i < m && i < SR_ROWS_AHEAD; i++)
        for (int32_t j = 0; j < n; j += 64) __builtin_prefetch(codes + (size_t)rows[i] * (size_t)n + j);
    for (int32_t i = 0; i < m; i++) {
        const int8_t *row = codes + (size_t)rows[i] * (size_t)n;
        if (i + SR_ROWS_AHEAD < m)
            for (int32_t j = 0; j < n; j += 64) __builtin_prefetch(codes + (size_t)rows[i + SR_ROWS_AHEAD] * (size_t)n + j);
        int32_t j = 0;
        for (; j + 32 <= n; j += 32)
            _mm256_store_si256((__m256i *)(void *)(biased + j),
                               _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(const void *)(row + j)), flip));
        for (; j < nw * 32; j++) biased[j] = j < n ? (uint8_t)(row[j] ^ (int8_t)0x80) : 0;   // masks are 0 past n
        sums[i] = sr_spike_acc_row_i8_avx2(biased, mk, corr, nw, T, x->encoding);
    }
    free(mem);
    return 1;
}
#endif

int sr_spike_rows_i8_sums_(const int8_t *codes, const sr_spike_planes *x, const int32_t *rows, int32_t m,
                           int64_t *sums) {
#if SR_SPIKE_X86
    if (sr_spike_simd_level_() >= SR_SPIKE_SIMD_AVX2) return sr_rows_i8_sums_avx2(codes, x, rows, m, sums);
#endif
    (void)codes; (void)x; (void)rows; (void)m; (void)sums;
    return 0;
}
