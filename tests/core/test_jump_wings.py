"""SVI jump-wings against published values and a 50-digit reference.

References: Gatheral & Jacquier (2014), "Arbitrage-free SVI volatility surfaces",
Quantitative Finance 14(1), Example 3.1 (Axel Vogt's raw SVI slice at t = 1 and its
SVI-JW parameters, printed to 7 significant digits); the closed forms of Gatheral (2004),
"A parsimonious arbitrage-free implied volatility parameterization", evaluated here
in 50-digit decimal arithmetic as the exact reference.
"""

from __future__ import annotations

from decimal import Decimal, getcontext

import numpy as np
import pytest

from streamer.core.jump_wings import from_raw_svi, from_smile
from streamer.core.models import svi

VOGT = {"a": -0.0410, "b": 0.1331, "rho": 0.3060, "m": 0.3586, "sigma": 0.4153}
# Gatheral & Jacquier (2014), Example 3.1: (v, psi, p, c, v_tilde)
VOGT_JW = (0.01742625, -0.1752111, 0.6997381, 1.316798, 0.0116249)


def _decimal_jw(a: float, b: float, rho: float, m: float, sigma: float, t: float
                ) -> tuple[Decimal, ...]:
    getcontext().prec = 50
    a_, b_, r_, m_, s_, t_ = (Decimal(x) for x in (a, b, rho, m, sigma, t))
    root = (m_ * m_ + s_ * s_).sqrt()
    w = a_ + b_ * (-r_ * m_ + root)
    sw = w.sqrt()
    return (w / t_, b_ / 2 * (r_ - m_ / root) / sw, b_ * (1 - r_) / sw, b_ * (1 + r_) / sw,
            (a_ + b_ * s_ * (1 - r_ * r_).sqrt()) / t_)


def test_vogt_example_matches_the_paper() -> None:
    jw = from_raw_svi(t=1.0, **VOGT)
    got = (jw.v, jw.psi, jw.p, jw.c, jw.v_tilde)
    assert got == pytest.approx(VOGT_JW, rel=2e-6)


@pytest.mark.parametrize(("params", "t"), [
    (VOGT, 1.0),
    ({"a": 0.002, "b": 0.03, "rho": -0.45, "m": 0.05, "sigma": 0.12}, 0.05),
    ({"a": 0.04, "b": 0.2, "rho": 0.2, "m": -0.1, "sigma": 0.3}, 2.5),
])
def test_exact_to_1e_9_against_50_digits(params: dict[str, float], t: float) -> None:
    jw = from_raw_svi(t=t, **params)
    ref = _decimal_jw(t=t, **params)
    for got, want in zip((jw.v, jw.psi, jw.p, jw.c, jw.v_tilde), ref, strict=True):
        assert abs(got - float(want)) <= 1e-12 * max(1.0, abs(float(want)))


def test_read_off_the_smile_agrees_with_the_closed_form_for_svi() -> None:
    p = svi.SVIParams(**VOGT)
    t = 1.0
    read = from_smile(lambda k: svi.total_variance(k, p), t, -40.0, 40.0)
    exact = from_raw_svi(t=t, **VOGT)
    assert read.v == pytest.approx(exact.v, rel=1e-12)
    assert read.psi == pytest.approx(exact.psi, rel=1e-6)
    assert read.v_tilde == pytest.approx(exact.v_tilde, rel=1e-3)
    # far out, the chords approach the asymptotic wing slopes
    assert read.p == pytest.approx(exact.p, rel=2e-2)
    assert read.c == pytest.approx(exact.c, rel=2e-2)


def test_no_variance_at_the_money_gives_nan_slopes_not_an_error() -> None:
    jw = from_raw_svi(a=-1.0, b=0.1, rho=0.0, m=0.0, sigma=0.1, t=1.0)
    assert np.isnan(jw.psi)
    assert np.isnan(jw.p)
    assert np.isnan(jw.c)


def _numpy_jw(a: float, b: float, rho: float, m: float, sigma: float, t: float
              ) -> tuple[float, ...]:
    """The closed forms in numpy scalars (the implementation before Python floats)."""
    a_, b_, r_, m_, s_, t_ = (np.float64(x) for x in (a, b, rho, m, sigma, t))
    with np.errstate(all="ignore"):
        root = np.hypot(m_, s_)
        w = a_ + b_ * (-r_ * m_ + root)
        sw = np.sqrt(w) if w > 0 else np.nan
        return tuple(float(x) for x in (w / t_, 0.5 * b_ * (r_ - m_ / root) / sw,
                                         b_ * (1.0 - r_) / sw, b_ * (1.0 + r_) / sw,
                                         (a_ + b_ * s_ * np.sqrt(1.0 - r_ * r_)) / t_))


EDGES = [(0.04, 0.1, -0.3, 0.0, 0.0, 0.5),   # m = sigma = 0: m / root is 0 / 0
         (-0.2, 0.1, 0.2, 0.1, 0.1, 1.0),   # w < 0: no sqrt
         (0.04, 0.1, 1.2, 0.1, 0.2, 1.0),   # |rho| > 1: NaN v_tilde
         (0.04, 0.1, -0.3, 0.1, 0.2, 0.0),  # t = 0: infinities
         (0.0, 0.0, 0.0, 0.1, 0.2, 0.0),    # 0 / 0
         (float("nan"), 0.1, 0.0, 0.0, 0.1, 1.0),
         (0.04, 0.1, -0.3, 0.1, 0.2, -0.0)]


@pytest.mark.parametrize("seed", range(3))
def test_float_path_gives_numpy_bits(seed: int) -> None:
    rng = np.random.default_rng(seed)
    cases = [(float(rng.uniform(-0.05, 0.1)), float(rng.uniform(0, 0.5)),
              float(rng.uniform(-0.99, 0.99)), float(rng.normal(0, 0.3)),
              float(rng.uniform(0, 0.5)), float(rng.uniform(1e-4, 3))) for _ in range(500)]
    for case in cases + EDGES:
        got = tuple(from_raw_svi(*case).as_dict().values())
        np.testing.assert_array_equal(got, _numpy_jw(*case), err_msg=str(case))
