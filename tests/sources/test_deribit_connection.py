"""A Deribit connection's requests, pure: replies in, bytes out, times passed in.

The loopback tests (test_session.py, test_deribit_session_spec.py) run the same script
against the replay server over real websockets; here each step takes no socket and no
sleep: the order of the requests, their pacing and timeout as deadlines, a channel left
out asked once more then counted, a refused subscribe, a 10028, an unusable
``public/status``, and the instrument refresh.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any

import pytest

from streamer.errors import RateLimited, VenueError, VenueRefused
from streamer.sources.decoded import Decoded
from streamer.sources.deribit.connection import DeribitConnection
from streamer.sources.deribit.protocol import PlatformLocks, parse_instrument_name
from streamer.sources.listing import Listings
from streamer.sources.subscriptions import Subscriptions
from streamer.types import Quote, VenueVolIndex

GAP_S, REFRESH_S, TIMEOUT_S = 0.5, 60.0, 10.0
BTC_CALL, BTC_PUT = "BTC-29MAR24-60000-C", "BTC-29MAR24-60000-P"
FIXED = ["platform_state", "deribit_volatility_index.btc_usd"]


class _Sink:
    def __init__(self) -> None:
        self.rejects: Counter[str] = Counter()

    def on_quote(self, quote: Quote) -> None: ...

    def on_reject(self, venue: str, reason: str) -> None:
        self.rejects[reason] += 1

    def on_vol_index(self, index: VenueVolIndex) -> None: ...

    def on_reconnect(self, venue: str) -> None: ...

    def on_connected(self, venue: str, connected: bool) -> None: ...


class _Run:
    """A connection and the requests it sent, answered by hand."""

    def __init__(self, batch: int = 250) -> None:
        self.sink = _Sink()
        self.lock_changes = 0
        self.locks = PlatformLocks(["BTC"])
        self.conn = DeribitConnection(
            ["BTC"], self.sink, heartbeat_s=10, interval="100ms", refresh_s=REFRESH_S,
            request_gap_s=GAP_S, subscriptions=Subscriptions(batch, ask_again=1),
            listings=Listings("deribit", self.sink, parse_instrument_name),
            locks=self.locks, on_lock_change=self._changed, request_timeout_s=TIMEOUT_S)
        self.now = 0.0
        self.sent: list[dict[str, Any]] = []

    def _changed(self) -> None:
        self.lock_changes += 1

    def start(self) -> dict[str, Any]:
        self.conn.start(self.now)
        return self._one()

    def reply(self, result: Any = None, error: tuple[int, str] | None = None) -> None:
        last = self.sent[-1]["id"]
        decoded = (Decoded(response_id=last, result=result) if error is None else
                   Decoded(response_id=last, error_code=error[0], error_message=error[1]))
        self.conn.on_reply(decoded, self.now)

    def wait(self) -> dict[str, Any]:
        """Let the pause run out; the request it was holding back."""
        assert self.conn.deadline is not None
        self.now = self.conn.deadline
        self.conn.on_timer(self.now)
        return self._one()

    def _one(self) -> dict[str, Any]:
        out = [json.loads(raw) for raw in self.conn.take_outbox()]
        assert len(out) == 1, out
        self.sent += out
        return out[0]

    def answer_and_wait(self, result: Any = None) -> dict[str, Any]:
        self.reply(result)
        return self.wait()

    def listed(self, names: list[str]) -> dict[str, Any]:
        """From the start to the first subscribe of ``names`` (returned)."""
        self.start()
        self.reply("ok")
        self._one()
        return self.answer_and_wait(_instruments(names))

    def subscribed_up(self, listed: list[str]) -> None:
        """From the start to ``up``: heartbeat, one listing, one subscribe, the status."""
        assert self.start()["method"] == "public/set_heartbeat"
        self.reply("ok")
        assert self._one()["method"] == "public/get_instruments"
        subscribe = self.answer_and_wait(_instruments(listed))
        assert subscribe["method"] == "public/subscribe"
        status = self.answer_and_wait(subscribe["params"]["channels"])
        assert status["method"] == "public/status"
        self.reply({"locked": "false", "locked_indices": []})
        assert self.conn.up


def _instruments(names: list[str]) -> list[dict[str, Any]]:
    return [{"instrument_name": n, "is_active": True} for n in names]


def _ticker(name: str) -> str:
    return f"ticker.{name}.100ms"


def test_the_script_asks_in_order_each_answered_before_the_next_and_paced() -> None:
    run = _Run()
    assert run.start() == {"jsonrpc": "2.0", "id": 1, "method": "public/set_heartbeat",
                           "params": {"interval": 10}}
    assert run.conn.deadline == TIMEOUT_S  # waiting on the answer
    run.reply("ok")  # no pause after the heartbeat: the listing goes at once
    listing = run._one()
    assert listing["params"] == {"currency": "BTC", "kind": "option", "expired": False}
    run.reply(_instruments([BTC_PUT, BTC_CALL]))
    assert run.conn.take_outbox() == []  # paced: nothing before the gap is over
    assert run.conn.deadline == GAP_S
    subscribe = run.wait()
    assert subscribe["params"]["channels"] == [*FIXED, _ticker(BTC_CALL), _ticker(BTC_PUT)]
    assert not run.conn.up
    status = run.answer_and_wait(subscribe["params"]["channels"])
    assert status["method"] == "public/status"
    run.reply({"locked": "false", "locked_indices": []})
    assert run.conn.up
    assert run.conn.deadline == run.now + REFRESH_S  # then the refresh
    assert [r["id"] for r in run.sent] == [1, 2, 3, 4]
    assert run.sink.rejects == Counter()


def test_subscribes_go_in_batches_of_the_batch_size() -> None:
    run = _Run(batch=2)
    run.start()
    run.reply("ok")
    run._one()
    first = run.answer_and_wait(_instruments([BTC_CALL, BTC_PUT]))
    second = run.answer_and_wait(first["params"]["channels"])
    assert [first["params"]["channels"], second["params"]["channels"]] == [
        FIXED, [_ticker(BTC_CALL), _ticker(BTC_PUT)]]


def test_a_channel_left_out_is_asked_once_more_then_counted_and_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    run = _Run()
    subscribe = run.listed([BTC_CALL, BTC_PUT])
    confirmed = [c for c in subscribe["params"]["channels"] if c != _ticker(BTC_PUT)]
    again = run.answer_and_wait(confirmed)
    assert again["params"]["channels"] == [_ticker(BTC_PUT)]
    status = run.answer_and_wait([])
    assert status["method"] == "public/status"
    assert run.sink.rejects == Counter(subscribe_rejected=1)
    assert any(f"1 channel(s) not confirmed twice, left out on this connection: "
               f"{_ticker(BTC_PUT)}" in r.getMessage() for r in caplog.records)


def test_a_refused_subscribe_counts_every_channel_and_ends_the_connection_retryably() -> None:
    run = _Run()
    run.listed([BTC_CALL])
    with pytest.raises(VenueRefused, match="error 11050: bad_request") as refused:
        run.reply(error=(11050, "bad_request"))
    assert refused.value.retryable
    assert run.sink.rejects == Counter(subscribe_rejected=3)


def test_too_many_requests_is_a_rate_limit_not_a_refused_subscription() -> None:
    run = _Run()
    run.listed([BTC_CALL])
    with pytest.raises(RateLimited, match="10028"):
        run.reply(error=(10028, "too_many_requests"))
    assert run.sink.rejects == Counter()


def test_a_refused_heartbeat_is_the_venues_error_not_retried() -> None:
    run = _Run()
    run.start()
    with pytest.raises(VenueError) as refused:
        run.reply(error=(10001, "bad interval"))
    assert type(refused.value) is VenueError
    assert not refused.value.retryable


def test_an_unusable_status_keeps_the_locks_as_notified_and_the_connection_comes_up(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    run = _Run()
    subscribe = run.listed([BTC_CALL])
    run.answer_and_wait(subscribe["params"]["channels"])
    run.reply(error=(11000, "no status"))
    assert run.conn.up
    assert run.lock_changes == 0
    assert any("public/status unusable" in r.getMessage() for r in caplog.records)


def test_a_lock_in_force_at_connect_is_reported_by_the_status_answer() -> None:
    run = _Run()
    subscribe = run.listed([BTC_CALL])
    run.answer_and_wait(subscribe["params"]["channels"])
    run.reply({"locked": "partial", "locked_indices": ["btc_usd"]})
    assert (run.conn.up, run.locks.locked, run.lock_changes) == (True, True, 1)


def test_a_request_unanswered_within_the_timeout_raises_timeout_error() -> None:
    run = _Run()
    run.start()
    run.conn.on_timer(TIMEOUT_S - 0.001)  # not yet
    with pytest.raises(TimeoutError):
        run.conn.on_timer(TIMEOUT_S)


def test_a_reply_to_nothing_waited_on_is_ignored() -> None:
    run = _Run()
    run.start()
    run.conn.on_reply(Decoded(response_id=99, result="stray"), 0.0)
    assert run.conn.take_outbox() == []
    run.reply("ok")
    assert run._one()["method"] == "public/get_instruments"


def test_the_refresh_unsubscribes_the_delisted_and_subscribes_the_new_listing() -> None:
    run = _Run()
    run.subscribed_up([BTC_CALL])
    listing = run.wait()  # the refresh, REFRESH_S later
    assert listing["method"] == "public/get_instruments"
    unsubscribe = run.answer_and_wait(_instruments([BTC_PUT]))
    assert unsubscribe == {"jsonrpc": "2.0", "id": unsubscribe["id"],
                           "method": "public/unsubscribe",
                           "params": {"channels": [_ticker(BTC_CALL)]}}
    subscribe = run.answer_and_wait([_ticker(BTC_CALL)])
    assert subscribe["params"]["channels"] == [_ticker(BTC_PUT)]
    run.reply([_ticker(BTC_PUT)])
    assert run.conn.take_outbox() == []
    run.conn.on_timer(run.conn.deadline or 0.0)  # the gap; then the next refresh is due
    assert run.conn.deadline == run.now + GAP_S + REFRESH_S


def test_a_refresh_with_nothing_new_sends_only_the_listing() -> None:
    run = _Run()
    run.subscribed_up([BTC_CALL])
    run.wait()
    run.reply(_instruments([BTC_CALL]))
    run.conn.on_timer(run.conn.deadline or 0.0)
    assert run.conn.take_outbox() == []
    assert run.conn.deadline == run.now + GAP_S + REFRESH_S
