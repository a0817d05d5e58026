"""Batch writes on PostgreSQL as one statement with one array parameter per column.

psycopg runs an executemany as one pipelined statement per row, and each row's parameters go
through SQLAlchemy's and psycopg's per-value processing: for the tick's enrollment updates,
events and the send path's receipts that was a large share of the time per message.
``SELECT unnest(:a), unnest(:b), ..`` turns the rows into a relation the database joins
against, so a batch is one statement with as many parameters as it has columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum as PyEnum
from typing import Any

from sqlalchemy import Enum, String, Subquery, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.expression import TableClause
from sqlalchemy.types import TypeEngine


def _array_type(column_type: TypeEngine[Any]) -> TypeEngine[Any]:
    """Non-native enums are stored as their string values, so their arrays are text arrays."""
    return String() if isinstance(column_type, Enum) else column_type


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, PyEnum) else value


def unnest_rows(
    table: TableClause,
    rows: Sequence[Mapping[str, Any]],
    columns: Mapping[str, str],
    name: str = "v",
) -> Subquery:
    """``rows`` as a subquery: ``columns`` maps each key of the rows to the table column
    whose type it has; the subquery's columns are named after the keys."""
    arrays = [
        func.unnest(
            bindparam(
                f"a_{key}",
                [_plain(r[key]) for r in rows],
                type_=ARRAY(_array_type(table.c[column].type)),
            )
        ).label(key)
        for key, column in columns.items()
    ]
    return select(*arrays).subquery(name)
