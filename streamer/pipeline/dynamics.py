"""Online smile-dynamics estimates per ``venue:underlying``, fed by instruments' requotes.

An *observation* is one instrument quoted again: how far its implied vol moved at its
fixed strike while its own forward moved, beside the slope of the expiry's fitted
smile at its strike (``core.dynamics``). Each quote is inverted at the forward it
was quoted against (Deribit's ``underlying_price``), so a slice fitted to quotes of
several ages, which mixes forwards and drags the fitted smile toward sticky strike,
does not enter the estimate; the fits give only the slopes. Near the money
(``moneyness_sd``), out of the money, every requote of every instrument counts, so a
7-minute recording gives thousands of observations where the ATM point of one tenor
gave a handful.

Each tenor (the reference and the ``bucket_days``) pools the instruments whose expiry
lies within ``pool_ratio`` of it; its regression keeps weighted sums that decay with
``half_life_s`` of exchange time (deterministic in replay). The ATM vol and skew that
turn the SSR into betas come from the surface at the tenor, interpolated between its
expiries (``core.dynamics.atm_at_tenors``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

import msgspec
import numpy as np
import numpy.typing as npt

from streamer.config import DynamicsConfig
from streamer.core.dynamics import (
    FixedStrikeFit,
    FixedStrikeSums,
    ObservationTerms,
    atm_vol_skew_at_tenors,
    classify_regime,
    fixed_strike_fit,
)
from streamer.core.implied_vol import implied_vol
from streamer.core.models.svi import SVIModel, stack
from streamer.core.svi_slices import native_slopes
from streamer.pipeline.snapshot import YEAR_MS, quote_columns, quote_flags
from streamer.types import (
    Dynamics,
    DynamicsState,
    InstrumentMark,
    Quote,
    SurfaceUpdate,
    TenorDynamicsState,
)

DAYS_PER_YEAR = 365.0
SLOPE_STEP = 1e-3  # central difference in k for the fitted smile's slope
FloatArray = npt.NDArray[np.float64]


class FittedSmile(NamedTuple):
    """An expiry's fresh fit, as the marks need it: ``vol(k)`` through ``model``."""

    expiry_ts_ms: int
    t: float
    forward: float
    atm_vol: float
    params: Any


class InstrumentMarks(NamedTuple):
    """One batch's new quotes near the money, each inverted at its own forward."""

    instrument: list[str]
    exchange_ts_ms: npt.NDArray[np.int64]
    t: FloatArray  # years to expiry
    log_forward: FloatArray
    iv: FloatArray
    variance: FloatArray  # of iv: the bid/ask half spread in vol, squared
    slope: FloatArray  # d sigma / d k of the expiry's fitted smile at the quote's k


NO_MARKS = InstrumentMarks([], np.zeros(0, np.int64), *(np.zeros(0) for _ in range(5)))


