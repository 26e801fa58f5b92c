"""The ``ssvi`` model's surface: natural-SVI slices under calendar constraints.

An SSVI slice (Gatheral & Jacquier 2014) is the natural SVI smile

    w(k) = delta + theta / 2 * (1 + rho phi (k - mu) + sqrt((phi (k - mu) + rho)^2 + 1 - rho^2))

with ``delta = mu = 0``: three parameters an expiry, whose least variance and its place
in ``k`` follow from its ATM variance and skew. Real crypto smiles do not. Measured on
the bundled Deribit chains (hourly / snapshot file, median over the final slices of
the RMSE to Deribit's marks): eSSVI's surface fit 1.85 / 5.69 vol points before the
per-slice fallback; the same eSSVI slices fitted each expiry alone, with no calendar
coupling, 1.86 / 5.66; the best SSVI slice of each expiry by least squares on its band
centres 1.27 / 3.71 (1.01 / 2.27 with ``mu`` free); per-expiry raw SVI 0.44 / 0.76. The
rigidity is the slice's, not the curvature function's across maturities nor the
objective's (SVI's band objective, unweighted, gave eSSVI 1.46 / 3.89), so this surface
frees ``delta`` and ``mu`` (Gatheral & Jacquier 2014 eq. 3.2: raw SVI by another name)
and keeps it free of calendar arbitrage by constraints, as Gatheral & Jacquier's own SVI
surface does (their section 5):

1. each expiry is fitted on its own by raw SVI (:func:`streamer.core.models.svi.calibrate_chain`:
   the band objective, its priors and starts);
2. where those slices break a condition, all are refitted at once against the same band
   objective plus penalties: consecutive expiries' total variance decreasing on a grid
   spanning both quoted ranges and half their width beyond; wing slopes ``b (1 +- rho)``
   falling with ``t`` or over Lee's bound 2; Durrleman's ``g < 0`` on each quoted range
   and half its width beyond; a negative least total variance; SVI's priors;
3. a repair makes the calendar conditions exact (:func:`repair`).

Jointly, not expiry by expiry: fitted in ``t`` order, each slice bound by its
predecessor's (often extrapolated) wings, the hourly file scored 1.12 vp instead of 0.62.
Butterfly arbitrage is penalised, not excluded: as with SVI's own fits, a sharp
short-dated smile can keep a small negative ``g`` (the pipeline publishes its margin).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import msgspec
import numpy as np
import numpy.typing as npt

from streamer.core.arbitrage import durrleman_g
from streamer.core.lazy_scipy import least_squares
from streamer.core.models import band, svi
from streamer.core.models.fit import Fit
from streamer.core.models.ssvi import SSVISlice, fit_slice

FloatArray = npt.NDArray[np.float64]

#: Penalty weights per unit of violation (vol, wing slope, Durrleman g) against band
#: residuals of order one per half spread: large enough that the refit ends within a
#: hair of the constraints, which the repair then closes.
CALENDAR_WEIGHT = 1e3
SLOPE_WEIGHT = 1e3
BUTTERFLY_WEIGHT = 30.0
#: How far beyond the quoted range the calendar and butterfly grids reach, in widths.
GRID_REACH = 0.5
CALENDAR_POINTS = 25
#: The repair's grid, finer: the conditions it makes exact hold between the penalty's points.
REPAIR_POINTS = 401
BUTTERFLY_POINTS = 21
LEE_SLOPE = 2.0
_FD_STEP = 1e-7
_VERTEX = np.linspace(-4.0, 4.0, 17)  # in sigmas about a smile's vertex m
_HUGE = 1e6  # a non-finite residual of a wild trial step
#: The refit's tolerances: at 1e-8 it took about twice the evaluations (often to its cap)
#: for medians within 0.02 vp of these on the real chains.
TOL = 1e-6


class SSVISurface(msgspec.Struct, frozen=True, kw_only=True):
    """Per expiry ``t`` its natural-SVI slice; no surface-wide parameters."""

    t: tuple[float, ...]
    slices: tuple[SSVISlice, ...]

    def surface_dict(self) -> dict[str, float]:
        """No surface-wide parameters: every expiry publishes its own."""
        return {}

    def slice(self, i: int) -> SSVISlice:
        """The smile of expiry ``i``."""
        return self.slices[i]


def _raw(z: FloatArray) -> tuple[FloatArray, ...]:
    """Raw SVI ``a, b, rho, m, sigma`` (each shape ``(n, 1)``) of local variables
    ``(n, 5)``: ``a``, the right and left wing slopes ``b (1 +- rho)``, ``m``, ``ln sigma``."""
    up, down = z[:, 1:2], z[:, 2:3]
    # sigma held to where SVI can tell it from a parabola or a corner, whatever a wild
    # trial step of the refit asks (SVI's priors pull it back inside the quoted span)
    return (z[:, 0:1], 0.5 * (up + down), (up - down) / (up + down), z[:, 3:4],
            np.exp(np.clip(z[:, 4:5], -30.0, 5.0)))


def _local_of(p: svi.SVIParams) -> FloatArray:
    rho = min(max(p.rho, -0.999), 0.999)
    return np.array([p.a, p.b * (1.0 + rho), p.b * (1.0 - rho), p.m,
                     np.log(max(p.sigma, 1e-8))])


def _local(x: FloatArray) -> FloatArray:
    """Local variables of free ones ``a, ln s+, ln s-, m, ln sigma`` (slopes positive)."""
    z = x.copy()
    z[:, 1:3] = np.exp(np.minimum(x[:, 1:3], 30.0))  # a wild trial step: Lee's penalty
    return z


def _free(z: FloatArray) -> FloatArray:
    """Inverse of :func:`_local`."""
    x = z.copy()
    x[:, 1:3] = np.log(np.maximum(z[:, 1:3], 1e-10))
    return x


def _slope_penalties(z: FloatArray) -> FloatArray:
    """Wing slopes falling from one expiry to the next, or over Lee's bound."""
    s = z[:, 1:3]
    result: FloatArray = SLOPE_WEIGHT * np.concatenate([
        np.maximum(s[:-1] - s[1:], 0.0).ravel(), np.maximum(s - LEE_SLOPE, 0.0).ravel()])
    return result


