"""``unnest`` batches on PostgreSQL: text arrays in binary format round-trip every string."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, Text, create_engine, select

from campaigns.enums import Channel
from campaigns.pgbulk import BinaryTextArray, _TextList, unnest_rows

TRICKY = ['a"b', "", None, "c,d", "{x}", "\\", "NULL", "é — “q”\n\t", "<p>" + "x" * 6000]


def test_text_lists_reach_psycopg_as_binary_arrays_and_others_unchanged(pg_url: str) -> None:
    engine = create_engine(pg_url)
    process = BinaryTextArray().bind_processor(engine.dialect)
    assert type(process(["a", None])) is _TextList
    mixed = ["a", 1]
    assert process(mixed) is mixed  # not all text: psycopg's own choice, as before
    engine.dispose()


@pytest.mark.parametrize("column_type", [String(40), Text()], ids=["varchar", "text"])
def test_unnest_round_trips_tricky_text(pg_url: str, column_type: String) -> None:
    table = Table("t", MetaData(), Column("id", Integer), Column("s", column_type))
    rows = [{"id": i, "s": s} for i, s in enumerate(TRICKY)]
    rows.append({"id": len(rows), "s": Channel.SMS})  # enums go as their values
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        source = unnest_rows(table, rows, {"id": "id", "s": "s"})
        got = conn.execute(select(source.c.id, source.c.s).order_by(source.c.id)).all()
    engine.dispose()
    assert [s for _, s in got] == [*TRICKY, "sms"]
