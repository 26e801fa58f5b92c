"""The project's optional C extensions, each taken where it was built.

setup.py builds them with ``optional=True``: without a C compiler at install the package
still installs, and every kernel's numpy path (its reference) is the fallback. One home
for asking "was this one built?", so each kernel's module decides C or numpy once, at
import, from :func:`extension`.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def extension(name: str, *entry_points: str) -> ModuleType | None:
    """The extension module ``name`` (``streamer.core._svi_smile``) where it was built and
    has every one of ``entry_points``; None otherwise (not built, or built before them)."""
    try:
        module = importlib.import_module(name)
    except ImportError:
        return None
    return module if all(hasattr(module, e) for e in entry_points) else None
