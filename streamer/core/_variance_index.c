/* The Cboe VIX sum of streamer/core/variance_index.py (steps 1-3 and the strike sum of
 * step 4), on an expiry's quotes and on fitted smiles' dense strike grids (their
 * Black-76 prices, raw SVI's vols too): the same operations in numpy's order, numpy's
 * pairwise summation included, so the sums agree bit for bit with the numpy path, which
 * stays the fallback and the reference (tests/core/test_variance_native.py).
 *
 * numpy's cost on an expiry's ~50 quotes, or on two 801-point grids, was its per-call
 * overhead: some 40 calls a sum. Here it is one loop.
 *
 * The variance itself (2/T sum - (F/K0 - 1)^2 / T) stays in Python, on the returned sum,
 * forward and K0: Python's ** and division by zero, for both paths.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "_buffers.h"
#include "_numpy_order.h"

static const double SQRT1_2 = 0.70710678118654752440;

/* What the sum returns: out[0..3] = sum, forward, K0, strikes used (0: no variance) */
enum { N_OUT = 4 };

/* numpy.searchsorted(k, x, "right") on ascending k, NaN sorted last (x not NaN) */
static Py_ssize_t search_right(const double *k, Py_ssize_t n, double x) {
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        const Py_ssize_t mid = lo + (hi - lo) / 2;
        if (x < k[mid] || isnan(k[mid]))
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* How many options of the run b[first], b[first + step], ... (count of them) the walk
 * reaches: it stops before the second of two consecutive zero (or missing) bids */
static Py_ssize_t wing_length(const double *b, Py_ssize_t first, Py_ssize_t count,
                              Py_ssize_t step) {
    for (Py_ssize_t j = 0; j + 1 < count; j++)
        if (!(b[first + j * step] > 0.0) && !(b[first + (j + 1) * step] > 0.0))
            return j + 1;
    return count;
}

/* Steps 1-3 and the sum over n strikes k (ascending, NaN last) with call and put mids c,
 * p and bids cb, pb (NaN: no quote); ku and terms are scratch of n. */
static void vix_sum(const double *k, const double *c, const double *p, const double *cb,
                    const double *pb, Py_ssize_t n, double *ku, double *terms, double *out) {
    out[0] = out[1] = out[2] = NAN;
    out[3] = 0.0;
    if (n == 0)
        return;
    Py_ssize_t star = 0; /* argmin of |C - P| over the pairs, inf elsewhere: the first */
    double best = INFINITY;
    for (Py_ssize_t i = 0; i < n; i++) {
        const double gap = isfinite(c[i]) && isfinite(p[i]) ? fabs(c[i] - p[i]) : INFINITY;
        if (gap < best) {
            best = gap;
            star = i;
        }
    }
    if (!(isfinite(c[star]) && isfinite(p[star])))
        return;
    const double forward = k[star] + c[star] - p[star];
    if (!(forward >= k[0]))
        return;
    const Py_ssize_t i0 = search_right(k, n, forward) - 1;
    const Py_ssize_t lo = i0 ? i0 - wing_length(pb, i0 - 1, i0, -1) : 0;
    const Py_ssize_t hi = i0 + 1 + wing_length(cb, i0 + 1, n - i0 - 1, 1);
    Py_ssize_t m = 0;
    for (Py_ssize_t i = lo; i < hi; i++) {
        double q;
        if (i == i0)
            q = isfinite(c[i]) && isfinite(p[i]) ? 0.5 * (c[i] + p[i])
                                                 : (isfinite(p[i]) ? p[i] : c[i]);
        else if (i < i0)
            q = pb[i] > 0.0 ? p[i] : NAN;
        else
            q = cb[i] > 0.0 ? c[i] : NAN;
        if (isfinite(q)) {
            ku[m] = k[i];
            terms[m++] = q;
        }
    }
    if (m < 2)
        return;
    for (Py_ssize_t j = 0; j < m; j++) { /* central differences, one-sided at the ends */
        const double dk = j == 0       ? ku[1] - ku[0]
                          : j == m - 1 ? ku[m - 1] - ku[m - 2]
                                       : 0.5 * (ku[j + 1] - ku[j - 1]);
        terms[j] = dk / (ku[j] * ku[j]) * terms[j];
    }
    out[0] = pairwise_sum(terms, m);
    out[1] = forward;
    out[2] = k[i0];
    out[3] = (double)m;
}

/* -- an expiry's quotes ------------------------------------------------------------------ */

typedef struct {
    double k;
    Py_ssize_t i;
} Ranked;

/* ascending, NaN last (numpy's sort order) */
static int by_strike(const void *a, const void *b) {
    const double x = ((const Ranked *)a)->k, y = ((const Ranked *)b)->k;
    if (isnan(x) || isnan(y))
        return isnan(x) - isnan(y);
    return (x > y) - (x < y);
}

/* The quotes (rows strike, bid, ask, is_call of `quotes`) by strike, then the sum: the
 * numpy path's _strike_index (NaN strikes one, last) and its columns (the last usable
 * quote of a strike and side wins). 0 where out of memory. */
static int quoted_sum(const double *quotes, Py_ssize_t n, double *out) {
    Ranked *ranked = malloc((size_t)(n ? n : 1) * sizeof *ranked);
    Py_ssize_t *at = malloc((size_t)(n ? n : 1) * sizeof *at);
    double *cols = malloc((size_t)(n ? n : 1) * 7 * sizeof *cols);
    if (!ranked || !at || !cols) {
        free(ranked);
        free(at);
        free(cols);
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        ranked[i] = (Ranked){quotes[4 * i], i};
    qsort(ranked, (size_t)n, sizeof *ranked, by_strike);
    double *k = cols, *c = cols + n, *p = cols + 2 * n, *cb = cols + 3 * n, *pb = cols + 4 * n;
    Py_ssize_t u = -1;
    for (Py_ssize_t j = 0; j < n; j++) {
        const double x = ranked[j].k;
        if (u < 0 || !(x == k[u] || (isnan(x) && isnan(k[u]))))
            k[++u] = x;
        at[ranked[j].i] = u;
    }
    const Py_ssize_t n_strikes = u + 1;
    for (Py_ssize_t j = 0; j < n_strikes; j++)
        c[j] = p[j] = cb[j] = pb[j] = NAN;
    for (Py_ssize_t i = 0; i < n; i++) {
        const double bid = quotes[4 * i + 1], ask = quotes[4 * i + 2];
        if (!(bid >= 0.0 && ask > 0.0 && ask >= bid)) /* one-sided, crossed or missing */
            continue;
        const int call = quotes[4 * i + 3] != 0.0;
        (call ? c : p)[at[i]] = 0.5 * (bid + ask);
        (call ? cb : pb)[at[i]] = bid;
    }
    vix_sum(k, c, p, cb, pb, n_strikes, cols + 5 * n, cols + 6 * n, out);
    free(ranked);
    free(at);
    free(cols);
    return 1;
}

/* Four attributes of each object (names: a tuple of 4 str) as floats, row by row into
 * rows (4 n); 0 with a Python error where one is missing or not a number */
static int read_attributes(PyObject *const *items, Py_ssize_t n, PyObject *names, double *rows) {
    for (Py_ssize_t i = 0; i < n; i++)
        for (Py_ssize_t f = 0; f < 4; f++) {
            PyObject *value = PyObject_GetAttr(items[i], PyTuple_GET_ITEM(names, f));
            if (!value)
                return 0;
            rows[4 * i + f] = PyFloat_AsDouble(value);
            Py_DECREF(value);
            if (rows[4 * i + f] == -1.0 && PyErr_Occurred())
                return 0;
        }
    return 1;
}

static PyObject *quoted(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "quoted() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    if (!PyTuple_Check(args[1]) || PyTuple_GET_SIZE(args[1]) != 4) {
        PyErr_SetString(PyExc_TypeError, "names: expected a tuple of 4 attribute names");
        return NULL;
    }
    /* a tuple of its own: an attribute's getter could resize a list under us */
    PyObject *seq = PySequence_Check(args[0]) ? PySequence_Tuple(args[0]) : NULL;
    if (!seq) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "quotes: expected a sequence");
        return NULL;
    }
    Buf out;
    memset(&out, 0, sizeof out);
    PyObject *result = NULL;
    const Py_ssize_t n = PyTuple_GET_SIZE(seq);
    double *rows = malloc((size_t)(n ? n : 1) * 4 * sizeof *rows);
    if (!rows) {
        PyErr_NoMemory();
        goto done;
    }
    if (!get_buffer(args[2], &out, "out", 'f', 8, N_OUT, 1)
        || !read_attributes(PySequence_Fast_ITEMS(seq), n, args[1], rows))
        goto done;
    int ok;
    Py_BEGIN_ALLOW_THREADS
    ok = quoted_sum(rows, n, out.view.buf);
    Py_END_ALLOW_THREADS
    result = ok ? Py_NewRef(Py_None) : PyErr_NoMemory();
