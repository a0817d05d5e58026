"""The staff alert inbox: crisis and long-flare alerts, most urgent first, and their handling."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import case, select
from sqlalchemy.orm import Session

from campaigns.audit import audit
from campaigns.enums import (
    AlertKind,
    AlertPriority,
    AlertStatus,
    EnrollmentState,
)
from campaigns.models import (
    Alert,
    User,
)
from campaigns.staff import ActionRefused

S = EnrollmentState


# --- alerts --------------------------------------------------------------------------------


def alert_inbox(session: Session, status: str = "", limit: int = 200) -> list[Alert]:
    """Open first; crisis and high priority first; then long flares; newest first."""
    query = select(Alert).order_by(
        case(
            (Alert.status == AlertStatus.OPEN, 0),
            (Alert.status == AlertStatus.ACKNOWLEDGED, 1),
            else_=2,
        ),
        case((Alert.kind == AlertKind.CRISIS, 0), else_=1),
        case((Alert.priority == AlertPriority.HIGH, 0), else_=1),
        case((Alert.kind == AlertKind.LONG_FLARE, 0), else_=1),
        Alert.created_at.desc(),
        Alert.id.desc(),
    )
    if status:
        query = query.where(Alert.status == status)
    return list(session.scalars(query.limit(limit)))


_NEXT = {
    "acknowledge": (AlertStatus.ACKNOWLEDGED, {AlertStatus.OPEN}),
    "resolve": (AlertStatus.RESOLVED, {AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED}),
}


def update_alert(
    session: Session, alert: Alert, action: str, user: User, *, now: datetime
) -> Alert:
    """Acknowledge (someone is on it) or resolve (done); never back to open."""
    target, allowed = _NEXT[action]
    if alert.status not in allowed:
        raise ActionRefused(f"cannot {action} an alert that is {alert.status.value}")
    before = {"status": alert.status.value}
    alert.status = target
    audit(session, user, action, "alert", alert.id, now=now, before=before,
          after={"status": target.value})  # fmt: skip
    return alert
