"""The audit log of staff and admin actions: who, what, when, before and after."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from campaigns.models import AuditEntry, User


def audit(
    session: Session,
    user: User | None,
    action: str,
    entity: str,
    entity_id: object | None,
    *,
    now: datetime,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
) -> AuditEntry:
    entry = AuditEntry(
        at=now,
        user_id=user.id if user else None,
        actor=user.email if user else "system",
        action=action,
        entity=entity,
        entity_id=None if entity_id is None else str(entity_id),
        before=dict(before) if before is not None else None,
        after=dict(after) if after is not None else None,
    )
    session.add(entry)
    return entry
