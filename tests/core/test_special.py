"""The core's special functions (streamer.core.special): the C kernel's against
scipy.special (Cephes, itself accurate to a few ulp: W. J. Cody's rational
approximations for erfc/erfcx, and Acklam's quantile refined by a Halley step on
ours), across the tails, and the numpy calling conventions the core relies on."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.special

from streamer.core import special

needs_native = pytest.mark.skipif(not special.NATIVE, reason="C kernel not built")

P = np.concatenate([np.logspace(-300, -1, 300), np.linspace(0.01, 0.49, 100),
                    np.linspace(0.51, 0.99, 100), 1.0 - np.logspace(-15, -2, 60)])
Z = np.concatenate([np.linspace(-5.0, 5.0, 201), np.logspace(-3.0, 4.0, 200)])
X = np.concatenate([-np.logspace(-3.0, np.log10(38.0), 200), np.linspace(-5.0, 8.0, 131)])


@needs_native
def test_the_kernels_functions_match_scipys_across_the_tails() -> None:
    np.testing.assert_allclose(special.ndtri(P), scipy.special.ndtri(P), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(special.erfcx(Z), scipy.special.erfcx(Z), rtol=4e-15)
    # the two erfc tails part by a few 1e-14 near N = 1e-137; past -37.5 scipy flushes to
    # 0 where C's erfc still gives the subnormal value
    np.testing.assert_allclose(special.ndtr(X), scipy.special.ndtr(X), rtol=5e-14, atol=1e-300)


@needs_native
def test_the_edges_are_scipys() -> None:
    edges = np.array([0.0, 1.0, np.nan, -0.5, 1.5])
    np.testing.assert_array_equal(special.ndtri(edges), scipy.special.ndtri(edges))
    far = np.array([-np.inf, np.inf, np.nan, -40.0, 40.0])
    np.testing.assert_array_equal(special.ndtr(far), scipy.special.ndtr(far))


@pytest.mark.parametrize("name", ["ndtr", "ndtri", "erfcx"])
def test_shapes_and_scalars_come_back_as_numpy_gives_them(name: str) -> None:
    f, ref = getattr(special, name), getattr(scipy.special, name)
    grid = np.linspace(0.05, 0.95, 12).reshape(3, 4)
    assert f(grid).shape == (3, 4)
    np.testing.assert_allclose(f(grid[:, ::2]), ref(grid[:, ::2]), rtol=1e-14)  # strided
    np.testing.assert_allclose(f([0.2, 0.7]), ref([0.2, 0.7]), rtol=1e-14)
    scalar = f(0.3)
    assert isinstance(scalar, np.float64)
    assert scalar == pytest.approx(float(ref(0.3)), rel=1e-14)


def test_without_the_kernel_the_functions_are_scipys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(special, "_from_kernel", lambda name: None)
    assert special._special("ndtri") is scipy.special.ndtri


@needs_native
def test_the_kernel_refuses_an_output_of_another_length() -> None:
    from streamer.core import _normalised_black as kernel  # type: ignore[attr-defined]

    with pytest.raises(ValueError, match="out"):
        kernel.ndtr(np.zeros(3), np.empty(2))


@needs_native
def test_the_far_tails_are_finite_where_scipys_are() -> None:
    """The quantile's Halley step overflowed for a subnormal p (NaN), and erfcx of -inf
    took inf - inf (NaN); scipy gives -38.47 and inf."""
    p = np.array([5e-324, 1e-315, 1e-310, 1e-305])
    np.testing.assert_allclose(special.ndtri(p), scipy.special.ndtri(p), rtol=1e-8)
    z = np.array([-np.inf, -1e305, -26.8, -26.6])
    np.testing.assert_allclose(special.erfcx(z), scipy.special.erfcx(z), rtol=4e-14)


def test_a_kernel_built_before_the_array_entry_points_falls_back_to_scipy(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed optional rebuild leaves the old module in place: scipy's, not an error."""
    import types

    import streamer.core as core

    monkeypatch.setattr(core, "_normalised_black", types.SimpleNamespace(total_vol=None),
                        raising=False)
    monkeypatch.setitem(sys.modules, "streamer.core._normalised_black",
                        core._normalised_black)  # type: ignore[attr-defined]
    assert special._from_kernel("ndtr") is None
    assert special._special("ndtr") is scipy.special.ndtr
