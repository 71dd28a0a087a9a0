// sr-spike-refine.c - the refined head: exact fine spike sums for a few chosen rows.
//
// The head's coarse train gives every logit; the rows that matter for the next-token
// distribution (the largest coarse logits) are then recomputed from a finer train of the
// same input. Those rows' codes are read row-major (a row's 576 codes are one contiguous
// stretch; in the packed tiles they are one byte in each of 576 lines), one event at a time.
#include "sr-spike-impl.h"

#include <math.h>
#include <stdlib.h>

// k-th largest (0-based) of v[0..n) by quickselect (median of three), counting comparisons.
static float kth_largest(float *v, int32_t n, int32_t k, uint64_t *cmp) {
    int32_t lo = 0, hi = n - 1;
    while (lo < hi) {
        const int32_t mid = lo + (hi - lo) / 2;
        // median of three into v[mid], then used as the pivot
        if (v[mid] > v[lo]) { float t = v[mid]; v[mid] = v[lo]; v[lo] = t; }
        if (v[hi] > v[lo]) { float t = v[hi]; v[hi] = v[lo]; v[lo] = t; }
        if (v[hi] > v[mid]) { float t = v[hi]; v[hi] = v[mid]; v[mid] = t; }
        *cmp += 3;
        const float piv = v[mid];
        int32_t i = lo, j = hi;
        while (i <= j) {   // descending: larger values to the left
            while (v[i] > piv) { i++; (*cmp)++; }
            while (v[j] < piv) { j--; (*cmp)++; }
            *cmp += 2;
            if (i <= j) {
                float t = v[i]; v[i] = v[j]; v[j] = t;
                i++;
                j--;
            }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else return v[k];
    }
    return v[k];
}

// Rows r with y[r] >= tau in row order (NaN fails every comparison: never a candidate).
static int32_t candidates(const float *y, int32_t n, float tau, int32_t *cand) {
    int32_t nc = 0;
    for (int32_t r = 0; r < n; r++)
        if (y[r] >= tau) cand[nc++] = r;
    return nc;
}

uint64_t sr_spike_top_rows(const float *y, int32_t n, int32_t *m_io, float *scratch, int32_t *cand,
                           int32_t *rows) {
    int32_t m = *m_io;
    *m_io = 0;
    if (m <= 0 || n <= 0) return 0;
    uint64_t cmp = 0;
    // Candidates: the rows at or above a lower bound tau taken from a strided sample (a
    // quantile with margin), so that the exact selection runs on a few m values, not on n.
    // tau = -inf (every non-NaN row) when the sample cannot bound it.
    float tau = -INFINITY;
    if (n >= 4096 && (int64_t)m * 8 <= n) {
        const int32_t stride = n / 2048;
        int32_t ns = 0;
        for (int32_t r = 0; r < n; r += stride)
            if (y[r] == y[r]) scratch[ns++] = y[r];
        cmp += (uint64_t)ns;
        const int64_t q = ((int64_t)m * ns * 3) / ((int64_t)n * 2) + 8;   // 1.5x the share, + 8
        if (q < ns) tau = kth_largest(scratch, ns, (int32_t)q, &cmp);
    }
    int32_t nc = candidates(y, n, tau, cand);
    cmp += (uint64_t)n;
    if (nc < m && tau != -INFINITY) {       // the sample misjudged: take every row
        nc = candidates(y, n, -INFINITY, cand);
        cmp += (uint64_t)n;
    }
    if (m > nc) m = nc;
    if (m == 0) return cmp;
    for (int32_t i = 0; i < nc; i++) scratch[i] = y[cand[i]];
    const float thr = kth_largest(scratch, nc, m - 1, &cmp);
    // candidates above the threshold (at most m - 1), then those equal to it by row while there
    // is room (candidates are in row order)
    int32_t above = 0;
    for (int32_t i = 0; i < nc; i++) above += y[cand[i]] > thr;
    int32_t ties = m - above, c = 0;
    for (int32_t i = 0; i < nc && c < m; i++) {
        const int32_t r = cand[i];
        cmp++;
        if (y[r] > thr) { rows[c++] = r; continue; }
        cmp++;
        if (y[r] == thr && ties > 0) { rows[c++] = r; ties--; }
    }
    cmp += (uint64_t)nc;
    *m_io = c;
    return cmp;
}

sr_status sr_spike_rows_i8(const int8_t *codes, const float *row_scale, int32_t n_rows,
                           const sr_spike_planes *x, const int32_t *rows, int32_t m, float *y) {
    if (!codes || !row_scale || !x || (!rows && m > 0) || !y || m < 0)
        return sr_fail(SR_ERR_INVALID_ARG, "spike rows: null buffer or m < 0");
    if (x->encoding == SR_SPIKE_BINARY || x->n_groups != 1)
        return sr_fail(SR_ERR_UNSUPPORTED, "spike rows: needs one activation scale and no binary offset");
    if (!x->has_events) return sr_fail(SR_ERR_INVALID_ARG, "spike rows: no event lists (sr_spike_planes_events first)");
    const int32_t T = x->T, n = x->n, enc = x->encoding;
    const uint32_t *ev = x->ev;   // (j << 1) | (sigma < 0), per plane from ev_start[t]
    for (int32_t i = 0; i < m; i++)
        if (rows[i] < 0 || rows[i] >= n_rows)
            return sr_fail(SR_ERR_INVALID_ARG, "spike rows: row %d outside 0..%d", rows[i], n_rows - 1);
    // The rows' exact sums: from the planes' masks at the AVX2 level (sr-spike-opt.c), else
    // four rows per pass over the events (each event loaded once for all four).
    int64_t *sums = malloc(sizeof(int64_t) * (size_t)(m > 0 ? m : 1));
    if (!sums) return sr_fail(SR_ERR_NO_MEMORY, "spike rows: out of memory for %d rows", m);
    if (!sr_spike_rows_i8_sums_(codes, x, rows, m, sums))
        for (int32_t i = 0; i < m; i += 4) {
            const int32_t g = m - i < 4 ? m - i : 4;
            const int8_t *w[4];
            for (int32_t u = 0; u < 4; u++) w[u] = codes + (size_t)rows[i + (u < g ? u : 0)] * (size_t)n;
            int64_t acc[4] = {0, 0, 0, 0};
            for (int32_t t = 0; t < T; t++) {
                int32_t P[4] = {0, 0, 0, 0};   // |sum| <= 128 n per plane: int32 is exact
                for (int32_t k = x->ev_start[t]; k < x->ev_start[t + 1]; k++) {
                    const uint32_t j = ev[k] >> 1;
                    const int32_t neg = -(int32_t)(ev[k] & 1u);   // 0 or -1: (v ^ neg) - neg negates
                    for (int32_t u = 0; u < 4; u++) P[u] += ((int32_t)w[u][j] ^ neg) - neg;
                }
                const int hs = sr_spike_horner_shift(enc, t), minus = sr_spike_plane_sign(enc, t) < 0;
                for (int32_t u = 0; u < 4; u++) {
                    if (hs) acc[u] += acc[u];
                    acc[u] = minus ? acc[u] - P[u] : acc[u] + P[u];
                }
            }
            for (int32_t u = 0; u < g; u++) sums[i + u] = acc[u];
        }
    for (int32_t i = 0; i < m; i++) {
        if (sums[i] > INT32_MAX || sums[i] < INT32_MIN) {
            free(sums);
            return sr_fail(SR_ERR_UNSUPPORTED, "spike rows: row %d leaves int32", rows[i]);
        }
        const int32_t A = (int32_t)sums[i];
        sr_spike_rescale_rows(&y[rows[i]], &A, &row_scale[rows[i]], x->scale[0], 1);
    }
    free(sums);
    return SR_OK;
}
