"""A small IMAP4rev1 server over a real socket, enough for the poller and strict about it.

Speaks LOGIN, SELECT, UID SEARCH UNSEEN, UID FETCH (BODY.PEEK[] / BODY[] / RFC822), UID STORE
+FLAGS[.SILENT], NOOP, CAPABILITY, STARTTLS and LOGOUT, in plain, STARTTLS or implicit TLS.
As RFC 3501 requires, fetching ``BODY[]`` or ``RFC822`` sets ``\\Seen`` and ``BODY.PEEK[]``
does not, so a poller that marks messages seen too early fails the tests.
"""

from __future__ import annotations

import re
import socket
import socketserver
import ssl
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import BinaryIO, Literal

from tests.servers import in_thread

USERNAME = "replies@clinic.example"
PASSWORD = 'imap "secret" pass'
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\([^)]*\)|[^\s()]+(?:\[[^\]]*\])?(?:<[^>]*>)?')


@dataclass
class StoredMessage:
    uid: int
    raw: bytes
    flags: set[str] = field(default_factory=set)


@dataclass
class Mailbox:
    folder: str = "INBOX"
    messages: list[StoredMessage] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, raw: bytes, *flags: str) -> int:
        with self.lock:
            uid = (self.messages[-1].uid if self.messages else 0) + 7  # UIDs need not be 1..n
            self.messages.append(StoredMessage(uid, raw, set(flags)))
            return uid

    def flags(self, uid: int) -> set[str]:
        with self.lock:
            return next(set(m.flags) for m in self.messages if m.uid == uid)


def _unquote(token: str) -> str:
    if token.startswith('"') and token.endswith('"'):
        return re.sub(r"\\(.)", r"\1", token[1:-1])
    return token


def _uids(spec: str, mailbox: Mailbox) -> set[int]:
    highest = max((m.uid for m in mailbox.messages), default=0)
    found: set[int] = set()
    for part in spec.split(","):
        low, _, high = part.partition(":")
        start = highest if low == "*" else int(low)
        end = start if not high else highest if high == "*" else int(high)
        found.update(range(min(start, end), max(start, end) + 1))
    return found


