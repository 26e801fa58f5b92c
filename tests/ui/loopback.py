"""A plain HTTP/1.1 client over asyncio streams, and a Server-Sent Events parser.

Deliberately not a library client: the tests read the bytes a browser would.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Event:
    event: str
    data: str
    id: str | None = None
    fields: list[str] = field(default_factory=list)


async def request_head(port: int, path: str) -> tuple[asyncio.StreamReader,
                                                        asyncio.StreamWriter, int, dict[str, str]]:
    """Send a GET; return the open connection after the response head."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**24)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip()
               for k, _, v in (line.partition(":") for line in head[1:] if line)}
    return reader, writer, status, headers


async def get(port: int, path: str) -> Response:
    """A whole response (the server closes after it)."""
    reader, writer, status, headers = await request_head(port, path)
    body = await reader.read()
    writer.close()
    await writer.wait_closed()
    assert len(body) == int(headers["content-length"])
    return Response(status, headers, body)


async def next_event(reader: asyncio.StreamReader) -> Event:
    """The next event of a stream, parsed by the SSE rules (fields until a blank line)."""
    lines: list[str] = []
    while True:
        line = (await reader.readuntil(b"\n")).decode().rstrip("\n")
        if line == "":
            if any(not x.startswith(("retry:", ":")) for x in lines):
                break
            lines = []
            continue
        lines.append(line)
    values: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        values[name] = values.get(name, "") + value.removeprefix(" ")
    return Event(values.get("event", "message"), values.get("data", ""), values.get("id"), lines)