def instrument_marks(quotes: Sequence[Quote], smiles: Sequence[FittedSmile], model: Any,
                     moneyness_sd: float) -> InstrumentMarks:
    """The marks of ``quotes`` (one underlying's, received since the last batch).

    Kept: two-sided, out of the money, within ``moneyness_sd`` ATM standard deviations,
    of an expiry in ``smiles``, with finite mid, bid and ask vols. ``model`` evaluates
    the smiles (``vol(k, t, params)``).
    """
    by_expiry = {s.expiry_ts_ms: s for s in smiles}
    kept = [q for q in quotes if q.expiry_ts_ms in by_expiry and 0 < q.bid_price < q.ask_price]
    if not kept:
        return NO_MARKS
    strike, bid, ask, own_f, expiry, ts = quote_columns(
        kept, "strike", "bid_price", "ask_price", "underlying_price", "expiry_ts_ms",
        "exchange_ts_ms")  # epoch ms are exact in float64
    calls = quote_flags(kept, "is_call")
    listed = [by_expiry[e] for e in sorted(by_expiry)]
    fit_f, atm, keys = np.array([(s.forward, s.atm_vol, s.expiry_ts_ms) for s in listed],
                                np.float64).T
    of = keys.searchsorted(expiry)  # each quote's smile in ``listed``
    forward = np.where(np.isfinite(own_f) & (own_f > 0), own_f, fit_f[of])
    t = (expiry - ts) / YEAR_MS
    k = np.log(strike / forward)
    near = ((k >= 0) == calls) & (t > 0) & (np.abs(k) <= moneyness_sd * atm[of] * np.sqrt(t))
    idx = near.nonzero()[0]
    if not idx.size:
        return NO_MARKS
    # mids, bids and asks in one inversion, each at its quote's own forward
    n, at = idx.size, np.concatenate((idx, idx, idx))
    vols = implied_vol(np.concatenate((0.5 * (bid[idx] + ask[idx]), bid[idx], ask[idx])),
                       forward[at], strike[at], t[at], calls[at])
    iv, bid_iv, ask_iv = vols[:n], vols[n:2 * n], vols[2 * n:]
    slope = _slopes(of[idx], k[idx], listed, model)
    ok = np.isfinite(iv) & np.isfinite(bid_iv) & np.isfinite(ask_iv) & np.isfinite(slope) & \
        (ask_iv > bid_iv)
    take = idx[ok]
    return InstrumentMarks([kept[i].instrument for i in take.tolist()],
                           ts[take].astype(np.int64), t[take], np.log(forward[take]), iv[ok],
                           (0.5 * (ask_iv[ok] - bid_iv[ok])) ** 2, slope[ok])


def _slopes(row: npt.NDArray[np.intp], k: FloatArray, smiles: list[FittedSmile],
            model: Any) -> FloatArray:
    """``d sigma / d k`` of each quote's fitted smile (``smiles[row]``) at its ``k``: one
    stacked evaluation of each end's own smile where the model has one (SVI: one row per
    end, a single column), else one call per smile with quotes."""
    if isinstance(model, SVIModel):  # raw SVI: the C kernel where it was built
        native = native_slopes(stack([s.params for s in smiles]), [s.t for s in smiles], row,
                               k, SLOPE_STEP)
        if native is not None:
            return native
    ends = np.concatenate([k + SLOPE_STEP, k - SLOPE_STEP])
    rows = np.concatenate([row, row])  # the smile of each end
    stacked = model.vol_rows if getattr(model, "batched", False) else None
    if stacked is not None:
        of = [smiles[i] for i in rows.tolist()]
        vols = stacked([s.params for s in of], [s.t for s in of])(ends[:, None])[:, 0]
    else:
        vols = np.empty(ends.size)
        for i in np.unique(row).tolist():
            mine = (rows == i).nonzero()[0]
            vols[mine] = model.vol(ends[mine], smiles[i].t, smiles[i].params)
    result: FloatArray = (vols[:k.size] - vols[k.size:]) / (2 * SLOPE_STEP)
    return result


class _Observations(NamedTuple):
    t_days: FloatArray
    x: FloatArray  # slope * d ln F
    y: FloatArray  # d sigma at fixed strike
    variance: FloatArray


