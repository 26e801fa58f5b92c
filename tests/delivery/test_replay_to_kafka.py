"""`streamer replay --sink kafka` delivers every surface it computes, in order, and says so.

Real parts: the CLI in a subprocess, the embedded Tansu broker, an aiokafka reader.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from streamer.devtools.embedded_broker import free_port
from streamer.devtools.exchanges import bundled_sample
from streamer.sinks.codec import decode_surface
from streamer.tickfile import TickFileWriter, read_tickfile
from tests.delivery.kafka_read import read_topic

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]


def head_of_sample(tmp_path: Path, lines: int) -> Path:
    out = tmp_path / "head.ndjson.gz"
    with TickFileWriter(out) as writer:
        for line in itertools.islice(read_tickfile(bundled_sample()), lines):
            writer.write(line.received_ts_ns, line.raw)
    return out


def replay(path: Path, sink: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamer.cli", "replay", str(path), "--sink", sink],
        env=dict(os.environ, STREAMER_KAFKA__ENABLE_IDEMPOTENCE="false", **env), cwd=ROOT,
        capture_output=True, text=True, timeout=600)


def closing_line(stderr: str) -> str:
    [line] = [x for x in stderr.splitlines() if x.startswith("streamer replay:")]
    return line


async def test_replay_to_kafka_delivers_every_surface_in_order_and_counts_the_acks(
        tmp_path: Path, kafka_bootstrap: str, unique_topic: Callable[[str], str]) -> None:
    path = head_of_sample(tmp_path, 3000)
    topic = unique_topic("replayed")
    expected = [json.loads(x) for x in replay(path, "stdout").stdout.splitlines()]
    assert len(expected) > 20
    proc = replay(path, "kafka", STREAMER_KAFKA__BOOTSTRAP_SERVERS=kafka_bootstrap,
                  STREAMER_KAFKA__SURFACE_TOPIC=topic)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = await read_topic(kafka_bootstrap, topic)
    # Everything computed is on the topic (today: 2 of 100+, the rest conflated away).
    assert len(records) == len(expected)
    line = closing_line(proc.stderr)
    assert f"published {len(records)} surfaces" in line, line
    assert "FAILED" not in line
    for key in {r["underlying"] for r in expected}:
        mine = [r for r in records if r.key == f"deribit:{key}".encode()]
        assert len({r.partition for r in mine}) == 1  # one key, one partition
        got = [decode_surface(r.value or b"") for r in mine]
        want = [r for r in expected if r["underlying"] == key]
        assert [u.seq for u in got] == list(range(1, len(want) + 1))
        # in the order computed: the same surfaces, one by one
        assert [(u.exchange_ts_ms, u.spot) for u in got] == [
            (r["exchange_ts_ms"], r["spot"]) for r in want]


def test_replay_into_an_unreachable_broker_fails_with_a_closing_line(tmp_path: Path) -> None:
    path = head_of_sample(tmp_path, 3000)
    proc = replay(path, "kafka", STREAMER_KAFKA__BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",
                  STREAMER_KAFKA__REQUEST_TIMEOUT_MS="1000",
                  STREAMER_KAFKA__FLUSH_TIMEOUT_MS="1500")
    assert proc.returncode == 1, proc.stderr[-3000:]
    line = closing_line(proc.stderr)
    assert re.search(r"published 0 surfaces .*\d+ unsent; FAILED: ", line), line
    assert "Traceback" not in proc.stderr
