"""``enrollments.step_for``: remembered per version, yet never blind to a step added later."""

from __future__ import annotations

import pytest

from campaigns.enrollments import step_for
from campaigns.enums import StepKind, Track
from campaigns.models import ProgramStep, ProgramVersion


def _step(track: Track, position: int) -> ProgramStep:
    return ProgramStep(
        key=f"{track.value}-{position}",
        track=track,
        position=position,
        day=position + 1 if track == Track.MAIN else None,
        kind=StepKind.EDUCATION,
        title="t",
    )


def test_finds_each_step_by_track_and_position() -> None:
    version = ProgramVersion(id=1, steps=[_step(Track.MAIN, 0), _step(Track.MAIN, 1)])
    version.steps.append(_step(Track.FLARE, 0))
    assert step_for(version, Track.MAIN, 1).key == "main-1"
    assert step_for(version, Track.FLARE, 0).key == "flare-0"
    with pytest.raises(LookupError, match="version 1 has no flare step at 1"):
        step_for(version, Track.FLARE, 1)


def test_a_step_added_after_a_lookup_is_found() -> None:
    """A version being built is looked up before its last steps exist (publishing)."""
    version = ProgramVersion(id=2, steps=[_step(Track.MAIN, 0)])
    assert step_for(version, Track.MAIN, 0).key == "main-0"
    version.steps.append(_step(Track.MAIN, 1))
    assert step_for(version, Track.MAIN, 1).key == "main-1"
