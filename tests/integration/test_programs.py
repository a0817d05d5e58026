"""Program folders: validation that names file, line and problem; immutable versions."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from campaigns.enums import StepKind, Track
from campaigns.models import OutboxMessage, ProgramVersion
from campaigns.programs import ProgramError, load_folder
from campaigns.runtime import Runtime
from campaigns.scheduler import tick
from tests.conftest import REPO
from tests.factories import MINI, load_program, make_enrollment

TEMPLATES = REPO / "templates"
BUNDLED = TEMPLATES / "programs" / "retrain-the-alarm"


@pytest.fixture
def mini(tmp_path: Path) -> Path:
    return Path(shutil.copytree(MINI, tmp_path / "mini"))


def _problems(folder: Path) -> str:
    with pytest.raises(ProgramError) as info:
        load_folder(folder, TEMPLATES)
    return str(info.value)


def test_bundled_program_is_six_weeks_with_a_flare_track() -> None:
    loaded = load_folder(BUNDLED, TEMPLATES)
    main = loaded.spec.ordered(Track.MAIN)
    flare = [s for s in loaded.spec.ordered(Track.FLARE) if s.kind == StepKind.FLARE_SUPPORT]
    assert [s.day for s in main] == list(range(1, 43))
    assert len(flare) >= 7
    assert loaded.spec.ordered(Track.FLARE)[-1].kind == StepKind.RESUME
    assert {s.kind for s in main} >= {
        StepKind.EDUCATION,
        StepKind.JOURNAL,
        StepKind.MOVEMENT,
        StepKind.CHECK_IN,
    }


def test_syntax_error_names_file_and_line(mini: Path) -> None:
    path = mini / "steps" / "d2-write" / "email.txt.j2"
    path.write_text("Hello\n\n{% if patient.first_name %}\nno endif here\n")
    message = _problems(mini)
    assert "steps/d2-write/email.txt.j2:" in message
    assert "endif" in message or "end of template" in message


def test_undefined_variable_names_file_and_line(mini: Path) -> None:
    path = mini / "steps" / "d3-move" / "sms.txt.j2"
    path.write_text("Hi {{ patient.first_name }}\n{{ patient.surname }} reply 0-10\n")
    message = _problems(mini)
    assert "steps/d3-move/sms.txt.j2:2" in message
    assert "surname" in message


def test_sandbox_violation_is_refused(mini: Path) -> None:
    path = mini / "steps" / "d1-hello" / "sms.txt.j2"
    path.write_text("{% set xs = [] %}{{ xs.append(1) }} hi\n")
    message = _problems(mini)
    assert "steps/d1-hello/sms.txt.j2" in message
    assert "SecurityError" in message


def test_sms_longer_than_the_segment_limit_is_refused(mini: Path) -> None:
    path = mini / "steps" / "d4-check" / "sms.txt.j2"
    path.write_text("Hi {{ patient.first_name }} 🙂 " + "so much text " * 20)
    message = _problems(mini)
    assert "steps/d4-check/sms.txt.j2" in message
    assert "UCS-2" in message and "limit is 2" in message


def test_missing_template_and_bad_yaml_field_are_named(mini: Path) -> None:
    (mini / "steps" / "f2-track" / "subject.txt.j2").unlink()
    assert "steps/f2-track/subject.txt.j2: template missing" in _problems(mini)
    spec = mini / "program.yaml"
    spec.write_text(spec.read_text().replace("kind: journal", "kind: poetry"))
    assert "steps.1.kind" in _problems(mini)


def test_unknown_pacing_rule_is_refused(mini: Path) -> None:
    spec = mini / "program.yaml"
    spec.write_text(spec.read_text().replace("pacing:\n", "pacing:\n  flare_treshold: 7\n"))
    assert "flare_treshold" in _problems(mini)


def test_loading_an_unchanged_folder_keeps_the_version(rt: Runtime) -> None:
    assert load_program(rt) == load_program(rt)


def test_enrolled_patients_keep_their_version_after_a_new_one_is_published(
    rt: Runtime, mini: Path
) -> None:
    now = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
    v1 = load_program(rt, mini)
    make_enrollment(rt, v1, now=now)
    (mini / "steps" / "d1-hello" / "sms.txt.j2").write_text(
        "Brand new text {{ patient.first_name }}"
    )
    v2 = load_program(rt, mini)
    assert v2 != v1
    make_enrollment(rt, v2, now=now)
    tick(rt, now=now + timedelta(hours=10))
    with rt.session() as session:
        bodies = {
            row.enrollment_id: row.body_text for row in session.scalars(select(OutboxMessage))
        }
        versions = session.scalars(select(ProgramVersion.version).order_by(ProgramVersion.id)).all()
    assert versions == [1, 2]
    first, second = sorted(bodies)
    assert "mini step d1-hello" in bodies[first]
    assert bodies[second].startswith("Brand new text")


def test_published_versions_and_the_event_log_cannot_be_rewritten(rt: Runtime) -> None:
    from campaigns.models import Event, ImmutableRowError, ProgramStep

    version_id = load_program(rt)
    make_enrollment(rt, version_id, now=datetime(2026, 3, 2, tzinfo=UTC))
    with pytest.raises(ImmutableRowError), rt.session() as session:
        session.get_one(ProgramVersion, version_id).cadence_days = 3
    with pytest.raises(ImmutableRowError), rt.session() as session:
        step = session.scalars(select(ProgramStep)).first()
        assert step is not None
        step.title = "rewritten"
    with pytest.raises(ImmutableRowError), rt.session() as session:
        event = session.scalars(select(Event)).first()
        assert event is not None
        session.delete(event)
