/* The inverse of the normalised out-of-the-money Black price (Jaeckel 2015, "Let's be
 * rational"), element by element: the same branches, initial guesses and Householder
 * steps as normalised_black.py, whose numpy path stays the fallback and the reference
 * (tests/core/test_normalised_black.py checks they agree).
 *
 * numpy's cost on the 30-60 quotes of a slice is its per-call overhead: the inversion
 * of one chain's mids, bids and asks made ~400 numpy calls. Here it is one loop.
 *
 * Special functions: N(z) = erfc(-z/sqrt 2)/2 (C99); erfcx(z) = exp(z^2) erfc(z) with
 * z^2 split so that its rounding is not amplified, and its asymptotic series past
 * z = 26 (where erfc underflows); N^-1 by Acklam's rational approximation refined by
 * one Halley step on erfc (relative error ~1e-15).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

#include "_buffers.h"
#include "_numpy_order.h"

static const double SQRT1_2 = 0.70710678118654752440;
static const double LN2 = 0.69314718055994530942;
static const double HALF_LN_2PI = 0.91893853320467274178;
static const double INV_SQRT_2PI = 0.39894228040143267794;
static const double SQRT_2PI = 2.50662827463100050242;
static const double SQRT_PI = 1.77245385090551602730;
static const double SQRT3 = 1.73205080756887729353;
static const double PI = 3.14159265358979323846;
#define F_LOWER_SCALE (2.0 * PI / 5.19615242270663188058) /* 2 pi / sqrt 27 */
#define EPS 2.220446049250313e-16
#define R_MIN (-(1.0 - 1.4901161193847656e-08)) /* -(1 - sqrt eps) */
#define R_MAX (2.0 / (EPS * EPS))

static double ndtr(double z) { return 0.5 * erfc(-z * SQRT1_2); }

/* exp(z * z) with z * z split into an exact product and a small rest */
static double exp_square(double z) {
    const double hi = floor(z * 4096.0) / 4096.0, lo = z - hi;
    return exp(hi * hi) * exp(lo * (2.0 * hi + lo));
}

static double erfcx(double z) {
    if (z < -26.7) /* exp(z^2) overflows: inf, as scipy (and no NaN from z = -inf) */
        return INFINITY;
    if (z < 0.0)
        return 2.0 * exp_square(z) - erfcx(-z);
    if (z < 26.0)
        return exp_square(z) * erfc(z);
    /* 1/(z sqrt pi) sum (-1)^n (2n-1)!! / (2 z^2)^n: terms below 1e-17 by n = 7 */
    const double u = 1.0 / (2.0 * z * z);
    double term = 1.0, sum = 1.0;
    for (int n = 1; n <= 8; n++) {
        term *= -(2.0 * n - 1.0) * u;
        sum += term;
    }
    return sum / (z * SQRT_PI);
}

static double acklam(double p) { /* p in (0, 0.5] */
    static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,
                               -2.759285104469687e+02, 1.383577518672690e+02,
                               -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02,
                               -1.556989798598866e+02, 6.680131188771972e+01,
                               -1.328068155288572e+01};
    static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01,
                               -2.400758277161838e+00, -2.549732539343734e+00,
                               4.374664141464968e+00, 2.938163982698783e+00};
    static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01,
                               2.445134137142996e+00, 3.754408661907416e+00};
    if (p < 0.02425) {
        const double q = sqrt(-2.0 * log(p));
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5])
               / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
    }
    const double q = p - 0.5, r = q * q;
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q
           / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
}

static double ndtri(double p) {
    if (!(p > 0.0 && p < 1.0))
        return p == 0.0 ? -INFINITY : p == 1.0 ? INFINITY : NAN;
    if (p > 0.5) /* 1 - p is exact here: the lower tail keeps the precision */
        return -ndtri(1.0 - p);
    const double x = acklam(p);
    const double e = 0.5 * erfc(-x * SQRT1_2) - p;
    /* past x^2 = 1400 (p below ~1e-305) exp(x^2 / 2) overflows: its two halves instead */
    const double h = x * x > 1400.0 ? exp(0.25 * x * x) : 0.0;
    const double u = h > 0.0 ? (e * h) * SQRT_2PI * h : e * SQRT_2PI * exp(0.5 * x * x);
    return x - u / (1.0 + 0.5 * x * u);
}

