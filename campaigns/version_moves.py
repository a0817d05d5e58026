"""Moving an enrollment to another version of its program, for staff and for admins.

One rule for both: the patient keeps their place on the main track. A place past the end of
the new version means everything there was already covered, so the program completes; it is
never clamped back onto a step, which would send the patient something a second time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from campaigns.enrollments import record
from campaigns.enums import Track
from campaigns.models import Enrollment, ProgramStep, ProgramVersion
from campaigns.pacing import PacingEvent


@dataclass(frozen=True)
class Landing:
    """Where an enrollment lands: the next main step it will get there, if any."""

    position: int
    main_steps: int
    next_step: ProgramStep | None

    @property
    def completes(self) -> bool:
        return self.next_step is None


def landing(enrollment: Enrollment, target: ProgramVersion) -> Landing:
    main = sorted((s for s in target.steps if s.track == Track.MAIN), key=lambda s: s.position)
    position = min(enrollment.main_position, len(main))
    return Landing(position, len(main), main[position] if position < len(main) else None)


def move(
    session: Session,
    enrollment: Enrollment,
    target: ProgramVersion,
    *,
    actor: str,
    reason: str,
    now: datetime,
) -> Landing:
    """Re-point the enrollment; its next slot stays, and plans from the new version."""
    if target.program_id != enrollment.version.program_id or target.id == enrollment.version_id:
        raise ValueError("move to another version of the same program")
    where = landing(enrollment, target)
    source = enrollment.version.version
    flare_steps = sum(1 for s in target.steps if s.track == Track.FLARE)
    enrollment.version = target
    enrollment.version_id = target.id
    enrollment.main_position = where.position
    enrollment.flare_position = min(enrollment.flare_position, max(flare_steps - 1, 0))
    if enrollment.state.receives_program and enrollment.next_due_at is None:
        enrollment.next_due_at = now  # keep an existing slot: moving must not send early
    data = {"from": source, "to": target.version, "main_position": where.position}
    record(
        session, enrollment, [PacingEvent("version-move", reason, data=data)], actor=actor, now=now
    )
    return where
