"""A lean SMTP server for B4: plain SMTP on one uvloop thread, recording what it receives.

B4 serves its fakes from the benchmark's own process, on the same two cores as the worker it
measures. aiosmtpd (``smtp_server``, which the functional tests use for its TLS, AUTH and
scripted refusals) reads every command line through a coroutine and cost ~650 µs of CPU per
email there; real mail servers cost those cores nothing. This one parses the same dialogue
as a protocol state machine: EHLO/HELO, MAIL, RCPT (``refuse`` scripts a reply per
recipient), DATA with dot-unstuffing, RSET, NOOP and QUIT, advertising the extensions
aiosmtpd advertises. What it records is what aiosmtpd records
(``tests/integration/test_smtp_sink.py`` sends the same messages to both).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from tests.fakes.loop_server import serving_on_loop
from tests.fakes.smtp_server import RecordingHandler, SmtpServer

_EHLO = b"250-127.0.0.1\r\n250-SIZE 33554432\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 HELP\r\n"
_PATH = re.compile(rb"^(?:FROM|TO):\s*<([^>]*)>", re.IGNORECASE)
#: The end of DATA, looked for after a line break (a leading one is added when DATA starts).
_END = b"\r\n.\r\n"
MAX_LINE = 1000  # RFC 5321's limit for a command line, CRLF included
MAX_DATA = 33554432


class _Session(asyncio.Protocol):
    """One client connection: commands answered as their lines arrive."""

    def __init__(self, handler: RecordingHandler, open_: set[Any]) -> None:
        self.handler = handler
        self.open = open_
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.scanned = 0  # how far into the buffer DATA's end has been looked for
        self.in_data = False
        self.said_hello = False
        self.mail_from: str | None = None
        self.rcpt_tos: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.open.add(self)
        self._reply(b"220 127.0.0.1 ESMTP campaigns-bench-sink\r\n")

    def connection_lost(self, exc: Exception | None) -> None:
        self.open.discard(self)

    def close_now(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None and not self.transport.is_closing():
            if self.in_data:
                if not self._take_data():
                    return
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                if len(self.buffer) > MAX_LINE:
                    self._reply(b"500 Command line too long\r\n")
                    self.close_now()
                return
            line = bytes(self.buffer[:end])
            del self.buffer[: end + 2]
            self._command(line)

    def _take_data(self) -> bool:
        """The message, once its terminating dot has arrived; False while it has not."""
        end = self.buffer.find(_END, self.scanned)
        if end < 0:
            self.scanned = max(0, len(self.buffer) - len(_END) + 1)
            if len(self.buffer) > MAX_DATA:
                self._reply(b"552 Message too large\r\n")
                self.close_now()
            return False
        content = bytes(self.buffer[: end + 2]).replace(b"\r\n..", b"\r\n.")[2:]
        del self.buffer[: end + len(_END)]
        self.in_data = False
        self.scanned = 0
        self.handler.keep(self.mail_from or "", self.rcpt_tos, content)
        self._reset()
        self._reply(b"250 Message accepted for delivery\r\n")
        return True

    def _command(self, line: bytes) -> None:
        verb, _, argument = line.partition(b" ")
        verb = verb.upper()
        if verb in (b"EHLO", b"HELO"):
            self.handler.greeted()
            self.said_hello = True
            self._reset()
            self._reply(_EHLO if verb == b"EHLO" else b"250 127.0.0.1\r\n")
        elif verb == b"NOOP":
            self._reply(b"250 OK\r\n")
        elif verb == b"RSET":
            self._reset()
            self._reply(b"250 OK\r\n")
        elif verb == b"QUIT":
            self._reply(b"221 Bye\r\n")
            self.close_now()
        elif verb == b"MAIL":
            self._mail(argument)
        elif verb == b"RCPT":
            self._rcpt(argument)
        elif verb == b"DATA":
            if not self.rcpt_tos:
                self._reply(b"503 Error: need RCPT command\r\n")
                return
            self.in_data = True
            self.buffer[:0] = b"\r\n"  # so a DATA that is only "." ends like any other
            self._reply(b"354 End data with <CR><LF>.<CR><LF>\r\n")
        else:
            self._reply(b'500 Error: command "' + verb[:20] + b'" not recognized\r\n')

    def _mail(self, argument: bytes) -> None:
        match = _PATH.match(argument)
        if not self.said_hello:
            self._reply(b"503 Error: send HELO first\r\n")
        elif self.mail_from is not None:
            self._reply(b"503 Error: nested MAIL command\r\n")
        elif match is None:
            self._reply(b"501 Syntax: MAIL FROM: <address>\r\n")
        else:
            self.mail_from = match[1].decode("utf-8", "surrogateescape")
            self._reply(b"250 OK\r\n")

    def _rcpt(self, argument: bytes) -> None:
        match = _PATH.match(argument)
        if self.mail_from is None:
            self._reply(b"503 Error: need MAIL command\r\n")
        elif match is None:
            self._reply(b"501 Syntax: RCPT TO: <address>\r\n")
        else:
            address = match[1].decode("utf-8", "surrogateescape")
            if address in self.handler.refuse:
                self._reply(self.handler.refuse[address].encode() + b"\r\n")
                return
            self.rcpt_tos.append(address)
            self._reply(b"250 OK\r\n")

    def _reset(self) -> None:
        self.mail_from = None
        self.rcpt_tos = []

    def _reply(self, line: bytes) -> None:
        if self.transport is not None:
            self.transport.write(line)


@contextmanager
def smtp_sink() -> Iterator[SmtpServer]:
    """Serve a sink on a free loopback port; ``.handler.received`` as with ``smtp_server``."""
    handler = RecordingHandler()
    with serving_on_loop(lambda open_: _Session(handler, open_), "smtp-sink-loop") as port:
        yield SmtpServer(handler, port)
