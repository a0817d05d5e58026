"""``outbox_plan.plan_many``: each new (enrollment, step, occurrence) stored once, whatever
the batch sizes, in a bounded number of distinct statements."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import event, func, select

from campaigns.enums import Channel
from campaigns.models import OutboxMessage, ProgramStep
from campaigns.outbox_plan import NewMessage, Planned, plan_many
from campaigns.rendering import RenderedMessage
from campaigns.runtime import Runtime
from campaigns.sqlite_bulk import PAGE
from tests.factories import load_program, make_enrollment

NOW = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)
SIZES = [*range(1, 14), 300]


def _enrolled(rt: Runtime) -> tuple[int, int, int]:
    """A patient, their enrollment and the program's first step."""
    version_id = load_program(rt)
    patient_id, enrollment_id = make_enrollment(rt, version_id, now=NOW)
    with rt.session() as session:
        step_id = session.scalars(
            select(ProgramStep.id).where(ProgramStep.version_id == version_id)
        ).first()
    assert step_id is not None
    return patient_id, enrollment_id, step_id


def test_batches_of_every_size_store_each_new_row_once(rt: Runtime) -> None:
    patient_id, enrollment_id, step_id = _enrolled(rt)
    message = RenderedMessage(Channel.SMS, "Notice the sensation with curiosity, Ana. ✨")

    def batch(first: int, n: int) -> list[NewMessage]:
        return [
            NewMessage(patient_id, message, enrollment_id, step_id, occurrence, None)
            for occurrence in range(first, first + n)
        ]

    inserts: list[str] = []

    def seen(*args: object) -> None:
        if str(args[2]).startswith("INSERT INTO outbox"):
            inserts.append(str(args[2]))

    event.listen(rt.engine, "before_cursor_execute", seen)
    with rt.session() as session:
        plan_many(session, batch(0, 2), now=NOW)
    first, planned = 2, []
    for n in SIZES:
        with rt.session() as session:
            # the batch again, with two rows already stored: only the new ones come back
            planned.append(plan_many(session, batch(first - 2, n + 2), now=NOW))
        first += n
    event.remove(rt.engine, "before_cursor_execute", seen)

    assert [len(p.ids) for p in planned] == SIZES
    assert all(p.handed == [] for p in planned)  # no lease given, none handed out
    with rt.session() as session:
        stored = session.scalars(select(OutboxMessage.occurrence).order_by(OutboxMessage.id))
        assert list(stored) == list(range(first))
        assert session.scalar(select(func.count(func.distinct(OutboxMessage.id)))) == first
    if rt.engine.dialect.name == "sqlite":
        # one statement text per page size (1, 2, 4, .. 256), not one per batch size
        assert len(set(inserts)) <= PAGE.bit_length() < len(SIZES)


def test_rows_planned_with_a_lease_are_the_ones_handed_out(rt: Runtime) -> None:
    """The tick inserts the rows its budget admits already leased: those come back as handed
    out, the rest stay unleased, and a row already stored is neither planned nor handed."""
    patient_id, enrollment_id, step_id = _enrolled(rt)
    lease = NOW + timedelta(minutes=3)
    message = RenderedMessage(Channel.SMS, "Notice the sensation with curiosity.")

    def new(occurrence: int, lease_until: datetime | None) -> NewMessage:
        return NewMessage(
            patient_id, message, enrollment_id, step_id, occurrence, None, lease_until
        )

    with rt.session() as session:
        first = plan_many(session, [new(0, lease)], now=NOW)
    with rt.session() as session:
        again = plan_many(session, [new(0, lease), new(1, None), new(2, lease)], now=NOW)
    assert len(first.ids) == 1 and first.handed == first.ids
    assert len(again.ids) == 2 and first.ids[0] not in again.ids
    with rt.session() as session:
        rows = session.execute(
            select(OutboxMessage.occurrence, OutboxMessage.id, OutboxMessage.lease_until).where(
                OutboxMessage.id.in_(again.ids)
            )
        ).tuples()
        stored = {
            occurrence: (outbox_id, lease_until) for occurrence, outbox_id, lease_until in rows
        }
    assert stored[1][1] is None and stored[2][1] == lease
    assert again == Planned(ids=sorted([stored[1][0], stored[2][0]]), handed=[stored[2][0]])
