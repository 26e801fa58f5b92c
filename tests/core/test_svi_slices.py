"""The C kernel of raw SVI slices side by side (``_svi_slices.c``) against the numpy and
Python paths it shadows, bit for bit: the calendar gaps of ``engine._calendar_margins``,
the jump-wings of ``jump_wings.from_raw_svi_rows``, the smile slopes of
``pipeline.dynamics._slopes``; random and edge inputs (NaN, inf, negative variance, zero
sigma, no overlap), the fallbacks forced, and the kernel's guards on bad input.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from streamer.core import jump_wings, svi_slices
from streamer.core.jump_wings import from_raw_svi, from_raw_svi_rows
from streamer.core.models.svi import SVIModel, SVIParams, stack, total_variance_rows
from streamer.core.rows import linspace_rows
from streamer.pipeline import dynamics, engine
from streamer.pipeline.dynamics import SLOPE_STEP, FittedSmile

NATIVE = svi_slices._NATIVE
needs_native = pytest.mark.skipif(NATIVE is None, reason="the C kernel was not built")
POINTS = engine.CALENDAR_POINTS


def _random_params(rng: np.random.Generator, n: int) -> list[SVIParams]:
    return [SVIParams(a=float(rng.uniform(-0.02, 0.05)), b=float(rng.uniform(0.0, 0.5)),
                      rho=float(rng.uniform(-0.99, 0.99)), m=float(rng.uniform(-0.3, 0.3)),
                      sigma=float(rng.uniform(0.0, 0.4))) for _ in range(n)]


EDGE = [SVIParams(a=0.01, b=0.1, rho=-0.5, m=0.0, sigma=0.0),  # sigma 0: a kink at m
        SVIParams(a=-0.5, b=0.1, rho=0.2, m=0.1, sigma=0.1),  # w < 0 everywhere
        SVIParams(a=0.0, b=0.0, rho=0.0, m=0.0, sigma=0.0),  # the zero smile
        SVIParams(a=float("nan"), b=0.1, rho=0.0, m=0.0, sigma=0.1),
        SVIParams(a=0.02, b=float("inf"), rho=0.3, m=0.0, sigma=0.1),
        SVIParams(a=0.02, b=0.2, rho=1.0, m=0.0, sigma=0.1),  # a flat left wing
        SVIParams(a=0.02, b=0.2, rho=1.5, m=0.0, sigma=0.1)]  # |rho| > 1: v_tilde NaN


def _numpy_gaps(params: list[SVIParams], lo: list[float], hi: list[float]) -> list[float]:
    """engine._calendar_margins' numpy path on raw SVI rows."""
    k = linspace_rows(np.array(lo), np.array(hi), POINTS)
    stacked = stack(params)
    later = np.arange(1, len(params))
    gaps = total_variance_rows(k, stacked[later]) - total_variance_rows(k, stacked[later - 1])
    return gaps.min(axis=1).tolist()  # type: ignore[no-any-return]


def _same(got: list[float], want: list[float]) -> None:
    np.testing.assert_array_equal(np.array(got), np.array(want))


@needs_native
@pytest.mark.parametrize("seed", range(5))
def test_calendar_gaps_equal_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    params = _random_params(rng, 12)
    lo = rng.uniform(-0.5, 0.0, 11).tolist()
    hi = (np.array(lo) + rng.uniform(0.0, 0.8, 11)).tolist()
    got = svi_slices.native_calendar_gaps(stack(params), lo, hi, POINTS)
    assert got is not None
    _same(got, _numpy_gaps(params, lo, hi))


@needs_native
def test_calendar_gaps_edges_equal_numpy() -> None:
    params = EDGE + _random_params(np.random.default_rng(9), 2)
    n = len(params) - 1
    lo = [-0.1, 0.0, -0.2, 0.3, -0.05, -1.0, 0.0, 0.0][:n]
    hi = [0.1, 0.0, 0.2, 0.3, 0.05, 1.0, 1e-300, 0.2][:n]  # empty ranges: linspace's by range
    got = svi_slices.native_calendar_gaps(stack(params), lo, hi, POINTS)
    assert got is not None
    _same(got, _numpy_gaps(params, lo, hi))


def _fits(params: list[SVIParams], ranges: list[tuple[float, float]]) -> list[object]:
    """Just what _calendar_margins reads of a SliceFit."""
    class Fit:
        def __init__(self, p: SVIParams, r: tuple[float, float]) -> None:
            self.params, self.k_range = p, r
    return [Fit(p, r) for p, r in zip(params, ranges, strict=True)]


RANGES = [(-0.2, 0.1), (-0.1, 0.3), (0.4, 0.5), (float("nan"), 0.2), (-0.3, 0.3),
          (-0.3, float("inf")), (-0.1, 0.1), (0.2, 0.1)]


