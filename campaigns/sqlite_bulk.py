"""Batch writes on SQLite as one driver-level executemany (``pgbulk`` is PostgreSQL's).

SQLAlchemy's executemany builds a parameter dict per row and runs every value through its
type's bind processor; for batches of hundreds or thousands of rows that bookkeeping cost more
than SQLite's own work (bulk enrolment's writer: ~50 -> ~31 µs per row). Here the statement is
compiled once and each column's values are converted once per distinct value (a batch's
timestamps are mostly one ``now``), then handed to ``sqlite3`` as tuples. The conversions are
the column types' own bind processors, so what is stored does not change.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from functools import lru_cache
from itertools import chain
from typing import Any

from sqlalchemy import Connection, CursorResult, Dialect, Table, bindparam
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.types import TypeEngine

from campaigns.bind_values import converted

#: The largest page ``insert_returning`` writes as one statement.
PAGE = 256
#: Page cache (KiB) while one large write runs. Bulk enrolment inserts thousands of rows into
#: indexes keyed by random hashes, so each insert lands on a different page; in SQLite's
#: default 2 MB cache they were read again and again (B1's writer 47 -> 44 µs per row).
ROOMY_CACHE_KIB = 64 * 1024


@contextmanager
def roomy_cache(connection: Connection) -> Iterator[None]:
    """A larger page cache on ``connection`` (SQLite; elsewhere nothing) for the duration,
    then its own size again: pooled connections of long-lived processes stay small."""
    if connection.dialect.name != "sqlite":
        yield
        return
    previous = int(connection.exec_driver_sql("PRAGMA cache_size").scalar_one())
    connection.exec_driver_sql(f"PRAGMA cache_size = -{ROOMY_CACHE_KIB}")
    try:
        yield
    finally:
        with suppress(DBAPIError):  # a broken connection is discarded with its cache
            connection.exec_driver_sql(f"PRAGMA cache_size = {previous}")


def executemany(
    connection: Connection, statement: UpdateBase, rows: Sequence[Mapping[str, Any]]
) -> CursorResult[Any]:
    """``statement`` once per row; its bound parameters are read from each row by name, and
    those a row does not hold (constants in the statement) keep their bound value."""
    names = _compiled(statement, connection.dialect).positiontup or ()
    first = rows[0]
    columns = {name: [row[name] for row in rows] for name in names if name in first}
    return executemany_columns(connection, statement, columns, len(rows))


def executemany_columns(
    connection: Connection,
    statement: UpdateBase,
    columns: Mapping[str, Sequence[Any]],
    count: int,
) -> CursorResult[Any]:
    """``executemany`` of ``count`` rows given column by column, for callers that hold their
    values that way (building a dict per row only to take it apart again cost bulk
    enrolment's writer ~5 µs per row)."""
    dialect = connection.dialect
    compiled = _compiled(statement, dialect)
    stored = []
    for name in compiled.positiontup or ():
        bind = compiled.binds[name]
        values = columns[name] if name in columns else [bind.effective_value] * count
        stored.append(_as_stored(dialect, bind.type, values))
    return connection.exec_driver_sql(compiled.string, list(zip(*stored, strict=True)))


@lru_cache(maxsize=32)
def _compiled(statement: UpdateBase, dialect: Dialect) -> SQLCompiler:
    """Compiled once per statement: every caller builds its statement once (per dialect, or
    per table and columns), and compiling it per batch was part of what that saved."""
    return statement.compile(dialect=dialect)


def _as_stored(dialect: Dialect, type_: TypeEngine[Any], values: Sequence[Any]) -> Sequence[Any]:
    """A column's values through its type's bind processor, once per distinct value."""
    process = type_.dialect_impl(dialect).bind_processor(dialect)
    return values if process is None else converted(values, process)


def insert_returning(
    connection: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    conflict: tuple[str, ...],
    returning: tuple[str, ...],
) -> list[tuple[Any, ...]]:
    """Multi-row ``INSERT .. ON CONFLICT (conflict) DO NOTHING RETURNING returning`` of
    ``rows`` (all with the same keys), in pages of 256, 128, .. 1 rows; returned values
    come back as the driver gives them (no result processing). SQLAlchemy's own multi-row
    insert binds value by value, about half of the tick's outbox insert on SQLite.

    Each page size is one statement text: Python's ``sqlite3`` keeps the last 128 statements
    it prepared per connection, and one of ~400 outbox rows holds ~0.7 MB of C memory, so a
    worker whose batches came in many sizes grew by tens of MB (B7 at 10k patients). Nine
    sizes hold under 1 MB together, and a batch of up to 511 rows is at most nine statements.
    """
    if not rows:
        return []
    names = tuple(rows[0])
    columns = [
        _as_stored(connection.dialect, table.c[name].type, [row[name] for row in rows])
        for name in names
    ]
    tuples = list(zip(*columns, strict=True))
    out: list[tuple[Any, ...]] = []
    for start, size in _pages(len(tuples)):
        sql = _multi_row(table, names, size, conflict, returning)
        flat = tuple(chain.from_iterable(tuples[start : start + size]))
        out += connection.exec_driver_sql(sql, flat).tuples().all()
    return out


def _pages(n: int) -> Iterator[tuple[int, int]]:
    """(start, size) of pages of ``PAGE``, then the largest power of two that fits."""
    start = 0
    while start < n:
        size = 1 << (min(n - start, PAGE).bit_length() - 1)
        yield start, size
        start += size


@lru_cache(maxsize=64)
def _multi_row(
    table: Table, names: tuple[str, ...], size: int, conflict: tuple[str, ...],
    returning: tuple[str, ...],
) -> str:  # fmt: skip
    """The statement for ``size`` rows, compiled by SQLAlchemy once per process; its
    placeholders must be row after row, column after column, which is checked here."""
    values: list[dict[str, Any]] = [{n: bindparam(f"r{i}_{n}") for n in names} for i in range(size)]
    statement = (
        sqlite.insert(table)
        .values(values)
        .on_conflict_do_nothing(index_elements=list(conflict))
        .returning(*(table.c[c] for c in returning))
    )
    compiled = statement.compile(dialect=sqlite.dialect())
    expected = [f"r{i}_{n}" for i in range(size) for n in names]
    if list(compiled.positiontup or ()) != expected:
        raise RuntimeError("multi-row INSERT placeholders are not in row order")
    return compiled.string
