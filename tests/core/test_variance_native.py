"""The C kernel of the variance index's sums (``_variance_index.c``) against the numpy
reference it shadows (:mod:`streamer.core.variance_index`): an expiry's quotes (random
chains with duplicates, one-sided, crossed, zero and NaN quotes, the two-zero-bids stop,
a single strike) and fitted smiles' grids (raw SVI from quiet to wild, another model's
vols), and the fallback where the kernel is not there.

Every operation is numpy's, in numpy's order, its pairwise sum included: the two agree
bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

from streamer.core import variance_sums
from streamer.core.models.sabr import SABRModel, SABRParams
from streamer.core.models.svi import SVIModel, SVIParams
from streamer.core.variance_index import (
    VixSum,
    grid_sums,
    quoted_sum,
    smile_grids,
    vix_sum,
)
from streamer.core.variance_sums import quoted_variance, smile_variances
from streamer.pipeline.analytics import _QUOTE_FIELDS
from streamer.pipeline.snapshot import quote_columns
from streamer.types import Quote
from tests.core.svi_samples import random_raw_svi

NATIVE = variance_sums._NATIVE
needs_native = pytest.mark.skipif(NATIVE is None, reason="the C kernel was not built")
WIDTHS, POINTS = 10.0, 801  # the analytics' grid


class _Quote:
    """What the sums read of a quote."""

    __slots__ = ("ask", "bid", "call", "strike")

    def __init__(self, strike: float, bid: float, ask: float, call: bool) -> None:
        self.strike, self.bid, self.ask, self.call = strike, bid, ask, call


NAMES = ("strike", "bid", "ask", "call")


def _quotes(rows: np.ndarray) -> list[_Quote]:
    return [_Quote(k, b, a, c == 1.0) for k, b, a, c in rows.T.tolist()]


def _native_quoted(quotes: np.ndarray) -> VixSum | None:
    out = np.empty(4)
    NATIVE.quoted(_quotes(quotes), NAMES, out)
    return variance_sums._as_sum(out)


def _quoted_reference(quotes: np.ndarray) -> VixSum | None:
    with np.errstate(all="ignore"):  # infinite strikes: inf - inf on numpy's path
        return quoted_sum(quotes)


def _assert_same(got: VixSum | None, want: VixSum | None) -> None:
    assert (got is None) == (want is None)
    if got is not None and want is not None:
        assert np.array(got).tobytes() == np.array(want).tobytes()  # bits, NaN and all
        assert got.n_strikes == want.n_strikes


def _random_chain(rng: np.random.Generator) -> np.ndarray:
    """Rows strike, bid, ask, is_call of a chain's quotes, in no order: repeated strikes
    and sides, missing, one-sided, crossed and zero quotes, NaN and infinite strikes."""
    n = int(rng.choice([1, 2, 3, 6, 20, 50, 130, 400]))
    strike = rng.choice(np.arange(1, n + 3), n) * 1000.0
    strike[rng.random(n) < 0.02] = np.nan
    strike[rng.random(n) < 0.01] = np.inf
    is_call = (rng.random(n) < 0.5).astype(np.float64)
    mid = np.abs(rng.standard_normal(n)) * 500 + np.where(is_call == 1, 1.0, 0.5) * strike / 50
    spread = rng.random(n) * 50
    bid, ask = mid - spread, mid + spread
    bid[rng.random(n) < 0.2] = 0.0  # zero bids, single and consecutive
    bid[rng.random(n) < 0.05] = np.nan  # one-sided
    ask[rng.random(n) < 0.05] = np.nan
    crossed = rng.random(n) < 0.05
    bid[crossed], ask[crossed] = ask[crossed] + 1.0, bid[crossed]
    bid[rng.random(n) < 0.02] = -1.0
    return np.array([strike, bid, ask, is_call])


@needs_native
def test_random_chains_agree_bit_for_bit() -> None:
    rng = np.random.default_rng(17)
    seen = {"none": 0, "some": 0}
    for _ in range(3000):
        quotes = _random_chain(rng)
        want = _quoted_reference(quotes)
        _assert_same(_native_quoted(quotes), want)
        seen["none" if want is None else "some"] += 1
    assert min(seen.values()) > 200  # both outcomes exercised


@needs_native
def test_edge_chains_agree() -> None:
    nan = np.nan
    chains = [
        [[100.0], [1.0], [2.0], [1.0]],  # one quote
        [[100.0, 100.0], [1.0, 1.5], [2.0, 2.5], [1.0, 0.0]],  # one strike, both sides
        [[90.0, 100.0, 110.0], [nan, 1.0, nan], [1.0, 2.0, 1.0], [0.0, 1.0, 1.0]],
        [[90.0, 100.0, 110.0], [3.0, 3.0, 3.0], [2.0, 2.0, 2.0], [0.0, 1.0, 0.0]],  # crossed
        [[90.0, 90.0, 100.0, 100.0], [0.0] * 4, [1.0] * 4, [0.0, 1.0, 0.0, 1.0]],  # zero bids
        [[nan, nan, 100.0, 100.0], [1.0] * 4, [2.0] * 4, [0.0, 1.0, 0.0, 1.0]],  # NaN strikes
        [[np.inf, 100.0, 100.0], [1.0] * 3, [2.0] * 3, [0.0, 0.0, 1.0]],
        [[0.0, 0.0, 10.0], [1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [0.0, 1.0, 1.0]],  # K0 = 0
    ]
    for chain in chains:
        quotes = np.array(chain, np.float64)
        _assert_same(_native_quoted(quotes), _quoted_reference(quotes))


def _strip(put_bids: list[float]) -> np.ndarray:
    """A chain at strikes 60..140 (step 10), forward ~ 100, with these put bids at
    90, 80, 70, 60 (calls all bid)."""
    strikes = np.arange(60.0, 141.0, 10.0)
    call_mid = np.maximum(100.0 - strikes, 0.0) + 3.0
    put_mid = np.maximum(strikes - 100.0, 0.0) + 3.0
    put_bid = np.full(strikes.size, 2.0)
    put_bid[[3, 2, 1, 0]] = put_bids
    bids = np.concatenate([call_mid - 1.0, put_bid])
    asks = np.concatenate([call_mid + 1.0, put_mid + 1.0])
    return np.array([np.tile(strikes, 2), bids, asks,
                     np.repeat([1.0, 0.0], strikes.size)])


@needs_native
def test_the_two_zero_bids_stop_agrees() -> None:
    for bids in ([2.0, 2.0, 2.0, 2.0], [0.0, 2.0, 2.0, 2.0], [0.0, 0.0, 2.0, 2.0],
                 [2.0, 0.0, 0.0, 2.0], [2.0, 0.0, 2.0, 0.0]):
        quotes = _strip(bids)
        got, want = _native_quoted(quotes), quoted_sum(quotes)
        _assert_same(got, want)
    full, cut = quoted_sum(_strip([2.0] * 4)), quoted_sum(_strip([0.0, 0.0, 2.0, 2.0]))
    assert full is not None
    assert cut is not None
    assert cut.n_strikes == full.n_strikes - 4  # 90 and 80 skipped, 70 and 60 cut off


def _reference(model: object, params: list, t: np.ndarray, forward: np.ndarray
               ) -> list[VixSum | None]:
    """The numpy path: the model's vols one smile at a time, numpy's grids and sums."""
    atm = np.array([float(model.vol(np.zeros(1), ti, p)[0]) * np.sqrt(ti)  # type: ignore[attr-defined]
                    for ti, p in zip(t, params, strict=True)])
    k = smile_grids(atm, WIDTHS, POINTS)
    vol = np.array([model.vol(row, ti, p)  # type: ignore[attr-defined]
                    for row, ti, p in zip(k, t, params, strict=True)])
    return grid_sums(k, forward[:, None] * np.exp(k), vol, forward, t)


@needs_native
def test_random_svi_smiles_agree_bit_for_bit() -> None:
    rng = np.random.default_rng(29)
    params, t = random_raw_svi(rng, 400, 0.1)
    forward = np.exp(rng.uniform(np.log(1e-2), np.log(1e6), t.size))
    got = smile_variances(SVIModel(), params, t, forward, WIDTHS, POINTS)
    want = _reference(SVIModel(), params, t, forward)
    for g, w in zip(got, want, strict=True):
        _assert_same(g, w)
    assert sum(g is not None for g in got) > 300


@needs_native
def test_extreme_svi_smiles_agree() -> None:
    t = np.array([1 / 8760, 1 / 365, 0.1, 1.0, 3.0, 0.5, 0.5, 0.02, 0.1, 0.1])
    params = [SVIParams(a=1e-5, b=0.02, rho=-0.999, m=0.0, sigma=1e-4),
              SVIParams(a=1e-4, b=0.05, rho=0.999, m=0.01, sigma=1e-3),
              SVIParams(a=0.01, b=2.0, rho=-0.99, m=0.0, sigma=0.01),
              SVIParams(a=0.1, b=3.0, rho=0.995, m=-0.2, sigma=0.05),
              SVIParams(a=2.0, b=1.5, rho=-0.999, m=0.5, sigma=0.1),
              SVIParams(a=0.0, b=10.0, rho=0.0, m=0.0, sigma=1e-6),
              SVIParams(a=0.05, b=0.0, rho=0.0, m=0.0, sigma=0.1),  # flat
              SVIParams(a=1e-6, b=5.0, rho=-1.0, m=0.0, sigma=0.0),  # a kink, one wing flat
              SVIParams(a=-1.0, b=0.1, rho=0.0, m=0.0, sigma=0.1),  # no vol anywhere
              SVIParams(a=np.nan, b=0.1, rho=0.0, m=0.0, sigma=0.1)]
    forward = np.full(t.size, 1e5)
    got = smile_variances(SVIModel(), params, t, forward, WIDTHS, POINTS)
    for g, w in zip(got, _reference(SVIModel(), params, t, forward), strict=True):
        _assert_same(g, w)


@needs_native
def test_the_kernels_grids_are_numpys() -> None:
    params, t = random_raw_svi(np.random.default_rng(5), 50, 0.1)
    rows = variance_sums._raw_svi(SVIModel(), params)
    assert rows is not None
    for points in (POINTS, 2, 1):
        k = np.empty((t.size, points))
        NATIVE.svi_grids(rows, t, WIDTHS, k)
        atm = np.array([float(SVIModel().vol(np.zeros(1), ti, p)[0]) * np.sqrt(ti)
                        for ti, p in zip(t, params, strict=True)])
        assert k.tobytes() == smile_grids(atm, WIDTHS, points).tobytes()


@needs_native
def test_another_models_vols_take_the_kernels_sum() -> None:
    rng = np.random.default_rng(41)
    n = 60
    params = [SABRParams(alpha=float(a), beta=1.0, rho=float(r), nu=float(v))
              for a, r, v in zip(rng.uniform(0.2, 1.5, n), rng.uniform(-0.9, 0.9, n),
                                 rng.uniform(0.1, 3.0, n), strict=True)]
    t = np.exp(rng.uniform(np.log(1 / 365), np.log(2.0), n))
    forward = np.full(n, 5e4)
    model = SABRModel()
    assert variance_sums._raw_svi(model, params) is None
    got = smile_variances(model, params, t, forward, WIDTHS, POINTS)
    for g, w in zip(got, _reference(model, params, t, forward), strict=True):
        _assert_same(g, w)


def test_the_fallback_is_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the kernel every sum takes numpy's path, with the same results."""
    rng = np.random.default_rng(3)
    chains = [_random_chain(rng) for _ in range(200)]
    params, t = random_raw_svi(rng, 20, 0.1)
    forward = np.full(t.size, 3e3)
    quotes = [_quotes(q) for q in chains]

    def run() -> tuple[list, list]:
        with np.errstate(all="ignore"):
            return ([quoted_variance(q, NAMES, quote_columns, 0.1) for q in quotes],
                    smile_variances(SVIModel(), params, t, forward, WIDTHS, POINTS))

    native = run()
    monkeypatch.setattr(variance_sums, "_NATIVE", None)
    fallback = run()
    assert variance_sums._raw_svi(SVIModel(), params) is None
    assert repr(fallback) == repr(native)  # floats by repr: NaN equals NaN
    assert sum(v is not None for v in fallback[0]) > 20


