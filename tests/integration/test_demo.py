"""``campaigns demo`` end to end: the story each scripted patient lives through is checked in
the database and the files it leaves behind, not in what it prints."""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from email import policy
from email.parser import BytesParser
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr
from rich.console import Console
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from campaigns.cli import app
from campaigns.db import make_engine
from campaigns.demo import DemoResult, run_demo
from campaigns.demo_report import render_html
from campaigns.demo_scripts import BETTER, CALM, FLARE, JOURNAL, Pattern
from campaigns.enums import (
    AlertKind,
    Channel,
    EnrollmentState,
    MessagePurpose,
    MessageStatus,
    StepKind,
    Track,
)
from campaigns.models import (
    Alert,
    Enrollment,
    Event,
    InboundReply,
    OutboxMessage,
    ProgramStep,
)
from campaigns.patient_timeline import Mark, PatientSummary, Timeline
from campaigns.patients import has_consent
from campaigns.replies import parse_reply
from campaigns.segments import count_segments
from config.settings import Settings, get_settings

REPO = Path(__file__).resolve().parents[2]
PATIENTS, DAYS = 5, 42


def demo_settings(data_dir: Path) -> Settings:
    return Settings(
        environment="test",
        data_dir=data_dir,
        templates_dir=REPO / "templates",
        secret_key=SecretStr("test-secret-key-that-is-long-enough-000000"),
    )


@dataclass
class Run:
    result: DemoResult
    engine: Engine
    data_dir: Path
    output: str

    def summary(self, pattern: Pattern) -> PatientSummary:
        return next(p for p in self.result.patients if p.pattern == pattern.value)

    def session(self) -> Session:
        return Session(self.engine)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """One 5-patient, 42-day run shared by the module: it is the expensive part."""
    root = tmp_path_factory.mktemp("demo")
    out = io.StringIO()
    result = run_demo(
        demo_settings(root / "data"),
        patients=PATIENTS,
        days=DAYS,
        report_path=root / "report.html",
        seed=7,
        console=Console(file=out, width=140),
    )
    engine = make_engine(result.database_url)
    yield Run(result, engine, root / "data", out.getvalue())
    engine.dispose()


def program_rows(run: Run, patient_id: int) -> list[tuple[OutboxMessage, ProgramStep]]:
    with run.session() as session:
        rows = session.execute(
            select(OutboxMessage, ProgramStep)
            .join(ProgramStep, OutboxMessage.step_id == ProgramStep.id)
            .where(
                OutboxMessage.patient_id == patient_id,
                OutboxMessage.purpose == MessagePurpose.PROGRAM,
            )
            .order_by(OutboxMessage.id)
        ).tuples()
        return list(rows)


def kind_of(step: ProgramStep) -> str:
    return "resume" if step.kind == StepKind.RESUME else step.track.value


def local_sent(row: OutboxMessage, zone: str) -> datetime:
    assert row.sent_at is not None
    return row.sent_at.astimezone(ZoneInfo(zone))


# --- the cast ------------------------------------------------------------------------------


@pytest.mark.slow
def test_every_patient_is_summarised_with_patterns_round_robin(demo: Run) -> None:
    patients = demo.result.patients
    assert [p.pattern for p in patients] == [p.value for p in Pattern]
    zones = {p.timezone for p in patients}
    assert {"America/New_York", "Europe/London", "Asia/Kolkata"} <= zones
    assert {p.channel for p in patients} == {"sms", "email"}
    assert demo.result.seconds < 30


@pytest.mark.slow
def test_the_real_database_and_outbox_are_untouched(demo: Run) -> None:
    assert not (demo.data_dir / "campaigns.db").exists()
    assert not (demo.data_dir / "outbox").exists()
    assert demo.result.outbox_dir == demo.data_dir / "demo" / "outbox"
    assert str(demo.data_dir / "demo") in demo.result.database_url


@pytest.mark.slow
def test_console_shows_the_table_and_where_the_files_are(demo: Run) -> None:
    row = next(line for line in demo.output.splitlines() if line.strip().startswith("Maya"))
    assert "steady" in row and "completed" in row and "42/42" in row
    assert f"report: {demo.result.report_path}" in demo.output
    assert f"outbox: {demo.result.outbox_dir}" in demo.output


# --- what was sent -------------------------------------------------------------------------


@pytest.mark.slow
def test_main_track_is_every_step_in_order_exactly_once(demo: Run) -> None:
    for patient in demo.result.patients:
        rows = program_rows(demo, patient.patient_id)
        main = [step.position for _, step in rows if step.track == Track.MAIN]
        assert main == list(range(len(main))), patient.name
        assert len(main) == patient.main_sent
        assert all(row.status == MessageStatus.SENT for row, _ in rows), patient.name


