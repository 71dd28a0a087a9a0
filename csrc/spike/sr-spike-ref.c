// sr-spike-ref.c - the oracle. Plain loops, in the order of the definitions of
// docs/spike-algorithms.md §4: for every time step t, for every input j that spikes, for every
// output row o, add or subtract the weight code into the plane sum P_t; then combine the plane
// sums with their weights c_t (int64, checked against int32); then the shared rescale of
// sr-spike.h. Nothing here is optimized, on purpose: sr-spike-opt.c must match it bit for bit.
#include "sr-spike-impl.h"

#include <stdlib.h>
#include <string.h>

sr_status sr_spike_matvec_ref_(const sr_spike_weights *w, const sr_spike_planes *x, int32_t o0,
                               int32_t o1, float *y, int32_t *acc, sr_spike_stats *stats,
                               int sx0_override, float sx0) {
    sr_status st = sr_spike_matvec_check(w, x, o0, o1);
    if (st != SR_OK) return st;
    if (!y) return sr_fail(SR_ERR_INVALID_ARG, "spike matvec: null output");
    const int32_t R = o1 - o0;
    const int block_fmt = sr_spike_is_block_format_(w->format);
    const int32_t S = sr_spike_segments(w, x);                 // integer segments
    const int32_t seg_len = block_fmt ? 32 : (x->n_groups > 1 ? x->group : w->n_in);
    const int32_t enc = x->encoding, T = x->T, z = x->offset;
    if (R == 0) {
        sr_spike_fill_stats_(stats, x, o0, o1);
        return SR_OK;
    }

    int64_t *P = calloc((size_t)S * (size_t)R, sizeof *P);      // plane sums P_t[s][o]
    int64_t *A = calloc((size_t)S * (size_t)R, sizeof *A);      // A[s][o] = sum_t c_t P_t
    int32_t *counts = calloc((size_t)x->n, sizeof *counts);
    if (!P || !A || !counts) {
        free(P); free(A); free(counts);
        return sr_fail(SR_ERR_NO_MEMORY, "spike matvec ref: out of memory");
    }

    for (int32_t t = 0; t < T; t++) {
        memset(P, 0, (size_t)S * (size_t)R * sizeof *P);
        for (int32_t j = 0; j < x->n; j++) {
            int32_t sigma = sr_spike_planes_sigma(x, j, t);
            if (sigma == 0) continue;                          // silent: no work
            int32_t s = j / seg_len;
            for (int32_t o = o0; o < o1; o++) {
                int32_t q = sr_spike_weights_code(w, o, j);
                if (sigma > 0) P[(size_t)s * R + (o - o0)] += q;
                else P[(size_t)s * R + (o - o0)] -= q;
            }
        }
        int64_t c = (int64_t)sr_spike_plane_sign(enc, t) * ((int64_t)1 << sr_spike_plane_shift(enc, T, t));
        for (size_t i = 0; i < (size_t)S * (size_t)R; i++) A[i] += c * P[i];
    }
    if (enc == SR_SPIKE_BINARY && z != 0) {                    // W(n + z) - z W 1
        for (int32_t s = 0; s < S; s++)
            for (int32_t o = o0; o < o1; o++) {
                int64_t rs = 0;
                for (int32_t j = s * seg_len; j < (s + 1) * seg_len && j < w->n_in; j++) rs += sr_spike_weights_code(w, o, j);
                A[(size_t)s * R + (o - o0)] -= (int64_t)z * rs;
            }
    }
    for (size_t i = 0; i < (size_t)S * (size_t)R; i++) {
        if (A[i] > INT32_MAX || A[i] < INT32_MIN) {  // cannot happen after the bound check
            free(P); free(A); free(counts);
            return sr_fail(SR_ERR_UNSUPPORTED, "spike matvec ref: int32 overflow despite the bound (bug)");
        }
    }
    if (acc)
        for (int32_t s = 0; s < S; s++)
            for (int32_t o = o0; o < o1; o++) acc[(size_t)s * (size_t)w->n_out + (size_t)o] = (int32_t)A[(size_t)s * R + (o - o0)];

    // Float step: the shared rescale of sr-spike.h, one row at a time.
    sr_spike_planes_to_counts(x, counts);
    const int grouped = x->n_groups > 1;
    const float s0 = sx0_override ? sx0 : x->scale[0];
    for (int32_t o = o0; o < o1; o++) {
        if (block_fmt) {
            float yacc = 0.0f;
            int64_t aD = 0, aM = 0;   // integer block scales (one scale per token: matvec_check)
            for (int32_t b = 0; b < w->n_blocks; b++) {
                int32_t N = 0;
                for (int32_t j = b * 32; j < b * 32 + 32 && j < x->n; j++) N += counts[j];
                int32_t Ab = (int32_t)A[(size_t)b * R + (o - o0)];
                size_t bi = sr_spike_blockvec_index(w, o, b);
                if (w->int_scales) {
                    aD += (int64_t)(int16_t)w->d[bi] * Ab;
                    aM += (int64_t)(int16_t)w->m[bi] * N;
                    continue;
                }
                float sxg = grouped ? x->scale[(b * 32) / x->group] : 1.0f;
                float d = sr_spike_f16_to_f32(w->d[bi]), m = w->m ? sr_spike_f16_to_f32(w->m[bi]) : 0.0f;
                sr_spike_rescale_block(&yacc, &Ab, &d, w->m ? &m : NULL, N, sxg, grouped, 1);
            }
            if (w->int_scales) sr_spike_rescale_int_finish(&y[o], &aD, &aM, &w->row_scale[o], &w->row_scale_m[o], s0, 1);
            else sr_spike_rescale_block_finish(&y[o], &yacc, s0, grouped, 1);
        } else if (!grouped) {
            int32_t Ao = (int32_t)A[o - o0];
            sr_spike_rescale_rows(&y[o], &Ao, &w->row_scale[o], s0, 1);
        } else {
            float yacc = 0.0f;
            for (int32_t s = 0; s < S; s++) {
                int32_t As = (int32_t)A[(size_t)s * R + (o - o0)];
                sr_spike_rescale_rows_group(&yacc, &As, x->scale[s], 1);
            }
            sr_spike_rescale_rows_finish(&y[o], &yacc, &w->row_scale[o], 1);
        }
    }
    free(P); free(A); free(counts);
    sr_spike_fill_stats_(stats, x, o0, o1);
    return SR_OK;
}

sr_status sr_spike_matvec_ref(const sr_spike_weights *w, const sr_spike_planes *x, int32_t o0,
                              int32_t o1, float *y, int32_t *acc, sr_spike_stats *stats) {
    return sr_spike_matvec_ref_(w, x, o0, o1, y, acc, stats, 0, 0.0f);
}
