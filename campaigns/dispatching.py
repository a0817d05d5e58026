"""Handing planned outbox rows to send tasks, within each channel's dispatch budget.

A row handed out gets ``lease_until``: it counts as waiting in the broker until then, and is
not handed out again before it, so a backlog draining at a rate limit is neither sent twice
nor copied into the broker tick after tick. Rows the budget leaves out stay ``planned`` in
the database, and a later tick hands them out once earlier ones have been sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.orm import Session

from campaigns.claims import in_index_order
from campaigns.dispatch_budget import REDISPATCH_AFTER, DispatchBudget, horizon_for
from campaigns.enums import Channel, MessageStatus
from campaigns.models import OUTBOX_PLANNED, OutboxMessage, outbox_status_in
from campaigns.prefetch import among
from campaigns.runtime import Runtime

M = MessageStatus
#: Most rows one tick hands out again per channel, so a tick stays short after an outage.
REDISPATCH_LIMIT = 10_000


def budget_for(rt: Runtime, session: Session, *, now: datetime) -> DispatchBudget:
    """The runtime's rates with what is already handed out and not yet sent."""
    rates = dict(rt.limiter.rates) if rt.limiter is not None else {}
    return DispatchBudget(
        rates=rates,
        horizon=horizon_for(rt.settings.tick_seconds),
        in_flight=in_flight(session, now=now),
    )


def in_flight(session: Session, *, now: datetime) -> dict[Channel, int]:
    rows = session.execute(
        select(OutboxMessage.channel, func.count())
        .where(outbox_status_in(OUTBOX_PLANNED), OutboxMessage.lease_until > now)
        .group_by(OutboxMessage.channel)
    ).all()
    return {channel: int(count) for channel, count in rows}


def redispatch(session: Session, budget: DispatchBudget, *, now: datetime) -> list[int]:
    """Planned rows whose send task was lost, deferred or never given, oldest first, as
    many per channel as the budget has room for; leased."""
    handed: list[int] = []
    for channel in Channel:
        room = budget.room(channel)
        if room < 1:
            continue
        limit = int(min(room, REDISPATCH_LIMIT))
        ids = redispatchable(session, now=now, channel=channel, limit=limit)
        handed += _lease(session, budget, channel, list(ids), now=now)
    return handed


def redispatchable(
    session: Session,
    *,
    now: datetime,
    channel: Channel | None = None,
    limit: int = REDISPATCH_LIMIT,
) -> Sequence[int]:
    """Planned at least ``REDISPATCH_AFTER`` ago and not leased to a send task now."""
    with in_index_order(session):
        return session.scalars(redispatch_query(now=now, channel=channel, limit=limit)).all()


def redispatch_query(*, now: datetime, channel: Channel | None, limit: int) -> Select[Any]:
    """Oldest first, in ``ix_outbox_planned``'s order, so a backlog planned at one
    instant is read a batch at a time instead of collected and sorted every tick."""
    query = select(OutboxMessage.id).where(
        outbox_status_in(OUTBOX_PLANNED),
        OutboxMessage.planned_at <= now - REDISPATCH_AFTER,
        or_(OutboxMessage.lease_until.is_(None), OutboxMessage.lease_until <= now),
    )
    if channel is not None:
        query = query.where(OutboxMessage.channel == channel)
    return query.order_by(OutboxMessage.planned_at, OutboxMessage.id).limit(limit)


def _lease(
    session: Session,
    budget: DispatchBudget,
    channel: Channel,
    ids: list[int],
    *,
    now: datetime,
) -> list[int]:
    count, lease_until = budget.take(channel, len(ids), now=now)
    handed = ids[:count]
    if handed:
        session.execute(
            update(OutboxMessage)
            .where(among(session, OutboxMessage.id, handed))
            .values(lease_until=lease_until)
            .execution_options(synchronize_session=False)
        )
    return handed
