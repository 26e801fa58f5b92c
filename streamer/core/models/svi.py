"""Raw SVI smiles (Gatheral 2004): parameters, evaluation and calibration.

Total implied variance at log-moneyness ``k = ln(K/F)``:

    w(k) = a + b (rho (k - m) + sqrt((k - m)^2 + sigma^2))

Calibration is least squares in implied vol. A cold fit seeds a grid over
``(m, sigma)`` with the quasi-explicit linear solve of Zeliade (2009) for
``(a, b, rho)`` (every grid point of every slice in one stacked solve) and refines the
best seeds; a warm fit refines the previous parameters and the best seed. The
refinement is Levenberg–Marquardt with the analytic Jacobian in an unconstrained
parametrisation (``ln b``, ``atanh rho``, ``ln sigma``), which keeps ``b > 0``,
``|rho| < 1`` and ``sigma > 0`` by construction. :func:`calibrate_chain` fits every
expiry of a chain in one batched loop (:mod:`streamer.core.models.batch_lm`), so the
numpy call overhead is paid once per iteration rather than once per slice;
:func:`calibrate` is the same fit for one slice. Where the C kernels were built
(:mod:`streamer.core.models.svi_lm`), the chain's padded rows and band terms are one pass
over its quotes, the LM and the choice of each slice's best start run in C, and the numpy
paths here are the fallback and the reference (the same bits but for the LM's rounding).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from streamer.core.arbitrage import durrleman_g
from streamer.core.models import band, ssvi, svi_butterfly, svi_lm
from streamer.core.models.batch_lm import BatchResult, IntArray, ResidualFn, levenberg_marquardt
from streamer.core.models.fit import Fit, FitStatus
from streamer.core.models.protocol import VolFromVariance
from streamer.core.params import NamedFloats
from streamer.core.rows import linspace_rows, padded, quoted_mask

FloatArray = npt.NDArray[np.float64]

_W_FLOOR = 1e-12
_RHO_MAX = 0.999
MIN_POINTS = 5


class SVIParams(NamedFloats, frozen=True, kw_only=True):
    """Raw SVI parameters of one expiry's total-variance smile."""

    a: float
    b: float
    rho: float
    m: float
    sigma: float


    @classmethod
    def from_dict(cls, d: dict[str, float]) -> SVIParams:
        """Inverse of :meth:`as_dict`."""
        return cls(a=d["a"], b=d["b"], rho=d["rho"], m=d["m"], sigma=d["sigma"])


def total_variance(k: npt.ArrayLike, p: SVIParams) -> FloatArray:
    """Total implied variance ``w(k)``; ``k = ln(K/F)``."""
    x = np.asarray(k, np.float64) - p.m
    result: FloatArray = p.a + p.b * (p.rho * x + np.sqrt(x * x + p.sigma * p.sigma))
    return result


def from_ssvi(s: ssvi.SSVISlice) -> SVIParams:
    """The raw SVI parameters of a natural-SVI (SSVI) slice, the same smile."""
    a, b, rho, m, sigma = s.raw_svi()
    return SVIParams(a=a, b=b, rho=rho, m=m, sigma=sigma)


def stack(params: Sequence[SVIParams]) -> FloatArray:
    """Parameters of many slices as columns ``a, b, rho, m, sigma``: shape (n, 5, 1)."""
    return np.array([[p.a, p.b, p.rho, p.m, p.sigma] for p in params], np.float64)[..., None]


def total_variance_rows(k: FloatArray, stacked: FloatArray) -> FloatArray:
    """``w`` of slice ``i`` (row ``i`` of :func:`stack`) at the log-moneyness of row ``i``."""
    a, b, rho, m, sigma = (stacked[:, j] for j in range(5))
    x = k - m
    result: FloatArray = a + b * (rho * x + np.sqrt(x * x + sigma * sigma))
    return result


def implied_vol(k: npt.ArrayLike, t: float, p: SVIParams) -> FloatArray:
    """Decimal implied vol ``sqrt(w(k) / t)``; NaN where ``w < 0``."""
    w = total_variance(k, p)
    with np.errstate(invalid="ignore"):
        result: FloatArray = np.sqrt(w / t)
    return result


