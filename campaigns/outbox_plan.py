"""Planning: rows enter the outbox as ``planned``, each (enrollment, step, occurrence) once.

The unique key is what makes a repeated tick harmless: a step already in the outbox is never
planned twice, whether one row goes in (``plan``, a savepoint) or a tick's batch
(``plan_many``, one ``INSERT .. ON CONFLICT DO NOTHING``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from campaigns import sqlite_bulk
from campaigns.db import dialect_of, execute_plain
from campaigns.enums import MessagePurpose, MessageStatus
from campaigns.models import OutboxMessage
from campaigns.pgbulk import unnest_binds, unnest_values
from campaigns.rendering import RenderedMessage

M = MessageStatus
_OUTBOX = cast(Table, OutboxMessage.__table__)


def plan(
    session: Session,
    *,
    patient_id: int,
    message: RenderedMessage,
    purpose: MessagePurpose,
    now: datetime,
    enrollment_id: int | None = None,
    step_id: int | None = None,
    occurrence: int = 0,
    local_date: date | None = None,
) -> OutboxMessage | None:
    """Insert one planned row; returns None when that (enrollment, step, occurrence) exists."""
    row = OutboxMessage(
        patient_id=patient_id,
        enrollment_id=enrollment_id,
        step_id=step_id,
        occurrence=occurrence,
        purpose=purpose,
        channel=message.channel,
        subject=message.subject,
        body_text=message.body_text,
        body_html=message.body_html,
        status=M.PLANNED,
        planned_at=now,
        local_date=local_date,
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        return None
    return row


@dataclass(frozen=True)
class NewMessage:
    """One program message the tick wants in the outbox."""

    patient_id: int
    message: RenderedMessage
    enrollment_id: int
    step_id: int
    occurrence: int
    local_date: date | None
    #: Set when the row is handed to a send task as it is planned (``DispatchBudget.leases``).
    lease_until: datetime | None = None


@dataclass(frozen=True)
class Planned:
    """The rows a batch actually inserted, and those of them inserted with a lease."""

    ids: list[int]
    handed: list[int]


def plan_many(session: Session, messages: Sequence[NewMessage], *, now: datetime) -> Planned:
    """Insert a batch of planned rows in one statement.

    ``ON CONFLICT DO NOTHING`` on the (enrollment, step, occurrence) key is what ``plan``'s
    savepoint did per row: a step already in the outbox is never planned twice.
    """
    if not messages:
        return Planned([], [])
    rows: list[dict[str, Any]] = [
        {
            "patient_id": m.patient_id,
            "enrollment_id": m.enrollment_id,
            "step_id": m.step_id,
            "occurrence": m.occurrence,
            "purpose": MessagePurpose.PROGRAM.value,
            "channel": m.message.channel.value,
            "subject": m.message.subject,
            "body_text": m.message.body_text,
            "body_html": m.message.body_html,
            "status": M.PLANNED.value,
            "planned_at": now,
            "local_date": m.local_date,
            "attempts": 0,
            "lease_until": m.lease_until,
        }
        for m in messages
    ]
    if dialect_of(session) == "postgresql":
        inserted = [tuple(r) for r in _insert_unnest(session, rows)]
    else:
        inserted = sqlite_bulk.insert_returning(
            session.connection(), _OUTBOX, rows, conflict=_STEP_KEY, returning=_RETURNED
        )
    inserted.sort()
    return Planned(
        ids=[i for i, _ in inserted], handed=[i for i, lease in inserted if lease is not None]
    )


_STEP_KEY = ("enrollment_id", "step_id", "occurrence")
#: The columns a planned row is inserted with.
_PLANNED_COLUMNS = ("patient_id", "enrollment_id", "step_id", "occurrence", "purpose", "channel",
                    "subject", "body_text", "body_html", "status", "planned_at", "local_date",
                    "attempts", "lease_until")  # fmt: skip
_RETURNED = ("id", "lease_until")


def _insert_unnest(session: Session, rows: list[dict[str, Any]]) -> list[Row[Any]]:
    """PostgreSQL: ``INSERT .. SELECT unnest(array), ..``: one parameter per column instead
    of one per value, so psycopg does not parse a statement of thousands of placeholders."""
    return list(execute_plain(session, _INSERT_UNNEST, unnest_values(rows, _UNNESTED)).all())


_UNNESTED = {c: c for c in _PLANNED_COLUMNS}
#: Built once: a batch's rows are its parameters.
_INSERT_UNNEST = (
    postgresql.insert(_OUTBOX)
    .from_select(list(_PLANNED_COLUMNS), select(*unnest_binds(_OUTBOX, _UNNESTED).c))
    .on_conflict_do_nothing(index_elements=list(_STEP_KEY))
    .returning(*(_OUTBOX.c[c] for c in _RETURNED))
)
