"""Data-subject requests and retention: erase a patient, expire old raw reply text.

Erasure removes the patient and everything that hangs off them (the foreign keys cascade),
and leaves one audit entry that says it happened without saying who it was about beyond the
id. Retention keeps what a reply meant (score, keywords, flare, crisis) and drops its words.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from campaigns.audit import audit
from campaigns.models import InboundReply, Patient, User

EXPIRED_TEXT = ""


def purge_patient(session: Session, patient_id: int, *, by: User | None, now: datetime) -> bool:
    """Erase a patient and all their rows; returns False when there was no such patient."""
    if session.get(Patient, patient_id) is None:
        return False
    session.expunge_all()  # rows are deleted in SQL: no stale objects may be flushed after
    session.execute(delete(Patient).where(Patient.id == patient_id))
    audit(session, by, "purge", "patient", patient_id, now=now, before={"patient_id": patient_id})
    return True


def expire_reply_text(session: Session, *, now: datetime, keep_days: int) -> int:
    """Blank the raw text of replies older than ``keep_days``; returns how many."""
    cutoff = now - timedelta(days=keep_days)
    result = session.execute(
        update(InboundReply)
        .where(InboundReply.received_at < cutoff, InboundReply.raw_text != EXPIRED_TEXT)
        .values(raw_text=EXPIRED_TEXT)
    )
    return int(getattr(result, "rowcount", 0))
