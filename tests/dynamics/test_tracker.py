"""DynamicsTracker on requote streams from known dynamics (tests/dynamics/worlds.py).

The claim under test (issue: smile dynamics): from a day and a half of one-minute
batches, each requoting five strikes per weekly expiry with 0.2 vol point of noise on
every quote, the SSR is recovered within ±0.15 in each world, and the spot-vol beta
has the sign and size the world implies (``beta = SSR * skew``; Bergomi 2016, ch. 2).
The Heston world of worlds.py tabulates only ATM points, so it has no requotes to feed.
"""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest

from streamer.config import DynamicsConfig
from streamer.core import black76
from streamer.core.models.registry import model_for
from streamer.core.models.svi import SVIParams
from streamer.pipeline.dynamics import (
    DynamicsTracker,
    FittedSmile,
    InstrumentMarks,
    instrument_marks,
)
from streamer.pipeline.snapshot import YEAR_MS
from streamer.types import Dynamics, Quote, SurfaceUpdate
from tests.dynamics.worlds import translation_requotes, translation_world

DAYS = DynamicsConfig(half_life_s=7 * 86_400.0, bucket_days=())
N = 2000


def _run(stream: list[tuple[SurfaceUpdate, InstrumentMarks]], config: DynamicsConfig = DAYS
         ) -> tuple[Dynamics, list[Dynamics | None]]:
    tracker = DynamicsTracker(config)
    history = [tracker.update(s, m) for s, m in stream]
    last = history[-1]
    assert last is not None
    return last, history


@pytest.mark.parametrize(("ssr", "regime"), [(0.0, "sticky_moneyness"),
                                             (1.0, "sticky_strike"), (2.0, "local_vol")])
def test_a_week_of_surfaces_recovers_the_ssr_of_each_world(ssr: float, regime: str) -> None:
    result, history = _run(translation_requotes(ssr, n=N, seed=1))
    assert result.ssr == pytest.approx(ssr, abs=0.15)
    assert result.ssr_low < ssr < result.ssr_high
    assert result.ssr_high - result.ssr_low < 0.3
    assert result.regime == regime
    assert result.ssr_n_obs > 10_000
    # beta = SSR * skew, the skew averaged over the week (it moves with the smile).
    mean_skew = float(np.mean([d.atm_skew for d in history if d is not None]))
    assert -0.6 < mean_skew < -0.2
    assert result.spot_vol_beta == pytest.approx(ssr * mean_skew, abs=0.08)
    assert result.fixed_strike_beta == pytest.approx((ssr - 1) * mean_skew, abs=0.08)
    if ssr > 0:
        assert result.spot_vol_beta < -0.2  # put skew: vol up when spot down
    else:
        assert abs(result.spot_vol_beta) < 0.06
    assert 0.0 <= result.r2 < 1.0


