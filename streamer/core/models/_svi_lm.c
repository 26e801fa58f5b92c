/* Raw SVI's Levenberg-Marquardt, every slice of a chain, in C.
 *
 * Contract (svi_lm.py; tests/core/test_svi_lm.py checks it against the numpy path):
 * for each problem, the iteration of batch_lm._minimise on svi._residual_fn's
 * residuals -- the band objective of band.py plus the two priors on sigma and m --
 * with the same parametrisation (a, ln b, atanh rho, m, ln sigma), the same damping,
 * acceptance and stopping rules, so the fits are those of the numpy path up to
 * rounding. One difference: a problem whose damped system is singular stops alone
 * (the batched numpy loop stops every problem then).
 *
 * Why native: a warm SVI slice converges in a handful of steps of a 5x5 system on
 * 30-60 quotes. In numpy each step is some forty whole-array calls whose overhead,
 * not their arithmetic, was the fit's cost (about 270 us a step for a chain); here a
 * step of a slice is a few microseconds, and the GIL is released while it runs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../_buffers.h"
#include "_svi_rows.h"

#define P 5 /* parameters: a, ln b, atanh rho, m, ln sigma */

typedef struct {
    const double *k, *centre, *lower, *upper, *band_w, *pull_w, *tail;
    Py_ssize_t m;     /* points per problem (padded) */
    double inv_t, ln_span, centre_k, span;
} Problem;

typedef struct {
    double sigma_prior, w_floor, tol, lambda0, lambda_min, lambda_max, step_tol;
    long max_iter;
} Settings;

/* Accumulate the cost |r|^2, J'J and J'r of one problem at theta. */
static void evaluate(const Problem *pr, const Settings *s, const double *theta, double *cost,
                     double jtj[P][P], double grad[P]) {
    const double a = theta[0], m = theta[3], rho = tanh(theta[2]);
    const double b = exp(theta[1]), sigma = exp(theta[4]), sigma2 = sigma * sigma;
    double c = 0.0, row[P];
    memset(jtj, 0, sizeof(double) * P * P);
    memset(grad, 0, sizeof(double) * P);
    for (Py_ssize_t j = 0; j < pr->m; j++) {
        const double x = pr->k[j] - m;
        const double root = sqrt(x * x + sigma2);
        const double smile = rho * x + root;
        double w = a + b * smile;
        if (w < s->w_floor) /* false for NaN: NaN propagates as numpy's maximum does */
            w = s->w_floor;
        const double vol = sqrt(w * pr->inv_t);
        double dr;
        const double r = band_residual(vol, pr->lower[j], pr->upper[j], pr->band_w[j],
                                       pr->tail[j], pr->pull_w[j], pr->centre[j], &dr);
        const double scale = 0.5 * dr * pr->inv_t / vol;
        const double b_scale = scale * b;
        row[0] = scale;
        row[1] = b_scale * smile;
        row[2] = b_scale * x * (1.0 - rho * rho);
        row[3] = -b_scale * (rho + x / root);
        row[4] = b_scale * sigma2 / root;
        c += r * r;
        for (int p = 0; p < P; p++) {
            grad[p] += row[p] * r;
            for (int q = 0; q <= p; q++)
                jtj[p][q] += row[p] * row[q];
        }
    }
    /* The priors: ln sigma beyond the log of the quoted span, m beyond one span from
     * the span's centre (svi._residual_fn says why). */
    const double beyond = theta[4] - pr->ln_span;
    const double r_sigma = s->sigma_prior * nan_max0(beyond);
    const double d_sigma = s->sigma_prior * (double)(beyond > 0.0);
    const double off = (m - pr->centre_k) / pr->span;
    const double m_beyond = fabs(off) - 1.0;
    const double r_m = s->sigma_prior * nan_max0(m_beyond);
    const double sign = off > 0.0 ? 1.0 : (off < 0.0 ? -1.0 : 0.0);
    const double d_m = s->sigma_prior * (double)(m_beyond > 0.0) * sign / pr->span;
    c += r_sigma * r_sigma + r_m * r_m;
    grad[4] += d_sigma * r_sigma;
    grad[3] += d_m * r_m;
    jtj[4][4] += d_sigma * d_sigma;
    jtj[3][3] += d_m * d_m;
    for (int p = 0; p < P; p++)
        for (int q = p + 1; q < P; q++)
            jtj[p][q] = jtj[q][p];
    *cost = c;
}

