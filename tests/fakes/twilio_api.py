"""A local fake of Twilio's Messages endpoint, so the real ``twilio`` client is exercised.

``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` checks HTTP basic auth, records the
form, and answers like Twilio: 201 with a Message resource, or one of Twilio's real error
bodies when scripted (for the next N requests, or for one recipient). ``stall_next`` holds a
response until the client has given up, for timeout tests.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import ssl
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from campaigns.models import utcnow
from campaigns.segments import count_segments
from tests.servers import in_thread

ACCOUNT_SID = "AC" + "0" * 31 + "1"
AUTH_TOKEN = "fake-auth-token-0123456789abcdef"
_ACCOUNT_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>AC[0-9a-f]{32})\.json$")
_MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>AC[0-9a-f]{32})/Messages\.json$")
#: How long a stalled response waits for release before answering anyway.
_STALL_LIMIT = 10.0


@dataclass(frozen=True)
class ApiError:
    """One of Twilio's JSON error bodies; ``{to}`` in the message is filled in like Twilio."""

    status: int
    code: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)

    def body(self, to: str) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message.format(to=to),
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }


UNSUBSCRIBED = ApiError(400, 21610, "Attempt to send to unsubscribed recipient")
INVALID_TO = ApiError(400, 21211, "The 'To' number {to} is not a valid phone number.")
NOT_SMS_CAPABLE = ApiError(400, 21614, "'To' number {to} is not a valid mobile number")
SERVER_ERROR = ApiError(500, 20500, "Internal Server Error")
BAD_CREDENTIALS = ApiError(401, 20003, "Authenticate")


def too_many_requests(retry_after: str | None = None) -> ApiError:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return ApiError(429, 20429, "Too Many Requests", headers)


@dataclass(frozen=True)
class Recorded:
    """One request as the fake saw it; ``sid`` is set when a message was created."""

    account_sid: str
    form: dict[str, str]
    status: int
    sid: str | None = None


class FakeTwilio:
    """State shared by the handler threads: scripts in, recorded requests out."""

    def __init__(self, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.base_url = ""
        self.requests: list[Recorded] = []
        self._next: deque[ApiError] = deque()
        self._for_to: dict[str, ApiError] = {}
        self._stalls = 0
        self._release = threading.Event()
        self._lock = threading.Lock()
        #: Seconds each message request takes, like a network round trip (0: none).
        self.latency = 0.0
        #: Most message requests unanswered at once, and how often one arrived while another
        #: for the same ``To`` was unanswered (a patient's texts must go one at a time).
        self.max_in_flight = 0
        self.same_to_overlaps = 0
        #: Client (host, port) pairs seen: a client that keeps connections alive reuses them.
        self.connections: set[tuple[str, int]] = set()
        self._in_flight: dict[str, int] = {}
        self._in_flight_total = 0

    @property
    def sent(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.sid is not None]

    def fail_next(self, error: ApiError, times: int = 1) -> None:
        with self._lock:
            self._next.extend([error] * times)

    def fail_for(self, to: str, error: ApiError) -> None:
        with self._lock:
            self._for_to[to] = error

    def stall_next(self, times: int = 1) -> None:
        with self._lock:
            self._stalls += times

    def release(self) -> None:
        self._release.set()

    def answer(self, path: str, authorization: str | None, form: dict[str, str]) -> Response:
        """Decide one response; pure apart from the recorded list and the scripts."""
        match = _MESSAGES_PATH.match(path)
        if match is None:
            return Response(404, {"code": 20404, "message": "not found", "status": 404})
        account = match["account"]
        if account != self.account_sid or not self._authorized(authorization):
            return self._record(account, form, BAD_CREDENTIALS.status, BAD_CREDENTIALS)
        with self._lock:
            error = self._next.popleft() if self._next else self._for_to.get(form.get("To", ""))
        if error is None:
            error = _missing_field(form)
        if error is not None:
            return self._record(account, form, error.status, error)
        return self._created(account, form)

    def account(self, path: str, authorization: str | None) -> Response:
        """GET /2010-04-01/Accounts/{sid}.json: what a credentials check fetches."""
        match = _ACCOUNT_PATH.match(path)
        if match is None:
            return Response(404, {"code": 20404, "message": "not found", "status": 404})
        if match["account"] != self.account_sid or not self._authorized(authorization):
            error = BAD_CREDENTIALS
            body = {"code": error.code, "message": error.message, "status": error.status}
            return Response(error.status, body)
        return Response(200, {"sid": self.account_sid, "status": "active", "type": "Full"})

    @contextmanager
    def handling(self, to: str, client: tuple[str, int]) -> Iterator[None]:
        """Counts one request as in flight (for ``to``) until its answer is ready."""
        with self._lock:
            self.connections.add(client)
            self.same_to_overlaps += bool(self._in_flight.get(to))
            self._in_flight[to] = self._in_flight.get(to, 0) + 1
            self._in_flight_total += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight_total)
        try:
            if self.latency:
                time.sleep(self.latency)
            yield
        finally:
            with self._lock:
                # Counted, not summed over every number ever seen: B4's 100k-text burst made
                # that sum the fake's largest cost per request.
                self._in_flight_total -= 1
                if self._in_flight[to] > 1:
                    self._in_flight[to] -= 1
                else:
                    del self._in_flight[to]

    def take_stall(self) -> bool:
        with self._lock:
            if self._stalls <= 0:
                return False
            self._stalls -= 1
            return True

    def wait_released(self) -> None:
        self._release.wait(_STALL_LIMIT)

    def _authorized(self, header: str | None) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return header == f"Basic {expected}"

    def _record(self, account: str, form: dict[str, str], status: int, error: ApiError) -> Response:
        with self._lock:
            self.requests.append(Recorded(account, form, status))
        return Response(status, error.body(form.get("To", "")), error.headers)

    def _created(self, account: str, form: dict[str, str]) -> Response:
        sid = "SM" + secrets.token_hex(16)
        with self._lock:
            self.requests.append(Recorded(account, form, 201, sid))
        return Response(201, _message_resource(account, sid, form))


