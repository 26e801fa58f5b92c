/* Standard errors of raw SVI fits, every slice of a chain in one call.
 *
 * Contract (fit_errors.py's svi_errors_rows; tests/core/test_fit_errors_native.py checks
 * it against the numpy path): per slice, errors_from_jacobians of svi.vol_jacobian_rows
 * at the slice's quotes and the ATM (k = 0) -- the analytic d vol / d (a, b, rho, m,
 * sigma) in numpy's operations and order, so the Jacobian agrees bit for bit; then
 * (J^T J)^-1 with J the rows of the quoted points (finite half spread) divided by their
 * half spreads, the eigenvalue test for singular-to-rounding normal matrices, the delta
 * method at the ATM. A slice gets NaNs where numpy's does: no more quoted points than
 * parameters, a quoted half spread <= 0, any non-finite Jacobian row (unquoted points
 * and the ATM's included), a non-finite or singular J^T J.
 *
 * The slices' quotes come one after another (sizes[s] of them for slice s), not padded:
 * the padding was there for numpy's sake (the fallback pads them).
 *
 * The normal matrix, its eigenvalues (cyclic Jacobi here, LAPACK's syevd there) and its
 * inverse (LU with partial pivoting, as getrf/getrs) are each exact to rounding, but not
 * in numpy's (OpenBLAS's, CPU-dependent, fused) summation order: the errors agree to
 * rounding amplified by the conditioning of J^T J, about cond x 1e-16 relative (median
 * 1e-13 on the bundled chains; 2e-10 at cond 1e9 there, 3e-8 at cond 1e11 on a real
 * chain's short expiries). Neither side is the more exact: each is that far from the
 * same sums in extended precision. The test near SINGULAR may fall either way.
 *
 * Why native: on 10-50 quotes a slice, numpy's per-call overhead was the cost (~0.4 ms a
 * batch of 9 slices for some 30 calls); here a slice is about a microsecond.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

#include "_buffers.h"

#define P 5                /* a, b, rho, m, sigma */
#define SINGULAR 1e-14     /* fit_errors._SINGULAR: smallest eigenvalue / largest */
#define JACOBI_SWEEPS 60   /* cyclic Jacobi on 5x5 converges in < 10 */

/* d vol / d params of raw SVI at k, at time t (svi.vol_jacobian_rows); 0 if not finite */
static int jacobian_row(const double *par, double t, double k, double *row) {
    const double a = par[0], b = par[1], rho = par[2], m = par[3], sigma = par[4];
    const double x = k - m;
    const double root = sqrt(x * x + sigma * sigma);
    const double w = a + b * (rho * x + root);
    const double scale = 0.5 / sqrt((w > 0.0 ? w : NAN) * t);
    const double dw[P] = {1.0, rho * x + root, b * x, -b * (rho + x / root), b * sigma / root};
    int finite = 1;
    for (int j = 0; j < P; j++) {
        row[j] = dw[j] * scale;
        finite &= isfinite(row[j]) != 0;
    }
    return finite;
}

/* The smallest and largest eigenvalue of the symmetric in (cyclic Jacobi, on a copy) */
static void eigen_range(double in[P][P], double *lo, double *hi) {
    double a[P][P];
    memcpy(a, in, sizeof a);
    for (int sweep = 0; sweep < JACOBI_SWEEPS; sweep++) {
        double off = 0.0;
        for (int p = 0; p < P; p++)
            for (int q = p + 1; q < P; q++)
                off += fabs(a[p][q]);
        if (off == 0.0)
            break;
        for (int p = 0; p < P; p++)
            for (int q = p + 1; q < P; q++) {
                const double apq = a[p][q];
                if (apq == 0.0)
                    continue;
                /* negligible against both diagonal entries: drop it (Rutishauser's rule) */
                if (sweep > 3 && fabs(a[p][p]) + 100.0 * fabs(apq) == fabs(a[p][p])
                    && fabs(a[q][q]) + 100.0 * fabs(apq) == fabs(a[q][q])) {
                    a[p][q] = a[q][p] = 0.0;
                    continue;
                }
                const double theta = (a[q][q] - a[p][p]) / (2.0 * apq);
                const double tt = isfinite(theta * theta)
                                      ? copysign(1.0, theta) / (fabs(theta) + sqrt(theta * theta + 1.0))
                                      : 0.5 / theta;
                const double c = 1.0 / sqrt(tt * tt + 1.0), s = tt * c;
                for (int r = 0; r < P; r++) { /* columns p, q */
                    const double arp = a[r][p], arq = a[r][q];
                    a[r][p] = c * arp - s * arq;
                    a[r][q] = s * arp + c * arq;
                }
                for (int r = 0; r < P; r++) { /* rows p, q */
                    const double apr = a[p][r], aqr = a[q][r];
                    a[p][r] = c * apr - s * aqr;
                    a[q][r] = s * apr + c * aqr;
                }
                a[p][q] = a[q][p] = 0.0;
            }
    }
    *lo = *hi = a[0][0];
    for (int p = 1; p < P; p++) {
        *lo = a[p][p] < *lo ? a[p][p] : *lo;
        *hi = a[p][p] > *hi ? a[p][p] : *hi;
    }
}