def test_the_quotes_columns_are_each_strikes_last_usable_quote() -> None:
    rng = np.random.default_rng(8)
    chains = [_random_chain(rng) for _ in range(300)]
    with np.errstate(all="ignore"):
        assert (repr([quoted_sum(q) for q in chains])
                == repr([vix_sum(*_columns(q)) for q in chains]))


def _columns(quotes: np.ndarray) -> tuple[np.ndarray, ...]:
    """The per-strike columns of quoted_sum, by a plain loop: strikes once, sorted, each
    side's last usable quote."""
    strikes = np.unique(quotes[0])
    cols = np.full((4, strikes.size), np.nan)
    for k, bid, ask, call in quotes.T:
        if bid >= 0 and ask > 0 and ask >= bid:
            at = np.nonzero((strikes == k) | (np.isnan(strikes) & np.isnan(k)))[0][0]
            side = 0 if call else 1
            cols[side, at], cols[side + 2, at] = 0.5 * (bid + ask), bid
    return (strikes, *cols)


@needs_native
def test_bad_inputs_are_errors_not_crashes() -> None:
    out4, out = np.empty(4), np.empty((1, 4))
    one = [_Quote(100.0, 1.0, 2.0, True)]
    with pytest.raises(TypeError, match="sequence"):
        NATIVE.quoted(3, NAMES, out4)
    with pytest.raises(TypeError, match="4 attribute names"):
        NATIVE.quoted(one, NAMES[:3], out4)
    with pytest.raises(AttributeError):
        NATIVE.quoted(one, ("strike", "bid", "ask", "side"), out4)
    with pytest.raises(TypeError):
        NATIVE.quoted([_Quote(100.0, "1", 2.0, True)], NAMES, out4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="out: expected 4"):
        NATIVE.quoted(one, NAMES, np.empty(3))
    NATIVE.quoted([], NAMES, out4)  # nothing: no sum
    assert out4[3] == 0
    k = np.zeros((1, 5))
    with pytest.raises(ValueError, match="vol: expected 5"):
        NATIVE.smiles(k, k, k, np.zeros((1, 4)), np.ones(1), np.ones(1), out, False)
    with pytest.raises(ValueError, match="k: expected one row per forward"):
        NATIVE.smiles(k, k, k, k, np.ones(2), np.ones(1), out, False)
    with pytest.raises(ValueError, match="params: expected rows of 5"):
        NATIVE.svi_grids(np.zeros(4), np.ones(1), 10.0, k)
    with pytest.raises(ValueError, match="float64"):
        NATIVE.smiles(k.astype(np.float32), k, k, k, np.ones(1), np.ones(1), out, False)
    with pytest.raises(TypeError):
        NATIVE.smiles(k, k, k)
    nothing = np.empty((0, 4))
    NATIVE.smiles(np.zeros((0, 5)), np.zeros((0, 5)), np.zeros((0, 5)), np.zeros((0, 5)),
                  np.zeros(0), np.zeros(0), nothing, False)


def test_real_quotes_take_either_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The analytics' quotes (streamer.types.Quote) by attribute in the kernel, by
    quote_columns on numpy's path: the same variance."""
    rng = np.random.default_rng(23)
    chains = [[Quote(venue="deribit", underlying="BTC", instrument="x", expiry_ts_ms=0,
                     strike=k, is_call=c == 1.0, bid_price=b, ask_price=a,
                     underlying_price=1e5, index_price=1e5, exchange_ts_ms=0,
                     received_ts_ns=0) for k, b, a, c in _random_chain(rng).T.tolist()]
              for _ in range(200)]

    def run() -> str:
        with np.errstate(all="ignore"):
            return repr([quoted_variance(q, _QUOTE_FIELDS, quote_columns, 0.2) for q in chains])

    native = run()
    monkeypatch.setattr(variance_sums, "_NATIVE", None)
    assert run() == native
