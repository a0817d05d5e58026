"""Many new rows into one PostgreSQL table with ``COPY .. FROM STDIN (FORMAT BINARY)``.

``INSERT .. SELECT unnest(..)`` (``pgbulk``) already sends a batch as one statement, but its
arrays are built in Python value by value (the column types' processing, psycopg's choice of
binary kind). ``COPY`` takes rows as they are and psycopg's C code puts each value in binary
by the column's own type, which the table's catalogue gives. Bulk enrolment's writer on
PostgreSQL, with this and the changes beside it: 53-61 -> 20-24 µs of CPU per row
(``bench/HISTORY.md``, twelfth session). The server's share (inserting, nine indexes, five
foreign-key checks per enrolled patient) does not change.

A ``COPY`` takes two round trips where an ``INSERT`` takes one, so small batches keep the
``INSERT`` (``batch_insert.COPY_FROM``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Connection, String
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.expression import TableClause

from campaigns.bind_values import converted
from campaigns.pgbulk import array_values

#: Key of the column type oids in a pooled connection's ``info`` (per connection: a process
#: may talk to more than one database).
_OIDS = "campaigns.pg_copy.oids"


def copy_columns(
    connection: Connection, target: TableClause, columns: Mapping[str, Sequence[Any]]
) -> None:
    """Rows given column by column (each of ``target``'s columns named, with its values in
    row order), stored as ``INSERT`` would store them: each value through its column type's
    bind processor, enums as their values."""
    dialect = connection.dialect
    names = tuple(columns)
    values = []
    for name in names:
        column_type = target.c[name].type
        process = column_type.dialect_impl(dialect).bind_processor(dialect)
        if isinstance(column_type, String) or process is None:
            values.append(array_values(columns[name]))  # non-native enums are their values
        else:
            values.append(converted(columns[name], process))
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(target.name), sql.SQL(", ").join(map(sql.Identifier, names))
    )
    driver = connection.connection.driver_connection
    try:
        with driver.cursor() as cursor:  # type: ignore[union-attr]
            oids = _column_oids(connection, cursor, target.name, names)
            with cursor.copy(statement) as copy:
                copy.set_types(oids)
                write = copy.write_row
                for row in zip(*values, strict=True):
                    write(row)
    except psycopg.Error as exc:  # as SQLAlchemy raises it: IntegrityError for a clash, ...
        raise DBAPIError.instance(
            f"COPY {target.name}", None, exc, psycopg.Error, dialect=dialect
        ) from exc


def _column_oids(
    connection: Connection, cursor: psycopg.Cursor[Any], table: str, names: tuple[str, ...]
) -> list[int]:
    """The columns' type oids, read from the catalogue once per connection and table."""
    known: dict[str, dict[str, int]] = connection.connection.info.setdefault(_OIDS, {})
    if table not in known:
        cursor.execute(
            "SELECT attname, atttypid FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            (table,),
        )
        known[table] = {name: int(oid) for name, oid in cursor.fetchall()}
    return [known[table][name] for name in names]
