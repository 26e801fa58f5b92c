"""One exception root for the whole package.

Hierarchy::

    StreamerError                 (retryable: bool)
    ├── ConfigError               bad or unknown setting; fatal at start (exit code 2)
    ├── DecodeError               a wire message we cannot use; counted and dropped
    ├── TickFileError             a tick file unreadable or too damaged to use
    ├── VenueError                the exchange refused or broke the session
    │   ├── VenueRefused          a subscription or listing refused; retryable (a new
    │   │   │                     connection asks again after backoff)
    │   │   ├── ChannelRefused    one channel asked for alone refused; the others stream
    │   │   └── RateLimited       we sent too fast; the next connection cools down first
    │   └── VenueDisconnected     connection lost or went quiet; retryable
    │       └── VenueUnreachable  the host cannot be resolved or reached; retryable
    └── BrokerError               Kafka unreachable or refusing; retryable

Foreign exceptions are mapped to these at the edge with ``raise ... from exc``.
"""

from __future__ import annotations

import errno


class StreamerError(Exception):
    """Root of every error streamer raises on purpose."""

    retryable: bool = False


class ConfigError(StreamerError):
    """A setting is unknown, missing or has a bad value."""


class DecodeError(StreamerError):
    """A wire message cannot be decoded; ``reason`` is the counted rejection label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class TickFileError(StreamerError):
    """A tick file cannot be read, or more of its lines are bad than allowed."""


class VenueError(StreamerError):
    """The exchange answered with an error or refused a request."""


class VenueRefused(VenueError):
    """The venue refused what a connection needs (a subscription, the instrument list).

    Retryable: the venue may take it on a new connection, after backoff.
    """

    retryable = True


class ChannelRefused(VenueRefused):
    """The venue refused the one channel asked for alone (OKX); the others stream on."""


class RateLimited(VenueRefused):
    """The venue said we send too fast: the connection ends and the next one cools down."""


class VenueDisconnected(VenueError):
    """The connection dropped or fell silent; reconnecting may help."""

    retryable = True


class VenueUnreachable(VenueDisconnected):
    """No connection at all: the venue's host cannot be resolved, refuses, or times out."""


class BrokerError(StreamerError):
    """The Kafka broker cannot be reached or refused a request."""

    retryable = True


def listen_error(exc: OSError, what: str, host: str, port: int, setting: str) -> ConfigError:
    """One line for a port we cannot listen on, naming the setting that changes it."""
    reason = "already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
    return ConfigError(f"{what} cannot listen on {host}:{port}: {reason}; choose another port "
                       f"with {setting} (0 = any free port)")
