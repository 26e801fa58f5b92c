"""``GET /ui``, ``GET /ui/events`` (Server-Sent Events) and ``GET /surface/{key}``.

Served by the metrics endpoint's HTTP server (``streamer.telemetry.metrics.serve_http``, same
host and port), which hands every request to :func:`ui_route` first.

The event stream: on connect, the latest surface of every key, then one ``surface``
event per published surface (the ``vol.surface.v1`` JSON, ``id: <key>@<seq>``),
each followed by its ``curves`` event (the fitted smiles, see ``streamer.ui.curves``),
conflated per key for a slow reader (see ``streamer.ui.hub``), and a ``health`` event
every ``health_period_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from importlib import resources

from streamer.ui.hub import Client, SurfaceHub
from streamer.ui.sse import sse_frame

Route = Callable[[str, asyncio.StreamWriter], Awaitable[bool]]

HEALTH_PERIOD_S = 1.0
SSE_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
            b"Cache-Control: no-cache\r\nConnection: keep-alive\r\n"
            b"X-Accel-Buffering: no\r\n\r\n")


def page() -> bytes:
    """The single self-contained HTML page (script and styles inline)."""
    return resources.files("streamer.ui").joinpath("page.html").read_bytes()


def response(status: str, content_type: str, body: bytes) -> bytes:
    """A whole HTTP/1.1 response that closes the connection."""
    head = (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-cache\r\n"
            "Connection: close\r\n\r\n")
    return head.encode() + body


def _not_found(reason: str) -> bytes:
    return response("404 Not Found", "application/json",
                    json.dumps({"error": "not found", "reason": reason}).encode())


def surface_response(hub: SurfaceHub, key: str) -> bytes:
    """``GET /surface/{venue}:{underlying}``: the latest surface, or a 404 saying why."""
    body = hub.encoded(key)
    if body is not None:
        return response("200 OK", "application/json", body)
    if ":" not in key:
        return _not_found(f"{key!r} is not a <venue>:<underlying> key")
    known = ", ".join(sorted(hub.latest)) or "none yet"
    return _not_found(f"no surface published for {key} (known: {known})")


def ui_route(hub: SurfaceHub, health_period_s: float = HEALTH_PERIOD_S) -> Route:
    """The UI's request handler: True when it answered ``path``."""

    async def route(path: str, writer: asyncio.StreamWriter) -> bool:
        if path in ("/ui", "/ui/"):
            writer.write(response("200 OK", "text/html; charset=utf-8", page()))
        elif path == "/ui/events":
            await stream_events(hub, writer, health_period_s)
        elif path.startswith("/surface/"):
            writer.write(surface_response(hub, path.removeprefix("/surface/")))
        else:
            return False
        return True

    return route


async def stream_events(hub: SurfaceHub, writer: asyncio.StreamWriter,
                        health_period_s: float) -> None:
    """Write the event stream until the reader goes away or the hub closes.

    The hub writes each surface to this socket itself while it keeps up; this task
    wakes for the health event, a backed-up socket (a slow reader waits in ``drain``
    while its keys conflate) and the end.
    """
    writer.write(SSE_HEAD + b"retry: 1000\n\n")
    writer.write(sse_frame("health", hub.health_json()))
    client = hub.subscribe(writer)
    loop = asyncio.get_running_loop()
    try:
        hub.write_pending(client)  # the latest surface of every key
        next_health = loop.time() + health_period_s
        while not hub.closed and not writer.transport.is_closing():
            await writer.drain()
            hub.write_pending(client)
            if loop.time() >= next_health:
                writer.write(sse_frame("health", hub.health_json()))
                next_health = loop.time() + health_period_s
            await _wait(client, next_health - loop.time())
    finally:
        hub.unsubscribe(client)


async def _wait(client: Client, timeout_s: float) -> None:
    if timeout_s > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(client.wake.wait(), timeout_s)
    client.wake.clear()
