"""Typed values that cross layer boundaries: normalised quotes and surface updates.

Units: prices are undiscounted premiums in the quote currency (USD for BTC/ETH
options: Deribit's coin premiums are multiplied by ``underlying_price`` in the
decoder); vols are decimals (0.55); timestamps are integers since the epoch, UTC,
with the unit in the name. Missing values are NaN, never 0.0.

``SurfaceUpdate`` and ``SliceUpdate`` are the ``vol.surface.v1`` contract of
DESIGN.md: fields may be added with defaults, never renamed or changed in meaning.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Literal

import msgspec

from streamer.core.tenors import TenorView

SCHEMA_NAME = "vol.surface.v1"
SCHEMA_VERSION = 1

SliceStatus = Literal["warm", "cold", "fallback", "stale"]
ModelName = Literal["svi", "ssvi", "sabr", "heston"]
Regime = Literal["sticky_strike", "sticky_moneyness", "local_vol", "unknown"]


@lru_cache(maxsize=4096)  # a few dozen expiries, formatted every batch
def expiry_iso(ts_ms: int) -> str:
    """An expiry as the contract writes it (``SliceUpdate.expiry``): ISO 8601 UTC, seconds."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Quote(msgspec.Struct, frozen=True, gc=False):
    """One option's latest top of book, normalised across venues.

    The decoders build Quotes positionally, in field order: with 17 fields, keyword
    construction costs about 1 µs, more than all the rest of normalising a message.
    Everyone else passes keywords. ``gc=False``: a Quote holds only numbers and
    strings, so it can never be part of a reference cycle.
    """

    venue: str
    underlying: str
    instrument: str
    expiry_ts_ms: int
    strike: float
    is_call: bool
    bid_price: float
    ask_price: float
    underlying_price: float
    index_price: float
    exchange_ts_ms: int
    received_ts_ns: int
    bid_size: float = float("nan")
    ask_size: float = float("nan")
    bid_iv: float = float("nan")
    ask_iv: float = float("nan")
    mark_iv: float = float("nan")


class VenueVolIndex(msgspec.Struct, frozen=True, kw_only=True):
    """A venue's own published implied-vol index (Deribit's DVOL), decimal vol."""

    venue: str
    underlying: str
    index_name: str
    vol: float
    exchange_ts_ms: int
    received_ts_ns: int


class Dynamics(msgspec.Struct, frozen=True, kw_only=True):
    """Smile-dynamics estimates at the reference tenor (docs/dynamics.md).

    ``ssr`` is the skew stickiness ratio with its 95% interval ``ssr_low``..``ssr_high``,
    from the fixed-strike regression of ``n_obs`` instrument observations (decayed
    count; ``ssr_n_obs`` the same) with R² ``r2``; ``spot_vol_beta`` is
    d sigma_ATM / d ln S, ``ssr * atm_skew``; ``fixed_strike_beta`` is
    d sigma(K fixed) / d ln S at the money, ``(ssr - 1) * atm_skew``. ``by_expiry`` repeats the
    estimates at other tenors (``tenor_days``), each with an empty ``by_expiry``.
    """

    ssr: float
    spot_vol_beta: float
    r2: float
    n_obs: int
    regime: Regime
    tenor_days: float = 30.0
    fixed_strike_beta: float = float("nan")
    ssr_low: float = float("nan")
    ssr_high: float = float("nan")
    ssr_n_obs: int = 0
    atm_vol: float = float("nan")
    atm_skew: float = float("nan")
    by_expiry: list[Dynamics] = msgspec.field(default_factory=list)


class TenorDynamicsState(msgspec.Struct, frozen=True, kw_only=True):
    """The smile-dynamics estimator's memory at one tenor: the weighted sums of its
    fixed-strike regression (``core.dynamics.FixedStrikeSums``) as of ``updated_ts_ms``."""

    tenor_days: float
    sxx: float = 0.0
    sxy: float = 0.0
    syy: float = 0.0
    #: observations in the sums (decayed)
    n: float = 0.0
    #: observations ever taken
    count: int = 0
    updated_ts_ms: int = 0


