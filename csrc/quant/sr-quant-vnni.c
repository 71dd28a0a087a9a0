// sr-quant-vnni.c - the AVX2 kernels compiled for AVX-512 VNNI machines (SIMD level 2):
// bit-identical to level 1, fewer instructions (see the note at the top of sr-quant-avx2.c).
#define SR_QUANT_VNNI 1
#include "sr-quant-avx2.c"
