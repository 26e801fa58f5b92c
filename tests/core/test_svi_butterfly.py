"""The C kernel of raw SVI butterfly margins (``_svi_butterfly.c``) against the numpy grid
it shadows (:func:`streamer.core.models.svi.butterfly_margins` with the kernel forced off):
the same bits on random slices, on the edges (no variance, a kink, NaN, a zero-width or
infinite range), and the fallback where the kernel is not built."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from streamer.core.models import svi, svi_butterfly
from streamer.core.models.svi import SVIParams

FloatArray = npt.NDArray[np.float64]
needs_native = pytest.mark.skipif(svi_butterfly._NATIVE is None,
                                  reason="the C kernel was not built")


def _numpy(params: list[SVIParams], lo: FloatArray, hi: FloatArray, n: int = 201
           ) -> FloatArray:
    # an infinite range warns in numpy's grid (inf * 0), not in the kernel
    with pytest.MonkeyPatch.context() as mp, np.errstate(invalid="ignore"):
        mp.setattr(svi_butterfly, "_NATIVE", None)
        result: FloatArray = svi.butterfly_margins(params, lo, hi, n)
    return result


def _native(params: list[SVIParams], lo: FloatArray, hi: FloatArray, n: int = 201
            ) -> FloatArray:
    got = svi_butterfly.native_margins(svi.stack(params), np.asarray(lo, np.float64),
                                       np.asarray(hi, np.float64), n)
    assert got is not None
    return got


def _random(rng: np.random.Generator, n: int) -> tuple[list[SVIParams], FloatArray, FloatArray]:
    """Slices from quiet to wild (hours to years, |rho| to 0.999, negative variance at
    the money) over ranges from narrow to three units of k each side."""
    t = np.exp(rng.uniform(np.log(1 / 8760), np.log(5.0), n))
    b = np.exp(rng.uniform(np.log(1e-3), np.log(5.0), n)) * np.sqrt(t)
    rho = rng.uniform(-0.999, 0.999, n)
    sigma = np.exp(rng.uniform(np.log(1e-4), 0.0, n)) * np.sqrt(t)
    m = rng.uniform(-0.5, 0.5, n) * np.sqrt(t)
    a = rng.uniform(-0.05, 0.3, n) * t
    params = [SVIParams(a=float(a[i]), b=float(b[i]), rho=float(rho[i]), m=float(m[i]),
                        sigma=float(sigma[i])) for i in range(n)]
    lo = rng.uniform(-3.0, 0.0, n)
    return params, lo, lo + rng.uniform(1e-3, 3.0, n)


@needs_native
def test_random_slices_agree_bit_for_bit() -> None:
    params, lo, hi = _random(np.random.default_rng(2027), 2000)
    want = _numpy(params, lo, hi)
    assert (want < 0).sum() > 100  # both sides exercised
    assert (want >= 0).sum() > 100
    np.testing.assert_array_equal(svi.butterfly_margins(params, lo, hi), want)
    for n in (2, 3, 17):  # other grid widths, the last point pinned to hi
        np.testing.assert_array_equal(_native(params, lo, hi, n), _numpy(params, lo, hi, n))


@needs_native
def test_edge_slices_agree() -> None:
    """No variance anywhere or NaN parameters (-inf), a kink on a grid point (NaN), a
    flat smile, infinite and NaN ranges."""
    params = [SVIParams(a=-1.0, b=0.01, rho=0.0, m=0.0, sigma=0.1),
              SVIParams(a=1e-4, b=0.5, rho=-1.0, m=0.0, sigma=0.0),
              SVIParams(a=float("nan"), b=0.1, rho=0.0, m=0.0, sigma=0.1),
              SVIParams(a=0.04, b=0.0, rho=0.0, m=0.0, sigma=0.1),
              SVIParams(a=0.02, b=0.1, rho=-0.4, m=0.0, sigma=0.1),
              SVIParams(a=0.02, b=0.1, rho=-0.4, m=0.0, sigma=0.1),
              SVIParams(a=0.02, b=0.1, rho=-0.4, m=0.0, sigma=0.1)]
    lo = np.array([-0.5, -0.5, -0.5, -0.5, -np.inf, np.nan, -0.2])
    hi = np.array([0.5, 0.5, 0.5, 0.5, 0.5, 0.3, 0.2])
    want = _numpy(params, lo, hi)
    assert np.isneginf(want[[0, 2]]).all()  # NaN w: no variance either
    assert np.isnan(want[1])
    np.testing.assert_array_equal(_native(params, lo, hi), want)


@needs_native
def test_a_zero_width_range_takes_numpys_scaled_grid_for_every_slice() -> None:
    """np.linspace scales by the range for the whole call when any step is zero."""
    params, lo, hi = _random(np.random.default_rng(5), 50)
    hi[7] = lo[7]
    np.testing.assert_array_equal(_native(params, lo, hi), _numpy(params, lo, hi))


@needs_native
def test_the_kernel_refuses_bad_buffers() -> None:
    roots, margins = svi_butterfly._NATIVE  # type: ignore[misc]
    params = svi.stack([SVIParams(a=0.02, b=0.1, rho=-0.4, m=0.0, sigma=0.1)])
    with pytest.raises(ValueError, match="k:"):  # one point a row: no grid
        roots(params, np.zeros(1), np.ones(1), np.empty((1, 1)), np.empty((1, 1)))
    with pytest.raises(ValueError, match="root:"):  # root of another size than k
        roots(params, np.zeros(1), np.ones(1), np.empty((1, 5)), np.empty((1, 4)))
    with pytest.raises(ValueError, match="lo:"):  # two ranges for one slice
        roots(params, np.zeros(2), np.ones(2), np.empty((1, 5)), np.empty((1, 5)))
    with pytest.raises(ValueError, match="k:"):  # int64 items
        margins(params, np.zeros((1, 5), np.int64), np.ones((1, 5)), np.ones((1, 5)),
                np.empty(1))
    with pytest.raises(ValueError, match="params:"):  # params not rows of five
        margins(np.zeros(4), np.zeros((1, 5)), np.ones((1, 5)), np.ones((1, 5)), np.empty(1))
    with pytest.raises(TypeError):
        margins(params)


def test_the_fallback_is_the_numpy_grid(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the kernel, native_margins says so and the margins come from numpy: the
    reference, checked here against its definition (Durrleman's g on np.linspace)."""
    from streamer.core.arbitrage import durrleman_g

    monkeypatch.setattr(svi_butterfly, "_NATIVE", None)
    params, lo, hi = _random(np.random.default_rng(11), 20)
    assert svi_butterfly.native_margins(svi.stack(params), lo, hi, 201) is None
    got = svi.butterfly_margins(params, lo, hi)
    for i, p in enumerate(params):
        k = np.linspace(lo[i], hi[i], 201)
        w, dw, d2w = svi.derivatives(k, p)
        assert got[i] == pytest.approx(float(np.min(durrleman_g(k, w, dw, d2w))), rel=1e-12)
