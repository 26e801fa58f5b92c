"""Kafka's failures as ours: aiokafka's errors never leave ``streamer.kafka``.

Hierarchy (under ``streamer.errors.BrokerError``)::

    BrokerError
    ├── BrokerFailed        what the Kafka client or its socket raised; retryable
    │   └── Unsendable      one record the broker will never take (too large); the
    │                       others go on
    └── BrokerRefused       the broker or its topics cannot serve this config; fatal
        ├── TopicMismatch   an existing topic's partitions or cleanup policy differ
        └── SessionTimeoutRefused  a consumer group's session timeout is refused

``BrokerFailed`` keeps the client's message and names its error in ``reason`` (the
label an error counter uses, e.g. ``KafkaConnectionError``); the original stays the
``__cause__``.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from streamer.errors import BrokerError


class BrokerFailed(BrokerError):
    """The Kafka client (or the socket under it) failed; ``reason`` is its error's name."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class Unsendable(BrokerFailed):
    """A record no retry can send (larger than the broker takes): dropped and counted."""

    retryable = False


class BrokerRefused(BrokerError):
    """The broker or its topics cannot serve this config: retrying will not help."""

    retryable = False


class TopicMismatch(BrokerRefused):
    """An existing topic's partitions or cleanup policy differ from the config: a key
    would move to another partition (or the latest surface would not be kept)."""


class SessionTimeoutRefused(BrokerRefused):
    """The broker refuses the consumer group's session timeout (outside its
    ``group.min.session.timeout.ms`` .. ``group.max.session.timeout.ms``)."""


#: What the Kafka client raises when the broker is down, slow or refusing.
CLIENT_ERRORS = (KafkaError, OSError)


def as_broker_error(exc: BaseException, message: Callable[[BaseException], str] = str
                    ) -> BrokerError:
    """``exc`` as ours: our own errors unchanged, the client's as ``BrokerFailed`` (its
    cause the client's)."""
    if isinstance(exc, BrokerError):
        return exc
    kind = Unsendable if isinstance(exc, MessageSizeTooLargeError) else BrokerFailed
    mapped = kind(message(exc), type(exc).__name__)
    mapped.__cause__ = exc  # as ``raise ... from exc`` would, also when only returned
    return mapped


def broker_errors(message: Callable[[BaseException], str] = str) -> _AsOurs:
    """``with broker_errors(): ...`` raises the client's errors from the block as
    ``BrokerFailed`` (``raise ... from``); ``message`` words them. A block with a
    deadline of its own catches its ``TimeoutError`` (an ``OSError``) inside."""
    return _AsOurs(message)


class _AsOurs:
    """The context manager of ``broker_errors`` (a class: it never swallows, and says so)."""

    def __init__(self, message: Callable[[BaseException], str]) -> None:
        self._message = message

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if isinstance(exc, CLIENT_ERRORS):
            raise as_broker_error(exc, self._message) from exc


def error_reason(exc: BaseException) -> str:
    """The counted label of a failure: the client's error name, else our class name."""
    return exc.reason if isinstance(exc, BrokerFailed) else type(exc).__name__


def unreachable(bootstrap: str, exc: BaseException) -> BrokerError:
    """One line for a broker we could not reach, naming the setting that points at it."""
    detail = str(exc) or error_reason(exc)
    return BrokerError(f"cannot reach Kafka at {bootstrap} ({detail}); check "
                       "kafka.bootstrap_servers (STREAMER_KAFKA__BOOTSTRAP_SERVERS)")