done:
    free(rows);
    release_buffers(&out, 1);
    Py_DECREF(seq);
    return result;
}

/* -- smiles on dense grids ------------------------------------------------------------- */

/* numpy.nan_to_num(v, nan=0.0) */
static double finite_or(double v) {
    return isnan(v) ? 0.0 : isinf(v) ? (v > 0 ? DBL_MAX : -DBL_MAX) : v;
}

/* models.svi.total_variance then protocol.vol_from_variance: sqrt(w / t), NaN where w < 0 */
static double svi_vol(const double *p, double k, double t) {
    const double x = k - p[3];
    const double w = p[0] + p[1] * (p[2] * x + sqrt(x * x + p[4] * p[4]));
    return sqrt((w >= 0.0 ? w : NAN) / t);
}

/* black76.price out of the money (a call where k >= 0) with the other side by parity,
 * then the sum with the prices as their own bids (variance_index.grid_sums). Three
 * passes, so that the divisions and square roots of the first are not queued behind
 * erfc's calls: half the kernel's time where it was one loop. scratch: 5 m. */
static void grid_sum(const double *k, const double *strike, const double *log_fk,
                     const double *vol, const double *svi, double forward, double t,
                     Py_ssize_t m, double *scratch, double *out) {
    double *calls = scratch, *puts = scratch + m, *d1 = scratch + 4 * m;
    const double sqrt_t = sqrt(t);
    for (Py_ssize_t j = 0; j < m; j++) { /* d1, d2 and erfc's arguments: ndtr(sign d) */
        const double v = finite_or(svi ? svi_vol(svi, k[j], t) : vol[j]);
        const double sqrt_var = v * sqrt_t, sign = k[j] >= 0.0 ? 1.0 : -1.0;
        d1[j] = log_fk[j] / sqrt_var + 0.5 * sqrt_var;
        calls[j] = -(sign * d1[j]) * SQRT1_2;
        puts[j] = -(sign * (d1[j] - sqrt_var)) * SQRT1_2;
    }
    for (Py_ssize_t j = 0; j < m; j++) {
        calls[j] = erfc(calls[j]);
        puts[j] = erfc(puts[j]);
    }
    for (Py_ssize_t j = 0; j < m; j++) {
        const double sign = k[j] >= 0.0 ? 1.0 : -1.0;
        const double value = sign * (forward * (0.5 * calls[j]) - strike[j] * (0.5 * puts[j]));
        const double intrinsic = nan_max(sign * (forward - strike[j]), 0.0);
        const double otm = isfinite(d1[j]) ? nan_max(value, intrinsic) : intrinsic;
        const double parity = forward - strike[j];
        calls[j] = k[j] >= 0.0 ? otm : otm + parity;
        puts[j] = k[j] >= 0.0 ? otm - parity : otm;
    }
    vix_sum(strike, calls, puts, calls, puts, m, scratch + 2 * m, scratch + 3 * m, out);
}

