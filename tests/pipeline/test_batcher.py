"""Batcher: a batch falls due after ``interval_ms`` of receive time or at ``max_quotes``."""

from __future__ import annotations

from streamer.pipeline.batcher import Batcher

MS = 1_000_000


def test_an_empty_batch_is_never_due() -> None:
    batcher = Batcher(interval_ms=250, max_quotes=10)
    assert not batcher.due(10**18)
    assert batcher.due_at_ns() is None


def test_a_batch_falls_due_interval_ms_after_its_first_quote() -> None:
    batcher = Batcher(interval_ms=250, max_quotes=10)
    batcher.add(1_000 * MS)
    batcher.add(1_200 * MS)  # a later quote does not move the batch's start
    assert batcher.due_at_ns() == 1_250 * MS
    assert not batcher.due(1_250 * MS - 1)
    assert batcher.due(1_250 * MS)


def test_a_full_batch_is_due_at_once() -> None:
    batcher = Batcher(interval_ms=250, max_quotes=3)
    for _ in range(2):
        batcher.add(1_000 * MS)
    assert not batcher.due(1_000 * MS)
    batcher.add(1_000 * MS)
    assert batcher.due(1_000 * MS)


def test_a_cut_returns_the_batch_size_and_starts_an_empty_batch() -> None:
    batcher = Batcher(interval_ms=250, max_quotes=10)
    for i in range(4):
        batcher.add(i * MS)
    assert batcher.cut() == 4
    assert batcher.pending == 0
    assert not batcher.due(10**18)
    batcher.add(2_000 * MS)  # the next batch is timed from its own first quote
    assert batcher.due_at_ns() == 2_250 * MS
    assert batcher.cut() == 1
