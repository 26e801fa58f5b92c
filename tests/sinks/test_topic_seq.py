"""``TopicSeq``, the one owner of the published ``seq``: numbers what is sent, advances
on what is acknowledged, continues after what the topic already holds."""

from __future__ import annotations

from streamer.sinks.kafka import TopicSeq
from tests.sinks.surfaces import make_surface


def test_what_is_sent_is_numbered_per_key_whatever_the_engine_said() -> None:
    seq = TopicSeq()
    batch = [make_surface(seq=42), make_surface(underlying="ETH", seq=7),
             make_surface(seq=43)]
    assert [(u.key, u.seq) for u in seq.stamped(batch)] == [
        ("deribit:BTC", 1), ("deribit:ETH", 1), ("deribit:BTC", 2)]


def test_only_an_acknowledged_surface_advances_its_key() -> None:
    seq = TopicSeq()
    [first] = seq.stamped([make_surface()])
    assert seq.stamped([make_surface()])[0].seq == 1  # not acknowledged: sent again as 1
    seq.acknowledged(first.key, first.seq)
    assert seq.stamped([make_surface()])[0].seq == 2


def test_a_warm_start_continues_after_the_latest_on_the_topic() -> None:
    seq = TopicSeq()
    seq.resume({"deribit:BTC": make_surface(seq=41)})
    seq.acknowledged("deribit:BTC", 3)  # an older acknowledgement never goes back
    assert seq.stamped([make_surface(seq=1)])[0].seq == 42
