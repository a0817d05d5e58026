"""The SMS path's kept-alive HTTP connection against real sockets: servers that close, chunk,
stall, break off or answer garbage, as a provider or the network between sometimes does."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from urllib3.exceptions import NewConnectionError, ProtocolError, ReadTimeoutError

from campaigns.channels.base import DeliveryError, OutgoingMessage
from campaigns.channels.keepalive_http import AnswerLost, Connection
from campaigns.channels.twilio_sms import TwilioSmsTransport
from campaigns.enums import Channel
from tests.fakes.twilio_api import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    INVALID_TO,
    running,
    too_many_requests,
)
from tests.fakes.twilio_loop import running_on_loop
from tests.servers import free_port

CREATED = json.dumps({"sid": "SM" + "1" * 32, "status": "queued"}).encode()
OK = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(CREATED),
    CREATED,
)
FORM = {"Content-Type": "application/x-www-form-urlencoded"}

#: What a scripted server does with each request it reads: (connection, request bytes).
Script = Callable[[socket.socket, bytes], None]


@dataclass
class Scripted:
    port: int
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)


def _read_request(conn: socket.socket) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n")
         if line.lower().startswith(b"content-length:")),
        0,
    )  # fmt: skip
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


@contextmanager
def scripted(script: Script) -> Iterator[Scripted]:
    """A loopback server running ``script`` for every request on every connection, until the
    script closes the connection or the client does."""
    listener = socket.create_server(("127.0.0.1", 0))
    state = Scripted(listener.getsockname()[1])
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            while (request := _read_request(conn)) is not None:
                state.requests.append(request)
                script(conn, request)
                if conn.fileno() < 0:
                    return

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            state.connections += 1
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def _connection(port: int, timeout: float = 5) -> Connection:
    return Connection("http", "127.0.0.1", port, timeout=timeout, ca_certs="")


@contextmanager
def connected(script: Script, timeout: float = 5) -> Iterator[tuple[Scripted, Connection]]:
    """A scripted server and a connection to it, closed afterwards."""
    with scripted(script) as server:
        connection = _connection(server.port, timeout)
        try:
            yield server, connection
        finally:
            connection.close()


def _transport(base_url: str) -> TwilioSmsTransport:
    return TwilioSmsTransport(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        status_callback="https://clinic.example/webhooks/twilio/status",
        messaging_service_sid="MG" + "0" * 32,
        api_base_url=base_url,
    )


def _sms(i: int, body: str, to: str = "+16502530001") -> OutgoingMessage:
    return OutgoingMessage(i, i, Channel.SMS, to, body)


def _post(connection: Connection, n: int = 0) -> tuple[int, bytes]:
    status, _, body = connection.exchange("POST", "/Messages.json", FORM, b"To=%%2B1&n=%d" % n)
    return status, body


def test_requests_share_one_connection_while_the_server_keeps_it() -> None:
    with connected(lambda conn, _: conn.sendall(OK)) as (server, connection):
        assert [_post(connection, n) for n in range(3)] == [(201, CREATED)] * 3
    assert server.connections == 1
    assert [r.split(b"\r\n\r\n")[1] for r in server.requests] == [b"To=%2B1&n=0", b"To=%2B1&n=1",
                                                                 b"To=%2B1&n=2"]  # fmt: skip
    assert server.requests[0].startswith(
        b"POST /Messages.json HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % server.port
    )
    assert b"\r\nContent-Length: 11\r\n\r\n" in server.requests[0]


def test_a_connection_the_server_closed_while_idle_is_replaced_not_failed() -> None:
    """Providers drop idle kept-alive connections; the next text must not fail for it."""

    def answer_then_hang_up(conn: socket.socket, _: bytes) -> None:
        conn.sendall(OK)
        conn.close()

    with connected(answer_then_hang_up) as (server, connection):
        first = _post(connection, 0)
        time.sleep(0.1)  # the server's FIN arrives while the connection is idle
        second = _post(connection, 1)
    assert first == second == (201, CREATED)
    assert (server.connections, len(server.requests)) == (2, 2), "each request sent once"


def test_a_connection_close_answer_is_honoured() -> None:
    closing = OK.replace(b"Content-Type", b"Connection: close\r\nContent-Type")
    with connected(lambda conn, _: conn.sendall(closing)) as (server, connection):
        assert [_post(connection, n) for n in range(2)] == [(201, CREATED)] * 2
    assert server.connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (CREATED[:9], CREATED[9:]))
        + b"0\r\n\r\n",
        b"HTTP/1.1 201 Created\r\nConnection: close\r\n\r\n" + CREATED,  # ends at close
    ],
    ids=["chunked", "close-delimited"],
)
def test_chunked_and_close_delimited_answers_are_read_whole(answer: bytes) -> None:
    def send(conn: socket.socket, _: bytes) -> None:
        conn.sendall(answer)
        if b"chunked" not in answer:
            conn.close()

    with connected(send) as (_, connection):
        status, headers, body = connection.exchange("GET", "/x", {}, None)
    assert (status, body) == (201, CREATED)
    assert ("chunked" in headers.get("transfer-encoding", "")) == (b"chunked" in answer)


@pytest.mark.parametrize(
    "script",
    [
        lambda conn, _: conn.close(),  # read the request, then hung up
        lambda conn, _: (conn.sendall(OK[:40]), conn.close()),  # half an answer
        lambda conn, _: conn.sendall(b"HTTP/1.1 2x1 Nonsense\r\n\r\n"),  # not HTTP
    ],
    ids=["hung-up", "half-answer", "garbage"],
)
def test_an_answer_lost_after_the_request_was_written_is_delivery_unknown(
    script: Script,
) -> None:
    """The provider may have queued the text: the transport must not report "try again"."""
    with connected(script) as (server, connection):
        with pytest.raises(AnswerLost):
            _post(connection)
        transport = _transport(f"http://127.0.0.1:{server.port}")
        try:
            with pytest.raises(DeliveryError) as caught:
                transport.send(_sms(1, "hello"))
        finally:
            transport.close()
    assert caught.value.permanent and caught.value.ambiguous
    assert caught.value.reason == "twilio: connection lost after sending; delivery unknown"
    assert len(server.requests) == 2, "nothing was resent"


def test_a_stalled_answer_times_out_and_the_next_request_gets_a_fresh_connection() -> None:
    def stall_first(conn: socket.socket, request: bytes) -> None:
        if b"n=0" in request:
            time.sleep(0.5)  # answers after the client gave up, on a connection it closed
        conn.sendall(OK)

    with connected(stall_first, 0.2) as (server, connection):
        with pytest.raises(ReadTimeoutError):
            _post(connection, 0)
        assert _post(connection, 1) == (201, CREATED)
    assert server.connections == 2


def test_a_line_break_in_a_header_is_refused_before_anything_is_sent() -> None:
    with connected(lambda conn, _: conn.sendall(OK)) as (server, connection):
        for bad in ({"X-Note": "a\r\nX-Injected: 1"}, {"X-Note": "a\nb"}):
            with pytest.raises(ValueError, match="line break"):
                connection.exchange("POST", "/x", bad, b"")
        with pytest.raises(ValueError, match="line break"):
            connection.exchange("GET", "/x HTTP/1.1\r\nX-Injected: 1", {}, None)
    assert server.connections == 0 and server.requests == []


def test_nothing_listening_is_a_connection_error_not_a_lost_answer() -> None:
    connection = _connection(free_port())
    with pytest.raises(NewConnectionError) as caught:
        _post(connection)
    assert not isinstance(caught.value, ProtocolError)


def test_the_fake_twilio_api_is_reached_over_one_connection_per_sending_thread() -> None:
    with running() as fake:
        transport = _transport(fake.base_url)
        try:
            receipts = [transport.send(_sms(i, f"hi {i}")) for i in range(5)]
        finally:
            transport.close()
    assert [r.sid for r in fake.requests] == [r.provider_id for r in receipts]
    assert len(fake.connections) == 1


def test_the_event_loop_fake_answers_like_the_threaded_one() -> None:
    """B4 serves Twilio from ``twilio_loop``: the same answers, errors and headers."""
    with running_on_loop() as fake:
        fake.fail_next(too_many_requests("7"))
        fake.fail_for("+16502530009", INVALID_TO)
        transport = _transport(fake.base_url)
        try:
            with pytest.raises(DeliveryError) as limited:
                transport.send(_sms(1, "one"))
            receipts = [transport.send(_sms(i, f"hi {i}")) for i in range(3)]
            with pytest.raises(DeliveryError) as invalid:
                transport.send(_sms(9, "no", to="+16502530009"))
            assert transport.check_credentials() == "active"
        finally:
            transport.close()
    assert (limited.value.permanent, limited.value.retry_after) == (False, 7.0)
    assert invalid.value.permanent and "21211" in invalid.value.reason
    assert [r.sid for r in fake.sent] == [r.provider_id for r in receipts]
    assert [r.form["Body"] for r in fake.sent] == ["hi 0", "hi 1", "hi 2"]
    assert len(fake.connections) == 1, "kept alive"
