"""Many new rows into one table, one statement per batch on either database, no ids back.

PostgreSQL: ``INSERT .. SELECT unnest(..)`` (``pgbulk``); SQLite: one driver-level
executemany (``sqlite_bulk``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import TableClause

from campaigns import sqlite_bulk
from campaigns.pgbulk import unnest_rows


def insert_rows(session: Session, target: TableClause, rows: Sequence[Mapping[str, Any]]) -> None:
    """``rows`` all hold the same keys, named after ``target``'s columns."""
    if not rows:
        return
    names = list(rows[0])
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        columns: dict[str, Any] = {name: bindparam(name) for name in names}
        sqlite_bulk.executemany(connection, insert(target).values(columns), rows)
        return
    source = unnest_rows(target, rows, {n: n for n in names})
    connection.execute(insert(target).from_select(names, select(source)))
