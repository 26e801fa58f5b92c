/* The ATM vol and skew at fixed tenors between expiries, in C (core/dynamics.py is the
 * Python side, its numpy atm_at_tenors the reference and fallback).
 *
 * Contract (tests/dynamics/test_core_dynamics.py checks it against atm_at_tenors):
 * - the usable rows (finite, t, vol and forward > 0), stably sorted by t;
 * - w = vol * vol * t and dw = 2 * vol * t * skew read at each tenor by np.interp's own
 *   steps (compiled_base.c arr_interp: the end values, a knot's own value, the slope
 *   form and its NaN retry); vol = sqrt(w / tenor), skew = dw / (2 vol tenor), NaN
 *   outside the expiries;
 * - two expiries at the same t: not handled (np.interp's search decides ties), the
 *   caller takes the numpy path.
 *
 * Why native: for ten expiries and four tenors a batch these were some thirty numpy
 * calls whose per-call overhead, not their arithmetic, was their cost.
 */
#include "_buffers.h"

#include <math.h>

typedef struct {
    double t, w, dw;
} Knot;

/* np.interp at x of knots strictly increasing in t, x within [t_0, t_n-1] */
static double interp(const Knot *k, Py_ssize_t n, double x, int dw) {
    Py_ssize_t j = 0;
    while (j + 1 < n && x >= k[j + 1].t) /* k[j].t <= x < k[j + 1].t */
        j++;
    const double y0 = dw ? k[j].dw : k[j].w;
    if (j == n - 1 || k[j].t == x)
        return y0;
    const double y1 = dw ? k[j + 1].dw : k[j + 1].w;
    const double slope = (y1 - y0) / (k[j + 1].t - k[j].t);
    double got = slope * (x - k[j].t) + y0;
    if (isnan(got)) { /* NaN one way: the other, as numpy tries */
        got = slope * (x - k[j + 1].t) + y1;
        if (isnan(got) && y0 == y1)
            got = y0;
    }
    return got;
}

static PyObject *atm_points(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "atm_points(t, vol, skew, forward, tenors, out_vol, out_skew)");
        return NULL;
    }
    Buf bufs[7] = {{.held = 0}};
    PyObject *result = NULL;
    Knot *knots = NULL;
    if (!get_buffer(args[0], &bufs[0], "t", 'f', 8, -1, 0)
        || !get_buffer(args[4], &bufs[4], "tenors", 'f', 8, -1, 0))
        goto done;
    const Py_ssize_t n = bufs[0].view.len / 8, m = bufs[4].view.len / 8;
    if (!get_buffer(args[1], &bufs[1], "vol", 'f', 8, n, 0)
        || !get_buffer(args[2], &bufs[2], "skew", 'f', 8, n, 0)
        || !get_buffer(args[3], &bufs[3], "forward", 'f', 8, n, 0)
        || !get_buffer(args[5], &bufs[5], "out_vol", 'f', 8, m, 1)
        || !get_buffer(args[6], &bufs[6], "out_skew", 'f', 8, m, 1))
        goto done;
    const double *t = bufs[0].view.buf, *vol = bufs[1].view.buf, *skew = bufs[2].view.buf;
    const double *fwd = bufs[3].view.buf, *tenors = bufs[4].view.buf;
    double *out_vol = bufs[5].view.buf, *out_skew = bufs[6].view.buf;
    knots = PyMem_Malloc((size_t)(n > 0 ? n : 1) * sizeof(Knot));
    if (knots == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t used = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!(isfinite(t[i]) && isfinite(vol[i]) && isfinite(skew[i]) && isfinite(fwd[i])
              && t[i] > 0.0 && vol[i] > 0.0 && fwd[i] > 0.0))
            continue;
        const Knot k = {t[i], vol[i] * vol[i] * t[i], 2.0 * vol[i] * t[i] * skew[i]};
        Py_ssize_t at = used++; /* insertion: stable, as argsort(kind="stable") */
        while (at > 0 && knots[at - 1].t > k.t) {
            knots[at] = knots[at - 1];
            at--;
        }
        knots[at] = k;
    }
    for (Py_ssize_t i = 0; i + 1 < used; i++)
        if (knots[i].t == knots[i + 1].t) {
            result = Py_NewRef(Py_False); /* ties: numpy's search decides */
            goto done;
        }
    for (Py_ssize_t i = 0; i < m; i++) {
        const double x = tenors[i];
        if (!(used > 0 && x >= knots[0].t && x <= knots[used - 1].t)) {
            out_vol[i] = out_skew[i] = NAN;
            continue;
        }
        const double sigma = sqrt(interp(knots, used, x, 0) / x);
        out_vol[i] = sigma;
        out_skew[i] = interp(knots, used, x, 1) / (2.0 * sigma * x);
    }
    result = Py_NewRef(Py_True);
done:
    PyMem_Free(knots);
    release_buffers(bufs, 7);
    return result;
}

static PyMethodDef methods[] = {
    {"atm_points", (PyCFunction)(void (*)(void))atm_points, METH_FASTCALL,
     "atm_points(t, vol, skew, forward, tenors, out_vol, out_skew): ATM vol and skew at "
     "each tenor into the outs; False (outs unset) where two expiries share a t."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_atm_tenors",
    "ATM vol and skew at fixed tenors between expiries (see core/dynamics.py).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__atm_tenors(void) { return PyModule_Create(&module); }
