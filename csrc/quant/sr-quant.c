// sr-quant.c - public quant API: type table, conversions, dequantization, kernel dispatch and
// the threaded dense matmuls of the exact engine.
#include "sr-quant-impl.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "spikerun/sr-pool.h"

// ---------------------------------------------------------------- types

typedef struct { int64_t blck; size_t bytes; } type_info;

static type_info info_of(sr_type t) {
    switch (t) {
    case SR_TYPE_F32: return (type_info){1, 4};
    case SR_TYPE_F16: return (type_info){1, 2};
    case SR_TYPE_BF16: return (type_info){1, 2};
    case SR_TYPE_Q4_0: return (type_info){SR_QK4_0, sizeof(sr_block_q4_0)};
    case SR_TYPE_Q4_1: return (type_info){SR_QK4_1, sizeof(sr_block_q4_1)};
    case SR_TYPE_Q5_0: return (type_info){SR_QK5_0, sizeof(sr_block_q5_0)};
    case SR_TYPE_Q5_1: return (type_info){SR_QK5_1, sizeof(sr_block_q5_1)};
    case SR_TYPE_Q8_0: return (type_info){SR_QK8_0, sizeof(sr_block_q8_0)};
    case SR_TYPE_Q8_1: return (type_info){SR_QK8_1, sizeof(sr_block_q8_1)};
    case SR_TYPE_Q2_K: return (type_info){SR_QK_K, sizeof(sr_block_q2_K)};
    case SR_TYPE_Q3_K: return (type_info){SR_QK_K, sizeof(sr_block_q3_K)};
    case SR_TYPE_Q4_K: return (type_info){SR_QK_K, sizeof(sr_block_q4_K)};
    case SR_TYPE_Q5_K: return (type_info){SR_QK_K, sizeof(sr_block_q5_K)};
    case SR_TYPE_Q6_K: return (type_info){SR_QK_K, sizeof(sr_block_q6_K)};
    case SR_TYPE_Q8_K: return (type_info){SR_QK_K, sizeof(sr_block_q8_K)};
    }
    return (type_info){0, 0};
}

bool sr_type_supported(int type) {
    switch (type) {
    case SR_TYPE_F32: case SR_TYPE_F16: case SR_TYPE_BF16: case SR_TYPE_Q4_0: case SR_TYPE_Q4_1:
    case SR_TYPE_Q5_0: case SR_TYPE_Q5_1: case SR_TYPE_Q8_0: case SR_TYPE_Q2_K: case SR_TYPE_Q3_K:
    case SR_TYPE_Q4_K: case SR_TYPE_Q5_K: case SR_TYPE_Q6_K:
        return true;
    default:
        return false;
    }
}

int64_t sr_type_block_elems(sr_type t) { return info_of(t).blck; }
size_t sr_type_block_bytes(sr_type t) { return info_of(t).bytes; }

size_t sr_row_bytes(sr_type t, int64_t n) {
    const type_info ti = info_of(t);
    return ti.blck ? (size_t)(n / ti.blck) * ti.bytes : 0;
}

sr_type sr_act_type_for(sr_type w) {
    switch (w) {
    case SR_TYPE_Q4_0: case SR_TYPE_Q5_0: case SR_TYPE_Q8_0: return SR_TYPE_Q8_0;
    case SR_TYPE_Q4_1: case SR_TYPE_Q5_1: return SR_TYPE_Q8_1;
    case SR_TYPE_Q2_K: case SR_TYPE_Q3_K: case SR_TYPE_Q4_K: case SR_TYPE_Q5_K: case SR_TYPE_Q6_K:
        return SR_TYPE_Q8_K;
    case SR_TYPE_F16: return SR_TYPE_F16;
    case SR_TYPE_BF16: return SR_TYPE_BF16;
    default: return SR_TYPE_F32;
    }
}

size_t sr_act_row_bytes(sr_type w, int64_t n) { return sr_row_bytes(sr_act_type_for(w), n); }

// ---------------------------------------------------------------- scalar conversions

