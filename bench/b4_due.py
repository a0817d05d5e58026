"""B4's rows falling due: at one moment (a burst) or one after another (steady arrival)."""

from __future__ import annotations

from datetime import datetime, timedelta
from datetime import time as dtime
from typing import cast

from sqlalchemy import Table, bindparam, update

from campaigns.models import Enrollment, Patient
from campaigns.runtime import Runtime


def noon_zone(now: datetime) -> str:
    """An IANA zone where it is about midday now, so every send window is open."""
    offset = (12 - now.hour + 12) % 24 - 12
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


def make_due(
    rt: Runtime, first: int, count: int, *, at: datetime, every_s: float | None = None
) -> None:
    """Enrollments ``first .. first+count-1`` fall due at ``at`` (or one after another from
    it, ``every_s`` seconds apart), their patients at noon."""
    last = first + count - 1
    with rt.session() as session:
        session.execute(
            update(Patient)
            .where(Patient.id.between(first, last))
            .values(timezone=noon_zone(at), send_time=dtime(9, 0))
        )
        if every_s is None:
            session.execute(
                update(Enrollment).where(Enrollment.id.between(first, last)).values(next_due_at=at)
            )
            return
        table = cast(Table, Enrollment.__table__)
        change = update(table).where(table.c.id == bindparam("eid"))
        due = [{"eid": first + i, "due": at + timedelta(seconds=i * every_s)} for i in range(count)]
        session.execute(change.values(next_due_at=bindparam("due")), due)