/* Solve the leading n x n system A x = y by Gaussian elimination with partial
 * pivoting (as LAPACK's gesv); 0 when A is singular. A and y are overwritten. */
static int solve_n(double a[P][P], double y[P], double x[P], int n) {
    for (int col = 0; col < n; col++) {
        int piv = col;
        for (int r = col + 1; r < n; r++)
            if (fabs(a[r][col]) > fabs(a[piv][col]))
                piv = r;
        if (a[piv][col] == 0.0)
            return 0;
        if (piv != col) {
            for (int q = 0; q < n; q++) {
                double t = a[col][q];
                a[col][q] = a[piv][q];
                a[piv][q] = t;
            }
            double t = y[col];
            y[col] = y[piv];
            y[piv] = t;
        }
        for (int r = col + 1; r < n; r++) {
            const double f = a[r][col] / a[col][col];
            for (int q = col; q < n; q++)
                a[r][q] -= f * a[col][q];
            y[r] -= f * y[col];
        }
    }
    for (int r = n - 1; r >= 0; r--) {
        double acc = y[r];
        for (int q = r + 1; q < n; q++)
            acc -= a[r][q] * x[q];
        x[r] = acc / a[r][r];
    }
    return 1;
}

/* The quasi-explicit seeds of one slice (svi._seed_grid): for each (m, sigma) of the
 * grid, the weighted linear least squares of w = a + d y + c sqrt(y^2 + 1),
 * y = (k - m) / sigma, to the target total variance, scored by its squared vol errors;
 * the n_seeds best as theta, with their scores (inf: no positive curvature). */
static void seed_slice(const double *k, const double *sqrt_w, const double *target_iv,
                       const uint8_t *valid, Py_ssize_t m_pts, double t, double lo, double hi, double span,
                       const double *grid_m, Py_ssize_t n_m, const double *grid_sigma,
                       Py_ssize_t n_sigma, Py_ssize_t n_seeds, double *theta, double *score) {
    for (Py_ssize_t s = 0; s < n_seeds; s++)
        score[s] = INFINITY;
    for (Py_ssize_t i = 0; i < n_m; i++) {
        const double m = lo + (hi - lo) * grid_m[i];
        for (Py_ssize_t j = 0; j < n_sigma; j++) {
            const double sigma = span * grid_sigma[j];
            double s1 = 0, sy = 0, sr = 0, syy = 0, syr = 0, st = 0, syt = 0, srt = 0;
            for (Py_ssize_t p = 0; p < m_pts; p++) {
                const double y = (k[p] - m) / sigma, root = sqrt(y * y + 1.0);
                const double w = sqrt_w[p] * sqrt_w[p];
                const double target = target_iv[p] * target_iv[p] * t;
                const double wy = w * y, wr = w * root;
                s1 += w; sy += wy; sr += wr; syy += wy * y; syr += wy * root;
                st += w * target; syt += wy * target; srt += wr * target;
            }
            double a[P][P], rhs[P], coef[P];
            const double n3[3][3] = {{s1, sy, sr}, {sy, syy, syr}, {sr, syr, syy + s1}};
            const double ridge = 1e-13 * (s1 + syy + syy + s1);
            for (int r = 0; r < 3; r++)
                for (int c = 0; c < 3; c++)
                    a[r][c] = n3[r][c] + (r == c ? ridge : 0.0);
            rhs[0] = st; rhs[1] = syt; rhs[2] = srt;
            if (!solve_n(a, rhs, coef, 3))
                continue;
            const double cc = coef[2];
            if (!(cc > 1e-10))
                continue;
            double rho = coef[1] / cc;
            if (rho < -0.99) rho = -0.99;
            if (rho > 0.99) rho = 0.99;
            double sc = 0.0;
            for (Py_ssize_t p = 0; p < m_pts; p++) {
                const double y = (k[p] - m) / sigma, root = sqrt(y * y + 1.0);
                const double err = sqrt((coef[0] + cc * (rho * y + root)) / t) - target_iv[p];
                if (isnan(err))
                    sc += valid[p] ? 1e3 : 0.0;
                else
                    sc += err * err * (sqrt_w[p] * sqrt_w[p]);
            }
            if (isnan(sc))
                continue;
            /* insert into the sorted best n_seeds (ties keep the earlier grid point) */
            Py_ssize_t at = n_seeds;
            while (at > 0 && sc < score[at - 1])
                at--;
            if (at == n_seeds)
                continue;
            for (Py_ssize_t q = n_seeds - 1; q > at; q--) {
                score[q] = score[q - 1];
                memcpy(theta + q * P, theta + (q - 1) * P, sizeof(double) * P);
            }
            const double bs = cc / sigma;
            score[at] = sc;
            theta[at * P + 0] = coef[0];
            theta[at * P + 1] = log(bs > 1e-10 ? bs : 1e-10);
            theta[at * P + 2] = atanh(rho);
            theta[at * P + 3] = m;
            theta[at * P + 4] = log(sigma);
        }
    }
}

