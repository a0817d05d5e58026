"""Moving every live enrollment of one version onto another, with a preview first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.audit import audit
from campaigns.drafts import FINAL_STATES
from campaigns.enums import EnrollmentState
from campaigns.models import Enrollment, ProgramVersion, User
from campaigns.version_moves import landing, move


@dataclass(frozen=True)
class MigrationLanding:
    """Where one enrollment lands on the target version."""

    enrollment_id: int
    patient_id: int
    state: EnrollmentState
    main_from: int
    main_to: int
    next_key: str | None
    next_title: str | None


def plan_migration(
    session: Session, source: ProgramVersion, target: ProgramVersion
) -> list[MigrationLanding]:
    """Live enrollments of ``source``: each keeps its main position on the target."""
    if source.program_id != target.program_id or source.id == target.id:
        raise ValueError("migrate between two different versions of the same program")
    query = select(Enrollment).where(
        Enrollment.version_id == source.id, Enrollment.state.not_in(FINAL_STATES)
    )
    landings = []
    for e in session.scalars(query.order_by(Enrollment.id)):
        where = landing(e, target)
        step = where.next_step
        landings.append(
            MigrationLanding(
                e.id,
                e.patient_id,
                e.state,
                e.main_position,
                where.position,
                step.key if step else None,
                step.title if step else None,
            )
        )
    return landings


def migrate(
    session: Session,
    source: ProgramVersion,
    target: ProgramVersion,
    *,
    by: User,
    now: datetime,
) -> list[MigrationLanding]:
    """Move every live enrollment of ``source`` onto ``target``, as :func:`plan_migration` says."""
    landings = plan_migration(session, source, target)
    reason = f"moved from version {source.version} to {target.version} by {by.email}"
    for planned in landings:
        enrollment = session.get_one(Enrollment, planned.enrollment_id)
        move(session, enrollment, target, actor=by.email, reason=reason, now=now)
    session.flush()
    audit(
        session,
        by,
        "program.migrate",
        "program",
        source.program_id,
        now=now,
        before={"version": source.version},
        after={"version": target.version, "enrollments": len(landings)},
    )
    return landings
