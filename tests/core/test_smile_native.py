"""The C kernel of raw SVI smile metrics (``_svi_smile.c``) against the numpy path it
shadows (:func:`streamer.core.smile.metrics_table`), branch by branch: Newton settled,
the bisection fallback, NaN and negative variance, extreme skews, and the tenor blend
before the first expiry, on one, between and after the last.

Every operation is numpy's, in numpy's order, so the two agree bit for bit; only where
:mod:`streamer.core.special` falls back to scipy's ``ndtr`` may a bisection comparison
within an ulp of its target flip and move a strike within its last bracket (~1e-12 in k).
"""

from __future__ import annotations

import msgspec
import numpy as np
import numpy.typing as npt
import pytest

from streamer.core import smile, smile_rows, special
from streamer.core.models.svi import SVIModel, SVIParams, SVIVarianceRows, SVIVolRows, stack
from streamer.core.smile import FloatArray, VolRows
from streamer.core.smile_rows import Blend, BlendedRows
from streamer.core.tenors import tenor_views, variance_rows_of
from tests.core.svi_samples import random_raw_svi

NATIVE = smile_rows._NATIVE
needs_native = pytest.mark.skipif(NATIVE is None, reason="the C kernel was not built")
BoolArray = npt.NDArray[np.bool_]
BRACKET = 1e-10  # the bisection's last bracket, in vol: skew (< ~50) times ~2e-12 in k


def _native(rows: VolRows, t: FloatArray) -> FloatArray:
    table = smile_rows.native_metrics(rows, np.sqrt(t), smile._SETTINGS, smile._NEWTON_STEPS,
                                      smile._BISECTIONS)
    assert table is not None
    return table


def _settled(rows: VolRows, t: FloatArray) -> BoolArray:
    """Per smile, whether numpy's Newton settled (else the bisection decided)."""
    sqrt_t = np.sqrt(t)
    around = rows(np.broadcast_to(np.array([-smile._STEP, 0.0, smile._STEP]), (t.size, 3)))
    skew = (around[:, 2] - around[:, 0]) / (2 * smile._STEP)
    s_atm = around[:, 1] * sqrt_t
    half = smile._half_bracket(s_atm, smile._DELTAS)
    _, settled = smile._newton_delta_strikes(rows, sqrt_t, s_atm, smile._DELTAS, half,
                                             np.where(np.isfinite(skew), skew, 0.0) * sqrt_t)
    return settled


def _assert_agree(rows: VolRows, t: FloatArray) -> BoolArray:
    """The kernel equals numpy bit for bit (within the bisection's last bracket where
    scipy's ``ndtr`` stands in); returns which rows Newton settled."""
    got, want = _native(rows, t), smile.metrics_table(rows, np.sqrt(t))
    settled = _settled(rows, t)
    np.testing.assert_array_equal(got[settled], want[settled])
    np.testing.assert_array_equal(got[:, :3], want[:, :3])  # ATM, skew, curvature
    if special.NATIVE:
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(got[~settled], want[~settled], rtol=0, atol=BRACKET,
                               equal_nan=True)
    return settled


def _vol_rows(params: list[SVIParams], t: FloatArray) -> SVIVolRows:
    return SVIModel().vol_rows(params, t.tolist())


@needs_native
def test_random_slices_agree_on_both_branches() -> None:
    params, t = random_raw_svi(np.random.default_rng(131), 600)
    settled = _assert_agree(_vol_rows(params, t), t)
    assert settled.sum() > 400  # Newton is the path ...
    assert (~settled).sum() > 5  # ... and the bisection was exercised too