def _w(z: FloatArray, k: FloatArray) -> FloatArray:
    """Total variance of each slice (rows of local variables ``z``) at its row of ``k``."""
    return svi.total_variance_rows(k, np.stack(_raw(z), axis=1))


def _g(z: FloatArray, k: FloatArray) -> FloatArray:
    """Durrleman's ``g`` of each slice at its row of ``k`` (``-1`` where ``w <= 0``)."""
    a, b, rho, m, sigma = _raw(z)
    d = k - m
    root = np.sqrt(d * d + sigma * sigma)
    w = a + b * (rho * d + root)
    with np.errstate(all="ignore"):
        g = durrleman_g(k, np.maximum(w, 1e-12), b * (rho + d / root),
                        b * sigma * sigma / root**3)
    result: FloatArray = np.where((w > 0) & np.isfinite(g), g, -1.0)
    return result


class _Stopped(Exception):
    """The caller's ``should_stop`` said so: the refit ends at its best point so far."""


class _Problem:
    """The joint refit's residuals and their Jacobian by coloured differences: a residual
    depends on one slice or on two consecutive ones, so perturbing every other slice at
    once gives the whole Jacobian in ten evaluations instead of ``5 n``."""

    def __init__(self, k: FloatArray, t: FloatArray, quote_band: band.Band,
                 lo: FloatArray, hi: FloatArray,
                 should_stop: Callable[[], bool] | None = None) -> None:
        self.k, self.t, self.band, self.should_stop = k, t, quote_band, should_stop
        #: the lowest cost evaluated and its point: where a stopped refit ends
        self.best: tuple[float, FloatArray] = (np.inf, np.empty(0))
        n = t.size
        self.n = n
        span = hi - lo
        self.bfly_k = np.linspace(lo - GRID_REACH * span, hi + GRID_REACH * span,
                                  BUTTERFLY_POINTS, axis=1)
        self.cal_k = calendar_grid(lo, hi)
        self.span = np.maximum(span, 0.05)  # SVI's priors' (svi._residual_fn)
        self.centre = 0.5 * (lo + hi)
        # which slices each residual depends on: (first, second), equal for one
        own, pair = np.arange(n), np.arange(n - 1)
        bfly = BUTTERFLY_POINTS + _VERTEX.size
        first = np.concatenate([np.repeat(own, k.shape[1]), np.repeat(pair, CALENDAR_POINTS),
                                np.repeat(own, bfly), np.repeat(pair, 2), np.repeat(own, 2),
                                np.tile(own, 3)])
        second = np.concatenate([np.repeat(own, k.shape[1]),
                                 np.repeat(pair + 1, CALENDAR_POINTS), np.repeat(own, bfly),
                                 np.repeat(pair + 1, 2), np.repeat(own, 2), np.tile(own, 3)])
        self.owner = [np.where(first % 2 == c, first, second) for c in (0, 1)]

    def local_residuals(self, z: FloatArray) -> FloatArray:
        # a trial step of the solver may overflow: its residuals are then only large
        with np.errstate(all="ignore"):
            vol = np.sqrt(np.maximum(_w(z, self.k), 1e-12) / self.t[:, None])
            r_band = band.residuals(vol, self.band)[0]
            later_t = self.t[1:, None]
            before = np.sqrt(np.maximum(_w(z[:-1], self.cal_k), 0.0) / later_t)
            after = np.sqrt(np.maximum(_w(z[1:], self.cal_k), 0.0) / later_t)
            result = np.concatenate([
                r_band.ravel(), CALENDAR_WEIGHT * np.maximum(before - after, 0.0).ravel(),
                BUTTERFLY_WEIGHT * np.maximum(-_g(z, self._butterfly_k(z)), 0.0).ravel(),
                _slope_penalties(z), self._priors(z)])
        out: FloatArray = np.nan_to_num(result, nan=_HUGE, posinf=_HUGE, neginf=-_HUGE)
        return out

    def _butterfly_k(self, z: FloatArray) -> FloatArray:
        """The butterfly grid and points across each smile's vertex ``m +- 4 sigma``,
        where a sharp one (a short expiry's) dips below zero between the grid's points."""
        _, _, _, m, sigma = _raw(z)
        result: FloatArray = np.concatenate([self.bfly_k, m + sigma * _VERTEX], axis=1)
        return result

    def _priors(self, z: FloatArray) -> FloatArray:
        """SVI's priors: ``ln sigma`` beyond the log of the quoted span, ``m`` beyond one
        span from its centre (:func:`streamer.core.models.svi._residual_fn` says why);
        and a negative least total variance (in vol-like units, as the calendar's)."""
        beyond = z[:, 4] - np.log(self.span)
        off = np.abs(z[:, 3] - self.centre) / self.span - 1.0
        result: FloatArray = np.concatenate([
            svi.SIGMA_PRIOR * np.maximum(beyond, 0.0), svi.SIGMA_PRIOR * np.maximum(off, 0.0),
            CALENDAR_WEIGHT * np.maximum(-_lowest(z), 0.0) / np.sqrt(self.t)])
        return result

    def residuals(self, flat: FloatArray) -> FloatArray:
        if self.should_stop is not None and self.should_stop():
            raise _Stopped
        r = self.local_residuals(_local(flat.reshape(self.n, 5)))
        cost = float(r @ r)
        if cost < self.best[0]:
            self.best = (cost, flat.copy())
        return r

    def jacobian(self, flat: FloatArray) -> FloatArray:
        x = flat.reshape(self.n, 5)
        r0 = self.residuals(flat)
        jac = np.zeros((r0.size, self.n, 5))
        h = _FD_STEP * np.maximum(1.0, np.max(np.abs(x), axis=0))
        for colour in range(min(self.n, 2)):
            owner = self.owner[colour]
            hit = np.flatnonzero(owner % 2 == colour)
            for p in range(5):
                step = np.zeros((self.n, 5))
                step[colour::2, p] = h[p]
                dr = (self.residuals((x + step).ravel()) - r0) / h[p]
                jac[hit, owner[hit], p] = dr[hit]
        result: FloatArray = jac.reshape(r0.size, 5 * self.n)
        return result

    def violated(self, z: FloatArray) -> bool:
        """Any penalty active at local variables ``z``."""
        return bool(np.any(self.local_residuals(z)[self.k.size:] > 0))


