"""``streamer plot``: a replayed tick file, or the surfaces on the surface topic, become
smile, term-structure and dynamics PNGs."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import msgspec
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streamer.cli import main as cli_main
from streamer.client import read_history
from streamer.devtools.plot import _k_range, main  # imports matplotlib only when drawing
from streamer.devtools.synth import synthesise
from streamer.sinks.codec import SCHEMA_HEADER, encode_surface
from streamer.types import Dynamics, SurfaceUpdate
from tests.client.factory import NOW_MS, make_surface

pytest.importorskip("matplotlib", reason="streamer plot needs the [plot] extra")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tick_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plot") / "lv.ndjson"
    synthesise(path, path.with_suffix(".truth.json"), seed=2, duration_s=30.0,
               underlyings=("ETH",), dynamics="local_vol", spot_vol=8.0, requote_s=3.0)
    return path


def test_plot_writes_five_pngs_per_underlying(tick_file: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Smiles, term structure, dynamics, and (the replayed surfaces carry them) the
    constant-maturity views and the variance index."""
    out = tmp_path / "img"
    assert main([str(tick_file), "--out", str(out), "--min-move", "0.0005"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["dynamics_ETH.png", "index_ETH.png", "smiles_ETH.png", "tenors_ETH.png",
                     "term_ETH.png"]
    for png in out.iterdir():
        data = png.read_bytes()
        assert data.startswith(PNG_MAGIC)
        assert len(data) > 20_000  # axes, curves and labels, not an empty canvas
    assert capsys.readouterr().out.count("wrote ") == 5


def test_plot_of_an_underlying_not_in_the_file_writes_nothing(tick_file: Path,
                                                             tmp_path: Path) -> None:
    assert main([str(tick_file), "--out", str(tmp_path), "--underlying", "BTC"]) == 0
    assert list(tmp_path.iterdir()) == []


def test_plot_of_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    assert main([str(tmp_path / "nope.ndjson"), "--out", str(tmp_path)]) == 2


# -- from the surface topic ----------------------------------------------------------

def _published(underlying: str, n: int, venue: str = "deribit") -> list[SurfaceUpdate]:
    """``n`` one-second surfaces of a market whose spot climbs, with published dynamics."""
    updates = []
    for i in range(n):
        dynamics = Dynamics(ssr=0.2 * i, spot_vol_beta=-0.02, r2=0.4, n_obs=20 + i,
                            regime="unknown", fixed_strike_beta=-0.1, ssr_low=0.2 * i - 0.5,
                            ssr_high=0.2 * i + 0.5, ssr_n_obs=20 + i, atm_skew=-0.12)
        update = make_surface(venue=venue, underlying=underlying, seq=i + 1,
                              exchange_ts_ms=NOW_MS + 1000 * i, spot=100_000.0 + 50.0 * i,
                              dynamics=dynamics)
        slices = [msgspec.structs.replace(s, half_spread_vol=0.01, within_spread_fraction=0.9)
                  for s in update.slices]
        updates.append(msgspec.structs.replace(update, slices=slices))
    return updates


async def _publish(bootstrap: str, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 3, 1,
                                            topic_configs={"cleanup.policy": "compact"})])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False,
                                acks="all")
    await producer.start()
    try:
        for key, value in values:
            await producer.send_and_wait(topic, key=key, value=value, headers=[SCHEMA_HEADER])
    finally:
        await producer.stop()


def _messages(*series: list[SurfaceUpdate]) -> list[tuple[bytes, bytes]]:
    """The series interleaved in time, each surface encoded as the publisher does, and
    one message that does not decode."""
    merged = sorted((u for s in series for u in s), key=lambda u: u.exchange_ts_ms)
    values = [(u.key.encode(), encode_surface(u)) for u in merged]
    return [*values[:3], (b"deribit:BTC", b"{not a surface"), *values[3:]]


