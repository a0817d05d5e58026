"""Everything stored about one patient, as JSON: for data-subject requests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from campaigns.audit import audit
from campaigns.enums import (
    EnrollmentState,
)
from campaigns.models import (
    Alert,
    Consent,
    Enrollment,
    Event,
    InboundReply,
    OutboxMessage,
    PainReport,
    Patient,
    User,
)

S = EnrollmentState


# --- data-subject export -------------------------------------------------------------------


def _row(obj: Any) -> dict[str, Any]:
    """Every mapped column of a row, decrypted, as JSON-ready values; lookup hashes are
    derived from the contacts and mean nothing to the patient."""
    out: dict[str, Any] = {}
    for attr in inspect(obj).mapper.column_attrs:
        if attr.key.endswith("_hash"):
            continue
        value = getattr(obj, attr.key)
        out[attr.key] = value.isoformat() if hasattr(value, "isoformat") else value
    return out


def export_patient(
    session: Session, patient: Patient, user: User | None, *, now: datetime
) -> dict[str, Any]:
    """Everything stored about one patient, for a data-subject request; the export is audited."""

    def rows(model: Any, order: Any) -> list[dict[str, Any]]:
        query = select(model).where(model.patient_id == patient.id).order_by(order)
        return [_row(r) for r in session.scalars(query)]

    data = {
        "exported_at": now.isoformat(),
        "patient": _row(patient),
        "consents": rows(Consent, Consent.id),
        "enrollments": rows(Enrollment, Enrollment.id),
        "outbox": rows(OutboxMessage, OutboxMessage.id),
        "replies": rows(InboundReply, InboundReply.id),
        "pain_reports": rows(PainReport, PainReport.id),
        "events": rows(Event, Event.id),
        "alerts": rows(Alert, Alert.id),
    }
    counts = {k: len(v) for k, v in data.items() if isinstance(v, list)}
    audit(session, user, "export", "patient", patient.id, now=now, before=None, after=counts)
    return data
