/* The raw SVI fit's padded rows and its pick of each slice's best start, in C (included by
 * _svi_lm.c; no Python here).
 *
 * Contract (svi_lm.py; tests/models/test_svi_rows.py checks it against the numpy paths):
 * - svi_row: one slice's usable quotes as a padded row, with its band terms -- the cells of
 *   svi._clean_all, svi._pad and band.make_band (SVI's objective; least squares on mids
 *   where the slice has no bid/ask IVs), every operation in numpy's order so that the bits
 *   agree. The padding differs from numpy's (weightless there too): it costs nothing.
 * - score: svi._cost_at's objective and RMSE of one start, with numpy's pairwise sums.
 *
 * Why native: on 10-60 quotes a slice these were some hundred numpy calls a batch whose
 * per-call overhead, not their arithmetic, was most of the fit's Python cost.
 */
#ifndef STREAMER_SVI_ROWS_H
#define STREAMER_SVI_ROWS_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../_numpy_order.h"

#define MIN_HALF_SPREAD 0.0025 /* band.MIN_HALF_SPREAD */

/* np.sort's order: NaN last */
static int cmp_double(const void *pa, const void *pb) {
    const double x = *(const double *)pa, y = *(const double *)pb;
    if (isnan(x))
        return isnan(y) ? 0 : 1;
    if (isnan(y))
        return -1;
    return (x > y) - (x < y);
}

/* median.row_median of ``count`` values (sorted in place); ``empty`` for none */
static double median_of(double *v, Py_ssize_t count, double empty) {
    if (count <= 0)
        return empty;
    qsort(v, (size_t)count, sizeof(double), cmp_double);
    return 0.5 * (v[(count - 1) / 2] + v[count / 2]);
}

/* _clean_all's usable point: finite k + iv + w, iv > 0, w >= 0 */
static int usable(double k, double iv, double w) { return isfinite(k + iv + w) && iv > 0.0 && w >= 0.0; }

typedef struct {
    const double *k, *iv, *w, *bid, *ask; /* w, bid, ask: NULL when the slice has none */
    Py_ssize_t n;
} SliceIn;

typedef struct {
    double *k, *iv, *sqrt_w, *centre, *lower, *upper, *band_w, *pull_w, *tail, *target;
    uint8_t *valid;
} RowOut;

typedef struct {
    double t, inv_t, n_valid, lo, hi, span, centre_k;
} RowStats;

/* One slice's row of width ``m`` (its usable points first, then padding) and its stats;
 * ``scratch`` holds 5 m doubles. pull, margin, tail: the objective of a banded slice. */
static void svi_row(const SliceIn *s, double t, Py_ssize_t m, double pull, double margin,
                    double tail, RowOut *o, RowStats *st, double *scratch) {
    double *lo = scratch, *hi = scratch + m, *half = scratch + 2 * m, *inv_h = scratch + 3 * m;
    double *sort = scratch + 4 * m;
    const int banded = s->bid != NULL || s->ask != NULL;
    Py_ssize_t c = 0;
    for (Py_ssize_t j = 0; j < s->n && c < m; j++) {
        const double w = s->w ? s->w[j] : 1.0;
        if (!usable(s->k[j], s->iv[j], w))
            continue;
        o->k[c] = s->k[j];
        o->iv[c] = s->iv[j];
        o->sqrt_w[c] = sqrt(w);
        double b = s->bid ? s->bid[j] : NAN, a = s->ask ? s->ask[j] : NAN;
        lo[c] = isfinite(b) && b > 0.0 ? b : NAN;
        hi[c] = isfinite(a) && a > 0.0 ? a : NAN;
        c++;
    }
    /* band.make_band: u = sqrt(w) (w >= 0 here); every usable mid is finite */
    Py_ssize_t n_both = 0, n_quoted = 0;
    for (Py_ssize_t j = 0; j < c; j++) {
        const double u = o->sqrt_w[j] > 0.0 ? o->sqrt_w[j] : 0.0, mid = o->iv[j]; /* not -0 */
        const int has_mid = isfinite(mid);
        if (!banded) {
            o->centre[j] = o->lower[j] = o->upper[j] = has_mid ? mid : 0.0;
            o->band_w[j] = u;
            o->pull_w[j] = has_mid ? u * 1.0 : 0.0; /* the mids' default pull */
            o->tail[j] = INFINITY;
            continue;
        }
        const int both = isfinite(lo[j]) && isfinite(hi[j]) && hi[j] >= lo[j];
        o->centre[j] = both ? 0.5 * (lo[j] + hi[j]) : (has_mid ? mid : 0.0);
        half[j] = both ? 0.5 * (hi[j] - lo[j]) : NAN;
        if (both)
            sort[n_both++] = half[j];
    }
    if (banded) {
        const double fill = median_of(sort, n_both, 0.01);
        for (Py_ssize_t j = 0; j < c; j++) {
            double h = isnan(half[j]) ? fill : half[j];
            h = h > MIN_HALF_SPREAD ? h : MIN_HALF_SPREAD;
            inv_h[j] = 1.0 / h;
            if (isfinite(o->iv[j]) || !isnan(half[j]))
                sort[n_quoted++] = inv_h[j];
        }
        const double scale = median_of(sort, n_quoted, 1.0);
        for (Py_ssize_t j = 0; j < c; j++) {
            const int both = !isnan(half[j]), quoted = isfinite(o->iv[j]) || both;
            const double u = o->sqrt_w[j] > 0.0 ? o->sqrt_w[j] : 0.0, centre = o->centre[j];
            const double inward = both ? margin * 0.5 * (hi[j] - lo[j]) : 0.0;
            const double cap_lo = quoted ? centre : INFINITY, cap_hi = quoted ? centre : -INFINITY;
            const double l = lo[j] + inward, h = hi[j] - inward;
            o->lower[j] = isfinite(lo[j]) ? (l < cap_lo ? l : cap_lo) : -INFINITY;
            o->upper[j] = isfinite(hi[j]) ? (h > cap_hi ? h : cap_hi) : INFINITY;
            o->band_w[j] = u * inv_h[j];
            o->pull_w[j] = quoted ? u * pull * scale : 0.0;
            o->tail[j] = u > 0.0 ? u * tail : INFINITY;
        }
    }
    st->lo = INFINITY;
    st->hi = -INFINITY;
    for (Py_ssize_t j = 0; j < c; j++) {
        o->valid[j] = 1;
        o->target[j] = o->pull_w[j] > 0.0 ? o->centre[j] : o->iv[j]; /* the seeds' target */
        st->lo = o->k[j] < st->lo ? o->k[j] : st->lo;
        st->hi = o->k[j] > st->hi ? o->k[j] : st->hi;
    }
    for (Py_ssize_t j = c; j < m; j++) { /* weightless padding at k = 0, vol 1 */
        o->k[j] = 0.0;
        o->iv[j] = o->target[j] = 1.0;
        o->sqrt_w[j] = o->band_w[j] = o->pull_w[j] = o->centre[j] = 0.0;
        o->lower[j] = banded ? -INFINITY : 0.0;
        o->upper[j] = banded ? INFINITY : 0.0;
        o->tail[j] = INFINITY;
        o->valid[j] = 0;
    }
    const double d = st->hi - st->lo;
    st->t = t;
    st->inv_t = 1.0 / t;
    st->n_valid = (double)c;
    st->span = d > 0.05 || isnan(d) ? d : 0.05;
    st->centre_k = 0.5 * (st->lo + st->hi);
}

