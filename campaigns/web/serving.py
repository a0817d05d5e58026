"""How ``campaigns web`` serves: how many processes, and how many requests each runs at once.

Processes: the handlers are CPU-bound Python (ORM, parsing, pacing) under one GIL, so one
process uses one core; on a server database one process per CPU is what the machine can do.
SQLite stays at one: its writers queue on one file lock, so more processes only add lock
waits (it is still correct with several, as the Celery worker already writes to it).

Requests at once (admission control): sync handlers run in AnyIO's thread pool, 40 threads by
default. Past the database pool's capacity the extra threads only wait for a connection (and
fail after the pool's 30 s timeout) while contending for the GIL, so under overload every
request gets slower. Bounding the pool to the connection pool's capacity makes the rest wait
their turn in order, on the event loop, costing nothing. Nothing is refused: Twilio does not
retry an inbound SMS webhook, so a 503 would lose the patient's words; a request that waits
past Twilio's patience is still stored and acted on, and its answers go out by the REST API
instead of the TwiML nobody reads (``twilio_hooks.TWIML_DEADLINE``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.pool import QueuePool

from campaigns.heap import freeze_startup_heap
from campaigns.logs import get_logger
from config.settings import Settings

#: AnyIO's own default, kept when the pool's capacity is unknown (e.g. NullPool).
DEFAULT_THREADS = 40
log = get_logger(__name__)


def is_sqlite(settings: Settings) -> bool:
    return settings.resolved_database_url.startswith("sqlite")


def worker_count(settings: Settings, requested: int | None = None) -> int:
    """``--workers``, else ``CAMPAIGNS_WEB_WORKERS``, else 1 on SQLite and one per CPU."""
    if requested:
        return requested
    if settings.web_workers:
        return settings.web_workers
    return 1 if is_sqlite(settings) else max(1, os.cpu_count() or 1)


def thread_limit(settings: Settings, engine: Engine) -> int:
    """``CAMPAIGNS_WEB_THREADS``, else what the engine's pool can serve at once; on SQLite
    one, since every transaction there takes the one write lock (``BEGIN IMMEDIATE``) and a
    second would only sleep in SQLite's busy handler, unfairly, up to its 30 s timeout."""
    if settings.web_threads:
        return settings.web_threads
    if engine.dialect.name == "sqlite":
        return 1
    pool = engine.pool
    if isinstance(pool, QueuePool):
        overflow = max(0, pool._max_overflow)  # no public accessor; -1 means unbounded
        return max(1, pool.size() + overflow) if pool._max_overflow >= 0 else DEFAULT_THREADS
    return DEFAULT_THREADS


def serve_processes(host: str, port: int, count: int) -> None:
    """What ``uvicorn.run(workers=count)`` does, but on a socket created as TCP.

    uvicorn 0.54 binds with ``socket.socket(family)``, whose ``proto`` is 0, and asyncio turns
    on TCP_NODELAY only for sockets whose ``proto`` is IPPROTO_TCP (accepted sockets copy the
    listener's). Without it Nagle holds back the end of each response until the client's
    delayed ACK: every keep-alive request took ~44 ms instead of ~1.5 ms (measured).
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    config = uvicorn.Config(
        "campaigns.web.app:create_app",
        factory=True,
        workers=count,
        host=host,
        port=port,
        proxy_headers=True,
    )
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()


def admission_lifespan(
    settings: Settings, engine: Engine
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """A lifespan that bounds this process's sync thread pool before the first request and
    freezes its start-up heap (``campaigns.heap``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        limit = thread_limit(settings, engine)
        to_thread.current_default_thread_limiter().total_tokens = limit
        frozen = freeze_startup_heap()
        log.info("web process ready", pid=os.getpid(), threads=limit, frozen_objects=frozen)
        yield

    return lifespan
