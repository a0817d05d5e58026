"""Driver-level executemany on SQLite stores what SQLAlchemy's own executemany stores."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    Date,
    Integer,
    MetaData,
    String,
    Table,
    Time,
    bindparam,
    create_engine,
    insert,
    select,
    update,
)
from sqlalchemy.orm.exc import StaleDataError

from campaigns.claims import STATE_FIELDS
from campaigns.enrollments import _write_states
from campaigns.enums import Channel
from campaigns.models import Enrollment, UTCDateTime
from campaigns.runtime import Runtime
from campaigns.sqlite_bulk import PAGE, executemany, insert_returning
from tests.factories import load_program, make_enrollment

NOW = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def _table() -> Table:
    return Table(
        "t", MetaData(),
        Column("id", Integer, primary_key=True), Column("at", UTCDateTime()),
        Column("day", Date), Column("slot", Time), Column("channel", String(8)),
        Column("ok", Boolean), Column("data", JSON), Column("note", String(40)),
    )  # fmt: skip


def _rows() -> list[dict[str, Any]]:
    """Repeated and distinct timestamps (the memo), None, enums, JSON documents."""
    return [
        {"id": i, "at": NOW if i % 2 else NOW + timedelta(minutes=i), "day": NOW.date(),
         "slot": time(9, i % 60), "channel": Channel.SMS if i % 3 else "email",
         "ok": bool(i % 2), "data": {"n": i, "tags": ["a", i]} if i % 4 else None,
         "note": None if i % 5 == 0 else f"é{i}"}
        for i in range(1, 40)
    ]  # fmt: skip


def _stored_both_ways(
    tmp_path: Path, rows: list[dict[str, Any]], driver: Callable[[Connection, Table], None]
) -> dict[str, list[Any]]:
    """``rows`` written by SQLAlchemy's executemany and by ``driver`` into fresh databases;
    what each reads back, and (``.. raw``) the values as stored, not only as they read back."""
    stored: dict[str, list[Any]] = {}
    for name in ("sqlalchemy", "driver"):
        engine = create_engine(f"sqlite:///{tmp_path / name}.db")
        table = _table()
        table.metadata.create_all(engine)
        with engine.begin() as conn:
            if name == "sqlalchemy":
                conn.execute(insert(table), rows)
            else:
                driver(conn, table)
        with engine.connect() as conn:
            stored[name] = list(conn.execute(select(table).order_by(table.c.id)))
            stored[name + " raw"] = list(conn.exec_driver_sql("SELECT * FROM t ORDER BY id"))
        engine.dispose()
    assert stored["driver raw"] == stored["sqlalchemy raw"]
    assert stored["driver"] == stored["sqlalchemy"] and len(stored["driver"]) == len(rows)
    return stored


def test_inserts_store_what_sqlalchemy_stores(tmp_path: Path) -> None:
    def driver(conn: Connection, table: Table) -> None:
        values = {c.name: bindparam(c.name) for c in table.columns}
        assert executemany(conn, insert(table).values(values), _rows()).rowcount == 39

    stored = _stored_both_ways(tmp_path, _rows(), driver)
    assert stored["driver"][0].at == NOW and stored["driver"][3].data is None


def test_paged_inserts_store_what_sqlalchemy_stores_and_return_only_new_rows(
    tmp_path: Path,
) -> None:
    """Pages of 256, 128, .. 1 rows (300 rows: 256 + 32 + 8 + 4), conflicting rows skipped
    and not returned, the returned values as the driver reads them."""
    many = [{**row, "id": i} for i, row in enumerate(_rows() * 8, start=1)][:300]

    def driver(conn: Connection, table: Table) -> None:
        first = insert_returning(conn, table, many[:5], conflict=("id",), returning=("id", "note"))
        assert first == [(i, many[i - 1]["note"]) for i in range(1, 6)]
        again = insert_returning(conn, table, many, conflict=("id",), returning=("id",))
        assert sorted(again) == [(i,) for i in range(6, 301)]

    assert len(_stored_both_ways(tmp_path, many, driver)["driver"]) == 300 > PAGE


def test_updates_report_the_rows_they_changed_and_keep_constants(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'u.db'}")
    table = _table()
    table.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(table), _rows())
        change = (
            update(table)
            .where(table.c.id == bindparam("b_id"), table.c.ok.is_(True))
            .values(note=bindparam("b_note"), at=NOW + timedelta(days=1))  # a constant
        )
        params = [{"b_id": i, "b_note": f"n{i}"} for i in (1, 2, 3, 99)]
        assert executemany(conn, change, params).rowcount == 2, "ids 1 and 3 only"
        got = conn.execute(select(table.c.id, table.c.note, table.c.at).where(table.c.id <= 3))
        assert [tuple(r) for r in got] == [
            (1, "n1", NOW + timedelta(days=1)),
            (2, "é2", NOW + timedelta(minutes=2)),  # ok is False: unchanged
            (3, "n3", NOW + timedelta(days=1)),
        ]  # fmt: skip
    engine.dispose()


def test_a_stale_row_version_still_fails_the_tick_batch(rt: Runtime) -> None:
    """The tick's version-checked UPDATE counts the rows it changed on both databases."""
    _, enrollment_id = make_enrollment(rt, load_program(rt), now=NOW)
    table = cast(Table, Enrollment.__table__)
    names = ["row_version", "state", "ended_at", *STATE_FIELDS]
    with rt.session() as session:
        row = session.execute(select(*[table.c[n] for n in names]).where(
            table.c.id == enrollment_id)).one()._mapping  # fmt: skip
    params = {f"b_{n}": row[n] for n in names} | {
        "b_id": enrollment_id, "b_seen": row["row_version"], "b_row_version": row["row_version"] + 1
    }  # fmt: skip
    with pytest.raises(StaleDataError), rt.session() as session:
        _write_states(session, [params | {"b_seen": row["row_version"] - 1}])
    with rt.session() as session:
        _write_states(session, [params])
    with rt.session() as session:
        after = session.scalar(select(table.c.row_version).where(table.c.id == enrollment_id))
    assert after == row["row_version"] + 1
