"""A lean HTTP/1.1 client for B6's load generator: pre-built requests over keep-alive sockets.

The generator shares the machine's cores with the server it measures, so every millisecond of
CPU it spends per request is taken from the system under test. httpx costs ~1 ms of CPU per
request (its request/response models, header normalisation, the httpcore and h11 state
machines); B6's requests are fixed and signed in advance, so here they are bytes written as
they are, and of each response only the status line and ``Content-Length`` are read. Only what
uvicorn answers is supported: ``Content-Length`` bodies (a chunked answer is an error), keep-
alive unless the server says ``Connection: close``. One request at a time per connection (no
pipelining), like httpx's pool, which grows up to ``limit`` connections and reuses idle ones.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

#: Asyncio streams for one connection.
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class ProtocolError(Exception):
    """An answer this client does not read (no length, chunked, malformed)."""


def encode_request(
    method: str, path: str, host: str, headers: Mapping[str, str] | None = None, body: bytes = b""
) -> bytes:
    """The request as it goes on the wire, built once before the run."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method != "GET":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; returns its status and whether the connection can be reused."""
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 ") or len(head) < 12:
        raise ProtocolError("not an HTTP/1.1 status line")
    status = int(head[9:12])
    length: int | None = None
    keep = True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            keep = value.strip().lower() != b"close"
        elif name == b"transfer-encoding":
            raise ProtocolError("chunked answers are not supported")
    if length is None:
        raise ProtocolError("an answer without Content-Length")
    if length:
        await reader.readexactly(length)
    return status, keep


class ConnectionPool:
    """Keep-alive connections to one server, at most ``limit`` at once, newest idle reused
    first. A reused connection that the server closed meanwhile (its keep-alive timeout) is
    retried once on a new one, as httpx does: the server never read that request."""

    def __init__(self, host: str, port: int, limit: int = 512) -> None:
        self.host = host
        self.port = port
        self._idle: list[Connection] = []
        self._slots = asyncio.Semaphore(limit)

    async def send(self, request: bytes) -> int:
        """Send pre-built ``request`` bytes; returns the answer's status."""
        async with self._slots:
            conn = self._reusable()
            if conn is not None:
                try:
                    return await self._exchange(conn, request)
                except (asyncio.IncompleteReadError, ConnectionError):
                    pass  # closed by the server while idle: try once on a new connection
            conn = await asyncio.open_connection(self.host, self.port)
            return await self._exchange(conn, request)

    def _reusable(self) -> Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn[0].at_eof():
                return conn
            conn[1].close()
        return None

    async def _exchange(self, conn: Connection, request: bytes) -> int:
        reader, writer = conn
        try:
            writer.write(request)
            status, keep = await read_response(reader)
        except BaseException:
            writer.close()
            raise
        if keep:
            self._idle.append(conn)
        else:
            writer.close()
        return status

    async def aclose(self) -> None:
        while self._idle:
            _, writer = self._idle.pop()
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
