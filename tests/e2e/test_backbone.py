"""Kafka as the backbone: warm restart from the surface topic, gapless seq, split mode.

Real processes (`streamer run`, `streamer ingest`, `streamer calibrate`) against the
session's embedded broker, each test on topics of its own.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from streamer.sinks.codec import decode_surface
from streamer.types import SurfaceUpdate

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
ASSIGNED = re.compile(r"assigned partitions \[([0-9, ]*)\]")


@pytest.fixture
def topics_env(kafka_bootstrap: str, unique_topic: object) -> dict[str, str]:
    stamp = f"{os.getpid()}.{time.monotonic_ns()}"
    return dict(os.environ, STREAMER_KAFKA__BOOTSTRAP_SERVERS=kafka_bootstrap,
                STREAMER_KAFKA__ENABLE_IDEMPOTENCE="false",
                STREAMER_KAFKA__SURFACE_TOPIC=f"surface.{stamp}",
                STREAMER_KAFKA__TICKS_TOPIC=f"ticks.{stamp}",
                STREAMER_KAFKA__DYNAMICS_TOPIC=f"dynamics.{stamp}",
                STREAMER_KAFKA__TOPIC_PARTITIONS="4", STREAMER_METRICS__PORT="0")


def _streamer(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "streamer.cli", *args], env=env,
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    return proc.returncode


async def _read_all(bootstrap: str, topic: str) -> list[SurfaceUpdate]:
    """Every message on the topic up to its end offsets now (surfaces keep flowing)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    out: list[tuple[int, int, SurfaceUpdate]] = []
    try:
        await consumer.topics()
        partitions = [TopicPartition(topic, p)
                      for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        end = await consumer.end_offsets(partitions)
        # Explicit offsets: seek_to_beginning's lazy reset sometimes never fetched
        # from Tansu (no records for 10 s in 4 of 15 trials); this never missed.
        for tp, offset in (await consumer.beginning_offsets(partitions)).items():
            consumer.seek(tp, offset)
        remaining = {tp for tp in partitions if end[tp] > 0}
        deadline = time.monotonic() + 30
        while remaining:
            assert time.monotonic() < deadline, f"no data before the end offsets {end}"
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, records in batch.items():
                out.extend((r.partition, r.offset, decode_surface(r.value or b""))
                           for r in records if r.offset < end[tp])
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return [u for _, _, u in sorted(out, key=lambda x: (x[0], x[1]))]


def _by_key(updates: list[SurfaceUpdate]) -> dict[str, list[SurfaceUpdate]]:
    keys: dict[str, list[SurfaceUpdate]] = {}
    for u in updates:
        keys.setdefault(u.key, []).append(u)
    return keys


async def test_restart_warm_starts_from_kafka_and_seq_has_no_gaps(
        topics_env: dict[str, str], kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = topics_env["STREAMER_KAFKA__SURFACE_TOPIC"]
    run = ("run", "--config", "config.yaml", "--speed", "40", "--duration", "6")
    assert _streamer(*run, env=topics_env, log=tmp_path / "first.log").wait(60) == 0
    first = _by_key(await _read_all(kafka_bootstrap, topic))
    assert set(first) == {"deribit:BTC", "deribit:ETH"}
    assert _streamer(*run, env=topics_env, log=tmp_path / "second.log").wait(60) == 0
    assert "warm start from the published surfaces" in (tmp_path / "second.log").read_text()
    both = _by_key(await _read_all(kafka_bootstrap, topic))
    for key, updates in both.items():
        seqs = [u.seq for u in updates]
        assert seqs == list(range(1, len(seqs) + 1)), key  # in order, no gaps, across runs
        restarted = updates[len(first[key])]  # the second run's first surface
        fitted = [s.status for s in restarted.slices if s.status != "stale"]
        assert fitted
        assert "cold" not in fitted, (key, fitted)


async def test_restart_continues_the_smile_dynamics_with_their_observations(
        topics_env: dict[str, str], kafka_bootstrap: str, tmp_path: Path) -> None:
    # Small moves count, so a few seconds of the bundled file give observations.
    env = dict(topics_env, STREAMER_DYNAMICS__MIN_MOVE="0.00001")
    topic = env["STREAMER_KAFKA__SURFACE_TOPIC"]
    run = ("run", "--config", "config.yaml", "--speed", "40", "--duration", "6")
    assert _streamer(*run, env=env, log=tmp_path / "first.log").wait(60) == 0
    first = _by_key(await _read_all(kafka_bootstrap, topic))
    before = {key: d for key, updates in first.items()
              if (d := updates[-1].dynamics) is not None}
    assert before["deribit:BTC"].n_obs >= 1, before
    assert _streamer(*run, env=env, log=tmp_path / "second.log").wait(60) == 0
    assert "smile dynamics restored for deribit:BTC" in (tmp_path / "second.log").read_text()
    both = _by_key(await _read_all(kafka_bootstrap, topic))
    for key, dynamics in before.items():
        # The second run's first estimate: a fresh estimator would have no observation.
        restarted = next(u.dynamics for u in both[key][len(first[key]):]
                         if u.dynamics is not None)
        assert restarted.n_obs >= dynamics.n_obs, key


@pytest.fixture
def split_processes(topics_env: dict[str, str], tmp_path: Path
                    ) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    procs = {name: _streamer("calibrate", "--config", "config.yaml", env=topics_env,
                             log=tmp_path / f"{name}.log") for name in ("a", "b")}
    procs["ingest"] = _streamer("ingest", "--config", "config.yaml", "--speed", "5", "--loop",
                                env=topics_env, log=tmp_path / "ingest.log")
    try:
        yield procs
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _assignment(log: Path) -> list[int] | None:
    found = ASSIGNED.findall(log.read_text(errors="replace"))
    return [int(p) for p in found[-1].split(",") if p.strip()] if found else None


async def test_split_mode_spreads_partitions_and_survives_a_member_leaving(
        split_processes: dict[str, subprocess.Popen[bytes]], topics_env: dict[str, str],
        kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = topics_env["STREAMER_KAFKA__SURFACE_TOPIC"]
    logs = {name: tmp_path / f"{name}.log" for name in ("a", "b")}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assigned = {name: _assignment(log) for name, log in logs.items()}
        owned = [p for parts in assigned.values() for p in parts or []]
        if all(assigned.values()) and sorted(owned) == [0, 1, 2, 3]:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"partitions never spread over both members: {assigned}")
    btc_partition = DefaultPartitioner()(b"deribit:BTC", [0, 1, 2, 3], [0, 1, 2, 3])
    owner = next(name for name, parts in assigned.items() if btc_partition in (parts or []))
    survivor = "b" if owner == "a" else "a"
    while not _by_key(await _read_all(kafka_bootstrap, topic)).get("deribit:BTC"):
        assert time.monotonic() < deadline, "no BTC surface before the failover"
        time.sleep(0.5)
    assert _stop(split_processes[owner]) == 0
    before = len(_by_key(await _read_all(kafka_bootstrap, topic))["deribit:BTC"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        btc = _by_key(await _read_all(kafka_bootstrap, topic))["deribit:BTC"]
        if len(btc) > before + 2:
            break
        time.sleep(1.0)
    else:
        pytest.fail("BTC surfaces stopped after its calibrator left the group")
    assert _assignment(logs[survivor]) == [0, 1, 2, 3]
    seqs = [u.seq for u in btc]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
