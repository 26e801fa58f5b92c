"""What the replay server did, per connection and in total, for tests to check."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class ConnectionStats:
    """One connection as the server saw it; times are ``time.monotonic()``."""

    opened_at: float = field(default_factory=time.monotonic)
    closed_at: float | None = None
    closed_by: str = ""  # client, drop, heartbeat, idle, pong_timeout, rate_limit, server_stop
    requested: Counter[str] = field(default_factory=Counter)  # asked for in subscribes
    subscriptions: Counter[str] = field(default_factory=Counter)  # confirmed
    unsubscriptions: Counter[str] = field(default_factory=Counter)
    subscribes_rejected: int = 0  # whole requests refused (reject_subscribe)
    messages_sent: int = 0  # data frames
    heartbeats_sent: int = 0  # server-initiated (Deribit's test_request)
    last_heartbeat_at: float | None = None
    pings_answered: int = 0  # the client's pings: text, JSON or websocket frames
    pings_unanswered: int = 0  # held back: heartbeats stopped (websocket pings: a stall too)
    server_pings: int = 0  # websocket pings the server sent (Binance's heartbeat)
    server_pongs: int = 0  # pongs that answered them
    rate_limited_at: float | None = None


@dataclass
class ReplayStats:
    """What the server did, for tests."""

    connections: int = 0
    messages_sent: int = 0  # data frames, garbage included
    garbage_sent: int = 0  # data frames sent truncated (garbage_rate)
    http_requests: int = 0  # answered on the venue's REST endpoints
    drops: int = 0
    test_requests_answered: int = 0  # Deribit public/test
    subscriptions: Counter[str] = field(default_factory=Counter)  # confirmed
    unsubscriptions: Counter[str] = field(default_factory=Counter)
    subscribes_rejected: int = 0
    rate_limited: int = 0
    heartbeat_closes: int = 0
    idle_closes: int = 0
    platform_notices: int = 0
    per_connection: list[ConnectionStats] = field(default_factory=list)

    @property
    def pings_answered(self) -> int:
        """Pings of every connection answered."""
        return sum(c.pings_answered for c in self.per_connection)
