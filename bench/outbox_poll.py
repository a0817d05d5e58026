"""Counting a benchmark's sent rows cheaply while the service is sending them.

The bench process shares the two cores (and, on SQLite, its own GIL with the fakes), so a
poll must not read every sent row ten times a second.
"""

from __future__ import annotations

from sqlalchemy import func, select

from campaigns.enums import MessageStatus
from campaigns.models import OutboxMessage
from campaigns.runtime import Runtime


def sent_count(rt: Runtime, first_id: int = 0) -> int:
    with rt.session() as session:
        return int(
            session.scalar(
                select(func.count()).where(
                    OutboxMessage.status == MessageStatus.SENT, OutboxMessage.id >= first_id
                )
            )
            or 0
        )


def any_unsent(rt: Runtime, first_id: int = 0) -> bool:
    """Is a row still ``planned`` or ``sending``? One index probe (``ix_outbox_status_planned``),
    where counting ``sent`` rows reads every one of them."""
    with rt.session() as session:
        found = session.scalar(
            select(OutboxMessage.id)
            .where(
                OutboxMessage.status.in_([MessageStatus.PLANNED, MessageStatus.SENDING]),
                OutboxMessage.id >= first_id,
            )
            .limit(1)
        )
    return found is not None
