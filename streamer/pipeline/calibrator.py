"""Incremental calibration: warm start, cold retry, fallback to the last good fit.

One rule (:class:`Calibrator`) for every model, with two strategies: :class:`PerExpiry`
for slice models, :class:`WholeSurface` for surface models, which hands an expiry it
cannot fit to a :class:`PerExpiry` of raw SVI (its per-slice fallback).
"""

from __future__ import annotations

import math
import operator
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, cast

import msgspec
import numpy as np
import numpy.typing as npt

from streamer.config import CalibrationConfig
from streamer.core.lazy_scipy import cubic_spline
from streamer.core.models.fit import Fit, FitStatus
from streamer.core.models.mixed import MixedSlices
from streamer.core.models.protocol import (
    BatchSliceModel,
    SliceEvaluator,
    SliceModel,
    SurfaceModel,
)
from streamer.core.rows import quoted_mask
from streamer.core.smile import SmileMetrics, VolRows, smile_metrics_rows
from streamer.pipeline.analytics import fit_standard_errors_many
from streamer.pipeline.deadline import Clock, Deadline
from streamer.pipeline.snapshot import SliceSnapshot
from streamer.pipeline.spread import SpreadStats, spread_stats_rows
from streamer.types import SliceStatus

FloatArray = npt.NDArray[np.float64]
SPLINE_POINTS = 121


class SliceFit(msgspec.Struct, frozen=True, kw_only=True):
    """The state of one expiry after a batch: what is published for it."""

    expiry_ts_ms: int
    t: float
    forward: float
    params: Any
    rmse_vol: float
    n_quotes: int
    status: SliceStatus
    metrics: SmileMetrics
    butterfly_free: bool
    butterfly_margin: float
    k_range: tuple[float, float]
    spread: SpreadStats = msgspec.field(default_factory=SpreadStats)
    #: standard errors of the ATM vol and of each parameter (analytics.fit_standard_errors);
    #: a kept slice carries those of the fit it keeps
    atm_vol_se: float = float("nan")
    params_se: dict[str, float] = msgspec.field(default_factory=dict)
    #: the solver's outcome of the fit behind the slice: ``converged``, or ``max_iter``
    #: (usable, but stopped before its tolerance); a kept slice carries its fit's
    fit_status: FitStatus = "converged"
    #: why the slice is not a fresh fit of its calibrator's model (``rmse_too_high``,
    #: ``atm_off_market``, ``fit_failed``, ``too_few_quotes``): kept, or fitted by a
    #: surface model's per-slice fallback; empty for a fresh fit
    fallback_reason: str = ""


#: The fallback reason of a fit whose ATM vol is off the quotes' (Calibrator.off_market).
ATM_OFF_MARKET = "atm_off_market"


def market_atm(snap: SliceSnapshot) -> tuple[float, float] | None:
    """The market's own ATM vol and half spread at the money: linear in k between the
    quotes either side of k = 0, of the venue's marks where both have one (Deribit's),
    else of the band centres (mid IVs where a side is missing); None when the quotes do
    not reach both sides of the money, or leave a gap there wider than one ATM total-vol
    width."""
    return market_atms([snap])[0]


def market_atms(snaps: Sequence[SliceSnapshot], padded_quotes: _Padded | None = None
                ) -> list[tuple[float, float] | None]:
    """:func:`market_atm` of several slices in one pass over their padded quotes (those of
    ``padded_quotes`` when it holds these slices)."""
    if not snaps:
        return []
    rows = _Padded.of(snaps, padded_quotes)
    k, i = rows.cells[0], np.arange(len(snaps))  # k NaN beyond the quotes
    left = np.argmax(np.where(k <= 0.0, k, -np.inf), axis=1)  # the nearest quote each side
    right = np.argmin(np.where(k >= 0.0, k, np.inf), axis=1)
    # the two quotes' columns; the rest per slice in Python floats (numpy's IEEE operations)
    return [_atm_between(a, b, s.t) for a, b, s in zip(
        rows.cells[:, i, left].T.tolist(), rows.cells[:, i, right].T.tolist(), snaps,
        strict=True)]


