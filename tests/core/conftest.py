"""Fixtures shared by the core's tests."""

from __future__ import annotations

import pytest

from streamer.core import smile_rows


@pytest.fixture(params=["native", "numpy"])
def svi_metrics_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The SVI smile metrics' C kernel, or their numpy path (the kernel switched off)."""
    if request.param == "numpy":
        monkeypatch.setattr(smile_rows, "_NATIVE", None)
    elif smile_rows._NATIVE is None:
        pytest.skip("the C kernel was not built")
    return str(request.param)
