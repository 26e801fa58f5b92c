"""streamer/kafka/ is Kafka's one home: nothing else in the package imports aiokafka,
and the Kafka package imports nothing above it (sinks, sources, app, client use it)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "streamer"

ABOVE_KAFKA = ("streamer.sinks", "streamer.sources", "streamer.app", "streamer.cli",
               "streamer.client", "streamer.pipeline", "streamer.ui", "streamer.telemetry",
               "streamer.devtools")


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _imports(path: Path) -> set[str]:
    """Absolute module names ``path`` imports, at any depth (a function's import too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_only_streamer_kafka_imports_aiokafka() -> None:
    kafka = PACKAGE / "kafka"
    leaks = [f"{path.relative_to(PACKAGE)} imports {name}" for path in _modules()
             if kafka not in path.parents
             for name in _imports(path) if name.split(".")[0] == "aiokafka"]
    assert leaks == []


def test_the_kafka_package_imports_nothing_above_it() -> None:
    found = [f"{path.relative_to(PACKAGE)} imports {name}"
             for path in sorted((PACKAGE / "kafka").rglob("*.py"))
             for name in _imports(path)
             if any(name == m or name.startswith(m + ".") for m in ABOVE_KAFKA)]
    assert found == []
