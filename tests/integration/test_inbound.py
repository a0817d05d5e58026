"""Patient replies end to end on real databases: consent, crisis, flares, linking."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from campaigns.enums import (
    AlertKind,
    AlertPriority,
    Channel,
    EnrollmentState,
    MessagePurpose,
    MessageStatus,
    StepKind,
)
from campaigns.inbound import ReplyResult, receive_reply
from campaigns.models import (
    Alert,
    Consent,
    Enrollment,
    Event,
    InboundReply,
    OutboxMessage,
    PainReport,
    Patient,
    ProgramStep,
)
from campaigns.outbox import DeliveryResult, deliver
from campaigns.runtime import Runtime
from campaigns.scheduler import tick
from tests.factories import load_program, make_enrollment

MONDAY = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)  # 00:00 in New York
DAY1_SEND = MONDAY + timedelta(hours=10)


def _reply(rt: Runtime, patient_id: int, text: str, now: datetime, **kw: object) -> ReplyResult:
    with rt.session() as session:
        patient = session.get_one(Patient, patient_id)
        result = receive_reply(
            rt, session, patient, text, channel=patient.preferred_channel, now=now, **kw
        )  # type: ignore[arg-type]
    for outbox_id in result.responses:
        deliver(rt, outbox_id, now=now)
    return result


def _send_due(rt: Runtime, now: datetime) -> list[int]:
    return tick(rt, now=now, dispatch=lambda ids: [deliver(rt, i, now=now) for i in ids]).planned


def _enrollment(rt: Runtime, enrollment_id: int) -> Enrollment:
    with rt.session() as session:
        return session.get_one(Enrollment, enrollment_id)


def test_reply_is_stored_raw_scored_and_linked_to_the_message_it_answers(rt: Runtime) -> None:
    version = load_program(rt)
    patient_id, _ = make_enrollment(rt, version, now=MONDAY)
    [sent] = _send_due(rt, DAY1_SEND)
    result = _reply(rt, patient_id, "pain is 4 today 🙂", DAY1_SEND + timedelta(hours=3))
    with rt.session() as session:
        reply = session.get_one(InboundReply, result.reply_id)
        report = session.scalar(select(PainReport).where(PainReport.reply_id == reply.id))
    assert reply.raw_text == "pain is 4 today 🙂"
    assert reply.in_reply_to_id == sent
    assert report is not None and report.score == 4


def test_flare_reply_holds_main_track_and_next_message_is_flare_support(rt: Runtime) -> None:
    version = load_program(rt)
    patient_id, enrollment_id = make_enrollment(rt, version, now=MONDAY)
    _send_due(rt, DAY1_SEND)
    _reply(rt, patient_id, "8, awful flare", DAY1_SEND + timedelta(hours=2))
    assert _enrollment(rt, enrollment_id).state == EnrollmentState.FLARE
    [next_id] = _send_due(rt, DAY1_SEND + timedelta(days=1))
    with rt.session() as session:
        row = session.get_one(OutboxMessage, next_id)
        step = session.get_one(ProgramStep, row.step_id)
    assert step.kind == StepKind.FLARE_SUPPORT
    assert step.position == 0
    assert _enrollment(rt, enrollment_id).main_position == 1


def test_stop_revokes_consent_at_once_confirms_and_sends_nothing_more(rt: Runtime) -> None:
    version = load_program(rt)
    patient_id, enrollment_id = make_enrollment(rt, version, now=MONDAY)
    _send_due(rt, DAY1_SEND)
    result = _reply(rt, patient_id, " Stop! ", DAY1_SEND + timedelta(hours=1))
    with rt.session() as session:
        consent = session.scalars(
            select(Consent).where(Consent.patient_id == patient_id).order_by(Consent.id)
        ).all()[-1]
        confirmation = session.get_one(OutboxMessage, result.responses[0])
    assert (consent.channel, consent.granted, consent.method) == (
        Channel.SMS,
        False,
        "sms keyword STOP",
    )
    assert confirmation.purpose == MessagePurpose.CONFIRMATION
    assert confirmation.status == MessageStatus.SENT
    assert _enrollment(rt, enrollment_id).state == EnrollmentState.OPTED_OUT
    for day in range(1, 6):
        assert _send_due(rt, DAY1_SEND + timedelta(days=day)) == []


def test_stop_wins_over_a_message_already_planned(rt: Runtime) -> None:
    version = load_program(rt)
    patient_id, _ = make_enrollment(rt, version, now=MONDAY)
    [planned] = tick(rt, now=DAY1_SEND).planned
    _reply(rt, patient_id, "STOP", DAY1_SEND)
    assert deliver(rt, planned, now=DAY1_SEND) == DeliveryResult.WITHHELD


def test_start_after_stop_resumes_where_the_program_stopped(rt: Runtime) -> None:
    version = load_program(rt)
    patient_id, enrollment_id = make_enrollment(rt, version, now=MONDAY)
    _send_due(rt, DAY1_SEND)
    _reply(rt, patient_id, "stop", DAY1_SEND + timedelta(hours=1))
    _reply(rt, patient_id, "START", DAY1_SEND + timedelta(days=2))
    assert _enrollment(rt, enrollment_id).state == EnrollmentState.ACTIVE
    [next_id] = _send_due(rt, DAY1_SEND + timedelta(days=3))
    with rt.session() as session:
        step = session.get_one(ProgramStep, session.get_one(OutboxMessage, next_id).step_id)
    assert step.position == 1


def test_crisis_language_alerts_staff_and_sends_resources_even_at_night(rt: Runtime) -> None:
    version = load_program(rt)
    patient_id, _ = make_enrollment(rt, version, now=MONDAY)
    three_am = MONDAY + timedelta(days=1, hours=3)
    result = _reply(rt, patient_id, "i dont want to be alive anymore", three_am)
    with rt.session() as session:
        alert = session.get_one(Alert, result.alerts[0])
        crisis = session.get_one(OutboxMessage, result.responses[0])
        event = session.scalar(select(Event).where(Event.kind == "crisis-alert"))
    assert (alert.kind, alert.priority) == (AlertKind.CRISIS, AlertPriority.HIGH)
    assert crisis.purpose == MessagePurpose.CRISIS
    assert crisis.status == MessageStatus.SENT
    assert "988" in crisis.body_text
    assert event is not None


def test_help_is_answered_without_changing_the_program(rt: Runtime) -> None:
    version = load_program(rt)
    patient_id, enrollment_id = make_enrollment(rt, version, now=MONDAY)
    result = _reply(rt, patient_id, "HELP", DAY1_SEND)
    files = sorted((rt.settings.resolved_outbox_dir / "sms").glob("*.json"))
    body = json.loads(files[-1].read_text())["body"]
    assert len(result.responses) == 1
    assert "STOP" in body
    assert _enrollment(rt, enrollment_id).state == EnrollmentState.ACTIVE


def test_duplicate_provider_delivery_is_stored_once(rt: Runtime) -> None:
    version = load_program(rt)
    patient_id, _ = make_enrollment(rt, version, now=MONDAY)
    first = _reply(rt, patient_id, "5", DAY1_SEND, provider_id="SM123")
    again = _reply(rt, patient_id, "5", DAY1_SEND, provider_id="SM123")
    with rt.session() as session:
        count = len(session.scalars(select(InboundReply)).all())
    assert again.duplicate and again.reply_id == first.reply_id
    assert count == 1


def test_pause_and_resume_keywords_confirm_and_hold(rt: Runtime) -> None:
    version = load_program(rt)
    patient_id, enrollment_id = make_enrollment(rt, version, now=MONDAY)
    _send_due(rt, DAY1_SEND)
    paused = _reply(rt, patient_id, "PAUSE", DAY1_SEND + timedelta(hours=1))
    assert _enrollment(rt, enrollment_id).state == EnrollmentState.PAUSED
    assert len(paused.responses) == 1
    assert _send_due(rt, DAY1_SEND + timedelta(days=1)) == []
    _reply(rt, patient_id, "resume", DAY1_SEND + timedelta(days=2))
    assert len(_send_due(rt, DAY1_SEND + timedelta(days=2, minutes=1))) == 1


def test_a_reply_that_changes_no_pacing_state_leaves_the_enrollment_row_unwritten(
    rt: Runtime,
) -> None:
    version = load_program(rt)
    patient_id, enrollment_id = make_enrollment(rt, version, now=MONDAY)
    _send_due(rt, DAY1_SEND)
    before = _enrollment(rt, enrollment_id).row_version
    _reply(rt, patient_id, "3", DAY1_SEND + timedelta(hours=1))
    assert _enrollment(rt, enrollment_id).row_version == before
    _reply(rt, patient_id, "9 flare", DAY1_SEND + timedelta(hours=2))
    after_flare = _enrollment(rt, enrollment_id)
    assert (after_flare.state, after_flare.row_version) == (EnrollmentState.FLARE, before + 1)
