"""The subscription bookkeeping and the rate-limit cooldown, pure: no socket, no sleep.

What the loopback tests check by timing a replay server, checked here step by step:
batch sizes, a left-out channel asked once more then refused (Deribit), refusals kept
until forgotten (Bybit's refresh), delisted channels unsubscribed in batches, and the
cooldown doubling per rate-limited connection and starting over after a clean one.
"""

from __future__ import annotations

import pytest

from streamer.sources.cooldown import Cooldown
from streamer.sources.subscriptions import Subscriptions
from streamer.sources.ws_session import MAX_COOLDOWN_S, RATE_LIMIT_COOLDOWN_S

CHANNELS = [f"ticker.{i}" for i in range(7)]


def _drain(subs: Subscriptions) -> list[list[str]]:
    """Every queued batch, each answered in full."""
    asked = []
    while (batch := subs.next_batch()) is not None:
        asked.append(batch)
        assert subs.answered() == []
    return asked


def test_wanted_channels_are_asked_in_batches_of_the_batch_size_and_once_each() -> None:
    subs = Subscriptions(3)
    assert subs.want(CHANNELS + CHANNELS[:2]) == CHANNELS
    assert _drain(subs) == [CHANNELS[:3], CHANNELS[3:6], CHANNELS[6:]]
    assert subs.subscribed == set(CHANNELS)
    assert subs.want(CHANNELS) == []  # subscribed: never asked twice on a connection
    assert subs.next_batch() is None


def test_a_new_connection_subscribes_everything_again() -> None:
    subs = Subscriptions(250)
    subs.want(CHANNELS)
    _drain(subs)
    subs.new_connection()
    assert subs.subscribed == set()
    assert subs.want(CHANNELS) == CHANNELS


def test_one_request_waits_on_its_answer_at_a_time() -> None:
    subs = Subscriptions(3)
    subs.want(CHANNELS)
    subs.next_batch()
    with pytest.raises(RuntimeError, match="unanswered"):
        subs.next_batch()


def test_a_channel_left_out_is_asked_once_more_alone_then_refused_for_the_connection() -> None:
    subs = Subscriptions(3, ask_again=1)
    subs.want(CHANNELS)
    assert subs.next_batch() == CHANNELS[:3]
    assert subs.answered(missing={CHANNELS[1]}) == []  # not refused yet: asked again
    assert subs.next_batch() == [CHANNELS[1]]  # straight after, before the next batch
    assert subs.answered(missing={CHANNELS[1]}) == [CHANNELS[1]]  # twice: refused
    assert _drain(subs) == [CHANNELS[3:6], CHANNELS[6:]]
    assert subs.refused == {CHANNELS[1]}
    assert subs.want(CHANNELS) == []  # left alone for the rest of the connection
    subs.forget_refused()
    assert subs.want(CHANNELS) == [CHANNELS[1]]


def test_a_channel_confirmed_when_asked_again_is_subscribed() -> None:
    subs = Subscriptions(250, ask_again=1)
    subs.want(CHANNELS)
    subs.next_batch()
    subs.answered(missing=set(CHANNELS[:2]))
    assert subs.next_batch() == CHANNELS[:2]
    assert subs.answered() == []
    assert subs.subscribed == set(CHANNELS)
    assert subs.refused == set()


def test_without_asks_again_a_left_out_channel_is_refused_at_once() -> None:
    subs = Subscriptions(250)  # Bybit's failTopics, Binance
    subs.want(CHANNELS)
    subs.next_batch()
    assert subs.answered(missing={CHANNELS[0], "not.asked"}) == [CHANNELS[0]]
    assert subs.next_batch() is None
    assert subs.subscribed == set(CHANNELS[1:])


def test_a_request_refused_outright_is_returned_and_not_remembered_as_refused() -> None:
    subs = Subscriptions(3)
    subs.want(CHANNELS)
    batch = subs.next_batch()
    assert subs.refused_all() == batch
    assert subs.refused == set()  # the next connection asks for it again
    assert subs.subscribed == set()


def test_delisted_channels_are_unsubscribed_in_batches_and_their_refusals_forgotten() -> None:
    subs = Subscriptions(2, ask_again=1)
    subs.want(CHANNELS[:5])
    assert subs.next_batch() == CHANNELS[:2]
    subs.answered(missing={CHANNELS[0]})
    subs.next_batch()
    subs.answered(missing={CHANNELS[0]})  # refused
    _drain(subs)
    wanted = {CHANNELS[1], CHANNELS[5]}
    gone = subs.delisted(wanted)
    assert gone == [CHANNELS[2:4], CHANNELS[4:5]]
    assert subs.refused == set()  # ticker.0 delisted: a relisting is asked for anew
    for batch in gone:
        subs.unsubscribed(batch)
    assert subs.subscribed == {CHANNELS[1]}
    assert subs.want(sorted(wanted)) == [CHANNELS[5]]


def test_the_cooldown_doubles_per_rate_limited_connection_up_to_its_cap() -> None:
    cooldown = Cooldown(RATE_LIMIT_COOLDOWN_S, MAX_COOLDOWN_S)
    waits = []
    for _ in range(9):
        cooldown.connection_started()
        assert cooldown.asked_s is None
        waits.append(cooldown.rate_limited())
        assert cooldown.rate_limited() == waits[-1]  # told twice: one wait
        cooldown.connection_ended(streamed=True)  # limited after streaming: still doubles
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]


def test_a_connection_that_streamed_unlimited_starts_the_cooldowns_over() -> None:
    cooldown = Cooldown(1.0, 60.0)
    for _ in range(3):
        cooldown.connection_started()
        cooldown.rate_limited()
        cooldown.connection_ended(streamed=False)
    cooldown.connection_started()
    cooldown.connection_ended(streamed=False)  # never streamed: nothing proven
    cooldown.connection_started()
    assert cooldown.rate_limited() == 8.0
    cooldown.connection_ended(streamed=False)
    cooldown.connection_started()
    cooldown.connection_ended(streamed=True)
    assert cooldown.asked_s is None  # the runner's backoff may reset too
    cooldown.connection_started()
    assert cooldown.rate_limited() == 1.0


def test_a_deribit_style_fixed_cooldown_is_the_same_wait_every_time() -> None:
    cooldown = Cooldown(10.0, 10.0)
    for _ in range(3):
        cooldown.connection_started()
        assert cooldown.rate_limited() == 10.0
        cooldown.connection_ended(streamed=False)