def calendar_grid(lo: FloatArray, hi: FloatArray, points: int = CALENDAR_POINTS) -> FloatArray:
    """Per consecutive pair of expiries (rows): the ``k`` where the calendar conditions
    are enforced, both quoted ranges and ``GRID_REACH`` of their union's width beyond."""
    a, b = np.minimum(lo[1:], lo[:-1]), np.maximum(hi[1:], hi[:-1])
    width = b - a
    result: FloatArray = np.linspace(a - GRID_REACH * width, b + GRID_REACH * width,
                                     points, axis=1)
    return result


def _lowest(z: FloatArray) -> FloatArray:
    """Each smile's least total variance, ``a + b sigma sqrt(1 - rho^2)``."""
    a, b, rho, _, sigma = _raw(z)
    result: FloatArray = (a + b * sigma * np.sqrt(1.0 - rho * rho))[:, 0]
    return result


def _pair_grid(cal_k: FloatArray, z: FloatArray) -> FloatArray:
    """Each consecutive pair's calendar grid (rows of ``cal_k``) with points across both
    smiles' vertices (of ``z``), where a sharp smile dips between the grid's points."""
    _, _, _, m, sigma = _raw(z)
    vertex = m + sigma * _VERTEX
    result: FloatArray = np.concatenate([cal_k, vertex[:-1], vertex[1:]], axis=1)
    return result


