"""The SVI fit's rows and pick in C (``_svi_rows.h``) against the numpy paths they replace.

The contract (streamer/core/models/svi_lm.py): the same bits. The chain's rows are
``svi._clean_all`` + ``svi._pad`` (with ``band.make_band``, the reference shared with SABR)
on every usable cell, and weightless padding; the pick is ``svi._pick`` (``_cost_at`` and
the lexsort of each slice's starts). Checked on random chains and on the edges a real
chain reaches only now and then: one-quote slices, ask-only quotes, NaN bid IVs, zero
weights, slices of very different sizes, banded and mid-only slices mixed, bad inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from streamer.core.models import svi, svi_lm

NAN = float("nan")
Chain = tuple[list[Any], list[Any], list[Any], list[Any], list[Any], list[Any]]


def _slice(rng: np.random.Generator, n: int, t: float) -> tuple[Any, ...]:
    k = np.sort(rng.uniform(-0.6, 0.5, n))
    p = svi.SVIParams(a=0.04 * t, b=0.1 * np.sqrt(t), rho=-0.3, m=0.02, sigma=0.1)
    iv = np.sqrt(svi.total_variance(k, p) / t) + rng.normal(0.0, 0.004, n)
    half = rng.choice([0.0, 0.001, 0.01, 0.04], n) * rng.uniform(0.5, 1.5, n)
    return k, iv, iv - half, iv + half


def _random_chain(seed: int, sizes: list[int] | None = None, banded: bool = True) -> Chain:
    rng = np.random.default_rng(seed)
    sizes = sizes or [int(rng.integers(1, 70)) for _ in range(8)]
    ks, ivs, ts, ws, bids, asks = [], [], [], [], [], []
    for n in sizes:
        t = float(rng.uniform(0.005, 1.5))
        k, iv, bid, ask = _slice(rng, n, t)
        bid[rng.random(n) < 0.15] = NAN  # ask-only quotes
        ask[rng.random(n) < 0.05] = NAN  # bid-only quotes
        bid[rng.random(n) < 0.05] = -0.01  # a bid IV that is no IV
        iv[rng.random(n) < 0.05] = NAN  # unusable quotes
        w = rng.choice([0.0, 0.5, 1.0, 2.0], n)  # zero weights among them
        ks.append(k), ivs.append(iv), ts.append(t), ws.append(w)
        bids.append(bid if banded else None), asks.append(ask if banded else None)
    return ks, ivs, ts, ws, bids, asks


def _edge_chain() -> Chain:
    """Every slice an edge: see each comment."""
    rng = np.random.default_rng(99)
    ks, ivs, ts, ws, bids, asks = (list(x) for x in _random_chain(5, [12] * 11))
    ks[0], ivs[0], ws[0], bids[0], asks[0] = (x[:1] for x in (ks[0], ivs[0], ws[0], bids[0],
                                                               asks[0]))  # one quote
    bids[1] = np.full(12, NAN)  # ask-only throughout: no half spread to take a median of
    bids[2] = asks[2] = None  # mids only, among banded slices
    bids[3] = None  # asks alone
    ws[4] = np.zeros(12)  # no weight anywhere
    ts[5] = -1.0  # a bad time to expiry
    ivs[6] = ivs[6][:-1]  # sizes differ
    ks[7][[2, 5]] = [np.inf, NAN]  # unusable k
    k, iv, bid, ask = _slice(rng, 150, 0.3)  # long: numpy's pairwise sums recurse
    ks[8], ivs[8], ws[8], bids[8], asks[8] = k, iv, np.ones(150), bid, ask
    ws[9] = -np.ones(12)  # negative weights: unusable
    ks[10] = list(ks[10])  # not an array: taken as _clean_all takes it
    return ks, ivs, ts, ws, bids, asks


def _chains(chain: Chain, numpy_path: Any) -> tuple[Any, Any]:
    ks, ivs, ts, ws, bids, asks = chain
    args = (ks, ivs, ts, ws, bids, asks, svi.OBJECTIVE)
    return svi._chain(*args), numpy_path(lambda: svi._chain(*args))


def _assert_same_rows(got: Any, want: Any) -> None:
    (c, reasons), (r, want_reasons) = got, want
    assert reasons == want_reasons
    if r is None:
        assert c is None
        return
    for name in ("k", "iv", "t", "sqrt_w", "valid", "n_valid", "padded", "target"):
        np.testing.assert_array_equal(getattr(c, name), getattr(r, name), err_msg=name)
    for a, b in zip((*c.k_range, *c.priors), (*r.k_range, *r.priors), strict=True):
        np.testing.assert_array_equal(a, b)
    for name, a, b in zip(c.band._fields, c.band, r.band, strict=True):
        np.testing.assert_array_equal(a[c.valid], b[r.valid], err_msg=name)
    assert np.all(c.band.band_w[~c.valid] == 0)
    assert np.all(c.band.pull_w[~c.valid] == 0)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("banded", [True, False])
def test_random_chains_give_the_numpy_rows_bit_for_bit(kernels: svi_lm.Kernels,
                                                        numpy_path: Any, seed: int,
                                                        banded: bool) -> None:
    _assert_same_rows(*_chains(_random_chain(seed, banded=banded), numpy_path))


def test_edge_slices_give_the_numpy_rows_and_reasons(kernels: svi_lm.Kernels,
                                                     numpy_path: Any) -> None:
    got, want = _chains(_edge_chain(), numpy_path)
    _assert_same_rows(got, want)
    reasons = got[1]
    assert reasons[0] == "need >= 5 valid points, got 1"
    assert reasons[5] == "bad time to expiry -1.0"
    assert reasons[6].startswith("k, iv, weights, bid and ask IVs differ in size")
    assert reasons[9] == "need >= 5 valid points, got 0"


def test_a_chain_with_no_usable_slice_has_no_rows(kernels: svi_lm.Kernels,
                                                  numpy_path: Any) -> None:
    got, want = _chains(_random_chain(3, [3, 4]), numpy_path)
    assert want[0] is None
    assert got == (None, want[1])


def _starts(chain: Any, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Three starts a slice, the last a copy of the first (a tie), plus one that makes w
    negative and one of NaN for slice 0."""
    n = chain.k.shape[0]
    seeds = svi._seed_grid(chain, 2)
    theta = np.concatenate([seeds, seeds[:, :1]], axis=1).reshape(-1, 5)
    theta = theta * rng.uniform(0.95, 1.05, theta.shape)
    theta[2::3] = theta[0::3]
    bad = np.array([[-5.0, 0.0, 0.0, 0.0, 0.0], [NAN] * 5])
    owner = np.concatenate([np.repeat(np.arange(n), 3), [0, 0]])
    return np.concatenate([theta, bad]), owner