/* inv = in^-1 by LU with partial pivoting (numpy.linalg.inv), in unchanged; 0 where a
 * pivot is 0 */
static int inverse(double in[P][P], double inv[P][P]) {
    double lu[P][P];
    int perm[P];
    memcpy(lu, in, sizeof lu);
    for (int i = 0; i < P; i++)
        perm[i] = i;
    for (int c = 0; c < P; c++) {
        int pivot = c;
        for (int r = c + 1; r < P; r++)
            if (fabs(lu[r][c]) > fabs(lu[pivot][c]))
                pivot = r;
        if (lu[pivot][c] == 0.0)
            return 0;
        if (pivot != c) {
            double row[P];
            memcpy(row, lu[c], sizeof row);
            memcpy(lu[c], lu[pivot], sizeof row);
            memcpy(lu[pivot], row, sizeof row);
            const int swap = perm[c];
            perm[c] = perm[pivot];
            perm[pivot] = swap;
        }
        for (int r = c + 1; r < P; r++) {
            const double l = lu[r][c] / lu[c][c];
            lu[r][c] = l;
            for (int j = c + 1; j < P; j++)
                lu[r][j] -= l * lu[c][j];
        }
    }
    for (int col = 0; col < P; col++) { /* solve L U x = e_col, permuted */
        double x[P];
        for (int i = 0; i < P; i++) {
            double v = perm[i] == col ? 1.0 : 0.0;
            for (int j = 0; j < i; j++)
                v -= lu[i][j] * x[j];
            x[i] = v;
        }
        for (int i = P - 1; i >= 0; i--) {
            double v = x[i];
            for (int j = i + 1; j < P; j++)
                v -= lu[i][j] * x[j];
            x[i] = v / lu[i][i];
        }
        for (int i = 0; i < P; i++)
            inv[i][col] = x[i];
    }
    return 1;
}

/* Whether the smallest eigenvalue of the PSD normal exceeds SINGULAR times its largest
 * (numpy's eigvalsh test), given its computed inverse. Cheap first: trace(N) >= lmax and
 * |N^-1|_F >= 1 / lmin bound the ratio below within a factor 5 sqrt 5, and the inverse of
 * a matrix that fails the test has a norm far above the SHORTCUT bound (backward
 * stability: ~1 / (lmin + 1e-15 lmax)); the Jacobi sweeps (a few us) only near the line. */
#define SHORTCUT 1e-12
static int regular(double normal[P][P], double inv[P][P]) {
    double trace = 0.0, frobenius = 0.0, lo, hi;
    for (int i = 0; i < P; i++) {
        trace += normal[i][i];
        for (int j = 0; j < P; j++)
            frobenius += inv[i][j] * inv[i][j];
    }
    if (trace * sqrt(frobenius) < 1.0 / SHORTCUT)
        return 1;
    eigen_range(normal, &lo, &hi);
    return lo > SINGULAR * hi;
}

