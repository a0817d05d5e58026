"""B6's lean HTTP client against a real asyncio server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from bench.rawhttp import ConnectionPool, ProtocolError, encode_request, read_response
from tests.event_loops import apart

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def test_encode_request_writes_length_for_posts_and_none_for_plain_gets() -> None:
    post = encode_request("POST", "/hook", "127.0.0.1:80", {"X-A": "b"}, b"k=v")
    assert (
        post
        == b"POST /hook HTTP/1.1\r\nHost: 127.0.0.1:80\r\nX-A: b\r\nContent-Length: 3\r\n\r\nk=v"
    )
    assert encode_request("GET", "/healthz", "h") == b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n"


def _reader(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


def test_read_response_reads_status_body_and_keep_alive() -> None:
    async def go() -> list[tuple[int, bool]]:
        reader = _reader(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        return [await read_response(reader), await read_response(reader)]

    assert apart(asyncio.run, go()) == [(200, True), (403, False)]


@pytest.mark.parametrize(
    "answer",
    [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", b"HTTP/1.1 200 OK\r\n\r\n"],
)
def test_read_response_refuses_answers_it_cannot_delimit(answer: bytes) -> None:
    async def go() -> tuple[int, bool]:
        return await read_response(_reader(answer))

    with pytest.raises(ProtocolError):
        apart(asyncio.run, go())


async def _serve(handler: Handler, requests: list[bytes]) -> tuple[list[int], int]:
    """Runs ``requests`` one after another through one pool; returns statuses and how many
    connections the server accepted."""
    accepted = 0

    async def counting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        await handler(reader, writer)

    server = await asyncio.start_server(counting, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = ConnectionPool("127.0.0.1", port, limit=4)
    statuses = []
    for request in requests:
        statuses.append(await pool.send(request))
        await asyncio.sleep(0.05)  # let a closing server's FIN arrive
    await pool.aclose()
    server.close()
    await server.wait_closed()
    return statuses, accepted


async def _answer_once_then_close(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """A server whose keep-alive timeout has passed: one answer, then it hangs up."""
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()
    writer.close()


async def _keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        try:
            await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            break
        writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
    writer.close()


def test_pool_reuses_a_kept_alive_connection() -> None:
    request = encode_request("GET", "/", "h")
    assert apart(asyncio.run, _serve(_keep_alive, [request] * 3)) == ([204, 204, 204], 1)


def test_pool_replaces_a_connection_the_server_closed_while_idle() -> None:
    request = encode_request("GET", "/", "h")
    assert apart(asyncio.run, _serve(_answer_once_then_close, [request] * 3)) == (
        [200, 200, 200],
        3,
    )
