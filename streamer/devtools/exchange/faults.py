"""What the replay server can be told to get wrong, and the market events it can stage.

Every venue honours every fault in its own wire format: a refused subscribe is
Deribit's error 11050, OKX's ``60012``, Bybit's ``failTopics``, Binance's error
object. Only Deribit announces maintenance (``platform_state``); on the others the
data simply stops for the window, as it would. A listing or expiry shows where the
venue lists its instruments: Deribit's ``get_instruments``, Bybit's REST list, OKX's
``opt-summary`` pushes, Binance's mark-price arrays. A silenced stream is one key
that stops delivering while the connection and its other keys go on.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Faults:
    """Misbehaviour and market events to inject.

    ``drop_every_s`` counts from the server's start; ``stall_after_s`` and
    ``stop_heartbeats_after_s`` from each connection's opening; ``maintenance``,
    ``new_listing``, ``expiry`` and ``silence_streams`` from the start of playback (the
    first subscribe).
    """

    drop_every_s: float | None = None  # close every connection (1012) this often
    stall_after_s: float | None = None  # then silent: no data, pongs, heartbeats or replies
    garbage_rate: float = 0.0  # share of data frames replaced by a truncated one
    reject_subscribe: bool = False  # refuse every subscribe, in the venue's error format
    seed: int = 0
    rate_limit_subscribes: int = 0  # refuse the first N subscribes as rate-limited, then close
    rate_limit_every: int = 0  # and every Nth subscribe (0: none), say each connection's last
    refuse_channels: frozenset[str] = frozenset()  # subscription keys never confirmed
    stop_heartbeats_after_s: float | None = None  # then no heartbeats or pongs; data goes on
    maintenance: tuple[float, float] | None = None  # (start, length): locked, no data
    maintenance_index: str | None = None  # lock this price index, not the platform
    new_listing: tuple[str, float] | None = None  # (instrument, at): listed from then
    expiry: tuple[str, float] | None = None  # (instrument, at): delisted, silent from then
    # (key, start, length) each: no data on a key for a while, still subscribed, the other
    # keys flowing (a stream dead at the venue; resubscribing does not revive it early)
    silence_streams: tuple[tuple[str, float, float], ...] = ()