/* variance_index.smile_grids of one raw SVI smile, its ATM total vol as the numpy path
 * has it (model.vol at k = 0 times sqrt t), then rows.linspace_rows' steps */
static void svi_grid(const double *p, double t, double widths, Py_ssize_t m, double *k) {
    const double atm = svi_vol(p, 0.0, t) * sqrt(t);
    const double half = isfinite(atm) ? widths * nan_max(atm, 0.01) : 2.0, lo = -half;
    const double delta = half - lo, step = m > 1 ? delta / (double)(m - 1) : 0.0;
    for (Py_ssize_t j = 0; j < m; j++)
        k[j] = (m < 2 ? (double)j * delta
                : step == 0.0 ? ((double)j / (double)(m - 1)) * delta
                              : (double)j * step) + lo;
    if (m > 1)
        k[m - 1] = half;
}

static PyObject *svi_grids(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "svi_grids() takes 4 arguments (%zd given)", nargs);
        return NULL;
    }
    Buf bufs[3];
    memset(bufs, 0, sizeof bufs);
    PyObject *result = NULL;
    const double widths = PyFloat_AsDouble(args[2]);
    if ((widths == -1.0 && PyErr_Occurred())
        || !get_buffer(args[0], &bufs[0], "params", 'f', 8, -1, 0))
        goto done;
    const Py_ssize_t n = bufs[0].view.len / (5 * 8);
    if (bufs[0].view.len != n * 5 * 8) {
        PyErr_SetString(PyExc_ValueError, "params: expected rows of 5 float64");
        goto done;
    }
    if (!get_buffer(args[1], &bufs[1], "t", 'f', 8, n, 0)
        || !get_buffer(args[3], &bufs[2], "out", 'f', 8, -1, 1))
        goto done;
    const Py_ssize_t cells = bufs[2].view.len / 8, m = n ? cells / n : 0;
    if (n ? cells % n : cells) {
        PyErr_SetString(PyExc_ValueError, "out: expected one row per slice");
        goto done;
    }
    const double *params = bufs[0].view.buf, *t = bufs[1].view.buf;
    double *k = bufs[2].view.buf;
    for (Py_ssize_t i = 0; i < n; i++)
        svi_grid(params + 5 * i, t[i], widths, m, k + m * i);
    result = Py_NewRef(Py_None);
