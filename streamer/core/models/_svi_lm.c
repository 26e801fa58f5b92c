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
        const int below = vol < pr->lower[j], above = vol > pr->upper[j];
        const double outside = (below ? vol - pr->lower[j] : 0.0) + (above ? vol - pr->upper[j] : 0.0);
        /* Huber beyond the tail (band.residuals): r^2 = 2 c |z| - c^2 there */
        const double z = pr->band_w[j] * outside;
        const int far = fabs(z) > pr->tail[j];
        const double c_t = far ? pr->tail[j] : 1.0;
        const double root_t = sqrt(far ? 2.0 * c_t * fabs(z) - c_t * c_t : 1.0);
        const double sign_z = z > 0.0 ? 1.0 : (z < 0.0 ? -1.0 : 0.0);
        const double r = pr->pull_w[j] * (vol - pr->centre[j]) + (far ? sign_z * root_t : z);
        const double dz = far ? c_t / root_t : 1.0;
        const double dr = pr->pull_w[j] + pr->band_w[j] * dz * (double)(below | above);
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
    const double r_sigma = s->sigma_prior * (beyond > 0.0 ? beyond : (isnan(beyond) ? beyond : 0.0));
    const double d_sigma = s->sigma_prior * (double)(beyond > 0.0);
    const double off = (m - pr->centre_k) / pr->span;
    const double m_beyond = fabs(off) - 1.0;
    const double r_m = s->sigma_prior * (m_beyond > 0.0 ? m_beyond : (isnan(m_beyond) ? m_beyond : 0.0));
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
       A_SPAN, A_THETA, A_ITER, A_NFEV, A_CONV, N_BUFS };
static const char *NAMES[N_BUFS] = {"k", "centre", "lower", "upper", "band_w", "pull_w",
                                    "tail", "inv_t", "ln_span", "centre_k", "span", "theta",
                                    "iterations", "nfev", "converged"};

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
    if (!get_buffer(args[A_K], &bufs[A_K], NAMES[A_K], 'f', 8, -1, 0))
        goto done;
    const Py_ssize_t total = bufs[A_K].view.len / 8;
    if (total % n) {
        PyErr_SetString(PyExc_ValueError, "k: expected n rows of points");
        goto done;
    }
    const Py_ssize_t m = total / n;
    for (int i = A_K + 1; i < N_BUFS; i++) {
        Py_ssize_t count = i <= A_TAIL ? n * m : i == A_THETA ? n * P : n;
        char kind = i <= A_THETA ? 'f' : i == A_CONV ? 'b' : 'i';
        if (!get_buffer(args[i], &bufs[i], NAMES[i], kind, kind == 'b' ? 1 : 8, count, i >= A_THETA))
            goto done;
    }
    const double *col[A_THETA];
    for (int i = 0; i < A_THETA; i++)
        col[i] = (const double *)bufs[i].view.buf;
    double *theta = (double *)bufs[A_THETA].view.buf;
    int64_t *iterations = (int64_t *)bufs[A_ITER].view.buf;
    int64_t *nfev = (int64_t *)bufs[A_NFEV].view.buf;
    uint8_t *converged = (uint8_t *)bufs[A_CONV].view.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        const Py_ssize_t o = i * m;
        Problem pr = {col[A_K] + o, col[A_CENTRE] + o, col[A_LOWER] + o, col[A_UPPER] + o,
                      col[A_BAND_W] + o, col[A_PULL_W] + o, col[A_TAIL] + o, m, col[A_INV_T][i],
                      col[A_LN_SPAN][i], col[A_CENTRE_K][i], col[A_SPAN][i]};
        minimise(&pr, &s, theta + i * P, iterations + i, nfev + i, converged + i);
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    release_buffers(bufs, N_BUFS);
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
     "lm(k, centre, lower, upper, band_w, pull_w, tail, inv_t, ln_span, centre_k, span, theta, "
     "iterations, nfev, converged, n, max_iter, tol, sigma_prior, w_floor, lambda0, "
     "lambda_min, lambda_max, step_tol): refine every problem's theta in place (see svi_lm.py)."},
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
