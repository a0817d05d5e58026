"""``campaigns demo``: six weeks of patients on a fast clock, through the real code paths.

The driver owns only the clock and the patients' thumbs. Everything else (enrolment,
pacing, rendering, the outbox, inbound parsing, alerts) is the production code, run against
a throw-away SQLite database and file outbox under ``<data_dir>/demo/``. The clock jumps
straight to the next instant anything can happen (a due enrollment or a scripted reply), so
six weeks take seconds and no minute-by-minute stepping can hide or invent behaviour.
"""

from __future__ import annotations

import heapq
import itertools
import shutil
import time as wallclock
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import func, select

from campaigns.db import migrate
from campaigns.demo_report import console_table, intro, render_html
from campaigns.demo_scripts import CastMember, PatientScript, ScriptedReply, cast_member
from campaigns.dispatch_budget import REDISPATCH_AFTER, unlimited
from campaigns.enrollments import enroll, rules_of
from campaigns.enums import MessagePurpose
from campaigns.inbound import receive_reply
from campaigns.models import (
    OUTBOX_PLANNED,
    Enrollment,
    OutboxMessage,
    Patient,
    ProgramVersion,
    outbox_status_in,
)
from campaigns.outbox import DeliveryResult, deliver
from campaigns.patient_timeline import PatientSummary, collect
from campaigns.patients import PatientInput, create_patient
from campaigns.programs import bundled_folders, latest_version_id, load_folder, store_version
from campaigns.runtime import Runtime, build_runtime
from campaigns.scheduler import tick
from config.settings import Settings

#: A fixed Monday, not the real clock, so a seed always tells the same story. The six weeks
#: after it cross the US (8 Mar), UK (29 Mar) and Sydney (5 Apr) clock changes.
DEMO_START = datetime(2026, 3, 2, tzinfo=UTC)
PROGRAM_SLUG = "retrain-the-alarm"
ACTOR = "demo"
#: The clock never stands still this many times in a row unless pacing fails to move a row on.
MAX_SAME_INSTANT = 20


@dataclass(frozen=True)
class DemoResult:
    """What a run produced; tests assert on this and on the files and database it names."""

    patients: tuple[PatientSummary, ...]
    report_path: Path
    outbox_dir: Path
    database_url: str
    start: datetime
    end: datetime
    seconds: float


@dataclass(frozen=True)
class Actor:
    member: CastMember
    patient_id: int
    enrollment_id: int
    script: PatientScript


def demo_settings(settings: Settings) -> Settings:
    """A fresh folder each run: the demo never reads or writes the real database or outbox."""
    folder = settings.data_dir / "demo"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return settings.model_copy(
        update={
            "data_dir": folder,
            "database_url": f"sqlite:///{folder / 'demo.db'}",
            "outbox_dir": folder / "outbox",
        }
    )


def load_programs(rt: Runtime) -> int:
    """Store every bundled program; returns the version the demo enrols patients on."""
    folders = bundled_folders(rt.settings.templates_dir)
    if not folders:
        raise RuntimeError(f"no programs under {rt.settings.templates_dir / 'programs'}")
    with rt.session() as session:
        for folder in folders:
            store_version(session, load_folder(folder, rt.settings.templates_dir), by=ACTOR)
        slug = PROGRAM_SLUG if any(f.name == PROGRAM_SLUG for f in folders) else folders[0].name
        version_id = latest_version_id(session, slug)
    assert version_id is not None
    return version_id


def enrol_cast(
    rt: Runtime, version_id: int, count: int, *, seed: int, days: int, now: datetime
) -> list[Actor]:
    actors = []
    with rt.session() as session:
        version = session.get_one(ProgramVersion, version_id)
        long_flare_days = rules_of(version).long_flare_alert_days
        for i in range(count):
            member = cast_member(i)
            patient = create_patient(session, _patient_input(member), by=ACTOR, now=now)
            enrollment = enroll(session, patient, version, rt.window, by=ACTOR, now=now)
            day1 = _local_date(enrollment.next_due_at or now, member.timezone)
            script = PatientScript(
                member, day1, seed=seed, long_flare_days=long_flare_days, days=days
            )
            actors.append(Actor(member, patient.id, enrollment.id, script))
    return actors


def _patient_input(member: CastMember) -> PatientInput:
    return PatientInput(
        first_name=member.first_name,
        last_name=member.last_name,
        email=member.email,
        phone=member.phone,
        timezone=member.timezone,
        channel=member.channel,
        send_time=member.send_time,
        consent_sms=member.channel == "sms",
        consent_email=member.channel == "email",
    )


def _local_date(at: datetime, zone: str) -> date:
    return at.astimezone(ZoneInfo(zone)).date()