/* -- b(x, s) ------------------------------------------------------------------------ */

static double wing_log_b(double h, double t, double q) {
    const double diff = erfcx(-SQRT1_2 * (h + t)) - erfcx(-SQRT1_2 * (h - t));
    return log(diff) + q - LN2;
}

static double body_b(double x, double h, double t) {
    const double e = exp(0.5 * x);
    return e * ndtr(h + t) - ndtr(h - t) / e;
}

/* ln b (or b when !want_log), with h = x/s and q = -(h^2 + s^2/4)/2 */
static double b_of(double x, double s, int want_log, double *h_out, double *q_out) {
    const double h = x / s, t = 0.5 * s, q = -0.5 * (h * h + t * t);
    *h_out = h;
    *q_out = q;
    if (h + t < 0.0) {
        const double lb = wing_log_b(h, t, q);
        return want_log ? lb : exp(lb);
    }
    const double b = body_b(x, h, t);
    return want_log ? log(b) : b;
}

static double householder(double s, double newton, double halley, double hh3, double *ds_out) {
    double ds = newton * (1.0 + 0.5 * halley * newton)
                / (1.0 + newton * (halley + hh3 * newton / 6.0));
    ds = nan_max(-0.5 * s, ds);
    *ds_out = ds;
    return s + ds;
}

static void halley_hh3(double s, double h, double *halley, double *hh3) {
    const double bh = h * h / s - 0.25 * s, hs = h / s;
    *halley = bh;
    *hh3 = bh * bh - 3.0 * hs * hs - 0.25;
}

static double iterate_lower(double x, double beta, double s, int steps, double *ds) {
    const double ln_beta = log(beta);
    *ds = s;
    for (int i = 0; i < steps; i++) {
        double h, q, bh, bh3;
        const double ln_b = b_of(x, s, 1, &h, &q);
        const double bpob = exp(q - HALF_LN_2PI - ln_b);
        const double inv = 1.0 / ln_b;
        halley_hh3(s, h, &bh, &bh3);
        const double newton = (ln_beta - ln_b) * ln_b / ln_beta / bpob;
        const double c = 1.0 + 2.0 * inv;
        const double halley = bh - bpob * c;
        const double hh3 = bh3 + 2.0 * bpob * bpob * (1.0 + 3.0 * inv * (1.0 + inv))
                           - 3.0 * bh * bpob * c;
        s = householder(s, newton, halley, hh3, ds);
    }
    return s;
}

static double iterate_middle(double x, double beta, double s, int steps, double *ds) {
    *ds = s;
    for (int i = 0; i < steps; i++) {
        double h, q, bh, bh3;
        const double b = b_of(x, s, 0, &h, &q);
        const double newton = (beta - b) / (INV_SQRT_2PI * exp(q));
        halley_hh3(s, h, &bh, &bh3);
        s = householder(s, newton, bh, bh3, ds);
    }
    return s;
}

static double iterate_upper(double x, double beta, double s, int steps, double *ds) {
    const double e = exp(0.5 * x), gap_beta = e - beta;
    *ds = s;
    for (int i = 0; i < steps; i++) {
        double bh, bh3;
        const double h = x / s, t = 0.5 * s;
        const double gap = e * ndtr(-(h + t)) + ndtr(h - t) / e;
        const double gp = INV_SQRT_2PI * exp(-0.5 * (h * h + t * t)) / gap;
        halley_hh3(s, h, &bh, &bh3);
        const double newton = -log(gap_beta / gap) / gp;
        s = householder(s, newton, bh + gp, bh3 + gp * (2.0 * gp + 3.0 * bh), ds);
    }
    return s;
}

/* -- the rational cubic initial guesses (rational_cubic.py) --------------------------- */

static double rational_cubic(double x, double x_l, double x_r, double y_l, double y_r,
                             double d_l, double d_r, double r) {
    const double h = x_r - x_l, t = (x - x_l) / h, omt = 1.0 - t;
    if (!(r < R_MAX)) /* r >= R_MAX (or NaN): the straight line */
        return y_r * t + y_l * omt;
    const double t2 = t * t, omt2 = omt * omt;
    return (y_r * t2 * t + (r * y_r - h * d_r) * t2 * omt + (r * y_l + h * d_l) * t * omt2
            + y_l * omt2 * omt) / (1.0 + (r - 3.0) * t * omt);
}