def repair(z: FloatArray, cal_k: FloatArray) -> FloatArray:
    """Exact calendar conditions, expiry by expiry in ``t`` order: the first smile's
    level ``a`` raised to keep its total variance non-negative; each later one's wing
    slopes raised to its predecessor's where below, then its level by the largest
    shortfall below the predecessor's smile on their grid and across both smiles'
    vertices (so it stays non-negative too)."""
    out = z.copy()
    out[0, 0] += max(-float(_lowest(out[:1])[0]), 0.0) * (1.0 + 1e-9)
    for i in range(1, out.shape[0]):
        out[i, 1:3] = np.maximum(out[i, 1:3], out[i - 1, 1:3])
        k = _pair_grid(cal_k[i - 1:i], out[i - 1:i + 1])
        short = float(np.max(_w(out[i - 1:i], k) - _w(out[i:i + 1], k)))
        if short > 0:
            out[i, 0] += short * (1.0 + 1e-9) + 1e-15
    return out


def calibrate(k: Sequence[npt.ArrayLike], iv: Sequence[npt.ArrayLike], t: Sequence[float],
              *, bid_iv: Sequence[npt.ArrayLike] | None = None,
              ask_iv: Sequence[npt.ArrayLike] | None = None,
              weights: Sequence[npt.ArrayLike] | None = None,
              max_nfev: int = 100,
              should_stop: Callable[[], bool] | None = None) -> Fit[SSVISurface]:
    """Fit the calendar-constrained natural-SVI surface (module docstring) to every expiry.

    Always from SVI's cold fits: warm SVI refits from the last constrained slices stayed
    near them and ended further from the marks (hourly / snapshot file 0.74 / 1.04 vp
    against 0.65 / 0.90), and the same quotes then always give the same surface.

    Parameters
    ----------
    k, iv : sequences of array_like, one per expiry, expiries ascending in ``t``
        Log-moneyness ``ln(K/F)`` and market mid implied vols (decimal).
    t : sequence of float
        Times to expiry in years, strictly ascending.
    bid_iv, ask_iv : sequences of array_like, optional
        Bid and ask IVs per quote (NaN: side missing): the objective is SVI's bid/ask
        band (:data:`streamer.core.models.svi.OBJECTIVE`); without, least squares on mids.
    weights : sequence of array_like, optional
        Only for a slice too small for SVI's five parameters, whose three-parameter
        SSVI seed (:func:`streamer.core.models.ssvi.fit_slice`) they weigh.
    max_nfev : int
        Most residual evaluations of the joint refit (its Jacobians aside).
    should_stop : callable, optional
        Asked before each evaluation of the refit; once it returns True the refit ends
        at its best point so far, repaired as any (status ``max_iter``, message
        ``stopped``): the caller's time budget.
    """
    tt = np.asarray([float(v) for v in t])
    empty = SSVISurface(t=tuple(tt.tolist()), slices=())
    if not (len(k) == len(iv) == tt.size > 0) or np.any(np.diff(tt) <= 0) or np.any(tt <= 0):
        return Fit.failed(empty, "one k and iv per expiry, t > 0 ascending", warm=False)
    ks, vs, sides, ws = _clean([np.asarray(a, np.float64).ravel() for a in k],
                               [np.asarray(a, np.float64).ravel() for a in iv], bid_iv, ask_iv,
                               weights)
    if any(a.size < 3 for a in ks):
        return Fit.failed(empty, "every expiry needs >= 3 valid quotes", warm=False)
    seeds = _seeds(ks, vs, tt, sides, ws)
    if seeds is None:
        return Fit.failed(empty, "an expiry could not be fitted on its own", warm=False)
    problem = _problem(ks, vs, tt, sides, should_stop)
    z, nfev, converged, stopped = seeds, 0, True, False
    if problem.violated(z):
        try:
            sol = least_squares(problem.residuals, _free(seeds).ravel(), jac=problem.jacobian,
                                method="lm", x_scale="jac", max_nfev=max_nfev, ftol=TOL,
                                xtol=TOL)
            z, nfev, converged = _local(sol.x.reshape(tt.size, 5)), int(sol.nfev), sol.status > 0
        except _Stopped:
            stopped, converged = True, False
            if problem.best[1].size:
                z = _local(problem.best[1].reshape(tt.size, 5))
    z = repair(z, calendar_grid(*_quoted_range(ks), REPAIR_POINTS))
    err = np.concatenate([np.sqrt(np.maximum(_w(z[i:i + 1], a[None])[0], 0.0) / tt[i]) - v
                          for i, (a, v) in enumerate(zip(ks, vs, strict=True))])
    rmse = float(np.sqrt(np.mean(err * err)))
    if not np.isfinite(rmse):
        return Fit.failed(empty, "non-finite model vols", warm=False, iterations=nfev,
                          nfev=nfev)
    slices = tuple(SSVISlice.from_raw_svi(*(float(v[0, 0]) for v in _raw(z[i:i + 1])))
                   for i in range(tt.size))
    return Fit(params=SSVISurface(t=tuple(tt.tolist()), slices=slices), rmse_vol=rmse,
               iterations=nfev, status="converged" if converged else "max_iter", nfev=nfev,
               message="stopped" if stopped else "", warm=False)


