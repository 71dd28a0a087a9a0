// sr-quant.h - ggml-compatible block quantization: types, dequantization, activation
// quantization, dot products and the dense (quantized) matmul of the exact engine.
//
// Numerics follow llama.cpp's x86 CPU backend (AVX2 build): the activation of a quantized
// matmul is quantized into ggml's vec_dot_type for the weight type, and each dot product sums
// in the same order as ggml's AVX2 kernel. The portable C path and the AVX2 path are
// bit-identical (tests force the portable path with sr_set_simd_level(0) to compare).
#ifndef SPIKERUN_SR_QUANT_H
#define SPIKERUN_SR_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sr-common.h"
#include "sr-status.h"

#ifdef __cplusplus
extern "C" {
#endif

struct sr_pool;

/// Tensor element types, numbered like ggml's `ggml_type`.
typedef enum sr_type {
    SR_TYPE_F32  = 0,
    SR_TYPE_F16  = 1,
    SR_TYPE_Q4_0 = 2,
    SR_TYPE_Q4_1 = 3,
    SR_TYPE_Q5_0 = 6,
    SR_TYPE_Q5_1 = 7,
    SR_TYPE_Q8_0 = 8,
    SR_TYPE_Q8_1 = 9,   // activation-only (vec_dot_type of Q4_1 and Q5_1)
    SR_TYPE_Q2_K = 10,
    SR_TYPE_Q3_K = 11,
    SR_TYPE_Q4_K = 12,
    SR_TYPE_Q5_K = 13,
    SR_TYPE_Q6_K = 14,
    SR_TYPE_Q8_K = 15,  // activation-only (vec_dot_type of the K-quants)
    SR_TYPE_BF16 = 30,
} sr_type;

/// True for the weight types the kernels accept: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1,
/// Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (Q8_1 and Q8_K only occur as activation types). Takes
/// an int so that any ggml type id read from a file can be checked.
SR_API bool sr_type_supported(int type);

/// Elements per block (1 for F32/F16/BF16, 32 for Q4_0..Q8_1, 256 for the K-quants);
/// 0 for an unknown type.
SR_API int64_t sr_type_block_elems(sr_type t);

/// Bytes per block (e.g. Q4_1: 20, Q5_0: 22, Q8_0: 34, Q2_K: 84, Q4_K: 144); 0 for an unknown type.
SR_API size_t sr_type_block_bytes(sr_type t);

/// Bytes of a row of n elements; n must be a multiple of sr_type_block_elems(t).
SR_API size_t sr_row_bytes(sr_type t, int64_t n);

/// IEEE half -> float (exact).
SR_API float sr_fp16_to_fp32(uint16_t h);

/// float -> IEEE half, round-to-nearest-even like F16C's vcvtps2ph (NaN stays NaN).
SR_API uint16_t sr_fp32_to_fp16(float f);

/// bfloat16 -> float (exact).
SR_API float sr_bf16_to_fp32(uint16_t h);

/// float -> bfloat16 like ggml's GGML_FP32_TO_BF16 (round-to-nearest-even, NaN quieted).
SR_API uint16_t sr_fp32_to_bf16(float f);

/// Dequantizes n elements (a multiple of the block size) of type t into dst; the same values
/// as ggml's dequantize_row_* (any type above, including Q8_1/Q8_K).
SR_API void sr_dequantize_row(sr_type t, const void *src, float *dst, int64_t n);

/// The activation type a weight type is multiplied with (ggml's vec_dot_type):
/// Q4_0/Q5_0/Q8_0->Q8_0, Q4_1/Q5_1->Q8_1, Q2_K..Q6_K->Q8_K, F16->F16, BF16->BF16, F32->F32.
SR_API sr_type sr_act_type_for(sr_type weight_type);

/// Bytes of one quantized activation row of n elements for weight_type.
SR_API size_t sr_act_row_bytes(sr_type weight_type, int64_t n);

/// Quantizes the float activation row x (n elements) into sr_act_type_for(weight_type) at
/// dst (sr_act_row_bytes(weight_type, n) bytes), rounding as llama.cpp's x86 CPU build does.
SR_API void sr_quantize_act_row(sr_type weight_type, const float *x, void *dst, int64_t n);

/// Dot product of one weight row and one activation row (already quantized with
/// sr_quantize_act_row), n elements, in ggml's AVX2 summation order.
SR_API float sr_vec_dot(sr_type weight_type, int64_t n, const void *w_row, const void *act_row);

/// out[r] = sr_vec_dot(SR_TYPE_F16, n, x + r * stride, y) bit for bit, for r < rows: many F16
/// dots against one vector (attention's keys x query and V rows x probabilities) without a
/// call per dot; y's halves are widened once for several rows.
SR_API void sr_vec_dot_f16_rows(int64_t n, const uint16_t *x, size_t stride, int64_t rows,
                                const uint16_t *y, float *out);

/// The same products in the order llama.cpp's x86 build uses when a matrix product has at
/// least two columns (a batch of >= 2 tokens): llamafile's tinyBLAS, one 8-lane FMA accumulator
/// per row and a horizontal sum at the end. When n % 8 != 0 tinyBLAS declines and ggml falls
/// back to its dot product, so this does too (= sr_vec_dot_f16_rows).
SR_API void sr_f16_rows_gemm(int64_t n, const uint16_t *x, size_t stride, int64_t rows,
                             const uint16_t *y, float *out);

/// Softmax numerator as llama.cpp's CPU build computes it: y[i] = exp(x[i] - max) with ggml's
/// vector expf (ggml_v_expf: not libm's expf, up to ~2 ulp apart), returning the sum of the y
/// in ggml's order: groups of 8 summed in float by the AVX2 horizontal add, the groups
/// accumulated in double. A short last group counts as padded with exp(-inf) = 0, which is
/// what llama.cpp's masked KV columns contribute (its rows are padded to a multiple of 8).
SR_API double sr_softmax_exp(int64_t n, float *y, const float *x, float max);

/// y[i] = silu(x[i]) * g[i] with ggml's vector silu (x / (1 + ggml_v_expf(-x))), bit for bit
/// as ggml_vec_swiglu_f32 on AVX2. y may alias x.
SR_API void sr_swiglu(int64_t n, float *y, const float *x, const float *g);

/// y[t*n_out + o] = sr_vec_dot(row o of w, activation row t) for o < n_out, t < n_tok.
/// w: (n_out, n_in) of weight_type, rows of sr_row_bytes(weight_type, n_in) bytes;
/// act: n_tok rows of sr_act_row_bytes(weight_type, n_in) bytes; y: (n_tok, n_out) floats.
/// Output rows are split over the pool's threads (pool may be NULL: single-threaded). The
/// result does not depend on the thread count.
SR_API void sr_matmul(struct sr_pool *pool, sr_type weight_type, const void *w, int64_t n_in,
                      int64_t n_out, const void *act, int64_t n_tok, float *y);

/// Up to SR_MATMUL_MULTI_MAX products that read activations of the same width in ONE pool run
/// (q, k and v of a block; gate and up): ys[i] = sr_matmul(types[i], ws[i], n_in, n_outs[i],
/// acts[i], n_tok) bit for bit, with one dispatch instead of `count`.
#define SR_MATMUL_MULTI_MAX 4
SR_API void sr_matmul_multi(struct sr_pool *pool, int count, const sr_type *types,
                            const void *const *ws, int64_t n_in, const int64_t *n_outs,
                            const void *const *acts, int64_t n_tok, float *const *ys);

/// NUMA: moves the pages of each pool node's output rows of w (the rows sr_matmul and
/// sr_matmul_f32 hand to that node's threads) to that node. A no-op on one node or a fake
/// topology; best effort otherwise (w may be a read-only file mapping).
SR_API sr_status sr_matmul_place(struct sr_pool *pool, sr_type weight_type, const void *w,
                                 int64_t n_in, int64_t n_out);

/// Float reference path ("exact float32"): activations x (n_tok, n_in) stay f32, each weight
/// row is dequantized on the fly and the dot is taken in f32 in a fixed summation order
/// (independent of SIMD level and thread count). y: (n_tok, n_out).
SR_API void sr_matmul_f32(struct sr_pool *pool, sr_type weight_type, const void *w,
                          int64_t n_in, int64_t n_out, const float *x, int64_t n_tok, float *y);

/// Current kernel level: 0 portable C, 1 AVX2 (+FMA+F16C), 2 the same kernels with AVX-512
/// VNNI (+VL, BW), 3 the same with AVX-VNNI (VEX, no AVX-512). All levels give bit-identical
/// results. The default is the best level the CPU has: 2, else 3, else 1, else 0
/// (`SPIKERUN_SIMD=N` in the environment picks another).
SR_API int sr_simd_level(void);

/// True when level `lvl` can run on this CPU (0 always can; 2 and 3 are independent).
SR_API bool sr_simd_level_available(int lvl);

/// Forces a kernel level (tests use 0 to compare): `lvl` if available, else the best
/// available one below it in the order 2, 3, 1, 0; above 3 means the default.
SR_API void sr_set_simd_level(int lvl);

#ifdef __cplusplus
}
#endif

#endif // SPIKERUN_SR_QUANT_H