static double control_to_fit_second_derivative(double x_l, double x_r, double y_l, double y_r,
                                               double d_l, double d_r, double second_l) {
    const double h = x_r - x_l, secant = (y_r - y_l) / h, spread = d_r - d_l;
    const double left = secant - d_l;
    const double r_fit = (0.5 * h * second_l + spread) / left;
    const double r_shape = nan_max((d_r + d_l) / secant,
                                   nan_max(fabs(spread / (d_r - secant)), fabs(spread / left)));
    return fmax(r_fit, nan_max(r_shape, R_MIN));
}

static double middle_guess(double beta, double b_c, double s_c, double v_c, double b_o,
                           double s_o, double v_o) {
    const double d_c = 1.0 / v_c, d_o = 1.0 / v_o;
    const double r = control_to_fit_second_derivative(b_c, b_o, s_c, s_o, d_c, d_o, 0.0);
    return rational_cubic(beta, b_c, b_o, s_c, s_o, d_c, d_o, r);
}

static double lower_guess(double x, double beta, double s_l, double b_l) {
    const double ax = -x, z = ax / (SQRT3 * s_l), y = z * z, s2 = s_l * s_l;
    const double phi_cdf = ndtr(-z), phi_pdf = INV_SQRT_2PI * exp(-0.5 * y);
    const double f = F_LOWER_SCALE * ax * phi_cdf * phi_cdf * phi_cdf;
    const double fp = 2.0 * PI * y * phi_cdf * phi_cdf * exp(y + 0.125 * s2);
    const double fpp = PI / 6.0 * y / (s2 * s_l) * phi_cdf
                       * (8.0 * SQRT3 * s_l * ax
                          + (3.0 * s2 * (s2 - 8.0) - 8.0 * x * x) * phi_cdf / phi_pdf)
                       * exp(2.0 * y + 0.25 * s2);
    const double r = control_to_fit_second_derivative(b_l, 0.0, f, 0.0, fp, 1.0, fpp);
    double mapped = rational_cubic(beta, 0.0, b_l, 0.0, f, 1.0, fp, r);
    const double u = beta / b_l;
    if (!(mapped > 0.0))
        mapped = (f * u + b_l * (1.0 - u)) * u;
    return fabs(ax / (SQRT3 * ndtri(cbrt(mapped / (F_LOWER_SCALE * ax)))));
}

static double upper_guess(double x, double beta, double s_h, double b_h) {
    const double b_max = exp(0.5 * x), f = ndtr(-0.5 * s_h);
    const double w = (x / s_h) * (x / s_h);
    const double fp = -0.5 * exp(0.5 * w);
    const double fpp = sqrt(0.5 * PI) * exp(w + 0.125 * s_h * s_h) * w / s_h;
    const double r = control_to_fit_second_derivative(b_h, b_max, f, 0.0, fp, -0.5, fpp);
    double mapped = rational_cubic(beta, b_h, b_max, f, 0.0, fp, -0.5, r);
    const double width = b_max - b_h, u = (beta - b_h) / width;
    if (!(mapped > 0.0))
        mapped = (f * (1.0 - u) + 0.5 * width * u) * (1.0 - u);
    return -2.0 * ndtri(mapped);
}

/* -- the inverse ---------------------------------------------------------------------- */

