"""Drafts: editing, validating, previewing, publishing, diffing and migrating programs."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from campaigns import draft_preview, drafts, version_diff, version_migration, whatif
from campaigns.enrollments import rules_of, shape_of
from campaigns.enums import EnrollmentState, StepKind, Track
from campaigns.models import Enrollment, Event, OutboxMessage, Program, ProgramDraft, User
from campaigns.runtime import Runtime
from campaigns.scheduler import tick
from tests.factories import load_program, make_enrollment
from tests.web_support import make_user

NOW = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)  # Monday, 00:00 in New York
SMS = "steps/d1-hello/sms.txt.j2"


def _admin(rt: Runtime) -> int:
    from campaigns.enums import Role

    return make_user(rt, "admin@clinic.example", role=Role.ADMIN).id


def _draft(rt: Runtime, admin_id: int) -> None:
    with rt.session() as session:
        program = drafts.get_program(session, "mini")
        drafts.open_draft(session, program, by=session.get_one(User, admin_id), now=NOW)


def _edit(rt: Runtime, admin_id: int, key: str, **sources: str) -> None:
    with rt.session() as session:
        program = drafts.get_program(session, "mini")
        user = session.get_one(User, admin_id)
        draft = drafts.open_draft(session, program, by=user, now=NOW)
        drafts.save_template(session, draft, key, sources, by=user, now=NOW)


def _publish(rt: Runtime, admin_id: int) -> int:
    with rt.session() as session:
        program = drafts.get_program(session, "mini")
        version, created = drafts.publish(
            session, program, by=session.get_one(User, admin_id), now=NOW
        )
        assert created
        return version.version


def test_draft_opens_from_the_latest_version_and_round_trips_the_spec(rt: Runtime) -> None:
    load_program(rt)
    admin = _admin(rt)
    _draft(rt, admin)
    _draft(rt, admin)  # kept, not re-opened
    with rt.session() as session:
        assert len(session.scalars(select(ProgramDraft)).all()) == 1
        draft = session.scalars(select(ProgramDraft)).one()
        spec = drafts.spec_of(draft)
        assert spec.ordered(Track.MAIN)[0].key == "d1-hello"
        assert drafts.validate_draft(draft) == []


def test_publishing_makes_a_new_version_while_enrolled_patients_keep_theirs(rt: Runtime) -> None:
    v1 = load_program(rt)
    admin = _admin(rt)
    _, enrollment_id = make_enrollment(rt, v1, now=NOW)
    _edit(rt, admin, "d1-hello", **{"sms.txt.j2": "Brand new words for {{ patient.first_name }}."})
    assert _publish(rt, admin) == 2
    with rt.session() as session:
        assert session.scalars(select(ProgramDraft)).all() == []
    tick(rt, now=NOW + timedelta(hours=10))
    with rt.session() as session:
        body = session.scalars(select(OutboxMessage.body_text)).one()
        assert session.get_one(Enrollment, enrollment_id).version_id == v1
    assert "mini step d1-hello" in body and "Brand new" not in body


def test_a_template_error_is_refused_with_file_and_line(rt: Runtime) -> None:
    load_program(rt)
    admin = _admin(rt)
    _draft(rt, admin)
    with pytest.raises(drafts.DraftError) as syntax:
        _edit(rt, admin, "d1-hello", **{"sms.txt.j2": "Hi\nthere {{ patient.first_name }\n"})
    assert (syntax.value.problems[0].file, syntax.value.problems[0].line) == (SMS, 2)
    with pytest.raises(drafts.DraftError) as undefined:
        _edit(rt, admin, "d1-hello", **{"sms.txt.j2": "Hi\n\n{{ patient.nickname }}"})
    assert undefined.value.problems[0].file == SMS
    assert undefined.value.problems[0].line == 3
    with pytest.raises(drafts.DraftError) as sandbox:
        _edit(rt, admin, "d1-hello", **{"sms.txt.j2": "{{ patient.__class__.__mro__ }}"})
    assert "unsafe" in sandbox.value.problems[0].message or "Security" in str(sandbox.value)
    with pytest.raises(drafts.DraftError) as too_long:
        _edit(rt, admin, "d1-hello", **{"sms.txt.j2": "word " * 80})
    assert "segments" in too_long.value.problems[0].message
    with rt.session() as session:
        draft = session.scalars(select(ProgramDraft)).one()
        assert "mini step d1-hello" in draft.files[SMS]  # nothing was saved


def test_preview_renders_unsaved_text_with_segments_and_problems(rt: Runtime) -> None:
    load_program(rt)
    admin = _admin(rt)
    _draft(rt, admin)
    with rt.session() as session:
        draft = session.scalars(select(ProgramDraft)).one()
        good = draft_preview.preview_step(
            draft, "d1-hello", {"sms.txt.j2": "Hi {{ patient.first_name }} 😊"}
        )
        bad = draft_preview.preview_step(draft, "d1-hello", {"sms.txt.j2": "{{ nope }}"})
    assert good.sms == "Hi Alexandria 😊"
    assert good.segments is not None and good.segments.encoding == "UCS-2"
    assert good.subject and good.email_html and "<p>" in good.email_html
    assert good.problems == []
    assert bad.sms is None and bad.problems[0].file == SMS


def test_add_move_remove_steps_and_edit_pacing(rt: Runtime) -> None:
    load_program(rt)
    admin = _admin(rt)
    _draft(rt, admin)
    with rt.session() as session:
        user = session.get_one(User, admin)
        draft = session.scalars(select(ProgramDraft)).one()
        drafts.add_step(
            session,
            draft,
            key="d5-extra",
            track=Track.MAIN,
            kind=StepKind.EDUCATION,
            title="Extra",
            day=5,
            by=user,
            now=NOW,
        )
        drafts.add_step(
            session,
            draft,
            key="f4-more",
            track=Track.FLARE,
            kind=StepKind.FLARE_SUPPORT,
            title="More",
            day=None,
            by=user,
            now=NOW,
        )
        spec = drafts.spec_of(draft)
        assert [s.key for s in spec.ordered(Track.FLARE)][-2:] == ["f4-more", "resume"]
        assert drafts.validate_draft(draft) == []
        drafts.move_step(session, draft, "d5-extra", -1, by=user, now=NOW)
        main = drafts.spec_of(draft).ordered(Track.MAIN)
        assert [(s.key, s.day) for s in main][-2:] == [("d5-extra", 4), ("d4-check", 5)]
        drafts.remove_step(session, draft, "d2-write", by=user, now=NOW)
        assert not any(p.startswith("steps/d2-write/") for p in draft.files)
        with pytest.raises(drafts.DraftError):
            drafts.add_step(
                session,
                draft,
                key="d1-hello",
                track=Track.MAIN,
                kind=StepKind.EDUCATION,
                title="Dupe",
                day=9,
                by=user,
                now=NOW,
            )
        with pytest.raises(drafts.DraftError):
            drafts.set_pacing(
                session, draft, {"flare_score_threshold": 42}, cadence_days=1, by=user, now=NOW
            )
        drafts.set_pacing(
            session, draft, {"flare_cadence_days": 3}, cadence_days=2, by=user, now=NOW
        )
        assert drafts.spec_of(draft).rules().flare_cadence_days == 3
        assert drafts.validate_draft(draft) == []
    assert _publish(rt, admin) == 2


def test_diff_shows_the_changed_line(rt: Runtime) -> None:
    load_program(rt)
    admin = _admin(rt)
    _edit(rt, admin, "d1-hello", **{"sms.txt.j2": "Changed line for {{ patient.first_name }}."})
    _publish(rt, admin)
    with rt.session() as session:
        program = drafts.get_program(session, "mini")
        a, b = drafts.get_version(session, program, 1), drafts.get_version(session, program, 2)
        diff = version_diff.diff_versions(a, b)
    assert [d.name for d in diff] == [SMS]
    assert "+Changed line for {{ patient.first_name }}." in diff[0].lines


def test_migration_keeps_position_and_never_resends_a_covered_step(rt: Runtime) -> None:
    v1 = load_program(rt)
    admin = _admin(rt)
    _, enrollment_id = make_enrollment(rt, v1, now=NOW)
    with rt.session() as session:
        session.get_one(Enrollment, enrollment_id).main_position = 3
    with rt.session() as session:
        user = session.get_one(User, admin)
        draft = drafts.open_draft(session, drafts.get_program(session, "mini"), by=user, now=NOW)
        drafts.remove_step(session, draft, "d4-check", by=user, now=NOW)
        drafts.remove_step(session, draft, "d3-move", by=user, now=NOW)
    _publish(rt, admin)
    with rt.session() as session:
        program = session.scalars(select(Program)).one()
        source, target = (drafts.get_version(session, program, n) for n in (1, 2))
        plan = version_migration.plan_migration(session, source, target)
        # steps 0-2 were sent; the new version has only 2 main steps: nothing is left to send
        assert [(p.main_from, p.main_to, p.next_key) for p in plan] == [(3, 2, None)]
        version_migration.migrate(session, source, target, by=session.get_one(User, admin), now=NOW)
        with pytest.raises(ValueError):
            version_migration.plan_migration(session, source, source)
    with rt.session() as session:
        moved = session.get_one(Enrollment, enrollment_id)
        assert (moved.version_id, moved.main_position) == (target.id, 2)
        kinds = session.scalars(select(Event.kind).where(Event.enrollment_id == enrollment_id))
        assert "version-move" in list(kinds)
    later = NOW + timedelta(days=1)
    assert tick(rt, now=later).planned == []
    with rt.session() as session:
        assert session.get_one(Enrollment, enrollment_id).state == EnrollmentState.COMPLETED


@pytest.mark.parametrize("pattern", ["steady", "mid-flare", "long-flare"])
def test_what_if_lays_out_the_calendar(rt: Runtime, pattern: str) -> None:
    v1 = load_program(rt)
    with rt.session() as session:
        from campaigns.models import ProgramVersion

        version = session.get_one(ProgramVersion, v1)
        calendar = whatif.what_if(
            whatif.outline_of_version(version),
            rules_of(version),
            shape_of(version),
            pattern,
            start=date(2026, 3, 2),
        )
    sent = [e for e in calendar if e.kind in ("main", "flare", "resume")]
    assert [e.key for e in sent if e.kind == "main"] == [
        "d1-hello",
        "d2-write",
        "d3-move",
        "d4-check",
    ]
    if pattern == "steady":
        assert all(e.kind == "main" for e in sent)
    else:
        assert any(e.kind == "flare" for e in sent)
    if pattern == "long-flare":
        assert any(e.kind == "alert" for e in calendar)
    with pytest.raises(ValueError):
        whatif.replies_for("nope", NOW, 3, 3)