def derivatives(k: npt.ArrayLike, p: SVIParams) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``w``, ``dw/dk`` and ``d2w/dk2`` at ``k``."""
    w, dw, d2w = derivatives_rows(np.asarray(k, np.float64)[None, :], stack([p]))
    return w[0], dw[0], d2w[0]


def derivatives_rows(k: FloatArray, stacked: FloatArray
                     ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """:func:`derivatives` of slice ``i`` (row ``i`` of :func:`stack`) at the
    log-moneyness of row ``i`` of ``k``."""
    a, b, rho, m, sigma = (stacked[:, j] for j in range(5))
    x = k - m
    root = np.sqrt(x * x + sigma * sigma)
    w = a + b * (rho * x + root)
    dw = b * (rho + x / root)
    d2w = b * sigma * sigma / root**3
    return w, dw, d2w


def vol_jacobian(k: npt.ArrayLike, t: float, p: SVIParams) -> FloatArray:
    """``d vol / d (a, b, rho, m, sigma)`` at ``k``, shape ``(n, 5)`` (``vol = sqrt(w / t)``)."""
    kk = np.asarray(k, np.float64)[None, :]
    result: FloatArray = vol_jacobian_rows(kk, np.array([t]), stack([p]))[0]
    return result


def vol_jacobian_rows(k: FloatArray, t: FloatArray, stacked: FloatArray) -> FloatArray:
    """:func:`vol_jacobian` of slice ``i`` (row ``i`` of :func:`stack`, time ``t[i]``) at
    the log-moneyness of row ``i`` of ``k``: shape ``(n, m, 5)``."""
    a, b, rho, m, sigma = (stacked[:, j] for j in range(5))
    x = k - m
    root = np.sqrt(x * x + sigma * sigma)
    w = a + b * (rho * x + root)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = 0.5 / np.sqrt(np.where(w > 0, w, np.nan) * t[:, None])  # d vol / d w
        dw = np.stack([np.ones_like(x), rho * x + root, np.broadcast_to(b * x, x.shape),
                       -b * (rho + x / root), b * sigma / root], axis=-1)
    result: FloatArray = dw * scale[..., None]
    return result


# -- calibration ---------------------------------------------------------------

_NO_PARAMS = SVIParams(a=0.0, b=0.0, rho=0.0, m=0.0, sigma=1.0)  # of a failed cold fit
_SEED_M = np.linspace(0.0, 1.0, 9)  # across [k_min - span/10, k_max + span/10]
_SEED_SIGMA = np.array([0.02, 0.05, 0.1, 0.2, 0.4, 0.8])  # times the span
N_STARTS = 3  # cold fits refine this many of the best seeds
MAX_ITER = 100
SIGMA_PRIOR = 1.0  # residual per unit of ln(sigma / k span), or of m in spans, beyond bounds
TOL = 1e-10
#: The fit's C kernels where built (None: the numpy paths; the same fits).
_NATIVE = svi_lm.native()
#: The bid/ask band objective of SVI fits (:mod:`streamer.core.models.band`): a weaker
#: pull than SABR's and eSSVI's, band edges moved in by half of each half spread and a
#: Huber tail half a half spread out. On the real Deribit chains this raised the share of
#: two-sided quotes fitted inside Deribit's bid/ask IVs from 93.8 to 96.5 % (hourly file)
#: and 92.7 to 93.6 % (snapshot) at a median RMSE to its marks of 0.43 -> 0.44 and
#: 0.82 -> 0.88 vp (the band module's docstring has the other settings tried).
OBJECTIVE = band.Objective(pull=0.25, margin=0.5, tail=0.5)
_MIDS = band.Objective()  # of slices without bid/ask IVs


def _to_theta(p: SVIParams) -> list[float]:
    rho = min(max(p.rho, -_RHO_MAX), _RHO_MAX)
    return [p.a, math.log(max(p.b, 1e-10)), math.atanh(rho), p.m, math.log(max(p.sigma, 1e-8))]


def _from_theta(theta: Sequence[float]) -> SVIParams:
    a, ln_b, atanh_rho, m, ln_sigma = theta
    return SVIParams(a=a, b=math.exp(ln_b), rho=math.tanh(atanh_rho), m=m, sigma=math.exp(ln_sigma))


class _Chain(NamedTuple):
    """Slices padded to a common length; padding has zero weight and ``valid`` False."""

    k: FloatArray
    iv: FloatArray
    t: FloatArray  # (n_slices, 1)
    sqrt_w: FloatArray
    valid: npt.NDArray[np.bool_]
    n_valid: FloatArray  # (n_slices,)
    padded: bool
    band: band.Band  # the objective's bid/ask bands, padded like k
    #: each slice's lowest and highest quoted k and its span (at least 0.05)
    k_range: tuple[FloatArray, FloatArray, FloatArray]
    target: FloatArray  # the seeds' target vols: the band centres where they pull, else iv
    #: what the priors of :func:`_residual_fn` need: each slice's ``ln span``, the centre of
    #: its quoted k and its span
    priors: tuple[FloatArray, FloatArray, FloatArray]

    def rows(self, rows: IntArray | list[int]) -> _Chain:
        """The chain of some slices only."""
        def take(xs: tuple[FloatArray, ...]) -> tuple[FloatArray, FloatArray, FloatArray]:
            return tuple(x[rows] for x in xs)  # type: ignore[return-value]
        return _Chain(k=self.k[rows], iv=self.iv[rows], t=self.t[rows],
                      sqrt_w=self.sqrt_w[rows], valid=self.valid[rows],
                      n_valid=self.n_valid[rows], padded=self.padded,
                      band=band.take(self.band, rows), k_range=take(self.k_range),
                      target=self.target[rows], priors=take(self.priors))


class _Slice(NamedTuple):
    """One slice's usable quotes: k, mid IVs, weights and bid/ask IVs (NaN: missing)."""

    k: FloatArray
    iv: FloatArray
    w: FloatArray
    bid: FloatArray | None
    ask: FloatArray | None


def _clean(k: npt.ArrayLike, iv: npt.ArrayLike, t: float, weights: npt.ArrayLike | None,
           bid_iv: npt.ArrayLike | None = None, ask_iv: npt.ArrayLike | None = None
           ) -> _Slice | str:
    """The usable points of one slice, or why there are too few."""
    return _clean_all([k], [iv], [t], [weights], [bid_iv], [ask_iv])[0]


