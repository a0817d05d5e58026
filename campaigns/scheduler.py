"""The tick: claim due enrollments, let pacing decide, render and plan their messages.

Claims go by the indexed ``next_due_at``; PostgreSQL uses ``FOR UPDATE SKIP LOCKED`` so
several workers share the work, SQLite serialises ticks with ``BEGIN IMMEDIATE``. The
enrollment's row version and the outbox's unique key make a repeated tick a no-op.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns import pacing
from campaigns.claims import DueEnrollment, claim_due
from campaigns.composer import compose_step
from campaigns.dispatch_budget import REDISPATCH_AFTER, DispatchBudget
from campaigns.dispatching import budget_for, redispatch, redispatchable
from campaigns.enrollments import apply_outcomes, clock_of, pacing_state, version_facts
from campaigns.enums import Channel
from campaigns.logs import get_logger
from campaigns.models import OUTBOX_PLANNED, Enrollment, OutboxMessage, outbox_status_in
from campaigns.outbox_plan import NewMessage, Planned, plan_many
from campaigns.prefetch import latest_consents, recent_scores
from campaigns.runtime import Runtime

ACTOR = "scheduler"
log = get_logger(__name__)
#: A row pacing failed to move forward is retried after this, so one bad row cannot spin a tick.
STUCK_RETRY = timedelta(minutes=5)


@dataclass
class TickSummary:
    claimed: int = 0
    planned: list[int] = field(default_factory=list)
    redispatched: list[int] = field(default_factory=list)
    batches: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "claimed": self.claimed,
            "planned": len(self.planned),
            "redispatched": len(self.redispatched),
            "batches": self.batches,
        }


def process(
    rt: Runtime, session: Session, enrollment: DueEnrollment, *, now: datetime
) -> int | None:
    """Advance one enrollment; returns the id of the outbox row it planned, if any."""
    planned = process_batch(rt, session, [enrollment], now=now).ids
    return planned[0] if planned else None


def process_batch(
    rt: Runtime,
    session: Session,
    enrollments: Sequence[DueEnrollment],
    *,
    now: datetime,
    budget: DispatchBudget | None = None,
) -> Planned:
    """Advance a claimed batch; the outbox rows planned, and those ``budget`` handed out.

    Consents and recent scores are read once for the whole batch, the enrollments are
    written with one executemany and the outbox rows inserted with one statement: looking
    up and writing per enrollment made the tick ~8 round trips per message. Rows the budget
    admits are inserted already leased, instead of updated after the insert.
    """
    patient_ids = {e.patient_id for e in enrollments}
    consents = latest_consents(session, patient_ids)
    outcomes = [(e, _decide(rt, session, e, consents, now=now)) for e in enrollments]
    apply_outcomes(session, outcomes, actor=ACTOR, now=now)
    sending = [(e, o.send) for e, o in outcomes if o.send is not None]
    scores = recent_scores(session, {e.patient_id for e, _ in sending})
    channels = [e.patient.preferred_channel for e, _ in sending]
    leases = budget.leases(channels, now=now) if budget is not None else [None] * len(sending)
    messages = [
        _compose(rt, session, e, send, scores, lease, now=now)
        for (e, send), lease in zip(sending, leases, strict=True)
    ]
    return plan_many(session, messages, now=now)


def _decide(
    rt: Runtime,
    session: Session,
    enrollment: DueEnrollment,
    consents: Mapping[tuple[int, Channel], bool],
    *,
    now: datetime,
) -> pacing.Outcome:
    """Pacing's decision for one enrollment."""
    patient = enrollment.patient
    channel = patient.preferred_channel
    if not consents.get((patient.id, channel), False):
        return pacing.opt_out(pacing_state(enrollment), f"no {channel.value} consent")
    facts = version_facts(enrollment.version)
    outcome = pacing.advance(
        pacing_state(enrollment), facts.rules, facts.shape, clock_of(patient, rt.window), now=now
    )
    due = outcome.state.next_due_at
    if due is not None and due <= now:  # pacing did not move it forward: retry later
        outcome = replace(outcome, state=outcome.state.evolve(next_due_at=now + STUCK_RETRY))
    return outcome


def _compose(
    rt: Runtime,
    session: Session,
    enrollment: DueEnrollment,
    send: pacing.PlannedSend,
    scores: Mapping[int, list[float]],
    lease_until: datetime | None,
    *,
    now: datetime,
) -> NewMessage:
    """The message, to the patient's preferred channel: the one its lease was taken for."""
    channel = enrollment.patient.preferred_channel
    step, message = compose_step(
        rt, session, enrollment, send, channel, scores.get(enrollment.patient_id, [])
    )
    return NewMessage(
        patient_id=enrollment.patient_id,
        message=message,
        enrollment_id=enrollment.id,
        step_id=step.id,
        occurrence=send.occurrence,
        local_date=send.local_date,
        lease_until=lease_until,
    )


#: Built once: constructing the statement cost more than running it (0.5 of an idle tick's
#: 0.9 ms on PostgreSQL, bench/HISTORY.md, eighth session); it takes no parameters.
_IDLE_PROBE = select(
    select(func.min(Enrollment.next_due_at))
    .where(Enrollment.next_due_at.is_not(None))
    .scalar_subquery(),
    select(func.min(OutboxMessage.planned_at))
    .where(outbox_status_in(OUTBOX_PLANNED))
    .scalar_subquery(),
)


def idle(rt: Runtime, now: datetime) -> bool:
    """Nothing due and nothing to hand out again, found by one read that takes no lock.

    Most ticks find nothing to do; this keeps them to one round trip reading the earliest
    due time (``ix_enrollments_due``) and the oldest planned message
    (``ix_outbox_planned``), instead of a write transaction. The times are compared
    here, not in SQL, so no prepared statement's generic plan can turn the probe into a scan.
    """
    with rt.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        due, planned = conn.execute(_IDLE_PROBE).one()
    due_now = due is not None and due <= now
    stale = planned is not None and planned <= now - REDISPATCH_AFTER
    return not (due_now or stale)


def tick(
    rt: Runtime,
    *,
    now: datetime,
    batch_size: int | None = None,
    dispatch: Callable[[Sequence[int]], None] | None = None,
    budget: DispatchBudget | None = None,
) -> TickSummary:
    """One scheduler pass; each batch commits before its messages are handed to ``dispatch``.

    With ``dispatch``, only what each channel's budget allows is handed out (and leased):
    the rest waits in the database for a later tick, so the broker's queue stays bounded
    however large the backlog. ``budget`` defaults to the runtime's rates and what is
    already handed out."""
    size = batch_size or rt.settings.tick_batch_size
    summary = TickSummary()
    if idle(rt, now):
        return summary
    if dispatch is None:
        budget = None  # nothing is handed out, so nothing is leased
    elif budget is None:
        with rt.session() as session:
            budget = budget_for(rt, session, now=now)
    while True:
        with rt.session() as session:
            due = claim_due(session, now=now, limit=size)
            planned = process_batch(rt, session, due, now=now, budget=budget)
        summary.claimed += len(due)
        summary.batches += 1 if due else 0
        summary.planned += planned.ids
        if dispatch and planned.handed:
            dispatch(planned.handed)
        if len(due) < size:
            break
    with rt.session() as session:
        if budget is not None:
            summary.redispatched = redispatch(session, budget, now=now)
        else:
            summary.redispatched = list(redispatchable(session, now=now))
    if dispatch and summary.redispatched:
        dispatch(summary.redispatched)
    log.info("tick", now=now.isoformat(), **summary.as_dict())
    return summary