class _Key:
    """One ``venue:underlying``: its instruments' last counted quotes (columns indexed by
    instrument) and its tenors' sums."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.iv = np.zeros(0)
        self.log_forward = np.zeros(0)
        self.variance = np.zeros(0)
        self.ts_ms = np.zeros(0, np.int64)  # 0: no quote yet
        self.sums: dict[float, FixedStrikeSums] = {}
        self.updated_ts_ms: dict[float, int] = {}
        self.fits: dict[float, FixedStrikeFit] = {}

    def columns(self, names: list[str]) -> npt.NDArray[np.intp]:
        """The column of each instrument, new ones appended."""
        index = self.index
        for name in names:
            if name not in index:
                index[name] = len(index)
        grow = len(index) - self.iv.size
        if grow > 0:
            self.iv, self.log_forward, self.variance = (
                np.concatenate([col, np.zeros(grow)])
                for col in (self.iv, self.log_forward, self.variance))
            self.ts_ms = np.concatenate([self.ts_ms, np.zeros(grow, np.int64)])
        return np.array([index[n] for n in names], np.intp)

    def observe(self, marks: InstrumentMarks, cfg: DynamicsConfig) -> _Observations:
        """The observations ``marks`` complete; a mark that completes one, or cannot
        (a first quote, a gap, a jump), becomes its instrument's start."""
        col = self.columns(marks.instrument)
        prev_ts = self.ts_ms[col]
        move = marks.log_forward - self.log_forward[col]
        div = marks.iv - self.iv[col]
        newer = marks.exchange_ts_ms > prev_ts
        restart = ((prev_ts == 0) | (marks.exchange_ts_ms - prev_ts > cfg.max_gap_s * 1000.0)
                   | (np.abs(move) > cfg.max_move) | (np.abs(div) > cfg.max_iv_move))
        counted = newer & ~restart & (np.abs(move) >= cfg.min_move)
        obs = _Observations(DAYS_PER_YEAR * marks.t[counted], marks.slope[counted] * move[counted],
                            div[counted], marks.variance[counted] + self.variance[col[counted]])
        moved = newer & (restart | counted)
        at = col[moved]
        self.iv[at], self.log_forward[at] = marks.iv[moved], marks.log_forward[moved]
        self.variance[at], self.ts_ms[at] = marks.variance[moved], marks.exchange_ts_ms[moved]
        return obs

    def marks_state(self) -> list[InstrumentMark]:
        """Every instrument's start, by name."""
        return [InstrumentMark(instrument=name, iv=float(self.iv[i]),
                               log_forward=float(self.log_forward[i]),
                               variance=float(self.variance[i]),
                               exchange_ts_ms=int(self.ts_ms[i]))
                for name, i in sorted(self.index.items()) if self.ts_ms[i] > 0]

    def restore_marks(self, marks: list[InstrumentMark]) -> None:
        """Starts from a published state."""
        col = self.columns([m.instrument for m in marks])
        self.iv[col] = [m.iv for m in marks]
        self.log_forward[col] = [m.log_forward for m in marks]
        self.variance[col] = [m.variance for m in marks]
        self.ts_ms[col] = [m.exchange_ts_ms for m in marks]

    def add(self, tenors: list[float], obs: _Observations, now_ms: int, cfg: DynamicsConfig
            ) -> list[bool]:
        """Decay each tenor's sums to ``now_ms`` and add its pool's observations; per
        tenor, True when any was added. The pools of every tenor in one comparison, the
        weighted products of every observation once (tenors with the same pool share its
        sums)."""
        added = [False] * len(tenors)
        increments: dict[bytes, FixedStrikeSums] = {}
        if obs.x.size:
            days = np.array(tenors)
            pools = ((obs.t_days >= (days / cfg.pool_ratio)[:, None])
                     & (obs.t_days <= (days * cfg.pool_ratio)[:, None]))
            added = cast(list[bool], pools.any(axis=1).tolist())
            terms = ObservationTerms.of(obs.x, obs.y, obs.variance)
        for i, tenor in enumerate(tenors):
            sums = self.sums.get(tenor, FixedStrikeSums())
            since = self.updated_ts_ms.get(tenor, now_ms)
            if now_ms > since:
                sums = sums.decayed(0.5 ** ((now_ms - since) / (cfg.half_life_s * 1000.0)))
            if added[i]:
                pool = pools[i]
                got = increments.get(shared := pool.tobytes())
                if got is None:
                    got = increments[shared] = terms.sums(pool)
                sums = sums.combined(got)
            self.sums[tenor] = sums
            self.updated_ts_ms[tenor] = max(now_ms, since)
        return added


