"""Dependencies point one way: cli → app → sources/sinks/metrics → pipeline → types → core."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "streamer"
IO_LIBRARIES = {"asyncio", "websockets", "aiokafka", "prometheus_client", "socket", "urllib"}

# For each layer: the streamer modules and third-party libraries it must not import.
FORBIDDEN = {
    "core": ({"streamer.pipeline", "streamer.sources", "streamer.sinks", "streamer.app",
              "streamer.cli", "streamer.config", "streamer.types",
              "streamer.devtools"}, IO_LIBRARIES | {"time", "datetime"}),
    "pipeline": ({"streamer.sources", "streamer.sinks", "streamer.app", "streamer.cli",
                  "streamer.devtools"}, IO_LIBRARIES),
    "sources": ({"streamer.sinks", "streamer.app", "streamer.cli", "streamer.pipeline",
                }, set()),
    "sinks": ({"streamer.sources", "streamer.app", "streamer.cli", "streamer.pipeline"}, set()),
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _violations(layer: str) -> list[str]:
    own, libs = FORBIDDEN[layer]
    found = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            if top in libs or any(name == m or name.startswith(m + ".") for m in own):
                found.append(f"{path.relative_to(PACKAGE)} imports {name}")
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_only_downwards(layer: str) -> None:
    assert (PACKAGE / layer).is_dir()
    assert _violations(layer) == []


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import asyncio\nfrom streamer.sinks import kafka\n")
    assert _imports(bad) == {"asyncio", "streamer.sinks"}
