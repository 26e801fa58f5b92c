"""Smile metrics on smiles whose answers are known independently.

References: the forward-delta conventions of Clark (2011), "Foreign Exchange Option
Pricing", ch. 3 (call delta ``N(d1)``, put delta ``N(d1) - 1``, RR and BF quoted on
delta strikes), with ``d1 = -k / (sigma sqrt t) + sigma sqrt t / 2``. For a flat smile
the metrics are trivial; for a linear smile ``sigma(k) = a + b k`` the delta condition
``d1 = z`` times ``sigma sqrt t`` is a quadratic in ``k`` solved by hand below, and
cross-checked with scipy's Brent root finder on the delta equation itself.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import msgspec
import numpy as np
import pytest
from scipy.optimize import brentq

from streamer.core import smile as smile_module
from streamer.core.models.svi import SVIModel, SVIParams, total_variance
from streamer.core.smile import FloatArray, SmileMetrics, VolOfK, smile_metrics

_N = NormalDist()


def _flat(level: float) -> VolOfK:
    return lambda k: np.full_like(np.asarray(k, np.float64), level)


def _linear(a: float, b: float) -> VolOfK:
    return lambda k: a + b * np.asarray(k, np.float64)


def _linear_delta_strike(a: float, b: float, t: float, n_d1: float) -> float:
    """k with N(d1(k)) = n_d1 on sigma(k) = a + b k, from the quadratic in k.

    -k / (sigma s) + sigma s / 2 = z  with s = sqrt t, times sigma s:
    (b^2 t / 2) k^2 + (a b t - 1 - z s b) k + (a^2 t / 2 - z s a) = 0.
    The root near the money is c / q (the other root lies near 2 / (b^2 t)).
    """
    z, s = _N.inv_cdf(n_d1), math.sqrt(t)
    qa, qb, qc = 0.5 * b * b * t, a * b * t - 1.0 - z * s * b, 0.5 * a * a * t - z * s * a
    q = -0.5 * (qb + math.copysign(math.sqrt(qb * qb - 4 * qa * qc), qb))
    k = qc / q
    assert a + b * k > 0.0
    return k


def _brent_delta_strike(a: float, b: float, t: float, n_d1: float) -> float:
    def excess(k: float) -> float:
        s = (a + b * k) * math.sqrt(t)
        return _N.cdf(-k / s + 0.5 * s) - n_d1

    lo, hi = -20.0, 20.0  # within where sigma(k) > 0
    if b > 0:
        lo = max(lo, -0.99 * a / b)
    elif b < 0:
        hi = min(hi, -0.99 * a / b)
    return float(brentq(excess, lo, hi, xtol=1e-15, rtol=1e-15))


@pytest.mark.parametrize(("level", "t"), [(0.6, 0.25), (0.05, 1.0 / 365), (1.5, 3.0)])
def test_flat_smile_has_level_atm_and_zero_skew_rr_bf(level: float, t: float) -> None:
    m = smile_metrics(_flat(level), t)
    assert m == SmileMetrics(atm_vol=level, atm_skew=0.0, atm_curvature=0.0, rr25=0.0,
                             bf25=0.0, rr10=0.0, bf10=0.0)


@pytest.mark.parametrize(("level", "t"), [(0.6, 0.25), (0.05, 1.0 / 365), (1.5, 3.0)])
def test_flat_svi_slice_has_level_atm_and_zero_skew_rr_bf(svi_metrics_path: str, level: float,
                                                          t: float) -> None:
    """Raw SVI with ``b = 0`` is flat: the same metrics through the SVI rows."""
    a = level * level * t
    rows = SVIModel().vol_rows([SVIParams(a=a, b=0.0, rho=0.0, m=0.0, sigma=0.1)], [t])
    m = smile_module.smile_metrics_rows(rows, [t])[0]
    assert m.atm_vol == pytest.approx(level, rel=1e-15)
    assert (m.atm_skew, m.atm_curvature, m.rr25, m.bf25, m.rr10, m.bf10) == (0.0,) * 6


@pytest.mark.parametrize(
    ("a", "b", "t"),
    [(0.65, -0.15, 0.25), (0.45, 0.08, 1.0 / 52), (0.8, -0.25, 1.0), (0.55, 0.1, 2.0)],
)
def test_linear_smile_matches_hand_computed_delta_strikes(a: float, b: float, t: float) -> None:
    m = smile_metrics(_linear(a, b), t)
    assert m.atm_vol == pytest.approx(a, rel=1e-15)
    assert m.atm_skew == pytest.approx(b, rel=1e-9)
    assert m.atm_curvature == pytest.approx(0.0, abs=1e-6)  # rounding / step^2 only
    for delta, rr, bf in [(0.25, m.rr25, m.bf25), (0.10, m.rr10, m.bf10)]:
        k_call = _linear_delta_strike(a, b, t, delta)
        k_put = _linear_delta_strike(a, b, t, 1.0 - delta)  # put delta -D: N(d1) = 1 - D
        assert k_call == pytest.approx(_brent_delta_strike(a, b, t, delta), abs=1e-12)
        assert k_put == pytest.approx(_brent_delta_strike(a, b, t, 1.0 - delta), abs=1e-12)
        # RR = b (k_call - k_put); BF = b (k_call + k_put) / 2 on a linear smile.
        assert rr == pytest.approx(b * (k_call - k_put), abs=1e-10)
        assert bf == pytest.approx(0.5 * b * (k_call + k_put), abs=1e-10)


def test_downward_skew_has_negative_risk_reversal() -> None:
    m = smile_metrics(_linear(0.6, -0.2), 0.5)
    assert m.atm_skew < 0
    assert m.rr25 < 0
    assert m.rr10 < m.rr25


def test_quadratic_smile_curvature_and_positive_butterfly() -> None:
    """sigma(k) = a + c k^2: curvature 2c, BF = c (k_call^2 + k_put^2) / 2 > 0."""
    a, c, t = 0.5, 0.3, 0.5
    m = smile_metrics(lambda k: a + c * np.asarray(k) ** 2, t)
    assert m.atm_skew == pytest.approx(0.0, abs=1e-9)
    assert m.atm_curvature == pytest.approx(2 * c, rel=1e-6)
    assert m.bf25 > 0
    assert m.bf10 > m.bf25


def test_high_total_vol_delta_strikes_beyond_three_are_found() -> None:
    """sigma sqrt t ~ 1.7 puts the 10-delta call near k = 3.6, past the old [-3, 3] bracket."""
    a, b, t = 1.2, -0.05, 2.0
    m = smile_metrics(_linear(a, b), t)
    k_call = _linear_delta_strike(a, b, t, 0.10)
    k_put = _linear_delta_strike(a, b, t, 0.90)
    assert k_call > 3.0
    assert m.rr10 == pytest.approx(b * (k_call - k_put), abs=1e-10)
    assert m.bf10 == pytest.approx(0.5 * b * (k_call + k_put), abs=1e-10)


# -- the Newton path against the bisection it replaces ------------------------------------------

_DELTAS = np.array([0.25, 0.10])


def _svi_vol(p: SVIParams, t: float) -> VolOfK:
    return lambda k: np.sqrt(np.maximum(total_variance(np.asarray(k, np.float64), p), 0.0) / t)


def _random_svi(rng: np.random.Generator) -> tuple[SVIParams, float]:
    t = float(np.exp(rng.uniform(np.log(1 / 365), np.log(2.0))))
    atm = rng.uniform(0.3, 1.5)
    b = rng.uniform(0.01, 0.6) * np.sqrt(t)
    rho = rng.uniform(-0.9, 0.9)
    sigma = rng.uniform(0.02, 0.5) * np.sqrt(t)
    m = rng.uniform(-0.2, 0.2) * np.sqrt(t)
    w0 = atm * atm * t
    a = w0 - b * (rho * (-m) + np.hypot(m, sigma))
    return SVIParams(a=a, b=b, rho=rho, m=m, sigma=sigma), t


def _solver_inputs(vol: VolOfK, t: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    sqrt_t = np.sqrt(np.array([t]))
    s_atm = np.asarray(vol(np.zeros(1)), np.float64) * sqrt_t
    return sqrt_t, s_atm, smile_module._half_bracket(s_atm, _DELTAS)


def _newton(vol: VolOfK, t: float) -> FloatArray | None:
    """One smile's Newton strikes (calls then puts), None where it did not settle."""
    sqrt_t, s_atm, half = _solver_inputs(vol, t)
    k, settled = smile_module._newton_delta_strikes(vol, sqrt_t, s_atm, _DELTAS, half)
    return k[0] if settled[0] else None


