"""Every SQLite connection the engine opens is set up the same way, pooled or new."""

from __future__ import annotations

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
