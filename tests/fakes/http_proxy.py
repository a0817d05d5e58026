"""A forwarding HTTP proxy on 127.0.0.1 that records what passed through it.

Clinics often reach Twilio through an outbound proxy named by ``HTTPS_PROXY``/``HTTP_PROXY``;
this lets a test prove the twilio client really goes through one, not just that it was
configured. Plain HTTP only (absolute-URI requests, no CONNECT), which is what a proxy sees
for the fake Twilio's ``http://`` base URL.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from tests.servers import in_thread

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "transfer-encoding"}
)


@dataclass
class Proxy:
    url: str = ""
    #: "METHOD absolute-url" of every request forwarded.
    seen: list[str] = field(default_factory=list)
    #: The ``Proxy-Authorization`` header of each (None when absent); never forwarded.
    authorizations: list[str | None] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _forward(self) -> None:
        target = urlsplit(self.path)
        self.server.proxy.seen.append(f"{self.command} {self.path}")
        self.server.proxy.authorizations.append(self.headers.get("Proxy-Authorization"))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        upstream = http.client.HTTPConnection(target.hostname or "", target.port, timeout=10)
        try:
            path = target.path + (f"?{target.query}" if target.query else "")
            upstream.request(self.command, path, body=body or None, headers=headers)
            answer = upstream.getresponse()
            payload = answer.read()
        finally:
            upstream.close()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in _HOP_BY_HOP | {"content-length"}:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _forward

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: test output stays readable."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, proxy: Proxy) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.proxy = proxy


@contextmanager
def forwarding_proxy() -> Iterator[Proxy]:
    proxy = Proxy()
    server = _Server(proxy)
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    with in_thread(server):
        yield proxy