/* batch_lm._minimise's iteration for one problem; theta is updated in place. */
static void minimise(const Problem *pr, const Settings *s, double *theta, int64_t *iterations,
                     int64_t *nfev, uint8_t *converged) {
    double cost, jtj[P][P], grad[P];
    double cost_t, jtj_t[P][P], grad_t[P], trial[P], step[P], damped[P][P], rhs[P];
    double lam = s->lambda0;
    int64_t its = 0, evals = 1;
    uint8_t conv = 0;
    evaluate(pr, s, theta, &cost, jtj, grad);
    if (isfinite(cost)) {
        for (long round = 0; round < 2 * s->max_iter; round++) {
            for (int p = 0; p < P; p++) {
                for (int q = 0; q < P; q++)
                    damped[p][q] = jtj[p][q];
                damped[p][p] += lam * (jtj[p][p] > 1e-12 ? jtj[p][p] : 1e-12);
                rhs[p] = -grad[p];
            }
            if (!solve_n(damped, rhs, step, P))
                break;
            double predicted = 0.0, step_max = 0.0;
            for (int p = 0; p < P; p++) {
                double js = 0.0;
                for (int q = 0; q < P; q++)
                    js += jtj[p][q] * step[q];
                predicted += step[p] * (grad[p] + grad[p] + js);
                if (fabs(step[p]) > step_max)
                    step_max = fabs(step[p]);
            }
            if (-predicted <= s->tol * cost) { /* nothing left to gain */
                conv = 1;
                break;
            }
            for (int p = 0; p < P; p++)
                trial[p] = theta[p] + step[p];
            evaluate(pr, s, trial, &cost_t, jtj_t, grad_t);
            evals++;
            const int accept = cost_t <= cost; /* false for NaN too */
            const int small = (cost - cost_t <= s->tol * cost_t) || step_max < s->step_tol;
            if (accept) {
                memcpy(theta, trial, sizeof trial);
                memcpy(jtj, jtj_t, sizeof jtj);
                memcpy(grad, grad_t, sizeof grad);
                cost = cost_t;
                its++;
                lam = lam / 3.0 > s->lambda_min ? lam / 3.0 : s->lambda_min;
            } else {
                lam *= 4.0;
            }
            if ((accept && small) || (!accept && lam > s->lambda_max)) {
                conv = 1;
                break;
            }
            if (its >= s->max_iter)
                break;
        }
    }
    *iterations = its;
    *nfev = evals;
    *converged = conv;
}

enum { A_K, A_CENTRE, A_LOWER, A_UPPER, A_BAND_W, A_PULL_W, A_TAIL, A_INV_T, A_LN_SPAN, A_CENTRE_K,
       A_SPAN, A_OWNER, A_THETA, A_ITER, A_NFEV, A_CONV, N_BUFS };
static const char *NAMES[N_BUFS] = {"k", "centre", "lower", "upper", "band_w", "pull_w",
                                    "tail", "inv_t", "ln_span", "centre_k", "span", "owner",
                                    "theta", "iterations", "nfev", "converged"};

/* The rows' shape from k and the per-row inv_t: n_rows rows of m points; 0 on error. */
static int row_shape(PyObject *k, PyObject *inv_t, Buf *bk, Buf *bt, Py_ssize_t *n_rows,
                     Py_ssize_t *m) {
    if (!get_buffer(k, bk, "k", 'f', 8, -1, 0) || !get_buffer(inv_t, bt, "inv_t", 'f', 8, -1, 0))
        return 0;
    *n_rows = bt->view.len / 8;
    const Py_ssize_t total = bk->view.len / 8;
    if (*n_rows <= 0 || total % *n_rows) {
        PyErr_SetString(PyExc_ValueError, "k: expected a row of points per inv_t");
        return 0;
    }
    *m = total / *n_rows;
    return 1;
}

