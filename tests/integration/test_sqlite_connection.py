"""Every SQLite connection the engine opens is set up the same way, pooled or new."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from campaigns.db import BUSY_TIMEOUT_MS, SQLITE_CACHE_KIB, make_engine


def test_each_connection_gets_the_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'pragmas.db'}")
    try:
        # Two at once, as the pool hands them out (raw: no transaction, so no write lock).
        first, second = engine.raw_connection(), engine.raw_connection()
        for conn in (first, second):
            read = {
                name: conn.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("journal_mode", "foreign_keys", "synchronous", "cache_size")
            }
            assert read == {
                "journal_mode": "wal",
                "foreign_keys": 1,
                "synchronous": 1,  # NORMAL
                "cache_size": -SQLITE_CACHE_KIB,  # negative: KiB, not pages
            }
            assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == BUSY_TIMEOUT_MS
        first.close()
        second.close()
    finally:
        engine.dispose()


def test_nulls_take_the_registered_adapter_and_are_stored_as_null(tmp_path: Path) -> None:
    """``campaigns.db`` registers an adapter for None (the fast path past ``sqlite3``'s
    protocol look-up); what is stored must still be SQL NULL, through both execute paths."""
    assert sqlite3.adapters[(type(None), sqlite3.PrepareProtocol)](None) is None
    engine = make_engine(f"sqlite:///{tmp_path / 'nulls.db'}")
    try:
        raw = engine.raw_connection()
        raw.execute("CREATE TABLE t (a INTEGER, b TEXT)")
        raw.executemany("INSERT INTO t VALUES (?, ?)", [(1, None), (None, "x")])
        raw.execute("INSERT INTO t VALUES (?, ?)", (None, None))
        stored = raw.execute("SELECT typeof(a), typeof(b) FROM t ORDER BY rowid").fetchall()
        assert stored == [("integer", "null"), ("null", "text"), ("null", "null")]
        raw.close()
    finally:
        engine.dispose()
