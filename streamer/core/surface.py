"""A surface across expiries from its fitted slices: forward, total variance and vol at any (k, t).

Each expiry is a :class:`SurfaceSlice`: its model's parameters parsed once (from the
published ``name -> value`` map) and evaluated with that model's object, exactly
(:meth:`~streamer.core.models.protocol.SliceEvaluatorOf.exact`). ``k = ln(K / F)`` with
``F`` the slice forward, ``t`` the slice's years to expiry.

Forward ``F(t)``. Log-linear in ``t`` through ``(0, spot)`` and each usable slice's
``(t_i, F_i)``, exact at the nodes; before the first slice without a spot: flat
``F_1``; after the last: the last segment's carry rate continues.

Total variance ``w(k, t)`` at fixed log-moneyness ``k = ln(K / F(t))``:

- at a slice expiry: that slice's model, exactly;
- between slices ``t_i < t < t_j``: linear in ``t`` between ``w_i(k)`` and ``w_j(k)``.
  When each pair of neighbouring slices is calendar-free (``w_i(k) <= w_j(k)``) the
  result is non-decreasing in ``t`` at every ``k``;
- before the first slice: ``w_1(k) t / t_1`` (each k keeps the first slice's vol);
- after the last slice: ``w_n(k) + (t - t_n) w_n(0) / t_n`` (the smile's shape is
  kept and variance keeps accruing at the last slice's ATM variance rate).

The same rules hold for every model, Heston included (whose parameters define every
``t``): between expiries the slices are the surface, which keeps SVI, SABR, SSVI and
Heston surfaces comparable and each evaluation to two slice evaluations.

Slices that cannot be evaluated (``problem`` set) are skipped; a surface without any
usable slice raises ``ValueError`` on evaluation.

Quoted range. Each slice's fit used quotes over a range of log-moneyness; beyond it
the vol is the model's wing, not the market's. Between two slices the range is where
both were quoted; before the first and after the last, that slice's.

Smile-adjusted delta (docs/dynamics.md). The forward delta
``dV/dF = Δ_B76 + vega · (∂σ(K)/∂ln F) / F`` with ``∂σ(K)/∂ln F`` set by how the smile
moves with the forward: 0 under sticky strike, ``-σ'(k)`` under sticky moneyness and
``(SSR - 1) σ'(k)`` under the measured dynamics, where ``σ'(k) = ∂σ/∂k`` is the
surface's slope at the strike and time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from streamer.core.dynamics import fixed_strike_dvol, smile_adjusted_delta
from streamer.core.models.protocol import SliceEvaluator, vol_from_variance
from streamer.core.models.registry import model_for

FloatArray = npt.NDArray[np.float64]
SmileDynamics = Literal["measured", "sticky_strike", "sticky_moneyness"]
DAYS_PER_YEAR = 365.0
#: Step in k of the central difference for the smile slope d sigma / d k.
SLOPE_STEP = 1e-5


class SurfaceSlice:
    """One expiry, evaluable on its own: ``problem`` says why not (else None).

    A slice cannot be evaluated with a non-positive or non-finite ``t`` or forward, or
    missing or non-finite parameters; a model whose expiries share one parameter set
    (``one_parameter_set``: Heston) takes ``surface_params`` when the slice has none.
    """

    __slots__ = ("expiry_ts_ms", "forward", "k_range", "model", "params", "problem", "t")

    def __init__(self, model: str, params: Mapping[str, float], *, expiry_ts_ms: int,
                 t: float, forward: float, k_range: tuple[float, float],
                 surface_params: Mapping[str, float] | None = None) -> None:
        self.model: SliceEvaluator = model_for(model).exact()
        self.expiry_ts_ms, self.t, self.forward, self.k_range = expiry_ts_ms, t, forward, k_range
        raw = dict(params)
        if self.model.one_parameter_set and not raw and surface_params:
            raw = dict(surface_params)
        self.params: Any = None
        self.problem: str | None = None
        if not (np.isfinite(t) and t > 0):
            self.problem = f"t = {t}: expired or undefined"
        elif not (np.isfinite(forward) and forward > 0):
            self.problem = f"forward = {forward}"
        elif not all(np.isfinite(v) for v in raw.values()):
            self.problem = "non-finite parameter"
        else:
            try:
                self.params = self.model.from_dict(raw)
            except KeyError as exc:
                self.problem = f"missing {model} parameter {exc.args[0]!r}"

    def total_variance(self, k: FloatArray) -> FloatArray:
        """``w(k) = vol^2 t`` at log-moneyness ``k`` (finite, any shape)."""
        return self.model.total_variance(k, self.t, self._checked_params())

    def vol_k(self, k: FloatArray) -> FloatArray:
        """Decimal implied vol at log-moneyness ``k`` (finite, any shape)."""
        return self.model.vol(k, self.t, self._checked_params())

    def _checked_params(self) -> Any:
        if self.problem is not None:
            raise ValueError(f"slice {self.expiry_ts_ms} is not usable: {self.problem}")
        return self.params


class InterpolatedSurface:
    """The usable slices of one surface, interpolated across expiries (module docstring).

    ``label`` names the surface in errors (e.g. ``deribit:BTC seq 7``).
    """

    def __init__(self, slices: Sequence[SurfaceSlice], spot: float, label: str) -> None:
        self.slices = tuple(slices)
        self.label = label
        self.nodes = sorted((s for s in self.slices if s.problem is None), key=lambda s: s.t)
        self.ts = np.array([s.t for s in self.nodes], np.float64)
        fwd = [(s.t, s.forward) for s in self.nodes]
        if np.isfinite(spot) and spot > 0:
            fwd.insert(0, (0.0, spot))
        self._fwd_t = np.array([t for t, _ in fwd], np.float64)
        self._fwd = np.array([f for _, f in fwd], np.float64)

    def require_nodes(self) -> None:
        """``ValueError`` when no slice is usable."""
        if not self.nodes:
            raise ValueError(f"{self.label} has no usable slice "
                             f"({[s.problem for s in self.slices]})")

    def forward(self, t: FloatArray) -> FloatArray:
        """Forward price at years ``t`` (log-linear in ``t``, exact at the nodes)."""
        self.require_nodes()
        nt, lf = self._fwd_t, np.log(self._fwd)
        x = np.interp(t, nt, lf)
        if nt.size > 1:
            rate = (lf[-1] - lf[-2]) / (nt[-1] - nt[-2])
            x = np.where(t > nt[-1], lf[-1] + rate * (t - nt[-1]), x)
        f = np.exp(x)
        at = np.clip(np.searchsorted(nt, t), 0, nt.size - 1)
        result: FloatArray = np.where(nt[at] == t, self._fwd[at], f)  # exact at the nodes
        return result

    def total_variance(self, k: FloatArray, t: FloatArray) -> FloatArray:
        """``w(k, t)`` of ``k`` and ``t`` of one shape (the module docstring's rules)."""
        self.require_nodes()
        ts, n = self.ts, len(self.nodes)
        out = np.full(k.shape, np.nan)
        segment = np.searchsorted(ts, t, side="left")  # t == t_i falls in segment i
        for i in np.unique(segment):
            m = segment == i
            kk, tt = k[m], t[m]
            if i == 0:
                out[m] = self.nodes[0].total_variance(kk) * (tt / ts[0])
            elif i == n:
                out[m] = self.nodes[-1].total_variance(kk) + (tt - ts[-1]) * self._atm_rate
            else:
                lam = (tt - ts[i - 1]) / (ts[i] - ts[i - 1])
                hi = self.nodes[i].total_variance(kk)
                lo = self.nodes[i - 1].total_variance(kk)
                # lo + lam (hi - lo), clipped to [lo, hi]: no rounding step against the
                # direction of travel, so calendar-free slices stay monotone to the last bit
                between = np.clip(lo + lam * (hi - lo), np.fmin(lo, hi), np.fmax(lo, hi))
                out[m] = np.where(lam == 1.0, hi, between)
        return out

    def vol(self, k: FloatArray, t: FloatArray) -> FloatArray:
        """Decimal implied vol at ``k`` and ``t`` of one shape; NaN where ``w < 0``."""
        return vol_from_variance(self.total_variance(k, t), t)

    def vol_and_slope(self, k: FloatArray, t: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Implied vol and ``d vol / d k`` at fixed ``t`` (central difference in ``k``)."""
        slope: FloatArray = (self.vol(k + SLOPE_STEP, t) - self.vol(k - SLOPE_STEP, t)
                             ) / (2 * SLOPE_STEP)
        return self.vol(k, t), slope

    def k_bounds(self, t: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Quoted log-moneyness range at ``t``: both neighbours' where they meet."""
        self.require_nodes()
        lows = np.array([s.k_range[0] for s in self.nodes])
        highs = np.array([s.k_range[1] for s in self.nodes])
        right = np.clip(np.searchsorted(self.ts, t, side="left"), 0, len(self.nodes) - 1)
        left = np.clip(right - 1, 0, None)
        at_node = np.isin(t, self.ts) | (t <= self.ts[0]) | (t >= self.ts[-1])
        left = np.where(at_node, right, left)
        lo: FloatArray = np.fmax(lows[left], lows[right])
        hi: FloatArray = np.fmin(highs[left], highs[right])
        return lo, hi

    def outside(self, k: FloatArray, t: FloatArray) -> npt.NDArray[np.bool_]:
        """True where ``k`` is outside the quoted range at ``t`` (False against a NaN bound)."""
        lo, hi = self.k_bounds(t)
        out: npt.NDArray[np.bool_] = (k < lo) | (k > hi)
        return out

    def delta(self, strike: FloatArray, t: FloatArray, is_call: npt.NDArray[np.bool_],
              dynamics: SmileDynamics, ssr: FloatArray | None = None) -> FloatArray:
        """Smile-adjusted forward delta ``dV/dF`` of the undiscounted Black-76 price at
        ``F = forward(t)`` and ``σ = vol``; arguments of one shape, ``ssr`` (of that shape)
        needed for ``measured`` only."""
        F = self.forward(t)
        k = np.log(strike / F)
        vol, slope = self.vol_and_slope(k, t)
        if dynamics == "sticky_strike":
            dvol_dlnf = np.zeros(k.shape)
        elif dynamics == "sticky_moneyness":
            dvol_dlnf = -slope
        else:
            assert ssr is not None, "the measured dynamics need an SSR"
            dvol_dlnf = fixed_strike_dvol(slope, ssr)
        return smile_adjusted_delta(F, strike, t, vol, is_call, dvol_dlnf)

    @cached_property
    def _atm_rate(self) -> float:
        last = self.nodes[-1]
        return float(last.total_variance(np.zeros(1))[0]) / last.t


def nearest_ssr(t: FloatArray, estimates: Sequence[tuple[float, float]], label: str
                ) -> FloatArray:
    """Of ``(tenor_days, ssr)`` estimates, the finite SSR nearest each ``t`` in log tenor
    (a 14-day option takes the 7-day bucket, an 18-day one the 30-day bucket).

    Raises
    ------
    ValueError
        When no estimate has a finite SSR and a positive tenor.
    """
    usable = [(d, s) for d, s in estimates if np.isfinite(s) and d > 0]
    if not usable:
        raise ValueError(f"{label} publishes no measured SSR: use "
                         "dynamics='sticky_strike' or 'sticky_moneyness'")
    log_days = np.log([d for d, _ in usable])
    values = np.array([s for _, s in usable], np.float64)
    distance = np.abs(np.log(t * DAYS_PER_YEAR)[..., None] - log_days)
    result: FloatArray = values[np.argmin(distance, axis=-1)]
    return result
