"""Split mode: from ``kill -9`` of a calibrator to its keys' next surface, by the survivor.

Real processes on the embedded broker: one ``streamer ingest`` (the bundled recording at
``--speed 5``, looping) and two ``streamer calibrate`` members of one consumer group over
four partitions. Once both publish, the member that owns ``deribit:BTC`` is killed with
SIGKILL (no goodbye to the group: the coordinator only learns of it when its session
times out), and the clock runs until a BTC surface stamped after the kill arrives on the
surface topic: the survivor's first. Each setting of ``kafka.session_timeout_ms`` /
``heartbeat_interval_ms`` / ``rebalance_timeout_ms`` is measured ``ROUNDS`` times in the
same run. The baseline is aiokafka's own defaults (10 s / 3 s / 300 s), which the group
ran on before the settings reached the consumer; the default is 4 s / 1 s / 6 s; 6 s / 1 s /
6 s is what a member falls back to on a broker that refuses a session under Kafka's
default ``group.min.session.timeout.ms``. Tansu holds every JoinGroup for half the
session timeout (in whole seconds), so on it a takeover costs about 1.5 sessions.

Run from the repo root: ``.venv/bin/python benchmarks/bench_split_takeover.py``.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner
from harness import record

from streamer.devtools.embedded_broker import EmbeddedBroker
from streamer.sinks.codec import decode_surface

ROOT = Path(__file__).resolve().parents[1]
ASSIGNED = re.compile(r"assigned partitions \[([0-9, ]*)\]")
# (session timeout, heartbeat, rebalance timeout) ms: aiokafka's defaults, ours, the fallback
SETTINGS = ((10_000, 3_000, 300_000), (4_000, 1_000, 6_000), (6_000, 1_000, 6_000))
ROUNDS = 2
KEY = b"deribit:BTC"
PARTITIONS = [0, 1, 2, 3]


def _env(bootstrap: str, round_id: str, setting: tuple[int, int, int]) -> dict[str, str]:
    session_ms, heartbeat_ms, rebalance_ms = setting
    return dict(os.environ, STREAMER_KAFKA__BOOTSTRAP_SERVERS=bootstrap,
                STREAMER_KAFKA__ENABLE_IDEMPOTENCE="false",
                STREAMER_KAFKA__SURFACE_TOPIC=f"surface.{round_id}",
                STREAMER_KAFKA__TICKS_TOPIC=f"ticks.{round_id}",
                STREAMER_KAFKA__DYNAMICS_TOPIC=f"dynamics.{round_id}",
                STREAMER_KAFKA__GROUP_ID=f"group.{round_id}",
                STREAMER_KAFKA__TOPIC_PARTITIONS=str(len(PARTITIONS)),
                STREAMER_KAFKA__SESSION_TIMEOUT_MS=str(session_ms),
                STREAMER_KAFKA__HEARTBEAT_INTERVAL_MS=str(heartbeat_ms),
                STREAMER_KAFKA__REBALANCE_TIMEOUT_MS=str(rebalance_ms),
                STREAMER_METRICS__PORT="0", OPENBLAS_NUM_THREADS="1")


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "streamer.cli", *args], env=env, cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT)


def _assignment(log: Path) -> list[int]:
    found = ASSIGNED.findall(log.read_text(errors="replace"))
    return [int(p) for p in found[-1].split(",") if p.strip()] if found else []


async def _newest_btc_published_ns(consumer: AIOKafkaConsumer) -> int:
    """The newest ``published_ts_ns`` of a BTC surface read so far (0: none)."""
    newest = 0
    batches = await consumer.getmany(timeout_ms=200)
    for records in batches.values():
        for rec in records:
            if rec.key == KEY and rec.value:
                newest = max(newest, decode_surface(rec.value).published_ts_ns)
    return newest


async def _one_round(bootstrap: str, setting: tuple[int, int, int], n: int,
                     tmp: Path) -> dict[str, Any]:
    round_id = f"{os.getpid()}.{setting[0]}.{n}"
    env = _env(bootstrap, round_id, setting)
    logs = {name: tmp / f"{round_id}.{name}.log" for name in ("a", "b", "ingest")}
    procs = {name: _start(["calibrate", "--config", "config.yaml"], env, logs[name])
             for name in ("a", "b")}
    procs["ingest"] = _start(["ingest", "--config", "config.yaml", "--speed", "5", "--loop"],
                             env, logs["ingest"])
    consumer = None
    try:
        owner = await _owner_once_spread(logs)
        # Subscribed only now: a consumer asking for the topic first would have the broker
        # create it with the wrong cleanup policy, which the service refuses.
        consumer = AIOKafkaConsumer(f"surface.{round_id}", bootstrap_servers=bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        deadline = time.monotonic() + 60
        while not await _newest_btc_published_ns(consumer):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no BTC surface before the kill: {_tails(logs)}")
        procs[owner].send_signal(signal.SIGKILL)
        procs[owner].wait()
        killed_ns = time.time_ns()
        deadline = time.monotonic() + 60
        while (newest := await _newest_btc_published_ns(consumer)) <= killed_ns:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no BTC surface within 60 s of the kill: {_tails(logs)}")
        return {"session_timeout_ms": setting[0], "heartbeat_interval_ms": setting[1],
                "rebalance_timeout_ms": setting[2], "round": n,
                "takeover_s": (newest - killed_ns) / 1e9}
    finally:
        if consumer is not None:
            await consumer.stop()
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()


def _tails(logs: dict[str, Path]) -> dict[str, str]:
    return {name: log.read_text(errors="replace")[-600:] for name, log in logs.items()}


async def _owner_once_spread(logs: dict[str, Path]) -> str:
    """The member that owns BTC's partition, once the members share the partitions."""
    btc = DefaultPartitioner()(KEY, PARTITIONS, PARTITIONS)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assigned = {name: _assignment(logs[name]) for name in ("a", "b")}
        if all(assigned.values()) and sorted(assigned["a"] + assigned["b"]) == PARTITIONS:
            return next(name for name, parts in assigned.items() if btc in parts)
        await asyncio.sleep(0.3)
    raise RuntimeError(f"the members never shared the partitions: {_tails(logs)}")


async def main() -> None:
    broker = EmbeddedBroker()
    bootstrap = broker.start()
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in range(ROUNDS):  # the settings in turn, round after round
                for setting in SETTINGS:
                    rows.append(await _one_round(bootstrap, setting, n, Path(tmp)))
                    print(rows[-1], flush=True)
    finally:
        broker.stop()
    record("split_takeover", rows)


if __name__ == "__main__":
    started = time.perf_counter()
    asyncio.run(main())
    print(f"({time.perf_counter() - started:.1f} s)")
