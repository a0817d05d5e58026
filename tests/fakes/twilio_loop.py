"""The fake Twilio API (``twilio_api.FakeTwilio``) served from one event-loop thread.

B4 serves the fakes from the benchmark's own process, on the same two cores as the worker it
measures. The stdlib ``ThreadingHTTPServer`` cost ~300 µs of CPU per request there (a thread
per connection, 32 of them contending for the GIL, headers through the email parser); this
front end, httptools on one uvloop event loop, answers the same requests with the same
``FakeTwilio`` (auth, scripted errors, recorded requests) for a fraction of that, so the
fake's share of those cores is closer to the nothing real Twilio costs them. It does not do
what only the functional tests need: ``stall_next`` and ``latency`` (they would block the
loop), nor TLS.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import parse_qs

import httptools
import uvloop

from tests.fakes.twilio_api import FakeTwilio, Response


class _Exchange(asyncio.Protocol):
    """One client connection: requests parsed as they arrive, answered in order."""

    def __init__(self, fake: FakeTwilio, open_: set[_Exchange]) -> None:
        self.fake = fake
        self.open = open_
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("", 0)
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.body = bytearray()
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.open.add(self)
        host, port = self.transport.get_extra_info("peername")[:2]
        self.peer = (host, port)

    def connection_lost(self, exc: Exception | None) -> None:
        self.open.discard(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._write(Response(400, {"code": 400, "message": "bad request", "status": 400}))
            self._close()

    def on_message_begin(self) -> None:
        self._reset()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        path = self.url.decode("latin-1")
        authorization = self.headers.get(b"authorization", b"").decode("latin-1") or None
        if self.parser.get_method() == b"POST":
            pairs = parse_qs(self.body.decode(), keep_blank_values=True)
            form = {k: v[-1] for k, v in pairs.items()}
            with self.fake.handling(form.get("To", ""), self.peer):
                response = self.fake.answer(path, authorization, form)
        else:
            response = self.fake.account(path, authorization)
        self._write(response)
        if not self.keep_alive:
            self._close()

    def _write(self, response: Response) -> None:
        payload = json.dumps(response.body).encode()
        lines = [
            f"HTTP/1.1 {response.status} {HTTPStatus(response.status).phrase}",
            "Content-Type: application/json; charset=utf-8",
            f"Content-Length: {len(payload)}",
            *(f"{name}: {value}" for name, value in response.headers.items()),
        ]
        if self.transport is not None:
            self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@contextmanager
def running_on_loop(fake: FakeTwilio | None = None) -> Iterator[FakeTwilio]:
    """Serve ``fake`` on a free loopback port from a thread running one event loop."""
    fake = fake or FakeTwilio()
    loop = uvloop.new_event_loop()  # the C event loop: less of the shared CPU per request
    ready = threading.Event()
    box: dict[str, Any] = {}
    connections: set[_Exchange] = set()

    async def start() -> None:
        server = await loop.create_server(
            lambda: _Exchange(fake, connections), "127.0.0.1", 0, backlog=128
        )
        box["server"] = server
        box["port"] = server.sockets[0].getsockname()[1]
        ready.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, name="fake-twilio-loop", daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the fake Twilio loop did not start")
    fake.base_url = f"http://127.0.0.1:{box['port']}"
    try:
        yield fake
    finally:

        def stop() -> None:
            box["server"].close()
            for connection in list(connections):
                connection._close()
            loop.call_soon(loop.stop)  # after the transports' own close callbacks

        loop.call_soon_threadsafe(stop)
        thread.join(10)
        loop.close()
