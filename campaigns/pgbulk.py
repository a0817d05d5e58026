"""Batch writes on PostgreSQL as one statement with one array parameter per column.

psycopg runs an executemany as one pipelined statement per row, and each row's parameters go
through SQLAlchemy's and psycopg's per-value processing: for the tick's enrollment updates,
events and the send path's receipts that was a large share of the time per message.
``SELECT unnest(:a), unnest(:b), ..`` turns the rows into a relation the database joins
against, so a batch is one statement with as many parameters as it has columns.

Arrays go in psycopg's binary format where their elements allow: its text format quotes and
escapes every element, ~0.4 ms per 5 KB email body (42 ms for a batch of 100 HTML bodies;
binary: under 1 ms) and ~6 µs per timestamp (binary: 0.5 µs; bulk enrolment writes about six
per row). A list takes that path when its elements, once through the column type's own bind
processor, are all of one kind psycopg dumps in binary (text, integers, dates, booleans,
datetimes all with or all without a time zone) or None; any other list keeps the text format.
Binary ``timestamptz`` values are instants, so the session's ``TimeZone`` cannot shift them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from enum import Enum as PyEnum
from typing import Any

from psycopg import adapters
from psycopg.types.array import ListBinaryDumper
from sqlalchemy import BindParameter, Dialect, String, Subquery, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.expression import TableClause
from sqlalchemy.types import TypeDecorator, TypeEngine

from campaigns.bind_values import converted


class _BinaryList(list[Any]):
    """A list psycopg dumps as a binary array."""


adapters.register_dumper(_BinaryList, ListBinaryDumper)

#: Element types psycopg dumps in binary; ``type()`` is compared, so ``bool`` is not an
#: ``int`` and a ``datetime`` not a ``date`` here.
_BINARY_ELEMENTS = frozenset({str, int, bool, date, datetime})


def _as_binary(values: list[Any]) -> list[Any]:
    """``values`` as a ``_BinaryList`` when they are all of one binary-dumped kind."""
    kinds = {(type(v), getattr(v, "tzinfo", None) is not None) for v in values if v is not None}
    if len(kinds) == 1 and next(iter(kinds))[0] in _BINARY_ELEMENTS:
        return _BinaryList(values)
    return values


class BinaryArray(TypeDecorator[list[Any]]):
    """``ARRAY(item_type)`` whose elements go through the item type's bind processor here,
    once per distinct value, and reach psycopg in binary where they can (see the module's
    docstring); SQLAlchemy's own ARRAY processing would hand psycopg a plain list."""

    impl = ARRAY
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Any:
        item_type: TypeEngine[Any] = self.impl_instance.item_type  # type: ignore[attr-defined]
        item = item_type.dialect_impl(dialect).bind_processor(dialect)

        def process(value: list[Any] | None) -> list[Any] | None:
            if value is None:
                return None
            return _as_binary(list(value) if item is None else converted(value, item))

        return process


def _array_type(column_type: TypeEngine[Any]) -> TypeEngine[Any]:
    """Non-native enums are stored as their string values, so their arrays are text arrays."""
    return BinaryArray(String() if isinstance(column_type, String) else column_type)


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, PyEnum) else value


def array_param(
    name: str | None, values: Iterable[Any], column_type: TypeEngine[Any]
) -> BindParameter[Any]:
    """``values`` as one array parameter of ``column_type``'s elements (enums as their
    values), in binary where they allow."""
    return bindparam(name, array_values(values), type_=_array_type(column_type))


def array_bind(name: str, column_type: TypeEngine[Any]) -> BindParameter[Any]:
    """``array_param`` without its values, for a statement built once: pass
    ``array_values(values)`` under ``name`` when executing it."""
    return bindparam(name, type_=_array_type(column_type))


def array_values(values: Iterable[Any]) -> list[Any]:
    """``values`` in a new list, enums as their values. Most columns hold none, which the
    set of their value types tells without a Python call per value (a third of ``COPY``'s
    client time in bulk enrolment)."""
    listed = list(values)
    if any(issubclass(kind, PyEnum) for kind in set(map(type, listed))):
        return [_plain(v) for v in listed]
    return listed


def unnest_binds(table: TableClause, columns: Mapping[str, str], name: str = "v") -> Subquery:
    """Rows as a subquery, one array parameter per column: ``columns`` maps each key of the
    rows to the table column whose type it has, and the subquery's columns are named after
    the keys. The statement is built once (building it per batch cost ~4% of B3); execute
    it with ``unnest_values(rows, columns)``."""
    arrays = [
        func.unnest(array_bind(f"a_{key}", table.c[column].type)).label(key)
        for key, column in columns.items()
    ]
    return select(*arrays).subquery(name)


def unnest_values(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str]) -> dict[str, Any]:
    return {f"a_{key}": array_values(r[key] for r in rows) for key in columns}


def unnest_columns(columns: Mapping[str, Iterable[Any]]) -> dict[str, Any]:
    """``unnest_values`` for values held column by column: each key's values in row order."""
    return {f"a_{key}": array_values(values) for key, values in columns.items()}
