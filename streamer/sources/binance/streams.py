"""Which Binance streams went silent while another delivered, pure: times in, resubscribes out.

Binance acknowledges any stream name, so a stream that does not exist, or one that
stops while the others on the connection flow, is silent without an error. The
session tells ``StreamWatch`` when each stream was subscribed and when it delivered
(times of its own clock, passed in); ``due`` says which to resubscribe now, each
silence counted once and retried with capped, jittered backoff until it delivers.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field

# https://developers.binance.com/docs/derivatives/options-trading/websocket-market-streams/Mark-Price
PUSH_INTERVAL_S = 1.0  # <underlying>@optionMarkPrice: "Update Speed 1000ms"
STREAM_SILENCE_S = 5 * PUSH_INTERVAL_S  # five pushes missed: not a late one
MAX_RESUBSCRIBE_S = 60.0  # the slowest resubscribing gets (a stream that never exists)


@dataclass
class Silence:
    """One episode of one stream's silence; times in seconds of the watch's clock."""

    since: float  # the stream's last data (or its subscription)
    delays: Iterator[float]  # till each next resubscribe
    next_at: float = 0.0  # the next resubscribe is due (0: at once)
    resubscribes: int = 0
    waits: list[float] = field(default_factory=list)  # the delay drawn after each resubscribe


@dataclass
class StreamWatch:
    """Which subscribed streams went silent while another delivered; pure (times passed in).

    A stream is silent once ``window_s`` passed since its last data (or since it was
    subscribed) while some other stream delivered within ``window_s``: if every stream
    is silent the connection is, and that is the connection's silence check.
    """

    window_s: float
    backoff: Callable[[], Iterator[float]]
    last: dict[str, float] = field(default_factory=dict)
    silent: dict[str, Silence] = field(default_factory=dict)

    def expect(self, streams: Collection[str], now: float) -> None:
        """``streams`` were just subscribed: each has ``window_s`` from now to deliver."""
        for stream in streams:
            self.last.setdefault(stream, now)

    def seen(self, stream: str, now: float) -> Silence | None:
        """``stream`` delivered at ``now``; the episode this ends, if it was silent."""
        self.last[stream] = now
        return self.silent.pop(stream, None) if self.silent else None

    def due(self, now: float) -> list[tuple[str, bool]]:
        """Streams to resubscribe now, each with whether its silence is new."""
        flowing = [s for s, at in self.last.items() if now - at < self.window_s]
        out: list[tuple[str, bool]] = []
        for stream, at in self.last.items():
            episode = self.silent.get(stream)
            if episode is None and now - at >= self.window_s and flowing:
                episode = self.silent[stream] = Silence(since=at, delays=self.backoff())
                out.append((stream, True))
            elif episode is not None and now >= episode.next_at:
                out.append((stream, False))
            else:
                continue
            wait_s = next(episode.delays)
            episode.next_at = now + wait_s
            episode.waits.append(wait_s)
            episode.resubscribes += 1
        return out