@pytest.mark.parametrize("native", [True, False])
def test_calendar_margins_stacked_equal_slice_by_slice(native: bool,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    if native and NATIVE is None:
        pytest.skip("the C kernel was not built")
    if not native:
        monkeypatch.setattr(svi_slices, "_NATIVE", None)
    model = SVIModel()
    params = _random_params(np.random.default_rng(3), len(RANGES))
    fits = _fits(params, RANGES)
    ts = [0.1 * (i + 1) for i in range(len(fits))]
    stacked = engine._calendar_margins(model, fits, ts, model.variance_rows(params))  # type: ignore[arg-type]
    one_by_one = engine._calendar_margins(model, fits, ts, None)  # type: ignore[arg-type]
    _same(stacked, one_by_one)
    assert np.isnan(stacked[0])


def test_overlap_is_numpys_maximum_and_minimum() -> None:
    values = [-0.3, -0.1, 0.0, -0.0, 0.2, float("nan"), float("inf"), float("-inf")]
    for before in itertools.product(values, repeat=2):
        for after in itertools.product(values, repeat=2):
            lo = np.maximum(after[0], before[0])
            hi = np.minimum(after[1], before[1])
            want = (float(lo), float(hi)) if hi > lo else engine.CALENDAR_FALLBACK_RANGE
            assert engine._overlap(before, after) == want


@pytest.mark.parametrize("native", [True, False])
def test_jump_wings_rows_equal_one_by_one(native: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if native and NATIVE is None:
        pytest.skip("the C kernel was not built")
    if not native:
        monkeypatch.setattr(jump_wings, "native_jump_wings", lambda *_: None)
    params = EDGE + _random_params(np.random.default_rng(4), 20)
    t = [0.0, -0.1, float("nan"),
         *np.random.default_rng(5).uniform(1e-4, 3.0, len(params) - 3).tolist()]
    got = from_raw_svi_rows(stack(params), t)
    want = [from_raw_svi(p.a, p.b, p.rho, p.m, p.sigma, t_i).as_dict()
            for p, t_i in zip(params, t, strict=True)]
    assert [list(g) for g in got] == [list(w) for w in want]  # the same keys, in order
    _same([v for g in got for v in g.values()], [v for w in want for v in w.values()])


def _smiles(params: list[SVIParams]) -> list[FittedSmile]:
    return [FittedSmile(i, 0.05 * (i + 1), 100.0, 0.5, p) for i, p in enumerate(params)]


@needs_native
@pytest.mark.parametrize("seed", range(3))
def test_slopes_equal_the_stacked_rows(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(seed)
    smiles = _smiles(EDGE + _random_params(rng, 5))
    row = rng.integers(0, len(smiles), 40).astype(np.intp)
    k = rng.uniform(-0.6, 0.6, 40)
    k[:3] = [np.nan, np.inf, 0.0]
    got = dynamics._slopes(row, k, smiles, SVIModel())
    monkeypatch.setattr(dynamics, "native_slopes", lambda *_: None)
    with np.errstate(all="ignore"):  # inf and NaN ends: numpy warns, C does not
        want = dynamics._slopes(row, k, smiles, SVIModel())
    np.testing.assert_array_equal(got, want)


@needs_native
def test_kernel_guards_its_inputs() -> None:
    stacked = stack(_random_params(np.random.default_rng(1), 3))
    with pytest.raises(ValueError, match="hi"):
        NATIVE.calendar_gaps(stacked.reshape(3, 5), np.zeros(2), np.zeros(3), POINTS,
                             np.empty(2))
    with pytest.raises(ValueError, match="params"):
        NATIVE.calendar_gaps(stacked.reshape(3, 5), np.zeros(3), np.zeros(3), POINTS,
                             np.empty(3))
    with pytest.raises(ValueError, match="points"):
        NATIVE.calendar_gaps(stacked.reshape(3, 5), np.zeros(2), np.zeros(2), 0, np.empty(2))
    with pytest.raises(ValueError, match="out"):
        NATIVE.jump_wings(stacked.reshape(3, 5), np.ones(3), np.empty((2, 5)))
    with pytest.raises(ValueError, match="row"):
        NATIVE.slopes(stacked.reshape(3, 5), np.ones(3), np.array([0, 3]), np.zeros(2),
                      SLOPE_STEP, np.empty(2))
    with pytest.raises(ValueError, match="row"):
        NATIVE.slopes(stacked.reshape(3, 5), np.ones(3), np.array([-1]), np.zeros(1),
                      SLOPE_STEP, np.empty(1))
    with pytest.raises(ValueError, match="t"):
        NATIVE.jump_wings(stacked.reshape(3, 5), np.ones(3, np.float32), np.empty((3, 5)))
    with pytest.raises(TypeError):
        NATIVE.slopes(stacked.reshape(3, 5))
    empty = np.empty(0)
    NATIVE.calendar_gaps(np.empty((1, 5)), empty, empty, POINTS, empty)  # one slice: no pairs
    NATIVE.jump_wings(np.empty((0, 5)), empty, np.empty((0, 5)))