def _clean_all(ks: Sequence[npt.ArrayLike], ivs: Sequence[npt.ArrayLike], ts: Sequence[float],
               weights: Sequence[npt.ArrayLike | None], bid_ivs: Sequence[npt.ArrayLike | None],
               ask_ivs: Sequence[npt.ArrayLike | None]) -> list[_Slice | str]:
    """:func:`_clean` of every slice of a chain: which points are usable is one numpy
    pass over all their points (a chain's slices are 30-60 points each, so per-slice
    numpy calls cost more than their arithmetic)."""
    out: list[_Slice | str] = []
    for k, iv, t, w, bid, ask in zip(ks, ivs, ts, weights, bid_ivs, ask_ivs, strict=True):
        kk, vv = _flat(k), _flat(iv)
        bb, aa = None if bid is None else _flat(bid), None if ask is None else _flat(ask)
        ww = _flat(w) if w is not None else _ones(kk.size)
        sizes = {kk.size, vv.size, ww.size} | {x.size for x in (bb, aa) if x is not None}
        if not (math.isfinite(t) and t > 0):
            out.append(f"bad time to expiry {t!r}")
        elif len(sizes) > 1:
            out.append(f"k, iv, weights, bid and ask IVs differ in size ({sorted(sizes)})")
        else:
            out.append(_Slice(k=kk, iv=vv, w=ww, bid=bb, ask=aa))
    sliced = [s for s in out if isinstance(s, _Slice)]
    if not sliced:
        return out
    k_all, v_all, w_all = (np.concatenate([s[j] for s in sliced]) for j in range(3))
    good = np.isfinite(k_all + v_all + w_all) & (v_all > 0) & (w_all >= 0)
    stops = np.cumsum([s.k.size for s in sliced])
    counts = np.concatenate([[0], np.cumsum(good)])[stops]
    n_good = np.diff(counts, prepend=0).tolist()
    starts = (stops - [s.k.size for s in sliced]).tolist()
    cleaned = iter(zip(sliced, n_good, starts, stops.tolist(), strict=True))
    for i, got in enumerate(out):
        if isinstance(got, str):
            continue
        s, n, lo, hi = next(cleaned)
        if n < MIN_POINTS:
            out[i] = f"need >= {MIN_POINTS} valid points, got {n}"
        elif n < s.k.size:
            keep = good[lo:hi]
            out[i] = _Slice(k=s.k[keep], iv=s.iv[keep], w=s.w[keep],
                            bid=None if s.bid is None else s.bid[keep],
                            ask=None if s.ask is None else s.ask[keep])
    return out


def _flat(x: npt.ArrayLike) -> FloatArray:
    """``x`` as a flat float64 array (itself where it is one: no numpy call)."""
    if type(x) is np.ndarray and x.ndim == 1 and x.dtype == np.float64:
        return x
    return np.asarray(x, np.float64).ravel()


_ONES = np.ones(256)
_ONES.flags.writeable = False


def _ones(n: int) -> FloatArray:
    """``n`` ones, read-only (a view where ``n`` is small: no allocation a slice)."""
    return _ONES[:n] if n <= _ONES.size else np.ones(n)


def _pad(slices: Sequence[_Slice], ts: Sequence[float], objective: band.Objective = OBJECTIVE
         ) -> _Chain:
    """Slices stacked into rows; padding is a weightless point at k = 0, vol 1."""
    sizes = [s.k.size for s in slices]
    n = max(sizes)
    t = np.asarray(ts, np.float64)[:, None]
    valid = quoted_mask(sizes)

    def stack(values: list[FloatArray], fill: float) -> FloatArray:
        return padded(values, valid, fill)

    b = _bands(slices, stack, objective)
    k = stack([s.k for s in slices], 0.0)
    iv = stack([s.iv for s in slices], 1.0)
    lo, hi, span = k_range = _k_range(k, valid)
    return _Chain(k=k, iv=iv, t=t, sqrt_w=np.sqrt(stack([s.w for s in slices], 0.0)),
                  valid=valid, n_valid=np.asarray(sizes, float), padded=min(sizes) < n, band=b,
                  k_range=k_range, target=np.where(b.pull_w > 0, b.centre, iv),
                  priors=(np.log(span), 0.5 * (lo + hi), span))


def _chain(ks: Sequence[npt.ArrayLike], ivs: Sequence[npt.ArrayLike], ts: Sequence[float],
           weights: Sequence[npt.ArrayLike | None], bid_ivs: Sequence[npt.ArrayLike | None],
           ask_ivs: Sequence[npt.ArrayLike | None], objective: band.Objective
           ) -> tuple[_Chain | None, list[str | None]]:
    """The usable slices of a chain as padded rows (None: no slice usable) and, per slice,
    why it is not usable (None: it is a row). With the C kernels (``_svi_rows.h``) this is
    one pass over every quote; without, :func:`_clean_all` and :func:`_pad`."""
    if _NATIVE is None:
        cleaned = _clean_all(ks, ivs, ts, weights, bid_ivs, ask_ivs)
        slices = [s for s in cleaned if isinstance(s, _Slice)]
        kept_ts = [float(t) for t, s in zip(ts, cleaned, strict=True) if isinstance(s, _Slice)]
        return (_pad(slices, kept_ts, objective) if slices else None,
                [s if isinstance(s, str) else None for s in cleaned])
    return _chain_native(_NATIVE, svi_lm.Quotes(ks, ivs, weights, bid_ivs, ask_ivs), ts,
                         objective)


def _chain_native(kernels: svi_lm.Kernels, quotes: svi_lm.Quotes, ts: Sequence[float],
                  objective: band.Objective) -> tuple[_Chain | None, list[str | None]]:
    """:func:`_chain` with the kernels ``count`` and ``rows``."""
    t = np.asarray(ts, np.float64)
    try:
        counts = svi_lm.usable_counts(kernels, quotes, t)
    except (TypeError, ValueError, BufferError):  # not all flat float64 arrays: make them so
        quotes = svi_lm.Quotes(*([None if x is None and j > 1 else _flat(x) for x in side]
                                 for j, side in enumerate(quotes)))
        counts = svi_lm.usable_counts(kernels, quotes, t)
    reasons = [None if n >= MIN_POINTS else _unusable(n, i, quotes, ts)
               for i, n in enumerate(counts)]
    keep = [i for i, r in enumerate(reasons) if r is None]
    if not keep:
        return None, reasons
    sizes = [counts[i] for i in keep]
    width = max(sizes)
    rows = svi_lm.chain_rows(kernels, quotes, t, keep, width, objective)
    k, iv, sqrt_w, *bands, target = rows.cells
    t_rows, _, n_valid, lo, hi, span, centre_k = rows.stats
    return _Chain(k=k, iv=iv, t=t_rows[:, None], sqrt_w=sqrt_w, valid=rows.valid,
                  n_valid=n_valid, padded=min(sizes) < width, band=band.Band(*bands),
                  k_range=(lo, hi, span), target=target,
                  priors=(np.log(span), centre_k, span)), reasons