def _bisect(vol: VolOfK, t: float) -> tuple[FloatArray, FloatArray]:
    sqrt_t, _, half = _solver_inputs(vol, t)
    k = smile_module._bisect_delta_strikes(vol, sqrt_t, _DELTAS, half)[0]
    return k[:2], k[2:]


def _strikes(vol: VolOfK, t: float) -> tuple[FloatArray, FloatArray]:
    sqrt_t, s_atm, _ = _solver_inputs(vol, t)
    k = smile_module._delta_strikes(vol, sqrt_t, s_atm, _DELTAS)[0]
    return k[:2], k[2:]


def test_newton_delta_strikes_equal_the_bisection_on_random_svi_smiles() -> None:
    rng = np.random.default_rng(13)
    newton_used = 0
    for _ in range(300):
        p, t = _random_svi(rng)
        vol = _svi_vol(p, t)
        newton = _newton(vol, t)
        bis_call, bis_put = _bisect(vol, t)
        if newton is None:
            continue
        newton_used += 1
        assert newton[:2] == pytest.approx(bis_call, abs=1e-9)
        assert newton[2:] == pytest.approx(bis_put, abs=1e-9)
    assert newton_used >= 280  # Newton is the path, the bisection the exception


@pytest.mark.parametrize(("a", "b", "t"), [(0.65, -0.15, 0.25), (1.2, -0.05, 2.0),
                                           (0.45, 0.08, 1.0 / 52)])
