/* numpy's own order of float64 operations, for the C kernels that must give the numpy
 * path's bits (their reference and fallback): one home for each rule. */
#ifndef STREAMER_CORE_NUMPY_ORDER_H
#define STREAMER_CORE_NUMPY_ORDER_H

#include <math.h>
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* numpy.maximum: NaN wins */
static inline double nan_max(double a, double b) {
    return isnan(a) || isnan(b) ? NAN : (a > b ? a : b);
}

/* numpy's add.reduce of a contiguous float64 run (umath loops_utils.h pairwise_sum):
 * under 8 a plain loop; up to 128 eight accumulators, combined pairwise, then the tail;
 * beyond, halves rounded to a multiple of 8 */
static double pairwise_sum(const double *a, Py_ssize_t n) {
    if (n < 8) {
        double res = 0.0;
        for (Py_ssize_t i = 0; i < n; i++)
            res += a[i];
        return res;
    }
    if (n <= 128) {
        double r[8];
        Py_ssize_t i;
        for (int j = 0; j < 8; j++)
            r[j] = a[j];
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++)
                r[j] += a[i + j];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++)
            res += a[i];
        return res;
    }
    Py_ssize_t n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

#endif
