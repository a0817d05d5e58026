"""``unnest`` batches on PostgreSQL: arrays in binary format round-trip every value."""

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
from sqlalchemy.types import TypeEngine

from campaigns.enums import Channel
from campaigns.models import UTCDateTime
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
