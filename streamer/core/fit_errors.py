"""Standard errors of a fitted smile's parameters and of its ATM vol.

The quotes' noise scale is the market's own: each quote's half bid/ask spread in vol,
``h_i``. With residuals ``r_i = (model_i(theta) - iv_i) / h_i`` and their Jacobian ``J``
at the fit, the covariance of the parameters is ``(J^T J)^-1`` (Gauss-Newton, as in
Seber & Wild, "Nonlinear Regression", 1989, section 2.1; the noise variance is 1 in
units of half spreads, so no residual-variance factor is estimated), and the delta
method gives the ATM vol's: ``g^T (J^T J)^-1 g`` with ``g = d sigma(0) / d theta``.
Derivatives are central differences.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
#: vols at log-moneyness ``k`` for the parameter vector ``theta``
VolOfTheta = Callable[[FloatArray, FloatArray], FloatArray]

_REL_STEP = 1e-5
_ABS_STEP = 1e-7


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
    h = np.asarray(half_spread, np.float64)
    nan = np.full(jac.shape[1], np.nan)
    if jac.shape[0] - 1 <= jac.shape[1] or not np.all(np.isfinite(h) & (h > 0)):
        return nan, float("nan")
    if not np.all(np.isfinite(jac)):
        return nan, float("nan")
    scaled = jac[:-1] / h[:, None]
    try:
        cov = np.linalg.inv(scaled.T @ scaled)
    except np.linalg.LinAlgError:
        return nan, float("nan")
    g = jac[-1]
    return np.sqrt(np.clip(np.diag(cov), 0.0, None)), float(np.sqrt(max(g @ cov @ g, 0.0)))
