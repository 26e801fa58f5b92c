"""examples/market_maker.py prints a quote grid per surface from a real broker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.client.test_subscriber import create_topic, producer

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).parents[2] / "examples" / "market_maker.py"


def test_the_market_maker_example_prints_the_latest_grid_per_key(
        kafka_bootstrap: str, unique_topic: Callable[[str], str]) -> None:
    topic = unique_topic("surface")

    async def publish() -> None:
        await create_topic(kafka_bootstrap, topic)
        async with producer(kafka_bootstrap) as send:
            for underlying, seq in [("BTC", 1), ("ETH", 3), ("BTC", 2)]:
                await send(topic, underlying, seq)

    asyncio.run(publish())
    env = dict(os.environ, STREAMER_KAFKA__BOOTSTRAP_SERVERS=kafka_bootstrap)
    child = subprocess.run([sys.executable, str(EXAMPLE), "--topic", topic, "--count", "2",
                            "--tenors", "30"], env=env, capture_output=True, text=True,
                           timeout=60, check=False)
    assert child.returncode == 0, child.stderr
    grids = child.stdout.strip().split("\n\n")
    assert [g.splitlines()[0].split(" model")[0] for g in grids] == [
        "deribit:BTC seq=2", "deribit:ETH seq=3"]
    header, forwards, *rows = grids[0].splitlines()[1:]
    assert header.split() == ["strike", "2024-12-08", "2024-12-29", "2025-03-02", "2025-06-01",
                              "30d"]
    assert forwards.split()[0] == "forward"
    assert len(rows) == 11
    assert all(0 < float(v) < 200 for row in rows for v in row.split()[1:])
