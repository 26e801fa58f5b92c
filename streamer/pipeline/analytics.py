"""Per-surface analytics beyond the fits: jump-wings, constant-maturity views, the variance index.

Fed by the engine with each published surface's fitted slices and the book's quotes;
pure (no IO). Times between expiries run on the configured variance clock (calendar by
default); vols stay quoted on the calendar.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from streamer.config import AnalyticsConfig
from streamer.core.fit_errors import errors_at_quotes, standard_errors, svi_errors_rows
from streamer.core.jump_wings import from_raw_svi, from_raw_svi_rows, from_smile
from streamer.core.lazy_scipy import cubic_spline
from streamer.core.models.protocol import BatchSliceModel, SliceEvaluator
from streamer.core.models.svi import SVIModel, SVIParams, SVIVarianceRows, stack
from streamer.core.smile_rows import VarianceRows
from streamer.core.tenors import TenorView, tenor_views
from streamer.core.variance_clock import (
    DAY_MS,
    YEAR_MS,
    ClockEvent,
    VarianceClock,
    calendar_years,
)
from streamer.core.variance_index import (
    ExpiryVariance,
    VixSum,
    bracketing,
    from_sum,
    interpolated_vol,
)
from streamer.core.variance_sums import quoted_variance, smile_variances
from streamer.pipeline.snapshot import quote_columns
from streamer.types import Quote, VarianceIndex, VenueVolIndex, expiry_iso

FloatArray = npt.NDArray[np.float64]
VarianceOfK = Callable[[FloatArray], FloatArray]

#: Grid of a costly smile's spline, in ATM total-vol widths each side of the money.
_SPLINE_WIDTHS = 8.0
_SPLINE_POINTS = 161
#: Strike grid of the model variance index: total-vol widths each side, and points.
_MODEL_WIDTHS = 10.0
_MODEL_POINTS = 801
#: A quote's strike, bid, ask and side, as the market variance reads them.
_QUOTE_FIELDS = ("strike", "bid_price", "ask_price", "is_call")
#: Deribit's DVOL is the 30-day index.
DVOL_TENOR_DAYS = 30.0
#: Smallest noise scale of a quote in the standard errors, decimal vol.
_MIN_HALF_SPREAD = 1e-4
_LARGEST = float(np.finfo(np.float64).max)


class FittedSlice:
    """What the analytics need of one published slice."""

    __slots__ = ("expiry_ts_ms", "forward", "k_range", "params", "t")

    def __init__(self, expiry_ts_ms: int, t: float, forward: float, params: Any,
                 k_range: tuple[float, float]) -> None:
        self.expiry_ts_ms, self.t, self.forward = expiry_ts_ms, t, forward
        self.params, self.k_range = params, k_range


def _clock(config: AnalyticsConfig) -> VarianceClock:
    events = tuple(ClockEvent(at_ms=int(datetime.fromisoformat(e.at.replace("Z", "+00:00"))
                                        .astimezone(UTC).timestamp() * 1000),
                              extra_days=e.extra_days) for e in config.events)
    return VarianceClock(weekday_weights=config.weekday_weights, events=events)


class SurfaceAnalytics:
    """Jump-wings, tenor views and the variance index of one surface at a time."""

    def __init__(self, config: AnalyticsConfig | None = None) -> None:
        self.config = config or AnalyticsConfig()
        self.clock = _clock(self.config)
        #: clock.years, decided once: the calendar's skips its per-call check of weights
        self._years = calendar_years if self.clock.is_calendar else self.clock.years

    def jump_wings(self, model: SliceEvaluator, s: FittedSlice) -> dict[str, float]:
        """Exact for SVI; read off the smile over its quoted range otherwise."""
        if isinstance(s.params, SVIParams):
            p = s.params
            return from_raw_svi(p.a, p.b, p.rho, p.m, p.sigma, s.t).as_dict()
        return from_smile(self._w_of_k(model, s), s.t, *s.k_range).as_dict()

    def jump_wings_many(self, model: SliceEvaluator, slices: Sequence[FittedSlice],
                        rows: VarianceRows | None = None) -> list[dict[str, float]]:
        """:meth:`jump_wings` of each slice: raw SVI slices all at once, from ``rows``'
        stacked parameters where given (``model.variance_rows`` of the slices)."""
        if slices and all(isinstance(s.params, SVIParams) for s in slices):
            stacked = (rows.stacked if isinstance(rows, SVIVarianceRows)
                       else stack([cast(SVIParams, s.params) for s in slices]))
            return from_raw_svi_rows(stacked, [s.t for s in slices])
        return [self.jump_wings(model, s) for s in slices]

    def tenors(self, model: SliceEvaluator, slices: Sequence[FittedSlice], now_ms: int,
               rows: VarianceRows | None = None) -> list[TenorView]:
        """One view per configured tenor (none without slices); ``rows``: the model's
        ``variance_rows`` of the slices, where the engine already has them."""
        if not slices:
            return []
        days = list(self.config.tenor_days)
        ts = [self._years(now_ms, s.expiry_ts_ms) for s in slices]
        t = [self._years(now_ms, now_ms + int(d * DAY_MS)) for d in days]
        forwards = [s.forward for s in slices]
        if rows is None and model.batched:
            rows = cast(BatchSliceModel, model).variance_rows([s.params for s in slices])
        # with rows, only the last slice's w(0) is read on its own (past the last expiry)
        ws = ([self._w_of_k(model, s) for s in slices] if rows is None
              else [self._w_of_k(model, slices[-1])])
        return tenor_views(days, t, [d * DAY_MS / YEAR_MS for d in days], ts, forwards, ws,
                           rows)

    def variance_index(self, model: SliceEvaluator, books: Sequence[tuple[int, list[Quote]]],
                       fitted: dict[int, FittedSlice], now_ms: int,
                       venue_index: VenueVolIndex | None = None) -> VarianceIndex | None:
        """The index from each expiry's quotes; None where no two expiries bracket it."""
        tenor = self.config.variance_index_days * DAY_MS / YEAR_MS
        pair = _bracketing_variances(books, now_ms, tenor)
        if pair is None:
            return None
        (e1, near), (e2, nxt) = pair
        model_vol = float("nan")
        if e1 in fitted and e2 in fitted:
            m1, m2 = _model_variances(model, [fitted[e1], fitted[e2]], [near, nxt])
            model_vol = interpolated_vol(m1, m2, tenor)
        return VarianceIndex(tenor_days=self.config.variance_index_days,
                             vol=interpolated_vol(near, nxt, tenor), near_expiry=expiry_iso(e1),
                             next_expiry=expiry_iso(e2), n_strikes=near.n_strikes + nxt.n_strikes,
                             model_vol=model_vol,
                             **_venue_fields(venue_index, self.config.variance_index_days))

    @staticmethod
    def _w_of_k(model: SliceEvaluator, s: FittedSlice) -> VarianceOfK:
        """The slice's total variance; through a spline for models costly to evaluate."""
        if not model.costly_vol:
            return lambda k: model.total_variance(np.asarray(k, np.float64), s.t, s.params)
        atm = float(model.vol(np.zeros(1), s.t, s.params)[0]) * np.sqrt(s.t)
        half = _SPLINE_WIDTHS * max(atm, 0.01) if np.isfinite(atm) else 1.0
        grid = np.linspace(-half, half, _SPLINE_POINTS)
        w = model.total_variance(grid, s.t, s.params)
        if not np.all(np.isfinite(w)):
            return lambda k: model.total_variance(np.asarray(k, np.float64), s.t, s.params)
        spline = cubic_spline(grid, w)
        return lambda k: np.asarray(spline(np.clip(k, grid[0], grid[-1])), np.float64)


