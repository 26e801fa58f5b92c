/* Raw SVI slices of one surface side by side, in C: each pair's calendar gap, each
 * slice's jump-wings and the slopes of the smiles at quotes (svi_slices.py is the Python side and the "use C?" decision).
 *
 * Contract (tests/core/test_svi_slices.py checks it against the numpy and Python paths):
 * - calendar_gaps: engine._calendar_margins' numpy path on raw SVI rows -- per pair, the
 *   grid of rows.linspace_rows over [lo, hi], w of the later slice minus w of the earlier
 *   (svi.total_variance_rows, numpy's order), its minimum with NaN winning (np.min).
 * - jump_wings: jump_wings._raw_svi of every slice (libm hypot, as np.hypot; C's IEEE
 *   division is _ratio's numpy division).
 * - slopes: dynamics._slopes on raw SVI rows -- each quote's smile (svi.SVIVolRows) at
 *   k + step and k - step, their difference over 2 step.
 *
 * Why native: for ten slices a batch these were some thirty numpy calls and a hundred
 * Python float steps whose per-call overhead, not their arithmetic, was their cost.
 */
#include "_buffers.h"

#include <math.h>
#include <stdint.h>

#define N_PARAMS 5 /* a, b, rho, m, sigma: svi.stack's columns */
#define N_WINGS 5  /* v, psi, p, c, v_tilde: JumpWings' fields */

/* svi.total_variance_rows of one slice at one k */
static double svi_w(const double *p, double k) {
    const double x = k - p[3];
    return p[0] + p[1] * (p[2] * x + sqrt(x * x + p[4] * p[4]));
}

/* np.min's NaN-wins minimum */
static double nan_min(double a, double b) {
    return isnan(a) || isnan(b) ? NAN : (a < b ? a : b);
}

static PyObject *calendar_gaps(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "calendar_gaps(params, lo, hi, points, out)");
        return NULL;
    }
    const Py_ssize_t points = PyLong_AsSsize_t(args[3]);
    if (points == -1 && PyErr_Occurred())
        return NULL;
    if (points < 1) {
        PyErr_SetString(PyExc_ValueError, "points: at least 1");
        return NULL;
    }
    Buf bufs[4] = {{.held = 0}};
    PyObject *result = NULL;
    if (!get_buffer(args[1], &bufs[1], "lo", 'f', 8, -1, 0))
        goto done;
    const Py_ssize_t pairs = bufs[1].view.len / 8;
    if (!get_buffer(args[0], &bufs[0], "params", 'f', 8, (pairs + 1) * N_PARAMS, 0)
        || !get_buffer(args[2], &bufs[2], "hi", 'f', 8, pairs, 0)
        || !get_buffer(args[4], &bufs[3], "out", 'f', 8, pairs, 1))
        goto done;
    const double *params = bufs[0].view.buf, *lo = bufs[1].view.buf, *hi = bufs[2].view.buf;
    double *out = bufs[3].view.buf;
    const double last = (double)(points - 1);
    /* linspace_rows scales every row by the range, not the step, when any step is 0 */
    int by_range = 0;
    for (Py_ssize_t i = 0; points > 1 && i < pairs; i++)
        by_range |= (hi[i] - lo[i]) / last == 0.0;
    for (Py_ssize_t i = 0; i < pairs; i++) {
        const double *before = params + i * N_PARAMS, *after = before + N_PARAMS;
        const double delta = hi[i] - lo[i], step = points > 1 ? delta / last : delta;
        double gap = INFINITY;
        for (Py_ssize_t j = 0; j < points; j++) {
            double k = (points < 2 ? (double)j * delta
                        : by_range ? ((double)j / last) * delta
                                   : (double)j * step) + lo[i];
            if (points > 1 && j == points - 1)
                k = hi[i];
            gap = nan_min(gap, svi_w(after, k) - svi_w(before, k));
        }
        out[i] = gap;
    }
    result = Py_NewRef(Py_None);
done:
    release_buffers(bufs, 4);
    return result;
}

