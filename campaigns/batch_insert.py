"""Many new rows into one table, one statement per batch on either database, no ids back.

PostgreSQL: ``COPY`` from ``COPY_FROM`` rows up (``pg_copy``), ``INSERT .. SELECT unnest(..)``
below (``pgbulk``); SQLite: one driver-level executemany (``sqlite_bulk``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.expression import TableClause

from campaigns import pg_copy, sqlite_bulk
from campaigns.pgbulk import unnest_binds, unnest_columns

#: Batches of this many rows or more go in with ``COPY`` on PostgreSQL. On loopback it was
#: cheaper from one row up (events: 1 row 0.45 against 0.54 ms, 32 rows 0.69 against 0.78,
#: 128 rows 1.4 against 2.2), but it takes a second round trip, which a server across a
#: network charges for: a reply's one event, or a tick's few, keep the ``INSERT``.
COPY_FROM = 32


def insert_rows(session: Session, target: TableClause, rows: Sequence[Mapping[str, Any]]) -> None:
    """``rows`` all hold the same keys, named after ``target``'s columns."""
    if rows:
        insert_columns(session, target, {name: [row[name] for row in rows] for name in rows[0]})


def insert_columns(
    session: Session, target: TableClause, columns: Mapping[str, Sequence[Any]]
) -> None:
    """Rows given column by column: each of ``target``'s columns named, with its values in
    row order (all of one length)."""
    names = tuple(columns)
    count = len(columns[names[0]]) if names else 0
    if not count:
        return
    connection = session.connection()
    postgresql = connection.dialect.name == "postgresql"
    if postgresql and count >= COPY_FROM:
        pg_copy.copy_columns(connection, target, columns)
        return
    statement = _statement(target, names, postgresql=postgresql)
    if postgresql:
        connection.execute(statement, unnest_columns(columns))
    else:
        sqlite_bulk.executemany_columns(connection, statement, columns, count)


@lru_cache(maxsize=64)
def _statement(target: TableClause, names: tuple[str, ...], *, postgresql: bool) -> Insert:
    """Built once per table and set of columns: a batch's rows are its parameters."""
    if postgresql:
        source = unnest_binds(target, {n: n for n in names})
        return insert(target).from_select(list(names), select(source))
    return insert(target).values({name: bindparam(name) for name in names})
