"""Running a coroutine from a test that may share the process with the browser tests."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def apart(run: Callable[..., T], *args: Any) -> T:
    """``run(*args)`` (``asyncio.run(coro)``, ``anyio.run(fn)``) on a thread of its own.

    Playwright's sync API (the session-scoped browser tests) keeps an event loop marked
    running on the main thread for the rest of the session, and ``asyncio.run`` and
    ``anyio.run`` refuse to start inside it."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run, *args).result()
