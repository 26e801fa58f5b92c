"""The bounded listing every listing session (Deribit, Bybit) subscribes from."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest

from streamer.sources.deribit.protocol import parse_instrument_name
from streamer.sources.listing import INSTRUMENT_CAP, Listings
from tests.sources.deribit_replay import all_channels, running, wait_until
from tests.sources.golden import write_capture_tickfile


class _Sink:
    def __init__(self) -> None:
        self.rejects: Counter[str] = Counter()

    def on_reject(self, venue: str, reason: str) -> None:
        self.rejects[reason] += 1


NAMES = {"BTC-27MAR26-90000-C", "BTC-27MAR26-80000-P", "BTC-6FEB26-95000-C",
         "BTC-6FEB26-90000-P", "BTC-25DEC26-100000-C", "BTC-30JAN26-92000-C"}


def test_over_the_cap_the_nearest_expiries_are_kept_and_the_rest_counted(
        caplog: pytest.LogCaptureFixture) -> None:
    sink = _Sink()
    listings = Listings("deribit", sink, parse_instrument_name,  # type: ignore[arg-type]
                        max_instruments=3)
    with caplog.at_level(logging.WARNING):
        listings.update("BTC", NAMES)
        listings.update("BTC", NAMES)  # the refresh: counted again, said once
    assert listings.names() == {"BTC-30JAN26-92000-C", "BTC-6FEB26-90000-P",
                                "BTC-6FEB26-95000-C"}
    assert sink.rejects == Counter({INSTRUMENT_CAP: 6})
    said = [r.getMessage() for r in caplog.records if "over the cap" in r.getMessage()]
    assert said == ["deribit: 6 BTC options listed, over the cap of 3 "
                    "(venues[].max_instruments): subscribing the nearest expiries only"]


def test_an_empty_answer_keeps_the_known_options_and_a_currency_has_its_own_cap() -> None:
    sink = _Sink()
    listings = Listings("deribit", sink, parse_instrument_name,  # type: ignore[arg-type]
                        max_instruments=10)
    listings.update("BTC", NAMES)
    listings.update("ETH", {"ETH-27MAR26-3000-C"})
    listings.update("BTC", set())
    assert listings.names() == NAMES | {"ETH-27MAR26-3000-C"}
    assert sink.rejects == Counter()


@pytest.mark.integration
async def test_a_session_subscribes_no_more_options_a_currency_than_its_cap(
        tmp_path: Path) -> None:
    rows = write_capture_tickfile(tmp_path / "capture.ndjson")
    tickers = [c for c in all_channels(rows) if c.startswith("ticker.")]
    assert len(tickers) == 10
    async with running(tmp_path / "capture.ndjson", max_instruments=2) as (server, _, sink):
        await wait_until(lambda: sink.connected == [True], "subscribed")
        subscribed = [c for c in server.stats.subscriptions if c.startswith("ticker.")]
    per_currency = Counter(c.split(".")[1].split("-")[0] for c in subscribed)
    assert per_currency
    assert max(per_currency.values()) <= 2
    assert sink.rejects["instrument_cap"] == 10 - len(subscribed)


def test_okx_follows_no_more_options_a_family_than_its_cap_and_counts_each_once() -> None:
    """A real OKX summary lists 64 BTC options: with a cap of 10 the ten nearest expiries
    are queued to subscribe, the other 54 counted once, not again on the next summary."""
    from streamer.sources.okx.instruments import parse_instrument_name as okx_name
    from streamer.sources.okx.protocol import Listed, OkxDecoder
    from streamer.sources.okx.session import OkxSession
    from tests.sources.venue_support import DATA

    summary = (DATA / "okx_opt_summary_BTC-USD_2023-12-01T000000Z.json").read_bytes()
    listed = OkxDecoder().decode(summary, 0).result
    assert isinstance(listed, Listed)
    sink = _Sink()
    session = OkxSession("ws://127.0.0.1:1", ["BTC"], sink, max_instruments=10)  # type: ignore[arg-type]
    session._follow(listed)
    session._follow(listed)
    request = session.tickers.take(100)  # everything queued to subscribe, in one request
    assert request is not None
    op, queued = request
    assert op == "subscribe"
    assert len(queued) == 10
    expiry = {n: okx_name(n).info.expiry_ts_ms for n in listed.instruments}  # type: ignore[union-attr]
    assert max(expiry[n] for n in queued) <= min(expiry[n] for n in set(expiry) - set(queued))
    assert sink.rejects == Counter({INSTRUMENT_CAP: 54})
