"""The replay servers behind `url: replay`: one per venue, its recording, all stopped together.

Real servers on loopback; recordings from the synthesiser (a second of one underlying
where the bundled one is not the point).
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from streamer.config import (
    BinanceConfig,
    BybitConfig,
    DeribitConfig,
    OkxConfig,
    ReplayConfig,
    VenueName,
)
from streamer.devtools.exchange import ReplayServer
from streamer.devtools.exchanges import GENERATED_DURATION_S, ReplayServers, bundled_sample
from streamer.devtools.synth import synthesise
from streamer.errors import ConfigError
from streamer.sources.bybit.protocol import instruments_url, parse_instruments

pytestmark = pytest.mark.integration


def _tiny(tmp_path: Path, venue: VenueName) -> str:
    out = tmp_path / f"{venue}.ndjson"
    synthesise(out, tmp_path / f"{venue}.truth.json", duration_s=1.0, underlyings=("ETH",),
               venue=venue)
    return str(out)


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
        return body


async def _refused(url: str) -> bool:
    try:
        async with connect(url, open_timeout=2):
            return False
    except ConnectionRefusedError:
        return True


async def test_each_replayed_venue_gets_its_own_server_and_stop_closes_every_one(
        tmp_path: Path) -> None:
    files: dict[VenueName, str] = {"okx": _tiny(tmp_path, "okx"),
                                   "bybit": _tiny(tmp_path, "bybit")}
    replays = ReplayServers(ReplayConfig(files=files))
    okx = await replays.start(OkxConfig(currencies=("ETH",)))
    bybit = await replays.start(BybitConfig(currencies=("ETH",),
                                         rest_url="https://api.bybit.com"))
    try:
        assert okx.url.startswith("ws://127.0.0.1:")
        assert bybit.url.startswith("ws://127.0.0.1:")
        assert okx.url != bybit.url
        assert getattr(okx, "rest_url", None) is None  # OkxConfig has none
        # Bybit's instrument list comes from its replay server, on the same port.
        assert bybit.rest_url == bybit.url.replace("ws://", "http://")
        body = await asyncio.to_thread(_get, instruments_url(bybit.rest_url, "ETH"))
        symbols, _ = parse_instruments(body)
        assert symbols
        assert all(s.startswith("ETH-") for s in symbols)
        assert [s.path for s in replays.servers] == [Path(files["okx"]), Path(files["bybit"])]
        assert replays.finite
    finally:
        await replays.stop()
    assert replays.servers == []
    assert await _refused(okx.url)
    assert await _refused(bybit.url)


async def test_bundled_means_each_venues_own_recording_of_the_samples_market(
        tmp_path: Path) -> None:
    replays = ReplayServers(ReplayConfig(loop=True))
    try:
        await replays.start(DeribitConfig())
        await replays.start(OkxConfig())
        deribit, okx = replays.servers
        assert deribit.path == bundled_sample()
        assert okx.path.name == "okx_sample.ndjson"
        generated = json.loads(okx.path.with_name("okx_sample.truth.json").read_text())
        assert not replays.finite  # looping servers never drain
    finally:
        await replays.stop()
    assert not okx.path.parent.exists()  # the generated recordings are deleted at stop
    sample = json.loads(bundled_sample().with_name("deribit_sample.truth.json").read_text())
    assert generated["venue"] == "okx"
    assert generated["seed"] == sample["seed"]
    assert generated["end_ts_ms"] - generated["start_ts_ms"] == GENERATED_DURATION_S * 1000
    for name, section in sample["underlyings"].items():  # the same smiles
        assert generated["underlyings"][name]["expiries"] == section["expiries"]


async def test_a_missing_recording_is_a_config_error(tmp_path: Path) -> None:
    replays = ReplayServers(ReplayConfig(files={"binance": str(tmp_path / "nope.ndjson")}))
    with pytest.raises(ConfigError, match=r"tick file not found: .*nope\.ndjson"):
        await replays.start(BinanceConfig())
    await replays.stop()


async def test_a_recording_of_another_venue_is_a_clear_error(tmp_path: Path) -> None:
    # url: replay for OKX on Deribit's bundled recording: refused, not served as silence.
    server = ReplayServer(bundled_sample(), venue="okx")
    with pytest.raises(ConfigError, match=r"holds no okx market data: is it a recording "
                                          r"of another venue\?"):
        await server.start()
    await server.stop()
