"""`streamer synth --venue`: each venue's file, read by our own decoder, gives the truth back.

Tolerances are tight enough to catch a unit slip: a percent IV is 100 times the truth,
a coin premium read as USD (or the reverse) implies no vol near the truth at all.
"""

from __future__ import annotations

import gzip
import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamer.core.implied_vol import implied_vol
from streamer.devtools import synth
from streamer.devtools.exchanges import bundled_sample
from streamer.devtools.synth import SynthSummary, synthesise
from streamer.devtools.synth_market import YEAR_MS
from streamer.sources.binance.protocol import BinanceDecoder
from streamer.sources.bybit.protocol import BybitDecoder
from streamer.sources.decoded import Decoded
from streamer.sources.deribit.protocol import DeribitDecoder
from streamer.sources.okx.protocol import OkxDecoder
from streamer.tickfile import TickLine, read_tickfile
from streamer.types import Quote

DURATION_S = 3.0
SEED = 21
DECODERS: dict[str, Callable[[], Any]] = {
    "deribit": DeribitDecoder, "okx": OkxDecoder, "bybit": BybitDecoder,
    "binance": BinanceDecoder}
VENUES = sorted(DECODERS)


@dataclass
class Recording:
    """One venue's synthetic file, its truth, and what our decoder made of it."""

    venue: str
    summary: SynthSummary
    truth: dict[str, Any]
    lines: list[TickLine]
    quotes: list[Quote]
    rejects: Counter[str]


def _record(tmp: Path, venue: str) -> Recording:
    out, truth = tmp / f"{venue}.ndjson", tmp / f"{venue}.truth.json"
    summary = synthesise(out, truth, seed=SEED, duration_s=DURATION_S, venue=venue)
    decoder = DECODERS[venue]()
    lines, quotes, rejects = list(read_tickfile(out)), [], Counter[str]()
    for line in lines:
        decoded: Decoded = decoder.decode(line.raw, line.received_ts_ns)
        quotes += decoded.quotes
        rejects.update(decoded.rejects)
    return Recording(venue, summary, json.loads(truth.read_text()), lines, quotes, rejects)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Recording]:
    tmp = tmp_path_factory.mktemp("venues")
    return {venue: _record(tmp, venue) for venue in VENUES}


def _truth_vols(rec: Recording, quotes: list[Quote]) -> tuple[np.ndarray, np.ndarray,
                                                                np.ndarray]:
    """(forward, years to expiry, true vol) of each quote, from the truth file alone.

    Binance publishes no forward: its forward is the index grown by the truth's basis.
    """
    smiles = {(name, e["expiry_ts_ms"]): (e["svi"], e["basis"])
              for name, section in rec.truth["underlyings"].items()
              for e in section["expiries"]}
    fwd, years, vols = [], [], []
    for q in quotes:
        svi, basis = smiles[(q.underlying, q.expiry_ts_ms)]
        t = (q.expiry_ts_ms - q.exchange_ts_ms) / YEAR_MS
        f = q.index_price * math.exp(basis * t) if rec.venue == "binance" else q.underlying_price
        x = math.log(q.strike / f) - svi["m"]
        w = svi["a"] + svi["b"] * (svi["rho"] * x + math.sqrt(x * x + svi["sigma"] ** 2))
        fwd.append(f)
        years.append(t)
        vols.append(math.sqrt(w / t))
    return np.array(fwd), np.array(years), np.array(vols)


@pytest.mark.parametrize("venue", VENUES)
def test_every_instrument_of_the_truth_decodes_without_a_reject(
        recordings: dict[str, Recording], venue: str) -> None:
    rec = recordings[venue]
    assert rec.rejects == Counter()
    assert len({q.instrument for q in rec.quotes}) == rec.summary.instruments
    expiries = {(name, e["expiry_ts_ms"]) for name, section in rec.truth["underlyings"].items()
                for e in section["expiries"]}
    assert {(q.underlying, q.expiry_ts_ms) for q in rec.quotes} == expiries
    assert all(q.venue == venue for q in rec.quotes)


@pytest.mark.parametrize("venue", VENUES)
def test_decoded_mark_ivs_are_the_truth_smiles(
        recordings: dict[str, Recording], venue: str) -> None:
    quotes = [q for q in recordings[venue].quotes if math.isfinite(q.mark_iv)]
    assert len(quotes) >= recordings[venue].summary.instruments
    _, _, truth = _truth_vols(recordings[venue], quotes)
    error = np.abs(np.array([q.mark_iv for q in quotes]) - truth)
    assert error.max() < 2e-4, error.max()  # exchanges round IVs to 4 decimals at worst


@pytest.mark.parametrize("venue", VENUES)
def test_decoded_mid_prices_near_the_money_imply_the_truth_smiles(
        recordings: dict[str, Recording], venue: str) -> None:
    rec = recordings[venue]
    quotes = [q for q in rec.quotes if math.isfinite(q.bid_price + q.ask_price)]
    fwd, t, truth = _truth_vols(rec, quotes)
    strike = np.array([q.strike for q in quotes])
    near = np.abs(np.log(strike / fwd)) < truth * np.sqrt(t)  # within one standard deviation
    assert near.sum() > 200
    mid = np.array([(q.bid_price + q.ask_price) / 2 for q in quotes])[near]
    calls = np.array([q.is_call for q in quotes])[near]
    error = np.abs(implied_vol(mid, fwd[near], strike[near], t[near], calls) - truth[near])
    assert np.isfinite(error).all()
    assert error.max() < 0.03, error.max()  # the spread is a few vol points either side
    assert np.median(error) < 0.005