def _atm_between(left: list[float], right: list[float], t: float
                 ) -> tuple[float, float] | None:
    """:func:`market_atm` from the nearest quote at or below k = 0 and at or above it
    (their ``_Padded.cells`` columns: k, mid, bid, ask and mark IV)."""
    k_l, mid_l, bid_l, ask_l, mark_l = left
    k_r, mid_r, bid_r, ask_r, mark_r = right
    k_l = k_l if k_l <= 0.0 else -math.inf  # infinite: no quote on that side
    k_r = k_r if k_r >= 0.0 else math.inf
    if not (math.isfinite(k_l) and math.isfinite(k_r)):
        return None
    band_l = math.isfinite(bid_l) and math.isfinite(ask_l)
    band_r = math.isfinite(bid_r) and math.isfinite(ask_r)
    h_l = 0.5 * (ask_l - bid_l) if band_l else math.nan
    h_r = 0.5 * (ask_r - bid_r) if band_r else math.nan
    if math.isfinite(mark_l) and math.isfinite(mark_r):
        c_l, c_r = mark_l, mark_r
    else:  # the band centres, the mid where a side is missing
        c_l = 0.5 * (bid_l + ask_l) if band_l else mid_l
        c_r = 0.5 * (bid_r + ask_r) if band_r else mid_r
    if k_r == k_l:
        return c_l, h_l
    w = -k_l / (k_r - k_l)
    atm = (1 - w) * c_l + w * c_r
    # A chord across a wide gap (a partial book) overstates a convex smile's ATM: only
    # quotes within one ATM total-vol width of each other say where the money is.
    if not k_r - k_l <= atm * (math.sqrt(t) if t >= 0.0 else math.nan):
        return None
    return atm, (1 - w) * h_l + w * h_r


def is_refusal(reason: str) -> bool:
    """A fallback reason that means a fit was made and refused (``too_few_quotes``: none
    was tried)."""
    return reason != "too_few_quotes"


def good_rmse(previous: SliceFit | None) -> float:
    """The RMSE a slice's new fit is measured against (:meth:`Calibrator.acceptable`):
    that of its last fit when it was a fresh one (warm or cold), else NaN (none: a kept
    fit raises no limit)."""
    if previous is not None and previous.status in ("warm", "cold"):
        return previous.rmse_vol
    return float("nan")


class SliceOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """A slice's new state (None when it has never been fitted) and a fallback reason."""

    fit: SliceFit | None
    fallback_reason: str | None = None


class _Published(NamedTuple):
    """What a slice publishes, decided: the parameters, their RMSE and status, the smile
    at the quotes when already evaluated, and the fit a kept slice carries over."""

    snap: SliceSnapshot
    params: Any
    rmse: float
    status: SliceStatus
    model_iv: FloatArray | None = None
    kept: SliceFit | None = None  # its standard errors and fit status go on
    fit_status: FitStatus = "converged"


_Decision = tuple[_Published | None, str | None]  # what to publish, the fallback reason


