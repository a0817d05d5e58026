"""Per-batch lookups for the tick and the send path: one query per batch, not per message.

The tick and ``deliver_batch`` used to ask the database for each message's consent, recent
pain scores and SMS segment limit; these ask once for a whole batch with ``IN (...)`` and
give the same answers as the one-row lookups (``patients.has_consent``,
``reply_queries.recent_scores``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Executable,
    Row,
    Select,
    String,
    any_,
    bindparam,
    func,
    select,
)
from sqlalchemy.orm import InstrumentedAttribute, Session

from campaigns.db import dialect_of, execute_plain
from campaigns.enums import Channel
from campaigns.models import Consent, PainReport, ProgramStep, ProgramVersion
from campaigns.pgbulk import array_bind, array_param, array_values

T = TypeVar("T")

#: How many recent scores a message's trend looks at.
TREND_SCORES = 20


def among(
    session: Session,
    column: ColumnElement[T] | InstrumentedAttribute[T],
    values: Collection[T],
) -> ColumnElement[bool]:
    """``column IN (values)`` with one parameter whatever the batch size: ``= ANY(array)`` on
    PostgreSQL, ``IN (SELECT value FROM json_each(?))`` on SQLite. With a placeholder per value
    every batch size is another statement: psycopg re-parses it, and SQLite's driver prepares
    and caches one per size on each connection, ~0.1 MB of C memory each at a tick's batch
    sizes: ~12 MB of a worker's memory once its cache of 128 was full."""
    if dialect_of(session) == "postgresql":
        return column == any_(array_param(None, values, column.type))
    return _in_json_list(column, bindparam(None, json.dumps(list(values)), type_=String()))


def among_param(
    dialect: str, column: ColumnElement[T] | InstrumentedAttribute[T], name: str
) -> ColumnElement[bool]:
    """``among`` with a named parameter and no values, for a statement built once per
    dialect; execute it with ``{name: among_values(dialect, values)}``. Building a batch's
    statement and its cache key cost as much as running it (bench/HISTORY.md, eighth
    session)."""
    if dialect == "postgresql":
        return column == any_(array_bind(name, column.type))
    return _in_json_list(column, bindparam(name, type_=String()))


def _in_json_list(
    column: ColumnElement[T] | InstrumentedAttribute[T], listed: BindParameter[str]
) -> ColumnElement[bool]:
    """SQLite: ``column IN (SELECT value FROM json_each(listed))``."""
    return column.in_(select(func.json_each(listed).table_valued("value").c.value))


def among_values(dialect: str, values: Collection[Any]) -> Any:
    return array_values(values) if dialect == "postgresql" else json.dumps(list(values))


def execute_among(
    session: Session,
    statement_for: Callable[[str], Executable],
    ids: Collection[Any],
    **params: Any,
) -> Sequence[Row[Any]]:
    """Run the statement ``statement_for`` builds once per dialect around
    ``among_param(dialect, column, "ids")``, with ``ids`` as that list and ``params`` as its
    other values, as plain rows (``db.execute_plain``), all fetched at once: iterating the
    result instead fetches row by row through three layers of SQLAlchemy, ~1.3 µs more per
    row, and the send path reads ~7 rows per message (bench/HISTORY.md, fourteenth session)."""
    dialect = dialect_of(session)
    values = {"ids": among_values(dialect, ids), **params}
    return execute_plain(session, statement_for(dialect), values).all()


def latest_consents(
    session: Session, patient_ids: Collection[int]
) -> dict[tuple[int, Channel], bool]:
    """(patient, channel) -> granted, from the newest consent row; absent means no consent."""
    if not patient_ids:
        return {}
    rows = execute_among(session, _consents, patient_ids)
    return {(pid, channel): bool(granted) for pid, channel, granted in rows}


@cache
def _consents(dialect: str) -> Select[tuple[int, Channel, bool]]:
    return (
        select(Consent.patient_id, Consent.channel, Consent.granted)
        .where(among_param(dialect, Consent.patient_id, "ids"))
        .order_by(Consent.id)
    )


def recent_scores(
    session: Session, patient_ids: Collection[int], limit: int = TREND_SCORES
) -> dict[int, list[float]]:
    """patient -> its newest ``limit`` pain scores, oldest first (a window function keeps the
    result to ``limit`` rows per patient however long their history)."""
    if not patient_ids:
        return {}
    rank = (
        func.row_number()
        .over(
            partition_by=PainReport.patient_id,
            order_by=(PainReport.reported_at.desc(), PainReport.id.desc()),
        )
        .label("rank")
    )
    ranked = (
        select(PainReport.patient_id, PainReport.score, PainReport.reported_at, PainReport.id, rank)
        .where(among(session, PainReport.patient_id, patient_ids))
        .subquery()
    )
    rows = execute_plain(
        session,
        select(ranked.c.patient_id, ranked.c.score)
        .where(ranked.c.rank <= limit)
        .order_by(ranked.c.patient_id, ranked.c.reported_at, ranked.c.id),
    ).all()
    scores: dict[int, list[float]] = {}
    for pid, score in rows:
        scores.setdefault(pid, []).append(score)
    return scores


def segment_limits(session: Session, step_ids: Collection[int]) -> dict[int, int]:
    """step -> the SMS segment limit of its program version."""
    if not step_ids:
        return {}
    rows = execute_among(session, _segment_limits, step_ids)
    return {step_id: limit for step_id, limit in rows}


@cache
def _segment_limits(dialect: str) -> Select[tuple[int, int]]:
    return (
        select(ProgramStep.id, ProgramVersion.sms_max_segments)
        .join(ProgramVersion, ProgramStep.version_id == ProgramVersion.id)
        .where(among_param(dialect, ProgramStep.id, "ids"))
    )