/* Every owner a row: 0 (and a ValueError) if not. */
static int owners_ok(const int64_t *owner, Py_ssize_t n, Py_ssize_t n_rows) {
    for (Py_ssize_t i = 0; i < n; i++)
        if (owner[i] < 0 || owner[i] >= n_rows) {
            PyErr_SetString(PyExc_ValueError, "owner: expected row indices");
            return 0;
        }
    return 1;
}

static PyObject *lm(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != N_BUFS + 9) {
        PyErr_Format(PyExc_TypeError, "lm() takes %d arguments (%zd given)", N_BUFS + 9, nargs);
        return NULL;
    }
    const Py_ssize_t n = PyLong_AsSsize_t(args[N_BUFS]);
    Settings s;
    s.max_iter = PyLong_AsLong(args[N_BUFS + 1]);
    s.tol = PyFloat_AsDouble(args[N_BUFS + 2]);
    s.sigma_prior = PyFloat_AsDouble(args[N_BUFS + 3]);
    s.w_floor = PyFloat_AsDouble(args[N_BUFS + 4]);
    s.lambda0 = PyFloat_AsDouble(args[N_BUFS + 5]);
    s.lambda_min = PyFloat_AsDouble(args[N_BUFS + 6]);
    s.lambda_max = PyFloat_AsDouble(args[N_BUFS + 7]);
    s.step_tol = PyFloat_AsDouble(args[N_BUFS + 8]);
    if (PyErr_Occurred())
        return NULL;
    if (n <= 0) {
        PyErr_SetString(PyExc_ValueError, "n: expected at least one problem");
        return NULL;
    }
    Buf bufs[N_BUFS];
    memset(bufs, 0, sizeof bufs);
    PyObject *result = NULL;
    Py_ssize_t n_rows, m;
    if (!row_shape(args[A_K], args[A_INV_T], &bufs[A_K], &bufs[A_INV_T], &n_rows, &m))
        goto done;
    for (int i = A_K + 1; i < N_BUFS; i++) {
        if (i == A_INV_T)
            continue;
        Py_ssize_t count = i <= A_TAIL ? n_rows * m : i <= A_SPAN ? n_rows : i == A_THETA ? n * P : n;
        char kind = i == A_CONV ? 'b' : (i == A_OWNER || i == A_ITER || i == A_NFEV) ? 'i' : 'f';
        if (!get_buffer(args[i], &bufs[i], NAMES[i], kind, kind == 'b' ? 1 : 8, count, i >= A_THETA))
            goto done;
    }
    const double *col[A_OWNER];
    for (int i = 0; i < A_OWNER; i++)
        col[i] = (const double *)bufs[i].view.buf;
    const int64_t *owner = (const int64_t *)bufs[A_OWNER].view.buf;
    double *theta = (double *)bufs[A_THETA].view.buf;
    int64_t *iterations = (int64_t *)bufs[A_ITER].view.buf;
    int64_t *nfev = (int64_t *)bufs[A_NFEV].view.buf;
    uint8_t *converged = (uint8_t *)bufs[A_CONV].view.buf;
    if (!owners_ok(owner, n, n_rows))
        goto done;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        const Py_ssize_t r = owner[i], o = r * m;
        Problem pr = {col[A_K] + o, col[A_CENTRE] + o, col[A_LOWER] + o, col[A_UPPER] + o,
                      col[A_BAND_W] + o, col[A_PULL_W] + o, col[A_TAIL] + o, m, col[A_INV_T][r],
                      col[A_LN_SPAN][r], col[A_CENTRE_K][r], col[A_SPAN][r]};
        minimise(&pr, &s, theta + i * P, iterations + i, nfev + i, converged + i);
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    release_buffers(bufs, N_BUFS);
    return result;
}

/* -- the chain's rows (_svi_rows.h) -- */

#define N_SIDES 5 /* per slice: k, iv, weights, bid IVs, ask IVs */

/* Every slice's buffers (bufs[i * N_SIDES + side]; weights and bid/ask IVs may be None:
 * not held) from the five sequences; 0 (an exception set) on a bad item. */
static int slice_buffers(PyObject *const *seqs, Py_ssize_t n, Buf *bufs) {
    static const char *names[N_SIDES] = {"ks", "ivs", "weights", "bid_ivs", "ask_ivs"};
    for (int side = 0; side < N_SIDES; side++) {
        PyObject *fast = PySequence_Fast(seqs[side], "expected a sequence per slice");
        if (fast == NULL)
            return 0;
        int ok = PySequence_Fast_GET_SIZE(fast) == n;
        if (!ok)
            PyErr_Format(PyExc_ValueError, "%s: expected %zd slices", names[side], n);
        for (Py_ssize_t i = 0; ok && i < n; i++) {
            PyObject *item = PySequence_Fast_GET_ITEM(fast, i);
            if (side >= 2 && item == Py_None)
                continue;
            ok = get_buffer(item, &bufs[i * N_SIDES + side], names[side], 'f', 8, -1, 0);
        }
        Py_DECREF(fast);
        if (!ok)
            return 0;
    }
    return 1;
}

