/* The smile metrics of raw SVI smiles (streamer/core/smile.py), one smile at a time: the
 * same finite differences, tangent start, Newton steps, settle and bracket rule and
 * bisection fallback as smile.py's numpy path, which stays the fallback and the reference
 * (tests/core/test_smile_native.py checks they agree).
 *
 * numpy's cost on 4 strikes of ~10-20 smiles is its per-call overhead: each Newton step
 * is a few dozen numpy calls for a few hundred flops. Here it is one loop.
 *
 * A smile is the blend of streamer/core/smile_rows.py: total variance
 * w = scale * clip(W_lo + lam (W_hi - W_lo), min, max) + extra of two raw SVI slices
 * (or W_lo alone where not blended), vol = sqrt(w / t) with NaN where w < 0; every
 * operation in numpy's order, so that the vols agree bit for bit. N(d1) in the bisection
 * is 0.5 erfc(-z / sqrt 2), as streamer.core.special's kernel has it; where scipy's
 * stands in (that kernel not built) a comparison within an ulp of its target may flip,
 * which moves the bisected strike within its last bracket.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

#include "_buffers.h"
#include "_numpy_order.h"

#define N_TARGETS 4 /* the 25- and 10-delta calls, then the puts */
#define N_OUT 7     /* atm, skew, curvature, rr25, bf25, rr10, bf10 */

static const double SQRT1_2 = 0.70710678118654752440;

/* The numerical settings, from smile.py (numbers computed there, so their bits agree) */
typedef struct {
    double z[N_TARGETS];       /* ndtri of the targets */
    double target[N_TARGETS];  /* N(d1) of the calls, then of the puts */
    double z_half;             /* ndtri(1 - smallest delta): the bracket's width */
    double step, two_step, step_sq; /* the ATM finite difference */
    double dk, tol;            /* Newton's forward difference and step tolerance */
    int newton_steps, bisections;
} Settings;

typedef struct {
    const double *p_lo, *p_hi; /* a, b, rho, m, sigma */
    double lam, scale, extra, inv_t;
    int blended;
} Smile;

/* numpy.clip's bounds: a NaN x stays NaN */
static double clip(double x, double lo, double hi) {
    if (isnan(x))
        return x;
    x = x > lo ? x : lo;
    return x < hi ? x : hi;
}

static double ndtr(double z) { return 0.5 * erfc(-z * SQRT1_2); }

static double svi_w(const double *p, double k) {
    const double x = k - p[3];
    return p[0] + p[1] * (p[2] * x + sqrt(x * x + p[4] * p[4]));
}

static double vol(const Smile *s, double k) {
    double w = svi_w(s->p_lo, k);
    if (s->blended) {
        const double hi = svi_w(s->p_hi, k);
        w = s->scale * clip(w + s->lam * (hi - w), fmin(w, hi), fmax(w, hi)) + s->extra;
    }
    return sqrt((w >= 0.0 ? w : NAN) * s->inv_t);
}

/* Where d1 = z on the smile's tangent at the money (smile.py's _tangent_strikes) */
static double tangent_strike(double s0, double a, double z) {
    const double flat = s0 * (0.5 * s0 - z);
    const double minus_b = 1.0 - a * (s0 - z);
    const double root = 2.0 * flat / (minus_b + sqrt(minus_b * minus_b - 2.0 * a * a * flat));
    return isfinite(root) && s0 + a * root > 0.0 ? root : flat;
}

/* Newton on d1(k) = z for the four strikes from the tangent start (_newton_delta_strikes):
 * 1 where every strike settled inside the bracket (+-half), else 0 */
static int newton(const Smile *s, double sqrt_t, double s_atm, double s_skew, double half,
                  const Settings *c, double *k) {
    if (!(isfinite(s_atm) && s_atm > 0.0))
        return 0;
    for (int j = 0; j < N_TARGETS; j++)
        k[j] = tangent_strike(s_atm, s_skew, c->z[j]);
    int running = 1;
    for (int it = 0; it < c->newton_steps && running; it++) {
        double g[N_TARGETS], dg[N_TARGETS];
        for (int j = 0; j < N_TARGETS; j++) {
            const double v = vol(s, k[j]) * sqrt_t, v_up = vol(s, k[j] + c->dk) * sqrt_t;
            const double dv = (v_up - v) / c->dk;
            g[j] = -k[j] / v + 0.5 * v - c->z[j];
            dg[j] = -1.0 / v + k[j] * dv / (v * v) + 0.5 * dv;
            if (!(isfinite(g[j]) && dg[j] < 0.0)) /* N(d1) must fall with k */
                return 0;
        }
        running = 0;
        for (int j = 0; j < N_TARGETS; j++) {
            const double step = g[j] / dg[j];
            k[j] = k[j] - step;
            running |= !(fabs(step) <= c->tol * nan_max(1.0, fabs(k[j])));
        }
    }
    if (running)
        return 0;
    for (int j = 0; j < N_TARGETS; j++)
        if (!(fabs(k[j]) < half))
            return 0;
    return 1;
}

/* The bracketed bisection on N(d1(k)) (_bisect_delta_strikes) */
static void bisect(const Smile *s, double sqrt_t, double half, const Settings *c, double *k) {
    for (int j = 0; j < N_TARGETS; j++) {
        double lo = -half, hi = half;
        for (int i = 0; i < c->bisections; i++) {
            const double mid = 0.5 * (lo + hi);
            const double v = vol(s, mid) * sqrt_t;
            if (ndtr(-mid / v + 0.5 * v) > c->target[j])
                lo = mid;
            else
                hi = mid;
        }
        k[j] = 0.5 * (lo + hi);
    }
}

