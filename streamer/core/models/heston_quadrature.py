"""Heston prices of a fixed quote surface and their parameter gradient, for calibration.

The price is Lewis's single integral with a Black control variate, summed with
composite Gauss–Legendre nodes (see :mod:`streamer.core.models.heston`). During a
calibration the quotes do not move, so :class:`SurfacePricer` builds each expiry's
nodes once and keeps the strike-dependent factor ``exp(i u x) w / (u^2 + 1/4)`` as two
real matrices; an evaluation is then one characteristic-function pass over all nodes
and one small matrix product per expiry. The nodes are rebuilt, with a margin, only
when new parameters need a longer range or finer panels than the cached ones, or far
fewer nodes than the cached ones hold.

The work of one evaluation is bounded: parameters that would need more than
``MAX_NODES`` nodes, or node matrices with more than ``MAX_MATRIX_ENTRIES`` entries,
are not priced (NaN) and change nothing in the cache, so a calibration's trial step out
there is rejected rather than paid for (one trial step with vol-of-vol 97 once grew
the cache from 2,608 to 3.8 million nodes: 137 s of CPU and 4.6 GB).

The gradient differentiates the characteristic function analytically (the chain rule
through the "little trap" form, as in Cui, del Baño Rollin & Germano 2017, "Full and
fast calibration of the Heston stochastic volatility model", EJOR 263(2)); the control
variate drops out of it, since the Black price and its own integral sum to ``F``.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt

from streamer.core import black76

FloatArray = npt.NDArray[np.float64]
ComplexArray = npt.NDArray[np.complexfloating[Any, Any]]
#: v0, kappa, theta, sigma, rho
Params = tuple[float, float, float, float, float]

PANEL_NODES = 16
_U_CAP = 1e5
_MAX_PANELS = 4000
_PANEL_SPAN = np.pi  # u-width of a panel times the largest |x| of its expiry
_MARGIN = 1.1  # cached nodes reach this much further than needed, so rebuilds are rare
_SHRINK = 4.0  # cached nodes this many times more than needed are rebuilt smaller
#: Most quadrature nodes (all expiries together) one evaluation may use.
MAX_NODES = 100_000
#: Most entries of the cached strike-by-node matrices (2 per quote and node: 64 MB).
MAX_MATRIX_ENTRIES = 8_000_000


@cache
def legendre(n: int) -> tuple[FloatArray, FloatArray]:
    """Gauss–Legendre nodes and weights on (0, 1)."""
    x, w = np.polynomial.legendre.leggauss(n)
    return 0.5 * (x + 1.0), 0.5 * w


def expected_total_variance(t: FloatArray, p: Params) -> FloatArray:
    """``E[int_0^t v_s ds]``: the Black control variate's total variance."""
    v0, kappa, theta = p[0], p[1], p[2]
    kt = np.maximum(kappa * t, 1e-12)
    result: FloatArray = theta * t + (v0 - theta) * -np.expm1(-kt) / kt * t
    return result


def node_range(t: float, max_abs_x: float, p: Params, var_cv: float) -> tuple[float, int]:
    """Integration range ``u_max`` and number of panels for one expiry.

    The range ends where both integrands, characteristic function over ``u^2``, are
    below ``e^-40`` (4e-18): the Heston one decays like ``exp(-c u)`` with ``c`` from
    Kahl & Jäckel (2005, eq. 40), the Black one like ``exp(-var u^2 / 2)``; a few
    fixed-point steps solve ``c u + 2 ln u = 40`` and ``var u^2 / 2 + 2 ln u = 40``
    (the ``u^2`` shortens the range by up to half for slowly decaying ones). Panels are short enough
    to resolve the strike oscillation ``exp(i u x)`` (16 Gauss-Legendre nodes on half
    a period, ``pi / |x|``; a whole period costs 1e-7 of relative accuracy on far
    out-of-the-money prices).
    """
    v0, kappa, theta, sigma, rho = p
    c_inf = max(np.sqrt(1.0 - rho * rho) / sigma * (v0 + kappa * theta * t), 1e-12)
    var = max(var_cv, 1e-300)
    u_h, u_b = 40.0 / c_inf, np.sqrt(80.0 / var)
    for _ in range(3):  # never below half the start: 2 ln u > 40 would send u negative
        u_h = max((40.0 - 2.0 * np.log(u_h)) / c_inf, 20.0 / c_inf)
        u_b = max(np.sqrt(max(2.0 * (40.0 - 2.0 * np.log(u_b)) / var, 0.0)),
                  np.sqrt(20.0 / var))
    u_max = min(max(u_h, u_b), _U_CAP)
    panels = int(np.clip(np.ceil(u_max * max(max_abs_x, 0.25) / _PANEL_SPAN), 8, _MAX_PANELS))
    return float(u_max), panels