@dataclass(frozen=True)
class Response:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def _missing_field(form: dict[str, str]) -> ApiError | None:
    if not form.get("To"):
        return ApiError(400, 21604, "A 'To' phone number is required.")
    if not (form.get("From") or form.get("MessagingServiceSid")):
        return ApiError(400, 21603, "A 'From' phone number is required.")
    if not form.get("Body"):
        return ApiError(400, 21602, "Message body is required.")
    return None


def _message_resource(account: str, sid: str, form: dict[str, str]) -> dict[str, Any]:
    """The fields of Twilio's Message resource that a create response carries."""
    now = format_datetime(utcnow(), usegmt=True)
    uri = f"/2010-04-01/Accounts/{account}/Messages/{sid}"
    return {
        "account_sid": account,
        "api_version": "2010-04-01",
        "body": form["Body"],
        "date_created": now,
        "date_sent": None,
        "date_updated": now,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": form.get("From"),
        "messaging_service_sid": form.get("MessagingServiceSid"),
        "num_media": "0",
        "num_segments": str(count_segments(form["Body"]).segments),
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": "queued" if form.get("From") else "accepted",
        "subresource_uris": {"media": f"{uri}/Media.json"},
        "to": form["To"],
        "uri": f"{uri}.json",
    }


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    #: Keep-alive like api.twilio.com, so clients that reuse connections are measured so;
    #: without TCP_NODELAY the body, written after the headers, waits ~40 ms for an ACK.
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        form = {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}
        fake = self.server.fake
        with fake.handling(form.get("To", ""), self.client_address[:2]):
            response = fake.answer(self.path, self.headers.get("Authorization"), form)
        if response.status == 201 and fake.take_stall():
            fake.wait_released()
        self._send(response)

    def do_GET(self) -> None:
        self._send(self.server.fake.account(self.path, self.headers.get("Authorization")))

    def _send(self, response: Response) -> None:
        payload = json.dumps(response.body).encode()
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        with suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (timeouts)
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: test output stays readable."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    #: socketserver's default listen backlog is 5: when a busy worker's 16 send threads open
    #: their connections at once, Linux can reset the overflow, which api.twilio.com never does
    #: (seen once in B4 as a transient ProtocolError).
    request_queue_size = 128

    def __init__(self, fake: FakeTwilio) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


@contextmanager
def running(
    fake: FakeTwilio | None = None, *, tls: ssl.SSLContext | None = None
) -> Iterator[FakeTwilio]:
    """Serve ``fake`` on a free loopback port (over TLS with ``tls``); ``fake.base_url``
    replaces api.twilio.com."""
    fake = fake or FakeTwilio()
    server = _Server(fake)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    scheme = "https" if tls is not None else "http"
    fake.base_url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    with in_thread(server):
        try:
            yield fake
        finally:
            fake.release()  # a stalled response must not hold up the shutdown
