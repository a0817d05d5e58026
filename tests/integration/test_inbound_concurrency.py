"""Two texts from one patient handled at once (found by bench B6 on PostgreSQL).

Twilio posts each text as its own webhook, so "7 today" followed by "flare" seconds later can
be processed concurrently. Both must be stored: Twilio does not retry an inbound-message
webhook that failed, so a 500 loses the patient's text.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from campaigns.enums import Channel, EnrollmentState
from campaigns.inbound import receive_reply
from campaigns.models import Enrollment, InboundReply, Patient
from campaigns.runtime import Runtime
from tests.factories import load_program, make_enrollment

MONDAY = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
NOON = MONDAY + timedelta(hours=12)


@pytest.fixture
def db_url(pg_url: str) -> str:
    """PostgreSQL only: SQLite's BEGIN IMMEDIATE already runs one reply at a time."""
    return pg_url


def test_two_concurrent_texts_from_one_patient_are_both_stored(rt: Runtime) -> None:
    version_id = load_program(rt)
    patient_id, _ = make_enrollment(rt, version_id, now=MONDAY)
    errors: list[BaseException] = []

    first = rt.session()
    session_a = first.__enter__()
    patient = session_a.get_one(Patient, patient_id)
    receive_reply(rt, session_a, patient, "7 today", channel=Channel.SMS, now=NOON,
                  provider_id="SM-first")  # fmt: skip
    # The first request has flushed its enrollment UPDATE but not committed yet.

    def second() -> None:
        try:
            with rt.session() as session_b:
                other = session_b.get_one(Patient, patient_id)
                receive_reply(rt, session_b, other, "flare", channel=Channel.SMS,
                              now=NOON + timedelta(seconds=2), provider_id="SM-second")  # fmt: skip
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.5)  # the second request reaches its UPDATE and waits for the first's row lock
    first.__exit__(None, None, None)
    thread.join(30)
    if errors:
        raise errors[0]
    with rt.session() as session:
        stored = session.scalar(select(func.count()).where(InboundReply.patient_id == patient_id))
        state = session.scalar(select(Enrollment.state).where(Enrollment.patient_id == patient_id))
    assert stored == 2
    assert state == EnrollmentState.FLARE, "the second reply was applied on top of the first"
