"""Two texts from one patient handled at once (found by bench B6 on PostgreSQL).

Twilio posts each text as its own webhook, so "7 today" followed by "flare" seconds later can
be processed concurrently. Both must be stored: Twilio does not retry an inbound-message
webhook that failed, so a 500 loses the patient's text.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm.exc import StaleDataError

from campaigns.db import engine_for
from campaigns.enums import Channel
from campaigns.inbound import receive_reply
from campaigns.models import InboundReply, Patient
from campaigns.runtime import Runtime, build_runtime
from config.settings import Settings
from tests.conftest import REPO
from tests.factories import load_program, make_enrollment

MONDAY = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
NOON = MONDAY + timedelta(hours=12)


@pytest.fixture
def pg_rt(tmp_path: Path, pg_url: str) -> Iterator[Runtime]:
    settings = Settings(
        environment="test",
        data_dir=tmp_path / "data",
        database_url=pg_url,
        templates_dir=REPO / "templates",
        secret_key="test-secret-key-that-is-long-enough-000000",
    )
    runtime = build_runtime(settings)
    yield runtime
    runtime.engine.dispose()
    engine_for.cache_clear()


@pytest.mark.xfail(
    strict=True,
    raises=StaleDataError,
    reason="product bug: the second of two concurrent replies fails on the enrollment's "
    "row_version (StaleDataError -> HTTP 500) and its text is not stored",
)
def test_two_concurrent_texts_from_one_patient_are_both_stored(pg_rt: Runtime) -> None:
    version_id = load_program(pg_rt)
    patient_id, _ = make_enrollment(pg_rt, version_id, now=MONDAY)
    errors: list[BaseException] = []

    first = pg_rt.session()
    session_a = first.__enter__()
    patient = session_a.get_one(Patient, patient_id)
    receive_reply(pg_rt, session_a, patient, "7 today", channel=Channel.SMS, now=NOON,
                  provider_id="SM-first")  # fmt: skip
    # The first request has flushed its enrollment UPDATE but not committed yet.

    def second() -> None:
        try:
            with pg_rt.session() as session_b:
                other = session_b.get_one(Patient, patient_id)
                receive_reply(pg_rt, session_b, other, "flare", channel=Channel.SMS,
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
    with pg_rt.session() as session:
        stored = session.scalar(select(func.count()).where(InboundReply.patient_id == patient_id))
    assert stored == 2
