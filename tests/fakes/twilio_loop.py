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
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from typing import cast
from urllib.parse import parse_qs

import httptools

from tests.fakes.loop_server import serving_on_loop
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
            self.close_now()

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
            self.close_now()

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

    def close_now(self) -> None:
        if self.transport is not None:
            self.transport.close()


@contextmanager
def running_on_loop(fake: FakeTwilio | None = None) -> Iterator[FakeTwilio]:
    """Serve ``fake`` on a free loopback port from a thread running one event loop."""
    fake = fake or FakeTwilio()
    with serving_on_loop(lambda open_: _Exchange(fake, open_), "fake-twilio-loop") as port:
        fake.base_url = f"http://127.0.0.1:{port}"
        yield fake
