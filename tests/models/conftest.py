"""Fixtures of the SVI kernels' tests: the kernels, and the numpy path they must match."""

from __future__ import annotations

from typing import Any

import pytest

from streamer.core.models import svi, svi_lm


@pytest.fixture
def kernels() -> svi_lm.Kernels:
    native = svi_lm.native()
    if native is None:
        pytest.skip("SVI kernels not built (no C compiler at install)")
    return native


@pytest.fixture
def numpy_path(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Call ``numpy_path(fn)`` to run ``fn`` with the kernels switched off."""
    def run(fn: Any) -> Any:
        with monkeypatch.context() as m:
            m.setattr(svi, "_NATIVE", None)
            return fn()
    return run