class DynamicsTracker:
    """Rolling SSR, betas and regime for every ``venue:underlying``."""

    def __init__(self, config: DynamicsConfig | None = None) -> None:
        self.config = config or DynamicsConfig()
        self._keys: dict[str, _Key] = {}

    @property
    def tenors(self) -> list[float]:
        """The reference tenor and the buckets, days, without repeats."""
        return list(dict.fromkeys((self.config.tenor_days, *self.config.bucket_days)))

    def reset(self, key: str | None = None) -> None:
        """Forget one key's history (``venue:underlying``), or every key's."""
        if key is None:
            self._keys.clear()
        else:
            self._keys.pop(key, None)

    def state(self, surface: SurfaceUpdate) -> DynamicsState | None:
        """The memory of ``surface``'s key as of that surface (None before its first)."""
        key = self._keys.get(surface.key)
        if key is None or not key.sums:
            return None
        tenors = [TenorDynamicsState(tenor_days=days, sxx=s.sxx, sxy=s.sxy, syy=s.syy, n=s.n,
                                     count=s.taken, updated_ts_ms=key.updated_ts_ms[days])
                  for days, s in sorted(key.sums.items())]
        return DynamicsState(venue=surface.venue, underlying=surface.underlying,
                             seq=surface.seq, exchange_ts_ms=surface.exchange_ts_ms,
                             tenors=tenors, instruments=key.marks_state())

    def restore(self, state: DynamicsState) -> None:
        """Continue a key from its published memory (after a restart or a rebalance).

        Tenors no longer configured are ignored; the next surface's estimate uses the
        restored sums, and each instrument's next quote completes an observation.
        """
        key = _Key()
        wanted = set(self.tenors)
        for t in state.tenors:
            if t.tenor_days in wanted:
                key.sums[t.tenor_days] = FixedStrikeSums(t.sxx, t.sxy, t.syy, t.n, t.count)
                key.updated_ts_ms[t.tenor_days] = t.updated_ts_ms
        key.restore_marks(state.instruments)
        self._keys[state.key] = key

    def update(self, surface: SurfaceUpdate, marks: InstrumentMarks = NO_MARKS
               ) -> Dynamics | None:
        """Feed one surface and the marks of its batch; the estimates at the reference
        tenor with ``by_expiry`` buckets.

        None when the surface's usable expiries do not bracket the reference tenor.
        """
        cfg = self.config
        key = self._keys.setdefault(surface.key, _Key())
        obs = key.observe(marks, cfg)
        used = [s for s in surface.slices if s.status in cfg.statuses]
        tenors = self.tenors
        vols, skews = atm_vol_skew_at_tenors(
            [s.t for s in used], [s.atm_vol for s in used], [s.atm_skew for s in used],
            [s.forward for s in used], [d / DAYS_PER_YEAR for d in tenors])
        out: dict[float, Dynamics] = {}
        added = key.add(tenors, obs, surface.exchange_ts_ms, cfg)
        for days, vol, skew, fresh in zip(tenors, vols, skews, added, strict=True):
            if fresh or days not in key.fits:
                key.fits[days] = fixed_strike_fit(key.sums[days])
            if math.isfinite(vol):
                out[days] = self._dynamics(key.fits[days], days, vol, skew)
        main = out.get(cfg.tenor_days)
        if main is None:
            return None
        buckets = [out[d] for d in cfg.bucket_days if d in out]
        return msgspec.structs.replace(main, by_expiry=buckets)

    def _dynamics(self, fit: FixedStrikeFit, days: float, vol: float, skew: float) -> Dynamics:
        cfg = self.config
        regime = classify_regime(fit.ssr, fit.ssr_low, fit.ssr_high, fit.n,
                                 min_obs=cfg.min_obs, max_halfwidth=cfg.max_ci_halfwidth)
        return Dynamics(ssr=fit.ssr, spot_vol_beta=fit.ssr * skew, r2=fit.r2, n_obs=fit.n,
                        regime=regime, tenor_days=days,
                        fixed_strike_beta=(fit.ssr - 1.0) * skew, ssr_low=fit.ssr_low,
                        ssr_high=fit.ssr_high, ssr_n_obs=fit.n, atm_vol=vol, atm_skew=skew)
