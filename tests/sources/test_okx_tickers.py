"""OKX's followed tickers, pure: summaries in, (un)subscribe requests out, no socket.

The replay tests (test_venue_replay_faults.py) watch the same over loopback; here each
rule is one step: a listed option queued once, batches of the batch size, an expiry by
OKX's clock unsubscribing what was sent and dropping what was only queued, a new
connection subscribing everything again, the cap reported once per option.
"""

from __future__ import annotations

from streamer.sources.okx.protocol import Listed
from streamer.sources.okx.tickers import FollowedTickers

FAMILY = "BTC-USD"
DEC01 = [f"BTC-USD-231201-{k}-C" for k in (36000, 37000, 38000)]  # 2023-12-01 08:00 UTC
DEC08 = [f"BTC-USD-231208-{k}-C" for k in (36000, 37000)]
DEC01_MS = 1_701_417_600_000
BEFORE_MS, AFTER_MS = DEC01_MS - 60_000, DEC01_MS


def _listed(names: list[str], ts_ms: int = BEFORE_MS) -> Listed:
    return Listed(instruments=names, family=FAMILY, ts_ms=ts_ms)


def _all(tickers: FollowedTickers, batch: int = 100) -> list[tuple[str, list[str]]]:
    out = []
    while (request := tickers.take(batch)) is not None:
        out.append(request)
    return out


def test_listed_options_are_queued_once_and_sent_in_batches() -> None:
    tickers = FollowedTickers(max_instruments=100)
    assert tickers.follow(_listed(DEC01)).queued
    assert not tickers.follow(_listed(DEC01)).queued  # listed again: already followed
    assert tickers.follow(_listed(DEC01 + DEC08)).queued
    assert _all(tickers, batch=2) == [("subscribe", DEC01[:2]),  # in the order listed
                                      ("subscribe", [DEC01[2], DEC08[0]]),
                                      ("subscribe", DEC08[1:])]
    assert not tickers.queued


def test_an_expiry_by_okxs_clock_unsubscribes_what_was_sent_first() -> None:
    tickers = FollowedTickers(max_instruments=100)
    tickers.follow(_listed(DEC01 + DEC08))
    _all(tickers)
    followed = tickers.follow(_listed(DEC08, ts_ms=AFTER_MS))
    assert followed.queued
    assert [(op, sorted(names)) for op, names in _all(tickers)] == [("unsubscribe", DEC01)]
    assert not tickers.follow(_listed(DEC01, ts_ms=AFTER_MS)).queued  # expired: never again


def test_an_option_expiring_while_only_queued_is_dropped_not_unsubscribed() -> None:
    tickers = FollowedTickers(max_instruments=100)
    tickers.follow(_listed(DEC01 + DEC08))
    tickers.follow(_listed([], ts_ms=AFTER_MS))
    assert _all(tickers) == [("subscribe", DEC08)]


def test_a_new_connection_subscribes_every_listed_option_again() -> None:
    tickers = FollowedTickers(max_instruments=100)
    tickers.follow(_listed(DEC01))
    _all(tickers)
    tickers.new_connection()
    tickers.follow(_listed(DEC01))
    assert _all(tickers) == [("subscribe", DEC01)]


def test_the_cap_keeps_the_nearest_expiries_and_reports_each_left_out_once() -> None:
    tickers = FollowedTickers(max_instruments=3)
    first = tickers.follow(_listed(DEC08 + DEC01))
    assert (sorted(first.over_cap), first.first_over_cap) == (DEC08, True)
    again = tickers.follow(_listed(DEC08 + DEC01))
    assert (again.over_cap, again.first_over_cap, again.queued) == ([], False, False)
    assert [(op, sorted(names)) for op, names in _all(tickers)] == [("subscribe", DEC01)]
