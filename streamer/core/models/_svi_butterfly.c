/* Butterfly margins of raw SVI slices (svi.py's butterfly_margins): per slice, the minimum
 * of Durrleman's g on a linspace grid of its k range, in two passes around one numpy call.
 *
 * numpy's cost on a few dozen slices' 201-point grids is its ~30 calls, not the
 * arithmetic. Every operation here is numpy's, in numpy's order (the grid of
 * rows.linspace_rows, svi.derivatives_rows, arbitrage.durrleman_g), so the margins agree
 * bit for bit with that path, which stays the fallback and the reference
 * (tests/core/test_svi_butterfly.py). The one exception is ``root ** 3``: numpy takes it
 * from its own SIMD power (SVML where the CPU has AVX-512), whose last bits differ from
 * libm's pow, so the cube is left to numpy between the two passes (svi_butterfly.py):
 * ``roots`` writes the grid and sqrt(x^2 + sigma^2), numpy cubes, ``margins`` finishes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

#include "../_buffers.h"

/* The columns of a slice's parameters (svi.stack's order) */
enum { A, B, RHO, M, SIGMA, N_PARAMS };

/* rows.linspace_rows: numpy's own steps; the range-scaled form for every row when any
 * row's step is zero (as np.linspace decides for the whole call) */
static void grid_row(double lo, double hi, Py_ssize_t n, int scaled, double *k) {
    const double delta = hi - lo, step = delta / (double)(n - 1);
    for (Py_ssize_t j = 0; j < n; j++)
        k[j] = (scaled ? ((double)j / (double)(n - 1)) * delta : (double)j * step) + lo;
    k[n - 1] = hi;
}

/* arbitrage.durrleman_g from svi.derivatives_rows' w, dw and d2w; -inf where w <= 0 */
static double durrleman_g(const double *p, double k, double root, double cube) {
    const double x = k - p[M];
    const double w = p[A] + p[B] * (p[RHO] * x + root);
    const double dw = p[B] * (p[RHO] + x / root);
    const double d2w = p[B] * p[SIGMA] * p[SIGMA] / cube;
    const double q = 1.0 - k * dw / (2.0 * w);
    const double g = q * q - 0.25 * dw * dw * (1.0 / w + 0.25) + 0.5 * d2w;
    return w > 0.0 ? g : -INFINITY;
}

/* numpy.min of a row: NaN wins */
static double row_min(const double *p, const double *k, const double *root,
                      const double *cube, Py_ssize_t n) {
    double best = INFINITY;
    for (Py_ssize_t j = 0; j < n; j++) {
        const double g = durrleman_g(p, k[j], root[j], cube[j]);
        if (isnan(g))
            return g;
        best = g < best ? g : best;
    }
    return best;
}

/* The parameters' buffer and the slice count; the other buffers are checked against it */
static int take_params(PyObject *obj, Buf *b, Py_ssize_t *n_slices) {
    if (!get_buffer(obj, b, "params", 'f', 8, -1, 0))
        return 0;
    if (b->view.len % (N_PARAMS * 8) != 0) {
        PyErr_SetString(PyExc_ValueError, "params: expected rows of 5 float64");
        return 0;
    }
    *n_slices = b->view.len / (N_PARAMS * 8);
    return 1;
}

/* The grid's width: the k buffer's items per slice, at least 2 */
static int grid_width(const Buf *k, Py_ssize_t n_slices, Py_ssize_t *width) {
    const Py_ssize_t items = k->view.len / 8;
    if (n_slices == 0 || items % n_slices != 0 || items / n_slices < 2) {
        PyErr_SetString(PyExc_ValueError, "k: expected rows of 2 or more points per slice");
        return 0;
    }
    *width = items / n_slices;
    return 1;
}

static int check_nargs(const char *name, Py_ssize_t nargs, Py_ssize_t expected) {
    if (nargs == expected)
        return 1;
    PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", name, expected, nargs);
    return 0;
}

enum { R_PARAMS, R_LO, R_HI, R_K, R_ROOT, R_N };