/* atm, skew, curvature, rr25, bf25, rr10, bf10 of one smile (smile_metrics_rows) */
static void metrics_one(const Smile *s, double sqrt_t, const Settings *c, double *out) {
    const double down = vol(s, -c->step), atm = vol(s, 0.0), up = vol(s, c->step);
    const double skew = (up - down) / c->two_step;
    const double s_atm = atm * sqrt_t, s_skew = (isfinite(skew) ? skew : 0.0) * sqrt_t;
    const double wide = 2.0 * s_atm * (c->z_half + 0.5 * s_atm);
    const double half = wide > 3.0 ? wide : 3.0; /* NaN (no ATM vol): 3 */
    double k[N_TARGETS], v[N_TARGETS];
    if (!newton(s, sqrt_t, s_atm, s_skew, half, c, k))
        bisect(s, sqrt_t, half, c, k);
    for (int j = 0; j < N_TARGETS; j++)
        v[j] = vol(s, k[j]);
    out[0] = atm;
    out[1] = skew;
    out[2] = (up - 2.0 * atm + down) / c->step_sq;
    for (int d = 0; d < 2; d++) {
        out[3 + 2 * d] = v[d] - v[2 + d];
        out[4 + 2 * d] = 0.5 * (v[d] + v[2 + d]) - atm;
    }
}

#define MAX_STEPS 10000 /* far above any solve's need: a bad count is an error, not a wrap */

static int read_settings(PyObject *const *args, const Buf *numbers, Settings *c) {
    const double *x = numbers->view.buf;
    memcpy(c->z, x, sizeof c->z);
    memcpy(c->target, x + N_TARGETS, sizeof c->target);
    c->z_half = x[8];
    c->step = x[9];
    c->two_step = x[10];
    c->step_sq = x[11];
    c->dk = x[12];
    c->tol = x[13];
    const long newton_steps = PyLong_AsLong(args[0]), bisections = PyLong_AsLong(args[1]);
    if (PyErr_Occurred())
        return 0;
    if (newton_steps < 0 || newton_steps > MAX_STEPS || bisections < 0 || bisections > MAX_STEPS) {
        PyErr_Format(PyExc_ValueError, "newton_steps and bisections must be in 0..%d", MAX_STEPS);
        return 0;
    }
    c->newton_steps = (int)newton_steps;
    c->bisections = (int)bisections;
    return 1;
}

enum { PARAMS, LO, HI, LAM, SCALE, EXTRA, INV_T, SQRT_T, NUMBERS, OUT, N_BUFS };

static PyObject *metrics(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    static const char *names[] = {"params", "lo", "hi", "lam", "scale", "extra", "inv_t",
                                  "sqrt_t", "settings", "out"};
    if (nargs != N_BUFS + 3) {
        PyErr_Format(PyExc_TypeError, "metrics() takes %d arguments (%zd given)", N_BUFS + 3,
                     nargs);
        return NULL;
    }
    Buf bufs[N_BUFS];
    memset(bufs, 0, sizeof bufs);
    PyObject *result = NULL;
    Settings c;
    const int blended = PyObject_IsTrue(args[N_BUFS + 2]);
    if (blended < 0 || !get_buffer(args[PARAMS], &bufs[PARAMS], names[PARAMS], 'f', 8, -1, 0))
        goto done;
    const Py_ssize_t n_slices = bufs[PARAMS].view.len / (5 * 8);
    if (!get_buffer(args[LO], &bufs[LO], names[LO], 'i', 8, -1, 0))
        goto done;
    const Py_ssize_t n = bufs[LO].view.len / 8;
    for (int i = HI; i < N_BUFS; i++) {
        const Py_ssize_t count = i == NUMBERS ? 14 : i == OUT ? n * N_OUT : n;
        if (!get_buffer(args[i], &bufs[i], names[i], i == HI ? 'i' : 'f', 8, count, i == OUT))
            goto done;
    }
    if (!read_settings(args + N_BUFS, &bufs[NUMBERS], &c))
        goto done;
    const long long *lo = bufs[LO].view.buf, *hi = bufs[HI].view.buf;
    for (Py_ssize_t i = 0; i < n; i++)
        if (lo[i] < 0 || lo[i] >= n_slices || hi[i] < 0 || hi[i] >= n_slices) {
            PyErr_SetString(PyExc_ValueError, "metrics: a slice index out of range");
            goto done;
        }
    const double *params = bufs[PARAMS].view.buf, *lam = bufs[LAM].view.buf,
                 *scale = bufs[SCALE].view.buf, *extra = bufs[EXTRA].view.buf,
                 *inv_t = bufs[INV_T].view.buf, *sqrt_t = bufs[SQRT_T].view.buf;
    double *out = bufs[OUT].view.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        const Smile s = {params + 5 * lo[i], params + 5 * hi[i], lam[i], scale[i], extra[i],
                         inv_t[i], blended};
        metrics_one(&s, sqrt_t[i], &c, out + N_OUT * i);
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    release_buffers(bufs, N_BUFS);
    return result;
}

static PyMethodDef methods[] = {
    {"metrics", (PyCFunction)(void (*)(void))metrics, METH_FASTCALL,
     "metrics(params, lo, hi, lam, scale, extra, inv_t, sqrt_t, settings, out, newton_steps, "
     "bisections, blended): each smile's atm, skew, curvature, rr25, bf25, rr10, bf10 written "
     "into out (n, 7) (see smile_rows.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_svi_smile",
    .m_doc = "The smile metrics of raw SVI smiles in C (see smile_rows.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__svi_smile(void) { return PyModule_Create(&module); }
