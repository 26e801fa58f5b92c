"""`make run`: where the surfaces go, said at start and end, and the README's client works.

Real parts: `streamer run` in-process with the embedded broker (Tansu) on the port the
config names, the replay server on loopback, the README's `SurfaceSubscriber` example
and, when installed, the `kcat` line the run prints.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from streamer.app.service import Service
from streamer.client import SurfaceSubscriber
from streamer.config import load_config
from streamer.devtools.embedded_broker import free_port
from streamer.devtools.synth import synthesise

pytestmark = pytest.mark.integration

KCAT = re.compile(r"read them with: (kcat .*?)  \|")


async def test_the_run_says_where_to_subscribe_and_the_readme_client_reads_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    recording = tmp_path / "deribit.ndjson"
    synthesise(recording, tmp_path / "truth.json", duration_s=30.0, underlyings=("BTC",))
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(f"kafka: {{embedded_port: {port}}}\nmetrics: {{port: 0}}\n"
                      f"replay: {{speed: 3, file: {recording}}}\n"
                      "venues: [{name: deribit, url: replay, currencies: [BTC]}]\n")
    service = Service(load_config(config, env={}), duration_s=60, quiet=True)
    caplog.set_level(logging.INFO, logger="streamer.app.service")
    run = asyncio.create_task(service.run())
    while not any(KCAT.search(r.getMessage()) for r in caplog.records):  # what a user waits for
        assert not run.done(), caplog.text[-3000:]
        await asyncio.sleep(0.1)
    # The README's example, word for word but for the port: the embedded broker's.
    async with SurfaceSubscriber(f"localhost:{port}", keys=["deribit:BTC"]) as surfaces:
        async for surface in surfaces:
            assert surface.vol(100_000.0, 0.25) > 0
            break
    kcat = next(m[1] for r in caplog.records if (m := KCAT.search(r.getMessage())))
    if shutil.which("kcat"):
        out = await asyncio.to_thread(
            subprocess.run, [*shlex.split(kcat), "-e", "-q"], capture_output=True, text=True,
            timeout=60, check=False)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.startswith("deribit:BTC {")
    assert await run == 0
    messages = [r.getMessage() for r in caplog.records]
    assert f"embedded Kafka-compatible broker (Tansu) on 127.0.0.1:{port}" in messages
    assert f"-b 127.0.0.1:{port} -C -t vol.surface.v1" in kcat
    assert messages[-1].endswith("the embedded broker stops with this run and its topics with "
                                 "it (set kafka.bootstrap_servers to a cluster to keep them, "
                                 "or use --sink stdout)")
    assert re.match(rf"\d+ surfaces published to topic vol.surface.v1 at 127.0.0.1:{port}",
                    messages[-1])
