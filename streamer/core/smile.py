"""Standard smile metrics on a fitted smile: ATM level, skew, curvature, RR and BF.

Definitions (``k = ln(K/F)``, ``sigma(k)`` the fitted smile, ``t`` in years):

- ATM vol ``sigma(0)``; skew ``d sigma / d k`` and curvature ``d2 sigma / d k2`` at 0.
- The D-delta call strike solves the forward Black-76 delta ``N(d1) = D`` and the put
  strike ``N(d1) - 1 = -D`` with ``d1 = -k / (sigma(k) sqrt t) + sigma(k) sqrt t / 2``,
  each on the fitted smile (the vol depends on the strike being solved for).
- The strikes are found by a vectorised Newton iteration on ``d1(k) = z`` from the
  strike of the smile's tangent at the money (its ATM level and skew; the flat-smile
  strike where that has no root), a few smile evaluations of all four strikes at once;
  where it does not settle (a smile with no delta strike in reach, a derivative of the
  wrong sign) the bracketed bisection decides, as it did alone before.
- Raw SVI smiles (:mod:`streamer.core.smile_rows`) take the same steps in C where it
  was built (``_svi_smile.c``); this numpy path is its fallback and reference.
- Risk reversal ``RR_D = sigma(call_D) - sigma(put_D)``; butterfly
  ``BF_D = (sigma(call_D) + sigma(put_D)) / 2 - sigma(0)``.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import numpy as np
import numpy.typing as npt

from streamer.core import smile_rows
from streamer.core.special import ndtr, ndtri

FloatArray = npt.NDArray[np.float64]
VolOfK = Callable[[FloatArray], FloatArray]
#: log-moneyness (n, m) -> vols (n, m): smile i in row i
VolRows = Callable[[FloatArray], FloatArray]

_STEP = 1e-4
_BISECTIONS = 42
_NEWTON_STEPS = 12
#: Newton stops once every step in k is below this: the error left after such a step is
#: its square (quadratic convergence) or its product with the derivative's relative
#: error (~1e-7, forward difference), ~1e-14 either way, below the bisection's resolution.
_NEWTON_TOL = 1e-7
#: Forward difference of the smile for Newton's derivative, in k.
_NEWTON_DK = 1e-7
#: The 25- and 10-delta strikes.
_DELTAS = np.array([0.25, 0.10])


class SmileMetrics(msgspec.Struct, frozen=True, kw_only=True):
    """Summary numbers of one smile (decimal vols; skew per unit of log-moneyness)."""

    atm_vol: float
    atm_skew: float
    atm_curvature: float
    rr25: float
    bf25: float
    rr10: float
    bf10: float


def _targets(deltas: FloatArray) -> FloatArray:
    """``N(d1)`` of the calls with delta ``deltas``, then of the puts with ``-deltas``."""
    return np.concatenate([deltas, 1.0 - deltas])


def _settings() -> FloatArray:
    """The numbers of the kernel (smile_rows.native_metrics), computed as numpy does."""
    return np.concatenate([ndtri(_targets(_DELTAS)), _targets(_DELTAS),
                           [float(ndtri(1.0 - _DELTAS.min())), _STEP, 2 * _STEP, _STEP**2,
                            _NEWTON_DK, _NEWTON_TOL]])


_SETTINGS = _settings()


def _half_bracket(s_atm: FloatArray, deltas: FloatArray) -> FloatArray:
    """Half-width of the bisection's bracket around the money (``s_atm`` ATM total vols)."""
    # A flat smile at the ATM total vol s puts the strikes within s (z + s / 2); twice
    # that leaves room for skew (a fixed +-3 cut off 10-delta strikes once s > ~1.3).
    with np.errstate(invalid="ignore"):
        wide = 2.0 * s_atm * (float(ndtri(1.0 - deltas.min())) + 0.5 * s_atm)
    return np.where(wide > 3.0, wide, 3.0)  # NaN (no ATM vol): 3


def _delta_strikes(vol_rows: VolRows, sqrt_t: FloatArray, s_atm: FloatArray,
                   deltas: FloatArray, s_skew: FloatArray | None = None) -> FloatArray:
    """Per smile, log-moneyness of the calls with forward delta ``deltas`` and of the
    puts with ``-deltas``: shape ``(n, 2 * deltas.size)``.

    Newton first; the bisection for the smiles where Newton does not settle inside the
    bisection's bracket (the same answer, found with ~40 smile evaluations instead of ~4).
    """
    half = _half_bracket(s_atm, deltas)
    k, settled = _newton_delta_strikes(vol_rows, sqrt_t, s_atm, deltas, half, s_skew)
    if not settled.all():
        k = np.where(settled[:, None], k, _bisect_delta_strikes(vol_rows, sqrt_t, deltas, half))
    return k


def _tangent_strikes(s_atm: FloatArray, s_skew: FloatArray | None, z: FloatArray
                     ) -> FloatArray:
    """Where ``d1 = z`` on the smile's tangent at the money, ``s(k) = s0 + a k`` (total
    vol): the root of ``a^2/2 k^2 + (a (s0 - z) - 1) k + s0 (s0/2 - z) = 0`` that is the
    flat smile's (``a = 0``); the flat smile's strike where that root does not exist."""
    s0 = s_atm[:, None]
    flat: FloatArray = s0 * (0.5 * s0 - z)
    if s_skew is None:
        return flat
    a = s_skew[:, None]
    minus_b = 1.0 - a * (s0 - z)
    with np.errstate(invalid="ignore"):
        root = 2.0 * flat / (minus_b + np.sqrt(minus_b * minus_b - 2.0 * a * a * flat))
    result: FloatArray = np.where(np.isfinite(root) & (s0 + a * root > 0.0), root, flat)
    return result


