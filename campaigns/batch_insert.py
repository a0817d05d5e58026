"""Many new rows into one table, one statement per batch on either database, no ids back.

PostgreSQL: ``INSERT .. SELECT unnest(..)`` (``pgbulk``); SQLite: one driver-level
executemany (``sqlite_bulk``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.expression import TableClause

from campaigns import sqlite_bulk
from campaigns.pgbulk import unnest_binds, unnest_values


def insert_rows(session: Session, target: TableClause, rows: Sequence[Mapping[str, Any]]) -> None:
    """``rows`` all hold the same keys, named after ``target``'s columns."""
    if not rows:
        return
    names = tuple(rows[0])
    connection = session.connection()
    postgresql = connection.dialect.name == "postgresql"
    statement = _statement(target, names, postgresql=postgresql)
    if postgresql:
        connection.execute(statement, unnest_values(rows, {n: n for n in names}))
    else:
        sqlite_bulk.executemany(connection, statement, rows)


@lru_cache(maxsize=64)
def _statement(target: TableClause, names: tuple[str, ...], *, postgresql: bool) -> Insert:
    """Built once per table and set of columns: a batch's rows are its parameters."""
    if postgresql:
        source = unnest_binds(target, {n: n for n in names})
        return insert(target).from_select(list(names), select(source))
    return insert(target).values({name: bindparam(name) for name in names})
