"""Every surface the topic holds, read once to its end: for plots, audits and backtests.

::

    updates = await read_history("broker:9092", keys=["deribit:BTC"])

Unlike :class:`~streamer.client.SurfaceSubscriber`, which conflates to the latest
surface per key, this returns each decodable message of the requested keys, from
the beginning of every partition up to the end offsets found at start (messages
appended later are left out), ordered by ``exchange_ts_ms`` (stable: a key's own
updates keep their topic order). The surface topic is compacted, so how far back
that reaches is up to the broker's cleaner: at least the latest surface per key.

Undecodable messages are logged and skipped, tombstones ignored. A missing topic, a
Kafka failure or a read that outlasts ``timeout_s`` raise
:class:`~streamer.errors.BrokerError`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import msgspec

from streamer.errors import BrokerError
from streamer.kafka.errors import broker_errors
from streamer.kafka.reader import (
    Consumer,
    before_end,
    from_beginning,
    started_consumer,
    to_end,
    topic_exists,
)
from streamer.sinks.codec import Format, decode_surface
from streamer.types import SCHEMA_NAME, SurfaceUpdate

log = logging.getLogger(__name__)


async def read_history(bootstrap_servers: str, keys: Iterable[str] | None = None,
                       topic: str = SCHEMA_NAME, *, value_format: Format = "json",
                       timeout_s: float | None = 30.0, **kafka_kwargs: Any
                       ) -> list[SurfaceUpdate]:
    """Every surface of ``keys`` (``None``: every key) up to the topic's end at start.

    Parameters
    ----------
    bootstrap_servers : str
        Comma-separated ``host:port`` list.
    keys : iterable of str, optional
        ``<venue>:<underlying>`` keys to keep.
    topic : str
        The surface topic.
    value_format : {"json", "msgpack"}
        The publisher's ``kafka.value_format``.
    timeout_s : float or None
        Bound on the whole read (``None``: none).
    **kafka_kwargs
        Passed to ``aiokafka.AIOKafkaConsumer`` (TLS/SASL settings, ``client_id``, ...).
    """
    wanted = None if keys is None else {k.encode() for k in keys}
    options: dict[str, Any] = {"enable_auto_commit": False, **kafka_kwargs,
                               "bootstrap_servers": bootstrap_servers}
    with broker_errors(lambda exc: f"reading {topic} from {bootstrap_servers} failed: "
                                   f"{exc!r}"):
        async with started_consumer(options) as consumer:
            try:
                found = await asyncio.wait_for(
                    _read(consumer, topic, wanted, value_format), timeout_s)
            except TimeoutError as exc:
                raise BrokerError(f"reading {topic} took over {timeout_s:g} s") from exc
    return sorted(found, key=lambda u: u.exchange_ts_ms)


async def _read(consumer: Consumer, topic: str, wanted: set[bytes] | None,
                value_format: Format) -> list[SurfaceUpdate]:
    if not await topic_exists(consumer, topic):
        raise BrokerError(f"topic {topic} does not exist")
    ends = await from_beginning(consumer, topic)
    found: list[SurfaceUpdate] = []
    async for records in to_end(consumer, ends):
        for record in records:
            if not before_end(record, ends) or record.key is None or record.value is None:
                continue
            if wanted is not None and record.key not in wanted:
                continue
            try:
                found.append(decode_surface(record.value, value_format))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                log.warning("skipping an undecodable surface %s@%d/%d: %s", record.key,
                            record.partition, record.offset, exc)
    return found
