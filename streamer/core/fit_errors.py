"""Standard errors of a fitted smile's parameters and of its ATM vol.

The quotes' noise scale is the market's own: each quote's half bid/ask spread in vol,
``h_i``. With residuals ``r_i = (model_i(theta) - iv_i) / h_i`` and their Jacobian ``J``
at the fit, the covariance of the parameters is ``(J^T J)^-1`` (Gauss-Newton, as in
Seber & Wild, "Nonlinear Regression", 1989, section 2.1; the noise variance is 1 in
units of half spreads, so no residual-variance factor is estimated), and the delta
method gives the ATM vol's: ``g^T (J^T J)^-1 g`` with ``g = d sigma(0) / d theta``.
Derivatives are central differences, or a model's own analytic Jacobian
(:func:`errors_from_jacobians`).

Raw SVI slices (:func:`svi_errors_rows`) take the C kernel ``_fit_errors.c`` where
setup.py built it: on 10-50 quotes a slice numpy's per-call overhead, not the
arithmetic, was the cost. The numpy path stays as the fallback and the reference
(tests/core/test_fit_errors_native.py); the two agree to rounding (the kernel's
docstring says how closely).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import numpy as np
import numpy.typing as npt

from streamer.core.models.svi import vol_jacobian_rows
from streamer.core.native import extension
from streamer.core.rows import padded, quoted_mask

FloatArray = npt.NDArray[np.float64]
#: vols at log-moneyness ``k`` for the parameter vector ``theta``
VolOfTheta = Callable[[FloatArray, FloatArray], FloatArray]

_REL_STEP = 1e-5
_ABS_STEP = 1e-7
#: Smallest eigenvalue of J^T J, relative to its largest, of a fit with error bars.
_SINGULAR = 1e-14


def standard_errors(vol: VolOfTheta, theta: npt.ArrayLike, k: npt.ArrayLike,
                    half_spread: npt.ArrayLike) -> tuple[FloatArray, float]:
    """Per-parameter standard errors and the ATM vol's, decimal vol.

    Parameters
    ----------
    vol : callable
        ``vol(k, theta)`` implied vols of the model.
    theta : array_like, shape (p,)
        Fitted parameters.
    k, half_spread : array_like, shape (n,)
        Log-moneyness of the quotes used and their half spreads in vol (> 0).

    Returns NaNs where there are no more quotes than parameters or ``J^T J`` is singular.
    """
    th = np.asarray(theta, np.float64)
    kk = np.asarray(k, np.float64)
    h = np.asarray(half_spread, np.float64)
    nan = np.full(th.size, np.nan)
    if kk.size <= th.size or not np.all(np.isfinite(h) & (h > 0)):
        return nan, float("nan")
    points = np.concatenate([kk, [0.0]])
    steps = np.maximum(np.abs(th) * _REL_STEP, _ABS_STEP)
    jac = np.empty((points.size, th.size))
    for j, step in enumerate(steps):
        up, down = th.copy(), th.copy()
        up[j] += step
        down[j] -= step
        jac[:, j] = (vol(points, up) - vol(points, down)) / (2 * step)
    return errors_from_jacobian(jac, h)


def errors_from_jacobian(jac: npt.ArrayLike, half_spread: npt.ArrayLike
                         ) -> tuple[FloatArray, float]:
    """:func:`standard_errors` from the Jacobian ``d vol / d theta`` itself: one row per
    quote and a last row at the money (``k = 0``), shape ``(n + 1, p)``."""
    jac = np.asarray(jac, np.float64)
    se, atm = errors_from_jacobians(jac[None], np.asarray(half_spread, np.float64)[None])
    return se[0], float(atm[0])


def errors_from_jacobians(jac: FloatArray, half_spread: FloatArray
                          ) -> tuple[FloatArray, FloatArray]:
    """:func:`errors_from_jacobian` of many fits at once: ``jac`` of shape
    ``(s, n + 1, p)`` (padded quotes: ``half_spread`` +inf, any finite Jacobian row),
    ``half_spread`` of shape ``(s, n)``. Per fit, NaN where it has no more quotes than
    parameters, a non-finite Jacobian or a singular ``J^T J``."""
    p = jac.shape[2]
    h = half_spread
    quoted = np.isfinite(h)
    usable = ((quoted.sum(axis=1) > p) & np.all(~quoted | (h > 0), axis=1)
              & np.all(np.isfinite(jac), axis=(1, 2)))
    with np.errstate(all="ignore"):  # h <= 0 or an overflow: no error bar (below)
        scaled = np.where(quoted[..., None], jac[:, :-1] / np.where(quoted, h, 1.0)[..., None],
                          0.0)
        normal = np.matmul(scaled.transpose(0, 2, 1), scaled)
    usable &= np.all(np.isfinite(normal), axis=(1, 2))  # eigvalsh would raise on it
    normal[~usable] = np.eye(p)
    # singular to rounding (inv does not always say so): the quotes cannot separate the
    # parameters, so no error bar
    eig = np.linalg.eigvalsh(normal)
    usable &= eig[:, 0] > _SINGULAR * eig[:, -1]
    normal[~usable] = np.eye(p)
    try:
        cov = np.linalg.inv(normal)
    except np.linalg.LinAlgError:  # one singular fit: each on its own
        cov = np.stack([_inverse_or_nan(a) for a in normal])
    g = jac[:, -1]
    se = np.sqrt(np.clip(np.diagonal(cov, axis1=1, axis2=2), 0.0, None))
    atm = np.sqrt(np.maximum(np.einsum("si,sij,sj->s", g, cov, g), 0.0))
    se[~usable], atm[~usable] = np.nan, np.nan
    return se, atm


def errors_at_quotes(jacobian_rows: Callable[[FloatArray], FloatArray], k: FloatArray,
                     half_spread: FloatArray, sizes: Sequence[int]
                     ) -> tuple[FloatArray, FloatArray]:
    """:func:`errors_from_jacobians` of slices whose quotes come one after another
    (``sizes[i]`` of them in slice ``i``, shapes as :func:`svi_errors_rows`'), with
    ``jacobian_rows(points)`` each slice's Jacobian ``(s, n + 1, p)`` at the rows of
    ``points``: its quotes padded to the longest, then the ATM (``k = 0``)."""
    quoted = quoted_mask(sizes, max(sizes, default=0) + 1)  # and the ATM's column
    points = padded([k], quoted, 0.0)  # padding at k = 0: the ATM's row again
    return errors_from_jacobians(jacobian_rows(points),
                                 padded([half_spread], quoted[:, :-1], np.inf))


def _kernel() -> Callable[..., None] | None:
    module = extension("streamer.core._fit_errors", "svi")
    return None if module is None else cast(Callable[..., None], module.svi)


#: The C kernel where it was built (None: raw SVI slices take the numpy path).
_NATIVE = _kernel()


def svi_errors_rows(k: FloatArray, half_spread: FloatArray, sizes: Sequence[int],
                    t: FloatArray, stacked: FloatArray) -> tuple[FloatArray, FloatArray]:
    """:func:`errors_from_jacobians` of raw SVI slices at their analytic Jacobian
    (:func:`streamer.core.models.svi.vol_jacobian_rows`) at their quotes and the ATM,
    with the C kernel where it was built: the one place that decides.

    Parameters
    ----------
    k, half_spread : ndarray, shape (sum(sizes),)
        The slices' quotes one after another: log-moneyness and half spreads in vol (a
        non-finite half spread: not quoted, as numpy's padding).
    sizes : sequence of int, length s
        Quotes per slice.
    t : ndarray, shape (s,)
        Times to expiry, years.
    stacked : ndarray, shape (s, 5, 1) or (s, 5)
        Raw SVI ``a, b, rho, m, sigma`` per slice (:func:`~streamer.core.models.svi.stack`).

    Returns the parameter standard errors, shape (s, 5), and the ATM vol's, shape (s,).
    """
    kernel = _NATIVE
    if kernel is None:
        return errors_at_quotes(lambda x: vol_jacobian_rows(x, t, stacked.reshape(-1, 5, 1)),
                                k, half_spread, sizes)
    n = t.size
    se, atm = np.empty((n, 5)), np.empty(n)
    c = np.ascontiguousarray  # not a helper: a Python frame a call is this path's cost
    kernel(c(k, np.float64), c(half_spread, np.float64), np.array(sizes, np.int64),
           c(t, np.float64), c(stacked, np.float64), se, atm)
    return se, atm


def _inverse_or_nan(a: FloatArray) -> FloatArray:
    try:
        return np.asarray(np.linalg.inv(a), np.float64)
    except np.linalg.LinAlgError:
        return np.full(a.shape, np.nan)
