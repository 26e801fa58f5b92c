"""The client sits beside the sinks: types, core, errors and the codec; nothing upstream."""

from __future__ import annotations

from pathlib import Path

from tests.test_layering import _imports

CLIENT = Path(__file__).parents[2] / "streamer" / "client"
UPSTREAM = ("streamer.pipeline", "streamer.sources", "streamer.app", "streamer.cli",
            "streamer.devtools", "streamer.config")


def test_the_client_imports_nothing_from_the_producing_side() -> None:
    found = [f"{path.name} imports {name}" for path in sorted(CLIENT.glob("*.py"))
             for name in _imports(path)
             if any(name == m or name.startswith(m + ".") for m in UPSTREAM)]
    assert found == []