@needs_native
def test_extreme_skews_agree() -> None:
    """Steep one-sided wings at |rho| -> 1, a kink (sigma -> 0) and one-hour expiries."""
    t = np.array([1 / 8760, 1 / 365, 0.1, 1.0, 3.0, 0.5, 0.5, 0.02])
    params = [SVIParams(a=1e-5, b=0.02, rho=-0.999, m=0.0, sigma=1e-4),
              SVIParams(a=1e-4, b=0.05, rho=0.999, m=0.01, sigma=1e-3),
              SVIParams(a=0.01, b=2.0, rho=-0.99, m=0.0, sigma=0.01),
              SVIParams(a=0.1, b=3.0, rho=0.995, m=-0.2, sigma=0.05),
              SVIParams(a=2.0, b=1.5, rho=-0.999, m=0.5, sigma=0.1),
              SVIParams(a=0.0, b=10.0, rho=0.0, m=0.0, sigma=1e-6),
              SVIParams(a=0.05, b=0.0, rho=0.0, m=0.0, sigma=0.1),  # flat
              SVIParams(a=1e-6, b=5.0, rho=-1.0, m=0.0, sigma=0.0)]  # a kink, one wing flat
    _assert_agree(_vol_rows(params, t), t)


@needs_native
def test_nan_and_negative_variance_rows_agree() -> None:
    """No variance anywhere, none at the money (wings positive), NaN parameters, a
    failed reduced fit's zeros: all bisected, NaN where numpy has NaN."""
    t = np.array([0.1, 0.1, 0.25, 0.5, 0.3])
    params = [SVIParams(a=-1.0, b=0.01, rho=0.0, m=0.0, sigma=0.1),
              SVIParams(a=-0.05, b=0.2, rho=-0.3, m=0.0, sigma=0.1),
              SVIParams(a=float("nan"), b=0.1, rho=0.0, m=0.0, sigma=0.1),
              SVIParams(a=0.0, b=0.0, rho=0.0, m=0.0, sigma=0.0),
              SVIParams(a=0.02, b=0.1, rho=-0.4, m=0.0, sigma=0.1)]  # a good one among them
    settled = _assert_agree(_vol_rows(params, t), t)
    assert settled.tolist() == [False, False, False, False, True]
    assert np.isnan(_native(_vol_rows(params, t), t)[[0, 1, 2], 0]).all()


P1 = SVIParams(a=0.004, b=0.05, rho=-0.3, m=0.0, sigma=0.1)
P2 = SVIParams(a=0.012, b=0.09, rho=-0.25, m=0.02, sigma=0.15)
P3 = SVIParams(a=0.03, b=0.12, rho=-0.2, m=0.05, sigma=0.25)
TS = [10 / 365, 40 / 365, 120 / 365]
DAYS = [1.0, 3.0, 10.0, 25.0, 40.0, 60.0, 120.0, 200.0, 720.0]  # before, on, between, after


def _tenor_rows(rows: smile_rows.VarianceRows) -> tuple[BlendedRows, FloatArray]:
    from streamer.core.tenors import _plan

    t = np.array(DAYS) / 365
    t_cal = 1.02 * t  # a variance clock: vols read on the calendar
    slices = [lambda k, p=p: SVIModel().total_variance(k, 0.0, p) for p in (P1, P2, P3)]
    return BlendedRows(rows, _plan(t.tolist(), TS, slices), 1.0 / t_cal[:, None]), t_cal


@needs_native
def test_tenor_blends_agree_before_on_between_and_after_the_expiries() -> None:
    rows, t_cal = _tenor_rows(SVIVarianceRows(stack([P1, P2, P3])))
    assert rows.blend.scale[0] < 1.0  # before the first expiry
    assert rows.blend.extra[-1] > 0.0  # after the last
    assert _assert_agree(rows, t_cal).all()