static PyObject *jump_wings(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "jump_wings(params, t, out)");
        return NULL;
    }
    Buf bufs[3] = {{.held = 0}};
    PyObject *result = NULL;
    if (!get_buffer(args[1], &bufs[1], "t", 'f', 8, -1, 0))
        goto done;
    const Py_ssize_t n = bufs[1].view.len / 8;
    if (!get_buffer(args[0], &bufs[0], "params", 'f', 8, n * N_PARAMS, 0)
        || !get_buffer(args[2], &bufs[2], "out", 'f', 8, n * N_WINGS, 1))
        goto done;
    const double *params = bufs[0].view.buf, *t = bufs[1].view.buf;
    double *out = bufs[2].view.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        const double *p = params + i * N_PARAMS;
        const double a = p[0], b = p[1], rho = p[2], m = p[3], sigma = p[4];
        const double root = hypot(m, sigma);
        const double w = a + b * (-rho * m + root);
        const double sqrt_w = w > 0.0 ? sqrt(w) : NAN;
        const double one_minus = 1.0 - rho * rho;
        double *o = out + i * N_WINGS;
        o[0] = w / t[i];
        o[1] = 0.5 * b * (rho - m / root) / sqrt_w;
        o[2] = b * (1.0 - rho) / sqrt_w;
        o[3] = b * (1.0 + rho) / sqrt_w;
        o[4] = (a + b * sigma * (one_minus >= 0.0 ? sqrt(one_minus) : NAN)) / t[i];
    }
    result = Py_NewRef(Py_None);
done:
    release_buffers(bufs, 3);
    return result;
}

/* svi.SVIVolRows: sqrt(w / t) as w times 1 / t, NaN where w < 0 */
static double svi_vol(const double *p, double inv_t, double k) {
    const double w = svi_w(p, k);
    return sqrt((w >= 0.0 ? w : NAN) * inv_t);
}

static PyObject *slopes(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "slopes(params, t, row, k, step, out)");
        return NULL;
    }
    const double step = PyFloat_AsDouble(args[4]);
    if (step == -1.0 && PyErr_Occurred())
        return NULL;
    Buf bufs[5] = {{.held = 0}};
    PyObject *result = NULL;
    if (!get_buffer(args[1], &bufs[1], "t", 'f', 8, -1, 0)
        || !get_buffer(args[3], &bufs[3], "k", 'f', 8, -1, 0))
        goto done;
    const Py_ssize_t n = bufs[1].view.len / 8, m = bufs[3].view.len / 8;
    if (!get_buffer(args[0], &bufs[0], "params", 'f', 8, n * N_PARAMS, 0)
        || !get_buffer(args[2], &bufs[2], "row", 'i', 8, m, 0)
        || !get_buffer(args[5], &bufs[4], "out", 'f', 8, m, 1))
        goto done;
    const double *params = bufs[0].view.buf, *t = bufs[1].view.buf, *k = bufs[3].view.buf;
    const int64_t *row = bufs[2].view.buf;
    double *out = bufs[4].view.buf;
    for (Py_ssize_t i = 0; i < m; i++)
        if (row[i] < 0 || row[i] >= n) {
            PyErr_Format(PyExc_ValueError, "row: %lld outside [0, %zd)", (long long)row[i], n);
            goto done;
        }
    for (Py_ssize_t i = 0; i < m; i++) {
        const double *p = params + row[i] * N_PARAMS, inv_t = 1.0 / t[row[i]];
        const double up = svi_vol(p, inv_t, k[i] + step), down = svi_vol(p, inv_t, k[i] - step);
        out[i] = (up - down) / (2.0 * step);
    }
    result = Py_NewRef(Py_None);
done:
    release_buffers(bufs, 5);
    return result;
}

static PyMethodDef methods[] = {
    {"calendar_gaps", (PyCFunction)(void (*)(void))calendar_gaps, METH_FASTCALL,
     "calendar_gaps(params, lo, hi, points, out): per pair of consecutive slices of params "
     "(n, 5), min over points of w_later - w_earlier on [lo, hi] into out (n - 1,)."},
    {"jump_wings", (PyCFunction)(void (*)(void))jump_wings, METH_FASTCALL,
     "jump_wings(params, t, out): v, psi, p, c, v_tilde of each slice into out (n, 5)."},
    {"slopes", (PyCFunction)(void (*)(void))slopes, METH_FASTCALL,
     "slopes(params, t, row, k, step, out): central difference in k of the vol of slice "
     "row[i] at k[i] into out (m,)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_svi_slices",
    "Raw SVI slices side by side: calendar gaps and jump-wings (see svi_slices.py).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__svi_slices(void) { return PyModule_Create(&module); }