typedef struct {
    const double *k, *iv, *centre, *lower, *upper, *band_w, *pull_w, *tail;
    const uint8_t *valid;
    Py_ssize_t m;
    double inv_t, t, ln_span, centre_k, span, n_valid;
} ScoreRow;

/* np.maximum(x, 0): NaN stays (the priors of svi._residual_fn) */
static inline double nan_max0(double x) { return isnan(x) ? x : (x > 0.0 ? x : 0.0); }

/* One quote's term of the band objective (band.residuals) at the model vol ``vol``: the
 * pull toward the band's centre plus the distance outside it in half spreads, Huber's
 * beyond the tail (r^2 = 2 c |z| - c^2 there); ``*dr`` its derivative in vol. One home
 * for the LM (_svi_lm.c's evaluate) and the scoring of its starts (score, below). */
static inline double band_residual(double vol, double lower, double upper, double band_w,
                                   double tail, double pull_w, double centre, double *dr) {
    const int below = vol < lower, above = vol > upper;
    const double outside = (below ? vol - lower : 0.0) + (above ? vol - upper : 0.0);
    const double z = band_w * outside;
    const int far = fabs(z) > tail;
    const double c = far ? tail : 1.0;
    const double root_t = sqrt(far ? 2.0 * c * fabs(z) - c * c : 1.0);
    const double sign_z = z > 0.0 ? 1.0 : (z < 0.0 ? -1.0 : 0.0);
    *dr = pull_w + band_w * (far ? c / root_t : 1.0) * (double)(below | above);
    return pull_w * (vol - centre) + (far ? sign_z * root_t : z);
}

/* svi._cost_at of one start: the objective (inf where the RMSE is not finite) and the
 * RMSE; a, m from theta, b, rho, sigma from numpy (its exp and tanh: their bits).
 * ``sq`` holds m + 2 doubles. */
static void score(const ScoreRow *row, const double *theta, double b, double rho, double sigma,
                  double w_floor, double sigma_prior, double *sq, double *cost, double *rmse) {
    const double a = theta[0], m = theta[3], sigma2 = sigma * sigma;
    for (Py_ssize_t j = 0; j < row->m; j++) {
        const double x = row->k[j] - m;
        const double root = sqrt(x * x + sigma2);
        double w = a + b * (rho * x + root);
        if (w < w_floor) /* np.maximum: NaN stays */
            w = w_floor;
        const double vol = sqrt(w * row->inv_t);
        double dr;
        const double r = band_residual(vol, row->lower[j], row->upper[j], row->band_w[j],
                                       row->tail[j], row->pull_w[j], row->centre[j], &dr);
        sq[j] = r * r;
    }
    const double r_sigma = sigma_prior * nan_max0(theta[4] - row->ln_span);
    const double r_m = sigma_prior * nan_max0(fabs((m - row->centre_k) / row->span) - 1.0);
    sq[row->m] = r_sigma * r_sigma;
    sq[row->m + 1] = r_m * r_m;
    const double total = 0.0 + pairwise_sum(sq, row->m + 2);
    for (Py_ssize_t j = 0; j < row->m; j++) {
        const double x = row->k[j] - m;
        const double err = sqrt((a + b * (rho * x + sqrt(x * x + sigma * sigma))) / row->t) - row->iv[j];
        sq[j] = row->valid[j] ? err * err : 0.0;
    }
    *rmse = sqrt((0.0 + pairwise_sum(sq, row->m)) / row->n_valid);
    *cost = isfinite(*rmse) ? total : INFINITY;
}

/* lexsort's order of costs: NaN after everything, ties to the earlier start */
static int cost_less(double x, double y) { return x < y || (isnan(y) && !isnan(x)); }

#endif