@needs_native
def test_tenor_blends_of_wild_slices_agree() -> None:
    """Blends of random slices, NaN ones among them, on both branches; ``lam`` beyond
    [0, 1] so that the clip to the two slices' variances bites."""
    params, _ = random_raw_svi(np.random.default_rng(7), 40)
    params[5] = SVIParams(a=-1.0, b=0.01, rho=0.0, m=0.0, sigma=0.1)
    n = 200
    rng = np.random.default_rng(8)
    lo = rng.integers(0, len(params), n)
    blend = Blend(lo, np.minimum(lo + 1, len(params) - 1), rng.uniform(-0.5, 1.5, n),
                  rng.uniform(0.2, 1.0, n), rng.uniform(0.0, 0.05, n))
    t = np.exp(rng.uniform(np.log(1 / 365), np.log(3.0), n))
    rows = BlendedRows(SVIVarianceRows(stack(params)), blend, 1.0 / t[:, None])
    settled = _assert_agree(rows, t)
    assert settled.any()
    assert not settled.all()


@needs_native
@pytest.mark.parametrize("t_on_clock", [1.0, 1.02])
def test_tenor_views_are_the_numpy_views(monkeypatch: pytest.MonkeyPatch,
                                         t_on_clock: float) -> None:
    t_cal = [d / 365 for d in DAYS]
    t = [t_on_clock * x for x in t_cal]
    slices = [lambda k, p=p: SVIModel().total_variance(k, 0.0, p) for p in (P1, P2, P3)]
    args = (DAYS, t, t_cal, TS, [100.0, 101.0, 103.0], slices)
    native = tenor_views(*args, SVIModel().variance_rows([P1, P2, P3]))
    monkeypatch.setattr(smile_rows, "_NATIVE", None)
    numpy_path = tenor_views(*args, SVIModel().variance_rows([P1, P2, P3]))
    assert [msgspec.to_builtins(v) for v in native] == [msgspec.to_builtins(v)
                                                        for v in numpy_path]


def test_only_raw_svi_rows_take_the_kernel() -> None:
    """The one decision: a model's SVI rows and blends of SVI variance; nothing else."""
    t = np.array([0.1, 0.2])
    svi_rows = _vol_rows([P1, P2], t)
    generic = variance_rows_of([lambda k: SVIModel().total_variance(k, 0.0, P1)] * 2)
    blend = Blend(np.array([0, 1]), np.array([0, 1]), np.zeros(2), np.ones(2), np.zeros(2))
    assert smile_rows._svi_smiles(svi_rows) is not None
    assert smile_rows._svi_smiles(BlendedRows(SVIVarianceRows(stack([P1, P2])), blend,
                                              1.0 / t[:, None])) is not None
    assert smile_rows._svi_smiles(BlendedRows(generic, blend, 1.0 / t[:, None])) is None
    assert smile_rows._svi_smiles(lambda k: svi_rows(k)) is None


def test_without_the_kernel_svi_rows_take_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    t = np.array([0.1, 0.2])
    rows = _vol_rows([P1, P2], t)
    monkeypatch.setattr(smile_rows, "_NATIVE", None)
    assert smile_rows.native_metrics(rows, np.sqrt(t), smile._SETTINGS, 12, 42) is None
    got = smile.smile_metrics_rows(rows, t)
    want = smile.metrics_table(rows, np.sqrt(t))
    np.testing.assert_array_equal([list(msgspec.structs.astuple(m)) for m in got], want)


@needs_native
def test_a_slice_index_out_of_range_is_refused() -> None:
    t = np.array([0.1])
    blend = Blend(np.array([2]), np.array([0]), np.zeros(1), np.ones(1), np.zeros(1))
    rows = BlendedRows(SVIVarianceRows(stack([P1, P2])), blend, 1.0 / t[:, None])
    with pytest.raises(ValueError, match="out of range"):
        _native(rows, t)


@needs_native
@pytest.mark.parametrize("steps", [(-1, 42), (12, 2**31), (2**31, 42)])
def test_step_counts_out_of_range_are_refused_not_wrapped(steps: tuple[int, int]) -> None:
    """2**31 Newton steps had wrapped to a negative int: no Newton at all, silently."""
    t = np.array([0.1])
    with pytest.raises(ValueError, match=r"0\.\.10000"):
        smile_rows.native_metrics(_vol_rows([P1], t), np.sqrt(t), smile._SETTINGS, *steps)
