"""Random raw SVI slices for the C kernels' bit-for-bit tests against their numpy paths."""

from __future__ import annotations

import numpy as np

from streamer.core.models.svi import SVIParams


def random_raw_svi(rng: np.random.Generator, n: int, negative_share: float = 0.0
                   ) -> tuple[list[SVIParams], np.ndarray]:
    """``n`` slices from quiet to wild: an hour to five years, ATM vols 5-300 %, |rho| to
    0.999, steep wings; with ``negative_share``, that share with variance below zero
    somewhere (no vol there). Returns the slices and their years to expiry."""
    t = np.exp(rng.uniform(np.log(1 / 365 / 24), np.log(5.0), n))
    atm = rng.uniform(0.05, 3.0, n)
    b = np.exp(rng.uniform(np.log(1e-3), np.log(5.0), n)) * np.sqrt(t)
    rho = rng.uniform(-0.999, 0.999, n)
    sigma = np.exp(rng.uniform(np.log(1e-3), np.log(1.0), n)) * np.sqrt(t)
    m = rng.uniform(-0.5, 0.5, n) * np.sqrt(t)
    a = atm * atm * t - b * (rho * -m + np.hypot(m, sigma))
    if negative_share:
        a[rng.random(n) < negative_share] -= 0.05
    return [SVIParams(a=float(a[i]), b=float(b[i]), rho=float(rho[i]), m=float(m[i]),
                      sigma=float(sigma[i])) for i in range(n)], t
