"""The per-venue engine: quotes in, whole-surface updates out, numbers for the metrics.

Time only comes in as arguments (``on_timer(now_ns)``, quote timestamps), so a
replay of the same quotes produces the same updates. The one exception is explicit:
a live service gives the engine a ``budget_clock``, and a batch that runs past its
time budget on it defers the rest of its slices (and a surface fit stops at its best
point so far); without one (replay, tests) there is no budget. The engine measures its
own compute time with ``perf_counter_ns`` for the metrics; that never feeds results.
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, cast

import msgspec
import numpy as np

from streamer.config import (
    AnalyticsConfig,
    BatchConfig,
    CalibrationConfig,
    DynamicsConfig,
    publishes_forward,
)
from streamer.core.models.fit import Fit
from streamer.core.models.mixed import MixedSlices
from streamer.core.models.protocol import (
    BatchSliceModel,
    SliceEvaluator,
    SliceModel,
    SurfaceModel,
)
from streamer.core.models.registry import model_for
from streamer.core.models.svi import SVIVarianceRows
from streamer.core.rows import linspace_rows
from streamer.core.smile_rows import VarianceRows
from streamer.core.svi_slices import native_calendar_gaps
from streamer.pipeline.analytics import FittedSlice, SurfaceAnalytics
from streamer.pipeline.batcher import Batcher, earliest_due_ns
from streamer.pipeline.calibrator import PerExpiry, SliceFit, SliceOutcome, WholeSurface
from streamer.pipeline.chain_book import ChainBook
from streamer.pipeline.deadline import Clock, Deadline
from streamer.pipeline.dynamics import DynamicsTracker, FittedSmile, instrument_marks
from streamer.pipeline.snapshot import (
    SliceSnapshot,
    build_slices,
    count_chain_rejects,
    years_to_expiry,
)
from streamer.types import (
    DynamicsState,
    Quote,
    SliceUpdate,
    SurfaceUpdate,
    VenueVolIndex,
    expiry_iso,
)

CALENDAR_POINTS = 41
CALENDAR_TOL = 1e-12
#: Used for the calendar check when two expiries' quoted ranges do not overlap.
CALENDAR_FALLBACK_RANGE = (-0.1, 0.1)


@dataclass
class EngineReport:
    """What happened since the last ``drain_report``, for the metrics."""

    rejects: Counter[tuple[str, str]] = field(default_factory=Counter)
    calibration_seconds: list[tuple[tuple[str, str], float]] = field(default_factory=list)
    fallbacks: Counter[tuple[str, str]] = field(default_factory=Counter)
    slices: Counter[tuple[str, str]] = field(default_factory=Counter)
    arbitrage: Counter[tuple[str, str]] = field(default_factory=Counter)
    rmse: dict[str, tuple[float, float]] = field(default_factory=dict)
    deferred_slices: int = 0

    def add(self, later: EngineReport) -> None:
        """Take in a later report (one drained after this one)."""
        for mine, theirs in ((self.rejects, later.rejects), (self.fallbacks, later.fallbacks),
                             (self.slices, later.slices), (self.arbitrage, later.arbitrage)):
            mine.update(theirs)
        self.calibration_seconds += later.calibration_seconds
        self.rmse.update(later.rmse)
        self.deferred_slices += later.deferred_slices


@dataclass
class _Underlying:
    book: ChainBook
    batcher: Batcher
    fits: dict[int, SliceFit] = field(default_factory=dict)
    seq: int = 0
    last_cut_ns: int = 0
    seeded: dict[int, dict[str, float]] = field(default_factory=dict)
    surface_params: Any | None = None  # surface models only
    surface_rmse: float = float("nan")
    seeded_surface: dict[str, float] | None = None
    vol_index: VenueVolIndex | None = None  # the venue's own (Deribit's DVOL), latest


class Engine:
    """Chain books, batching and incremental calibration for every underlying of a venue."""

    def __init__(self, venue: str, calibration: CalibrationConfig, batch: BatchConfig,
                 dynamics: DynamicsConfig | None = None,
                 analytics: AnalyticsConfig | None = None,
                 budget_clock: Clock | None = None) -> None:
        self.venue = venue
        #: the clock the time budget (``calibration.budget_ms`` and ``surface_budget_ms``)
        #: is measured on; None: no budget, the same quotes always give the same fits
        self.budget_clock = budget_clock
        self._analytics = SurfaceAnalytics(analytics)
        self._dynamics = DynamicsTracker(dynamics)
        self._last_surface: dict[str, SurfaceUpdate] = {}  # per underlying, for dynamics state
        self._saved_counts: dict[str, int] = {}
        self.calibration = calibration
        #: the venue's own forward for each expiry, where it publishes one
        self._venue_forward = calibration.forward == "venue" and publishes_forward(venue)
        self.batch = batch
        self._underlyings: dict[str, _Underlying] = {}
        self._report = EngineReport()

    def _state(self, underlying: str) -> _Underlying:
        state = self._underlyings.get(underlying)
        if state is None:
            state = _Underlying(ChainBook(self.venue, underlying),
                                Batcher(self.batch.interval_ms, self.batch.max_quotes))
            self._underlyings[underlying] = state
        return state

    def model_name(self, underlying: str) -> str:
        """The model configured for an underlying."""
        return self.calibration.models.get(underlying, self.calibration.model)

    def on_quote(self, quote: Quote) -> None:
        """Store a Quote; cheap (calibration happens in ``on_timer``)."""
        state = self._state(quote.underlying)
        state.book.update(quote)
        state.batcher.add(quote.received_ts_ns)

    def on_vol_index(self, index: VenueVolIndex) -> None:
        """Keep the venue's latest own vol index of an underlying, to publish beside ours."""
        state = self._state(index.underlying)
        if state.vol_index is None or index.exchange_ts_ms >= state.vol_index.exchange_ts_ms:
            state.vol_index = index

    def on_timer(self, now_ns: int) -> list[SurfaceUpdate]:
        """Cut and calibrate every batch that is due at ``now_ns``."""
        return [u for name, s in sorted(self._underlyings.items()) if s.batcher.due(now_ns)
                for u in self._cut(name, s)]

    def next_due_ns(self) -> int | None:
        """The earliest time a pending batch falls due (None: nothing pending), so a
        replay can fire its timer at that instant of file time."""
        return earliest_due_ns(s.batcher for s in self._underlyings.values())

    def flush(self, now_ns: int) -> list[SurfaceUpdate]:
        """Calibrate everything pending now (the end of a replay)."""
        return [u for name, s in sorted(self._underlyings.items()) if s.batcher.pending
                for u in self._cut(name, s)]

    def seed(self, update: SurfaceUpdate) -> bool:
        """Warm-start from a previously published surface (e.g. read back from Kafka).

        Ignored (returns False) for an underlying this engine already calibrates: its
        own state is newer than anything it could read back.
        """
        known = self._underlyings.get(update.underlying)
        if known is not None and (known.fits or known.surface_params is not None):
            return False
        state = self._state(update.underlying)
        state.seq = max(state.seq, update.seq)
        for s in update.slices:
            state.seeded[s.expiry_ts_ms] = dict(s.params)
        if update.params:
            state.seeded_surface = dict(update.params)
        return True

    def instruments(self, underlying: str) -> list[Quote]:
        """The latest quote of every live option of an underlying (its instruments)."""
        state = self._underlyings.get(underlying)
        if state is None:
            return []
        return [q for expiry in state.book.expiries() for q in state.book.quotes(expiry)]

    def seed_dynamics(self, state: DynamicsState) -> bool:
        """Continue an underlying's smile dynamics from its published memory.

        Ignored (returns False) once this engine has published that underlying: its
        own observations are newer.
        """
        if state.venue != self.venue or state.underlying in self._last_surface:
            return False
        self._dynamics.restore(state)
        self._saved_counts[state.underlying] = sum(t.count for t in state.tenors)
        return True

    def take_dynamics_states(self) -> list[DynamicsState]:
        """The dynamics memory of every underlying that took new observations since the
        last call (what ``vol.dynamics.v1`` publishes, latest per key)."""
        states = []
        for name, surface in sorted(self._last_surface.items()):
            state = self._dynamics.state(surface)
            count = -1 if state is None else sum(t.count for t in state.tenors)
            if state is not None and count != self._saved_counts.get(name):
                self._saved_counts[name] = count
                states.append(state)
        return states

    def drain_report(self) -> EngineReport:
        """The numbers since the previous call."""
        report, self._report = self._report, EngineReport()
        return report

    # -- one batch -------------------------------------------------------------
    def _cut(self, name: str, state: _Underlying) -> list[SurfaceUpdate]:
        state.batcher.cut()
        book = state.book
        now_ms = book.newest_exchange_ts_ms
        for expiry in book.drop_expired(now_ms):
            state.fits.pop(expiry, None)
        for expiry in [e for e in state.fits if e <= now_ms]:
            del state.fits[expiry]
        model = model_for(self.model_name(name))
        started = time.perf_counter_ns()
        if model.is_surface:
            self._calibrate_surface(name, state, cast(SurfaceModel, model), now_ms)
        else:
            self._calibrate_dirty(name, state, cast(SliceModel, model), now_ms)
        self._report.calibration_seconds.append(
            ((model.name, name), (time.perf_counter_ns() - started) / 1e9))
        state.last_cut_ns = book.newest_received_ts_ns
        if not state.fits:
            return []
        # a surface model's slices may be its per-slice fallback's: each evaluated by its own
        evaluator: SliceEvaluator = MixedSlices(model) if model.is_surface else model
        return [self._surface(name, state, evaluator, now_ms)]

    def _calibrate_dirty(self, name: str, state: _Underlying, model: SliceModel,
                         now_ms: int) -> None:
        """Refit the expiries whose quotes changed (batched where the model can)."""
        calibrator = PerExpiry(model, self.calibration)
        dirty = state.book.take_dirty()
        if model.batched:
            self._calibrate_batch(name, state, calibrator, cast(BatchSliceModel, model), dirty,
                                  now_ms)
            return
        deadline = Deadline.after(self.calibration.budget_ms, self.budget_clock)
        for i, expiry in enumerate(dirty):
            if deadline is not None and deadline.passed():
                state.book.dirty.update(dirty[i:])  # over budget: the rest waits for the next batch
                self._report.deferred_slices += len(dirty) - i
                break
            self._calibrate_expiry(name, state, calibrator, expiry, now_ms)

    def _calibrate_batch(self, name: str, state: _Underlying, calibrator: PerExpiry,
                         model: BatchSliceModel, dirty: list[int], now_ms: int) -> None:
        """One batched fit of every changed expiry, then each slice's acceptance rules."""
        snaps = self._snapshots(state, dirty, now_ms)
        previous = [self._previous(state, calibrator, s.expiry_ts_ms, s) for s in snaps]
        least = self.calibration.min_quotes
        at = [i for i, s in enumerate(snaps) if len(s.k) >= least]  # n_quotes, no property call
        first: list[Fit[Any] | None] = [None] * len(snaps)
        if at:
            fittable = [snaps[i] for i in at]
            fitted = model.calibrate_many(
                [s.k for s in fittable], [s.iv for s in fittable], [s.t for s in fittable],
                [s.weights for s in fittable],
                [None if (p := previous[i]) is None else p.params for i in at],
                bid_iv=[s.bid_iv for s in fittable], ask_iv=[s.ask_iv for s in fittable])
            for i, fit in zip(at, fitted, strict=True):
                first[i] = fit
        outcomes = calibrator.calibrate_many(list(zip(snaps, previous, first, strict=True)))
        for snap, outcome in zip(snaps, outcomes, strict=True):
            self._record(name, state, snap.expiry_ts_ms, outcome)

    def _calibrate_surface(self, name: str, state: _Underlying, model: SurfaceModel,
                           now_ms: int) -> None:
        """Refit every expiry at once (any changed quote moves the shared parameters)."""
        state.book.take_dirty()
        snaps = self._snapshots(state, state.book.expiries(), now_ms)
        if state.surface_params is None and state.seeded_surface is not None:
            state.surface_params = model.surface_from_dict(state.seeded_surface)
            state.seeded_surface = None
        outcome = WholeSurface(model, self.calibration, self.budget_clock).calibrate(
            snaps, state.surface_params, state.surface_rmse, state.fits)
        for reason, n in outcome.refused.items():
            self._report.fallbacks[(name, reason)] += n
        state.surface_params, state.surface_rmse = outcome.params, outcome.rmse_vol
        state.fits = dict(outcome.fits)
        for fit in outcome.fits.values():
            self._report.slices[(name, fit.status)] += 1
            if not fit.butterfly_free:
                self._report.arbitrage[(name, "butterfly")] += 1

    def _snapshot(self, state: _Underlying, expiry: int, now_ms: int) -> SliceSnapshot | None:
        """Build one expiry's fit inputs and count the quotes it rejected."""
        snaps = self._snapshots(state, [expiry], now_ms)
        return snaps[0] if snaps else None

    def _snapshots(self, state: _Underlying, expiries: list[int], now_ms: int
                   ) -> list[SliceSnapshot]:
        """The fit inputs of several expiries in one pass (expired ones left out), and
        the count of the quotes they rejected."""
        built = build_slices([(e, state.book.columns(e)) for e in expiries], now_ms,
                             venue_forward=self._venue_forward,
                             stale_after_ms=self.calibration.stale_after_ms,
                             max_rel_spread=self.calibration.max_rel_spread)
        if built:  # the whole chain's rejects in one count
            for reason, n in count_chain_rejects(built, state.last_cut_ns).items():
                self._report.rejects[(self.venue, reason)] += n
        return [snap for snap, _, _ in built if snap is not None]

    def _calibrate_expiry(self, name: str, state: _Underlying, calibrator: PerExpiry,
                          expiry: int, now_ms: int) -> None:
        snap = self._snapshot(state, expiry, now_ms)
        if snap is None:
            return
        previous = self._previous(state, calibrator, expiry, snap)
        self._record(name, state, expiry, calibrator.calibrate(snap, previous))

    def _previous(self, state: _Underlying, calibrator: PerExpiry, expiry: int,
                  snap: SliceSnapshot) -> SliceFit | None:
        """The expiry's last fit, or one seeded from a published surface."""
        previous = state.fits.get(expiry)
        if previous is None and expiry in state.seeded:
            previous = self._seeded_fit(calibrator, state.seeded.pop(expiry), snap.t, expiry)
        return previous

    def _record(self, name: str, state: _Underlying, expiry: int, outcome: SliceOutcome
                ) -> None:
        if outcome.fallback_reason is not None:
            self._report.fallbacks[(name, outcome.fallback_reason)] += 1
        if outcome.fit is None:  # nothing to publish for it, not even its last fit
            state.fits.pop(expiry, None)
            return
        state.fits[expiry] = outcome.fit
        self._report.slices[(name, outcome.fit.status)] += 1
        if not outcome.fit.butterfly_free:
            self._report.arbitrage[(name, "butterfly")] += 1

    @staticmethod
    def _seeded_fit(calibrator: PerExpiry, params: dict[str, float], t: float,
                    expiry: int) -> SliceFit | None:
        try:
            p = calibrator.model.from_dict(params)
        except KeyError:
            return None
        from streamer.core.smile import smile_metrics

        metrics = smile_metrics(lambda k: calibrator.model.vol(k, t, p), t)
        return SliceFit(expiry_ts_ms=expiry, t=t, forward=float("nan"), params=p,
                        rmse_vol=calibrator.config.max_rmse_vol, n_quotes=0, status="warm",
                        metrics=metrics, butterfly_free=True, butterfly_margin=float("nan"),
                        k_range=(-0.1, 0.1))

    def _surface(self, name: str, state: _Underlying, model: SliceEvaluator,
                 now_ms: int) -> SurfaceUpdate:
        fits = [state.fits[e] for e in sorted(state.fits)]
        ts = [years_to_expiry(f.expiry_ts_ms, now_ms) for f in fits]
        # the batched smiles stacked once, for the calendar check, jump-wings and tenors
        rows = (cast(BatchSliceModel, model).variance_rows([f.params for f in fits])
                if model.batched else None)
        cal_margins = _calendar_margins(model, fits, ts, rows)
        fitted = [FittedSlice(f.expiry_ts_ms, t, f.forward, f.params, f.k_range)
                  for f, t in zip(fits, ts, strict=True)]
        jws = self._analytics.jump_wings_many(model, fitted, rows)
        mixed = model if isinstance(model, MixedSlices) else None
        nan = float("nan")
        slices = []
        for f, t, cal_margin, jw in zip(fits, ts, cal_margins, jws, strict=True):
            ok = not cal_margin < -CALENDAR_TOL  # NaN (first expiry): nothing to compare
            if not ok:
                self._report.arbitrage[(name, "calendar")] += 1
            m, spread, quoted = f.metrics, f.spread, f.n_quotes > 0
            slices.append(SliceUpdate(
                expiry=expiry_iso(f.expiry_ts_ms), expiry_ts_ms=f.expiry_ts_ms, t=t,
                forward=f.forward, params=model.to_dict(f.params), atm_vol=m.atm_vol,
                atm_skew=m.atm_skew, rr25=m.rr25, bf25=m.bf25,
                rmse_vol=f.rmse_vol, n_quotes=f.n_quotes, status=f.status,
                fit_status=f.fit_status, butterfly_free=f.butterfly_free, calendar_free=ok,
                butterfly_margin=f.butterfly_margin, calendar_margin=cal_margin,
                atm_curvature=m.atm_curvature, rr10=m.rr10, bf10=m.bf10,
                half_spread_vol=spread.half_spread_vol,
                rmse_half_spreads=spread.rmse_half_spreads,
                within_spread_fraction=spread.within_spread_fraction,
                jw=jw, atm_vol_se=f.atm_vol_se, params_se=f.params_se,
                k_min=f.k_range[0] if quoted else nan, k_max=f.k_range[1] if quoted else nan,
                model="" if mixed is None else mixed.slice_model(f.params),
                fallback_reason=f.fallback_reason))
        rmses = [f.rmse_vol for f in fits if math.isfinite(f.rmse_vol)]
        if rmses:  # statistics: np.median's 20 us a call, for a handful of floats
            self._report.rmse[name] = (max(rmses), statistics.median(rmses))
        state.seq += 1
        surface_params = ({} if state.surface_params is None
                          else cast(MixedSlices, model).surface_dict(state.surface_params))
        statuses = self._dynamics.config.statuses
        smiles = [FittedSmile(f.expiry_ts_ms, t, f.forward, f.metrics.atm_vol, f.params)
                  for f, t in zip(fits, ts, strict=True) if f.status in statuses]
        update = SurfaceUpdate(
            venue=self.venue, underlying=name, model=model.name,  # type: ignore[arg-type]
            seq=state.seq, exchange_ts_ms=now_ms, received_ts_ns=state.book.newest_received_ts_ns,
            published_ts_ns=0, spot=state.book.index_price, params=surface_params, slices=slices,
            tenors=self._analytics.tenors(model, fitted, now_ms, rows),
            variance_index=self._analytics.variance_index(
                model, [(e, state.book.quotes(e)) for e in state.book.expiries()],
                {s.expiry_ts_ms: s for s in fitted}, now_ms, state.vol_index))
        self._last_surface[name] = update
        marks = instrument_marks(state.book.take_new(), smiles, model,
                                 self._dynamics.config.moneyness_sd)
        return msgspec.structs.replace(update, dynamics=self._dynamics.update(update, marks))


