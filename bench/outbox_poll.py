"""Counting a benchmark's sent rows cheaply while the service is sending them.

The bench process shares the two cores (and, on SQLite, its own GIL with the fakes), so a
poll must not read every sent row ten times a second.
"""

from __future__ import annotations

from sqlalchemy import func, select

from campaigns.enums import MessageStatus
from campaigns.models import OUTBOX_PLANNED, OUTBOX_SENDING, OutboxMessage, outbox_status_in
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
    """Is a row still ``planned`` or ``sending``? An index probe in each of the two partial
    indexes that hold them (``ix_outbox_planned``, ``ix_outbox_sending``), where counting
    ``sent`` rows reads every one of them."""
    with rt.session() as session:
        return any(
            session.scalar(
                select(OutboxMessage.id)
                # ``id + 0``: SQLite, without statistics on a filling outbox, would read
                # every row from ``first_id`` on by primary key instead of the small index.
                .where(outbox_status_in(statuses), OutboxMessage.id + 0 >= first_id)
                .limit(1)
            )
            is not None
            for statuses in (OUTBOX_PLANNED, OUTBOX_SENDING)
        )