@pytest.mark.slow
def test_at_most_one_program_message_a_local_day_inside_the_window(demo: Run) -> None:
    for patient in demo.result.patients:
        local = [
            local_sent(row, patient.timezone) for row, _ in program_rows(demo, patient.patient_id)
        ]
        per_day = Counter(t.date() for t in local)
        assert max(per_day.values()) == 1, patient.name
        assert all(time(9) <= t.time() < time(20) for t in local), patient.name


@pytest.mark.slow
def test_send_time_keeps_its_wall_clock_time_across_the_dst_change(demo: Run) -> None:
    steady = demo.summary(Pattern.STEADY)
    assert steady.timezone == "America/New_York"  # clocks go forward on 8 March 2026
    rows = program_rows(demo, steady.patient_id)
    # The first message goes at enrolment (Sunday evening, still inside the window).
    times = {local_sent(row, steady.timezone).strftime("%H:%M") for row, _ in rows[1:]}
    assert times == {"09:30"}


@pytest.mark.slow
def test_steady_patient_completes_every_main_step(demo: Run) -> None:
    steady = demo.summary(Pattern.STEADY)
    assert steady.state == EnrollmentState.COMPLETED.value
    assert steady.main_sent == steady.main_total == DAYS
    assert steady.flares == steady.flare_sent == steady.alerts == 0


@pytest.mark.slow
def test_mid_flare_gets_support_then_welcome_back_then_main_again(demo: Run) -> None:
    patient = demo.summary(Pattern.MID_FLARE)
    kinds = [kind_of(step) for _, step in program_rows(demo, patient.patient_id)]
    first_flare, resume = kinds.index("flare"), kinds.index("resume")
    assert set(kinds[:first_flare]) == {"main"}
    assert first_flare < resume
    assert set(kinds[first_flare:resume]) == {"flare"}
    assert resume - first_flare >= 2
    assert kinds[resume + 1 :] and set(kinds[resume + 1 :]) == {"main"}
    assert patient.flares == 1
    assert patient.state == EnrollmentState.ACTIVE.value


@pytest.mark.slow
def test_long_flare_raises_a_staff_alert(demo: Run) -> None:
    patient = demo.summary(Pattern.LONG_FLARE)
    with demo.session() as session:
        alerts = session.scalars(select(Alert).where(Alert.patient_id == patient.patient_id)).all()
        started = session.scalar(
            select(Event.at).where(
                Event.patient_id == patient.patient_id, Event.kind == "flare-start"
            )
        )
    assert [a.kind for a in alerts] == [AlertKind.LONG_FLARE]
    assert started is not None
    assert alerts[0].created_at - started >= timedelta(days=10)
    assert patient.flare_sent >= 5


@pytest.mark.slow
def test_opt_out_gets_only_the_stop_confirmation_afterwards(demo: Run) -> None:
    patient = demo.summary(Pattern.OPT_OUT)
    with demo.session() as session:
        stop_at = session.scalar(
            select(InboundReply.received_at).where(
                InboundReply.patient_id == patient.patient_id, InboundReply.raw_text == "STOP"
            )
        )
        assert stop_at is not None
        after = session.scalars(
            select(OutboxMessage).where(
                OutboxMessage.patient_id == patient.patient_id,
                OutboxMessage.planned_at >= stop_at,
            )
        ).all()
        later_replies = session.scalars(
            select(InboundReply).where(
                InboundReply.patient_id == patient.patient_id, InboundReply.received_at > stop_at
            )
        ).all()
        enrollment = session.get_one(Enrollment, patient.enrollment_id)
        consented = has_consent(session, patient.patient_id, Channel(patient.channel))
    assert [(m.purpose, m.status) for m in after] == [
        (MessagePurpose.CONFIRMATION, MessageStatus.SENT)
    ]
    assert later_replies == []
    assert enrollment.state == EnrollmentState.OPTED_OUT
    assert enrollment.next_due_at is None
    assert not consented


@pytest.mark.slow
def test_slower_then_pause_and_resume_are_honoured(demo: Run) -> None:
    patient = demo.summary(Pattern.SLOWER_PAUSE)
    with demo.session() as session:
        events = {
            e.kind: e.at
            for e in session.scalars(
                select(Event).where(Event.patient_id == patient.patient_id).order_by(Event.id)
            )
        }
        cadence = session.get_one(Enrollment, patient.enrollment_id).cadence_days
    assert events["slower"] < events["pause"] < events["resume"]
    assert cadence == 2
    local = [local_sent(row, patient.timezone) for row, _ in program_rows(demo, patient.patient_id)]
    paused = [t for t in local if events["pause"] <= t < events["resume"]]
    assert paused == []
    after_slower = [t.date() for t in local if t > events["slower"]]
    gaps = [(b - a).days for a, b in pairwise(after_slower)]
    assert gaps and min(gaps) >= 2


# --- the files -----------------------------------------------------------------------------