def nodes(u_max: float, panels: int) -> tuple[FloatArray, FloatArray]:
    """Composite Gauss–Legendre nodes and weights on ``(0, u_max)``."""
    s, w = legendre(PANEL_NODES)
    edges = np.linspace(0.0, u_max, panels + 1)
    width = np.diff(edges)[:, None]
    return (edges[:-1, None] + width * s).ravel(), (width * w).ravel()


def log_cf(u: ComplexArray, t: FloatArray, p: Params, gradient: bool
           ) -> tuple[ComplexArray, ComplexArray | None]:
    """``ln E[exp(i u ln(F_T/F))]`` (little Heston trap) and, if asked, its derivatives
    in ``(v0, kappa, theta, sigma, rho)``, shape ``(5, n)``."""
    v0, kappa, theta, sigma, rho = p
    iu = 1j * u
    s2 = iu + u * u
    beta = kappa - rho * sigma * iu
    d = np.sqrt(beta * beta + sigma * sigma * s2)
    bmd, bpd = beta - d, beta + d
    g = bmd / bpd
    e = np.exp(-d * t)
    one_m_ge, one_m_g = 1.0 - g * e, 1.0 - g
    q = bmd * t - 2.0 * np.log(one_m_ge / one_m_g)
    k_c = kappa * theta / sigma**2
    r_d = (1.0 - e) / one_m_ge
    p_d = bmd / sigma**2
    log_phi: ComplexArray = k_c * q + p_d * r_d * v0
    if not gradient:
        return log_phi, None
    # kappa, sigma and rho act through beta and d (sigma also directly). Every derivative
    # below is linear in (dbeta, dd); carry the two coefficients of each, so the chain rule
    # costs a few passes over the nodes rather than a few per parameter.
    bpd2 = bpd * bpd
    g1, g2 = 2.0 * d / bpd2, -2.0 * beta / bpd2  # dg
    e2 = -t * e  # de = e2 dd
    a1, a2 = -e * g1, -(e * g2 + g * e2)  # d(1 - g e)
    inv_a, inv_b = 1.0 / one_m_ge, 1.0 / one_m_g
    q1 = t - 2.0 * (a1 * inv_a + g1 * inv_b)
    q2 = -t - 2.0 * (a2 * inv_a + g2 * inv_b)
    one_m_e_a2 = (1.0 - e) * inv_a * inv_a
    r1, r2 = -one_m_e_a2 * a1, -e2 * inv_a - one_m_e_a2 * a2
    inv_s2 = 1.0 / sigma**2
    l1 = k_c * q1 + v0 * (r_d * inv_s2 + p_d * r1)
    l2 = k_c * q2 + v0 * (p_d * r2 - r_d * inv_s2)
    via_beta = l1 + l2 * beta / d  # d ln phi / d beta, with d following beta
    grad = np.empty((5, *u.shape), complex)
    grad[0] = p_d * r_d
    grad[1] = via_beta + theta * inv_s2 * q
    grad[2] = kappa * inv_s2 * q
    grad[3] = (-rho * iu) * via_beta + l2 * sigma * s2 / d - (2.0 / sigma) * (
        k_c * q + v0 * p_d * r_d)
    grad[4] = (-sigma * iu) * via_beta
    return log_phi, grad


