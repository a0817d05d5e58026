"""``prefetch.among``: the rows ``IN (values)`` finds, as one statement whatever the batch size;
and the batch reads built on it see what their session has not flushed yet."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, event, insert, select
from sqlalchemy.orm import Session

from campaigns.db import make_engine
from campaigns.enums import Channel
from campaigns.models import Consent
from campaigns.prefetch import among, latest_consents
from campaigns.runtime import Runtime
from tests.factories import make_patient

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


def test_batch_reads_see_changes_the_session_has_not_flushed(rt: Runtime) -> None:
    """The batch reads run as plain Core rows (``db.execute_plain``), which would skip the
    ORM's autoflush: a consent recorded earlier in the same transaction must still count."""
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    patient_id = make_patient(rt, now=now, consent=False)
    with rt.session() as session:
        assert latest_consents(session, {patient_id}) == {}  # never asked
        session.add(
            Consent(
                patient_id=patient_id,
                channel=Channel.SMS,
                granted=True,
                method="web form",
                recorded_by="test",
                at=now,
            )
        )
        assert latest_consents(session, {patient_id}) == {(patient_id, Channel.SMS): True}
