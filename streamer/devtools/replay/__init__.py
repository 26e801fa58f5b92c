"""The replay server: a recorded tick file served on loopback in a venue's own protocol.

``ReplayServer(path, venue=...)`` speaks Deribit, OKX, Bybit or Binance; ``Faults``
says what to get wrong; ``ReplayStats`` says what happened. Layout: ``server``
(connections, playback, faults), ``timeline`` (the shared clock), ``venue`` (what
a venue protocol is), one module per venue, and ``command`` (``streamer
serve-replay``: every setting and fault a flag).
"""

from streamer.devtools.replay.command import serve_replay
from streamer.devtools.replay.faults import Faults
from streamer.devtools.replay.server import VENUES, ReplayServer
from streamer.devtools.replay.stats import ConnectionStats, ReplayStats

__all__ = ["VENUES", "ConnectionStats", "Faults", "ReplayServer", "ReplayStats", "serve_replay"]