@pytest.fixture(scope="module")
def surface_topic(kafka_bootstrap: str) -> str:
    """A topic holding 6 BTC and 2 ETH surfaces from Deribit and 2 BTC from OKX (with no
    tenor views or variance index: their two pictures are left out)."""
    topic = f"plot.surface.{uuid.uuid4().hex[:8]}"
    asyncio.run(_publish(kafka_bootstrap, topic, _messages(
        _published("BTC", 6), _published("ETH", 2), _published("BTC", 2, venue="okx"))))
    return topic


@pytest.mark.integration
def test_read_history_returns_every_surface_of_the_keys_in_time_order(
        kafka_bootstrap: str, surface_topic: str) -> None:
    btc = asyncio.run(read_history(kafka_bootstrap, ["deribit:BTC"], surface_topic))
    assert [(u.key, u.seq) for u in btc] == [("deribit:BTC", i) for i in range(1, 7)]
    assert encode_surface(btc[-1]) == encode_surface(_published("BTC", 6)[-1])  # NaN-safe
    everything = asyncio.run(read_history(kafka_bootstrap, None, surface_topic))
    assert len(everything) == 10  # the undecodable one skipped
    stamps = [u.exchange_ts_ms for u in everything]
    assert stamps == sorted(stamps)


@pytest.mark.integration
def test_plot_from_kafka_draws_the_published_surfaces(
        kafka_bootstrap: str, surface_topic: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "btc"
    assert cli_main(["plot", "--from-kafka", kafka_bootstrap, "--topic", surface_topic,
                     "--key", "deribit:BTC", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["dynamics_BTC.png", "smiles_BTC.png",
                                                     "term_BTC.png"]
    for png in out.iterdir():
        data = png.read_bytes()
        assert data.startswith(PNG_MAGIC)
        assert len(data) > 20_000
    assert capsys.readouterr().out.count("wrote ") == 3
    # Every key: BTC comes from two venues, so each file names its venue.
    out = tmp_path / "all"
    assert cli_main(["plot", "--from-kafka", kafka_bootstrap, "--topic", surface_topic,
                     "--out", str(out)]) == 0
    assert sorted(p.name.split("_", 1)[1] for p in out.iterdir()) == sorted(
        f"{venue}_{u}.png" for venue, u in [("deribit", "BTC"), ("deribit", "ETH"),
                                            ("okx", "BTC")] for _ in range(3))


@pytest.mark.integration
def test_plot_from_kafka_of_a_missing_topic_is_a_clear_failure(
        kafka_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--from-kafka", kafka_bootstrap, "--topic", "plot.no.such.topic",
                 "--out", str(tmp_path)]) == 1
    assert "topic plot.no.such.topic does not exist" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_plot_needs_exactly_one_source(tick_file: Path, tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path)]) == 2
    assert main([str(tick_file), "--from-kafka", "127.0.0.1:1", "--out", str(tmp_path)]) == 2


def test_the_smile_range_without_quotes_follows_the_atm_total_vol() -> None:
    assert _k_range(0.6, 0.5) == pytest.approx((-2 * 0.6 * 0.5**0.5, 2 * 0.6 * 0.5**0.5))
    assert _k_range(0.6, 0.1 / 365) == (-0.05, 0.05)  # 2.4 hours: a floor
    assert _k_range(float("nan"), 0.1) == (-0.3, 0.3)


def test_min_move_reaches_the_replays_own_dynamics_estimates(tick_file: Path,
                                                           tmp_path: Path) -> None:
    # The engine fills each surface's dynamics while replaying: --min-move must reach it.
    pictures = []
    for min_move in ("0.0005", "0.05"):
        out = tmp_path / min_move
        assert main([str(tick_file), "--out", str(out), "--min-move", min_move]) == 0
        pictures.append((out / "dynamics_ETH.png").read_bytes())
    assert pictures[0] != pictures[1]


def test_min_move_from_kafka_is_refused_the_topic_has_no_quotes_to_re_estimate_from(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--from-kafka", "127.0.0.1:1", "--min-move", "0.001",
                 "--out", str(tmp_path)]) == 2
    assert "--min-move re-estimates the dynamics from quotes" in capsys.readouterr().err