@pytest.mark.parametrize("venue", VENUES)
def test_decoded_bid_and_ask_ivs_bracket_the_truth(
        recordings: dict[str, Recording], venue: str) -> None:
    rec = recordings[venue]
    quotes = [q for q in rec.quotes if math.isfinite(q.bid_iv + q.ask_iv)]
    assert len(quotes) > 1000
    _, _, truth = _truth_vols(rec, quotes)
    bid_iv, ask_iv = np.array([q.bid_iv for q in quotes]), np.array([q.ask_iv for q in quotes])
    # Binance and OKX mark a book's IVs at the push's forward, not the book's own: slack.
    inside = (bid_iv - 2e-3 <= truth) & (truth <= ask_iv + 2e-3)
    assert inside.mean() > 0.99


@pytest.mark.parametrize("venue", VENUES)
def test_messages_are_received_1_to_20_ms_after_their_exchange_time(
        recordings: dict[str, Recording], venue: str) -> None:
    lines = recordings[venue].lines
    received = [line.received_ts_ns for line in lines]
    assert received == sorted(received)
    for line in lines:
        latency_ns = line.received_ts_ns - _exchange_ts_ms(venue, json.loads(line.raw)) * 10**6
        assert 1_000_000 <= latency_ns < 20_000_000


def _exchange_ts_ms(venue: str, msg: dict[str, Any]) -> int:
    if venue == "deribit":
        return int(msg["params"]["data"]["timestamp"])
    if venue == "bybit":
        return int(msg["ts"])
    if venue == "binance":
        assert len({item["E"] for item in msg["data"]}) == 1  # one event time per push
        return int(msg["data"][0]["E"])
    assert len({item["ts"] for item in msg["data"]}) == 1
    return int(msg["data"][0]["ts"])


def _push_times(rec: Recording, key: Callable[[dict[str, Any]], str | None]
                ) -> dict[str, list[int]]:
    """Exchange times of each stream's pushes (``key`` names the stream, None to skip)."""
    times: dict[str, list[int]] = defaultdict(list)
    for line in rec.lines:
        msg = json.loads(line.raw)
        stream = key(msg)
        if stream is not None:
            times[stream].append(_exchange_ts_ms(rec.venue, msg))
    return times


def test_okx_pushes_the_index_every_100_ms_and_summaries_every_100_ms_to_1_s(
        recordings: dict[str, Recording]) -> None:
    rec = recordings["okx"]
    index = _push_times(rec, lambda m: m["arg"]["instId"] if m["arg"]["channel"] == (
        "index-tickers") else None)
    summaries = _push_times(rec, lambda m: m["arg"]["instFamily"] if m["arg"]["channel"] == (
        "opt-summary") else None)
    assert set(index) == set(summaries) == {"BTC-USD", "ETH-USD"}
    for family in index:
        assert set(np.diff(index[family])) == {100}
        assert len(index[family]) == DURATION_S * 10
        gaps = np.diff(summaries[family])
        assert gaps.min() >= 100
        assert gaps.max() <= 2000  # an interval without an update pushes nothing


def test_binance_pushes_each_chain_once_a_second(recordings: dict[str, Recording]) -> None:
    times = _push_times(recordings["binance"], lambda m: str(m["stream"]))
    assert set(times) == {"btcusdt@optionMarkPrice", "ethusdt@optionMarkPrice"}
    for stream_times in times.values():
        assert set(np.diff(stream_times)) == {1000}


def test_one_seed_is_one_market_on_every_venue(recordings: dict[str, Recording]) -> None:
    deribit = recordings["deribit"].truth
    assert "venue" not in deribit
    for venue in VENUES:
        truth = recordings[venue].truth
        assert truth["underlyings"] == deribit["underlyings"]
        assert truth.get("venue", "deribit") == venue


@pytest.mark.parametrize("venue", VENUES)
def test_other_worlds_and_requotes_decode_without_a_reject(tmp_path: Path, venue: str) -> None:
    out = tmp_path / "w.ndjson"
    synthesise(out, tmp_path / "w.truth.json", seed=3, duration_s=2.0, underlyings=("ETH",),
               dynamics="sticky_strike", requote_s=0.5, venue=venue)
    decoder = DECODERS[venue]()
    decoded = [decoder.decode(line.raw, line.received_ts_ns) for line in read_tickfile(out)]
    assert sum(len(d.quotes) for d in decoded) > 0
    assert [r for d in decoded for r in d.rejects] == []


def test_venue_deribit_regenerates_the_bundled_sample(tmp_path: Path) -> None:
    # As `make synth`, but uncompressed: the content is what must not change.
    out = tmp_path / "sample.ndjson"
    assert synth.main(["--venue", "deribit", "--out", str(out)]) == 0
    bundled = bundled_sample()
    assert out.read_bytes() == gzip.decompress(bundled.read_bytes())
    truth = bundled.with_name("deribit_sample.truth.json")
    assert (tmp_path / "sample.truth.json").read_bytes() == truth.read_bytes()


def test_the_default_out_file_is_named_after_the_venue(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert synth.main(["--venue", "bybit", "--duration", "1", "--underlying", "ETH"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bybit_sample.ndjson.gz", "bybit_sample.truth.json"]


def test_an_unknown_venue_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown venue"):
        synthesise(tmp_path / "x.ndjson", tmp_path / "x.json", venue="kraken")
    with pytest.raises(SystemExit):
        synth.main(["--out", str(tmp_path / "x.ndjson"), "--venue", "kraken"])
