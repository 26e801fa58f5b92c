"""The normalised Black inverse: Jäckel's rational guess, then two Householder steps.

Reference: P. Jäckel (2015), "Let's be rational", as implemented by the
``lets_be_rational`` package (the engine of py_vollib), whose
``normalised_implied_volatility_from_a_transformed_rational_guess_with_limited_iterations``
with ``N = 0`` returns the initial guess itself.
"""

from __future__ import annotations

import numpy as np
import pytest
from lets_be_rational import normalised_black_call
from lets_be_rational import (
    normalised_implied_volatility_from_a_transformed_rational_guess_with_limited_iterations as lbr,
)

from streamer.core import normalised_black as nb
from streamer.core.rational_cubic import control_to_fit_second_derivative, rational_cubic

NATIVE = nb._NATIVE
needs_native = pytest.mark.skipif(NATIVE is None, reason="the C kernel was not built")


@pytest.fixture(params=["c", "numpy"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test of ``total_vol`` on both paths: the C kernel and its numpy fallback."""
    if request.param == "c" and NATIVE is None:
        pytest.skip("the C kernel was not built")
    if request.param == "numpy":
        monkeypatch.setattr(nb, "_NATIVE", None)
    return str(request.param)


def _sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x = -|ln(F/K)| near the money, across [0, 4] and log-spread; s from 1e-3 to 10."""
    rng = np.random.default_rng(seed)
    x = -np.concatenate([rng.uniform(0.0, 0.1, n), rng.uniform(0.0, 4.0, n),
                         np.exp(rng.uniform(-20.0, 1.5, n))])
    s = np.exp(rng.uniform(np.log(1e-3), np.log(10.0), x.size))
    beta = np.array([normalised_black_call(float(a), float(b)) for a, b in zip(x, s, strict=True)])
    keep = (beta > 1e-300) & (beta < np.exp(0.5 * x))
    return x[keep], s[keep], beta[keep]


def test_initial_guess_is_jaeckels(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    """With no Householder step the result is the guess; it matches the reference's.

    The shape-preserving control parameter is taken in its closed form for data that
    are monotonic and convex or concave (as they are by construction); the reference's
    general case differs on a few intervals, by under 1 % of a guess that two steps
    polish anyway.
    """
    x, _, beta = _sample(500, 1)
    monkeypatch.setattr(nb, "HOUSEHOLDER_STEPS", 0)
    ours, _ = nb.total_vol(x, beta)
    ref = np.array([lbr(float(b), float(a), 1.0, 0) for a, b in zip(x, beta, strict=True)])
    rel = np.abs(ours / ref - 1.0)
    assert np.mean(rel < 1e-12) > 0.99
    assert rel.max() < 0.01


def test_two_steps_reach_full_precision_where_the_problem_is_well_conditioned(path: str
                                                                            ) -> None:
    """Against the exact total vol: 1e-11 relative for s in [0.01, 5].

    Outside, the inputs themselves limit any solver: for tiny s near the money the
    normalised price has lost digits to cancellation, and for s past 5 ``b_max - b``
    is a few ulps of ``b_max``.
    """
    x, s, beta = _sample(2000, 2)
    v, last_step = nb.total_vol(x, beta)
    assert np.all(np.abs(last_step) <= 1e-6 * v)
    conditioned = (s >= 0.01) & (s <= 5.0)
    assert np.max(np.abs(v / s - 1.0)[conditioned]) < 1e-11


@needs_native
def test_the_c_kernel_solves_as_the_numpy_path_does() -> None:
    """Same branches, guesses and steps: the two agree to rounding on every branch (near
    the money, the wings, far out), in the guess alone and after the two steps."""
    x, _, beta = _sample(3000, 3)
    for steps in (0, nb.HOUSEHOLDER_STEPS):
        s, step = np.empty_like(x), np.empty_like(x)
        assert NATIVE is not None
        NATIVE(x, beta, s, step, steps)
        original = nb.HOUSEHOLDER_STEPS
        try:
            nb.HOUSEHOLDER_STEPS = steps
            ref, ref_step = nb.total_vol_numpy(x, beta)
        finally:
            nb.HOUSEHOLDER_STEPS = original
        np.testing.assert_allclose(s, ref, rtol=1e-10)
        assert np.array_equal(np.abs(step) <= 1e-6 * s, np.abs(ref_step) <= 1e-6 * ref)


@needs_native
def test_the_c_kernel_refuses_wrong_buffers() -> None:
    x = np.array([-0.1, -0.2])
    with pytest.raises(ValueError, match="beta"):
        NATIVE(x, np.zeros(3), np.empty(2), np.empty(2), 2)  # type: ignore[misc]
    with pytest.raises(ValueError, match="x"):
        NATIVE(x.astype(np.float32), x, np.empty(2), np.empty(2), 2)  # type: ignore[misc]


def test_rational_cubic_matches_its_end_data_and_tends_to_the_line() -> None:
    x_l, x_r = np.array([0.0, 2.0]), np.array([1.0, -1.0])  # the second interval reversed
    y_l, y_r = np.array([1.0, 0.5]), np.array([3.0, 2.0])
    d_l, d_r = np.array([1.0, -0.2]), np.array([4.0, -1.0])
    r = control_to_fit_second_derivative(x_l, x_r, y_l, y_r, d_l, d_r, np.zeros(2))
    assert np.all(r >= (d_l + d_r) / ((y_r - y_l) / (x_r - x_l)))  # shape preserving
    h = 1e-7
    assert rational_cubic(x_l, x_l, x_r, y_l, y_r, d_l, d_r, r) == pytest.approx(y_l)
    assert rational_cubic(x_r, x_l, x_r, y_l, y_r, d_l, d_r, r) == pytest.approx(y_r)
    slope_l = (rational_cubic(x_l + h * (x_r - x_l), x_l, x_r, y_l, y_r, d_l, d_r, r) - y_l) / (
        h * (x_r - x_l))
    assert slope_l == pytest.approx(d_l, rel=1e-5)
    line = rational_cubic(0.5 * (x_l + x_r), x_l, x_r, y_l, y_r, d_l, d_r, np.full(2, np.inf))
    assert line == pytest.approx(0.5 * (y_l + y_r))