def _newton_delta_strikes(vol_rows: VolRows, sqrt_t: FloatArray, s_atm: FloatArray,
                          deltas: FloatArray, half: FloatArray,
                          s_skew: FloatArray | None = None
                          ) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Solve ``g(k) = -k / s(k) + s(k) / 2 - z = 0`` (``s`` total vol, ``z = ndtri(target)``)
    for every target of every smile at once, from the strikes of its tangent at the money
    (``s_skew``: ``d s / d k`` there; None: of a flat smile); per smile, whether all its
    strikes settled within the bracket (a smile stops moving once its steps are below
    tolerance)."""
    z: FloatArray = ndtri(_targets(deltas))[None, :]
    n = z.shape[1]
    settled = np.isfinite(s_atm) & (s_atm > 0.0)
    usable = settled.copy()
    running = settled.copy()
    with np.errstate(all="ignore"):
        k = np.where(settled[:, None], _tangent_strikes(s_atm, s_skew, z), 0.0)
        for _ in range(_NEWTON_STEPS):
            both = vol_rows(np.concatenate([k, k + _NEWTON_DK], axis=1)) * sqrt_t[:, None]
            s, ds = both[:, :n], (both[:, n:] - both[:, :n]) / _NEWTON_DK
            g = -k / s + 0.5 * s - z
            dg = -1.0 / s + k * ds / (s * s) + 0.5 * ds
            # N(d1) must fall with k: no safe Newton step otherwise
            usable &= ~running | (np.isfinite(g) & (dg < 0.0)).all(axis=1)
            running &= usable
            step = np.where(running[:, None], g / dg, 0.0)
            k = k - step
            running &= ~(np.abs(step) <= _NEWTON_TOL * np.maximum(1.0, np.abs(k))).all(axis=1)
            if not running.any():
                break
    settled = usable & ~running & (np.abs(k) < half[:, None]).all(axis=1)
    return k, settled


def _bisect_delta_strikes(vol_rows: VolRows, sqrt_t: FloatArray, deltas: FloatArray,
                          half: FloatArray) -> FloatArray:
    """The bracketed bisection on ``N(d1(k))`` (the reference, and Newton's fallback)."""
    # Call delta falls with k; the D-call lies right of the (-D)-put. Bisection on both.
    targets = _targets(deltas)[None, :]  # put delta -D  <=>  N(d1) = 1 - D
    lo = np.broadcast_to(-half[:, None], (half.size, targets.size))
    hi = -lo
    for _ in range(_BISECTIONS):
        mid = 0.5 * (lo + hi)
        s = vol_rows(mid) * sqrt_t[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):  # a zero smile: 0 / 0
            high = ndtr(-mid / s + 0.5 * s) > targets
        lo = np.where(high, mid, lo)
        hi = np.where(high, hi, mid)
    result: FloatArray = 0.5 * (lo + hi)
    return result


def smile_metrics_rows(vol_rows: VolRows, ts: npt.ArrayLike) -> list[SmileMetrics]:
    """:func:`smile_metrics` of many smiles in one pass: ``vol_rows(k)`` maps log-moneyness
    of shape ``(n, m)`` to the vols of smile ``i`` in row ``i``; ``ts`` their times.

    Raw SVI rows (:mod:`streamer.core.smile_rows`) take the C kernel where it was built:
    the same steps, the same numbers up to the last bits."""
    t = np.asarray(ts, np.float64)
    sqrt_t = np.sqrt(t)
    table = smile_rows.native_metrics(vol_rows, sqrt_t, _SETTINGS, _NEWTON_STEPS, _BISECTIONS)
    if table is None:
        table = metrics_table(vol_rows, sqrt_t)
    return [SmileMetrics(atm_vol=a, atm_skew=sk, atm_curvature=c, rr25=r25, bf25=b25,
                         rr10=r10, bf10=b10)
            for a, sk, c, r25, b25, r10, b10 in table.tolist()]


def metrics_table(vol_rows: VolRows, sqrt_t: FloatArray) -> FloatArray:
    """The numpy path (and the kernel's reference): per smile the columns
    :data:`streamer.core.smile_rows.COLUMNS`, shape ``(n, 7)``; ``sqrt_t`` root times."""
    around = vol_rows(np.broadcast_to(np.array([-_STEP, 0.0, _STEP]), (sqrt_t.size, 3)))
    atm = around[:, 1]
    skew = (around[:, 2] - around[:, 0]) / (2 * _STEP)
    curvature = (around[:, 2] - 2 * around[:, 1] + around[:, 0]) / _STEP**2
    v = vol_rows(_delta_strikes(vol_rows, sqrt_t, atm * sqrt_t, _DELTAS,
                                np.where(np.isfinite(skew), skew, 0.0) * sqrt_t))
    v_call, v_put = v[:, : _DELTAS.size], v[:, _DELTAS.size:]
    rr = v_call - v_put
    bf = 0.5 * (v_call + v_put) - atm[:, None]
    result: FloatArray = np.column_stack([atm, skew, curvature, rr[:, 0], bf[:, 0], rr[:, 1],
                                          bf[:, 1]])
    return result


def smile_metrics(vol_of_k: VolOfK, t: float) -> SmileMetrics:
    """ATM, skew, curvature and 25/10-delta RR and BF of a smile ``vol_of_k``."""
    def one_row(k: FloatArray) -> FloatArray:
        return np.asarray(vol_of_k(np.ascontiguousarray(k[0])), np.float64)[None, :]

    return smile_metrics_rows(one_row, [t])[0]
