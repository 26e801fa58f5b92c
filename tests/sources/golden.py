"""The real Deribit ticker notifications in tests/data, read without touching their bytes.

Each line of the golden file is ``{"source": ..., "recv_ts": ..., "msg": <verbatim
notification>}`` (see /work/shared/data/real/PROVENANCE.md); ``msg`` is kept as raw
bytes so the decoder sees exactly what Deribit sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from streamer.tickfile import TickFileWriter

GOLDEN = Path(__file__).parents[1] / "data" / "deribit_option_ticker_notifications_real.jsonl"
CAPTURE_2021_04 = "bmoscon/cryptofeed sample_data/DERIBIT.ws.30.0 (blob 4f5c375)"


class Row(msgspec.Struct, frozen=True):
    """One golden line: where it came from, when it was received, the raw message."""

    source: str
    recv_ts: float | None
    msg: msgspec.Raw

    @property
    def raw(self) -> bytes:
        """The notification exactly as sent."""
        return bytes(self.msg)

    @property
    def data(self) -> dict[str, Any]:
        """The ticker payload, parsed independently of the decoder under test."""
        parsed: dict[str, Any] = msgspec.json.decode(self.msg)["params"]["data"]
        return parsed

    @property
    def received_ts_ns(self) -> int:
        """Receive time in ns (the tardis-node lines have none: 0)."""
        return 0 if self.recv_ts is None else round(self.recv_ts * 1e6) * 1000


def rows() -> list[Row]:
    """Every golden line, in file order."""
    decoder = msgspec.json.Decoder(Row)
    return [decoder.decode(line) for line in GOLDEN.read_bytes().splitlines() if line.strip()]


def write_capture_tickfile(path: Path, source: str = CAPTURE_2021_04) -> list[Row]:
    """One real 30-second capture as a tick file (the replay server's input)."""
    capture = [row for row in rows() if row.source == source]
    with TickFileWriter(path) as writer:
        for row in capture:
            writer.write(row.received_ts_ns, row.raw)
    return capture