@pytest.mark.parametrize("seed", range(4))
def test_the_pick_is_numpys_cost_rmse_and_choice_bit_for_bit(kernels: svi_lm.Kernels,
                                                             seed: int) -> None:
    ks, ivs, ts, ws, bids, asks = _edge_chain() if seed == 0 else _random_chain(seed)
    chain, _ = svi._chain(ks, ivs, ts, ws, bids, asks, svi.OBJECTIVE)
    theta0, owner = _starts(chain, np.random.default_rng(seed))
    res = svi_lm.refine(kernels, chain.k, chain.band, 1.0 / chain.t, chain.priors, theta0,
                        owner, max_iter=3, tol=svi.TOL, sigma_prior=svi.SIGMA_PRIOR,
                        w_floor=svi._W_FLOOR)
    got = svi_lm.pick(kernels, chain.k, chain.iv, chain.valid, chain.band, chain.t,
                      chain.priors, chain.n_valid, owner, res, w_floor=svi._W_FLOOR,
                      sigma_prior=svi.SIGMA_PRIOR)
    np.testing.assert_array_equal(got, svi._pick(chain, owner, res))


def test_refining_rows_by_owner_is_refining_the_rows_taken(kernels: svi_lm.Kernels) -> None:
    chain, _ = svi._chain(*_random_chain(11), svi.OBJECTIVE)
    theta0, owner = _starts(chain, np.random.default_rng(11))
    taken = chain.rows(owner)

    def refine(c: Any, rows: Any) -> Any:
        return svi_lm.refine(kernels, c.k, c.band, 1.0 / c.t, c.priors, theta0, rows,
                             max_iter=20, tol=svi.TOL, sigma_prior=svi.SIGMA_PRIOR,
                             w_floor=svi._W_FLOOR)
    for a, b in zip(refine(chain, owner), refine(taken, None), strict=True):
        np.testing.assert_array_equal(a, b)