static SliceIn slice_in(const Buf *b) {
    SliceIn s;
    const double *p[N_SIDES];
    for (int side = 0; side < N_SIDES; side++)
        p[side] = b[side].held ? (const double *)b[side].view.buf : NULL;
    s.k = p[0], s.iv = p[1], s.w = p[2], s.bid = p[3], s.ask = p[4];
    s.n = b[0].view.len / 8;
    return s;
}

/* _clean_all's verdict on one slice: -1 bad time, -2 sizes differ, else its usable points */
static int64_t usable_count(const Buf *b, double t) {
    if (!(isfinite(t) && t > 0.0))
        return -1;
    for (int side = 1; side < N_SIDES; side++)
        if (b[side].held && b[side].view.len != b[0].view.len)
            return -2;
    const SliceIn s = slice_in(b);
    int64_t c = 0;
    for (Py_ssize_t j = 0; j < s.n; j++)
        c += usable(s.k[j], s.iv[j], s.w ? s.w[j] : 1.0);
    return c;
}

/* Shared by count and rows: the slices' buffers and their times. */
static Buf *take_slices(PyObject *const *args, Buf *bt, Py_ssize_t *n) {
    if (!get_buffer(args[N_SIDES], bt, "ts", 'f', 8, -1, 0))
        return NULL;
    *n = bt->view.len / 8;
    Buf *bufs = PyMem_Calloc((size_t)(*n > 0 ? *n : 1) * N_SIDES, sizeof(Buf));
    if (bufs == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    if (!slice_buffers(args, *n, bufs)) {
        release_buffers(bufs, (int)(*n * N_SIDES));
        PyMem_Free(bufs);
        return NULL;
    }
    return bufs;
}

static void free_slices(Buf *bufs, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n * N_SIDES; i++)
        if (bufs[i].held)
            PyBuffer_Release(&bufs[i].view);
    PyMem_Free(bufs);
}

static PyObject *count(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != N_SIDES + 2) {
        PyErr_Format(PyExc_TypeError, "count() takes %d arguments (%zd given)", N_SIDES + 2, nargs);
        return NULL;
    }
    Buf bt, bc;
    memset(&bt, 0, sizeof bt);
    memset(&bc, 0, sizeof bc);
    Py_ssize_t n;
    Buf *bufs = take_slices(args, &bt, &n);
    PyObject *result = NULL;
    if (bufs == NULL)
        goto done;
    if (get_buffer(args[N_SIDES + 1], &bc, "counts", 'i', 8, n, 1)) {
        const double *t = bt.view.buf;
        int64_t *counts = bc.view.buf;
        for (Py_ssize_t i = 0; i < n; i++)
            counts[i] = usable_count(bufs + i * N_SIDES, t[i]);
        result = Py_NewRef(Py_None);
    }
    free_slices(bufs, n);
done:
    release_buffers(&bt, 1);
    release_buffers(&bc, 1);
    return result;
}

enum { R_CELLS = N_SIDES + 1, R_KEEP, R_VALID, R_STATS, N_ROW_ARGS = R_STATS + 4 };

