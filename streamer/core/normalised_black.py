"""The normalised out-of-the-money Black price and its inverse (Jäckel 2015), vectorised.

With ``x = -|ln(F/K)| <= 0`` and the total vol ``s = sigma sqrt(t)``, every option
reduces by put-call parity to the normalised out-of-the-money price

    b(x, s) = e^{x/2} N(x/s + s/2) - e^{-x/2} N(x/s - s/2),    0 < b < b_max = e^{x/2}.

``b`` is evaluated without cancellation in the wing (``d1 < 0``) through the scaled
complementary error function, ``N(d) = sqrt(pi/2) erfcx(-d/sqrt 2) phi(d)``, which keeps
full relative precision for tiny wing prices.

The inverse follows P. Jäckel (2015), "Let's be rational", Wilmott 2015(75), pp. 40-53:
the inflection point ``s_c = sqrt(2|x|)`` and the tangents there split ``(0, b_max)``
into four branches; a rational cubic in ``beta`` (of ``s`` in the two middle branches,
of Jäckel's transformed maps ``f_lower`` and ``f_upper`` in the outer ones) gives an
initial guess, and two third-order Householder steps on a branch-specific objective
(``1/ln b`` in the lower wing, ``b`` in the middle, ``ln(b_max - b)`` near ``b_max``)
reach machine precision. Each branch works on its own contiguous arrays: a select on
randomly placed positions costs as much as ten multiplications.

:func:`total_vol` runs the same steps element by element in C (``_normalised_black.c``,
built by setup.py where there is a compiler): on a chain's few hundred quotes numpy's
per-call overhead, not the arithmetic, was the cost. This numpy path is its fallback
and reference (:func:`total_vol_numpy`; tests/core/test_normalised_black.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy as np
import numpy.typing as npt

from streamer.core.native import extension
from streamer.core.rational_cubic import control_to_fit_second_derivative, rational_cubic
from streamer.core.special import erfcx, ndtr, ndtri

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

_SQRT1_2 = float(np.sqrt(0.5))
_LN2 = float(np.log(2.0))
_HALF_LN_2PI = float(0.5 * np.log(2.0 * np.pi))
_INV_SQRT_2PI = float(1.0 / np.sqrt(2.0 * np.pi))
_SQRT3 = float(np.sqrt(3.0))
_F_LOWER_SCALE = float(2.0 * np.pi / np.sqrt(27.0))
HOUSEHOLDER_STEPS = 2


def _wing_log_b(h: FloatArray, t: FloatArray, q: FloatArray) -> FloatArray:
    """``ln b`` for ``d1 = h + t < 0``: ``b = e^q (erfcx(-d1/√2) - erfcx(-d2/√2)) / 2``."""
    diff = erfcx(-_SQRT1_2 * (h + t)) - erfcx(-_SQRT1_2 * (h - t))
    result: FloatArray = np.log(diff) + q - _LN2
    return result


def _body_b(x: FloatArray, h: FloatArray, t: FloatArray) -> FloatArray:
    """``b`` straight from the definition (accurate where ``d1 >= 0``)."""
    e = np.exp(0.5 * x)
    result: FloatArray = e * ndtr(h + t) - ndtr(h - t) / e
    return result


def log_b(x: FloatArray, s: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``ln b(x, s)``, ``h = x/s`` and ``q = -(h^2 + s^2/4)/2`` (vega ``= e^q/√(2π)``).

    Parameters
    ----------
    x : ndarray
        ``-|ln(F/K)|``.
    s : ndarray
        Total volatility ``sigma sqrt(t)`` (> 0), same shape as ``x``.
    """
    h = x / s
    t = 0.5 * s
    q = -0.5 * (h * h + t * t)
    wing = h + t < 0.0
    if wing.all():
        return _wing_log_b(h, t, q), h, q
    out = np.empty_like(h)
    w = np.flatnonzero(wing)
    if w.size:
        out[w] = _wing_log_b(h[w], t[w], q[w])
    body = np.flatnonzero(~wing)
    out[body] = np.log(_body_b(x[body], h[body], t[body]))
    return out, h, q


