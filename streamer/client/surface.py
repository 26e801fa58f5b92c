"""A decoded ``vol.surface.v1`` message as a whole surface: vol(K, T) between and beyond expiries.

Times. ``t`` is in years (ACT/365, seconds-exact) from the surface's
``exchange_ts_ms``, the same clock the publisher used for each slice's ``t``. An
expiry is given as an ``int`` (epoch ms), an ISO-8601 ``str`` or a ``float`` (``t``
in years); numpy arrays follow their dtype (integer: epoch ms, float: years).

Forward ``F(t)`` and total variance ``w(k, t)`` between and beyond the expiries follow
the rules of :mod:`streamer.core.surface` (the interpolation lives there, shared with the
service's greeks): log-linear forwards through the spot and the slices' forwards, total
variance linear in ``t`` at fixed ``k = ln(K / F(t))`` between slices, each k's vol kept
before the first slice and the ATM variance rate continued after the last.

Slices that cannot be evaluated (see :class:`Slice`) are skipped; a surface without
any usable slice raises ``ValueError`` on evaluation.

Extrapolation in strike. Each slice's fit used quotes over a range of log-moneyness
(``k_min``..``k_max``); beyond it the vol is the model's wing, not the market's.
:meth:`Surface.quoted_range` gives that range in strikes at any expiry (between two
slices: where both were quoted; before the first and after the last: that slice's),
:meth:`Surface.extrapolated` says which strikes fall outside it, and
``vol(..., extrapolate=False)`` returns NaN there instead of the wing.

Smile-adjusted delta (:meth:`Surface.delta`; docs/dynamics.md). The forward delta
``dV/dF = Δ_B76 + vega · (∂σ(K)/∂ln F) / F`` with ``∂σ(K)/∂ln F`` set by how the smile
moves with the forward: 0 under sticky strike, ``-σ'(k)`` under sticky moneyness and
``(SSR - 1) σ'(k)`` under the measured dynamics, where ``σ'(k) = ∂σ/∂k`` is the
surface's slope at the strike and time and the SSR is the published estimate at the
tenor bucket nearest the expiry (:meth:`Surface.ssr`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

from streamer.client.slices import FloatArray, Slice
from streamer.core.models.protocol import vol_from_variance
from streamer.core.surface import InterpolatedSurface, SmileDynamics, nearest_ssr
from streamer.sinks.codec import Format, decode_surface
from streamer.types import ModelName, SurfaceUpdate

YEAR_MS = 365.0 * 86_400_000.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Expiry = int | float | str | npt.ArrayLike


class Surface:
    """Evaluable view of one :class:`~streamer.types.SurfaceUpdate` (see the module docstring)."""

    def __init__(self, update: SurfaceUpdate) -> None:
        self.update = update
        built = [Slice(s, update.model, update.params) for s in update.slices]
        self.slices: tuple[Slice, ...] = tuple(sorted(built, key=lambda s: s.expiry_ts_ms))
        self._nodes = sorted((s for s in self.slices if s.usable), key=lambda s: s.t)
        self._node_ms = {s.expiry_ts_ms: s.t for s in self._nodes}
        self._surface = InterpolatedSurface([s.node for s in self.slices], update.spot,
                                            f"{update.key} seq {update.seq}")

    @classmethod
    def decode(cls, data: bytes, fmt: Format = "json") -> Surface:
        """Decode one Kafka message value."""
        return cls(decode_surface(data, fmt))

    def __repr__(self) -> str:
        return (f"Surface({self.key}, seq={self.seq}, model={self.model}, "
                f"{len(self._nodes)}/{len(self.slices)} usable slices)")

    @property
    def venue(self) -> str:
        """Venue, e.g. ``deribit``."""
        return self.update.venue

    @property
    def underlying(self) -> str:
        """Underlying, e.g. ``BTC``."""
        return self.update.underlying

    @property
    def key(self) -> str:
        """Kafka key, ``<venue>:<underlying>``."""
        return self.update.key

    @property
    def model(self) -> ModelName:
        """``svi``, ``sabr``, ``ssvi`` or ``heston``."""
        return self.update.model

    @property
    def seq(self) -> int:
        """+1 per update of this key."""
        return self.update.seq

    @property
    def exchange_ts_ms(self) -> int:
        """As-of time: the batch's newest exchange timestamp, ms since the epoch."""
        return self.update.exchange_ts_ms

    @property
    def spot(self) -> float:
        """Index price."""
        return self.update.spot

    @property
    def expiries(self) -> tuple[int, ...]:
        """Expiries (epoch ms) of the usable slices, ascending."""
        return tuple(s.expiry_ts_ms for s in self._nodes)

    def slice(self, expiry: int | str) -> Slice:
        """The published slice of an expiry (epoch ms or ISO-8601); ``KeyError`` if absent."""
        ms = _iso_ms(expiry) if isinstance(expiry, str) else expiry
        for s in self.slices:
            if s.expiry_ts_ms == ms:
                return s
        raise KeyError(f"{self.key} has no slice expiring at {expiry!r}")

    def years(self, expiry: Expiry) -> FloatArray:
        """Years to expiry from ``exchange_ts_ms``; must be finite and > 0.

        Returns
        -------
        ndarray of float64, the shape of ``expiry`` (0-d for a scalar).
        """
        if isinstance(expiry, str):
            expiry = _iso_ms(expiry)
        raw = np.asarray(expiry)
        if raw.dtype.kind in "iu":
            ms = raw.astype(np.int64)
            t = (ms - self.exchange_ts_ms) / YEAR_MS
            for node_ms, node_t in self._node_ms.items():  # exactly the slice's own t
                t = np.where(ms == node_ms, node_t, t)
        elif raw.dtype.kind == "f":
            t = raw.astype(np.float64)
        else:
            raise TypeError(f"expiry must be epoch ms (int), years (float) or ISO-8601 (str), "
                            f"not {raw.dtype}")
        if not np.all(np.isfinite(t) & (t > 0)):
            raise ValueError("expiry must be finite and after the surface time (an int is "
                             "epoch ms, a float is years)")
        result: FloatArray = np.asarray(t, np.float64)
        return result

    def forward(self, expiry: Expiry) -> FloatArray:
        """Forward price at ``expiry`` (log-linear in ``t``); the shape of ``expiry``."""
        return self._forward(self.years(expiry))

    def total_variance(self, k: npt.ArrayLike, expiry: Expiry) -> FloatArray:
        """Total implied variance ``w(k, t)``.

        Parameters
        ----------
        k : array_like
            Log-moneyness ``ln(K / F(t))``, finite.
        expiry : int, float, str or array_like
            Epoch ms, years or ISO-8601; broadcast against ``k``.

        Returns
        -------
        ndarray of float64, the broadcast shape of ``k`` and ``expiry``.
        """
        kk = np.asarray(k, np.float64)
        if not np.all(np.isfinite(kk)):
            raise ValueError("log-moneyness must be finite")
        kk, tt = np.broadcast_arrays(kk, self.years(expiry))
        return self._surface.total_variance(kk, tt)

    def vol(self, strike: npt.ArrayLike, expiry: Expiry, *, extrapolate: bool = True
            ) -> FloatArray:
        """Decimal implied vol at absolute strikes and expiries.

        Parameters
        ----------
        strike : array_like
            Strikes in the underlying's quote currency, finite and > 0.
        expiry : int, float, str or array_like
            Epoch ms, years or ISO-8601; broadcast against ``strike`` (e.g.
            ``strike[:, None]`` with an expiry vector gives a strikes x expiries grid).
        extrapolate : bool
            False: NaN for strikes outside the quoted range (:meth:`extrapolated`).

        Returns
        -------
        ndarray of float64, the broadcast shape; NaN where the model has no value.
        """
        K = np.asarray(strike, np.float64)
        if not np.all(np.isfinite(K) & (K > 0)):
            raise ValueError("strikes must be finite and positive")
        K, t = np.broadcast_arrays(K, self.years(expiry))
        k = np.log(K / self._forward(t))
        result = vol_from_variance(self._surface.total_variance(k, t), t)
        if not extrapolate:
            result = np.where(self._surface.outside(k, t), np.nan, result)
        return result

    def quoted_range(self, expiry: Expiry) -> tuple[FloatArray, FloatArray]:
        """Lowest and highest strike inside the quotes behind the fits at ``expiry``.

        Between two slices the range both were quoted over; before the first and after
        the last slice that slice's. NaN where a slice's range is not published.
        """
        t = np.asarray(self.years(expiry), np.float64)
        lo, hi = self._surface.k_bounds(t)
        f = self._forward(t)
        return f * np.exp(lo), f * np.exp(hi)

    def extrapolated(self, strike: npt.ArrayLike, expiry: Expiry) -> npt.NDArray[np.bool_]:
        """True where ``vol(strike, expiry)`` is outside the quoted range (the model's
        wing, not the market's); False where the range is not published."""
        K = np.asarray(strike, np.float64)
        if not np.all(np.isfinite(K) & (K > 0)):
            raise ValueError("strikes must be finite and positive")
        K, t = np.broadcast_arrays(K, self.years(expiry))
        return self._surface.outside(np.log(K / self._forward(t)), t)

    def delta(self, strike: npt.ArrayLike, expiry: Expiry, is_call: npt.ArrayLike,
              dynamics: SmileDynamics = "measured") -> FloatArray:
        """Smile-adjusted forward delta ``dV/dF`` of options on this surface.

        Parameters
        ----------
        strike : array_like
            Strikes, finite and > 0.
        expiry : int, float, str or array_like
            Epoch ms, years or ISO-8601, as in :meth:`vol`.
        is_call : array_like of bool
            Calls (True) or puts; ``strike``, ``expiry`` and ``is_call`` broadcast.
        dynamics : {"measured", "sticky_strike", "sticky_moneyness"}
            How the smile moves with the forward: ``sticky_strike`` keeps each
            strike's vol (the Black-76 delta), ``sticky_moneyness`` keeps the vol of
            each ``k = ln(K/F)``, ``measured`` moves a strike's vol by
            ``(SSR - 1) σ'(k)`` per unit of ``ln F`` with the published SSR nearest the
            expiry (:meth:`ssr`; ``ValueError`` when the surface publishes none).

        Returns
        -------
        ndarray of float64, the broadcast shape
            ``dV/dF`` of the undiscounted Black-76 price at ``F = forward(expiry)``
            and ``σ = vol(strike, expiry)``; call minus put is 1 under every regime.
            Multiply by ``forward / spot`` for the delta to spot at a steady basis.
        """
        K = np.asarray(strike, np.float64)
        if not np.all(np.isfinite(K) & (K > 0)):
            raise ValueError("strikes must be finite and positive")
        if dynamics not in ("measured", "sticky_strike", "sticky_moneyness"):
            raise ValueError(f"unknown smile dynamics {dynamics!r}")
        K, t, call = np.broadcast_arrays(K, self.years(expiry), np.asarray(is_call, bool))
        self._surface.require_nodes()  # before the SSR: no usable slice is the first problem
        ssr = self._ssr(t) if dynamics == "measured" else None
        return self._surface.delta(K, t, call, dynamics, ssr)

    def ssr(self, expiry: Expiry) -> FloatArray:
        """The skew stickiness ratio :meth:`delta` uses for ``dynamics="measured"``.

        Of the published estimates (``dynamics`` and its ``by_expiry`` buckets) with a
        finite SSR, the one whose ``tenor_days`` is nearest the expiry in log tenor
        (a 14-day option takes the 7-day bucket, an 18-day one the 30-day bucket).

        Returns
        -------
        ndarray of float64, the shape of ``expiry``.

        Raises
        ------
        ValueError
            When the surface publishes no finite SSR.
        """
        return self._ssr(self.years(expiry))

    def _ssr(self, t: FloatArray) -> FloatArray:
        dyn = self.update.dynamics
        estimates = [] if dyn is None else [(d.tenor_days, d.ssr) for d in (dyn, *dyn.by_expiry)]
        return nearest_ssr(t, estimates, self._surface.label)

    def _forward(self, t: FloatArray) -> FloatArray:
        return self._surface.forward(t)


def _iso_ms(expiry: str) -> int:
    """Epoch ms of an ISO-8601 time; UTC unless it says otherwise."""
    try:
        when = datetime.fromisoformat(expiry)
    except ValueError as exc:
        raise ValueError(f"not an ISO-8601 expiry: {expiry!r}") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - _EPOCH) // timedelta(milliseconds=1)