Sides = tuple[list[FloatArray], list[FloatArray]]


def _clean(ks: list[FloatArray], vs: list[FloatArray],
           bid_iv: Sequence[npt.ArrayLike] | None, ask_iv: Sequence[npt.ArrayLike] | None,
           weights: Sequence[npt.ArrayLike] | None
           ) -> tuple[list[FloatArray], list[FloatArray], Sides | None, list[FloatArray]]:
    """The quotes with a finite ``k`` and a positive mid IV, their bid and ask IVs (NaN
    for a side not given; None without either) and weights (NaN when not given)."""
    good = [np.isfinite(a) & np.isfinite(v) & (v > 0) for a, v in zip(ks, vs, strict=True)]

    def pick(arrays: Sequence[npt.ArrayLike] | None) -> list[FloatArray]:
        if arrays is None:
            return [np.full(int(g.sum()), np.nan) for g in good]
        return [np.asarray(a, np.float64).ravel()[g] for a, g in zip(arrays, good, strict=True)]
    sides = None if bid_iv is None and ask_iv is None else (pick(bid_iv), pick(ask_iv))
    return pick(ks), pick(vs), sides, pick(weights)


def _seeds(ks: list[FloatArray], vs: list[FloatArray], t: FloatArray, sides: Sides | None,
           weights: list[FloatArray]) -> FloatArray | None:
    """Local variables ``(n, 5)`` of each expiry's own cold raw SVI fit; a slice too small
    for five parameters takes its SSVI fit; None when an expiry cannot be fitted at all."""
    fits = svi.calibrate_chain(ks, vs, list(t), None, None,
                               bid_ivs=None if sides is None else sides[0],
                               ask_ivs=None if sides is None else sides[1])
    out = np.empty((t.size, 5))
    for i, fit in enumerate(fits):
        if not fit.ok:
            w = weights[i]
            small = fit_slice(ks[i], vs[i], float(t[i]), None if np.isnan(w).all() else w)
            if not small.ok:
                return None
            fit = Fit(params=svi.from_ssvi(small.params), rmse_vol=small.rmse_vol,
                      iterations=0, status="converged", warm=False)
        out[i] = _local_of(fit.params)
    return out


def _problem(ks: list[FloatArray], vs: list[FloatArray], t: FloatArray,
             sides: Sides | None, should_stop: Callable[[], bool] | None = None) -> _Problem:
    """The joint refit of :func:`calibrate`: quotes padded to a common length, each
    expiry's band its own (SVI's objective; least squares on the mids without sides)."""
    size = max(a.size for a in ks)
    k = np.array([np.pad(a, (0, size - a.size), mode="edge") for a in ks])
    if sides is None:
        bands = [band.make_band(v, None, None) for v in vs]
    else:
        bands = [band.make_band(v, b, a, None, *svi.OBJECTIVE)
                 for v, b, a in zip(vs, *sides, strict=True)]
    return _Problem(k, t, band.stack(bands, size), *_quoted_range(ks), should_stop)


def _quoted_range(ks: list[FloatArray]) -> tuple[FloatArray, FloatArray]:
    return np.array([a.min() for a in ks]), np.array([a.max() for a in ks])
