"""A loopback server whose connections are ``asyncio.Protocol`` objects on one uvloop thread.

B4 serves its fakes from the benchmark's own process, on the same two cores as the worker it
measures, so they are written as protocols on the C event loop: a connection costs a callback
per read instead of a thread or a coroutine per line.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import uvloop


class Closable(Protocol):
    def close_now(self) -> None: ...


@contextmanager
def serving_on_loop(connection: Callable[[set[Any]], asyncio.Protocol], name: str) -> Iterator[int]:
    """Serve ``connection(open_connections)`` on a free loopback port (yielded) from a thread
    running one uvloop event loop. Each protocol adds itself to the set it is given while it
    is open; those still open when the block ends are closed with ``close_now``."""
    loop = uvloop.new_event_loop()
    ready = threading.Event()
    box: dict[str, Any] = {}
    connections: set[Closable] = set()

    async def start() -> None:
        server: Any = await loop.create_server(
            lambda: connection(connections), "127.0.0.1", 0, backlog=128
        )
        box["server"] = server
        box["port"] = server.sockets[0].getsockname()[1]
        ready.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError(f"{name} did not start")
    try:
        yield int(box["port"])
    finally:

        def stop() -> None:
            box["server"].close()
            for open_connection in list(connections):
                open_connection.close_now()
            loop.call_soon(loop.stop)  # after the transports' own close callbacks

        loop.call_soon_threadsafe(stop)
        thread.join(10)
        loop.close()
