"""Erasure, export and retention on real databases."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from campaigns.cli import app
from campaigns.data_care import expire_reply_text, purge_patient
from campaigns.db import engine_for
from campaigns.inbound import receive_reply
from campaigns.models import (
    AuditEntry,
    Consent,
    Enrollment,
    Event,
    InboundReply,
    OutboxMessage,
    PainReport,
    Patient,
)
from campaigns.outbox import deliver
from campaigns.runtime import Runtime
from campaigns.scheduler import tick
from config.settings import get_settings
from tests.factories import load_program, make_enrollment

MONDAY = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
DUE = MONDAY + timedelta(hours=10)


def _patient_with_history(rt: Runtime) -> int:
    version = load_program(rt)
    patient_id, _ = make_enrollment(rt, version, now=MONDAY)
    tick(rt, now=DUE, dispatch=lambda ids: [deliver(rt, i, now=DUE) for i in ids])
    with rt.session() as session:
        patient = session.get_one(Patient, patient_id)
        receive_reply(
            rt,
            session,
            patient,
            "8, awful flare",
            channel=patient.preferred_channel,
            now=DUE + timedelta(hours=1),
        )
    return patient_id


def _count(rt: Runtime, model: type, patient_id: int) -> int:
    with rt.session() as session:
        return (
            session.scalar(
                select(func.count()).select_from(model).where(model.patient_id == patient_id)  # type: ignore[attr-defined]
            )
            or 0
        )


def test_purge_erases_the_patient_and_everything_about_them(rt: Runtime) -> None:
    patient_id = _patient_with_history(rt)
    other_id = _patient_with_history(rt)
    for model in (Consent, Enrollment, OutboxMessage, InboundReply, PainReport, Event):
        assert _count(rt, model, patient_id) > 0
    with rt.session() as session:
        assert purge_patient(session, patient_id, by=None, now=DUE)
        assert not purge_patient(session, 10**6, by=None, now=DUE)
    for model in (Consent, Enrollment, OutboxMessage, InboundReply, PainReport, Event):
        assert _count(rt, model, patient_id) == 0
        assert _count(rt, model, other_id) > 0
    with rt.session() as session:
        assert session.get(Patient, patient_id) is None
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "purge")).one()
    assert entry.entity_id == str(patient_id)


def test_retention_blanks_old_reply_text_but_keeps_what_it_meant(rt: Runtime) -> None:
    patient_id = _patient_with_history(rt)
    with rt.session() as session:
        assert expire_reply_text(session, now=DUE + timedelta(days=10), keep_days=30) == 0
        assert expire_reply_text(session, now=DUE + timedelta(days=31), keep_days=30) == 1
        reply = session.scalars(
            select(InboundReply).where(InboundReply.patient_id == patient_id)
        ).one()
    assert reply.raw_text == ""
    assert reply.pain_score == 8 and reply.flare_signal


@pytest.fixture
def cli_env(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, rt: Runtime) -> Path:
    monkeypatch.setenv("CAMPAIGNS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CAMPAIGNS_DATABASE_URL", db_url)
    get_settings.cache_clear()
    return tmp_path


def test_cli_exports_one_patient_and_purges_only_with_confirmation(
    rt: Runtime, cli_env: Path, db_url: str
) -> None:
    patient_id = _patient_with_history(rt)
    runner = CliRunner()
    out = cli_env / "one.json"
    result = runner.invoke(app, ["export", "--patient", str(patient_id), "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["patient"]["id"] == patient_id
    assert [r["raw_text"] for r in data["replies"]] == ["8, awful flare"]
    assert runner.invoke(app, ["purge-patient", str(patient_id)]).exit_code == 1
    assert _count(rt, Enrollment, patient_id) == 1
    done = runner.invoke(app, ["purge-patient", str(patient_id), "--yes"])
    assert done.exit_code == 0, done.output
    assert _count(rt, Enrollment, patient_id) == 0
    get_settings.cache_clear()
    engine_for(db_url).dispose()