done:
    release_buffers(bufs, 3);
    return result;
}

enum { K, STRIKE, LOG_FK, VOL, FORWARD, T, OUT, N_BUFS };

static PyObject *smiles(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    static const char *names[] = {"k", "strike", "log_fk", "vol", "forward", "t", "out"};
    if (nargs != N_BUFS + 1) {
        PyErr_Format(PyExc_TypeError, "smiles() takes %d arguments (%zd given)", N_BUFS + 1,
                     nargs);
        return NULL;
    }
    Buf bufs[N_BUFS];
    memset(bufs, 0, sizeof bufs);
    PyObject *result = NULL;
    const int svi = PyObject_IsTrue(args[N_BUFS]);
    if (svi < 0 || !get_buffer(args[FORWARD], &bufs[FORWARD], "forward", 'f', 8, -1, 0))
        goto done;
    const Py_ssize_t n = bufs[FORWARD].view.len / 8;
    if (!get_buffer(args[K], &bufs[K], names[K], 'f', 8, -1, 0))
        goto done;
    const Py_ssize_t cells = bufs[K].view.len / 8, m = n ? cells / n : 0;
    if (n ? cells % n : cells) {
        PyErr_SetString(PyExc_ValueError, "k: expected one row per forward");
        goto done;
    }
    for (int i = STRIKE; i < N_BUFS; i++) {
        const Py_ssize_t count = i == VOL ? (svi ? 5 * n : cells)
                                 : i == T ? n : i == OUT ? N_OUT * n : cells;
        if (i != FORWARD && !get_buffer(args[i], &bufs[i], names[i], 'f', 8, count, i == OUT))
            goto done;
    }
    double *scratch = malloc((size_t)(m ? m : 1) * 5 * sizeof *scratch);
    if (!scratch) {
        PyErr_NoMemory();
        goto done;
    }
    const double *k = bufs[K].view.buf, *strike = bufs[STRIKE].view.buf,
                 *log_fk = bufs[LOG_FK].view.buf, *vol = bufs[VOL].view.buf,
                 *forward = bufs[FORWARD].view.buf, *t = bufs[T].view.buf;
    double *out = bufs[OUT].view.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++)
        grid_sum(k + m * i, strike + m * i, log_fk + m * i, svi ? NULL : vol + m * i,
                 svi ? vol + 5 * i : NULL, forward[i], t[i], m, scratch, out + N_OUT * i);
    Py_END_ALLOW_THREADS
    free(scratch);
    result = Py_NewRef(Py_None);
done:
    release_buffers(bufs, N_BUFS);
    return result;
}

static PyMethodDef methods[] = {
    {"quoted", (PyCFunction)(void (*)(void))quoted, METH_FASTCALL,
     "quoted(quotes, names, out): the VIX sum of one expiry's quotes (objects whose "
     "attributes names are their strike, bid, ask and is_call): sum, forward, K0 and "
     "strikes used (0: none) into out (see variance_sums.py)."},
    {"svi_grids", (PyCFunction)(void (*)(void))svi_grids, METH_FASTCALL,
     "svi_grids(params, t, widths, out): each raw SVI smile's strike grid (out (n, m)) of "
     "variance_index.smile_grids (see variance_sums.py)."},
    {"smiles", (PyCFunction)(void (*)(void))smiles, METH_FASTCALL,
     "smiles(k, strike, log_fk, vol, forward, t, out, svi): the VIX sum of each smile's "
     "grid row, its vols given (or its raw SVI parameters (n, 5) where svi) into out (n, 4) "
     "(see variance_sums.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_variance_index",
    .m_doc = "The VIX sums of quotes and of smiles' grids in C (see variance_sums.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__variance_index(void) { return PyModule_Create(&module); }
