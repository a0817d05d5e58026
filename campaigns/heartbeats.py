"""Signs of life from periodic jobs, stored in the database every process can see."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.models import Heartbeat

TICK = "tick"


def beat(session: Session, name: str, *, now: datetime, **data: Any) -> None:
    row = session.get(Heartbeat, name)
    if row is None:
        session.add(Heartbeat(name=name, at=now, data=dict(data)))
        return
    row.at, row.data = now, dict(data)


def last_beat(session: Session, name: str) -> Heartbeat | None:
    return session.scalar(select(Heartbeat).where(Heartbeat.name == name))
