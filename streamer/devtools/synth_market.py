"""The synthetic market behind ``streamer synth``: instruments, true smiles, spot path.

True smiles are SSVI slices (Gatheral & Jacquier 2014) written as raw SVI: with one
``rho``, the power-law ``phi(theta) = eta / (theta^gamma (1 + theta)^(1 - gamma))``,
``eta (1 + |rho|) <= 2`` and a non-decreasing ATM total variance ``theta(t)``, the
surface is free of butterfly and calendar arbitrage by construction. Shapes follow
the real Deribit BTC/ETH chains in shared/data/real: ATM vols about 0.45–0.65 with
higher short-dated vol, a put skew, and strong curvature at the short end.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

YEAR_MS = 365.0 * 86_400_000.0
MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]


@dataclass(frozen=True)
class UnderlyingSpec:
    """How one underlying's market is generated."""

    name: str
    spot: float
    annual_vol: float
    basis: float
    atm_long: float
    atm_short_boost: float
    rho: float
    eta: float
    gamma: float
    expiry_days: tuple[int, ...]
    strike_steps: tuple[float, ...]


#: Smile dynamics of the synthetic worlds: each smile is read at ``k + ssr * ln(S / S0)``
#: (``k = ln(K/F)``, ``S0`` the spec's spot), so the skew stickiness ratio is exactly
#: ``ssr``: 0 sticky moneyness (the default, and the bundled sample), 1 sticky strike
#: (a fixed strike's vol never moves), 2 local-vol-like (docs/dynamics.md).
WORLDS = {"sticky_moneyness": 0.0, "sticky_strike": 1.0, "local_vol": 2.0}
DEFAULT_WORLD = "sticky_moneyness"

SPECS = {
    "BTC": UnderlyingSpec("BTC", 95_000.0, 0.55, 0.08, 0.52, 0.14, -0.22, 1.1, 0.45,
                          (1, 2, 3, 7, 14, 28, 63, 91, 119, 210, 301),
                          (500, 1000, 1000, 2000, 2000, 5000, 5000, 5000, 10000, 10000, 10000)),
    "ETH": UnderlyingSpec("ETH", 3_500.0, 0.70, 0.07, 0.62, 0.16, -0.15, 1.0, 0.45,
                          (1, 2, 7, 14, 28, 63, 91, 119, 210),
                          (25, 25, 50, 50, 100, 100, 200, 200, 200)),
}


@dataclass(frozen=True)
class Expiry:
    """One expiry with its true raw-SVI smile (total variance in k = ln(K/F))."""

    expiry_ts_ms: int
    label: str
    svi: dict[str, float]


def expiry_label(ts_ms: int) -> str:
    """Deribit's date code: day without zero padding, e.g. ``6DEC24``."""
    d = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    return f"{d.day}{MONTHS[d.month - 1]}{d.year % 100:02d}"


def atm_total_variance(spec: UnderlyingSpec, t: float) -> float:
    """theta(t): ATM total variance, non-decreasing in t for these parameters."""
    vol = spec.atm_long + spec.atm_short_boost * np.exp(-t / 0.05)
    return float(vol * vol * t)


def ssvi_as_raw_svi(theta: float, rho: float, eta: float, gamma: float) -> dict[str, float]:
    """The SSVI slice with ATM total variance theta, as raw SVI parameters."""
    phi = eta / (theta**gamma * (1.0 + theta) ** (1.0 - gamma))
    return {"a": 0.5 * theta * (1.0 - rho * rho), "b": 0.5 * theta * phi, "rho": rho,
            "m": -rho / phi, "sigma": float(np.sqrt(1.0 - rho * rho) / phi)}


def expiries(spec: UnderlyingSpec, start_ts_ms: int) -> list[Expiry]:
    """The underlying's expiries (08:00 UTC) with their true smiles."""
    day0 = datetime.fromtimestamp(start_ts_ms / 1000, tz=UTC).replace(
        hour=8, minute=0, second=0, microsecond=0)
    out = []
    for days in spec.expiry_days:
        ts = int(day0.timestamp() * 1000) + days * 86_400_000
        t = (ts - start_ts_ms) / YEAR_MS
        theta = atm_total_variance(spec, t)
        out.append(Expiry(ts, expiry_label(ts),
                          ssvi_as_raw_svi(theta, spec.rho, spec.eta, spec.gamma)))
    return out


def strikes(spec: UnderlyingSpec, index: int, t: float) -> npt.NDArray[np.float64]:
    """Listed strikes: a grid of the expiry's step covering about ±2.8 standard deviations."""
    step = spec.strike_steps[index]
    half_width = float(np.clip(2.8 * spec.atm_long * np.sqrt(t), 0.05, 0.9))
    lo = np.floor(spec.spot * np.exp(-half_width) / step) * step
    hi = np.ceil(spec.spot * np.exp(half_width) / step) * step
    grid = np.arange(lo, hi + step / 2, step)
    if grid.size > 20:  # Deribit lists sparser strikes far from the money
        offset = np.arange(grid.size) - int(np.argmin(np.abs(grid - spec.spot)))
        grid = grid[(np.abs(offset) <= 6) | (offset % 3 == 0)]
    return grid[grid > 0]


def spot_path(spec: UnderlyingSpec, rng: np.random.Generator, n_steps: int, dt_s: float
              ) -> npt.NDArray[np.float64]:
    """GBM spot sampled every ``dt_s`` seconds."""
    dt_y = dt_s / (365.0 * 86_400.0)
    shocks = rng.normal(0.0, spec.annual_vol * np.sqrt(dt_y), n_steps)
    return spec.spot * np.exp(np.cumsum(shocks - 0.5 * spec.annual_vol**2 * dt_y))