class _Session(socketserver.BaseRequestHandler):
    server: _ImapServer

    def setup(self) -> None:
        self.sock: socket.socket = self.request
        if self.server.mode == "ssl":
            self.sock = self.server.tls.wrap_socket(self.sock, server_side=True)
        self.reader: BinaryIO = self.sock.makefile("rb")
        self.authenticated = False
        self.selected = False

    def finish(self) -> None:
        self.reader.close()
        if self.sock is not self.request:
            self.sock.close()

    @property
    def secure(self) -> bool:
        return isinstance(self.sock, ssl.SSLSocket)

    def send(self, line: str | bytes) -> None:
        data = line.encode() if isinstance(line, str) else line
        self.sock.sendall(data + b"\r\n")

    def handle(self) -> None:
        self.send(f"* OK [CAPABILITY {self._capabilities()}] fake IMAP ready")
        while raw_line := self.reader.readline():  # self.reader changes after STARTTLS
            line = raw_line.decode().rstrip("\r\n")
            tag, _, rest = line.partition(" ")
            self.server.mailbox.commands.append(rest)
            words = _TOKEN.findall(rest)
            if not words:
                self.send(f"{tag} BAD empty command")
                continue
            if not self._dispatch(tag, words[0].upper(), words[1:]):
                return

    def _capabilities(self) -> str:
        caps = ["IMAP4rev1"]
        if self.server.mode == "starttls" and not self.secure:
            caps += ["STARTTLS", "LOGINDISABLED"]
        return " ".join(caps)

    def _dispatch(self, tag: str, command: str, args: list[str]) -> bool:
        if command == "LOGOUT":
            self.send("* BYE logging out")
            self.send(f"{tag} OK LOGOUT completed")
            return False
        handler = {
            "CAPABILITY": self._capability,
            "NOOP": self._noop,
            "STARTTLS": self._starttls,
            "LOGIN": self._login,
            "SELECT": self._select,
            "UID": self._uid,
        }.get(command)
        if handler is None:
            self.send(f"{tag} BAD unknown command")
        else:
            handler(tag, args)
        return True

    def _capability(self, tag: str, args: list[str]) -> None:
        self.send(f"* CAPABILITY {self._capabilities()}")
        self.send(f"{tag} OK CAPABILITY completed")

    def _noop(self, tag: str, args: list[str]) -> None:
        self.send(f"{tag} OK NOOP completed")

    def _starttls(self, tag: str, args: list[str]) -> None:
        if self.server.mode != "starttls" or self.secure:
            self.send(f"{tag} BAD STARTTLS not available")
            return
        self.send(f"{tag} OK begin TLS negotiation now")
        self.reader.close()
        self.sock = self.server.tls.wrap_socket(self.sock, server_side=True)
        self.reader = self.sock.makefile("rb")

    def _login(self, tag: str, args: list[str]) -> None:
        if self.server.mode == "starttls" and not self.secure:
            self.send(f"{tag} NO [PRIVACYREQUIRED] LOGIN needs STARTTLS first")
            return
        user, password = (_unquote(a) for a in args[:2])
        if (user, password) != (USERNAME, PASSWORD):
            self.send(f"{tag} NO [AUTHENTICATIONFAILED] invalid credentials")
            return
        self.authenticated = True
        self.send(f"{tag} OK LOGIN completed")

    def _select(self, tag: str, args: list[str]) -> None:
        mailbox = self.server.mailbox
        if not self.authenticated or not args or _unquote(args[0]) != mailbox.folder:
            self.send(f"{tag} NO no such mailbox")
            return
        with mailbox.lock:
            count, next_uid = (
                len(mailbox.messages),
                max((m.uid for m in mailbox.messages), default=0),
            )
        self.send("* FLAGS (\\Seen \\Flagged \\Answered \\Deleted \\Draft)")
        self.send(f"* {count} EXISTS")
        self.send("* 0 RECENT")
        self.send("* OK [UIDVALIDITY 1] UIDs valid")
        self.send(f"* OK [UIDNEXT {next_uid + 1}] predicted next UID")
        self.selected = True
        self.send(f"{tag} OK [READ-WRITE] SELECT completed")

    def _uid(self, tag: str, args: list[str]) -> None:
        if not self.selected or not args:
            self.send(f"{tag} BAD no mailbox selected")
            return
        sub = {"SEARCH": self._search, "FETCH": self._fetch, "STORE": self._store}
        handler = sub.get(args[0].upper())
        if handler is None:
            self.send(f"{tag} BAD unsupported UID command")
            return
        handler(tag, args[1:])

    def _search(self, tag: str, args: list[str]) -> None:
        if [a.upper() for a in args] != ["UNSEEN"]:
            self.send(f"{tag} BAD only UNSEEN is supported")
            return
        with self.server.mailbox.lock:
            uids = [m.uid for m in self.server.mailbox.messages if "\\Seen" not in m.flags]
        self.send("* SEARCH" + "".join(f" {uid}" for uid in uids))
        self.send(f"{tag} OK SEARCH completed")

    def _fetch(self, tag: str, args: list[str]) -> None:
        item = args[1].strip("()").upper() if len(args) > 1 else ""
        names = {"BODY.PEEK[]": "BODY[]", "BODY[]": "BODY[]", "RFC822": "RFC822"}
        if item not in names:
            self.send(f"{tag} BAD only BODY.PEEK[], BODY[] and RFC822 are supported")
            return
        wanted = _uids(args[0], self.server.mailbox)
        for seq, message in enumerate(self.server.mailbox.messages, start=1):
            if message.uid not in wanted:
                continue
            flags = ""
            if item != "BODY.PEEK[]":
                message.flags.add("\\Seen")
                flags = " FLAGS (\\Seen)"
            head = f"* {seq} FETCH (UID {message.uid}{flags} {names[item]} {{{len(message.raw)}}}"
            self.sock.sendall(head.encode() + b"\r\n" + message.raw + b")\r\n")
        self.send(f"{tag} OK FETCH completed")

    def _store(self, tag: str, args: list[str]) -> None:
        if len(args) < 3 or args[1].upper() not in ("+FLAGS", "+FLAGS.SILENT"):
            self.send(f"{tag} BAD only +FLAGS is supported")
            return
        flags = set(args[2].strip("()").split())
        wanted = _uids(args[0], self.server.mailbox)
        for seq, message in enumerate(self.server.mailbox.messages, start=1):
            if message.uid in wanted:
                message.flags |= flags
                if args[1].upper() == "+FLAGS":
                    listed = " ".join(sorted(message.flags))
                    self.send(f"* {seq} FETCH (UID {message.uid} FLAGS ({listed}))")
        self.send(f"{tag} OK STORE completed")


class _ImapServer(socketserver.ThreadingTCPServer):
    block_on_close = True  # server_close() waits for sessions: no socket outlives a test

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError)):
            super().handle_error(request, client_address)  # type: ignore[arg-type]

    def __init__(self, mailbox: Mailbox, mode: str, tls: ssl.SSLContext | None) -> None:
        super().__init__(("127.0.0.1", 0), _Session)
        self.mailbox = mailbox
        self.mode = mode
        self.tls = tls or ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)


@dataclass(frozen=True)
class ImapServer:
    mailbox: Mailbox
    port: int


@contextmanager
def imap_server(
    mailbox: Mailbox | None = None,
    mode: Literal["none", "starttls", "ssl"] = "none",
    *,
    tls: ssl.SSLContext | None = None,
) -> Iterator[ImapServer]:
    """Serve ``mailbox`` on a free 127.0.0.1 port until the block ends."""
    mailbox = mailbox or Mailbox()
    server = _ImapServer(mailbox, mode, tls)
    with in_thread(server, poll_interval=0.05):
        yield ImapServer(mailbox, server.server_address[1])