def _venue_fields(index: VenueVolIndex | None, tenor_days: float) -> dict[str, Any]:
    """The venue's own index beside ours: Deribit's DVOL is a 30-day index only."""
    if index is None or tenor_days != DVOL_TENOR_DAYS:
        return {}
    return {"venue_vol": index.vol, "venue_vol_ts_ms": index.exchange_ts_ms}


def _bracketing_variances(books: Sequence[tuple[int, list[Quote]]], now_ms: int,
                          tenor: float) -> tuple[tuple[int, ExpiryVariance],
                                                 tuple[int, ExpiryVariance]] | None:
    """The two expiries with a market variance that bracket ``tenor`` (``books`` by
    expiry, ascending), computed for those two only: the nearest usable one at or below
    the tenor and the nearest above it."""
    ts = [(e - now_ms) / YEAR_MS for e, _ in books]

    def first_usable(order: Iterable[int]) -> tuple[int, ExpiryVariance] | None:
        return next(((books[i][0], v) for i in order
                     if (v := _market_variance(books[i][1], ts[i])) is not None), None)

    found = [x for x in (first_usable(i for i in reversed(range(len(ts))) if ts[i] <= tenor),
                         first_usable(i for i in range(len(ts)) if ts[i] > tenor))
             if x is not None]
    pair = bracketing([v.t for _, v in found], tenor)
    return None if pair is None else (found[pair[0]], found[pair[1]])


def _market_variance(quotes: list[Quote], t: float) -> ExpiryVariance | None:
    """One expiry's quotes (strikes, bids, asks and sides), then the VIX sum."""
    return quoted_variance(quotes, _QUOTE_FIELDS, quote_columns, t)