class InstrumentMark(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """An instrument's last counted quote: the start of its next observation."""

    instrument: str
    iv: float
    log_forward: float
    #: variance of ``iv`` (its bid/ask half spread in vol, squared)
    variance: float
    exchange_ts_ms: int


class DynamicsState(msgspec.Struct, frozen=True, kw_only=True):
    """What restores one key's smile dynamics after a restart or a rebalance: the
    ``vol.dynamics.v1`` message (compacted, keyed ``venue:underlying``)."""

    schema: str = "vol.dynamics.v1"
    venue: str
    underlying: str
    #: the surface ``seq`` and ``exchange_ts_ms`` this state is as of
    seq: int
    exchange_ts_ms: int
    tenors: list[TenorDynamicsState] = msgspec.field(default_factory=list)
    instruments: list[InstrumentMark] = msgspec.field(default_factory=list)

    @property
    def key(self) -> str:
        """``venue:underlying``, the message key."""
        return f"{self.venue}:{self.underlying}"


class SliceUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """One expiry of a published surface."""

    expiry: str
    expiry_ts_ms: int
    t: float
    forward: float
    params: dict[str, float]
    atm_vol: float
    atm_skew: float
    rr25: float
    bf25: float
    rmse_vol: float
    n_quotes: int
    status: SliceStatus
    butterfly_free: bool
    calendar_free: bool
    #: min over the quoted k range of Durrleman's g(k) (>= 0: no butterfly arbitrage)
    butterfly_margin: float = float("nan")
    #: min over the k range quoted in both of w(k, t) - w(k, t_previous) (>= 0: no
    #: calendar arbitrage); NaN for the first expiry
    calendar_margin: float = float("nan")
    #: d2 sigma / d k2 at k = 0 (per unit of log-moneyness squared)
    atm_curvature: float = float("nan")
    #: 10-delta risk reversal and butterfly, decimal vol (definitions as rr25, bf25)
    rr10: float = float("nan")
    bf10: float = float("nan")
    #: median over the quotes used of (ask IV - bid IV) / 2, decimal vol: the market's
    #: error bar, to read ``rmse_vol`` against (docs/dynamics.md, "Slice analytics")
    half_spread_vol: float = float("nan")
    #: RMS over the quotes used of (model IV - mid IV) / (distance from the mid IV to
    #: the bid or ask IV on the model's side); below 1: the fit stays within the spread
    rmse_half_spreads: float = float("nan")
    #: share of the quotes used whose model IV lies within [bid IV, ask IV]
    within_spread_fraction: float = float("nan")
    #: SVI jump-wings ``v``, ``psi``, ``p``, ``c``, ``v_tilde`` (Gatheral 2004): exact for
    #: SVI slices, read off the smile for the other models (streamer.core.jump_wings)
    jw: dict[str, float] = msgspec.field(default_factory=dict)
    #: standard errors of ``atm_vol`` (decimal vol) and of each of ``params``, from the
    #: fit's Jacobian with the quotes' half spreads as their noise (core.fit_errors)
    atm_vol_se: float = float("nan")
    params_se: dict[str, float] = msgspec.field(default_factory=dict)
    #: log-moneyness ln(K/F) range of the quotes the fit used: beyond it the smile is
    #: extrapolated (NaN when unknown, e.g. a slice seeded from a read-back surface)
    k_min: float = float("nan")
    k_max: float = float("nan")
    #: the solver's outcome of the fit behind the slice: ``converged``, or ``max_iter``
    #: (stopped at its iteration cap before its tolerance: usable, not a converged fit)
    fit_status: str = "converged"
    #: the model whose ``params`` these are when it is not the surface's ``model``: a
    #: surface model's expiry it could not fit, fitted on its own by the per-slice
    #: fallback (``svi``); empty: the surface's model. Evaluate with :meth:`model_of`.
    model: str = ""
    #: why the slice is not a fresh fit of the surface's model: the refusal of its fit
    #: (``rmse_too_high``, ``atm_off_market``, ``fit_failed``; then ``status`` says what
    #: was published instead: a fallback model's fit, or the last good one kept) or
    #: ``too_few_quotes`` (a ``stale`` slice); empty for a fresh fit
    fallback_reason: str = ""

    def model_of(self, surface_model: str) -> str:
        """The model that evaluates ``params`` on a surface of ``surface_model``."""
        return self.model or surface_model


class VarianceIndex(msgspec.Struct, frozen=True, kw_only=True):
    """Model-free implied vol at ``tenor_days`` by the Cboe VIX method as Deribit's DVOL
    applies it (streamer.core.variance_index), from the market's own quotes.

    ``near_expiry``/``next_expiry`` are the two expiries interpolated (ISO-8601 UTC),
    ``n_strikes`` the strikes used in both, ``model_vol`` the same integral on the
    fitted surface over a wide strike range (NaN where either expiry is not fitted):
    the gap between the two is what the wings beyond the listed strikes add.
    """

    tenor_days: float
    vol: float
    near_expiry: str
    next_expiry: str
    n_strikes: int
    model_vol: float = float("nan")
    #: the venue's own index at the same tenor (Deribit's DVOL), latest value received
    #: up to this surface's ``exchange_ts_ms``, and its exchange time; NaN and 0 without
    venue_vol: float = float("nan")
    venue_vol_ts_ms: int = 0


class SurfaceUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """One whole, consistent surface for one ``venue:underlying`` key."""

    schema_version: int = SCHEMA_VERSION
    venue: str
    underlying: str
    model: ModelName
    seq: int
    exchange_ts_ms: int
    received_ts_ns: int
    published_ts_ns: int
    spot: float
    params: dict[str, float]
    slices: list[SliceUpdate]
    dynamics: Dynamics | None = None
    #: constant-maturity views (``analytics.tenor_days``), ascending; ``extrapolated``
    #: where the tenor is not inside the listed expiries
    tenors: list[TenorView] = msgspec.field(default_factory=list)
    variance_index: VarianceIndex | None = None

    @property
    def key(self) -> str:
        """Kafka message key, ``<venue>:<underlying>``."""
        return f"{self.venue}:{self.underlying}"


class InstrumentGreeks(msgspec.Struct, frozen=True, kw_only=True):
    """One option's vol and deltas on a published surface (the greeks topic).

    Deltas are ``dV/dF`` of the undiscounted Black-76 price at the surface's forward
    and vol: under the measured smile dynamics (NaN until an SSR is published), with
    each strike's vol fixed (sticky strike) and with each moneyness's vol fixed.
    """

    venue: str
    underlying: str
    instrument: str
    expiry_ts_ms: int
    strike: float
    is_call: bool
    forward: float
    vol: float
    delta_measured: float
    delta_sticky_strike: float
    delta_sticky_moneyness: float
    vega: float
    gamma: float
    surface_seq: int
    exchange_ts_ms: int