def test_edge_chains_fit_alike_on_both_paths(kernels: svi_lm.Kernels, numpy_path: Any) -> None:
    ks, ivs, ts, ws, bids, asks = _edge_chain()
    got = svi.calibrate_chain(ks, ivs, ts, ws, bid_ivs=bids, ask_ivs=asks)
    want = numpy_path(lambda: svi.calibrate_chain(ks, ivs, ts, ws, bid_ivs=bids, ask_ivs=asks))
    assert [(f.status, f.message) for f in got] == [(f.status, f.message) for f in want]
    for a, b, k in zip(got, want, ks, strict=True):
        k = np.asarray(k)[np.isfinite(k)]
        if a.ok:
            np.testing.assert_allclose(svi.total_variance(k, a.params),
                                       svi.total_variance(k, b.params), rtol=1e-6, atol=1e-9)


def test_the_numpy_path_fits_a_slice_missing_one_side_among_banded_ones(numpy_path: Any
                                                                         ) -> None:
    ks, ivs, ts, _, bids, asks = _random_chain(4, [20, 20])
    bids[1] = None  # asks alone: once a failure to stack the bids
    fits = numpy_path(lambda: svi.calibrate_chain(ks, ivs, ts, bid_ivs=bids, ask_ivs=asks))
    assert [f.ok for f in fits] == [True, True]


def test_the_row_kernels_refuse_bad_input_with_a_clear_error(kernels: svi_lm.Kernels) -> None:
    k = np.linspace(-0.2, 0.2, 6)
    one = svi_lm.Quotes([k], [k + 0.5], [None], [None], [None])
    with pytest.raises(TypeError):
        svi_lm.usable_counts(kernels, one._replace(k=[[0.1] * 6]), np.ones(1))  # a list
    with pytest.raises(ValueError, match="ks: expected contiguous items of float64"):
        svi_lm.usable_counts(kernels, one._replace(k=[k.astype(np.float32)]), np.ones(1))
    with pytest.raises(ValueError, match="ks: expected 2 slices"):
        svi_lm.usable_counts(kernels, one, np.ones(2))  # two times, one slice
    for keep, width, t in (([0], 5, 1.0), ([1], 6, 1.0), ([0], 6, -1.0)):  # too narrow, no
        with pytest.raises(ValueError, match="keep: expected slices"):  # slice 1, bad time
            svi_lm.chain_rows(kernels, one, np.full(1, t), keep, width, svi.OBJECTIVE)
    n, m = 2, 4
    cells = [np.zeros((n, m))] * 8 + [np.zeros((n, m), np.bool_)] + [np.ones(n)] * 6
    tail = [np.zeros((n, 5)), np.zeros((n, 2)), np.zeros(n), np.zeros(n, np.int64),
            np.zeros(n, np.int64), np.zeros(n, np.bool_), np.zeros((n, 10)), 1e-12, 1.0]
    for owner in (np.array([0, 2]), np.array([0, 1], np.int32)):  # out of range, int32
        with pytest.raises(ValueError, match="owner: expected"):
            kernels.pick(*cells, owner, *tail)