class Calibrator:
    """The pipeline's one acceptance rule, for every model.

    A fit starts warm from the last good one; when the rule refuses it (failed, or an
    RMSE over the limits: :meth:`acceptable`), it is refitted cold; when that is refused
    too, or its ATM is off the market (:meth:`refusal`), the expiry keeps its last good
    fit, re-evaluated at the new time (:meth:`keep`). How the model is fitted is the
    strategy: :class:`PerExpiry` for slice models (SVI, SABR), :class:`WholeSurface` for
    surface models (SSVI, Heston). Both publish their expiries through :meth:`outcomes`.
    """

    def __init__(self, model: SliceEvaluator, config: CalibrationConfig) -> None:
        self.model = model
        self.config = config

    def acceptable(self, ok: bool, rmse: float, previous_rmse: float) -> bool:
        """Whether a fit may replace the last good one, of RMSE ``previous_rmse`` (NaN:
        there is none): it succeeded, with an RMSE under ``max_rmse_vol`` or under
        ``rmse_jump_factor`` times the last good RMSE."""
        if not ok or not math.isfinite(rmse):  # math: numpy's scalar calls cost ~1 us each
            return False
        limit = self.config.max_rmse_vol
        if not math.isnan(previous_rmse):
            limit = max(limit, self.config.rmse_jump_factor * previous_rmse)
        return rmse <= limit

    def warm_then_cold(self, fit_from: Callable[[Any | None], Fit[Any]], previous: Any | None,
                       previous_rmse: float, first_try: Fit[Any] | None = None
                       ) -> tuple[Fit[Any], SliceStatus]:
        """A fit warm from the last good parameters ``previous``, refitted cold when the
        rule refuses it; cold at once when there are none. ``fit_from(params)`` fits from
        ``params`` (None: cold); ``first_try`` is the warm fit when already made."""
        fit = first_try or fit_from(previous)
        if previous is None:
            return fit, "cold"
        if self.acceptable(fit.ok, fit.rmse_vol, previous_rmse):
            return fit, "warm"
        return fit_from(None), "cold"

    def refusal(self, snap: SliceSnapshot, params: Any, previous: SliceFit | None,
                ok: bool = True, rmse: float | None = None, off_market: bool | None = None
                ) -> str | None:
        """Why a slice's fit may not be published (None: it may): it failed, its RMSE is
        over the limits (checked when ``rmse`` is given), or its ATM is off the market
        (``off_market`` when already checked, :meth:`off_market_many`)."""
        if rmse is not None and not self.acceptable(ok, rmse, good_rmse(previous)):
            return "fit_failed" if not ok else "rmse_too_high"
        if off_market is None:
            off_market = self.off_market(snap, params)
        return ATM_OFF_MARKET if off_market else None

    def outcomes(self, decisions: Sequence[_Decision], padded_quotes: _Padded | None = None,
                 smiles: _Smiles | None = None) -> list[SliceOutcome]:
        """The outcomes of decided slices, their published state built together
        (``padded_quotes``, ``smiles``: the published slices' quotes and smiles when
        already made)."""
        built = iter(self.slice_fits([d for d, _ in decisions if d is not None],
                                     [r or "" for d, r in decisions if d is not None],
                                     padded_quotes, smiles))
        return [SliceOutcome(fit=None if d is None else next(built), fallback_reason=reason)
                for d, reason in decisions]

    def off_market(self, snap: SliceSnapshot, params: Any) -> bool:
        """Whether a fit's ATM vol is further from the quotes' own ATM than
        ``calibration.max_atm_error_vol`` and than the half spread there: a vol the
        market is not showing (Heston a day out was 9 vol points off, in band nowhere)."""
        return self.off_market_many([snap], [params])[0]

    def off_market_many(self, snaps: Sequence[SliceSnapshot], params: Sequence[Any],
                        padded_quotes: _Padded | None = None, smiles: _Smiles | None = None
                        ) -> list[bool]:
        """:meth:`off_market` of several fits: the market ATMs in one pass, the model's in
        one stacked evaluation where it has one (SVI), or from the smile metrics of
        ``smiles`` when they are these fits' (made for what they publish)."""
        if not snaps:
            return []
        ts = [s.t for s in snaps]
        if self.model.batched:  # stacked rows
            made = _Smiles.of(self, params, ts, smiles)
            # the metrics' ATM vols (the rows at k = 0) where the metrics are made anyway
            model_atms = ([m.atm_vol for m in made.metrics()] if made is smiles
                          else made.rows(np.zeros((len(snaps), 1)))[:, 0].tolist())
        else:
            model_atms = [float(self.model.vol(np.zeros(1), t, p)[0])
                          for p, t in zip(params, ts, strict=True)]
        floor = self.config.max_atm_error_vol
        return [market is not None
                and not abs(model - market[0]) <= max(floor, market[1] if math.isfinite(market[1])
                                                      else 0.0)  # NaN: off the market too
                for market, model in zip(market_atms(snaps, padded_quotes), model_atms,
                                         strict=True)]

    def keep(self, previous: SliceFit | None, snap: SliceSnapshot, status: SliceStatus,
             reason: str) -> _Decision:
        """Last good parameters, re-evaluated at the new time; None if there are none, or
        if they are off the market the quotes now show (never published)."""
        if previous is None or self.off_market(snap, previous.params):
            return None, reason
        rmse = previous.rmse_vol
        model_iv = None
        if snap.n_quotes:
            model_iv = self.model.vol(snap.k, snap.t, previous.params)
            err = model_iv - snap.iv
            rmse = float(np.sqrt(np.mean(err * err)))
        return _Published(snap, previous.params, rmse, status, model_iv, kept=previous,
                          fit_status=previous.fit_status), reason

    def _vol_of_k(self, params: Any, t: float) -> Callable[[FloatArray], FloatArray]:
        """The smile as a function of k; a spline through one vectorised call for models
        whose single evaluations are costly (Heston prices by quadrature).

        Beyond the grid (six ATM total-vol widths each side) the spline holds its edge
        vols: a cubic extrapolated out to the delta solver's search range (|k| <= 3)
        turns negative or explodes, and the 25/10-delta strikes then came out wrong
        (RR of -36 on a one-day Heston slice)."""
        if not self.model.costly_vol:
            return lambda k: self.model.vol(k, t, params)
        atm_total_vol = float(self.model.vol(np.zeros(1), t, params)[0]) * np.sqrt(t)
        half_width = 6.0 * max(atm_total_vol, 0.01) if np.isfinite(atm_total_vol) else 1.0
        grid = np.linspace(-half_width, half_width, SPLINE_POINTS)
        vols = self.model.vol(grid, t, params)
        if not np.all(np.isfinite(vols)):
            return lambda k: self.model.vol(k, t, params)
        spline = cubic_spline(grid, vols)
        return lambda k: np.asarray(spline(np.clip(k, grid[0], grid[-1])), np.float64)

    def _vol_rows(self, params: Sequence[Any], ts: Sequence[float]) -> VolRows:
        """The smiles as rows: one stacked evaluation where the model has one."""
        rows = cast(BatchSliceModel, self.model).vol_rows if self.model.batched else None
        if rows is not None:
            stacked: VolRows = rows(params, ts)
            return stacked
        smiles = [self._vol_of_k(p, t) for p, t in zip(params, ts, strict=True)]

        def each(k: FloatArray) -> FloatArray:
            return np.stack([smile(np.ascontiguousarray(k[i])) for i, smile in enumerate(smiles)])
        return each

    def slice_fits(self, published: Sequence[_Published], reasons: Sequence[str] = (),
                   padded_quotes: _Padded | None = None, made_smiles: _Smiles | None = None
                   ) -> list[SliceFit]:
        """The published state of each slice: smile metrics, spread statistics, error
        bars and butterfly margins of all of them in one pass each; ``reasons`` their
        fallback reasons (none: fresh fits); ``padded_quotes``, ``made_smiles``: their
        quotes and smiles when already made."""
        if not published:
            return []
        params = [p.params for p in published]
        ts = [p.snap.t for p in published]
        smiles = _Smiles.of(self, params, ts, made_smiles)
        metrics = smiles.metrics()
        quotes = _Padded.of([p.snap for p in published], padded_quotes)
        model_iv = quotes.put([p.model_iv for p in published], smiles.rows(quotes.k))
        spreads = spread_stats_rows(model_iv, quotes.iv, quotes.bid_iv, quotes.ask_iv,
                                    quotes.quoted)
        k_ranges = quotes.k_ranges()
        margins = self._butterfly_margins(params, ts, k_ranges)
        fresh = [p for p in published if p.kept is None and p.status in ("warm", "cold")]
        errors = dict(zip(map(id, fresh), fit_standard_errors_many(
            self.model, [p.params for p in fresh], [p.snap.t for p in fresh],
            [p.snap.k for p in fresh], [p.snap.iv for p in fresh],
            [p.snap.bid_iv for p in fresh], [p.snap.ask_iv for p in fresh]), strict=True))
        reasons = reasons or [""] * len(published)
        return [self._slice_fit(p, m, spread, margin, k_range, errors.get(id(p)), reason)
                for p, m, spread, margin, k_range, reason in zip(
                    published, metrics, spreads, margins, k_ranges, reasons, strict=True)]

    def _butterfly_margins(self, params: list[Any], ts: list[float],
                           k_ranges: list[tuple[float, float]]) -> list[float]:
        many = (cast(BatchSliceModel, self.model).butterfly_margins if self.model.batched
                else None)
        if many is not None:  # one stacked pass (SVI)
            margins: list[float] = many(params, k_ranges).tolist()
            return margins
        return [float(self.model.butterfly_margin(p, t, *r))
                for p, t, r in zip(params, ts, k_ranges, strict=True)]

    def _slice_fit(self, p: _Published, metrics: SmileMetrics, spread: SpreadStats,
                   margin: float, k_range: tuple[float, float],
                   errors: tuple[float, dict[str, float]] | None, reason: str) -> SliceFit:
        snap = p.snap
        if p.kept is not None:
            atm_se, params_se = p.kept.atm_vol_se, p.kept.params_se
        else:
            atm_se, params_se = errors or (float("nan"), {})
        return SliceFit(expiry_ts_ms=snap.expiry_ts_ms, t=snap.t, forward=snap.forward,
                        params=p.params, rmse_vol=p.rmse, n_quotes=snap.n_quotes,
                        status=p.status, metrics=metrics, butterfly_free=bool(margin >= 0.0),
                        butterfly_margin=margin, k_range=k_range, spread=spread,
                        atm_vol_se=atm_se, params_se=params_se, fit_status=p.fit_status,
                        fallback_reason=reason)