def test_an_ssr_panel_without_estimates_says_why_and_lists_no_undrawn_line() -> None:
    from matplotlib.figure import Figure

    from streamer.devtools.plot import _dynamics

    few = Dynamics(ssr=float("nan"), spot_vol_beta=0.1, r2=0.5, n_obs=3, regime="unknown",
                   ssr_n_obs=3)
    updates = [make_surface(exchange_ts_ms=NOW_MS + 1000 * i) for i in range(5)]
    fig = Figure()
    _dynamics(fig, updates, [few] * len(updates))
    ssr_ax, beta_ax, _ = fig.axes
    assert ssr_ax.get_legend() is None
    assert [t.get_text() for t in ssr_ax.texts if "no SSR estimate" in t.get_text()] == [
        "no SSR estimate: at most 3 observations, 10 needed\n"
        "(requotes near the money of instruments whose forward moved)"]
    assert beta_ax.get_legend() is None  # 3 observations: no beta is drawn either


# -- what the pictures show --------------------------------------------------------------

def _with_views(surface: SurfaceUpdate) -> SurfaceUpdate:
    from streamer.core.tenors import TenorView
    from streamer.types import VarianceIndex

    views = [TenorView(tenor_days=d, t=d / 365, forward=100_000.0, atm_vol=0.5 + 0.001 * d,
                       atm_skew=-0.1, rr25=-0.04, bf25=0.01, rr10=-0.07, bf10=0.03,
                       delta_vols={"10P": 0.6, "25P": 0.55, "ATM": 0.5 + 0.001 * d,
                                   "25C": 0.51, "10C": 0.56}, extrapolated=d > 180)
             for d in (7.0, 30.0, 365.0)]
    index = VarianceIndex(tenor_days=30.0, vol=0.58, near_expiry="a", next_expiry="b",
                          n_strikes=40, model_vol=0.6)
    slices = [msgspec.structs.replace(s, atm_vol_se=0.004) for s in surface.slices]
    return msgspec.structs.replace(surface, tenors=views, variance_index=index, slices=slices)


def test_the_tenor_views_are_drawn_as_published() -> None:
    """The ATM line by tenor, the extrapolated tenor marked, and the delta grid's cells
    are the published numbers (in %)."""
    from matplotlib.figure import Figure

    from streamer.devtools.plot import _tenors

    surface = _with_views(make_surface())
    fig = Figure()
    _tenors(fig, surface, surface)
    atm_ax, _, grid_ax = fig.axes[:3]
    last = atm_ax.get_lines()[1]
    assert list(last.get_xdata()) == [7.0, 30.0, 365.0]
    assert list(last.get_ydata()) == pytest.approx([50.7, 53.0, 86.5])
    assert list(atm_ax.get_lines()[2].get_xdata()) == [365.0]  # the extrapolated one
    cells = grid_ax.get_images()[0].get_array()
    assert cells[1].tolist() == pytest.approx([60.0, 55.0, 53.0, 51.0, 56.0])


def test_the_smiles_carry_the_atm_error_bar_and_the_index_its_series() -> None:
    from matplotlib.figure import Figure

    from streamer.config import load_config
    from streamer.devtools.plot import _index, _smiles

    surface = _with_views(make_surface())
    fig = Figure()
    _smiles(fig, surface, None, load_config(None, env={}))
    bars = [c for c in fig.axes[0].containers if c.has_yerr]
    assert len(bars) == 1
    segment = bars[0].lines[2][0].get_segments()[0]
    assert segment[1][1] - segment[0][1] == pytest.approx(2 * 100 * 1.96 * 0.004)
    fig = Figure()
    _index(fig, [surface, surface])
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels == ["variance index, market quotes", "the same on the fitted smiles",
                      "30-day ATM vol"]  # no DVOL in these surfaces: not in the legend