static PyObject *rows(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != N_ROW_ARGS) {
        PyErr_Format(PyExc_TypeError, "rows() takes %d arguments (%zd given)", N_ROW_ARGS, nargs);
        return NULL;
    }
    const double pull = PyFloat_AsDouble(args[R_STATS + 1]);
    const double margin = PyFloat_AsDouble(args[R_STATS + 2]);
    const double tail = PyFloat_AsDouble(args[R_STATS + 3]);
    if (PyErr_Occurred())
        return NULL;
    Buf bt, out[4];
    memset(&bt, 0, sizeof bt);
    memset(out, 0, sizeof out);
    Py_ssize_t n;
    double *scratch = NULL;
    Buf *bufs = take_slices(args, &bt, &n);
    PyObject *result = NULL;
    if (bufs == NULL)
        goto done;
    if (!get_buffer(args[R_CELLS], &out[0], "cells", 'f', 8, -1, 1)
        || !get_buffer(args[R_KEEP], &out[1], "keep", 'i', 8, -1, 0))
        goto done;
    const Py_ssize_t n_rows = out[1].view.len / 8;
    const Py_ssize_t m = n_rows ? out[0].view.len / 8 / (10 * n_rows) : 0;
    if (n_rows <= 0 || m <= 0 || out[0].view.len != 10 * n_rows * m * 8) {
        PyErr_SetString(PyExc_ValueError, "cells: expected 10 x len(keep) rows of points");
        goto done;
    }
    if (!get_buffer(args[R_VALID], &out[2], "valid", 'b', 1, n_rows * m, 1)
        || !get_buffer(args[R_STATS], &out[3], "stats", 'f', 8, 7 * n_rows, 1))
        goto done;
    const int64_t *keep = out[1].view.buf;
    const double *t = bt.view.buf;
    for (Py_ssize_t r = 0; r < n_rows; r++) {
        const int64_t got = keep[r] < 0 || keep[r] >= n ? -1
                          : usable_count(bufs + keep[r] * N_SIDES, t[keep[r]]);
        if (got < 0 || got > m) {
            PyErr_SetString(PyExc_ValueError, "keep: expected slices whose usable points fit a row");
            goto done;
        }
    }
    scratch = PyMem_Malloc(sizeof(double) * 5 * (size_t)m);
    if (scratch == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    double *cells = out[0].view.buf, *stats = out[3].view.buf;
    uint8_t *valid = out[2].view.buf;
    const Py_ssize_t plane = n_rows * m;
    for (Py_ssize_t r = 0; r < n_rows; r++) {
        double *c = cells + r * m;
        RowOut o = {c, c + plane, c + 2 * plane, c + 3 * plane, c + 4 * plane, c + 5 * plane,
                    c + 6 * plane, c + 7 * plane, c + 8 * plane, c + 9 * plane, valid + r * m};
        const SliceIn s = slice_in(bufs + keep[r] * N_SIDES);
        RowStats st;
        svi_row(&s, t[keep[r]], m, pull, margin, tail, &o, &st, scratch);
        const double row_stats[7] = {st.t, st.inv_t, st.n_valid, st.lo, st.hi, st.span, st.centre_k};
        for (int q = 0; q < 7; q++)
            stats[q * n_rows + r] = row_stats[q];
    }
    result = Py_NewRef(Py_None);
done:
    PyMem_Free(scratch);
    if (bufs != NULL)
        free_slices(bufs, n);
    release_buffers(&bt, 1);
    release_buffers(out, 4);
    return result;
}

/* -- each slice's best start (_svi_rows.h's score) -- */

enum { K_K, K_IV, K_CENTRE, K_LOWER, K_UPPER, K_BAND_W, K_PULL_W, K_TAIL, K_VALID, K_INV_T, K_T,
       K_LN_SPAN, K_CENTRE_K, K_SPAN, K_N_VALID, K_OWNER, K_THETA, K_B_SIGMA, K_RHO, K_ITER, K_NFEV,
       K_CONV, K_OUT, N_PICK_BUFS };
static const char *PICK_NAMES[N_PICK_BUFS] = {
    "k", "iv", "centre", "lower", "upper", "band_w", "pull_w", "tail", "valid", "inv_t", "t",
    "ln_span", "centre_k", "span", "n_valid", "owner", "theta", "b_sigma", "rho", "iterations",
    "nfev", "converged", "out"};
#define N_OUT_COLS 10 /* theta (5), cost, rmse, iterations, nfev over all starts, converged */

