"""Batches on PostgreSQL, ``unnest`` arrays and ``COPY`` alike, round-trip every value in
binary format; ``COPY`` refuses a bad batch as SQLAlchemy would, and stores none of it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    select,
)
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeEngine

from campaigns import batch_insert
from campaigns.enums import Channel
from campaigns.models import UTCDateTime
from campaigns.pg_copy import copy_columns
from campaigns.pgbulk import BinaryArray, _BinaryList, unnest_binds, unnest_values

TRICKY = ['a"b', "", None, "c,d", "{x}", "\\", "NULL", "é — “q”\n\t", "<p>" + "x" * 6000]
NOW = datetime(2026, 3, 8, 9, 59, 59, 123456, tzinfo=UTC)  # the night US clocks change
ELSEWHERE = timezone(timedelta(hours=-8))


def test_lists_of_one_binary_kind_reach_psycopg_as_binary_arrays(pg_url: str) -> None:
    engine = create_engine(pg_url)
    text = BinaryArray(String()).bind_processor(engine.dialect)
    assert type(text(["a", None])) is _BinaryList
    mixed = ["a", 1]
    assert text(mixed) == mixed and type(text(mixed)) is list  # psycopg's own choice
    stamps = BinaryArray(UTCDateTime()).bind_processor(engine.dialect)
    assert type(stamps([NOW, None, NOW.astimezone(ELSEWHERE)])) is _BinaryList
    assert type(stamps([None, None])) is list  # nothing to tell psycopg the element type
    for values in ([1, None, 2**40], [True, False], [NOW.date()]):
        assert type(BinaryArray(Integer()).bind_processor(engine.dialect)(values)) is _BinaryList
    assert type(BinaryArray(Integer()).bind_processor(engine.dialect)([1, True])) is list
    with pytest.raises(ValueError, match="naive"):  # the column type's own check still runs
        stamps([NOW.replace(tzinfo=None)])
    engine.dispose()


@pytest.mark.parametrize("column_type", [String(40), Text()], ids=["varchar", "text"])
def test_unnest_round_trips_tricky_text(pg_url: str, column_type: String) -> None:
    table = Table("t", MetaData(), Column("id", Integer), Column("s", column_type))
    rows = [{"id": i, "s": s} for i, s in enumerate(TRICKY)]
    rows.append({"id": len(rows), "s": Channel.SMS})  # enums go as their values
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        keys = {"id": "id", "s": "s"}
        source = unnest_binds(table, keys)
        query = select(source.c.id, source.c.s).order_by(source.c.id)
        got = conn.execute(query, unnest_values(rows, keys)).all()
    engine.dispose()
    assert [s for _, s in got] == [*TRICKY, "sms"]


COLUMNS: dict[str, tuple[TypeEngine[Any], list[Any]]] = {
    "at": (UTCDateTime(), [NOW, None, NOW.astimezone(ELSEWHERE), NOW + timedelta(days=9000)]),
    "day": (Date(), [date(2026, 3, 8), None, date(1999, 12, 31), date(2026, 2, 28)]),
    "n": (Integer(), [0, -1, None, 2**31 - 1]),
    "big": (BigInteger(), [2**40, 1, None, -(2**62)]),
    "flag": (Boolean(), [True, False, None, True]),
    "doc": (JSON(), [{"first_due": NOW.isoformat()}, None, [1, "é"], {"q": 'a"b'}]),
}


def test_unnest_round_trips_every_kind_whatever_the_session_time_zone(pg_url: str) -> None:
    table = Table("t", MetaData(), *(Column(name, t) for name, (t, _) in COLUMNS.items()))
    rows = [{name: values[i] for name, (_, values) in COLUMNS.items()} for i in range(4)]
    engine = create_engine(pg_url)
    # Text-format timestamps without an offset would be read in the session's zone.
    event.listen(
        engine, "connect", lambda dbapi, _: dbapi.execute("SET TimeZone = 'Asia/Kathmandu'")
    )
    with engine.connect() as conn:
        keys = {name: name for name in COLUMNS}
        source = unnest_binds(table, keys)
        query = select(*(source.c[name] for name in COLUMNS))
        got = conn.execute(query, unnest_values(rows, keys)).all()
    engine.dispose()
    for i, row in enumerate(got):
        for name, value in zip(COLUMNS, row, strict=True):
            want = rows[i][name]
            if name == "at" and value is not None:
                assert value == want and value.utcoffset() is not None, (name, value, want)
            else:
                assert value == want, (name, value, want)


def _copied(pg_url: str, table: Table, columns: dict[str, list[Any]]) -> list[tuple[Any, ...]]:
    """``columns`` through ``COPY`` into a fresh ``table``, read back in insertion order,
    with the session in a zone where text timestamps without an offset would be misread."""
    engine = create_engine(pg_url)
    event.listen(
        engine, "connect", lambda dbapi, _: dbapi.execute("SET TimeZone = 'Asia/Kathmandu'")
    )
    table.metadata.create_all(engine)
    with engine.begin() as conn:
        copy_columns(conn, table, columns)
    with engine.connect() as conn:
        got = [tuple(row) for row in conn.execute(select(table).order_by(table.c.id))]
    engine.dispose()
    return got


def test_copy_round_trips_every_kind_whatever_the_session_time_zone(pg_url: str) -> None:
    table = Table("t", MetaData(), Column("id", Integer),
                  *(Column(name, t) for name, (t, _) in COLUMNS.items()))  # fmt: skip
    columns = {"id": [0, 1, 2, 3], **{name: values for name, (_, values) in COLUMNS.items()}}
    got = _copied(pg_url, table, columns)
    assert [row[0] for row in got] == [0, 1, 2, 3]
    for i, row in enumerate(got):
        for name, value in zip(COLUMNS, row[1:], strict=True):
            want = columns[name][i]
            assert value == want, (name, value, want)
            if name == "at" and value is not None:
                assert value.utcoffset() is not None


@pytest.mark.parametrize("column_type", [String(7000), Text()], ids=["varchar", "text"])
def test_copy_round_trips_tricky_text_and_enums(pg_url: str, column_type: String) -> None:
    table = Table("t", MetaData(), Column("id", Integer), Column("s", column_type))
    values = [*TRICKY, Channel.SMS]  # enums go as their values
    got = _copied(pg_url, table, {"id": list(range(len(values))), "s": values})
    assert [s for _, s in got] == [*TRICKY, "sms"]


def test_a_refused_copy_raises_sqlalchemys_error_and_stores_none_of_the_batch(
    pg_url: str,
) -> None:
    table = Table("t", MetaData(), Column("id", Integer, primary_key=True),
                  Column("code", String(4)))  # fmt: skip
    engine = create_engine(pg_url)
    table.metadata.create_all(engine)
    with engine.begin() as conn:
        copy_columns(conn, table, {"id": [1], "code": ["kept"]})
    for columns, error in (
        ({"id": [2, 3, 1], "code": ["a", "b", "c"]}, IntegrityError),  # id 1 is taken
        ({"id": [4, 5], "code": ["ok", "too long"]}, DataError),
    ):
        with pytest.raises(error), engine.begin() as conn:
            copy_columns(conn, table, columns)
        with engine.connect() as conn:  # the transaction rolled back, the pool's connection
            assert conn.execute(select(table.c.code)).scalars().all() == ["kept"]  # works
    with pytest.raises(ValueError, match="naive"), engine.begin() as conn:
        stamps = Table("s", MetaData(), Column("at", UTCDateTime()))
        copy_columns(conn, stamps, {"at": [NOW.replace(tzinfo=None)]})  # the type's check
    engine.dispose()


def test_batches_from_copy_from_rows_are_copied_smaller_ones_inserted(pg_url: str) -> None:
    """Both store the same rows; only the ``INSERT`` is a statement SQLAlchemy runs."""
    table = Table("t", MetaData(), Column("id", Integer), Column("at", UTCDateTime()),
                  Column("doc", JSON()))  # fmt: skip
    engine = create_engine(pg_url)
    table.metadata.create_all(engine)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute",
                 lambda *args: statements.append(args[2]))  # fmt: skip
    sizes = {}
    for first, n in ((0, batch_insert.COPY_FROM - 1), (1000, batch_insert.COPY_FROM)):
        statements.clear()
        columns = {"id": list(range(first, first + n)), "at": [NOW] * n,
                   "doc": [{"n": i} for i in range(n)]}  # fmt: skip
        with Session(engine) as session, session.begin():
            batch_insert.insert_columns(session, table, columns)
        sizes[n] = sum(s.lstrip().upper().startswith("INSERT") for s in statements)
    assert sizes == {batch_insert.COPY_FROM - 1: 1, batch_insert.COPY_FROM: 0}
    with engine.connect() as conn:
        rows = conn.execute(select(table.c.id, table.c.at, table.c.doc)).all()
    engine.dispose()
    stored = {row.id: (row.at, row.doc) for row in rows}
    assert sorted(stored) == [*range(batch_insert.COPY_FROM - 1),
                              *range(1000, 1000 + batch_insert.COPY_FROM)]  # fmt: skip
    assert all(at == NOW and doc["n"] == i % 1000 for i, (at, doc) in stored.items())
