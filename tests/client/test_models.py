"""Each model's published slice evaluates as the core functions (and the publisher) do."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.client import Surface
from streamer.core.models import heston, sabr, ssvi, svi
from streamer.core.models.registry import model_for
from tests.client.factory import EXPIRIES_MS, FORWARDS, TS, make_surface, svi_params

K = np.linspace(-0.5, 0.4, 19)
HESTON = heston.HestonParams(v0=0.36, kappa=2.0, theta=0.42, sigma=0.9, rho=-0.45)
SSVI = ssvi.SSVIParams(rho=-0.3, eta=1.1, gamma=0.4, t=TS,
                       theta=tuple(0.3 * t + 0.01 * t * t for t in TS))
SABR = [sabr.SABRParams(alpha=0.62 - 0.1 * t, beta=1.0, rho=-0.25 + 0.1 * t, nu=1.4 - t)
        for t in TS]


def _strikes(i: int) -> np.ndarray:
    return FORWARDS[i] * np.exp(K)


def _publisher_vol(surface: Surface, i: int) -> np.ndarray:
    """What the calibrator's model object computes from the published parameters."""
    s = surface.slice(EXPIRIES_MS[i])
    adapter = model_for(surface.model)
    return adapter.vol(K, s.t, adapter.from_dict(dict(s.update.params)))


@pytest.mark.parametrize("i", range(4))
def test_svi_slices_evaluate_as_core_svi(i: int) -> None:
    surface = Surface(make_surface("svi"))
    p = svi.SVIParams.from_dict(svi_params(TS[i]))
    np.testing.assert_allclose(surface.vol(_strikes(i), EXPIRIES_MS[i]),
                               svi.implied_vol(K, TS[i], p), rtol=1e-13)
    np.testing.assert_array_equal(surface.total_variance(K, TS[i]), svi.total_variance(K, p))
    np.testing.assert_allclose(surface.slice(EXPIRIES_MS[i]).vol_k(K), _publisher_vol(surface, i),
                               rtol=1e-15)


@pytest.mark.parametrize("i", range(4))
def test_sabr_slices_evaluate_as_core_sabr_on_forward_normalised_strikes(i: int) -> None:
    surface = Surface(make_surface("sabr", [p.as_dict() for p in SABR]))
    expected = sabr.implied_vol(1.0, np.exp(K), TS[i], SABR[i])
    np.testing.assert_allclose(surface.vol(_strikes(i), EXPIRIES_MS[i]), expected, rtol=1e-12)
    np.testing.assert_array_equal(surface.slice(EXPIRIES_MS[i]).vol_k(K), expected)
    np.testing.assert_allclose(surface.slice(EXPIRIES_MS[i]).vol_k(K), _publisher_vol(surface, i),
                               rtol=1e-15)


def test_sabr_with_beta_below_one_uses_the_normalised_forward() -> None:
    p = sabr.SABRParams(alpha=0.55, beta=0.5, rho=-0.2, nu=1.0)
    surface = Surface(make_surface("sabr", [p.as_dict()] * 4))
    np.testing.assert_allclose(surface.vol(_strikes(2), EXPIRIES_MS[2]),
                               sabr.implied_vol(1.0, np.exp(K), TS[2], p), rtol=1e-12)


@pytest.mark.parametrize("i", range(4))
def test_ssvi_slices_evaluate_as_the_core_ssvi_surface(i: int) -> None:
    surface = Surface(make_surface("ssvi", [SSVI.slice(j).as_dict() for j in range(4)],
                                   params=SSVI.surface_dict()))
    np.testing.assert_allclose(surface.total_variance(K, EXPIRIES_MS[i]),
                               ssvi.total_variance(K, i, SSVI), rtol=1e-15)
    np.testing.assert_allclose(surface.vol(_strikes(i), EXPIRIES_MS[i]),
                               np.sqrt(ssvi.total_variance(K, i, SSVI) / TS[i]), rtol=1e-13)
    np.testing.assert_allclose(surface.slice(EXPIRIES_MS[i]).vol_k(K), _publisher_vol(surface, i),
                               rtol=1e-15)


def test_ssvi_surface_is_calendar_monotone_between_slices() -> None:
    surface = Surface(make_surface("ssvi", [SSVI.slice(j).as_dict() for j in range(4)],
                                   params=SSVI.surface_dict()))
    t = np.geomspace(1e-3, 1.5, 300)
    assert np.all(np.diff(surface.total_variance(K[:, None], t[None, :]), axis=1) >= 0)


@pytest.mark.parametrize("per_slice", [True, False], ids=["slice-params", "surface-params"])
def test_heston_slices_evaluate_as_core_heston(per_slice: bool) -> None:
    slice_params = [HESTON.as_dict() if per_slice else {} for _ in TS]
    surface = Surface(make_surface("heston", slice_params, params=HESTON.as_dict()))
    for i in (0, 2):
        expected = heston.implied_vols(K, TS[i], HESTON)
        # k from strikes differs in its last bits, which can move the quadrature by a
        # panel: agreement to the quadrature's own accuracy (~1e-11), not bit for bit.
        np.testing.assert_allclose(surface.vol(_strikes(i), EXPIRIES_MS[i]), expected,
                                   rtol=1e-10)
        np.testing.assert_array_equal(surface.slice(EXPIRIES_MS[i]).vol_k(K), expected)


def test_heston_between_slices_stays_close_to_the_model_itself() -> None:
    surface = Surface(make_surface("heston", [HESTON.as_dict()] * 4, params=HESTON.as_dict()))
    t = 0.5 * (TS[1] + TS[2])
    interpolated = surface.total_variance(K, t)
    exact = heston.implied_vols(K, t, HESTON) ** 2 * t
    np.testing.assert_allclose(np.sqrt(interpolated / t), np.sqrt(exact / t), atol=5e-3)