static PyObject *pick(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != N_PICK_BUFS + 2) {
        PyErr_Format(PyExc_TypeError, "pick() takes %d arguments (%zd given)", N_PICK_BUFS + 2,
                     nargs);
        return NULL;
    }
    const double w_floor = PyFloat_AsDouble(args[N_PICK_BUFS]);
    const double sigma_prior = PyFloat_AsDouble(args[N_PICK_BUFS + 1]);
    if (PyErr_Occurred())
        return NULL;
    Buf bufs[N_PICK_BUFS];
    memset(bufs, 0, sizeof bufs);
    PyObject *result = NULL;
    double *sq = NULL;
    Py_ssize_t n_rows, m;
    if (!row_shape(args[K_K], args[K_INV_T], &bufs[K_K], &bufs[K_INV_T], &n_rows, &m)
        || !get_buffer(args[K_OWNER], &bufs[K_OWNER], "owner", 'i', 8, -1, 0))
        goto done;
    const Py_ssize_t n = bufs[K_OWNER].view.len / 8;
    for (int i = K_IV; i < N_PICK_BUFS; i++) {
        if (i == K_INV_T || i == K_OWNER)
            continue;
        Py_ssize_t count = i <= K_VALID ? n_rows * m : i <= K_N_VALID ? n_rows
                         : i == K_THETA ? n * P : i == K_B_SIGMA ? 2 * n
                         : i == K_OUT ? n_rows * N_OUT_COLS : n;
        char kind = i == K_VALID || i == K_CONV ? 'b' : i == K_ITER || i == K_NFEV ? 'i' : 'f';
        if (!get_buffer(args[i], &bufs[i], PICK_NAMES[i], kind, kind == 'b' ? 1 : 8, count, i == K_OUT))
            goto done;
    }
    const int64_t *owner = bufs[K_OWNER].view.buf;
    if (!owners_ok(owner, n, n_rows))
        goto done;
    sq = PyMem_Malloc(sizeof(double) * (size_t)(m + 2));
    if (sq == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    const double *f[K_OUT];
    for (int i = 0; i < K_OUT; i++)
        f[i] = bufs[i].view.buf;
    const uint8_t *valid = bufs[K_VALID].view.buf, *conv = bufs[K_CONV].view.buf;
    const int64_t *its = bufs[K_ITER].view.buf, *nfev = bufs[K_NFEV].view.buf;
    double *out = bufs[K_OUT].view.buf;
    for (Py_ssize_t r = 0; r < n_rows * N_OUT_COLS; r++)
        out[r] = r % N_OUT_COLS == 8 ? 0.0 : NAN;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        const Py_ssize_t r = owner[i], o = r * m;
        const ScoreRow row = {f[K_K] + o, f[K_IV] + o, f[K_CENTRE] + o, f[K_LOWER] + o,
                              f[K_UPPER] + o, f[K_BAND_W] + o, f[K_PULL_W] + o, f[K_TAIL] + o,
                              valid + o, m, f[K_INV_T][r], f[K_T][r], f[K_LN_SPAN][r],
                              f[K_CENTRE_K][r], f[K_SPAN][r], f[K_N_VALID][r]};
        double cost, rmse;
        const double *th = f[K_THETA] + i * P;
        score(&row, th, f[K_B_SIGMA][2 * i], f[K_RHO][i], f[K_B_SIGMA][2 * i + 1], w_floor,
              sigma_prior, sq, &cost, &rmse);
        double *best = out + r * N_OUT_COLS;
        best[8] += (double)nfev[i];
        if (!isnan(best[7]) && !cost_less(cost, best[5]))
            continue; /* not the first start of its slice, nor below its best */
        memcpy(best, th, sizeof(double) * P);
        best[5] = cost;
        best[6] = rmse;
        best[7] = (double)its[i];
        best[9] = (double)conv[i];
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    PyMem_Free(sq);
    release_buffers(bufs, N_PICK_BUFS);
    return result;
}

enum { S_K, S_SQRT_W, S_TARGET, S_VALID, S_T, S_LO, S_HI, S_SPAN, S_GRID_M, S_GRID_SIGMA, S_THETA,
       S_SCORE, N_SEED_BUFS };
static const char *SEED_NAMES[N_SEED_BUFS] = {"k", "sqrt_w", "target_iv", "valid", "t", "lo",
                                              "hi", "span", "grid_m", "grid_sigma", "theta", "score"};