def _model_variances(model: SliceEvaluator, slices: Sequence[FittedSlice],
                     markets: Sequence[ExpiryVariance]) -> list[ExpiryVariance]:
    """The same sum on each fitted smile over a wide, dense strike grid, at its market's t."""
    sums = smile_variances(model, [s.params for s in slices], np.array([s.t for s in slices]),
                           np.array([s.forward for s in slices]), _MODEL_WIDTHS, _MODEL_POINTS)
    return [_model_sum(s, market, got)
            for s, market, got in zip(slices, markets, sums, strict=True)]


def _model_sum(s: FittedSlice, market: ExpiryVariance, got: VixSum | None) -> ExpiryVariance:
    if got is None or s.t <= 0:  # expiry_variance's None
        return ExpiryVariance(t=market.t, variance=float("nan"), forward=s.forward,
                              k0=s.forward, n_strikes=0)
    return from_sum(got, s.t, market.t)


def _half_spreads(iv: FloatArray, bid_iv: FloatArray, ask_iv: FloatArray) -> FloatArray:
    half = np.where(np.isfinite(bid_iv), 0.5 * (ask_iv - bid_iv), ask_iv - iv)
    # np.maximum(np.nan_to_num(half, nan=floor), floor) in two ufuncs, not nan_to_num's
    # dozen calls: NaN and -inf to the floor, +inf to the largest float
    np.fmax(half, _MIN_HALF_SPREAD, out=half)
    result: FloatArray = np.fmin(half, _LARGEST, out=half)
    return result


def fit_standard_errors(model: SliceEvaluator, params: Any, t: float, k: FloatArray,
                        iv: FloatArray, bid_iv: FloatArray, ask_iv: FloatArray
                        ) -> tuple[float, dict[str, float]]:
    """ATM vol and parameter standard errors of a fitted slice (core.fit_errors).

    The noise scale of a quote is its half spread in vol (the distance from the mid to
    the ask where the bid has no IV), floored at a hundredth of a vol point. NaN and
    empty for models too costly to differentiate per batch (Heston).
    """
    return fit_standard_errors_many(model, [params], [t], [k], [iv], [bid_iv], [ask_iv])[0]


def fit_standard_errors_many(model: SliceEvaluator, params: Sequence[Any],
                             t: Sequence[float], k: Sequence[FloatArray],
                             iv: Sequence[FloatArray], bid_iv: Sequence[FloatArray],
                             ask_iv: Sequence[FloatArray]) -> list[tuple[float, dict[str, float]]]:
    """:func:`fit_standard_errors` of several slices; one stacked Jacobian where the
    model has it analytically (SVI), central differences slice by slice otherwise."""
    if not params:
        return []
    if model.costly_vol:
        return [(float("nan"), {}) for _ in params]
    if not model.batched:
        keys = list(model.to_dict(params[0]))
        halves = [_half_spreads(*quotes) for quotes in zip(iv, bid_iv, ask_iv, strict=True)]
        return [_finite_difference_errors(model, keys, *args)
                for args in zip(params, t, k, halves, strict=True)]
    sizes = list(map(len, k))
    h = _half_spreads(np.concatenate(iv), np.concatenate(bid_iv), np.concatenate(ask_iv))
    if isinstance(model, SVIModel):  # Jacobian and errors in one pass (C where built)
        names: Sequence[str] = SVIParams.__struct_fields__  # to_dict's keys, in its order
        se, atm = svi_errors_rows(np.concatenate(k), h, sizes, np.array(t, np.float64),
                                  stack(params))
    else:
        names = list(model.to_dict(params[0]))
        rows = cast(BatchSliceModel, model).vol_jacobian_rows
        se, atm = errors_at_quotes(lambda points: rows(points, t, params), np.concatenate(k),
                                   h, sizes)
    return [(a, dict(zip(names, e, strict=True))) if n else (float("nan"), {})
            for a, e, n in zip(atm.tolist(), se.tolist(), sizes, strict=True)]


def _finite_difference_errors(model: SliceEvaluator, names: list[str], params: Any, t: float,
                              k: FloatArray, half: FloatArray) -> tuple[float, dict[str, float]]:
    if k.size == 0:
        return float("nan"), {}

    def vol(kk: FloatArray, theta: FloatArray) -> FloatArray:
        return model.vol(kk, t, model.from_dict(dict(zip(names, theta, strict=True))))

    try:
        se, atm = standard_errors(vol, list(model.to_dict(params).values()), k, half)
    except (ValueError, KeyError):  # parameters outside the model's domain
        return float("nan"), {}
    return atm, dict(zip(names, (float(x) for x in se), strict=True))