def test_a_skew_that_changes_sign_keeps_the_ssr_and_a_finite_fixed_strike_beta() -> None:
    # Under sticky strike a rising spot walks the ATM point into the smile's upturn: with
    # rho = -0.05 and spot at 120% a year the 30-day skew crosses zero along this path.
    result, history = _run(translation_requotes(1.0, n=N, seed=4, rho=-0.05, annual_vol=1.2))
    skews = [d.atm_skew for d in history if d is not None]
    assert min(skews) < -0.05
    assert max(skews) > 0.05
    assert result.ssr == pytest.approx(1.0, abs=0.15)
    late = [d for d in history[len(history) // 2:] if d is not None]
    assert all(math.isfinite(d.fixed_strike_beta) for d in late)
    assert max(abs(d.fixed_strike_beta) for d in late) < 0.1  # (SSR - 1) * skew ~ 0


def test_buckets_report_each_tenor_with_the_reference_on_top() -> None:
    result, _ = _run(translation_requotes(2.0, n=1000, seed=3),
                     DynamicsConfig(bucket_days=(7.0, 30.0, 90.0, 400.0)))
    assert result.tenor_days == 30.0
    assert [b.tenor_days for b in result.by_expiry] == [7.0, 30.0, 90.0]  # 400 d not listed
    assert all(b.by_expiry == [] for b in result.by_expiry)
    main = msgspec.structs.replace(result, by_expiry=[])
    assert result.by_expiry[1] == main
    for bucket in result.by_expiry:
        assert bucket.n_obs > 30
        assert bucket.ssr == pytest.approx(2.0, abs=0.5)


def test_nothing_is_published_until_the_reference_tenor_is_bracketed() -> None:
    surfaces = translation_world(1.0, n=5, seed=4)
    short = [msgspec.structs.replace(s, slices=[x for x in s.slices if x.t < 20 / 365])
             for s in surfaces]
    tracker = DynamicsTracker()
    assert [tracker.update(s) for s in short] == [None] * 5
    first = tracker.update(surfaces[0])
    assert first is not None
    assert first.n_obs == 0
    assert math.isnan(first.ssr)
    assert first.regime == "unknown"
    assert first.atm_vol == pytest.approx(0.55, abs=0.05)


def test_fallback_and_stale_slices_are_ignored() -> None:
    surface = translation_world(1.0, n=1, seed=5)[0]
    frozen = [msgspec.structs.replace(x, status="fallback", atm_vol=9.9)
              if 20 < 365 * x.t < 45 else x for x in surface.slices]
    with_fallback = DynamicsTracker().update(msgspec.structs.replace(surface, slices=frozen))
    clean = DynamicsTracker().update(surface)
    assert with_fallback is not None
    assert clean is not None
    assert with_fallback.atm_vol == pytest.approx(clean.atm_vol, abs=0.01)
    assert with_fallback.atm_vol < 1.0


def test_each_underlying_keeps_its_own_history() -> None:
    btc = translation_requotes(2.0, n=1000, seed=6)
    eth = [(msgspec.structs.replace(s, underlying="ETH"), m)
           for s, m in translation_requotes(0.0, n=1000, seed=7)]
    tracker = DynamicsTracker(DAYS)
    last: dict[str, Dynamics | None] = {}
    for a, b in zip(btc, eth, strict=True):
        last["BTC"], last["ETH"] = tracker.update(*a), tracker.update(*b)
    assert last["BTC"] is not None
    assert last["ETH"] is not None
    assert last["BTC"].ssr > 1.5
    assert abs(last["ETH"].ssr) < 0.5
    tracker.reset("synthetic:BTC")
    again = tracker.update(*btc[-1])
    assert again is not None
    assert again.n_obs == 0


def _requoted(marks: InstrumentMarks, *, ts_ms: int, dlnf: float = 0.0, div: float = 0.0
              ) -> InstrumentMarks:
    return marks._replace(exchange_ts_ms=np.full(len(marks.instrument), ts_ms, np.int64),
                          log_forward=marks.log_forward + dlnf, iv=marks.iv + div)


@pytest.mark.parametrize(("dt_ms", "dlnf", "div", "counted"), [
    (1_000, 0.001, 0.0, True),
    (1_000, 0.40, 0.0, False),       # beyond max_move: a data error or a gap
    (400_000, 0.001, 0.0, False),    # beyond max_gap_s (300 s)
    (1_000, 0.001, 0.08, False),     # an IV jump beyond max_iv_move: a bad quote
    (0, 0.001, 0.0, False),          # the same quote again
])
def test_an_observation_needs_a_new_quote_a_sane_move_and_a_short_gap(
        dt_ms: int, dlnf: float, div: float, counted: bool) -> None:
    (surface, marks), = translation_requotes(1.0, n=1, seed=8)
    tracker = DynamicsTracker(DynamicsConfig(bucket_days=()))
    tracker.update(surface, marks)
    later = msgspec.structs.replace(surface, exchange_ts_ms=surface.exchange_ts_ms + dt_ms)
    tracker.update(later, _requoted(marks, ts_ms=surface.exchange_ts_ms + dt_ms, dlnf=dlnf,
                                    div=div))
    state = tracker.state(later)
    assert state is not None
    (tenor,) = state.tenors
    assert (tenor.count > 0) is counted
    # Whatever happened, the newest quote is every instrument's next start.
    assert {m.exchange_ts_ms for m in state.instruments} == {surface.exchange_ts_ms + dt_ms}


def test_min_move_holds_the_start_until_the_forward_has_moved_enough() -> None:
    (surface, marks), = translation_requotes(1.0, n=1, seed=8)
    tracker = DynamicsTracker(DynamicsConfig(bucket_days=(), min_move=0.002))
    tracker.update(surface, marks)
    t0 = surface.exchange_ts_ms
    for step, dlnf in enumerate((0.001, 0.0015, 0.0025), start=1):
        later = msgspec.structs.replace(surface, exchange_ts_ms=t0 + 1000 * step)
        tracker.update(later, _requoted(marks, ts_ms=t0 + 1000 * step, dlnf=dlnf))
        state = tracker.state(later)
        assert state is not None
        assert (state.tenors[0].count > 0) is (dlnf >= 0.002), dlnf
    assert {m.exchange_ts_ms for m in state.instruments} == {t0 + 3000}


def test_old_observations_fade_with_the_half_life() -> None:
    stream = translation_requotes(1.0, n=3, seed=8)
    tracker = DynamicsTracker(DynamicsConfig(bucket_days=(), half_life_s=60.0))
    for surface, marks in stream[:2]:
        tracker.update(surface, marks)
    before = tracker.state(stream[1][0])
    quiet = msgspec.structs.replace(stream[1][0],
                                    exchange_ts_ms=stream[1][0].exchange_ts_ms + 120_000)
    tracker.update(quiet)  # two half-lives later, no requote
    after = tracker.state(quiet)
    assert before is not None
    assert after is not None
    assert after.tenors[0].n == pytest.approx(before.tenors[0].n / 4)
    assert after.tenors[0].count == before.tenors[0].count


def test_published_dynamics_survive_the_wire_with_nans_and_buckets() -> None:
    from streamer.sinks.codec import decode_surface, encode_surface, surface_json_schema

    surfaces = translation_world(1.0, n=3, seed=9)
    tracker = DynamicsTracker()
    dyn = [tracker.update(s) for s in surfaces][-1]
    assert dyn is not None
    assert math.isnan(dyn.ssr)  # too early: NaN, published as null
    assert len(dyn.by_expiry) == 4
    update = msgspec.structs.replace(surfaces[-1], dynamics=dyn)
    for fmt in ("json", "msgpack"):
        back = decode_surface(encode_surface(update, fmt), fmt)
        assert back.dynamics is not None
        assert back.dynamics.by_expiry[0].tenor_days == 7.0
        assert math.isnan(back.dynamics.by_expiry[0].ssr)
        assert back.dynamics.atm_vol == dyn.atm_vol
    props = surface_json_schema()["$defs"]["Dynamics"]["properties"]
    assert {"ssr_low", "ssr_high", "ssr_n_obs", "atm_vol", "atm_skew", "by_expiry",
            "fixed_strike_beta"} <= set(props)


def _quote(strike: float, is_call: bool, vol: float, forward: float, *, spread: float = 0.02,
           bid: float | None = None) -> Quote:
    t = 30 / 365
    lo = float(black76.price(forward, strike, t, vol - spread / 2, is_call))
    hi = float(black76.price(forward, strike, t, vol + spread / 2, is_call))
    return Quote(venue="v", underlying="BTC", instrument=f"{strike:g}{'C' if is_call else 'P'}",
                 expiry_ts_ms=EXPIRY_MS, strike=strike, is_call=is_call,
                 bid_price=lo if bid is None else bid, ask_price=hi, underlying_price=forward,
                 index_price=forward, exchange_ts_ms=EXPIRY_MS - int(t * YEAR_MS),
                 received_ts_ns=0)


EXPIRY_MS = 1_800_000_000_000


def test_marks_are_each_quote_at_its_own_forward_out_of_the_money_near_the_money() -> None:
    model = model_for("svi")
    params = SVIParams(a=0.01, b=0.1, rho=-0.4, m=0.0, sigma=0.2)
    t = 30 / 365
    fit_forward, own = 100_000.0, 101_000.0  # the quote saw a forward 1% above the fit's

    def vol(strike: float) -> float:
        return float(model.vol(np.array([np.log(strike / own)]), t, params)[0])

    quotes = [_quote(k, k >= own, vol(k), own) for k in (90_000.0, 98_000.0, 104_000.0)]
    quotes += [_quote(98_000.0, True, vol(98_000.0), own),     # in the money: left out
               _quote(200_000.0, True, vol(200_000.0), own),   # far wing: left out
               _quote(96_000.0, False, vol(96_000.0), own, bid=0.0)]  # one-sided: left out
    smile = FittedSmile(EXPIRY_MS, t, fit_forward, atm_vol=vol(own), params=params)
    marks = instrument_marks(quotes, [smile], model, moneyness_sd=1.0)
    assert marks.instrument == ["90000P", "98000P", "104000C"]
    strikes = np.array([90_000.0, 98_000.0, 104_000.0])
    k = np.log(strikes / own)
    # the mid of the bid and ask prices, inverted: the vol to within convexity (1e-4)
    assert marks.iv == pytest.approx(model.vol(k, t, params), abs=1e-4)
    assert marks.log_forward == pytest.approx(np.full(3, np.log(own)))
    assert np.sqrt(marks.variance) == pytest.approx(np.full(3, 0.01), abs=2e-4)
    h = 1e-5
    exact = (model.vol(k + h, t, params) - model.vol(k - h, t, params)) / (2 * h)
    assert marks.slope == pytest.approx(exact, rel=1e-5)
    assert instrument_marks(quotes, [], model, moneyness_sd=1.0).instrument == []


def test_marks_of_several_expiries_are_each_expirys_own() -> None:
    """Quotes of three expiries, interleaved: each mark keeps its own expiry's smile (its
    row of the stacked slopes, its forward and ATM vol) and equals, bit for bit, the mark
    of its expiry's quotes alone; a model without stacked rows gives the same marks."""
    model = model_for("svi")
    t = 30 / 365
    smiles, quotes = [], []
    for i, rho in enumerate((-0.6, -0.2, 0.3)):
        params = SVIParams(a=0.01 * (1 + i), b=0.1, rho=rho, m=0.0, sigma=0.2)
        expiry = EXPIRY_MS + i * 86_400_000  # a later expiry: quoted longer before it
        own = 100_000.0 * (1 + 0.01 * i)
        vol = float(model.vol(np.zeros(1), t, params)[0])
        smiles.append(FittedSmile(expiry, t, own, atm_vol=vol, params=params))
        for strike in (94_000.0, 99_000.0, 103_000.0, 108_000.0):
            q = _quote(strike, strike >= own, vol, own)
            quotes.append(msgspec.structs.replace(
                q, expiry_ts_ms=expiry, instrument=f"{i}-{q.instrument}"))
    quotes = quotes[::2] + quotes[1::2]  # the expiries interleaved
    marks = instrument_marks(quotes, smiles[::-1], model, moneyness_sd=3.0)
    assert len(marks.instrument) == len(quotes)
    by_name = dict(zip(marks.instrument, zip(*marks[1:], strict=True), strict=True))
    for smile in smiles:
        alone = instrument_marks([q for q in quotes if q.expiry_ts_ms == smile.expiry_ts_ms],
                                 [smile], model, moneyness_sd=3.0)
        assert len(alone.instrument) == 4
        for name, *values in zip(alone.instrument, *alone[1:], strict=True):
            assert tuple(by_name[name]) == tuple(values)

    class PerSlice:  # the same smiles, one call per expiry
        batched = False
        vol = staticmethod(model.vol)

    per_slice = instrument_marks(quotes, smiles, PerSlice(), moneyness_sd=3.0)
    assert per_slice.instrument == marks.instrument
    assert per_slice.slope == pytest.approx(marks.slope, rel=1e-9)
    assert len(set(np.round(marks.slope, 6))) == len(quotes)  # each its own smile's slope
