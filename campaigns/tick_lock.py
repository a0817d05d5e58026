"""One tick at a time on an SQLite database, across a worker's processes.

Ticks may overlap (beat fires the next while a burst is still being planned), and nothing
goes wrong when they do: claims lock what they take. On PostgreSQL the two claim different
rows and plan side by side. On SQLite there is one write lock, so the second tick can only
wait for the first's, batch after batch, and the worker process running it sends nothing
meanwhile: in B4 sending stood still for two seconds of every burst (``bench/HISTORY.md``,
tenth session). So on SQLite a tick that finds another running on the same database skips;
the running one goes on until nothing is due.

The lock is an ``flock`` on a file beside the database: the system lets go of it when its
process dies, so a killed tick never holds up the next.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from campaigns.db import sqlite_file


def lock_path(database_url: str) -> Path | None:
    """The lock file of an SQLite database file; ``None`` for anything else."""
    database = sqlite_file(database_url)
    return None if database is None else database.with_name(database.name + ".tick-lock")


@contextmanager
def sole_tick(database_url: str) -> Iterator[bool]:
    """Whether this tick may run: ``False`` while another holds the database's lock."""
    path = lock_path(database_url)
    if path is None:
        yield True
        return
    with path.open("a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
