"""Server-Sent Events framing (the WHATWG HTML "event stream" format)."""

from __future__ import annotations


def sse_frame(event: str, data: bytes, event_id: str | None = None) -> bytes:
    """One event; ``data`` is one line of JSON (no newline inside)."""
    head = f"event: {event}\n" + (f"id: {event_id}\n" if event_id else "")
    return head.encode() + b"data: " + data + b"\n\n"
