// sr-quant-avxvnni.c - the AVX2 kernels compiled for AVX-VNNI machines without AVX-512
// (SIMD level 3): bit-identical to level 1, the VEX vpdpbusd for the u8 x s8 pair sums (see
// the note at the top of sr-quant-avx2.c).
#define SR_QUANT_AVXVNNI 1
#include "sr-quant-avx2.c"
