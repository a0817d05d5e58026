"""Engine, sessions and migrations for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection, CursorResult, Engine, Executable, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


# ``sqlite3`` binds int, float and str parameters directly, but sends every other value,
# None included, through its adapter protocol: a registry look-up, then ``__adapt__`` looked
# up on its protocol class, which raises and clears a formatted AttributeError each time
# (~0.2 µs per NULL; the tick's batch writes bind ~14 per message, bench/HISTORY.md,
# fourteenth session). A registered adapter is found first; ``{}.get`` returns None for None
# without a Python frame. Only base types (int, float, str, bytearray) would turn the fast
# path off for every value; None is not one of them.
sqlite3.register_adapter(type(None), cast("Callable[[None], None]", {}.get))

#: How long a statement waits for a lock another connection holds, then fails as "locked".
BUSY_TIMEOUT_MS = 30_000
#: Each connection's page cache, in KiB (SQLite's default is 2 MB). The tick and the sends
#: touch index pages all over the outbox and enrollments; at 10k enrollments a 2,000-message
#: B3 pass read 7.4 pages per message back from the OS with the default, 2.3 with this
#: (bench/HISTORY.md, fourteenth session). Bounded per connection: B7's soak stays below
#: its 150 MB.
SQLITE_CACHE_KIB = 8192
#: Between attempts at the write lock: the first wait, and the longest (see ``_take_write_lock``).
_FIRST_RETRY_S, _LONGEST_RETRY_S = 0.0001, 0.001


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets the worker read while the CLI writes; busy_timeout turns lock clashes into waits.
    dbapi_conn.isolation_level = None  # let _sqlite_begin issue BEGIN itself
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    # IMMEDIATE takes the write lock up front, so two ticks serialise instead of one
    # reading stale due times; SQLite has no FOR UPDATE SKIP LOCKED. AUTOCOMMIT connections
    # (the tick's idle probe) only read, so they take no lock at all.
    if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        return
    raw = conn.connection.driver_connection
    raw.execute("PRAGMA busy_timeout = 0")  # this wait is ours (below), not SQLite's
    try:
        _take_write_lock(conn)
    finally:
        raw.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def _take_write_lock(conn: Connection) -> None:
    """``BEGIN IMMEDIATE``, tried again every millisecond at most while another connection
    writes, for up to ``BUSY_TIMEOUT_MS``.

    SQLite's own wait backs off to one try every 100 ms. A process that commits and begins
    its next transaction within a millisecond (the tick, batch after batch) then holds the
    lock as good as for ever: in B4 on SQLite the send tasks stood still while a burst was
    planned (bench/HISTORY.md, tenth session). Trying often finds the moment between two
    of its transactions."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    wait = _FIRST_RETRY_S
    while True:
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            return
        except OperationalError as exc:
            busy = getattr(exc.orig, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() > deadline:
                raise
        time.sleep(wait)
        wait = min(2 * wait, _LONGEST_RETRY_S)


def sqlite_file(url: str) -> Path | None:
    """The file of an SQLite database URL; ``None`` in memory or for another database."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def make_engine(url: str, **kwargs: Any) -> Engine:
    if make_url(url).get_backend_name() == "sqlite":
        if (database := sqlite_file(url)) is not None:
            database.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def autovacuum_on(conn: Connection) -> bool:
    """PostgreSQL's server-wide autovacuum setting: off, statistics and the plans cached
    from them stay as they were when the tables were small (``campaigns doctor``, B7)."""
    return conn.execute(text("SELECT current_setting('autovacuum')")).scalar() == "on"


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    return make_engine(url)


_FACTORIES: dict[int, sessionmaker[Session]] = {}


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """One factory per engine: building a sessionmaker per transaction is measurable."""
    factory = _FACTORIES.get(id(engine))
    if factory is None or factory.kw.get("bind") is not engine:
        factory = _FACTORIES[id(engine)] = sessionmaker(engine, expire_on_commit=False)
    return factory


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """Commit on success, roll back on any error: nothing is ever half-written."""
    with session_factory(engine)() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def dialect_of(session: Session) -> str:
    """``sqlite`` or ``postgresql``: what the bulk and batch statements are built for."""
    return session.get_bind().dialect.name


def execute_plain(
    session: Session, statement: Executable, params: Mapping[str, Any] | None = None
) -> CursorResult[Any]:
    """Run a Core statement in the session's transaction, as plain rows.

    ``Session.execute`` puts every statement through the ORM's result (and bulk UPDATE)
    layer even when it names only columns; for the batch reads and claims of the tick and
    the send path that layer cost more than the rows themselves (~9% of B3,
    bench/HISTORY.md, ninth session). Pending changes are flushed first, as
    ``Session.execute`` would."""
    session.flush()
    return session.connection().execute(statement, params)


def alembic_config(url: str) -> Config:
    # Imported here: Alembic is ~7 MB of every worker's and web process's memory otherwise,
    # and only migrations and ``campaigns doctor`` use it.
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str) -> None:
    """Upgrade to head; safe to run on every start (Alembic no-ops when current)."""
    from alembic import command

    engine = engine_for(url)
    with engine.begin() as conn:
        cfg = alembic_config(url)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
