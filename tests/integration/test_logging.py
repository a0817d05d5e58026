"""Patient data never reaches the logs, while the events staff need do."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from campaigns.inbound import receive_reply
from campaigns.logs import configure, scrub
from campaigns.models import Patient
from campaigns.outbox import deliver
from campaigns.runtime import Runtime
from campaigns.scheduler import tick
from tests.conftest import REPO
from tests.factories import load_program, make_enrollment

MONDAY = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    configure(logging.INFO, stream=buffer)
    yield buffer
    configure(logging.WARNING)


def test_a_full_exchange_logs_ids_but_no_contact_details_or_text(
    rt: Runtime, captured: io.StringIO
) -> None:
    version = load_program(rt)
    patient_id, _ = make_enrollment(rt, version, now=MONDAY, first_name="Zebulon")
    due = MONDAY + timedelta(hours=10)
    dispatched: list[int] = []

    def send(ids: Sequence[int]) -> None:
        dispatched.extend(ids)
        for outbox_id in ids:
            deliver(rt, outbox_id, now=due)

    tick(rt, now=due, dispatch=send)
    with rt.session() as session:
        patient = session.get_one(Patient, patient_id)
        phone, email = patient.phone_e164, patient.email
        receive_reply(
            rt,
            session,
            patient,
            "pain 6, my secret diary line",
            channel=patient.preferred_channel,
            now=due,
        )
    logs = captured.getvalue()
    assert '"event": "tick"' in logs and '"event": "deliver"' in logs
    deliveries = [r for r in map(json.loads, logs.splitlines()) if r["event"] == "deliver"]
    assert dispatched and [r["sent"] for r in deliveries] == [[i] for i in dispatched]
    assert '"event": "reply"' in logs
    for secret in (phone, email, "Zebulon", "secret diary", "mini step"):
        assert secret and secret not in logs


def test_scrub_masks_sensitive_fields_and_contact_details_in_messages() -> None:
    event = {
        "event": "sent to +1 650 253 0000 and ann@example.org",
        "to": "+16502530000",
        "body": "hello",
        "outbox_id": 7,
    }
    out = scrub(None, "info", event)
    assert out["to"] == out["body"] == "[redacted]"
    assert "650" not in out["event"] and "example.org" not in out["event"]
    assert out["outbox_id"] == 7


def test_logging_follows_stderr_when_it_is_replaced_after_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from campaigns.logs import get_logger

    configure(logging.INFO)
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    get_logger("t").info("one")
    first.close()  # what pytest does to a finished test's captured stream
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    get_logger("t").info("two")
    configure(logging.WARNING)
    assert '"event": "two"' in second.getvalue()


_LOG_LINES = """
from campaigns.logs import configure, get_logger
configure()
log = get_logger("race")
for i in range(2000):
    log.info("worker process ready", pid=i, frozen_objects=123456)
"""


def test_processes_sharing_stderr_write_whole_json_lines(tmp_path: Path) -> None:
    """A worker's pool processes share its stderr. Unbuffered (``PYTHONUNBUFFERED=1``, as in
    containers), a line and its newline written apart ran two processes' lines together."""
    path = tmp_path / "shared.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with path.open("w") as shared:
        procs = [
            subprocess.Popen([sys.executable, "-c", _LOG_LINES], stderr=shared, env=env, cwd=REPO)
            for _ in range(3)
        ]
        assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    lines = path.read_text().splitlines()
    assert len(lines) == 3 * 2000
    assert [json.loads(line)["event"] for line in lines] == ["worker process ready"] * len(lines)