static double total_vol_one(double x, double beta, int steps, double *step) {
    const double s_c = sqrt(-2.0 * x), b_max = exp(0.5 * x);
    const double b_c = 0.5 * b_max - ndtr(-s_c) / b_max;
    const double v_c = INV_SQRT_2PI * b_max; /* vega at s_c */
    const int low = beta < b_c;
    /* where the tangent at the inflection point meets 0 (below it) or b_max (above) */
    const double s_o = low ? s_c - b_c / v_c : s_c + (b_max - b_c) / v_c;
    double h_o, q_o;
    const double b_o = b_of(x, s_o, 0, &h_o, &q_o);
    if (low && beta < b_o)
        return iterate_lower(x, beta, lower_guess(x, beta, s_o, b_o), steps, step);
    if (!low && beta > b_o) {
        const double s0 = upper_guess(x, beta, s_o, b_o);
        /* Jaeckel keeps the b - beta objective unless beta is past half of b_max */
        return beta > 0.5 * b_max ? iterate_upper(x, beta, s0, steps, step)
                                  : iterate_middle(x, beta, s0, steps, step);
    }
    const double s0 = middle_guess(beta, b_c, s_c, v_c, b_o, s_o, INV_SQRT_2PI * exp(q_o));
    return iterate_middle(x, beta, s0, steps, step);
}

static PyObject *total_vol(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    static const char *names[] = {"x", "beta", "s", "last_step"};
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "total_vol() takes 5 arguments (%zd given)", nargs);
        return NULL;
    }
    const int steps = PyLong_AsLong(args[4]);
    if (steps == -1 && PyErr_Occurred())
        return NULL;
    Buf bufs[4];
    memset(bufs, 0, sizeof bufs);
    PyObject *result = NULL;
    Py_ssize_t n = -1;
    for (int i = 0; i < 4; i++) {
        if (!get_buffer(args[i], &bufs[i], names[i], 'f', 8, n, i >= 2))
            goto done;
        n = bufs[i].view.len / 8;
    }
    const double *x = bufs[0].view.buf, *beta = bufs[1].view.buf;
    double *s = bufs[2].view.buf, *step = bufs[3].view.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++)
        s[i] = total_vol_one(x[i], beta[i], steps, &step[i]);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    release_buffers(bufs, 4);
    return result;
}

/* f element by element: out[i] = f(x[i]), both float64 buffers of one length. */
static PyObject *apply(PyObject *const *args, Py_ssize_t nargs, double (*f)(double),
                       const char *name) {
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "%s() takes 2 arguments (%zd given)", name, nargs);
        return NULL;
    }
    Buf bufs[2];
    memset(bufs, 0, sizeof bufs);
    PyObject *result = NULL;
    if (!get_buffer(args[0], &bufs[0], "x", 'f', 8, -1, 0)
        || !get_buffer(args[1], &bufs[1], "out", 'f', 8, bufs[0].view.len / 8, 1))
        goto done;
    const Py_ssize_t n = bufs[0].view.len / 8;
    const double *x = bufs[0].view.buf;
    double *out = bufs[1].view.buf;
    for (Py_ssize_t i = 0; i < n; i++)
        out[i] = f(x[i]);
    result = Py_NewRef(Py_None);
done:
    release_buffers(bufs, 2);
    return result;
}

static PyObject *py_ndtr(PyObject *m, PyObject *const *a, Py_ssize_t n) {
    (void)m;
    return apply(a, n, ndtr, "ndtr");
}

static PyObject *py_ndtri(PyObject *m, PyObject *const *a, Py_ssize_t n) {
    (void)m;
    return apply(a, n, ndtri, "ndtri");
}

static PyObject *py_erfcx(PyObject *m, PyObject *const *a, Py_ssize_t n) {
    (void)m;
    return apply(a, n, erfcx, "erfcx");
}

static PyMethodDef methods[] = {
    {"total_vol", (PyCFunction)(void (*)(void))total_vol, METH_FASTCALL,
     "total_vol(x, beta, s, last_step, steps): s with b(x, s) = beta after `steps` Householder "
     "steps, and each one's last step, written into s and last_step (see normalised_black.py)."},
    {"ndtr", (PyCFunction)(void (*)(void))py_ndtr, METH_FASTCALL,
     "ndtr(x, out): the standard normal distribution function of each x, into out."},
    {"ndtri", (PyCFunction)(void (*)(void))py_ndtri, METH_FASTCALL,
     "ndtri(p, out): the standard normal quantile of each p, into out."},
    {"erfcx", (PyCFunction)(void (*)(void))py_erfcx, METH_FASTCALL,
     "erfcx(z, out): exp(z^2) erfc(z) of each z, into out."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_normalised_black",
    .m_doc = "The normalised Black inverse in C (see normalised_black.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__normalised_black(void) { return PyModule_Create(&module); }