static PyObject *roots(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    Buf bufs[R_N];
    memset(bufs, 0, sizeof bufs);
    PyObject *result = NULL;
    Py_ssize_t n_slices = 0, width = 0;
    if (!check_nargs("roots", nargs, R_N) || !take_params(args[R_PARAMS], &bufs[R_PARAMS],
                                                          &n_slices)
        || !get_buffer(args[R_LO], &bufs[R_LO], "lo", 'f', 8, n_slices, 0)
        || !get_buffer(args[R_HI], &bufs[R_HI], "hi", 'f', 8, n_slices, 0)
        || !get_buffer(args[R_K], &bufs[R_K], "k", 'f', 8, -1, 1)
        || !grid_width(&bufs[R_K], n_slices, &width)
        || !get_buffer(args[R_ROOT], &bufs[R_ROOT], "root", 'f', 8, n_slices * width, 1))
        goto done;
    const double *params = bufs[R_PARAMS].view.buf, *lo = bufs[R_LO].view.buf,
                 *hi = bufs[R_HI].view.buf;
    double *k = bufs[R_K].view.buf, *root = bufs[R_ROOT].view.buf;
    Py_BEGIN_ALLOW_THREADS
    int scaled = 0;
    for (Py_ssize_t i = 0; i < n_slices; i++)
        scaled |= (hi[i] - lo[i]) / (double)(width - 1) == 0.0;
    for (Py_ssize_t i = 0; i < n_slices; i++) {
        const double *p = params + N_PARAMS * i;
        double *ki = k + width * i, *ri = root + width * i;
        grid_row(lo[i], hi[i], width, scaled, ki);
        for (Py_ssize_t j = 0; j < width; j++) {
            const double x = ki[j] - p[M];
            ri[j] = sqrt(x * x + p[SIGMA] * p[SIGMA]);
        }
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    release_buffers(bufs, R_N);
    return result;
}

enum { G_PARAMS, G_K, G_ROOT, G_CUBE, G_OUT, G_N };

static PyObject *margins(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    Buf bufs[G_N];
    memset(bufs, 0, sizeof bufs);
    PyObject *result = NULL;
    Py_ssize_t n_slices = 0, width = 0;
    if (!check_nargs("margins", nargs, G_N) || !take_params(args[G_PARAMS], &bufs[G_PARAMS],
                                                            &n_slices)
        || !get_buffer(args[G_K], &bufs[G_K], "k", 'f', 8, -1, 0)
        || !grid_width(&bufs[G_K], n_slices, &width)
        || !get_buffer(args[G_ROOT], &bufs[G_ROOT], "root", 'f', 8, n_slices * width, 0)
        || !get_buffer(args[G_CUBE], &bufs[G_CUBE], "cube", 'f', 8, n_slices * width, 0)
        || !get_buffer(args[G_OUT], &bufs[G_OUT], "out", 'f', 8, n_slices, 1))
        goto done;
    const double *params = bufs[G_PARAMS].view.buf, *k = bufs[G_K].view.buf,
                 *root = bufs[G_ROOT].view.buf, *cube = bufs[G_CUBE].view.buf;
    double *out = bufs[G_OUT].view.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n_slices; i++)
        out[i] = row_min(params + N_PARAMS * i, k + width * i, root + width * i,
                         cube + width * i, width);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    release_buffers(bufs, G_N);
    return result;
}

static PyMethodDef methods[] = {
    {"roots", (PyCFunction)(void (*)(void))roots, METH_FASTCALL,
     "roots(params, lo, hi, k, root): each slice's k grid (n, width) from lo to hi and "
     "sqrt((k - m)^2 + sigma^2) on it, written into k and root (see svi_butterfly.py)."},
    {"margins", (PyCFunction)(void (*)(void))margins, METH_FASTCALL,
     "margins(params, k, root, cube, out): each slice's minimum of Durrleman's g on its "
     "grid, with cube = root ** 3 from numpy, written into out (n,)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_svi_butterfly",
    .m_doc = "Butterfly margins of raw SVI slices in C (see svi_butterfly.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__svi_butterfly(void) { return PyModule_Create(&module); }