class Simulation:
    """Jumps the clock from one interesting instant to the next and plays both sides."""

    def __init__(self, rt: Runtime, actors: Sequence[Actor], *, end: datetime) -> None:
        self.rt, self.end = rt, end
        self.actors = {a.patient_id: a for a in actors}
        self.queue: list[tuple[datetime, int, int, str]] = []
        self._order = itertools.count()
        for actor in actors:
            for reply in actor.script.unprompted():
                self._push(actor.patient_id, reply)

    def run(self, now: datetime, on_step: Callable[[datetime], None]) -> None:
        same = 0
        while (nxt := self.next_instant()) is not None and nxt <= self.end:
            same = same + 1 if nxt <= now else 0
            if same > MAX_SAME_INSTANT:
                raise RuntimeError(f"simulation stuck at {now.isoformat()}")
            now = max(now, nxt)
            if self.replies_due(now) == 0 or self._scheduler_due(now):
                self.tick(now)
            on_step(now)

    def _timers(self) -> list[datetime]:
        """When the scheduler next has work: a due enrollment or a planned row to redispatch."""
        with self.rt.session() as session:
            due = session.scalar(select(func.min(Enrollment.next_due_at)))
            planned = session.scalar(
                select(func.min(OutboxMessage.planned_at)).where(outbox_status_in(OUTBOX_PLANNED))
            )
        return [t for t in (due, planned and planned + REDISPATCH_AFTER) if t is not None]

    def _scheduler_due(self, now: datetime) -> bool:
        """After replies: a flare or resume may have made an enrollment due right now."""
        return any(t <= now for t in self._timers())

    def next_instant(self) -> datetime | None:
        """The earliest of: scheduler work (see ``_timers``) or a scripted reply."""
        candidates = self._timers()
        if self.queue:
            candidates.append(self.queue[0][0])
        return min(candidates, default=None)

    def replies_due(self, now: datetime) -> int:
        """Feed every reply due by ``now`` through the real inbound path; returns how many."""
        count = 0
        while self.queue and self.queue[0][0] <= now:
            count += 1
            _, _, patient_id, text = heapq.heappop(self.queue)
            with self.rt.session() as session:
                patient = session.get_one(Patient, patient_id)
                result = receive_reply(
                    self.rt, session, patient, text, channel=patient.preferred_channel, now=now
                )
            for outbox_id in result.responses:
                deliver(self.rt, outbox_id, now=now)
        return count

    def tick(self, now: datetime) -> None:
        sent: list[int] = []

        def dispatch(ids: Sequence[int]) -> None:
            sent.extend(i for i in ids if deliver(self.rt, i, now=now) == DeliveryResult.SENT)

        tick(self.rt, now=now, dispatch=dispatch, budget=unlimited())  # sent inline, no queue
        if sent:
            self._answer(sent)

    def _answer(self, sent: Sequence[int]) -> None:
        """Patients answer program messages that reached them, in their own time."""
        with self.rt.session() as session:
            rows = session.execute(
                select(OutboxMessage.patient_id, OutboxMessage.sent_at)
                .where(
                    OutboxMessage.id.in_(sent),
                    OutboxMessage.purpose == MessagePurpose.PROGRAM,
                )
                .order_by(OutboxMessage.id)
            ).all()
        for patient_id, sent_at in rows:
            reply = self.actors[patient_id].script.answer(sent_at)
            if reply is not None:
                self._push(patient_id, reply)

    def _push(self, patient_id: int, reply: ScriptedReply) -> None:
        heapq.heappush(self.queue, (reply.at, next(self._order), patient_id, reply.text))


def run_demo(
    settings: Settings,
    *,
    patients: int = 5,
    days: int = 42,
    report_path: Path = Path("demo-report.html"),
    seed: int = 7,
    console: Console | None = None,
) -> DemoResult:
    """Simulate ``patients`` for ``days`` and write the HTML report; see the module docstring."""
    console = console or Console()
    began = wallclock.perf_counter()
    rt = build_runtime(demo_settings(settings))
    rt.limiter = None  # simulated time: a real-time send rate would only slow the replay
    try:
        migrate(rt.settings.resolved_database_url)
        version_id = load_programs(rt)
        end = DEMO_START + timedelta(days=days)
        actors = enrol_cast(rt, version_id, patients, seed=seed, days=days, now=DEMO_START)
        _simulate(Simulation(rt, actors, end=end), console, days)
        with rt.session() as session:
            timelines = [
                collect(
                    session, a.member.index, a.member.pattern.value, a.enrollment_id, a.script.day1
                )
                for a in actors
            ]
    finally:
        rt.engine.dispose()
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(
        render_html(timelines, days=days, intro=intro(patients, days, seed, DEMO_START)),
        encoding="utf-8",
    )
    result = DemoResult(
        patients=tuple(t.summary for t in timelines),
        report_path=report_path.resolve(),
        outbox_dir=rt.settings.resolved_outbox_dir,
        database_url=rt.settings.resolved_database_url,
        start=DEMO_START,
        end=end,
        seconds=wallclock.perf_counter() - began,
    )
    console.print(console_table(timelines))
    console.print(f"simulated {patients} patient(s) in {result.seconds:.1f}s")
    console.print(f"report: {result.report_path}")
    console.print(f"outbox: {result.outbox_dir}")
    return result


def _simulate(sim: Simulation, console: Console, days: int) -> None:
    columns = (
        TextColumn("simulating"),
        BarColumn(),
        TextColumn("day {task.completed:.0f}/{task.total:.0f}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("days", total=days)

        def on_step(now: datetime) -> None:
            progress.update(task, completed=min(days, (now - DEMO_START) / timedelta(days=1)))

        sim.run(DEMO_START, on_step)
        progress.update(task, completed=days)
