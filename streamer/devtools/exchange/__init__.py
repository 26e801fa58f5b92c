"""A stand-in exchange: a recorded tick file served on loopback in a venue's own protocol.

"Replay" in streamer means replaying a tick file; this package is where a file is
played as an exchange would send it (``streamer serve-replay``, ``url: replay``).
``streamer replay`` itself, the file fed straight to the engine, is
:mod:`streamer.app.file_replay`.

``ReplayServer(path, venue=...)`` speaks Deribit, OKX, Bybit or Binance; ``Faults``
says what to get wrong; ``ReplayStats`` says what happened. Layout: ``server``
(connections, playback, faults), ``timeline`` (the shared clock), ``venue`` (what
a venue protocol is), one module per venue, and ``command`` (``streamer
serve-replay``: every setting and fault a flag).
"""

from streamer.devtools.exchange.command import serve_replay
from streamer.devtools.exchange.faults import Faults
from streamer.devtools.exchange.server import VENUES, ReplayServer
from streamer.devtools.exchange.stats import ConnectionStats, ReplayStats

__all__ = ["VENUES", "ConnectionStats", "Faults", "ReplayServer", "ReplayStats", "serve_replay"]
