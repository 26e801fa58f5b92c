"""The page in a real browser: Debian's chromium, headless, over the DevTools protocol.

Against ``streamer run`` on the bundled replay (a subprocess, as a user starts it): the
page loads without console errors, draws one smile per evaluable expiry of the surface
it shows, and redraws when the next surface of that key arrives.
``UI_SCREENSHOT=docs/img/live-view.png`` keeps the screenshot (the README's).
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamer.client.slices import Slice
from streamer.sinks.codec import decode_surface
from tests.ui.cdp import CHROMIUM, Browser

ROOT = Path(__file__).parents[2]
LIVE_VIEW = re.compile(r"live view on (http://127\.0\.0\.1:\d+/ui)")
WAIT_S = 90.0

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed: `make test` installs it as root "
                             "(apt-get install chromium)")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[str]:
    """``streamer run`` on the bundled replay; yields the page URL it prints at start."""
    log = tmp_path / "run.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamer.cli", "run", "--config", str(ROOT / "config.yaml"),
             "--sink", "stdout", "--metrics-port", "0", "--duration", "120"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
    try:
        yield _page_url(proc, log)
    finally:
        proc.terminate()
        proc.wait(30)


def _page_url(proc: subprocess.Popen[bytes], log: Path) -> str:
    for _ in range(600):
        found = LIVE_VIEW.search(log.read_text())
        if found:
            return found.group(1)
        assert proc.poll() is None, log.read_text()[-3000:]
        subprocess.run(["sleep", "0.1"], check=True)
    raise AssertionError(f"no live view URL printed: {log.read_text()[-3000:]}")


async def _until(page: Browser, expression: str) -> Any:
    """Poll a page expression until it is truthy; its value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while loop.time() < deadline:
        value = await page.evaluate(expression)
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"never true: {expression}; errors {page.console_errors()}")


DRAWN = """(() => {
  const s = window.streamerView;
  if (!s) return null;
  const key = s.key;
  if (!s.renders || !s.curves[key] || s.curves[key].seq !== s.lastSeq) return null;
  const paths = [...document.querySelectorAll('#smiles path.smile')];
  return {key, seq: s.lastSeq, surface: JSON.stringify(s.surfaces[key]),
          expiries: paths.map(p => p.dataset.expiry),
          lengths: paths.map(p => (p.getAttribute('d').match(/L/g) || []).length),
          ds: paths.map(p => p.getAttribute('d')),
          meta: document.getElementById('meta').textContent};
})()"""


async def test_the_page_draws_every_fitted_smile_and_redraws_on_the_next_surface(
        service: str, tmp_path: Path) -> None:
    async with Browser(tmp_path / "profile") as page:
        for domain in ("Runtime", "Log", "Page"):
            await page.send(f"{domain}.enable")
        await page.send("Page.navigate", {"url": service})
        first = await _until(page, DRAWN)

        surface = decode_surface(first["surface"].encode())
        fitted = [s.expiry for s in surface.slices
                  if Slice(s, surface.model, surface.params).usable]
        assert len(fitted) >= 5, surface.slices
        assert first["expiries"] == fitted  # one curve per evaluable expiry, in order
        assert min(first["lengths"]) >= 30  # whole curves, not a point each

        later = await _until(page, f"(() => {{ const d = {DRAWN}; "
                                   f"return d && d.seq > {first['seq']} ? d : null; }})()")
        assert later["key"] == first["key"]
        assert later["meta"] != first["meta"]
        assert later["ds"] != first["ds"]
        # The health panel filled from the service's own figures.
        health = await _until(page, "(t => t.includes('venue deribit') && t)"
                                    "(document.getElementById('health').textContent)")
        assert "venue deribitconnected" in health
        assert "ticks/s" in health

        if os.environ.get("UI_SCREENSHOT"):  # some history in the time panels
            await _until(page, f"window.streamerView.history['{first['key']}'].length > 40")
        shot = await page.send("Page.captureScreenshot", {"format": "png"})
        png = base64.b64decode(shot["data"])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("UI_SCREENSHOT"):
            Path(os.environ["UI_SCREENSHOT"]).write_bytes(png)
        assert page.console_errors() == []