class SurfacePricer:
    """Undiscounted calls (``F = 1``) at fixed quotes ``k = ln(K/F)``, ``t``, for many params.

    Parameters
    ----------
    k, t : ndarray, shape (m,)
        Log-moneyness and time to expiry of each quote.
    """

    def __init__(self, k: FloatArray, t: FloatArray) -> None:
        self.k, self.t = k, t
        self.strike = np.exp(k)
        self.expiries, self.inverse = np.unique(t, return_inverse=True)
        inverse = self.inverse
        self.groups = [np.flatnonzero(inverse == i) for i in range(self.expiries.size)]
        self.max_abs_x = np.array([float(np.max(np.abs(k[g]))) for g in self.groups])
        self.ranges = [(0.0, 0) for _ in self.groups]
        self.matrices: list[FloatArray] = [np.empty((0, 0)) for _ in self.groups]
        self.group_nodes: list[FloatArray] = [np.empty(0) for _ in self.groups]
        self.u = np.empty(0, complex)  # u - i/2, where the Lewis integrand takes phi
        self.u_t = np.empty(0)
        self.u2 = np.empty(0)  # u^2 + 1/4
        self.offsets = np.zeros(len(self.groups) + 1, int)

    def _ensure(self, p: Params, var_cv: FloatArray) -> bool:
        """Rebuild the nodes of every expiry whose current ones do not suit ``p`` (a
        shorter range, wider panels, or far more nodes than ``p`` needs); False, with
        nothing changed, when the nodes ``p`` needs are over the caps."""
        plan: dict[int, tuple[float, int]] = {}
        for i, t_i in enumerate(self.expiries):
            need_u, need_panels = node_range(float(t_i), float(self.max_abs_x[i]), p,
                                             float(var_cv[i]))
            have_u, have_panels = self.ranges[i]
            if (have_panels and need_u <= have_u and have_u / have_panels <= need_u / need_panels
                    and have_panels <= _SHRINK * _MARGIN * need_panels):
                continue
            plan[i] = (need_u * _MARGIN, int(np.ceil(need_panels * _MARGIN * _MARGIN)))
        if not plan:
            return True
        panels = [plan[i][1] if i in plan else r[1] for i, r in enumerate(self.ranges)]
        counts = np.array(panels) * PANEL_NODES
        sizes = np.array([g.size for g in self.groups])
        if counts.sum() > MAX_NODES or 2 * int(counts @ sizes) > MAX_MATRIX_ENTRIES:
            return False
        for i, (u_max, n_panels) in plan.items():
            u, w = nodes(u_max, n_panels)
            xu = np.outer(-self.k[self.groups[i]], u)  # x = ln(F/K) = -k
            scale = w / (u * u + 0.25)
            # [cos | -sin] (x u) w / (u^2 + 1/4): Re[e^{i u x} K] = cos K_r - sin K_i
            self.matrices[i] = np.hstack([np.cos(xu) * scale, -np.sin(xu) * scale])
            self.ranges[i] = (u_max, n_panels)
            self.group_nodes[i] = u
        self.offsets = np.cumsum([0] + [u.size for u in self.group_nodes])
        u = np.concatenate(self.group_nodes)
        self.u = u - 0.5j
        self.u_t = np.repeat(self.expiries, np.diff(self.offsets))
        self.u2 = u * u + 0.25
        return True

    @property
    def node_count(self) -> int:
        """Quadrature nodes now cached, all expiries together."""
        return int(self.u.size)

    def prices(self, p: Params, gradient: bool = False
               ) -> tuple[FloatArray, FloatArray | None]:
        """Call prices, shape (m,), and (if asked) their derivatives in ``p``, shape (5, m);
        all NaN when ``p`` needs more quadrature work than the caps allow."""
        var_cv = expected_total_variance(self.expiries, p)
        if not self._ensure(p, var_cv):
            nan = np.full(self.k.size, np.nan)
            return nan, (np.full((5, self.k.size), np.nan) if gradient else None)
        log_phi, dlog_phi = log_cf(self.u, self.u_t, p, gradient)
        phi = np.exp(log_phi)
        black_cf = np.exp(-0.5 * np.repeat(var_cv, np.diff(self.offsets)) * self.u2)
        # Columns: the control-variate kernel, then d phi / d p (the kernel's gradient).
        cols = [black_cf - phi] if dlog_phi is None else [black_cf - phi, *(-phi * dlog_phi)]
        kernel = np.stack(cols, axis=-1)
        stacked = np.concatenate([kernel.real, kernel.imag])  # (2 n_u, ncol), both halves
        integral = np.empty((self.k.size, kernel.shape[1]))
        for i, g in enumerate(self.groups):
            lo, hi = self.offsets[i], self.offsets[i + 1]
            n_u = self.u.size
            block = np.concatenate([stacked[lo:hi], stacked[n_u + lo:n_u + hi]])
            integral[g] = self.matrices[i] @ block
        root_k_over_pi = np.sqrt(self.strike) / np.pi
        black = black76.price(1.0, self.strike, self.t, np.sqrt(var_cv[self.inverse] / self.t),
                              True)
        price: FloatArray = black + root_k_over_pi * integral[:, 0]
        if dlog_phi is None:
            return price, None
        dprice: FloatArray = (root_k_over_pi[:, None] * integral[:, 1:]).T
        return price, dprice