class _Padded:
    """Several slices' quotes as rows padded to the longest (``quoted`` False beyond)."""

    def __init__(self, snaps: Sequence[SliceSnapshot]) -> None:
        self.snaps = list(snaps)
        self.sizes = [len(s.k) for s in snaps]  # n_quotes, without a property call each
        self.quoted = quoted_mask(self.sizes, max(1, max(self.sizes)))
        #: k, mid, bid, ask and mark IVs (NaN where the venue sends none) as rows, NaN
        #: beyond the quotes: all five filled in one pass
        self.cells = np.full((5, *self.quoted.shape), np.nan)
        self.cells[:, self.quoted] = np.concatenate(
            [s.k for s in snaps] + [s.iv for s in snaps] + [s.bid_iv for s in snaps]
            + [s.ask_iv for s in snaps]
            + [s.mark_iv if s.mark_iv.size == n else np.full(n, np.nan)
               for s, n in zip(snaps, self.sizes, strict=True)]).reshape(5, -1)
        self.k = np.where(self.quoted, self.cells[0], 0.0)
        _, self.iv, self.bid_iv, self.ask_iv, _ = self.cells

    @classmethod
    def of(cls, snaps: Sequence[SliceSnapshot], made: _Padded | None) -> _Padded:
        """The padded quotes of ``snaps``: ``made`` when it holds just these, in this order
        (the same rows: the same bits), else built."""
        if (made is not None and len(made.snaps) == len(snaps)
                and all(map(operator.is_, made.snaps, snaps))):
            return made
        return cls(snaps)

    def k_ranges(self) -> list[tuple[float, float]]:
        """Each slice's lowest and highest quoted k; ``(-0.1, 0.1)`` for one without quotes."""
        lo = np.where(self.quoted, self.k, np.inf).min(axis=1).tolist()
        hi = np.where(self.quoted, self.k, -np.inf).max(axis=1).tolist()
        return [(a, b) if n else (-0.1, 0.1) for a, b, n in zip(lo, hi, self.sizes, strict=True)]

    def put(self, given: list[FloatArray | None], computed: FloatArray) -> FloatArray:
        """``computed`` with each row that was ``given`` (not None) replaced by it (in
        place: ``computed`` is the caller's own)."""
        out = computed
        for i, row in enumerate(given):
            if row is not None:
                out[i, :row.size] = row
        return out


