"""Online smile-dynamics estimates per ``venue:underlying``, fed by published surfaces.

Each surface gives, at every tracked tenor, the ATM vol, skew and log forward
interpolated between its expiries (``core.dynamics.atm_at_tenor``). An *observation*
is the change from an anchor surface to the current one, taken once the log forward
has moved at least ``min_move`` since the anchor; the current surface then becomes the
anchor. Sampling by spot move rather than by update keeps the fit noise of the ATM vol
(fractions of a vol point) from swamping the signal (skew x move), and a quiet market
adds no observations, only waiting. The estimates use the last ``window`` observations.

The log forward at the tenor, not the index, is the spot variable: the smile is
centred on that forward, so a slice fitted to quotes a few seconds old is compared
with the forward of those same quotes. Over an observation d ln F = d ln S as long
as the basis is steady.
"""

from __future__ import annotations

import msgspec
import numpy as np
import numpy.typing as npt

from streamer.config import DynamicsConfig
from streamer.core.dynamics import AtmPoint, atm_at_tenors, classify_regime, estimate_dynamics
from streamer.types import Dynamics, DynamicsState, SurfaceUpdate, TenorDynamicsState

DAYS_PER_YEAR = 365.0


class _TenorState:
    """Anchor and the last ``window`` observations at one tenor (a ring buffer: OLS
    does not care about order)."""

    def __init__(self, window: int) -> None:
        self.anchor: AtmPoint | None = None
        self.obs = np.empty((3, window))  # rows: d ln F, d sigma_ATM, mean skew
        self.count = 0
        self.last: Dynamics | None = None

    def observe(self, point: AtmPoint, min_move: float, max_move: float) -> bool:
        """Add an observation when the forward has moved enough; True when one was added."""
        if self.anchor is None:
            self.anchor = point
            return False
        move = point.log_forward - self.anchor.log_forward
        if abs(move) > max_move:
            self.anchor = point
            return False
        if abs(move) < min_move:
            return False
        self.obs[:, self.count % self.obs.shape[1]] = (
            move, point.vol - self.anchor.vol, 0.5 * (point.skew + self.anchor.skew))
        self.count += 1
        self.anchor = point
        return True

    def window(self) -> npt.NDArray[np.float64]:
        """The stored observations, shape (3, n)."""
        return self.obs[:, :min(self.count, self.obs.shape[1])]

    def oldest_first(self) -> npt.NDArray[np.float64]:
        """The stored observations in the order they were taken."""
        size = self.obs.shape[1]
        if self.count <= size:
            return self.window()
        return np.roll(self.obs, -(self.count % size), axis=1)

    def to_state(self, days: float) -> TenorDynamicsState:
        """This tenor's memory as a message."""
        anchor = self.anchor or AtmPoint(float("nan"), float("nan"), float("nan"))
        dlnf, dvol, skew = (row.tolist() for row in self.oldest_first())
        return TenorDynamicsState(tenor_days=days, anchor_vol=anchor.vol,
                                  anchor_skew=anchor.skew,
                                  anchor_log_forward=anchor.log_forward, dlnf=dlnf,
                                  dvol=dvol, skew=skew, count=self.count)

    @classmethod
    def from_state(cls, state: TenorDynamicsState, window: int) -> _TenorState:
        """A tenor restored from its message; the last ``window`` observations kept."""
        restored = cls(window)
        rows = np.array([state.dlnf, state.dvol, state.skew], np.float64).reshape(3, -1)
        rows = rows[:, -window:]
        n = rows.shape[1]
        restored.obs[:, :n] = rows  # oldest first, so a full ring next overwrites column 0
        restored.count = n if n < window else -(-max(state.count, n) // window) * window
        if np.isfinite(state.anchor_log_forward):
            restored.anchor = AtmPoint(state.anchor_vol, state.anchor_skew,
                                       state.anchor_log_forward)
        return restored


class DynamicsTracker:
    """Rolling spot-vol beta, SSR and regime for every ``venue:underlying``."""

    def __init__(self, config: DynamicsConfig | None = None) -> None:
        self.config = config or DynamicsConfig()
        self._states: dict[str, dict[float, _TenorState]] = {}

    def reset(self, key: str | None = None) -> None:
        """Forget one key's history (``venue:underlying``), or every key's."""
        if key is None:
            self._states.clear()
        else:
            self._states.pop(key, None)

    def state(self, surface: SurfaceUpdate) -> DynamicsState | None:
        """The memory of ``surface``'s key as of that surface (None before its first)."""
        states = self._states.get(surface.key)
        if not states:
            return None
        return DynamicsState(venue=surface.venue, underlying=surface.underlying,
                             seq=surface.seq, exchange_ts_ms=surface.exchange_ts_ms,
                             tenors=[s.to_state(days) for days, s in sorted(states.items())])

    def restore(self, state: DynamicsState) -> None:
        """Continue a key from its published memory (after a restart or a rebalance).

        Tenors no longer configured are ignored; the next surface's estimate uses the
        restored observations.
        """
        tenors = {self.config.tenor_days, *self.config.bucket_days}
        self._states[state.key] = {
            s.tenor_days: _TenorState.from_state(s, self.config.window)
            for s in state.tenors if s.tenor_days in tenors}

    def update(self, surface: SurfaceUpdate) -> Dynamics | None:
        """Feed one surface; the estimates at the reference tenor with ``by_expiry`` buckets.

        None when the surface's usable expiries do not bracket the reference tenor.
        """
        cfg = self.config
        states = self._states.setdefault(surface.key, {})
        rows = [(s.t, s.atm_vol, s.atm_skew, s.forward) for s in surface.slices
                if s.status in cfg.statuses]
        table = np.array(rows, np.float64).reshape(-1, 4)
        tenors = list(dict.fromkeys((cfg.tenor_days, *cfg.bucket_days)))
        vols, skews, log_fs = atm_at_tenors(table[:, 0], table[:, 1], table[:, 2], table[:, 3],
                                            np.array(tenors) / DAYS_PER_YEAR)
        out: dict[float, Dynamics] = {}
        for days, vol, skew, log_f in zip(tenors, vols, skews, log_fs, strict=True):
            if not np.isfinite(vol):
                continue
            point = AtmPoint(float(vol), float(skew), float(log_f))
            state = states.setdefault(days, _TenorState(cfg.window))
            if state.observe(point, cfg.min_move, cfg.max_move) or state.last is None:
                state.last = self._estimate(state, days)
            out[days] = msgspec.structs.replace(state.last, atm_vol=point.vol,
                                                atm_skew=point.skew)
        main = out.get(cfg.tenor_days)
        if main is None:
            return None
        buckets = [out[d] for d in cfg.bucket_days if d in out]
        return msgspec.structs.replace(main, by_expiry=buckets)

    def _estimate(self, state: _TenorState, days: float) -> Dynamics:
        cfg = self.config
        dlnf, dvol, skew = state.window()
        est = estimate_dynamics(dlnf, dvol, skew, min_skew=cfg.min_skew)
        regime = classify_regime(est.ssr.slope, est.ssr_low, est.ssr_high, est.ssr.n,
                                 min_obs=cfg.min_obs, max_halfwidth=cfg.max_ci_halfwidth)
        return Dynamics(ssr=est.ssr.slope, spot_vol_beta=est.beta.slope, r2=est.beta.r2,
                        n_obs=est.beta.n, regime=regime, tenor_days=days,
                        fixed_strike_beta=est.fixed_strike_beta, ssr_low=est.ssr_low,
                        ssr_high=est.ssr_high, ssr_n_obs=est.ssr.n)
