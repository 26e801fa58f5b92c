"""Dependencies point one way (DESIGN.md "Layers"): an allow-list over every module.

Each unit of the package (a top-level module or subpackage of ``streamer``) names the
units it may import; anything else is a violation. Imports are resolved the way Python
resolves them: ``from streamer import sinks`` imports ``streamer.sinks``, ``from ..sinks
import kafka`` inside ``streamer/core/x.py`` imports ``streamer.sinks.kafka``. Imports
under ``if TYPE_CHECKING:`` are annotations only and are not counted; imports inside a
function are counted like any other, except the stand-ins (``devtools``) that
``DEFERRED`` lets a unit import where the config starts one.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "streamer"
IO_LIBRARIES = {"asyncio", "websockets", "aiokafka", "prometheus_client", "socket", "urllib",
                "aiohttp", "subprocess"}

_BASE = {"errors"}
#: unit -> the streamer units it may import (itself always).
ALLOWED: dict[str, set[str]] = {
    "__init__": set(),
    "errors": set(),
    "tasks": set(),
    "logs": set(),
    "core": set(),
    "types": {"core"},
    "tickfile": _BASE,
    "config": _BASE | {"tickfile", "types"},
    "pipeline": _BASE | {"core", "types", "config"},
    "kafka": _BASE | {"config", "types", "core", "tasks"},
    "sources": _BASE | {"core", "types", "config", "tasks", "kafka"},
    "sinks": _BASE | {"core", "types", "config", "tasks", "tickfile", "kafka"},
    "client": _BASE | {"core", "types", "kafka", "sinks"},
    "telemetry": _BASE | {"__init__", "core", "types"},
    "ui": _BASE | {"core", "types", "config", "client", "kafka", "sinks",
                   "telemetry"},
    "app": _BASE | {"core", "types", "config", "tickfile", "tasks", "pipeline", "kafka",
                    "sources", "sinks", "telemetry", "ui", "client"},
    "devtools": _BASE | {"__init__", "core", "types", "config", "tickfile", "tasks", "logs",
                         "pipeline", "kafka", "sources", "sinks", "client",
                         "telemetry", "app"},
    "cli": _BASE | {"__init__", "config", "logs", "app", "sinks", "kafka", "telemetry", "ui"},
}
#: unit -> units it may import only inside a function: the stand-ins, loaded on demand.
DEFERRED: dict[str, set[str]] = {"app": {"devtools"}, "cli": {"devtools"}}
#: libraries that have one home: no other unit imports them.
LIBRARY_HOMES: dict[str, set[str]] = {"aiokafka": {"kafka"}}
#: units that must stay pure (DESIGN.md layers 1-2): no IO library, no clock.
PURE: dict[str, set[str]] = {"core": IO_LIBRARIES | {"time", "datetime"},
                             "pipeline": IO_LIBRARIES}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module: str) -> str:
    """``streamer.sinks.kafka`` -> ``sinks``; ``streamer`` itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _runtime_nodes(tree: ast.AST) -> Iterator[tuple[ast.AST, bool]]:
    """Every node with whether it sits inside a function; ``if TYPE_CHECKING`` skipped."""
    def walk(node: ast.AST, deferred: bool) -> Iterator[tuple[ast.AST, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                yield from ((n, deferred) for s in child.orelse for n in walk_one(s, deferred))
                continue
            inner = deferred or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            yield child, deferred
            yield from walk(child, inner)

    def walk_one(node: ast.AST, deferred: bool) -> Iterator[ast.AST]:
        yield node
        yield from (n for n, _ in walk(node, deferred))
    return walk(tree, False)


def imports(source: str, module: str, is_package: bool = False) -> list[tuple[str, bool]]:
    """What a module's source imports, resolved to absolute names, each with whether
    the import is deferred (inside a function). ``from a import b`` yields ``a`` and
    ``a.b`` (``b`` may be a submodule)."""
    found: list[tuple[str, bool]] = []
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node, deferred in _runtime_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, deferred) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            name = ".".join(base + ([node.module] if node.module else []))
            if name != "streamer":  # `from streamer import x` imports streamer.x alone
                found.append((name, deferred))
            found += [(f"{name}.{alias.name}", deferred) for alias in node.names]
    return found


def _streamer_unit(name: str) -> str | None:
    if name != "streamer" and not name.startswith("streamer."):
        return None
    unit = unit_of(name)
    exists = (PACKAGE / unit).is_dir() or (PACKAGE / f"{unit}.py").is_file()
    return unit if exists or unit == "__init__" else "__init__"  # streamer.__version__


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """Every import of ``source`` (as if it were ``module``) that its unit may not make."""
    unit = unit_of(module)
    allowed = ALLOWED[unit] | {unit}
    found = []
    for name, deferred in imports(source, module, is_package):
        target = _streamer_unit(name)
        if target is None:
            library = name.split(".")[0]
            if library in PURE.get(unit, set()) or unit not in LIBRARY_HOMES.get(library, {unit}):
                found.append(f"{module} imports {name}")
        elif target not in allowed and not (deferred and target in DEFERRED.get(unit, set())):
            found.append(f"{module} imports {name}")
    return sorted(set(found))


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def test_every_unit_is_in_the_allow_list() -> None:
    units = {unit_of(_module_name(p)) for p in _modules()}
    assert units - set(ALLOWED) == set()


@pytest.mark.parametrize("unit", sorted(ALLOWED))
def test_each_unit_imports_only_what_it_is_allowed(unit: str) -> None:
    found = [v for p in _modules() if unit_of(name := _module_name(p)) == unit
             for v in violations(p.read_text(), name, p.name == "__init__.py")]
    assert found == []


@pytest.mark.parametrize("planted", [
    "from streamer import sinks",
    "from ..sinks import kafka",
    "from .. import pipeline",
    "from streamer.client import Surface",
    "import streamer.app.service",
    "def f():\n    from streamer.devtools import synth",
    "import asyncio",
    "import time",
])
def test_the_checker_flags_a_planted_import_into_core(planted: str) -> None:
    assert violations(planted, "streamer.core.smile") != []


@pytest.mark.parametrize("allowed", [
    "from . import black76",
    "from .models import svi",
    "import numpy as np",
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from streamer.pipeline import engine",
])
def test_the_checker_passes_what_core_may_import(allowed: str) -> None:
    assert violations(allowed, "streamer.core.smile") == []


def test_aiokafka_is_imported_only_by_the_kafka_package() -> None:
    assert violations("from aiokafka import AIOKafkaProducer", "streamer.sinks.kafka") != []
    assert violations("from aiokafka import AIOKafkaProducer", "streamer.kafka.producer") == []


def test_a_stand_in_may_be_imported_only_where_the_config_starts_one() -> None:
    deferred = "def start():\n    from streamer.devtools.embedded_broker import EmbeddedBroker"
    assert violations(deferred, "streamer.app.service") == []
    assert violations("from streamer.devtools import synth", "streamer.app.service") != []
    assert violations(deferred, "streamer.sinks.kafka") != []


def test_the_client_imports_nothing_from_the_producing_side() -> None:
    """Subscribers install the client alone: it may not pull the service in."""
    upstream = {"pipeline", "sources", "app", "cli", "devtools", "config", "telemetry", "ui"}
    assert ALLOWED["client"] & upstream == set()


def test_scipy_loads_only_when_a_model_needs_it() -> None:
    """scipy's subpackages cost more to import than the rest of a process: starting the
    service, a replay, the CLI or the client on SVI or SABR loads no scipy.optimize or
    scipy.interpolate (core/lazy_scipy.py), and with the C kernel built no scipy at all
    (core/special.py)."""
    from streamer.core import special

    probe = ("import sys, streamer.cli, streamer.app.file_replay, streamer.app.service, "
             "streamer.client, streamer.core.models.registry\n"
             "print(sorted({m.split('.')[1] if '.' in m else m for m in sys.modules "
             "if m.split('.')[0] == 'scipy'}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    loaded = set(ast.literal_eval(out.stdout))
    assert loaded & {"optimize", "interpolate"} == set()
    if special.NATIVE:
        assert loaded == set()


def test_a_short_expirys_reduced_fit_loads_no_scipy_optimize() -> None:
    """A four-quote expiry (a Deribit daily in its last hours) takes the reduced fit
    (ssvi.fit_slice); it runs on the project's LM, so an SVI or SABR replay that meets one
    still pays no scipy.optimize import."""
    probe = ("import sys, numpy as np\n"
             "from streamer.core.models.svi import SVIModel\n"
             "k = np.array([-0.04, -0.01, 0.01, 0.05])\n"
             "fit = SVIModel().calibrate_reduced(k, 0.5 + 2 * k * k, 0.01, np.ones(4))\n"
             "print(fit.ok, 'scipy.optimize' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["True", "False"]
