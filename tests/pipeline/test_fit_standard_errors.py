"""The fit errors of a batch of slices (analytics.fit_standard_errors_many) on raw SVI's
C path and its numpy path, and the half spreads they are scaled by."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from streamer.core import fit_errors
from streamer.core.models.registry import model_for
from streamer.core.models.svi import SVIParams
from streamer.pipeline.analytics import _MIN_HALF_SPREAD, _half_spreads, fit_standard_errors_many

NAN, INF = float("nan"), float("inf")


def test_half_spreads_floor_nan_and_cap_inf_as_nan_to_num_did() -> None:
    iv = np.array([0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
    bid = np.array([0.49, NAN, 0.5, NAN, -INF, 0.4, NAN, 0.45])
    ask = np.array([0.52, 0.53, 0.5, NAN, 0.6, INF, INF, 0.44])
    half = np.where(np.isfinite(bid), 0.5 * (ask - bid), ask - iv)
    with np.errstate(invalid="ignore"):
        want = np.maximum(np.nan_to_num(half, nan=_MIN_HALF_SPREAD), _MIN_HALF_SPREAD)
    np.testing.assert_array_equal(_half_spreads(iv, bid, ask), want)
    assert _half_spreads(iv, bid, ask)[5] == np.finfo(np.float64).max


def _batch(rng: np.random.Generator, sizes: list[int]) -> tuple[list[Any], ...]:
    """Random SVI slices of ``sizes`` quotes: params, t, k, mid, bid and ask IVs."""
    params: list[SVIParams] = []
    ts: list[float] = []
    ks, ivs, bids, asks = [], [], [], []
    model = model_for("svi")
    for n in sizes:
        p = SVIParams(a=rng.uniform(0.001, 0.01), b=rng.uniform(0.02, 0.2),
                      rho=rng.uniform(-0.7, 0.3), m=rng.uniform(-0.05, 0.05),
                      sigma=rng.uniform(0.05, 0.3))
        t = float(rng.uniform(0.01, 1.0))
        k = np.sort(rng.uniform(-0.5, 0.4, n))
        iv = model.vol(k, t, p) + rng.normal(0.0, 0.002, n)
        half = rng.uniform(0.001, 0.01, n)
        bid = np.where(rng.random(n) < 0.2, NAN, iv - half)  # some ask-only quotes
        params.append(p)
        ts.append(t)
        ks.append(k)
        ivs.append(iv)
        bids.append(bid)
        asks.append(iv + half)
    return params, ts, ks, ivs, bids, asks


@pytest.mark.skipif(fit_errors._NATIVE is None, reason="the C kernel was not built")
def test_the_c_path_gives_the_numpy_paths_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slices of 0-50 quotes: the same slices have errors, under the same parameter
    names, equal to rounding times the conditioning of J^T J (tests/core/
    test_fit_errors_native.py; a 6-quote slice's cond(J^T J) is ~1e8, hence 1e-7)."""
    batch = _batch(np.random.default_rng(8), [0, 3, 5, 6, 12, 30, 50, 9, 21])
    model = model_for("svi")
    native = fit_standard_errors_many(model, *batch)
    monkeypatch.setattr(fit_errors, "_NATIVE", None)
    reference = fit_standard_errors_many(model, *batch)
    for (atm, se), (want_atm, want_se) in zip(native, reference, strict=True):
        assert se.keys() == want_se.keys()
        if not se:
            continue
        if np.isnan(want_atm):
            assert np.isnan(atm)
            assert all(np.isnan(v) for v in se.values())
            continue
        assert atm == pytest.approx(want_atm, rel=1e-7)
        assert list(se.values()) == pytest.approx(list(want_se.values()), rel=1e-7)
    assert np.isnan(native[0][0])
    assert native[0][1] == {}  # no quotes: no names either
    assert all(np.isnan(a) for a, _ in native[1:3])  # fewer quotes than 6: no error bars
    assert all(np.isfinite(a) for a, _ in native[3:])