def _unusable(n: int, i: int, quotes: svi_lm.Quotes, ts: Sequence[float]) -> str:
    """Why slice ``i`` is not fitted, from its :func:`svi_lm.usable_counts` ``n``: the
    messages of :func:`_clean_all`."""
    if n == svi_lm.BAD_TIME:
        return f"bad time to expiry {ts[i]!r}"
    if n == svi_lm.BAD_SIZES:
        sizes = {_flat(side[i]).size for side in quotes if side[i] is not None}
        return f"k, iv, weights, bid and ask IVs differ in size ({sorted(sizes)})"
    return f"need >= {MIN_POINTS} valid points, got {n}"


def _bands(slices: Sequence[_Slice], stack: Callable[[list[FloatArray], float], FloatArray],
           objective: band.Objective) -> band.Band:
    """The slices' bands as padded rows, built in one call where every slice has its
    bid and ask IVs (or none has). A slice of mids alone is least squares on them with the
    default pull (which only scales its residuals against the priors), whatever
    ``objective`` says."""
    sides = {s.bid is None and s.ask is None for s in slices}
    if len(sides) > 1:  # a mix of banded and mid-only slices: each band on its own
        return band.stack([band.make_band(s.iv, s.bid, s.ask, s.w,
                                          *(_MIDS if s.bid is None and s.ask is None
                                            else objective)) for s in slices],
                          max(s.k.size for s in slices))
    nan = float("nan")
    sided = not sides.pop()

    def side(values: list[FloatArray | None]) -> FloatArray | None:
        if not sided or all(v is None for v in values):
            return None
        return stack([np.full(s.k.size, nan) if v is None else v
                      for v, s in zip(values, slices, strict=True)], nan)

    return band.make_band(stack([s.iv for s in slices], nan), side([s.bid for s in slices]),
                          side([s.ask for s in slices]), stack([s.w for s in slices], 0.0),
                          *(objective if sided else _MIDS))


def _residual_fn(c: _Chain) -> ResidualFn:
    """Band residuals of every slice (:mod:`streamer.core.models.band`) and their
    Jacobian in theta, and two more residuals per slice: ``SIGMA_PRIOR`` times how far
    ``ln sigma`` is beyond the log of the slice's quoted k span, and how far ``m`` is
    from the span's centre beyond one span, in spans. Quotes over a narrow span cannot
    tell raw SVI from a parabola (``sigma, b -> inf, a -> -inf``) or from one branch of
    a hyperbola (``m -> inf, rho -> 1``); such fits ran off and never converged (31 of
    111 real slices at 300 iterations, 14 with the sigma prior alone). The priors give a
    finite minimum and cost nothing inside their bounds."""
    at = _residuals_at(c)
    n, m_pts = c.k.shape
    shape = (n, 5, m_pts + 2)

    def residuals(theta: FloatArray) -> tuple[FloatArray, FloatArray]:
        r, s = at(theta)
        scale = 0.5 * s.dr * s.inv_t / s.vol  # dr/dw
        b_scale = scale * s.b
        jac = np.zeros(shape)
        jac[:, 0, :m_pts] = scale
        jac[:, 1, :m_pts] = b_scale * s.smile
        jac[:, 2, :m_pts] = b_scale * s.x * (1.0 - s.rho * s.rho)
        jac[:, 3, :m_pts] = -b_scale * (s.rho + s.x / s.root)
        jac[:, 4, :m_pts] = b_scale * s.sigma2 / s.root
        jac[:, 4, m_pts] = SIGMA_PRIOR * (s.beyond[:, 0] > 0)
        jac[:, 3, m_pts + 1] = (SIGMA_PRIOR * (s.m_beyond[:, 0] > 0) * np.sign(s.off[:, 0])
                                / s.span[:, 0])
        return r, jac
    return residuals


class _Terms(NamedTuple):
    """What :func:`_residual_fn`'s Jacobian is made of, at one theta."""

    inv_t: FloatArray
    span: FloatArray
    b: FloatArray
    rho: FloatArray
    sigma2: FloatArray
    x: FloatArray
    root: FloatArray
    smile: FloatArray
    vol: FloatArray
    dr: FloatArray
    beyond: FloatArray
    off: FloatArray
    m_beyond: FloatArray


def _residuals_at(c: _Chain) -> Callable[[FloatArray], tuple[FloatArray, _Terms]]:
    """The residuals of :func:`_residual_fn` alone (the objective needs no Jacobian),
    with the terms its Jacobian is built from."""
    inv_t = 1.0 / c.t
    ln_span, centre, span = (x[:, None] for x in _priors(c))

    def at(theta: FloatArray) -> tuple[FloatArray, _Terms]:
        a, m, rho = theta[:, 0:1], theta[:, 3:4], np.tanh(theta[:, 2:3])
        b_sigma = np.exp(theta[:, 1::3])  # columns 1 and 4: ln b and ln sigma
        b, sigma2 = b_sigma[:, 0:1], b_sigma[:, 1:2] ** 2
        x = c.k - m
        root = np.sqrt(x * x + sigma2)
        smile = rho * x + root
        vol = np.sqrt(np.maximum(a + b * smile, _W_FLOOR) * inv_t)
        r_band, dr = band.residuals(vol, c.band)
        beyond = theta[:, 4:5] - ln_span
        off = (m - centre) / span
        m_beyond = np.abs(off) - 1.0
        r = np.concatenate([r_band, SIGMA_PRIOR * np.maximum(beyond, 0.0),
                            SIGMA_PRIOR * np.maximum(m_beyond, 0.0)], axis=1)
        return r, _Terms(inv_t, span, b, rho, sigma2, x, root, smile, vol, dr, beyond, off,
                         m_beyond)
    return at


