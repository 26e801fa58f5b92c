"""``url: replay``: the stand-in exchanges, one loopback server per replayed venue, on
that venue's recording.

A venue plays ``replay.files[venue]`` if named there, else ``replay.file``; ``bundled``
is the venue's own bundled recording. Deribit's is the sample shipped in the package
(``streamer/data``, 240 s). OKX's, Bybit's and Binance's are generated at start into
a temporary directory by the synthesiser, with the sample's seed: the same smiles and
spot path in that venue's own messages, 60 s of them. Writing one takes 0.3–1.1 s
(measured, uncompressed); committed instead, each would weigh 1.1–2.9 MB gzipped for
the same 60 s and drift from the synthesiser and decoders it must match.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import TypeVar

import msgspec

from streamer.config import (
    BUNDLED,
    TICKFILE_DEFAULTS,
    BybitConfig,
    ReplayConfig,
    TickFileConfig,
    VenueConfig,
    VenueName,
)
from streamer.devtools.exchange import ReplayServer
from streamer.devtools.synth import synthesise
from streamer.errors import ConfigError

log = logging.getLogger(__name__)
VenueT = TypeVar("VenueT", bound=VenueConfig)

#: Recorded seconds of a generated bundled recording; 240 s (the sample's) takes
#: up to 3.5 s to write for OKX or Binance.
GENERATED_DURATION_S = 60.0
#: The shipped sample's seed: one seed is one market on every venue.
GENERATED_SEED = 7


def bundled_sample() -> Path:
    """Path of the recorded (Deribit) sample shipped inside the package."""
    return Path(str(resources.files("streamer") / "data" / "deribit_sample.ndjson.gz"))


def resolve_tickfile(name: str) -> Path:
    """``bundled`` (the shipped Deribit sample) or a path; a missing file is a clear error."""
    path = bundled_sample() if name == BUNDLED else Path(name)
    if not path.exists():
        raise ConfigError(f"tick file not found: {path}")
    return path


def generate_bundled(venue: VenueName, directory: Path) -> Path:
    """Write the bundled recording of a venue other than Deribit into ``directory``.

    Deterministic; the truth (smiles, spot path) is written beside it as
    ``<venue>_sample.truth.json``.
    """
    out = directory / f"{venue}_sample.ndjson"
    synthesise(out, directory / f"{venue}_sample.truth.json", seed=GENERATED_SEED,
               duration_s=GENERATED_DURATION_S, venue=venue)
    return out


class ReplayServers:
    """The replay servers of one run: started per venue entry, stopped together."""

    def __init__(self, config: ReplayConfig, tickfile: TickFileConfig = TICKFILE_DEFAULTS
                 ) -> None:
        self.config = config
        self.tickfile = tickfile
        self.servers: list[ReplayServer] = []
        self._generated: dict[str, Path] = {}
        self._tmp: Path | None = None

    @property
    def finite(self) -> bool:
        """True when there are servers and each will reach the end of its file."""
        return bool(self.servers) and not self.config.loop

    async def start(self, venue: VenueT) -> VenueT:
        """Serve the venue's recording on loopback; the venue pointed at that server.

        Bybit's instrument list (``rest_url``) is served on the same port.
        """
        path = await self._recording(venue.name)
        server = ReplayServer(path, venue=venue.name, speed=self.config.speed,
                              loop=self.config.loop, tickfile=self.tickfile)
        self.servers.append(server)  # stop() is safe on a server that failed to start
        await server.start()
        log.info("replay server for %s on %s (speed ×%g)", venue.name, server.url,
                 self.config.speed)
        if isinstance(venue, BybitConfig):  # its instrument list, from the same server
            return msgspec.structs.replace(venue, url=server.url, rest_url=server.http_url)
        return msgspec.structs.replace(venue, url=server.url)

    async def drained(self, grace_s: float) -> None:
        """Return ``grace_s`` after every server has played its file to the end."""
        await asyncio.gather(*(server.finished.wait() for server in self.servers))
        # Let the last frames cross the sockets and the last batch be cut.
        await asyncio.sleep(grace_s)

    async def stop(self) -> None:
        """Stop every server and delete the generated recordings."""
        servers, self.servers = self.servers, []
        for server in servers:
            await server.stop()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
            self._generated.clear()

    async def _recording(self, venue: VenueName) -> Path:
        name = self.config.file_for(venue)
        if name != BUNDLED or venue == "deribit":
            return resolve_tickfile(name)
        path = self._generated.get(venue)
        if path is None:
            if self._tmp is None:
                self._tmp = Path(tempfile.mkdtemp(prefix="streamer-replay-"))
            started = time.perf_counter()
            # In a thread: /healthz and /metrics keep answering meanwhile.
            path = await asyncio.to_thread(generate_bundled, venue, self._tmp)
            self._generated[venue] = path
            log.info("generated the bundled %s recording (%g s of the sample's market) in "
                     "%.1f s", venue, GENERATED_DURATION_S, time.perf_counter() - started)
        return path
