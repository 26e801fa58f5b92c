"""The whole product as a user runs it: `streamer run` as a subprocess.

Real parts only: the embedded Kafka-compatible broker (Tansu), the replay server
speaking Deribit's protocol on loopback over a real websocket, the metrics HTTP
endpoint, and two independent Kafka clients (aiokafka and Debian's kcat) reading
the surface topic. The recovered surface is checked against the synthesiser's truth.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer

from streamer.devtools.exchanges import bundled_sample
from streamer.sinks.codec import decode_surface
from streamer.types import SurfaceUpdate

pytestmark = pytest.mark.integration

TOPIC = "vol.surface.v1"
TRUTH = bundled_sample().with_name("deribit_sample.truth.json")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
        body: bytes = resp.read()
        return body.decode()


def _metric_value(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="module")
def service_run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run `streamer run` once over the bundled recording; collect what it showed."""
    metrics_port = _free_port()
    # The embedded broker has no idempotent producer; a named broker defaults to it on.
    env = dict(os.environ, STREAMER_KAFKA__BOOTSTRAP_SERVERS=kafka_bootstrap,
               STREAMER_KAFKA__ENABLE_IDEMPOTENCE="false",
               STREAMER_METRICS__PORT=str(metrics_port))
    log_dir = tmp_path_factory.mktemp("run")
    cmd = [sys.executable, "-m", "streamer.cli", "run", "--config", "config.yaml",
           "--speed", "20", "--duration", "90"]
    scraped = ""
    deadline = time.monotonic() + 120
    with (log_dir / "stdout").open("w+") as stdout, (log_dir / "stderr").open("w+") as stderr:
        proc = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=stderr,
                                cwd=Path(__file__).parents[2])
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.5)
                try:
                    text = _scrape(metrics_port)
                except OSError:
                    continue
                if _metric_value(text, "streamer_tick_to_publish_seconds_count") > 0:
                    scraped = text
            code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        stdout.seek(0)
        stderr.seek(0)
        out, err = stdout.read(), stderr.read()
    return {"code": code, "metrics": scraped, "stdout": out, "stderr": err}


async def _consume_all(bootstrap: str) -> list[tuple[bytes, SurfaceUpdate, dict[str, bytes]]]:
    consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    out = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=3000)
            if not batch:
                break
            for records in batch.values():
                for rec in records:
                    assert rec.key is not None
                    assert rec.value is not None
                    out.append((rec.key, decode_surface(rec.value), dict(rec.headers)))
    finally:
        await consumer.stop()
    return out


def test_run_ends_cleanly_at_end_of_file_with_progress_lines(service_run: dict[str, Any]) -> None:
    assert service_run["code"] == 0, service_run["stderr"][-3000:]
    # On stderr: stdout carries only data (the surfaces of --sink stdout).
    lines = [ln for ln in service_run["stderr"].splitlines() if ln.startswith("underlyings")]
    assert len(lines) >= 3, service_run["stderr"][-2000:]
    assert "underlyings" not in service_run["stdout"]
    assert "tick→publish p50" in lines[-1]
    assert "deribit:BTC" in lines[-1]


def test_metrics_endpoint_reports_tick_to_publish(service_run: dict[str, Any]) -> None:
    text = service_run["metrics"]
    assert _metric_value(text, "streamer_tick_to_publish_seconds_count", stage="receive") > 0
    assert _metric_value(text, "streamer_ticks_total", venue="deribit") > 1000
    assert _metric_value(text, "streamer_calibration_seconds_count", model="svi") > 0


async def test_aiokafka_reads_surfaces_matching_the_truth(
        service_run: dict[str, Any], kafka_bootstrap: str) -> None:
    assert service_run["code"] == 0
    messages = await _consume_all(kafka_bootstrap)
    keys = {key for key, _, _ in messages}
    assert keys == {b"deribit:BTC", b"deribit:ETH"}
    assert all(headers.get("schema") == b"vol.surface.v1" for _, _, headers in messages)
    truth = json.loads(TRUTH.read_text())
    for underlying in ("BTC", "ETH"):
        updates = [u for k, u, _ in messages if k == f"deribit:{underlying}".encode()]
        seqs = [u.seq for u in updates]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == len(seqs)
        _check_against_truth(updates[-1], truth["underlyings"][underlying])


def _check_against_truth(update: SurfaceUpdate, truth: dict[str, Any]) -> None:
    true_by_expiry = {e["expiry_ts_ms"]: e["svi"] for e in truth["expiries"]}
    fitted = [s for s in update.slices if s.status in ("warm", "cold")]
    assert len(fitted) >= 6, [s.status for s in update.slices]
    errors, rmses = [], []
    for s in fitted:
        p = true_by_expiry[s.expiry_ts_ms]
        w0 = p["a"] + p["b"] * (-p["rho"] * p["m"] + np.hypot(p["m"], p["sigma"]))
        errors.append(abs(s.atm_vol - np.sqrt(w0 / s.t)))
        rmses.append(s.rmse_vol)
    assert max(errors) < 0.005, errors  # ATM vol within 0.5 vol points
    assert float(np.median(rmses)) < 0.01, rmses  # median RMSE below 1 vol point


@pytest.mark.skipif(shutil.which("kcat") is None, reason="Debian package kcat not installed")
def test_kcat_reads_the_surface_topic(service_run: dict[str, Any], kafka_bootstrap: str) -> None:
    assert service_run["code"] == 0
    # Debian 12's librdkafka 2.0.2 misreads the tagged fields of Tansu 0.6's
    # ApiVersions v3 response (PROTOUFLOW at 274/279), so kcat skips the version
    # handshake and speaks the 0.9 protocol subset; logical offsets need
    # ListOffsets v1, so it starts from absolute offset 0.
    cmd = ["kcat", "-X", "api.version.request=false", "-X", "broker.version.fallback=0.9.0",
           "-b", kafka_bootstrap, "-C", "-t", TOPIC, "-o", "0", "-e", "-q", "-f", "%k\t%s\n"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line.split("\t", 1) for line in out.stdout.splitlines() if line.strip()]
    assert {key for key, _ in rows} == {"deribit:BTC", "deribit:ETH"}
    body = json.loads(rows[-1][1])
    assert body["schema_version"] == 1
    assert body["model"] == "svi"
    assert body["slices"]
