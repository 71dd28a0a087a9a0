// sr-spike-impl.h - private glue between sr-spike-encode.c, sr-spike-ref.c and sr-spike-opt.c.
#ifndef SPIKERUN_SR_SPIKE_IMPL_H
#define SPIKERUN_SR_SPIKE_IMPL_H

#include "spikerun/sr-spike.h"

// Every float op in csrc/spike is a separate rounding (see sr-spike.h).
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define SR_SPIKE_X86 1
#else
#define SR_SPIKE_X86 0
#endif

// Current SIMD level (resolved; never SR_SPIKE_SIMD_AUTO).
int sr_spike_simd_level_(void);

// Quantize n values: counts[j] = sr_spike_round_clip(x[j] * inv, th, clip) (dispatching).
void sr_spike_quantize_(const float *x, int32_t n, float inv, float th, int32_t clip,
                        int32_t *counts);
// counts[j] = sr_spike_round_thrifty(x[j] * inv, th, lo, hi, clip) (dispatching).
void sr_spike_quantize_thrifty_(const float *x, int32_t n, float inv, float th, float lo, float hi, int32_t clip,
                                int32_t *counts);
// sr_spike_sum_abs (dispatching; same value at every SIMD level).
float sr_spike_sum_abs_(const float *x, int32_t n);
// Max of |x| bits over n values (dispatching).
uint32_t sr_spike_max_abs_bits_(const float *x, int32_t n);

// Sign-magnitude counts (already checked to fit T planes) -> bits and derived fields of an
// already set-up planes object. Returns 1 if done, 0 if no fast path (use the generic one).
int sr_spike_planes_sm_fast_(sr_spike_planes *p, const int32_t *counts, int32_t n, int32_t T);
// NAF counts -> bits and derived fields (AVX2); 0 when not taken (generic path, which also
// reports a count that does not fit T planes).
int sr_spike_planes_naf_fast_(sr_spike_planes *p, const int32_t *counts, int32_t n, int32_t T);

// The refined head's row sums (sr_spike_rows_i8 before its overflow check and rescale) at the
// AVX2 level from the planes' masks; 0 when not taken (the scalar event loop runs instead).
int sr_spike_rows_i8_sums_(const int8_t *codes, const sr_spike_planes *x, const int32_t *rows, int32_t m,
                           int64_t *sums);

// Row-format matvec with an explicit activation scale sx0 overriding x->scale[0]
// (attention scores: sx0 = s_q * kq_scale). sx0_override = 0 uses x->scale. hot = 1: the
// weights are cached (no software prefetch; same results).
sr_status sr_spike_matvec_opt_(const sr_spike_weights *w, const sr_spike_planes *x, int32_t o0,
                               int32_t o1, float *y, int32_t *acc, sr_spike_stats *stats,
                               int sx0_override, float sx0, int hot);
sr_status sr_spike_matvec_ref_(const sr_spike_weights *w, const sr_spike_planes *x, int32_t o0,
                               int32_t o1, float *y, int32_t *acc, sr_spike_stats *stats,
                               int sx0_override, float sx0);

// Stats of a call over rows [o0, o1) (accounting rule of sr-spike.h).
static inline void sr_spike_fill_stats_(sr_spike_stats *st, const sr_spike_planes *x, int32_t o0,
                                        int32_t o1) {
    if (!st) return;
    uint64_t fan = (uint64_t)(o1 - o0);
    st->sops = x->spikes * fan;
    st->horner_adds = (uint64_t)x->T * fan;
    int first = o0 == 0 && o1 > 0;  // the non-empty slice starting at row 0
    st->spikes = first ? x->spikes : 0;
    st->activations = first ? (uint64_t)x->n : 0;
}

static inline int sr_spike_is_block_format_(int32_t fmt) {
    return fmt == SR_SPIKE_W_Q4_1 || fmt == SR_SPIKE_W_Q8_0;
}

#endif // SPIKERUN_SR_SPIKE_IMPL_H