def _b(x: FloatArray, s: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``b(x, s)``, ``h`` and ``q`` as in :func:`log_b`."""
    h = x / s
    t = 0.5 * s
    q = -0.5 * (h * h + t * t)
    wing = h + t < 0.0
    if not wing.any():
        return _body_b(x, h, t), h, q
    if wing.all():
        return np.exp(_wing_log_b(h, t, q)), h, q
    out = np.empty_like(h)
    w, body = np.flatnonzero(wing), np.flatnonzero(~wing)
    out[w] = np.exp(_wing_log_b(h[w], t[w], q[w]))
    out[body] = _body_b(x[body], h[body], t[body])
    return out, h, q


def _householder(s: FloatArray, newton: FloatArray, halley: FloatArray, hh3: FloatArray
                 ) -> tuple[FloatArray, FloatArray]:
    """One third-order Householder step, never more than halving ``s``; new ``s`` and step."""
    ds = newton * (1.0 + 0.5 * halley * newton) / (1.0 + newton * (halley + hh3 * newton / 6.0))
    ds = np.maximum(-0.5 * s, ds)
    return s + ds, ds


def _b_halley_hh3(s: FloatArray, h: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``b''/b'`` and ``b'''/b'`` in ``s``."""
    b_halley = h * h / s - 0.25 * s
    hs = h / s
    return b_halley, b_halley * b_halley - 3.0 * hs * hs - 0.25


def _iterate_lower(x: FloatArray, beta: FloatArray, s: FloatArray
                   ) -> tuple[FloatArray, FloatArray]:
    """Householder on ``g(s) = 1/ln b(s) - 1/ln beta`` (near-linear in the far wing)."""
    ln_beta = np.log(beta)
    ds = s
    for _ in range(HOUSEHOLDER_STEPS):
        ln_b, h, q = log_b(x, s)
        bpob = np.exp(q - _HALF_LN_2PI - ln_b)  # b'/b
        inv = 1.0 / ln_b
        b_halley, b_hh3 = _b_halley_hh3(s, h)
        newton = (ln_beta - ln_b) * ln_b / ln_beta / bpob
        c = 1.0 + 2.0 * inv
        halley = b_halley - bpob * c
        hh3 = (b_hh3 + 2.0 * bpob * bpob * (1.0 + 3.0 * inv * (1.0 + inv))
               - 3.0 * b_halley * bpob * c)
        s, ds = _householder(s, newton, halley, hh3)
    return s, ds


def _iterate_middle(x: FloatArray, beta: FloatArray, s: FloatArray
                    ) -> tuple[FloatArray, FloatArray]:
    """Householder on ``g(s) = b(s) - beta``."""
    ds = s
    for _ in range(HOUSEHOLDER_STEPS):
        b, h, q = _b(x, s)
        newton = (beta - b) / (_INV_SQRT_2PI * np.exp(q))
        b_halley, b_hh3 = _b_halley_hh3(s, h)
        s, ds = _householder(s, newton, b_halley, b_hh3)
    return s, ds


def _iterate_upper(x: FloatArray, beta: FloatArray, s: FloatArray
                   ) -> tuple[FloatArray, FloatArray]:
    """Householder on ``g(s) = ln(b_max - beta) - ln(b_max - b(s))``.

    ``b_max - b = e^{x/2} N(-d1) + e^{-x/2} N(d2)`` is summed, not subtracted, so it
    keeps its relative precision as ``b`` approaches ``b_max``.
    """
    e = np.exp(0.5 * x)
    gap_beta = e - beta
    ds = s
    for _ in range(HOUSEHOLDER_STEPS):
        h = x / s
        t = 0.5 * s
        gap = e * ndtr(-(h + t)) + ndtr(h - t) / e
        gp = _INV_SQRT_2PI * np.exp(-0.5 * (h * h + t * t)) / gap
        b_halley, b_hh3 = _b_halley_hh3(s, h)
        newton = -np.log(gap_beta / gap) / gp
        s, ds = _householder(s, newton, b_halley + gp, b_hh3 + gp * (2.0 * gp + 3.0 * b_halley))
    return s, ds


def _middle_guess(beta: FloatArray, b_c: FloatArray, s_c: FloatArray, v_c: FloatArray,
                  b_o: FloatArray, s_o: FloatArray, v_o: FloatArray) -> FloatArray:
    """Rational cubic ``s(beta)`` between the inflection point ``c`` and a tangent point ``o``.

    It matches ``ds/dbeta = 1/vega`` at both ends and ``s'' = 0`` at ``c`` (where ``b''``
    vanishes); the interpolant is symmetric in its ends, so ``o`` may lie on either side.
    """
    d_c, d_o = 1.0 / v_c, 1.0 / v_o
    r = control_to_fit_second_derivative(b_c, b_o, s_c, s_o, d_c, d_o, np.zeros_like(s_c))
    return rational_cubic(beta, b_c, b_o, s_c, s_o, d_c, d_o, r)


def _lower_guess(x: FloatArray, beta: FloatArray, s_l: FloatArray, b_l: FloatArray
                 ) -> FloatArray:
    """Jäckel's ``f_lower`` map, interpolated in ``beta`` on ``(0, b_l)`` and inverted."""
    ax = -x
    z = ax / (_SQRT3 * s_l)
    y = z * z
    s2 = s_l * s_l
    phi_cdf = ndtr(-z)
    phi_pdf = _INV_SQRT_2PI * np.exp(-0.5 * y)
    f = _F_LOWER_SCALE * ax * phi_cdf * phi_cdf * phi_cdf
    fp = 2.0 * np.pi * y * phi_cdf * phi_cdf * np.exp(y + 0.125 * s2)
    fpp = (np.pi / 6.0 * y / (s2 * s_l) * phi_cdf
           * (8.0 * _SQRT3 * s_l * ax + (3.0 * s2 * (s2 - 8.0) - 8.0 * x * x) * phi_cdf / phi_pdf)
           * np.exp(2.0 * y + 0.25 * s2))
    zero, one = np.zeros_like(x), np.ones_like(x)
    r = control_to_fit_second_derivative(b_l, zero, f, zero, fp, one, fpp)
    mapped = rational_cubic(beta, zero, b_l, zero, f, one, fp, r)
    u = beta / b_l
    mapped = np.where(mapped > 0.0, mapped, (f * u + b_l * (1.0 - u)) * u)
    result: FloatArray = np.abs(ax / (_SQRT3 * ndtri(np.cbrt(mapped / (_F_LOWER_SCALE * ax)))))
    return result


def _upper_guess(x: FloatArray, beta: FloatArray, s_h: FloatArray, b_h: FloatArray
                 ) -> FloatArray:
    """Jäckel's ``f_upper = N(-s/2)`` map, interpolated in ``beta`` on ``(b_h, b_max)``."""
    b_max = np.exp(0.5 * x)
    f = ndtr(-0.5 * s_h)
    w = (x / s_h) ** 2
    fp = -0.5 * np.exp(0.5 * w)
    fpp = np.sqrt(0.5 * np.pi) * np.exp(w + 0.125 * s_h * s_h) * w / s_h
    half = np.full_like(x, -0.5)
    r = control_to_fit_second_derivative(b_h, b_max, f, np.zeros_like(x), fp, half, fpp)
    mapped = rational_cubic(beta, b_h, b_max, f, np.zeros_like(x), fp, half, r)
    width = b_max - b_h
    u = (beta - b_h) / width
    mapped = np.where(mapped > 0.0, mapped, (f * (1.0 - u) + 0.5 * width * u) * (1.0 - u))
    result: FloatArray = -2.0 * ndtri(mapped)
    return result


def _native() -> Callable[..., None] | None:
    module = extension("streamer.core._normalised_black", "total_vol")
    return None if module is None else cast(Callable[..., None], module.total_vol)


_NATIVE = _native()


def total_vol(x: FloatArray, beta: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Total vol ``s`` with ``b(x, s) = beta``, and the size of each one's last step
    (:func:`total_vol_numpy`, in C where it was built)."""
    if _NATIVE is None:
        return total_vol_numpy(x, beta)
    x = np.ascontiguousarray(x, np.float64)
    beta = np.ascontiguousarray(beta, np.float64)
    s, step = np.empty_like(x), np.empty_like(x)
    _NATIVE(x, beta, s, step, HOUSEHOLDER_STEPS)
    return s, step


def total_vol_numpy(x: FloatArray, beta: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Total vol ``s`` with ``b(x, s) = beta``, and the size of each one's last step.

    Parameters
    ----------
    x : ndarray, shape (n,)
        ``-|ln(F/K)|``.
    beta : ndarray, shape (n,)
        Normalised out-of-the-money price, ``0 < beta < e^{x/2}``.

    Returns
    -------
    s : ndarray, shape (n,)
        Total volatility ``sigma sqrt(t)``.
    last_step : ndarray, shape (n,)
        The final Householder correction; far below ``s`` once converged.
    """
    out, step = np.empty_like(x), np.empty_like(x)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        s_c = np.sqrt(-2.0 * x)
        b_max = np.exp(0.5 * x)
        b_c = 0.5 * b_max - ndtr(-s_c) / b_max
        v_c = _INV_SQRT_2PI * b_max  # vega at s_c: h^2 + s_c^2/4 = |x|
        low = beta < b_c
        # Where the tangent at the inflection point meets 0 (below it) or b_max (above).
        s_o = np.where(low, s_c - b_c / v_c, s_c + (b_max - b_c) / v_c)
        b_o, _, q_o = _b(x, s_o)
        lower, upper = low & (beta < b_o), ~low & (beta > b_o)
        for branch in (lower, upper, ~(lower | upper)):
            idx = np.flatnonzero(branch)
            if not idx.size:
                continue
            xi, bi, so, bo = _take(idx, x.size, x, beta, s_o, b_o)
            if branch is lower:
                out[idx], step[idx] = _iterate_lower(xi, bi, _lower_guess(xi, bi, so, bo))
            elif branch is upper:
                s0 = _upper_guess(xi, bi, so, bo)
                # Jäckel keeps the b - beta objective unless beta is past half of b_max.
                near_max = bi > 0.5 * _take(idx, x.size, b_max)[0]
                for sub, iterate in ((np.flatnonzero(near_max), _iterate_upper),
                                     (np.flatnonzero(~near_max), _iterate_middle)):
                    if sub.size:
                        got = iterate(*_take(sub, idx.size, xi, bi, s0))
                        out[idx[sub]], step[idx[sub]] = got
            else:
                bc, sc, vc, qo = _take(idx, x.size, b_c, s_c, v_c, q_o)
                s0 = _middle_guess(bi, bc, sc, vc, bo, so, _INV_SQRT_2PI * np.exp(qo))
                out[idx], step[idx] = _iterate_middle(xi, bi, s0)
    return out, step


def _take(idx: IntArray, n: int, *arrays: FloatArray) -> list[FloatArray]:
    """``a[idx]`` of each array, or the arrays themselves when ``idx`` takes all ``n``."""
    if idx.size == n:
        return list(arrays)
    return [a[idx] for a in arrays]
