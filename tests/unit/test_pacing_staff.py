"""Staff pause and resume: pure transitions that mirror the patient's PAUSE/RESUME."""

from __future__ import annotations

from datetime import UTC, datetime

from campaigns import pacing
from campaigns.enums import EnrollmentState as S

NOW = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)


def test_pause_holds_an_active_enrollment_and_clears_due_time() -> None:
    out = pacing.pause(pacing.PacingState(next_due_at=NOW), "staff: holiday")
    assert out.state.state == S.PAUSED
    assert out.state.paused_from == S.ACTIVE
    assert out.state.next_due_at is None
    assert [(e.kind, e.from_state, e.to_state) for e in out.events] == [
        ("pause", S.ACTIVE, S.PAUSED)
    ]


def test_resume_returns_to_the_flare_the_pause_interrupted() -> None:
    paused = pacing.pause(pacing.PacingState(state=S.FLARE), "staff").state
    out = pacing.resume(paused, "staff: back", now=NOW)
    assert out.state.state == S.FLARE
    assert out.state.paused_from is None
    assert out.state.next_due_at == NOW
    assert out.events[0].to_state == S.FLARE


def test_pause_and_resume_are_no_ops_where_they_do_not_apply() -> None:
    for state in (S.PAUSED, S.COMPLETED, S.WITHDRAWN, S.OPTED_OUT):
        assert pacing.pause(pacing.PacingState(state=state), "x").events == ()
    for state in (S.ACTIVE, S.FLARE, S.COMPLETED, S.WITHDRAWN, S.OPTED_OUT):
        out = pacing.resume(pacing.PacingState(state=state), "x", now=NOW)
        assert out.events == () and out.state.state == state