def _calendar_margins(model: SliceEvaluator, fits: list[SliceFit], ts: list[float],
                      rows: VarianceRows | None = None) -> list[float]:
    """Per expiry: min of ``w_i(k) - w_{i-1}(k)``; NaN for the first.

    Taken where both expiries are quoted (the overlap of their fitted k ranges):
    outside it the smiles are extrapolations and the check would measure the model's
    wings rather than the market. ``rows``: the model's ``variance_rows`` of ``fits``
    where it has them (the pairs then in one stacked evaluation).
    """
    n = len(fits)
    result = [float("nan")] * n
    if n < 2:
        return result
    lo, hi = zip(*(_overlap(before.k_range, after.k_range)
                   for before, after in itertools.pairwise(fits)), strict=True)
    if isinstance(rows, SVIVarianceRows):  # raw SVI: the C kernel where it was built
        native = native_calendar_gaps(rows.stacked, lo, hi, CALENDAR_POINTS)
        if native is not None:
            result[1:] = native
            return result
    k = linspace_rows(np.array(lo), np.array(hi), CALENDAR_POINTS)
    if rows is not None:  # every pair, both sides, in one stacked evaluation (SVI)
        later = np.arange(1, n)
        w = rows(np.concatenate((later, later - 1)), np.concatenate((k, k)))
        gaps = w[:n - 1] - w[n - 1:]
    else:
        gaps = np.array([model.total_variance(k[i - 1], ts[i], fits[i].params)
                         - model.total_variance(k[i - 1], ts[i - 1], fits[i - 1].params)
                         for i in range(1, n)])
    result[1:] = gaps.min(axis=1).tolist()
    return result


def _overlap(before: tuple[float, float], after: tuple[float, float]) -> tuple[float, float]:
    """The k range two expiries share, or the fallback where they share none (or one
    end is NaN): ``np.maximum`` / ``np.minimum`` in Python floats, for a handful of pairs."""
    (lo0, hi0), (lo1, hi1) = before, after
    if lo0 != lo0 or hi0 != hi0 or lo1 != lo1 or hi1 != hi1:
        return CALENDAR_FALLBACK_RANGE
    lo, hi = (lo1 if lo1 >= lo0 else lo0), (hi1 if hi1 <= hi0 else hi0)
    return (lo, hi) if hi > lo else CALENDAR_FALLBACK_RANGE