def _k_range(k: FloatArray, valid: npt.NDArray[np.bool_]
             ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Each row's lowest and highest valid k and its span (at least 0.05)."""
    lo = np.where(valid, k, np.inf).min(axis=1)
    hi = np.where(valid, k, -np.inf).max(axis=1)
    return lo, hi, np.maximum(hi - lo, 0.05)


def _priors(c: _Chain) -> tuple[FloatArray, FloatArray, FloatArray]:
    """What the priors of :func:`_residual_fn` need (:attr:`_Chain.priors`)."""
    return c.priors


def _seed_grid(c: _Chain, n_seeds: int = 1) -> FloatArray:
    """The ``n_seeds`` best quasi-explicit seeds of each slice over its (m, sigma) grid,
    as theta, shape ``(n_slices, n_seeds, 5)``.

    For each grid point ``(a, d, c)`` of ``w = a + d y + c sqrt(y^2 + 1)``,
    ``y = (k - m) / sigma``, is the weighted linear least-squares fit to the market
    total variance (Zeliade 2009), scored by its squared vol errors. A slice with no
    grid point of positive curvature starts flat.
    """
    k_min, _, span = c.k_range
    lo = k_min - 0.1 * span
    hi = lo + 1.2 * span
    iv = c.target  # the band's pull target
    if _NATIVE is not None:
        theta, score = svi_lm.best_seeds(_NATIVE, c.k, c.sqrt_w, iv, c.valid, c.t, lo, hi,
                                         span, _SEED_M, _SEED_SIGMA, n_seeds)
    else:
        theta, score = _seed_grid_numpy(c, iv, lo, hi, span, n_seeds)
    none = ~np.isfinite(score)
    if none.any():  # no grid point had positive curvature: a flat generic start
        atm_w = np.broadcast_to(np.nanmedian(np.where(c.valid, c.iv * c.iv * c.t, np.nan),
                                             axis=1)[:, None], none.shape)[none]
        theta[none] = np.column_stack([0.9 * atm_w, np.full(atm_w.shape, np.log(0.1)),
                                       np.zeros_like(atm_w), np.zeros_like(atm_w),
                                       np.full(atm_w.shape, np.log(0.1))])
    return theta


def _seed_grid_numpy(c: _Chain, iv: FloatArray, lo: FloatArray, hi: FloatArray,
                     span: FloatArray, n_seeds: int) -> tuple[FloatArray, FloatArray]:
    """:func:`_seed_grid`'s seeds and scores without the C kernel: every grid point of
    every slice in one stacked solve of the 3x3 normal equations."""
    grid = (len(span), _SEED_M.size, _SEED_SIGMA.size)
    m = np.broadcast_to(lo[:, None, None] + (hi - lo)[:, None, None] * _SEED_M[:, None],
                        grid).reshape(len(span), -1)
    sigma = np.broadcast_to(span[:, None, None] * _SEED_SIGMA, grid).reshape(m.shape)
    y = (c.k[:, None, :] - m[..., None]) / sigma[..., None]
    root = np.sqrt(y * y + 1.0)
    w = (c.sqrt_w * c.sqrt_w)[:, None, :]
    target = (iv * iv * c.t)[:, None, :]
    wy, wr = w * y, w * root
    s1 = np.broadcast_to(w.sum(axis=-1), m.shape)
    sy, sr, syy, syr = wy.sum(-1), wr.sum(-1), (wy * y).sum(-1), (wy * root).sum(-1)
    normal = np.stack([s1, sy, sr, sy, syy, syr, sr, syr, syy + s1], axis=-1).reshape(
        (*m.shape, 3, 3))
    rhs = np.stack([np.broadcast_to((w * target).sum(-1), m.shape), (wy * target).sum(-1),
                    (wr * target).sum(-1)], axis=-1)
    normal += 1e-13 * np.eye(3) * np.trace(normal, axis1=-2, axis2=-1)[..., None, None]
    # a slice of zero weights has nothing to solve (the kernel skips its singular systems)
    weightless = ~(s1 > 0)
    normal[weightless] = np.eye(3)
    coef = np.linalg.solve(normal, rhs[..., None])[..., 0]
    a, d, cc = coef[..., 0], coef[..., 1], coef[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.clip(d / cc, -0.99, 0.99)
        vol = np.sqrt((a[..., None] + cc[..., None] * (rho[..., None] * y + root)) / c.t[:, None])
    err = vol - iv[:, None, :]
    undefined = np.isnan(err)  # w < 0: penalised per point, padding excepted
    score = (np.where(undefined, 0.0, err * err * w).sum(-1)
             + 1e3 * (undefined & c.valid[:, None, :]).sum(-1))
    score = np.where((cc > 1e-10) & ~weightless, score, np.inf)
    best = np.argsort(score, axis=1, kind="stable")[:, :n_seeds]  # (n_slices, n_seeds)
    pick = np.arange(len(span))[:, None], best
    theta = np.stack([a[pick], np.log(np.maximum(cc[pick] / sigma[pick], 1e-10)),
                      np.arctanh(rho[pick]), m[pick], np.log(sigma[pick])], axis=-1)
    return theta, score[pick]


def _rmse(c: _Chain, theta: FloatArray) -> FloatArray:
    """Unweighted RMS of model minus market vol per slice; NaN where ``w < 0`` somewhere."""
    a, m = theta[:, 0:1], theta[:, 3:4]
    b, rho, sigma = np.exp(theta[:, 1:2]), np.tanh(theta[:, 2:3]), np.exp(theta[:, 4:5])
    x = c.k - m
    with np.errstate(invalid="ignore"):
        err = np.sqrt((a + b * (rho * x + np.sqrt(x * x + sigma * sigma))) / c.t) - c.iv
    if c.padded:
        err = np.where(c.valid, err, 0.0)
    result: FloatArray = np.sqrt((err * err).sum(axis=1) / c.n_valid)
    return result


def calibrate_chain(ks: Sequence[npt.ArrayLike], ivs: Sequence[npt.ArrayLike],
                    ts: Sequence[float], weights: Sequence[npt.ArrayLike] | None = None,
                    previous: Sequence[SVIParams | None] | None = None, *,
                    bid_ivs: Sequence[npt.ArrayLike] | None = None,
                    ask_ivs: Sequence[npt.ArrayLike] | None = None,
                    pull: float = OBJECTIVE.pull, margin: float = OBJECTIVE.margin,
                    tail: float = OBJECTIVE.tail, n_starts: int = N_STARTS,
                    max_iter: int = MAX_ITER, tol: float = TOL) -> list[Fit[SVIParams]]:
    """Fit raw SVI to every expiry of a chain at once, each slice on its own.

    Parameters
    ----------
    ks, ivs : sequences of array_like, one per expiry
        Log-moneyness ``ln(K/F)`` and market mid implied vols (decimal) of each slice.
    ts : sequence of float
        Times to expiry in years.
    weights : sequence of array_like, optional
        Non-negative weights of the squared vol errors (default 1).
    previous : sequence of SVIParams or None, optional
        Per slice, the warm start (refine from it only) or None (cold fit).
    bid_ivs, ask_ivs : sequences of array_like, optional
        Bid and ask IVs (NaN: that side missing). With them the objective is the
        bid/ask band of :mod:`streamer.core.models.band`; without, least squares on mids.
    pull, margin, tail : float
        The band objective's weight of the pull toward the band centres, the margin and
        the Huber tail, in half spreads (:class:`streamer.core.models.band.Objective`).
    n_starts : int
        Cold fits refine this many of the best quasi-explicit seeds and keep the best.

    Returns
    -------
    list of Fit[SVIParams]
        One per slice, as :func:`calibrate` would return it (a slice's failure is its
        own status; the others are unaffected). ``status`` is ``converged`` only when
        the solver met its tolerance; ``max_iter`` says it did not.

    Raises
    ------
    ValueError
        If the sequences do not have one entry per slice (a caller's bug, not data).
    """
    n = len(ks)
    prev = list(previous) if previous is not None else [None] * n
    wts = list(weights) if weights is not None else [None] * n
    bids = list(bid_ivs) if bid_ivs is not None else [None] * n
    asks = list(ask_ivs) if ask_ivs is not None else [None] * n
    if not len(ivs) == len(ts) == len(prev) == len(wts) == len(bids) == len(asks) == n:
        raise ValueError("ks, ivs, ts, weights, bid/ask IVs and previous must have one "
                         "entry per slice")
    chain, reasons = _chain(ks, ivs, ts, wts, bids, asks, band.Objective(pull, margin, tail))
    fitted = iter(()) if chain is None else iter(_fit(
        chain, [p for p, r in zip(prev, reasons, strict=True) if r is None],
        _Solver(pull=pull, n_starts=max(n_starts, 1), max_iter=max_iter, tol=tol)))
    return [next(fitted) if r is None else Fit.failed(p or _NO_PARAMS, r, warm=p is not None)
            for p, r in zip(prev, reasons, strict=True)]


class _Solver(NamedTuple):
    pull: float
    n_starts: int
    max_iter: int
    tol: float


#: The columns of :func:`_refine`'s rows (as :func:`svi_lm.pick` writes them).
_THETA, _COST, _RMSE, _ITERATIONS, _NFEV, _CONVERGED = slice(0, 5), 5, 6, 7, 8, 9


def _refine(chain: _Chain, theta0: FloatArray, owner: IntArray, solver: _Solver) -> FloatArray:
    """One batched LM over every start (start ``i`` of slice ``owner[i]``); per slice, a
    row of its lowest-cost start's theta, cost (inf where w < 0 somewhere), RMSE
    (:func:`_rmse`) and iterations, its starts' evaluations in all and whether that start
    converged (the columns above; the first start of equal costs, NaN last)."""
    if _NATIVE is not None:
        res = svi_lm.refine(_NATIVE, chain.k, chain.band, 1.0 / chain.t, chain.priors, theta0,
                            owner, max_iter=solver.max_iter, tol=solver.tol,
                            sigma_prior=SIGMA_PRIOR, w_floor=_W_FLOOR)
        return svi_lm.pick(_NATIVE, chain.k, chain.iv, chain.valid, chain.band, chain.t,
                           chain.priors, chain.n_valid, owner, res, w_floor=_W_FLOOR,
                           sigma_prior=SIGMA_PRIOR)
    problems = chain.rows(owner) if owner.size > chain.k.shape[0] else chain
    res = levenberg_marquardt(
        _residual_fn(problems), theta0, max_iter=solver.max_iter, tol=solver.tol,
        select=lambda rows: _residual_fn(problems.rows(rows)))
    return _pick(chain, owner, res)


def _pick(chain: _Chain, owner: IntArray, res: BatchResult) -> FloatArray:
    """:func:`_refine`'s rows from its LM result in numpy (the kernel ``pick``'s reference)."""
    cost, rmse = _cost_at(chain.rows(owner), res.theta)
    n = chain.k.shape[0]
    # per slice, its lowest-cost start: the first of its run once sorted by (owner, cost)
    counts = np.bincount(owner, minlength=n)
    best = np.lexsort((cost, owner))[np.cumsum(counts) - counts]
    return np.column_stack([res.theta[best], cost[best], rmse[best], res.iterations[best],
                            np.bincount(owner, weights=res.nfev, minlength=n),
                            res.converged[best]])


def _fit(chain: _Chain, prev: list[SVIParams | None], solver: _Solver) -> list[Fit[SVIParams]]:
    """Cold slices refine their ``n_starts`` best quasi-explicit seeds; warm slices their
    previous parameters and their best seed, in the same batched LM; each slice keeps
    its lowest objective. The band objective (dead zone, Huber tail) has several basins,
    and a warm start stays in the basin of a fit to an older, perhaps partial, chain: on
    the real hourly Deribit file, of 47 converged warm fits that their unrefined seed did
    not beat (the rule before refined the seed only when it did, or when the warm fit
    had not converged), the refined seed ended 11-87 % lower on 7. With the C kernel the
    second start costs a warm batch no measurable time (in numpy it once cost as much
    as a cold batch)."""
    seeds: list[list[list[float]]] = _seed_grid(chain, solver.n_starts).tolist()
    starts: list[list[float]] = []
    owner: list[int] = []
    for i, (p, mine) in enumerate(zip(prev, seeds, strict=True)):
        run = mine if p is None else [_to_theta(p), mine[0]]  # a slice's run of starts
        starts += run
        owner += [i] * len(run)
    got = _refine(chain, np.array(starts), np.array(owner, np.int64), solver)
    return [_fit_of(row, p, solver.max_iter) for row, p in zip(got.tolist(), prev, strict=True)]


def _cost_at(chain: _Chain, theta: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The objective of every slice at ``theta`` (inf where w < 0 somewhere) and its RMSE
    (:func:`_rmse`)."""
    with np.errstate(over="ignore", invalid="ignore"):
        r, _ = _residuals_at(chain)(theta)
        rmse = _rmse(chain, theta)
        return np.where(np.isfinite(rmse), (r * r).sum(axis=1), np.inf), rmse


def _fit_of(row: list[float], previous: SVIParams | None, max_iter: int) -> Fit[SVIParams]:
    """One slice's Fit from its row of :func:`_refine` (as Python numbers)."""
    warm = previous is not None
    it, nfev, converged = int(row[_ITERATIONS]), int(row[_NFEV]), row[_CONVERGED] == 1.0
    if not math.isfinite(row[_COST]):
        return Fit.failed(previous or _NO_PARAMS, "fit produced negative total variance",
                          warm=warm, iterations=it, nfev=nfev)
    status: FitStatus = "converged" if converged else "max_iter"
    return Fit(params=_from_theta(row[_THETA]), rmse_vol=row[_RMSE], iterations=it,
               status=status, message="" if converged else f"stopped at max_iter={max_iter}",
               nfev=nfev, warm=warm)


def calibrate(k: npt.ArrayLike, iv: npt.ArrayLike, t: float,
              weights: npt.ArrayLike | None = None, previous: SVIParams | None = None, *,
              bid_iv: npt.ArrayLike | None = None, ask_iv: npt.ArrayLike | None = None,
              pull: float = OBJECTIVE.pull, margin: float = OBJECTIVE.margin,
              tail: float = OBJECTIVE.tail, n_starts: int = N_STARTS,
              max_iter: int = MAX_ITER, tol: float = TOL) -> Fit[SVIParams]:
    """Fit raw SVI to one expiry's implied vols.

    Parameters
    ----------
    k : array_like, shape (n,)
        Log-moneyness ``ln(K/F)``.
    iv : array_like, shape (n,)
        Market mid implied vols (decimal).
    t : float
        Time to expiry in years.
    weights : array_like, shape (n,), optional
        Non-negative weights of the squared vol errors (default 1).
    previous : SVIParams, optional
        Warm start: refine from these parameters only.
    bid_iv, ask_iv : array_like, shape (n,), optional
        The quotes' bid and ask IVs: the bid/ask band objective (see
        :func:`calibrate_chain`).

    Returns
    -------
    Fit[SVIParams]
        ``rmse_vol`` is the unweighted RMS of model minus market mid vol. Failure is a
        status, never an exception.
    """
    return calibrate_chain([k], [iv], [t], None if weights is None else [weights], [previous],
                           bid_ivs=None if bid_iv is None else [bid_iv],
                           ask_ivs=None if ask_iv is None else [ask_iv], pull=pull,
                           margin=margin, tail=tail, n_starts=n_starts, max_iter=max_iter,
                           tol=tol)[0]


def butterfly_margin(params: SVIParams, k_min: float, k_max: float, n: int = 201) -> float:
    """Minimum of ``g(k)`` over ``[k_min, k_max]``; ``>= 0`` means butterfly-free there."""
    return float(butterfly_margins([params], np.array([k_min]), np.array([k_max]), n)[0])


def butterfly_margins(params: Sequence[SVIParams], k_min: FloatArray, k_max: FloatArray,
                      n: int = 201) -> FloatArray:
    """:func:`butterfly_margin` of many slices, each over its own range, in one pass: the
    C kernel where it was built (:mod:`streamer.core.models.svi_butterfly`, the same
    bits), else the numpy grid (the reference)."""
    stacked = stack(params)
    lo, hi = np.asarray(k_min, np.float64), np.asarray(k_max, np.float64)
    native = svi_butterfly.native_margins(stacked, lo, hi, n)
    if native is not None:
        return native
    k = linspace_rows(lo, hi, n)
    w, dw, d2w = derivatives_rows(k, stacked)
    result: FloatArray = np.min(durrleman_g(k, w, dw, d2w), axis=1)
    return result


def butterfly_free(params: SVIParams, k_min: float, k_max: float, n: int = 201) -> bool:
    """True when Durrleman's ``g >= 0`` on the grid."""
    return butterfly_margin(params, k_min, k_max, n) >= 0.0


# -- the smiles as rows: typed, so that smile metrics can tell raw SVI rows (their C kernel) --

@dataclass(frozen=True, slots=True)
class SVIVarianceRows:
    """Total variance of slice ``idx[i]`` of ``stacked`` (:func:`stack`) at the k of row ``i``."""

    stacked: FloatArray

    def __call__(self, idx: IntArray, k: FloatArray) -> FloatArray:
        return total_variance_rows(k, self.stacked[idx])


@dataclass(frozen=True, slots=True)
class SVIVolRows:
    """Vol of slice ``i`` of ``stacked`` (:func:`stack`) at the k of row ``i``: ``sqrt(w / t)``
    with ``inv_t`` each slice's ``1 / t``, shape (n, 1); NaN where ``w < 0``."""

    stacked: FloatArray
    inv_t: FloatArray

    def __call__(self, k: FloatArray) -> FloatArray:
        w = total_variance_rows(k, self.stacked)
        # times 1/t, not over t: the stacked hot path, whose published bits this fixes
        with np.errstate(invalid="ignore"):
            result: FloatArray = np.sqrt(np.where(w >= 0, w, np.nan) * self.inv_t)
        return result


@dataclass(frozen=True)
class SVIModel(VolFromVariance[SVIParams]):
    """Raw SVI per expiry."""

    name: str = "svi"
    batched = True
    has_reduced = True

    def calibrate(self, k: FloatArray, iv: FloatArray, t: float, weights: FloatArray,
                  previous: SVIParams | None, *, bid_iv: FloatArray | None = None,
                  ask_iv: FloatArray | None = None) -> Fit[SVIParams]:
        if bid_iv is not None or ask_iv is not None:  # the band weighs by half spreads
            return calibrate(k, iv, t, None, previous, bid_iv=bid_iv, ask_iv=ask_iv)
        return calibrate(k, iv, t, weights, previous)

    def calibrate_many(self, k: Sequence[FloatArray], iv: Sequence[FloatArray],
                       t: Sequence[float], weights: Sequence[FloatArray],
                       previous: Sequence[SVIParams | None], *,
                       bid_iv: Sequence[FloatArray] | None = None,
                       ask_iv: Sequence[FloatArray] | None = None) -> list[Fit[SVIParams]]:
        banded = bid_iv is not None or ask_iv is not None  # the band weighs by half spreads
        return list(calibrate_chain(k, iv, t, None if banded else weights, previous,
                                    bid_ivs=bid_iv, ask_ivs=ask_iv))

    def calibrate_reduced(self, k: FloatArray, iv: FloatArray, t: float,
                          weights: FloatArray) -> Fit[SVIParams]:
        """Too few quotes for five parameters: an SSVI slice (three), as raw SVI."""
        fit = ssvi.fit_slice(k, iv, t, weights)
        params = from_ssvi(fit.params) if fit.ok else SVIParams(a=0.0, b=0.0, rho=0.0, m=0.0,
                                                                sigma=0.0)
        return Fit(params=params,
                   rmse_vol=fit.rmse_vol, iterations=fit.iterations, status=fit.status,
                   message=fit.message, nfev=fit.nfev, warm=False)

    def total_variance(self, k: FloatArray, t: float, params: SVIParams) -> FloatArray:
        return total_variance(k, params)

    def vol_jacobian_rows(self, k: FloatArray, t: Sequence[float], params: Sequence[SVIParams]
                          ) -> FloatArray:
        """``d vol / d params`` (the order of :meth:`to_dict`), analytic, of slice ``i`` at
        the k of row ``i``: shape ``(n, m, 5)``."""
        return vol_jacobian_rows(k, np.asarray(t, np.float64), stack(params))

    def variance_rows(self, params: Sequence[SVIParams]) -> SVIVarianceRows:
        """Total variance of slice ``idx[i]`` of ``params`` at the k of row ``i``."""
        return SVIVarianceRows(stack(params))

    def vol_rows(self, params: Sequence[SVIParams], t: Sequence[float]) -> SVIVolRows:
        """The smiles of many slices as rows: ``k`` of shape (n, m) -> vols (n, m)."""
        return SVIVolRows(stack(params), 1.0 / np.asarray(t, np.float64)[:, None])

    def butterfly_margin(self, params: SVIParams, t: float, k_min: float, k_max: float
                         ) -> float:
        return butterfly_margin(params, k_min, k_max)

    def butterfly_margins(self, params: Sequence[SVIParams],
                          k_ranges: Sequence[tuple[float, float]]) -> FloatArray:
        """:meth:`butterfly_margin` of many slices in one pass."""
        lo, hi = np.array(k_ranges, np.float64).reshape(-1, 2).T
        return butterfly_margins(params, lo, hi)

    def from_dict(self, d: dict[str, float]) -> SVIParams:
        return SVIParams.from_dict(d)