static PyObject *seeds(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != N_SEED_BUFS + 2) {
        PyErr_Format(PyExc_TypeError, "seeds() takes %d arguments (%zd given)",
                     N_SEED_BUFS + 2, nargs);
        return NULL;
    }
    const Py_ssize_t n = PyLong_AsSsize_t(args[N_SEED_BUFS]);
    const Py_ssize_t n_seeds = PyLong_AsSsize_t(args[N_SEED_BUFS + 1]);
    if (PyErr_Occurred())
        return NULL;
    if (n <= 0 || n_seeds <= 0) {
        PyErr_SetString(PyExc_ValueError, "n, n_seeds: expected at least one");
        return NULL;
    }
    Buf bufs[N_SEED_BUFS];
    memset(bufs, 0, sizeof bufs);
    PyObject *result = NULL;
    if (!get_buffer(args[S_K], &bufs[S_K], SEED_NAMES[S_K], 'f', 8, -1, 0)
        || !get_buffer(args[S_GRID_M], &bufs[S_GRID_M], SEED_NAMES[S_GRID_M], 'f', 8, -1, 0)
        || !get_buffer(args[S_GRID_SIGMA], &bufs[S_GRID_SIGMA], SEED_NAMES[S_GRID_SIGMA], 'f', 8, -1, 0))
        goto done;
    const Py_ssize_t total = bufs[S_K].view.len / 8;
    if (total % n) {
        PyErr_SetString(PyExc_ValueError, "k: expected n rows of points");
        goto done;
    }
    const Py_ssize_t m_pts = total / n;
    for (int i = S_SQRT_W; i < N_SEED_BUFS; i++) {
        if (i == S_GRID_M || i == S_GRID_SIGMA)
            continue;
        Py_ssize_t count = i <= S_VALID ? n * m_pts : i == S_THETA ? n * n_seeds * P
                         : i == S_SCORE ? n * n_seeds : n;
        char kind = i == S_VALID ? 'b' : 'f';
        if (!get_buffer(args[i], &bufs[i], SEED_NAMES[i], kind, kind == 'b' ? 1 : 8, count, i >= S_THETA))
            goto done;
    }
    const double *k = bufs[S_K].view.buf, *sqrt_w = bufs[S_SQRT_W].view.buf;
    const double *target = bufs[S_TARGET].view.buf, *t = bufs[S_T].view.buf;
    const double *lo = bufs[S_LO].view.buf, *hi = bufs[S_HI].view.buf;
    const double *span = bufs[S_SPAN].view.buf;
    const double *grid_m = bufs[S_GRID_M].view.buf, *grid_sigma = bufs[S_GRID_SIGMA].view.buf;
    const uint8_t *valid = bufs[S_VALID].view.buf;
    double *theta = bufs[S_THETA].view.buf, *score = bufs[S_SCORE].view.buf;
    const Py_ssize_t n_m = bufs[S_GRID_M].view.len / 8, n_sigma = bufs[S_GRID_SIGMA].view.len / 8;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        const Py_ssize_t o = i * m_pts;
        seed_slice(k + o, sqrt_w + o, target + o, valid + o, m_pts, t[i], lo[i], hi[i], span[i], grid_m,
                   n_m, grid_sigma, n_sigma, n_seeds, theta + i * n_seeds * P, score + i * n_seeds);
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    release_buffers(bufs, N_SEED_BUFS);
    return result;
}

static PyMethodDef methods[] = {
    {"lm", (PyCFunction)(void (*)(void))lm, METH_FASTCALL,
     "lm(k, centre, lower, upper, band_w, pull_w, tail, inv_t, ln_span, centre_k, span, owner, "
     "theta, iterations, nfev, converged, n, max_iter, tol, sigma_prior, w_floor, lambda0, "
     "lambda_min, lambda_max, step_tol): refine every problem's theta in place, problem i on "
     "row owner[i] (see svi_lm.py)."},
    {"count", (PyCFunction)(void (*)(void))count, METH_FASTCALL,
     "count(ks, ivs, weights, bid_ivs, ask_ivs, ts, counts): each slice's usable points "
     "(-1: bad time to expiry, -2: sizes differ) (see svi_lm.py)."},
    {"rows", (PyCFunction)(void (*)(void))rows, METH_FASTCALL,
     "rows(ks, ivs, weights, bid_ivs, ask_ivs, ts, cells, keep, valid, stats, pull, margin, "
     "tail): the kept slices as padded rows with their band terms (see svi_lm.py)."},
    {"pick", (PyCFunction)(void (*)(void))pick, METH_FASTCALL,
     "pick(k, iv, centre, lower, upper, band_w, pull_w, tail, valid, inv_t, t, ln_span, "
     "centre_k, span, n_valid, owner, theta, b_sigma, rho, iterations, nfev, converged, out, "
     "w_floor, sigma_prior): each row's best start (see svi_lm.py)."},
    {"seeds", (PyCFunction)(void (*)(void))seeds, METH_FASTCALL,
     "seeds(k, sqrt_w, target_iv, valid, t, lo, hi, span, grid_m, grid_sigma, theta, score, n, "
     "n_seeds): each slice's n_seeds best quasi-explicit seeds, best first (see svi_lm.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_svi_lm",
    .m_doc = "Raw SVI's Levenberg-Marquardt in C (see svi_lm.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__svi_lm(void) { return PyModule_Create(&module); }
