"""SQLite's write lock goes to a waiting connection between another's transactions, and a
wait that outlasts the busy timeout fails as a retryable ``OperationalError``."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from campaigns import db
from campaigns.db import make_engine

#: The busy writer: holds the lock this long per transaction, then lets go this long.
HOLD_S, GAP_S = 0.05, 0.001


def _engines(tmp_path: Path) -> tuple[Engine, Engine]:
    url = f"sqlite:///{tmp_path / 'lock.db'}"
    first, second = make_engine(url), make_engine(url)
    with first.begin() as conn:
        conn.execute(text("CREATE TABLE t (who TEXT)"))
    return first, second


def test_a_waiting_writer_gets_in_between_a_busy_writers_transactions(tmp_path: Path) -> None:
    """A writer that lets go of the lock for 1 ms in every 51: SQLite's own back-off (a try
    every 100 ms after a while) waited 0.4-18 s for it here; trying every millisecond at
    most, a wait ends when the busy writer's current transaction does."""
    busy, waiting = _engines(tmp_path)
    stop = threading.Event()

    def keep_writing() -> None:
        while not stop.is_set():
            with busy.begin() as conn:
                conn.execute(text("INSERT INTO t VALUES ('busy')"))
                time.sleep(HOLD_S)
            time.sleep(GAP_S)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    waits = []
    try:
        for _ in range(5):
            time.sleep(0.037)  # somewhere in the busy writer's transaction
            started = time.monotonic()
            with waiting.begin() as conn:
                waits.append(time.monotonic() - started)
                conn.execute(text("INSERT INTO t VALUES ('waiting')"))
    finally:
        stop.set()
        writer.join(10)
    assert max(waits) < 0.4, waits
    with waiting.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t WHERE who = 'waiting'")).scalar() == 5


def test_a_lock_held_past_the_busy_timeout_fails_as_operational_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 200)
    holder, waiting = _engines(tmp_path)
    with holder.begin() as held:
        held.execute(text("INSERT INTO t VALUES ('holder')"))
        started = time.monotonic()
        with pytest.raises(OperationalError, match="locked"), waiting.begin():
            pass
        assert 0.2 <= time.monotonic() - started < 2.0
    with waiting.begin() as conn:  # the connection is still good once the lock is free
        conn.execute(text("INSERT INTO t VALUES ('waiting')"))
        busy_timeout = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
    assert busy_timeout == db.BUSY_TIMEOUT_MS  # SQLite's own wait is back for other statements
