"""One kept-alive HTTP/1.1 connection to one origin, parsed with httptools (uvicorn's C parser).

The SMS path posts one small form and reads one small JSON answer per text. Through urllib3
and ``http.client`` that exchange cost ~450 µs of the sender's CPU (header objects, the stdlib
email parser for response headers, pool bookkeeping); written as bytes and parsed in C it is
~90 µs (``bench/HISTORY.md``, "SMS over a kept-alive connection"). What the transport relies
on is kept: TLS verified against the configured CA bundle, a connection the server closed is
replaced before it is reused (never after a request was written), timeouts per socket
operation, and failures raised as the urllib3 exceptions the transport already tells apart:
nothing reached the server (``NewConnectionError``, ``ConnectTimeoutError``, ``SSLError``),
or it may have (``ReadTimeoutError``, and ``AnswerLost`` for a connection that broke after the
whole request was written: the server may have acted on it, so it must not be resent).
"""

from __future__ import annotations

import select
import socket
import ssl

import httptools
from urllib3 import HTTPHeaderDict
from urllib3.exceptions import (
    ConnectTimeoutError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

#: An answer larger than this is not Twilio's: stop reading rather than fill memory.
MAX_RESPONSE = 1 << 20
_DEFAULT_PORTS = {"http": 80, "https": 443}


class AnswerLost(ProtocolError):
    """The request was written but no whole answer came back: its outcome is unknown."""


class _Answer:
    """httptools' callbacks: the status line and headers, then the body."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.headers = HTTPHeaderDict()
        self.body = bytearray()
        self.headers_done = False
        self.keep_alive = False
        self.done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.add(name.decode("latin-1"), value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        self.headers_done = True
        # Read here: once the message is complete, httptools has reset it to False.
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, chunk: bytes) -> None:
        self.body += chunk
        if len(self.body) > MAX_RESPONSE:
            raise AnswerLost("response too large")

    def on_message_complete(self) -> None:
        self.done = True


class Connection:
    """Not thread-safe: a sending thread owns its connection (``TwilioSmsTransport``)."""

    def __init__(
        self, scheme: str, host: str, port: int | None, *, timeout: float, ca_certs: str
    ) -> None:
        if scheme not in _DEFAULT_PORTS:
            raise ValueError(f"unsupported URL scheme {scheme!r}")
        self.scheme, self.host = scheme, host
        self.port = port or _DEFAULT_PORTS[scheme]
        self.host_header = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
        if ":" in host and not host.startswith("["):  # an IPv6 literal
            self.host_header = f"[{host}]" + self.host_header[len(host) :]
        self.timeout = timeout
        self._tls = ssl.create_default_context(cafile=ca_certs) if scheme == "https" else None
        self._sock: socket.socket | None = None

    def exchange(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes | None,
        *,
        timeout: float | None = None,
    ) -> tuple[int, HTTPHeaderDict, bytes]:
        """(status, headers, body) of one request. Never resent: a POST that may have
        reached the server must not be repeated by the transport layer."""
        request = self._encode(method, target, headers, body)
        sock = self._ready(self.timeout if timeout is None else timeout)
        url = f"{self.scheme}://{self.host_header}{target}"
        try:
            try:
                sock.sendall(request)
            except OSError as exc:  # not all of it left: the server cannot act on a part
                raise ProtocolError("connection aborted while sending", exc) from exc
            answer = self._read(sock, url)
        except BaseException:
            self.close()
            raise
        if not answer.keep_alive:
            self.close()
        return answer.parser.get_status_code(), answer.headers, bytes(answer.body)

    def close(self) -> None:
        if self._sock is not None:
            sock, self._sock = self._sock, None
            sock.close()

    def _encode(
        self, method: str, target: str, headers: dict[str, str], body: bytes | None
    ) -> bytes:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host_header}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        if any("\r" in line or "\n" in line for line in lines):
            raise ValueError("a header or the request target contains a line break")
        return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + (body or b"")

    def _ready(self, timeout: float) -> socket.socket:
        """The open connection, or a new one if the server has closed it (a kept-alive
        connection it dropped while idle is readable: EOF)."""
        sock = self._sock
        if sock is not None and select.select([sock], [], [], 0)[0]:
            self.close()
            sock = None
        if sock is None:
            sock = self._sock = self._connect(timeout)
        sock.settimeout(timeout)
        return sock

    def _connect(self, timeout: float) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except TimeoutError as exc:
            raise ConnectTimeoutError(f"connection to {self.host_header} timed out") from exc
        except OSError as exc:
            raise NewConnectionError(None, f"failed to connect: {exc}") from exc  # type: ignore[arg-type]
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tls is None:
            return sock
        try:
            return self._tls.wrap_socket(sock, server_hostname=self.host)
        except (ssl.SSLError, ssl.CertificateError) as exc:
            sock.close()
            raise SSLError(exc) from exc
        except OSError as exc:
            sock.close()
            raise NewConnectionError(None, f"TLS handshake failed: {exc}") from exc  # type: ignore[arg-type]

    def _read(self, sock: socket.socket, url: str) -> _Answer:
        answer = _Answer()
        while not answer.done:
            try:
                data = sock.recv(65536)
            except TimeoutError as exc:
                raise ReadTimeoutError(None, url, "read timed out") from exc  # type: ignore[arg-type]
            except OSError as exc:
                raise AnswerLost("connection aborted", exc) from exc
            if not data:
                if answer.headers_done and _ends_at_close(answer.headers):
                    break
                raise AnswerLost("connection closed before the response was complete")
            try:
                answer.parser.feed_data(data)
            except httptools.HttpParserError as exc:
                raise AnswerLost(f"malformed response ({type(exc).__name__})") from exc
        return answer


def _ends_at_close(headers: HTTPHeaderDict) -> bool:
    """A response with neither length nor chunking ends when the server closes."""
    return "content-length" not in headers and "transfer-encoding" not in headers