/* J^T J of one slice's n quoted rows and its ATM row g; 0 where the slice has no errors */
static int normal_matrix(const double *par, double t, const double *k, const double *h,
                         Py_ssize_t n, double normal[P][P], double g[P]) {
    Py_ssize_t quoted = 0;
    int ok = jacobian_row(par, t, 0.0, g);
    memset(normal, 0, sizeof(double) * P * P);
    for (Py_ssize_t i = 0; i < n; i++) {
        double row[P];
        ok &= jacobian_row(par, t, k[i], row); /* every row, as numpy checks them */
        if (!isfinite(h[i]))
            continue; /* not quoted: numpy's padding */
        quoted++;
        ok &= h[i] > 0.0;
        for (int j = 0; j < P; j++)
            row[j] /= h[i];
        for (int p = 0; p < P; p++)
            for (int q = p; q < P; q++)
                normal[p][q] += row[p] * row[q];
    }
    for (int p = 0; p < P; p++)
        for (int q = p; q < P; q++) {
            normal[q][p] = normal[p][q];
            ok &= isfinite(normal[p][q]) != 0;
        }
    return ok && quoted > P;
}

/* Parameter standard errors se[P] and the ATM vol's *atm of one slice */
static void errors_one(const double *par, double t, const double *k, const double *h,
                       Py_ssize_t n, double *se, double *atm) {
    double normal[P][P], g[P], cov[P][P];
    for (int j = 0; j < P; j++)
        se[j] = NAN;
    *atm = NAN;
    if (!normal_matrix(par, t, k, h, n, normal, g))
        return;
    if (!inverse(normal, cov) || !regular(normal, cov))
        return;
    double var = 0.0;
    for (int i = 0; i < P; i++) {
        se[i] = cov[i][i] < 0.0 ? 0.0 : sqrt(cov[i][i]); /* NaN stays NaN */
        for (int j = 0; j < P; j++)
            var += g[i] * cov[i][j] * g[j];
    }
    *atm = var < 0.0 ? 0.0 : sqrt(var);
}

enum { K, HALF, SIZES, T, PARAMS, SE, ATM, N_BUFS };

static PyObject *svi(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    static const char *names[] = {"k", "half_spread", "sizes", "t", "params", "se", "atm"};
    if (nargs != N_BUFS) {
        PyErr_Format(PyExc_TypeError, "svi() takes %d arguments (%zd given)", N_BUFS, nargs);
        return NULL;
    }
    Buf bufs[N_BUFS];
    memset(bufs, 0, sizeof bufs);
    PyObject *result = NULL;
    if (!get_buffer(args[K], &bufs[K], names[K], 'f', 8, -1, 0)
        || !get_buffer(args[SIZES], &bufs[SIZES], names[SIZES], 'i', 8, -1, 0))
        goto done;
    const Py_ssize_t cells = bufs[K].view.len / 8, n = bufs[SIZES].view.len / 8;
    const long long *sizes = bufs[SIZES].view.buf;
    Py_ssize_t total = 0;
    for (Py_ssize_t s = 0; s < n; s++) {
        if (sizes[s] < 0 || sizes[s] > cells - total) {
            PyErr_SetString(PyExc_ValueError, "sizes: expected counts >= 0 summing to len(k)");
            goto done;
        }
        total += (Py_ssize_t)sizes[s];
    }
    if (total != cells) {
        PyErr_SetString(PyExc_ValueError, "sizes: expected counts >= 0 summing to len(k)");
        goto done;
    }
    const Py_ssize_t counts[N_BUFS] = {cells, cells, n, n, n * P, n * P, n};
    for (int i = HALF; i < N_BUFS; i++)
        if (i != SIZES && !get_buffer(args[i], &bufs[i], names[i], 'f', 8, counts[i], i >= SE))
            goto done;
    const double *k = bufs[K].view.buf, *half = bufs[HALF].view.buf, *t = bufs[T].view.buf,
                 *params = bufs[PARAMS].view.buf;
    double *se = bufs[SE].view.buf, *atm = bufs[ATM].view.buf;
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t first = 0;
    for (Py_ssize_t s = 0; s < n; s++) {
        errors_one(params + P * s, t[s], k + first, half + first, (Py_ssize_t)sizes[s],
                   se + P * s, atm + s);
        first += (Py_ssize_t)sizes[s];
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    release_buffers(bufs, N_BUFS);
    return result;
}

static PyMethodDef methods[] = {
    {"svi", (PyCFunction)(void (*)(void))svi, METH_FASTCALL,
     "svi(k, half_spread, sizes, t, params, se, atm): raw SVI slices' parameter standard "
     "errors written into se (n, 5) and their ATM vol's into atm (n,) (see fit_errors.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_fit_errors",
    .m_doc = "Standard errors of raw SVI fits in C (see fit_errors.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__fit_errors(void) { return PyModule_Create(&module); }
