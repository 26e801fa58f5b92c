"""Engine.seed: a calibrator restarting (or taking over an underlying) warm-starts from the
last published surface, unless it already calibrates that underlying itself."""

from __future__ import annotations

import msgspec

from streamer.config import BatchConfig, CalibrationConfig
from streamer.pipeline.engine import Engine
from streamer.types import SurfaceUpdate
from tests.pipeline.chain import NOW_NS, chain_quotes

DAYS = (7, 20, 45)


def _surface(engine: Engine, received_ns: int = NOW_NS, days: tuple[int, ...] = DAYS
             ) -> SurfaceUpdate:
    for quote in chain_quotes(days, received_ns=received_ns):
        engine.on_quote(quote)
    (update,) = engine.flush(received_ns)
    return update


def _engine(model: str = "svi") -> Engine:
    return Engine("deribit", CalibrationConfig(model=model), BatchConfig())  # type: ignore[arg-type]


def test_a_seeded_engine_fits_warm_from_the_published_surface() -> None:
    published = _surface(_engine())
    assert {s.status for s in published.slices} == {"cold"}
    seeded = _engine()
    assert seeded.seed(published)
    assert {s.status for s in _surface(seeded).slices} == {"warm"}


def test_a_seed_is_ignored_by_an_engine_that_already_calibrates_the_underlying() -> None:
    engine = _engine()
    _surface(engine, days=DAYS[:2])
    published = _surface(_engine())  # with an expiry this engine has not fitted yet
    assert not engine.seed(published)
    statuses = {s.t > 0.1: s.status for s in _surface(engine, NOW_NS + 1).slices}
    assert statuses == {False: "warm", True: "cold"}  # its own fits warm, the new one cold


def test_a_seed_of_another_models_parameters_starts_cold() -> None:
    seeded = _engine()
    assert seeded.seed(_surface(_engine("sabr")))
    assert {s.status for s in _surface(seeded).slices} == {"cold"}


def test_a_seeded_engine_continues_the_published_seq() -> None:
    published = msgspec.structs.replace(_surface(_engine()), seq=41)
    seeded = _engine()
    seeded.seed(published)
    assert _surface(seeded).seq == 42


def test_a_seed_ignored_leaves_the_engines_own_seq() -> None:
    engine = _engine()
    first = _surface(engine)
    assert not engine.seed(msgspec.structs.replace(first, seq=100))
    assert _surface(engine, NOW_NS + 1).seq == first.seq + 1