@pytest.mark.slow
def test_report_has_a_chart_per_patient_and_stands_alone(demo: Run) -> None:
    html = demo.result.report_path.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>")
    assert "<title>Campaigns demo" in html
    assert html.count("<svg") == PATIENTS
    assert html.count('<title id="chart-') == PATIENTS
    assert 'class="flare-period"' in html
    assert "<script" not in html
    assert not re.search(r"""(?:src|href)\s*=\s*["'](?!#)""", html)
    assert "@import" not in html and "url(http" not in html
    for heading in ("<h1>", "<h2>Summary</h2>", '<h3 id="patient-0-h">'):
        assert heading in html


@pytest.mark.slow
def test_emails_are_mime_with_text_and_html_parts(demo: Run) -> None:
    files = sorted((demo.result.outbox_dir / "email").glob("*.eml"))
    assert files
    for path in files:
        message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        assert message["Subject"], path.name
        assert message.get_body(("plain",)) is not None, path.name
        assert message.get_body(("html",)) is not None, path.name


@pytest.mark.slow
def test_sms_bodies_fit_in_two_segments(demo: Run) -> None:
    files = sorted((demo.result.outbox_dir / "sms").glob("*.sms.json"))
    assert files
    for path in files:
        body = json.loads(path.read_text(encoding="utf-8"))["body"]
        assert 0 < count_segments(body).segments <= 2, path.name


# --- determinism and the command line ------------------------------------------------------


def _replies(database_url: str) -> list[tuple[int, datetime, str]]:
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            rows = session.execute(
                select(
                    InboundReply.patient_id, InboundReply.received_at, InboundReply.raw_text
                ).order_by(InboundReply.id)
            ).tuples()
            return list(rows)
    finally:
        engine.dispose()


@pytest.mark.slow
def test_same_seed_replays_the_same_story_in_a_fresh_folder(tmp_path: Path) -> None:
    settings = demo_settings(tmp_path / "data")
    quiet = Console(file=io.StringIO())
    runs = []
    for _ in range(2):
        result = run_demo(
            settings, patients=3, days=12, report_path=tmp_path / "r.html", seed=3, console=quiet
        )
        outbox = sorted(p.name for p in result.outbox_dir.rglob("*") if p.is_file())
        runs.append((result.patients, _replies(result.database_url), outbox))
    assert runs[0] == runs[1]
    assert runs[0][1]


@pytest.mark.slow
def test_cli_demo_runs_and_writes_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAMPAIGNS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CAMPAIGNS_ENVIRONMENT", "test")
    report = tmp_path / "out" / "report.html"
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            app, ["demo", "--patients", "2", "--days", "10", "--report", str(report)]
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert report.read_text(encoding="utf-8").count("<svg") == 2
    assert "report:" in result.output
    assert (tmp_path / "data" / "demo" / "demo.db").exists()


# --- the pieces ----------------------------------------------------------------------------


@pytest.mark.parametrize("bank", [CALM, BETTER, FLARE], ids=["calm", "better", "flare"])
def test_every_scripted_phrasing_parses_as_intended(bank: tuple[str, ...]) -> None:
    flare = bank is FLARE
    for template in bank:
        for score in range(7, 10) if flare else range(1, 7):
            text = template.format(s=score)
            for variant in (text, *(f"{text.rstrip('.!')}. {line}" for line in JOURNAL)):
                parsed = parse_reply(variant)
                expected = float(score) if "{s}" in template else None
                assert parsed.pain_score == expected, variant
                assert parsed.is_flare_signal == flare, variant
                assert not parsed.crisis and not parsed.keywords - {"FLARE"}, variant


def test_report_escapes_everything_that_came_from_a_patient() -> None:
    summary = PatientSummary(
        index=0,
        patient_id=1,
        enrollment_id=1,
        name='<script>alert("x")</script>',
        pattern="steady improvement",
        timezone="Europe/London",
        channel="sms",
        state="active",
        main_sent=1,
        main_total=42,
        flare_sent=0,
        resume_sent=0,
        flares=0,
        alerts=0,
        replies=1,
        last_score=4.0,
    )
    when = datetime(2026, 3, 2, 19, 0, tzinfo=ZoneInfo("Europe/London"))
    timeline = Timeline(
        summary=summary,
        scores=(Mark(1.8, "score", "4/10: “<b>4</b> & fine”", 4.0),),
        flares=((1.5, None),),
        changes=(Mark(1.5, "flare-start", "<i>flare</i>"),),
        messages=(Mark(1.4, "main", "Welcome <u>"),),
        log=((1, when, "reply", "<img src=x onerror=alert(1)>"),),
    )
    html = render_html([timeline], days=3, intro=["<p>intro</p>"])
    for raw in ("<script>", "<b>4</b>", "<i>flare</i>", "<u>", "<img", "<p>intro"):
        assert raw not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert 'class="flare-period"' in html
