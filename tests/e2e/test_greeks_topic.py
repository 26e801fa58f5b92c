"""`kafka.greeks_topic`: per-instrument vol and deltas published beside the surfaces."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from streamer.core import black76
from streamer.sinks.ticks import decode_greeks
from streamer.types import InstrumentGreeks

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]


async def _read(bootstrap: str, topic: str) -> list[tuple[bytes, InstrumentGreeks]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    out = []
    try:
        await consumer.topics()
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        end = await consumer.end_offsets(parts)
        for tp, offset in (await consumer.beginning_offsets(parts)).items():
            consumer.seek(tp, offset)
        remaining = {tp for tp in parts if end[tp] > 0}
        deadline = time.monotonic() + 30
        while remaining and time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(*remaining, timeout_ms=1000)).items():
                out += [(r.key or b"", decode_greeks(r.value or b"")) for r in records]
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return out


async def test_greeks_topic_carries_every_live_option_with_consistent_deltas(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = f"greeks.{os.getpid()}.{time.monotonic_ns()}"
    env = dict(os.environ, STREAMER_KAFKA__BOOTSTRAP_SERVERS=kafka_bootstrap,
               STREAMER_KAFKA__ENABLE_IDEMPOTENCE="false", STREAMER_METRICS__PORT="0",
               STREAMER_KAFKA__SURFACE_TOPIC=f"{topic}.surface",
               STREAMER_KAFKA__GREEKS_TOPIC=topic)
    with (tmp_path / "run.log").open("wb") as log:
        code = subprocess.run(
            [sys.executable, "-m", "streamer.cli", "run", "--config", "config.yaml",
             "--speed", "40", "--duration", "6"], env=env, cwd=ROOT, stdout=log,
            stderr=subprocess.STDOUT, timeout=120).returncode
    assert code == 0, (tmp_path / "run.log").read_text()[-2000:]
    records = await _read(kafka_bootstrap, topic)
    latest = {key: g for key, g in records}
    assert len(latest) > 300  # the bundled chains have 756 options; expiring ones drop out
    assert all(key.decode() == g.instrument for key, g in records)
    for g in latest.values():
        assert g.vol > 0
        assert g.forward > 0
        assert (0.0 <= g.delta_sticky_strike <= 1.0) if g.is_call else (
            -1.0 <= g.delta_sticky_strike <= 0.0)
        t = (g.expiry_ts_ms - g.exchange_ts_ms) / (365.0 * 86_400_000.0)
        black = float(black76.delta(g.forward, g.strike, t, g.vol, g.is_call))
        assert math.isclose(g.delta_sticky_strike, black, abs_tol=1e-9)  # sticky strike = Black
        assert g.vega >= 0
        assert g.gamma >= 0
        assert np.isfinite(g.delta_sticky_moneyness)