class _Smiles:
    """Fitted slices' smiles as rows (:meth:`Calibrator._vol_rows`) and, once asked, their
    metrics: made once a batch for the ATM checks of the fits tried and what they publish,
    usually the same fits."""

    def __init__(self, calibrator: Calibrator, params: Sequence[Any], ts: Sequence[float]
                 ) -> None:
        self.params, self.ts = list(params), list(ts)
        self.rows = calibrator._vol_rows(self.params, self.ts)
        self._metrics: list[SmileMetrics] | None = None

    @classmethod
    def of(cls, calibrator: Calibrator, params: Sequence[Any], ts: Sequence[float],
           made: _Smiles | None) -> _Smiles:
        """The smiles of ``params`` at ``ts``: ``made`` when it holds just these fits (the
        same objects, in this order, at the same times), else made."""
        if (made is not None and len(made.params) == len(params) and made.ts == list(ts)
                and all(map(operator.is_, made.params, params))):
            return made
        return cls(calibrator, params, ts)

    def metrics(self) -> list[SmileMetrics]:
        """Each smile's metrics (:func:`smile_metrics_rows`), computed on the first call."""
        if self._metrics is None:
            self._metrics = smile_metrics_rows(self.rows, self.ts)
        return self._metrics


class PerExpiry(Calibrator):
    """The strategy of a slice model: each expiry fitted on its own, against the last
    good fit of that expiry."""

    model: SliceModel

    def __init__(self, model: SliceModel, config: CalibrationConfig) -> None:
        super().__init__(model, config)

    def calibrate(self, snap: SliceSnapshot, previous: SliceFit | None,
                  first_try: Fit[Any] | None = None) -> SliceOutcome:
        """Warm from ``previous`` when there is one; cold when not or when warm fails.

        ``first_try`` is that first fit when it was already made (a batched fit of the
        whole chain); the cold retry and the fallback rules are the same either way.
        """
        return self.calibrate_many([(snap, previous, first_try)])[0]

    def calibrate_many(self, jobs: Sequence[tuple[SliceSnapshot, SliceFit | None,
                                                  Fit[Any] | None]]) -> list[SliceOutcome]:
        """:meth:`calibrate` of several slices; the ATM checks of their first tries and
        what they publish are computed in one pass each."""
        least = self.config.min_quotes
        tried = [i for i, (snap, _, first) in enumerate(jobs)
                 if first is not None and len(snap.k) >= least]  # n_quotes, no property call
        if not tried:
            return self.outcomes([self.decide(*job) for job in jobs])
        # padded and their smiles stacked once: the fits tried are usually just those
        # published
        snaps = [jobs[i][0] for i in tried]
        params = [jobs[i][2].params for i in tried]  # type: ignore[union-attr]
        quotes = _Padded(snaps)
        smiles = _Smiles(self, params, [s.t for s in snaps]) if self.model.batched else None
        checked: list[bool | None] = [None] * len(jobs)
        for i, off in zip(tried, self.off_market_many(snaps, params, quotes, smiles),
                          strict=True):
            checked[i] = off
        return self.outcomes([self.decide(snap, previous, first, off) for (snap, previous, first),
                              off in zip(jobs, checked, strict=True)], quotes, smiles)

    def decide(self, snap: SliceSnapshot, previous: SliceFit | None,
               first_try: Fit[Any] | None = None, first_off_market: bool | None = None
               ) -> _Decision:
        """What one slice publishes (fitted, kept or nothing) and its fallback reason
        (``first_off_market``: the ATM check of ``first_try``, when already made)."""
        if len(snap.k) < self.config.min_quotes:  # n_quotes, without a property call
            return self._reduced(snap, previous)
        assert not self.model.is_surface, f"{self.model.name} is not a per-slice model"
        model = self.model

        def fit_from(params: Any | None) -> Fit[Any]:
            return model.calibrate(snap.k, snap.iv, snap.t, snap.weights, params,
                                   bid_iv=snap.bid_iv, ask_iv=snap.ask_iv)

        prev_params = previous.params if previous is not None else None
        fit, status = self.warm_then_cold(fit_from, prev_params, good_rmse(previous), first_try)
        off = first_off_market if fit is first_try else None
        # a warm fit has passed the RMSE rule against this very limit: only its ATM is left
        rmse = None if status == "warm" else fit.rmse_vol
        if (reason := self.refusal(snap, fit.params, previous, fit.ok, rmse, off)) is not None:
            return self.keep(previous, snap, "fallback", reason)
        return _Published(snap, fit.params, fit.rmse_vol, status, fit_status=fit.status), None

    def _reduced(self, snap: SliceSnapshot, previous: SliceFit | None) -> _Decision:
        """A slice with too few quotes for the model: a reduced (3-parameter) fit from
        ``min_quotes_reduced`` quotes (an expiry hours away often shows only 4-5), else
        the last fit kept stale, with the reason."""
        reduced = self.model.calibrate_reduced if self.model.has_reduced else None
        if snap.n_quotes < self.config.min_quotes_reduced or reduced is None:
            return self.keep(previous, snap, "stale", "too_few_quotes")
        fit = reduced(snap.k, snap.iv, snap.t, snap.weights)
        if (reason := self.refusal(snap, fit.params, previous, fit.ok, fit.rmse_vol)) is not None:
            return self.keep(previous, snap, "fallback", reason)
        return _Published(snap, fit.params, fit.rmse_vol, "cold"), None


class SurfaceOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """A surface model's new state: per-expiry slices and the surface-wide parameters.

    ``fallback_reason`` is the first reason a slice was not fitted by the surface model;
    ``refused`` counts each such slice by its reason (the fallback metric)."""

    fits: dict[int, SliceFit]
    params: Any | None
    rmse_vol: float
    fallback_reason: str | None = None
    refused: dict[str, int] = msgspec.field(default_factory=dict)


#: The refusals of one expiry by a surface model that its per-slice fallback may answer.
PER_SLICE_REFUSALS = frozenset({"rmse_too_high", ATM_OFF_MARKET})


class WholeSurface(Calibrator):
    """The strategy of a surface model: every expiry in one fit, against the last good
    surface; then each expiry judged on its own where the whole is over the limits.

    An expiry the surface model cannot fit (``rmse_too_high``, ``atm_off_market``) is
    fitted on its own by the per-slice fallback (raw SVI, :class:`PerExpiry` with the
    same acceptance rule) and published as that model's slice; when that is refused too
    it keeps its last good slice (of whichever model made it), else it is left out.
    ``evaluator`` evaluates the mixed slices (:class:`MixedSlices`).
    """

    model: SurfaceModel

    def __init__(self, model: SurfaceModel, config: CalibrationConfig,
                 budget_clock: Clock | None = None) -> None:
        super().__init__(model, config)
        #: the clock ``surface_budget_ms`` is measured on; None: no budget (replay)
        self.budget_clock = budget_clock
        self.evaluator = MixedSlices(model)
        self.fallback = PerExpiry(cast(SliceModel, self.evaluator.fallback), config)

    def calibrate(self, snaps: list[SliceSnapshot], previous: Any | None,
                  previous_rmse: float, previous_fits: dict[int, SliceFit]) -> SurfaceOutcome:
        """Warm from ``previous`` when there is one; cold when not or when warm fails."""
        least = (self.config.min_quotes_reduced if self.model.reduced_slices
                 else max(self.config.min_quotes, self.model.min_slice_quotes))
        usable = [s for s in snaps if s.n_quotes >= least]
        if not usable:
            return self._keep(snaps, previous, previous_rmse, previous_fits, "too_few_quotes")
        fit, status = self.warm_then_cold(lambda params: self._fit(usable, params), previous,
                                          previous_rmse)
        if not fit.ok or not np.isfinite(fit.rmse_vol):
            return self._keep(snaps, previous, previous_rmse, previous_fits, "fit_failed")
        # A surface over the limit is judged expiry by expiry: the expiries the model
        # cannot fit (Heston a day out) are refused on their own instead of taking the
        # whole surface down with them (on a cold start: nothing published at all).
        whole = self.acceptable(fit.ok, fit.rmse_vol, previous_rmse)
        fresh: list[_Published] = []
        refused: list[tuple[SliceSnapshot, str]] = []
        for i, snap in enumerate(usable):
            params = self.model.slice_params(fit.params, i)
            model_iv = self.model.vol(snap.k, snap.t, params)
            err = model_iv - snap.iv
            rmse = float(np.sqrt(np.mean(err * err)))
            # a surface within its limit is not judged by its expiries' RMSEs, and an
            # expiry's limit is set by its last slice of this model (an SVI one sets none)
            reason = self.refusal(snap, params, self._own(previous_fits.get(snap.expiry_ts_ms)),
                                  rmse=None if whole else rmse)
            if reason is None:
                fresh.append(_Published(snap, params, rmse, status, model_iv,
                                        fit_status=fit.status))
            else:
                refused.append((snap, reason))
        if not fresh:
            return self._keep(snaps, previous, previous_rmse, previous_fits, refused[0][1],
                              {snap.expiry_ts_ms: reason for snap, reason in refused})
        # A surface accepted only in part leaves the acceptance limit where it was: its RMSE
        # must not let the next surface through whole (rmse_jump_factor).
        return SurfaceOutcome(fits=self._publish(fresh, refused, previous_fits),
                              params=fit.params,
                              rmse_vol=previous_rmse if refused else fit.rmse_vol,
                              fallback_reason=refused[0][1] if refused else None,
                              refused=_counts(reason for _, reason in refused))

    def _own(self, fit: SliceFit | None) -> SliceFit | None:
        """``fit`` when the surface model made it, else None."""
        return fit if fit is not None and self.evaluator.of(fit.params) is self.model else None

    def _publish(self, fresh: list[_Published], refused: list[tuple[SliceSnapshot, str]],
                 previous_fits: dict[int, SliceFit]) -> dict[int, SliceFit]:
        """The published slices: the surface model's ``fresh`` ones, and for each
        ``refused`` one its fallback fit, else its last good slice, else nothing."""
        own: list[_Decision] = [(p, None) for p in fresh]
        other: list[_Decision] = []
        for snap, reason in refused:
            previous = previous_fits.get(snap.expiry_ts_ms)
            by_fallback = previous is not None and self._own(previous) is None
            decided: _Published | None = None
            if reason in PER_SLICE_REFUSALS:
                # warm from the last fallback fit only: a surface model's slice is no SVI
                decided, _ = self.fallback.decide(snap, previous if by_fallback else None)
            if decided is not None:
                other.append((decided, reason))
            elif by_fallback:
                other.append((self.fallback.keep(previous, snap, "fallback", reason)[0],
                              reason))
            else:
                own.append((self.keep(previous, snap, "fallback", reason)[0], reason))
        outcomes = self.outcomes(own) + self.fallback.outcomes(other)
        return {o.fit.expiry_ts_ms: o.fit for o in outcomes if o.fit is not None}

    def _fit(self, snaps: list[SliceSnapshot], previous: Any | None) -> Fit[Any]:
        # A fit that runs past its budget stops at its best point so far (Heston); the
        # next batch warm-starts from it. Without a budget clock (replay) it runs to its
        # own tolerance: the same quotes always give the same surface.
        deadline = Deadline.after(self.config.surface_budget_ms, self.budget_clock)
        return self.model.calibrate_surface([s.k for s in snaps], [s.iv for s in snaps],
                                            [s.t for s in snaps], [s.weights for s in snaps],
                                            previous, bid_iv=[s.bid_iv for s in snaps],
                                            ask_iv=[s.ask_iv for s in snaps],
                                            should_stop=None if deadline is None
                                            else deadline.passed)

    def _keep(self, snaps: list[SliceSnapshot], previous: Any | None, previous_rmse: float,
              previous_fits: dict[int, SliceFit], reason: str,
              refused: dict[int, str] | None = None) -> SurfaceOutcome:
        """No fresh slice of the surface model: the ``refused`` expiries (by expiry, each
        with its reason) as :meth:`_publish` does, the others (none refused: all) at their
        last good slice, re-evaluated against the new quotes."""
        if refused:  # the rest had too few quotes to join the fit
            reasons = [(s, refused.get(s.expiry_ts_ms, "too_few_quotes")) for s in snaps]
        else:
            reasons = [(s, reason) for s in snaps]
        return SurfaceOutcome(fits=self._publish([], reasons, previous_fits), params=previous,
                              rmse_vol=previous_rmse, fallback_reason=reason,
                              refused=_counts(refused.values()) if refused else {reason: 1})


def _counts(reasons: Iterable[str]) -> dict[str, int]:
    return dict(Counter(reasons))
