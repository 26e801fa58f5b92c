/* The sums behind calibrator.py's spread statistics, a chain's slices in one call: per
 * row of padded quotes, the median half spread, the sum of squared errors in half
 * spreads and the counts of quotes inside their band and quoted.
 *
 * numpy's cost on a dozen rows of 10-60 quotes is its ~40 calls, not the arithmetic.
 * Every operation is numpy's, in numpy's order, so the results agree bit for bit with
 * calibrator._spread_sums_numpy, which stays the fallback and the reference
 * (tests/pipeline/test_spread_stats_native.py): the median as core/median.row_median
 * takes it, the row sum in numpy's pairwise order over the padded width (numpy's
 * pairwise_sum: eight accumulators in blocks of up to 128, halves beyond).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/_buffers.h"
#include "../core/_numpy_order.h"

#define N_OUT 4 /* half spread, sum of z^2, inside, quoted */

static const double MIN_HALF_SPREAD_VOL = 1e-4; /* calibrator.MIN_HALF_SPREAD_VOL */

static int compare(const void *x, const void *y) {
    const double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* One row: ``z`` and ``half`` are scratch of the row's width */
static void row_stats(const double *model, const double *mid, const double *bid_iv,
                      const double *ask_iv, const unsigned char *quoted, Py_ssize_t m,
                      double *z, double *half, double *out) {
    Py_ssize_t n_half = 0, inside = 0, count = 0;
    for (Py_ssize_t j = 0; j < m; j++) {
        const int has_bid = isfinite(bid_iv[j]), has_ask = isfinite(ask_iv[j]);
        const double bid = has_bid ? bid_iv[j] : 0.0, ask = has_ask ? ask_iv[j] : INFINITY;
        z[j] = 0.0;
        if (!quoted[j])
            continue;
        count++;
        if (has_bid && has_ask)
            half[n_half++] = 0.5 * (ask_iv[j] - bid_iv[j]);
        const double err = model[j] - mid[j];
        const double side = err >= 0.0 ? ask - mid[j] : mid[j] - bid;
        z[j] = err / nan_max(side, MIN_HALF_SPREAD_VOL);
        inside += model[j] >= bid && model[j] <= ask;
    }
    for (Py_ssize_t j = 0; j < m; j++)
        z[j] = z[j] * z[j];
    qsort(half, (size_t)n_half, sizeof *half, compare); /* finite values: a total order */
    out[0] = n_half ? 0.5 * (half[(n_half - 1) / 2] + half[n_half / 2]) : NAN;
    out[1] = 0.0 + pairwise_sum(z, m); /* add.reduce: its identity, then the pairs */
    out[2] = (double)inside;
    out[3] = (double)count;
}

enum { MODEL, MID, BID, ASK, QUOTED, OUT, N_BUFS };

static PyObject *spread_sums(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    static const char *names[] = {"model_iv", "mid_iv", "bid_iv", "ask_iv", "quoted", "out"};
    if (nargs != N_BUFS + 1) {
        PyErr_Format(PyExc_TypeError, "spread_sums() takes %d arguments (%zd given)",
                     N_BUFS + 1, nargs);
        return NULL;
    }
    Buf bufs[N_BUFS];
    memset(bufs, 0, sizeof bufs);
    PyObject *result = NULL;
    double *scratch = NULL;
    const Py_ssize_t width = PyLong_AsSsize_t(args[N_BUFS]);
    if (width == -1 && PyErr_Occurred())
        goto done;
    if (width < 1 || !get_buffer(args[MODEL], &bufs[MODEL], names[MODEL], 'f', 8, -1, 0))
        goto bad_width;
    const Py_ssize_t cells = bufs[MODEL].view.len / 8;
    if (cells % width != 0)
        goto bad_width;
    const Py_ssize_t rows = cells / width;
    for (int i = MID; i < N_BUFS; i++)
        if (!get_buffer(args[i], &bufs[i], names[i], i == QUOTED ? 'b' : 'f',
                        i == QUOTED ? 1 : 8, i == OUT ? rows * N_OUT : cells, i == OUT))
            goto done;
    scratch = PyMem_Malloc(2 * (size_t)width * sizeof *scratch);
    if (scratch == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    const double *model = bufs[MODEL].view.buf, *mid = bufs[MID].view.buf,
                 *bid = bufs[BID].view.buf, *ask = bufs[ASK].view.buf;
    const unsigned char *quoted = bufs[QUOTED].view.buf;
    double *out = bufs[OUT].view.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = 0; r < rows; r++) {
        const Py_ssize_t at = r * width;
        row_stats(model + at, mid + at, bid + at, ask + at, quoted + at, width, scratch,
                  scratch + width, out + N_OUT * r);
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
    goto done;
bad_width:
    if (!PyErr_Occurred())
        PyErr_SetString(PyExc_ValueError, "width: expected rows of 1 or more cells");
done:
    PyMem_Free(scratch);
    release_buffers(bufs, N_BUFS);
    return result;
}

static PyMethodDef methods[] = {
    {"spread_sums", (PyCFunction)(void (*)(void))spread_sums, METH_FASTCALL,
     "spread_sums(model_iv, mid_iv, bid_iv, ask_iv, quoted, out, width): per row of width "
     "cells, the median half spread, the sum of squared errors in half spreads and the "
     "counts inside and quoted, written into out (rows, 4) (see calibrator.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_spread_stats",
    .m_doc = "The sums behind the calibrator's spread statistics in C (see calibrator.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__spread_stats(void) { return PyModule_Create(&module); }