float sr_fp16_to_fp32(uint16_t h) { return sr_h2f(h); }
uint16_t sr_fp32_to_fp16(float f) { return sr_f2h(f); }
float sr_bf16_to_fp32(uint16_t h) { return sr_bf2f(h); }
uint16_t sr_fp32_to_bf16(float f) { return sr_f2bf(f); }

// ---------------------------------------------------------------- dequantization
// Same arithmetic as ggml's dequantize_row_* (ggml-base is built without FMA: no fusion).

static void deq_q4_0(const void *src, float *y, int64_t n) {
    const sr_block_q4_0 *x = src;
    for (int64_t i = 0; i < n / SR_QK4_0; ++i, y += SR_QK4_0) {
        const float d = sr_h2f(sr_rd16(&x[i].d));
        for (int j = 0; j < 16; ++j) {
            y[j] = (float)((x[i].qs[j] & 0x0F) - 8) * d;
            y[j + 16] = (float)((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static void deq_q4_1(const void *src, float *y, int64_t n) {
    const sr_block_q4_1 *x = src;
    for (int64_t i = 0; i < n / SR_QK4_1; ++i, y += SR_QK4_1) {
        const float d = sr_h2f(sr_rd16(&x[i].d));
        const float m = sr_h2f(sr_rd16(&x[i].m));
        for (int j = 0; j < 16; ++j) {
            const float a = (float)(x[i].qs[j] & 0x0F) * d;
            const float b = (float)(x[i].qs[j] >> 4) * d;
            y[j] = a + m;
            y[j + 16] = b + m;
        }
    }
}

// Q5_0 / Q5_1: element j takes bit j of qh as its 5th bit (j + 16 for the high nibbles).
static void deq_q5_0(const void *src, float *y, int64_t n) {
    const sr_block_q5_0 *x = src;
    for (int64_t i = 0; i < n / SR_QK5_0; ++i, y += SR_QK5_0) {
        const float d = sr_h2f(sr_rd16(&x[i].d));
        uint32_t qh;
        memcpy(&qh, x[i].qh, 4);
        for (int j = 0; j < 16; ++j) {
            const int x0 = (int)((x[i].qs[j] & 0x0F) | (((qh >> j) & 1u) << 4)) - 16;
            const int x1 = (int)((x[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4)) - 16;
            y[j] = (float)x0 * d;
            y[j + 16] = (float)x1 * d;
        }
    }
}

static void deq_q5_1(const void *src, float *y, int64_t n) {
    const sr_block_q5_1 *x = src;
    for (int64_t i = 0; i < n / SR_QK5_1; ++i, y += SR_QK5_1) {
        const float d = sr_h2f(sr_rd16(&x[i].d));
        const float m = sr_h2f(sr_rd16(&x[i].m));
        uint32_t qh;
        memcpy(&qh, x[i].qh, 4);
        for (int j = 0; j < 16; ++j) {
            const float a = (float)((x[i].qs[j] & 0x0F) | (((qh >> j) & 1u) << 4)) * d;
            const float b = (float)((x[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4)) * d;
            y[j] = a + m;
            y[j + 16] = b + m;
        }
    }
}

static void deq_q8_0(const void *src, float *y, int64_t n) {
    const sr_block_q8_0 *x = src;
    for (int64_t i = 0; i < n / SR_QK8_0; ++i, y += SR_QK8_0) {
        const float d = sr_h2f(sr_rd16(&x[i].d));
        for (int j = 0; j < 32; ++j) y[j] = (float)x[i].qs[j] * d;
    }
}

static void deq_q8_1(const void *src, float *y, int64_t n) {
    const sr_block_q8_1 *x = src;
    for (int64_t i = 0; i < n / SR_QK8_1; ++i, y += SR_QK8_1) {
        const float d = sr_h2f(sr_rd16(&x[i].d));
        for (int j = 0; j < 32; ++j) y[j] = (float)x[i].qs[j] * d;
    }
}

// Element 128*h + 32*k + l (h < 2, k < 4, l < 32) is bits 2k..2k+1 of qs[32*h + l], with
// scale / min byte 8*h + 2*k + l/16.
static void deq_q2_K(const void *src, float *y, int64_t n) {
    const sr_block_q2_K *x = src;
    for (int64_t i = 0; i < n / SR_QK_K; ++i) {
        const float d = sr_h2f(sr_rd16(&x[i].d));
        const float min = sr_h2f(sr_rd16(&x[i].dmin));
        for (int e = 0; e < SR_QK_K; ++e) {
            const int h = e / 128, k = (e / 32) % 4, l = e % 32;
            const uint8_t sc = x[i].scales[e / 16];
            const float dl = d * (float)(sc & 0xF), ml = min * (float)(sc >> 4);
            const float a = dl * (float)((x[i].qs[32 * h + l] >> (2 * k)) & 3);
            *y++ = a - ml;
        }
    }
}

// Q3_K: the same 2-bit layout; bit e/32 of hmask[e % 32] clear means -4.
static void deq_q3_K(const void *src, float *y, int64_t n) {
    const sr_block_q3_K *x = src;
    for (int64_t i = 0; i < n / SR_QK_K; ++i) {
        const float d = sr_h2f(sr_rd16(&x[i].d));
        int8_t sc[16];
        sr_scales_q3_K(x[i].scales, sc);
        for (int e = 0; e < SR_QK_K; ++e) {
            const int h = e / 128, k = (e / 32) % 4, l = e % 32;
            const int q = ((x[i].qs[32 * h + l] >> (2 * k)) & 3) - ((x[i].hmask[l] >> (e / 32)) & 1 ? 0 : 4);
            const float dl = d * (float)sc[e / 16];
            *y++ = dl * (float)q;
        }
    }
}

static void deq_q4_K(const void *src, float *y, int64_t n) {
    const sr_block_q4_K *x = src;
    for (int64_t i = 0; i < n / SR_QK_K; ++i) {
        const uint8_t *q = x[i].qs;
        const float d = sr_h2f(sr_rd16(&x[i].d));
        const float min = sr_h2f(sr_rd16(&x[i].dmin));
        int is = 0;
        for (int j = 0; j < SR_QK_K; j += 64, q += 32, is += 2) {
            uint8_t sc, m;
            sr_scale_min_k4(is + 0, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            sr_scale_min_k4(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; ++l) { const float a = d1 * (float)(q[l] & 0xF); *y++ = a - m1; }
            for (int l = 0; l < 32; ++l) { const float a = d2 * (float)(q[l] >> 4); *y++ = a - m2; }
        }
    }
}

static void deq_q5_K(const void *src, float *y, int64_t n) {
    const sr_block_q5_K *x = src;
    for (int64_t i = 0; i < n / SR_QK_K; ++i) {
        const uint8_t *ql = x[i].qs;
        const uint8_t *qh = x[i].qh;
        const float d = sr_h2f(sr_rd16(&x[i].d));
        const float min = sr_h2f(sr_rd16(&x[i].dmin));
        int is = 0;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0; j < SR_QK_K; j += 64, ql += 32, is += 2) {
            uint8_t sc, m;
            sr_scale_min_k4(is + 0, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            sr_scale_min_k4(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; ++l) {
                const float a = d1 * (float)((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0));
                *y++ = a - m1;
            }
            for (int l = 0; l < 32; ++l) {
                const float a = d2 * (float)((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0));
                *y++ = a - m2;
            }
            u1 = (uint8_t)(u1 << 2);
            u2 = (uint8_t)(u2 << 2);
        }
    }
}

static void deq_q6_K(const void *src, float *y, int64_t n) {
    const sr_block_q6_K *x = src;
    for (int64_t i = 0; i < n / SR_QK_K; ++i) {
        const float d = sr_h2f(sr_rd16(&x[i].d));
        const uint8_t *ql = x[i].ql;
        const uint8_t *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        for (int nn = 0; nn < SR_QK_K; nn += 128, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; ++l) {
                const int is = l / 16;
                const int8_t q1 = (int8_t)((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int8_t q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int8_t q3 = (int8_t)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int8_t q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l + 0] = d * (float)sc[is + 0] * (float)q1;
                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
        }
    }
}

static void deq_q8_K(const void *src, float *y, int64_t n) {
    const sr_block_q8_K *x = src;
    for (int64_t i = 0; i < n / SR_QK_K; ++i) {
        float d;
        memcpy(&d, &x[i].d, 4);
        for (int j = 0; j < SR_QK_K; ++j) *y++ = d * (float)x[i].qs[j];
    }
}

void sr_dequantize_row(sr_type t, const void *src, float *dst, int64_t n) {
    switch (t) {
    case SR_TYPE_F32: memcpy(dst, src, (size_t)n * 4); break;
    case SR_TYPE_F16: { const uint16_t *h = src; for (int64_t i = 0; i < n; ++i) dst[i] = sr_h2f(sr_rd16(h + i)); } break;
    case SR_TYPE_BF16: { const uint16_t *h = src; for (int64_t i = 0; i < n; ++i) dst[i] = sr_bf2f(sr_rd16(h + i)); } break;
    case SR_TYPE_Q4_0: deq_q4_0(src, dst, n); break;
    case SR_TYPE_Q4_1: deq_q4_1(src, dst, n); break;
    case SR_TYPE_Q5_0: deq_q5_0(src, dst, n); break;
    case SR_TYPE_Q5_1: deq_q5_1(src, dst, n); break;
    case SR_TYPE_Q8_0: deq_q8_0(src, dst, n); break;
    case SR_TYPE_Q8_1: deq_q8_1(src, dst, n); break;
    case SR_TYPE_Q2_K: deq_q2_K(src, dst, n); break;
    case SR_TYPE_Q3_K: deq_q3_K(src, dst, n); break;
    case SR_TYPE_Q4_K: deq_q4_K(src, dst, n); break;
    case SR_TYPE_Q5_K: deq_q5_K(src, dst, n); break;
    case SR_TYPE_Q6_K: deq_q6_K(src, dst, n); break;
    case SR_TYPE_Q8_K: deq_q8_K(src, dst, n); break;
    }
}

// ---------------------------------------------------------------- dispatch

// Levels: 0 portable, 1 AVX2, 2 AVX-512 VNNI, 3 AVX-VNNI without AVX-512. Not nested (an Ice
// Lake Xeon has 2 but not 3, an Alder Lake 3 but not 2), so availability is a bit mask and the
// default is the best one present: 2, else 3, else 1, else 0.
static sr_kernels g_kern[4];      // written once under g_once
static atomic_int g_level = -1;   // -1 = not initialized
static unsigned g_avail = 1;      // bit l: level l can run here
static int g_best;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static int level_at_most(int lvl) {   // the best available level <= lvl, in preference order
    static const int order[] = {2, 3, 1, 0};
    if (lvl >= 0 && lvl <= 3 && (g_avail >> lvl) & 1u) return lvl;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (order[i] < lvl && ((g_avail >> order[i]) & 1u)) return order[i];
    return 0;
}

static void init_once(void) {
    sr_kernels_init_portable(&g_kern[0]);
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c") &&
        sr_kernels_init_avx2(&g_kern[1])) {
        g_avail |= 1u << 1;
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
            __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni") &&
            sr_kernels_init_vnni(&g_kern[2]))
            g_avail |= 1u << 2;
        if (__builtin_cpu_supports("avxvnni") && sr_kernels_init_avxvnni(&g_kern[3]))
            g_avail |= 1u << 3;
    }
#endif
    g_best = level_at_most(2) == 2 ? 2 : level_at_most(3);
    const char *env = getenv("SPIKERUN_SIMD");   // debugging aid: force another level
    int lvl = g_best;
    if (env && env[0] >= '0' && env[0] <= '9' && env[1] == '\0') lvl = level_at_most(env[0] - '0');
    atomic_store(&g_level, lvl);
}

static inline const sr_kernels *kern(void) {
    int l = atomic_load_explicit(&g_level, memory_order_acquire);
    if (l < 0) {
        pthread_once(&g_once, init_once);
        l = atomic_load(&g_level);
    }
    return &g_kern[l];
}

int sr_simd_level(void) {
    (void)kern();
    return atomic_load(&g_level);
}

bool sr_simd_level_available(int lvl) {
    (void)kern();
    return lvl >= 0 && lvl <= 3 && ((g_avail >> lvl) & 1u);
}

void sr_set_simd_level(int lvl) {
    (void)kern();
    atomic_store(&g_level, lvl > 3 ? g_best : level_at_most(lvl));
}

// ---------------------------------------------------------------- row ops

void sr_quantize_act_row(sr_type w, const float *x, void *dst, int64_t n) {
    const sr_quant_fn q = kern()->quant[sr_act_type_for(w)];
    if (q) q(x, dst, n);
}

float sr_vec_dot(sr_type w, int64_t n, const void *w_row, const void *act_row) {
    const sr_tile_fn f = (unsigned)w < 32 ? kern()->tile[w] : NULL;
    if (!f) return 0.0f;
    float out;
    f(n, w_row, 0, 1, act_row, 0, 1, &out, 0);
    return out;
}

void sr_vec_dot_f16_rows(int64_t n, const uint16_t *x, size_t stride, int64_t rows, const uint16_t *y, float *out) {
    if (rows > 0) kern()->f16rows(n, x, stride, rows, y, out);
}

void sr_f16_rows_gemm(int64_t n, const uint16_t *x, size_t stride, int64_t rows, const uint16_t *y, float *out) {
    if (rows <= 0) return;
    if (n % 8) kern()->f16rows(n, x, stride, rows, y, out);   // tinyBLAS declines: ggml's vec_dot
    else kern()->f16rows_gemm(n, x, stride, rows, y, out);
}

double sr_softmax_exp(int64_t n, float *y, const float *x, float max) {
    return n > 0 ? kern()->softmax_exp(n, y, x, max) : 0.0;
}

void sr_swiglu(int64_t n, float *y, const float *x, const float *g) {
    if (n > 0) kern()->swiglu(n, y, x, g);
}

// ---------------------------------------------------------------- matmul

#define SR_ROW_CHUNK 16   // rows per tile group: the weight rows stay in L1 while tokens stream

typedef struct {
    sr_tile_fn tile;
    int tr, tt;           // tile shape: rows x tokens
    sr_fdot_fn fdot;
    sr_type wt;
    const char *w; size_t w_rb;
    const char *act; size_t a_rb;
    const float *x;
    int64_t n_in, n_out, n_tok;
    float *y;
    sr_pool *pool;
} mm_ctx;

// Thread ith owns a contiguous range of output rows (multiple of SR_ROW_CHUNK) inside its NUMA
// node's block (sr_pool_thread_rows), so results do not depend on the thread count and each
// node streams only the rows placed on it (sr_numa_place_rows with the same alignment).
static void row_range(sr_pool *pool, int64_t n_out, int ith, int64_t *r0, int64_t *r1) {
    sr_pool_thread_rows(pool, n_out, SR_ROW_CHUNK, ith, r0, r1);
}

static void mm_worker(void *vctx, int ith, int nth) {
    const mm_ctx *c = vctx;
    int64_t r0, r1;
    (void)nth;
    row_range(c->pool, c->n_out, ith, &r0, &r1);
    for (int64_t rc = r0; rc < r1; rc += SR_ROW_CHUNK) {
        const int64_t re = rc + SR_ROW_CHUNK < r1 ? rc + SR_ROW_CHUNK : r1;
        for (int64_t t = 0; t < c->n_tok; t += c->tt) {
            const int na = (int)(c->n_tok - t < c->tt ? c->n_tok - t : c->tt);
            const char *a = c->act + (size_t)t * c->a_rb;
            for (int64_t o = rc; o < re; o += c->tr) {
                const int nr = (int)(re - o < c->tr ? re - o : c->tr);
                c->tile(c->n_in, c->w + (size_t)o * c->w_rb, c->w_rb, nr, a, c->a_rb, na,
                        c->y + t * c->n_out + o, (size_t)c->n_out);
            }
        }
    }
}

void sr_matmul(struct sr_pool *pool, sr_type wt, const void *w, int64_t n_in, int64_t n_out,
               const void *act, int64_t n_tok, float *y) {
    if (n_out <= 0 || n_tok <= 0 || !sr_type_supported(wt)) return;
    const sr_kernels *k = kern();
    mm_ctx c = {
        .tile = k->tile[wt],
        .tr = n_tok == 1 ? k->tile_rows1[wt] : k->tile_rows[wt],
        .tt = n_tok == 1 ? 1 : k->tile_toks[wt],
        .wt = wt, .w = w, .w_rb = sr_row_bytes(wt, n_in),
        .act = act, .a_rb = sr_act_row_bytes(wt, n_in),
        .n_in = n_in, .n_out = n_out, .n_tok = n_tok, .y = y, .pool = pool,
    };
    sr_pool_run(pool, mm_worker, &c);
}

sr_status sr_matmul_place(struct sr_pool *pool, sr_type wt, const void *w, int64_t n_in, int64_t n_out) {
    if (!sr_type_supported(wt) || !w || n_out <= 0) return SR_OK;
    return sr_numa_place_rows(pool, w, sr_row_bytes(wt, n_in), n_out, SR_ROW_CHUNK);
}

typedef struct {
    mm_ctx m[SR_MATMUL_MULTI_MAX];
    int count;
} mm_multi;

static void mm_multi_worker(void *vctx, int ith, int nth) {
    const mm_multi *mm = vctx;
    for (int i = 0; i < mm->count; i++) mm_worker((void *)&mm->m[i], ith, nth);
}

void sr_matmul_multi(struct sr_pool *pool, int count, const sr_type *types, const void *const *ws, int64_t n_in,
                     const int64_t *n_outs, const void *const *acts, int64_t n_tok, float *const *ys) {
    if (n_tok <= 0 || count <= 0) return;
    const sr_kernels *k = kern();
    mm_multi mm;
    mm.count = 0;
    for (int i = 0; i < count; i++) {
        if (mm.count == SR_MATMUL_MULTI_MAX) {   // more than fit: run what we have, continue
            sr_pool_run(pool, mm_multi_worker, &mm);
            mm.count = 0;
        }
        const sr_type wt = types[i];
        if (n_outs[i] <= 0 || !sr_type_supported(wt)) continue;
        mm.m[mm.count++] = (mm_ctx){
            .tile = k->tile[wt],
            .tr = n_tok == 1 ? k->tile_rows1[wt] : k->tile_rows[wt],
            .tt = n_tok == 1 ? 1 : k->tile_toks[wt],
            .wt = wt, .w = ws[i], .w_rb = sr_row_bytes(wt, n_in),
            .act = acts[i], .a_rb = sr_act_row_bytes(wt, n_in),
            .n_in = n_in, .n_out = n_outs[i], .n_tok = n_tok, .y = ys[i], .pool = pool,
        };
    }
    if (mm.count) sr_pool_run(pool, mm_multi_worker, &mm);
}

static void mmf_worker(void *vctx, int ith, int nth) {
    const mm_ctx *c = vctx;
    int64_t r0, r1;
    (void)nth;
    row_range(c->pool, c->n_out, ith, &r0, &r1);
    if (r0 >= r1) return;
    float stackbuf[4096];
    float *wrow = c->n_in <= 4096 ? stackbuf : malloc((size_t)c->n_in * sizeof(float));
    if (!wrow) return;
    for (int64_t o = r0; o < r1; ++o) {
        sr_dequantize_row(c->wt, c->w + (size_t)o * c->w_rb, wrow, c->n_in);
        for (int64_t t = 0; t < c->n_tok; ++t)
            c->y[t * c->n_out + o] = c->fdot(c->n_in, wrow, c->x + t * c->n_in);
    }
    if (wrow != stackbuf) free(wrow);
}

void sr_matmul_f32(struct sr_pool *pool, sr_type wt, const void *w, int64_t n_in, int64_t n_out,
                   const float *x, int64_t n_tok, float *y) {
    if (n_out <= 0 || n_tok <= 0 || !sr_type_supported(wt)) return;
    mm_ctx c = {
        .fdot = kern()->fdot, .wt = wt, .w = w, .w_rb = sr_row_bytes(wt, n_in),
        .x = x, .n_in = n_in, .n_out = n_out, .n_tok = n_tok, .y = y, .pool = pool,
    };
    sr_pool_run(pool, mmf_worker, &c);
}
