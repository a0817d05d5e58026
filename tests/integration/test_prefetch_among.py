"""``prefetch.among``: the rows ``IN (values)`` finds, as one statement whatever the batch size."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, event, insert, select
from sqlalchemy.orm import Session

from campaigns.db import make_engine
from campaigns.prefetch import among

ITEMS = Table("items", MetaData(), Column("id", Integer, primary_key=True), Column("tag", String))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    ITEMS.create(engine)
    with engine.begin() as conn:
        conn.execute(insert(ITEMS), [{"id": i, "tag": f"t{i}'\"é"} for i in range(1, 601)])
    yield engine
    ITEMS.drop(engine)
    engine.dispose()


@pytest.mark.parametrize("size", [0, 1, 7, 500])
def test_finds_exactly_the_rows_listed(engine: Engine, size: int) -> None:
    wanted = list(range(3, 3 + 2 * size, 2))  # odd ids, some past the table's end
    with Session(engine) as session:
        ids = session.scalars(select(ITEMS.c.id).where(among(session, ITEMS.c.id, wanted)))
        tags = session.scalars(
            select(ITEMS.c.id).where(among(session, ITEMS.c.tag, [f"t{i}'\"é" for i in wanted]))
        )
        assert sorted(ids) == [i for i in wanted if i <= 600]
        assert sorted(tags) == [i for i in wanted if i <= 600]


def test_every_batch_size_runs_the_same_sql(engine: Engine) -> None:
    """One statement text per query, not one per size: SQLite's driver prepared and kept a
    statement per size on each connection, which grew a worker's memory with its batches."""
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    with Session(engine) as session:
        for size in (1, 2, 50, 499):
            session.execute(select(ITEMS.c.id).where(among(session, ITEMS.c.id, range(size))))
    selects = [sql for sql in seen if sql.startswith("SELECT")]
    assert len(selects) == 4
    assert len(set(selects)) == 1