def test_newton_meets_the_hand_computed_linear_strikes(a: float, b: float, t: float) -> None:
    k = _newton(_linear(a, b), t)
    assert k is not None
    for i, n_d1 in enumerate([0.25, 0.10, 0.75, 0.90]):
        assert k[i] == pytest.approx(_linear_delta_strike(a, b, t, n_d1), abs=1e-12)


def test_a_smile_without_delta_strikes_in_reach_falls_back_to_the_bisection() -> None:
    """A smile whose total vol grows faster than |k| (d1 never reaches 10-delta on the
    right): Newton gives up and the metrics are the bisection's, bracket edge and all."""
    def wild(k: FloatArray) -> FloatArray:
        return 0.5 + 3.0 * np.maximum(np.asarray(k, np.float64), 0.0) ** 2

    assert _newton(wild, 1.0) is None
    call, put = _strikes(wild, 1.0)
    ref_call, ref_put = _bisect(wild, 1.0)
    np.testing.assert_array_equal(call, ref_call)
    np.testing.assert_array_equal(put, ref_put)


def test_a_nan_smile_falls_back_to_the_bisection() -> None:
    def nan_vol(k: FloatArray) -> FloatArray:
        return np.full(np.shape(k), np.nan)

    assert _newton(nan_vol, 0.5) is None


def test_many_smiles_in_one_pass_equal_each_smile_alone() -> None:
    """``smile_metrics_rows`` is the same computation row by row: random SVI smiles mixed
    with one whose 10-delta call is out of reach (its row takes the bisection) and one
    with no vols at all, each row equal to ``smile_metrics`` of that smile alone."""
    rng = np.random.default_rng(29)
    smiles = [_random_svi(rng) for _ in range(12)]
    vols: list[VolOfK] = [_svi_vol(p, t) for p, t in smiles]
    ts = [t for _, t in smiles]

    def wild(k: FloatArray) -> FloatArray:
        return 0.5 + 3.0 * np.maximum(np.asarray(k, np.float64), 0.0) ** 2

    vols[3], ts[3] = wild, 1.0
    vols[7] = lambda k: np.full(np.shape(k), np.nan)

    def rows(k: FloatArray) -> FloatArray:
        return np.stack([vol(k[i]) for i, vol in enumerate(vols)])

    together = smile_module.smile_metrics_rows(rows, ts)
    alone = [smile_metrics(vol, t) for vol, t in zip(vols, ts, strict=True)]
    for got, want in zip(together, alone, strict=True):
        np.testing.assert_array_equal(np.array(list(msgspec.structs.astuple(got))),
                                      np.array(list(msgspec.structs.astuple(want))))
    assert math.isnan(together[7].atm_vol)
    assert math.isfinite(together[3].rr25)


def test_svi_rows_give_the_metrics_of_the_same_smiles_as_callables(svi_metrics_path: str) -> None:
    """A model's SVI rows (the kernel where built) against the same smiles behind a plain
    callable (always numpy): Newton rows bit for bit, the rest within the bisection's
    last bracket."""
    rng = np.random.default_rng(31)
    smiles = [_random_svi(rng) for _ in range(40)]
    params, ts = [p for p, _ in smiles], [t for _, t in smiles]
    rows = SVIModel().vol_rows(params, ts)
    got = smile_module.smile_metrics_rows(rows, ts)
    want = smile_module.smile_metrics_rows(lambda k: rows(k), ts)
    np.testing.assert_allclose([list(msgspec.structs.astuple(m)) for m in got],
                               [list(msgspec.structs.astuple(m)) for m in want],
                               rtol=0, atol=1e-10)
