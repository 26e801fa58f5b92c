"""Shape-preserving rational cubic interpolation on one interval, vectorised.

Delbourgo & Gregory (1985), "Shape preserving piecewise rational interpolation", SIAM
J. Sci. Stat. Comput. 6(4), in the form P. Jäckel uses for the initial guess of "Let's
be rational" (2015): Hermite data ``(x, y, dy/dx)`` at both ends and a control
parameter ``r`` (``r = 3`` is the cubic Hermite spline, ``r -> inf`` the straight line).
Every function works elementwise on arrays of intervals.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

_EPS = float(np.finfo(np.float64).eps)
R_MIN = -(1.0 - np.sqrt(_EPS))
R_MAX = 2.0 / (_EPS * _EPS)


def rational_cubic(x: FloatArray, x_l: FloatArray, x_r: FloatArray, y_l: FloatArray,
                   y_r: FloatArray, d_l: FloatArray, d_r: FloatArray, r: FloatArray
                   ) -> FloatArray:
    """The interpolant at ``x``; symmetric in its ends, so ``x_r < x_l`` is allowed."""
    h = x_r - x_l
    t = (x - x_l) / h
    omt = 1.0 - t
    t2, omt2 = t * t, omt * omt
    with np.errstate(invalid="ignore", over="ignore"):
        cubic = ((y_r * t2 * t + (r * y_r - h * d_r) * t2 * omt + (r * y_l + h * d_l) * t * omt2
                  + y_l * omt2 * omt) / (1.0 + (r - 3.0) * t * omt))
    # r >= R_MAX (or NaN): the cubic's terms overflow; it is the straight line anyway.
    result: FloatArray = np.where(r < R_MAX, cubic, y_r * t + y_l * omt)
    return result


def control_to_fit_second_derivative(x_l: FloatArray, x_r: FloatArray, y_l: FloatArray,
                                     y_r: FloatArray, d_l: FloatArray, d_r: FloatArray,
                                     second_l: FloatArray) -> FloatArray:
    """``r`` whose interpolant has second derivative ``second_l`` at ``x_l``, raised if need
    be to the smallest ``r`` that keeps the data's monotonicity and convexity.

    The data must be monotonic and either convex or concave, as every use here is by
    construction; then Delbourgo & Gregory's bounds (3.8) and (3.18) are
    ``(d_l + d_r) / secant`` and ``|d_r - d_l| / min(|d_r - secant|, |secant - d_l|)``.
    A degenerate interval (a zero division) gives ``r = inf`` or NaN, which
    :func:`rational_cubic` treats as the straight line. Fitting at the right end is the
    same call with the ends swapped.
    """
    h = x_r - x_l
    secant = (y_r - y_l) / h
    spread = d_r - d_l
    left = secant - d_l
    r_fit = (0.5 * h * second_l + spread) / left
    r_shape = np.maximum((d_r + d_l) / secant,
                         np.maximum(np.abs(spread / (d_r - secant)), np.abs(spread / left)))
    result: FloatArray = np.fmax(r_fit, np.maximum(r_shape, R_MIN))
    return result
