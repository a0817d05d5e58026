"""Ordered lanes of work on a few threads: items of one lane in order, lanes side by side.

The outbox sends one patient's messages as a lane, so a STOP or a provider opt-out seen on
one message still holds that patient's later ones, while other patients' provider calls
(which mostly wait on the network) overlap. The first error stops every lane before its
next item; the items already running finish, and only then is the error raised, so the
caller knows exactly which items never started.

The threads live for the whole process (HTTP and SMTP connections are kept per thread) and
are forgotten in a forked child, where they do not exist.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


def group(items: Iterable[T], key: Callable[[T], Hashable]) -> list[list[T]]:
    """Items with the same key in one lane, in their original order; lanes by first item."""
    lanes: dict[Hashable, list[T]] = {}
    for item in items:
        lanes.setdefault(key(item), []).append(item)
    return list(lanes.values())


def run_lanes(
    lanes: Sequence[Sequence[T]], step: Callable[[T, threading.Event], None], *, threads: int
) -> None:
    """``step(item, stop)`` every item, lane by lane in order. The first exception sets
    ``stop`` (a step that waited, e.g. for a rate limit, checks it before going on), no item
    starts after it, and it is re-raised once every running item has finished."""
    stop = threading.Event()
    if threads <= 1 or len(lanes) <= 1:
        for lane in lanes:
            for item in lane:
                step(item, stop)
        return
    errors: list[BaseException] = []
    lock = threading.Lock()
    pending = iter(lanes)

    def run() -> None:
        """Take the next lane until none is left: one task per thread, not one per lane
        (handing each patient's lane to the pool cost more than an in-process send)."""
        while True:
            with lock:
                lane = next(pending, None)
            if lane is None:
                return
            for item in lane:
                if stop.is_set():
                    return
                try:
                    step(item, stop)
                except BaseException as exc:
                    with lock:
                        errors.append(exc)
                    stop.set()
                    return

    executor = _executor(threads)
    futures: list[Future[None]] = [executor.submit(run) for _ in range(min(threads, len(lanes)))]
    try:
        wait(futures)
    except BaseException:  # this thread was interrupted (time limit, shutdown): stop the rest
        stop.set()
        wait(futures)
        raise
    if errors:
        raise errors[0]


def _executor(threads: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size != threads:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(threads, thread_name_prefix="send")
            _pool_size = threads
        return _pool


def _forget_pool() -> None:
    """In a forked child the parent's threads are gone: start a new pool when needed."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)
