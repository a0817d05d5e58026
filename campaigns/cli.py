"""``campaigns``: the command line for set-up, staff tasks and the demo."""

from __future__ import annotations

import csv
import json
import logging
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.bulk import bulk_enroll
from campaigns.cli_keys import keys_app
from campaigns.cli_users import users_app
from campaigns.data_care import purge_patient
from campaigns.db import migrate
from campaigns.dispatch_budget import unlimited
from campaigns.enrollments import EnrollmentError, enroll
from campaigns.enums import Channel, EnrollmentState
from campaigns.field_crypto import FieldKeyError
from campaigns.heap import freeze_startup_heap
from campaigns.inbound import receive_reply
from campaigns.logs import configure as configure_logging
from campaigns.models import (
    OUTBOX_UNSETTLED,
    Alert,
    Enrollment,
    OutboxMessage,
    Patient,
    Program,
    ProgramVersion,
    outbox_status_in,
    utcnow,
)
from campaigns.outbox import deliver
from campaigns.patient_export import export_patient
from campaigns.patients import PatientInput, create_patient
from campaigns.programs import (
    ProgramError,
    bundled_folders,
    latest_version_id,
    load_folder,
    store_version,
)
from campaigns.runtime import Runtime, build_runtime
from campaigns.scheduler import tick as run_tick
from config.settings import SettingsError, get_settings

app = typer.Typer(
    help="Patient messaging for neuroplastic chronic pain programs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
programs_app = typer.Typer(help="Load and list programs.", no_args_is_help=True)
app.add_typer(programs_app, name="programs")
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
console = Console()
err = Console(stderr=True)

NowOption = Annotated[
    datetime | None,
    typer.Option("--now", help="Pretend it is this UTC time (ISO 8601); default: the real clock."),
]


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@app.callback()
def _setup(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log JSON to stderr.")] = False,
) -> None:
    configure_logging(logging.INFO if verbose else logging.WARNING)


def _runtime() -> Runtime:
    try:
        return build_runtime(get_settings())
    except (SettingsError, FieldKeyError) as exc:
        fail(str(exc), 2)


def _now(value: datetime | None) -> datetime:
    if value is None:
        return utcnow()
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def load_program(rt: Runtime, folder: Path, *, by: str) -> tuple[ProgramVersion, bool]:
    loaded = load_folder(folder, rt.settings.templates_dir)
    with rt.session() as session:
        return store_version(session, loaded, by=by)


@app.command()
def init() -> None:
    """Create or upgrade the database and load the bundled programs."""
    rt = _runtime()
    migrate(rt.settings.resolved_database_url)
    for folder in bundled_folders(rt.settings.templates_dir):
        try:
            version, created = load_program(rt, folder, by="campaigns init")
        except ProgramError as exc:
            fail(f"program {folder.name} is invalid:\n{exc}")
        note = "stored as" if created else "already at"
        console.print(f"program [bold]{folder.name}[/]: {note} version {version.version}")
    console.print(f"database ready: {_redacted(rt.settings.resolved_database_url)}")


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@programs_app.command("load")
def programs_load(folder: Path) -> None:
    """Validate a program folder and store it as a new version."""
    rt = _runtime()
    try:
        version, created = load_program(rt, folder, by="cli")
    except ProgramError as exc:
        fail(f"{folder} is invalid:\n{exc}")
    if created:
        console.print(f"stored {folder.name} version {version.version}")
    else:
        console.print(f"{folder.name} unchanged: still version {version.version}")


@programs_app.command("list")
def programs_list() -> None:
    """Programs with their newest version and how many patients are on each."""
    rt = _runtime()
    table = Table("program", "name", "latest version", "live enrollments")
    with rt.session() as session:
        for program in session.scalars(select(Program).order_by(Program.slug)):
            latest = program.versions[-1].version if program.versions else "-"
            live = session.scalar(
                select(func.count(Enrollment.id))
                .join(ProgramVersion)
                .where(
                    ProgramVersion.program_id == program.id,
                    Enrollment.state.in_(
                        [EnrollmentState.ACTIVE, EnrollmentState.FLARE, EnrollmentState.PAUSED]
                    ),
                )
            )
            table.add_row(program.slug, program.name, str(latest), str(live))
    console.print(table)


def latest_version(rt: Runtime, slug: str) -> int:
    with rt.session() as session:
        version_id = latest_version_id(session, slug)
    if version_id is None:
        fail(f"no program {slug!r}; run `campaigns init` or `campaigns programs list`")
    return version_id


@app.command("enroll")
def enroll_cmd(
    first_name: Annotated[str, typer.Option(help="Patient's first name.")],
    timezone: Annotated[str, typer.Option(help="IANA time zone, e.g. America/Chicago.")],
    channel: Annotated[Channel, typer.Option(help="Preferred channel.")],
    consent: Annotated[
        bool,
        typer.Option("--consent", help="The patient consented to messages on the chosen channel."),
    ] = False,
    last_name: Annotated[str, typer.Option()] = "",
    email: Annotated[str | None, typer.Option()] = None,
    phone: Annotated[str | None, typer.Option(help="Phone number; stored as E.164.")] = None,
    send_time: Annotated[str, typer.Option(help="Local send time HH:MM.")] = "10:00",
    program: Annotated[str, typer.Option(help="Program slug.")] = "retrain-the-alarm",
    staff: Annotated[str, typer.Option(help="Who records the enrolment and consent.")] = "cli",
    now: NowOption = None,
) -> None:
    """Enrol one patient (consent for the chosen channel is required)."""
    rt = _runtime()
    if not consent:
        fail("--consent is required: nothing is sent on a channel without recorded consent")
    try:
        data = PatientInput(
            first_name=first_name,
            last_name=last_name,
            email=email,
            phone=phone,
            timezone=timezone,
            channel=channel,
            send_time=time.fromisoformat(send_time),
            consent_sms=channel == Channel.SMS,
            consent_email=channel == Channel.EMAIL,
        )
    except ValidationError as exc:
        fail("invalid patient:\n  " + "\n  ".join(_field_errors(exc)))
    except ValueError as exc:
        fail(f"--send-time: {exc}")
    version_id = latest_version(rt, program)
    when = _now(now)
    try:
        with rt.session() as session:
            patient = create_patient(session, data, by=staff, now=when)
            version = session.get_one(ProgramVersion, version_id)
            enrollment = enroll(session, patient, version, rt.window, by=staff, now=when)
            ids = patient.id, enrollment.id, enrollment.next_due_at
    except EnrollmentError as exc:
        fail(str(exc))
    console.print(f"patient {ids[0]} enrolled (enrollment {ids[1]}); first message due {ids[2]}")


@app.command("enroll-csv")
def enroll_csv_cmd(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV with a header.")],
    program: Annotated[str, typer.Option(help="Program slug.")] = "retrain-the-alarm",
    staff: Annotated[str, typer.Option(help="Who records the enrolments and consents.")] = "cli",
    now: NowOption = None,
) -> None:
    """Enrol many patients fast (the bulk path: thousands of rows a second).

    Columns are the enrol form's: first_name, last_name, email, phone, timezone, channel,
    send_time, consent_sms, consent_email, external_ref. Bad rows are listed by line and
    skipped; the rest are stored in chunks of 5,000 rows, one transaction each.
    """
    rt = _runtime()
    version_id = latest_version(rt, program)
    with rt.session() as session:
        version = session.get_one(ProgramVersion, version_id)
        _ = version.steps, version.program
        session.expunge_all()
    freeze_startup_heap()
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            result = bulk_enroll(
                rt.session, csv.DictReader(fh), version, rt.window, by=staff, now=_now(now)
            )
    except UnicodeDecodeError:
        fail(f"{path} is not UTF-8 text")
    for error in result.errors[:200]:
        err.print(f"line {error.line}: {error.message}", highlight=False)
    if len(result.errors) > 200:
        err.print(f"... and {len(result.errors) - 200} more rejected rows")
    console.print(f"enrolled {result.created} patient(s); {len(result.errors)} row(s) rejected")
    if result.errors:
        raise typer.Exit(1)


def _field_errors(exc: ValidationError) -> list[str]:
    out = []
    for e in exc.errors():
        field = ".".join(str(p) for p in e["loc"]) or "patient"
        out.append(f"{field}: {e['msg'].removeprefix('Value error, ')}")
    return out


@app.command()
def tick(
    now: NowOption = None,
    deliver_now: Annotated[
        bool, typer.Option("--deliver/--no-deliver", help="Send planned messages in this process.")
    ] = True,
) -> None:
    """Run one scheduler pass (what Celery beat does every minute)."""
    rt = _runtime()
    when = _now(now)
    results: dict[str, int] = {}

    def dispatch(ids: object) -> None:
        for outbox_id in ids:  # type: ignore[attr-defined]
            outcome = deliver(rt, outbox_id, now=when)
            results[outcome.value] = results.get(outcome.value, 0) + 1

    # Sent here and now: no broker queue to bound, so no dispatch budget either.
    summary = run_tick(rt, now=when, dispatch=dispatch if deliver_now else None, budget=unlimited())
    console.print({**summary.as_dict(), **results})


@app.command()
def reply(
    patient_id: int,
    text: str,
    channel: Annotated[Channel | None, typer.Option(help="Default: the patient's channel.")] = None,
    now: NowOption = None,
) -> None:
    """Record a patient's reply as if it had arrived by SMS or email."""
    rt = _runtime()
    when = _now(now)
    with rt.session() as session:
        patient = session.get(Patient, patient_id)
        if patient is None:
            fail(f"no patient {patient_id}")
        result = receive_reply(
            rt, session, patient, text, channel=channel or patient.preferred_channel, now=when
        )
        parsed = result.parsed
    for outbox_id in result.responses:
        deliver(rt, outbox_id, now=when)
    if parsed is not None:
        console.print(
            f"reply {result.reply_id}: score={parsed.pain_score} "
            f"keywords={sorted(k.value for k in parsed.keywords)} crisis={parsed.crisis}"
        )
    if result.alerts:
        console.print(f"[bold red]staff alerted[/] (alert {', '.join(map(str, result.alerts))})")


@app.command()
def status(now: NowOption = None) -> None:
    """Every enrollment: state, progress, next message and open alerts."""
    rt = _runtime()
    table = Table(
        "patient", "name", "program", "state", "step", "next due (UTC)", "alerts", "check"
    )
    with rt.session() as session:
        rows = session.execute(
            select(Enrollment, Patient, ProgramVersion)
            .join(Patient, Enrollment.patient_id == Patient.id)
            .join(ProgramVersion, Enrollment.version_id == ProgramVersion.id)
            .order_by(Enrollment.id)
        ).all()
        open_alerts = dict(
            session.execute(
                select(Alert.patient_id, func.count(Alert.id))
                .where(Alert.status == "open")
                .group_by(Alert.patient_id)
            )
            .tuples()
            .all()
        )
        unsettled = _unsettled_messages(session)
        for enrollment, patient, version in rows:
            total = sum(1 for s in version.steps if s.track == "main")
            due = (
                enrollment.next_due_at.strftime("%Y-%m-%d %H:%M") if enrollment.next_due_at else "-"
            )
            table.add_row(
                str(patient.id),
                patient.display_name,
                f"{version.program.slug} v{version.version}",
                enrollment.state.value,
                f"{enrollment.main_position}/{total}",
                due,
                str(open_alerts.get(patient.id, 0)),
                unsettled.get(patient.id, ""),
            )
    console.print(table)


def _unsettled_messages(session: Session) -> dict[int, str]:
    """Messages staff must look at: delivery unknown (maybe sent) or failed."""
    counts = session.execute(
        select(OutboxMessage.patient_id, OutboxMessage.status, func.count(OutboxMessage.id))
        .where(outbox_status_in(OUTBOX_UNSETTLED))
        .group_by(OutboxMessage.patient_id, OutboxMessage.status)
    ).tuples()
    out: dict[int, list[str]] = {}
    for patient_id, state, count in counts:
        out.setdefault(patient_id, []).append(f"{count} {state.value}")
    return {pid: ", ".join(parts) for pid, parts in out.items()}


@app.command()
def demo(
    patients: Annotated[int, typer.Option(min=1, max=500, help="How many patients.")] = 5,
    days: Annotated[int, typer.Option(min=1, max=120, help="Simulated days.")] = 42,
    report: Annotated[Path, typer.Option(help="Where to write the HTML report.")] = Path(
        "demo-report.html"
    ),
    seed: Annotated[int, typer.Option(help="Random seed for the scripted replies.")] = 7,
) -> None:
    """Simulate patients on a fast clock on the embedded default and write an HTML report."""
    from campaigns.demo import run_demo

    try:
        settings = get_settings()
    except SettingsError as exc:
        fail(str(exc), 2)
    run_demo(settings, patients=patients, days=days, report_path=report, seed=seed, console=console)


@app.command("export")
def export_cmd(
    patient: Annotated[int | None, typer.Option(help="One patient's id; omit with --all.")] = None,
    all_patients: Annotated[bool, typer.Option("--all", help="Every patient.")] = False,
    out: Annotated[Path, typer.Option(help="JSON file to write.")] = Path("export.json"),
) -> None:
    """Everything stored about one patient (or all), as JSON, for data-subject requests."""
    if (patient is None) == (not all_patients):
        fail("give exactly one of --patient ID or --all")
    rt = _runtime()
    now = utcnow()
    with rt.session() as session:
        ids = (
            [patient]
            if patient is not None
            else list(session.scalars(select(Patient.id).order_by(Patient.id)))
        )
        exports = []
        for patient_id in ids:
            found = session.get(Patient, patient_id)
            if found is None:
                fail(f"no patient {patient_id}")
            exports.append(export_patient(session, found, None, now=now))
    payload = exports[0] if patient is not None else {"patients": exports}
    out.write_text(json.dumps(payload, indent=1, ensure_ascii=False, default=str))
    out.chmod(0o600)
    console.print(f"exported {len(exports)} patient(s) to {out}")


@app.command("purge-patient")
def purge_patient_cmd(
    patient: int,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: this cannot be undone.")] = False,
) -> None:
    """Erase a patient and everything stored about them (a data-subject request)."""
    if not yes:
        fail("erasing a patient cannot be undone: add --yes to confirm")
    rt = _runtime()
    with rt.session() as session:
        if not purge_patient(session, patient, by=None, now=utcnow()):
            fail(f"no patient {patient}")
    console.print(f"patient {patient} and all their data erased")


@app.command()
def doctor() -> None:
    """Check database, migrations, broker, workers, beat and channel credentials."""
    from worker.doctor import Verdict, run_checks

    rt = _runtime()
    checks = run_checks(rt)
    table = Table("check", "", "detail")
    marks = {
        Verdict.OK: "[green]ok[/]",
        Verdict.WARN: "[yellow]warn[/]",
        Verdict.FAIL: "[red]FAIL[/]",
    }
    for check in checks:
        table.add_row(check.name, marks[check.verdict], check.detail)
    console.print(table)
    if any(c.verdict == Verdict.FAIL for c in checks):
        raise typer.Exit(1)


@app.command()
def web(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="Server processes (default CAMPAIGNS_WEB_WORKERS, else 1 on SQLite and "
            "one per CPU on PostgreSQL).",
        ),
    ] = None,
) -> None:
    """Serve the staff app, the JSON API and the provider webhooks."""
    import uvicorn

    from campaigns.web.app import create_app
    from campaigns.web.serving import serve_processes, worker_count

    rt = _runtime()  # checks the settings once, and makes any development keys ...
    rt.settings.signing_key  # noqa: B018  ... before several processes start at once
    count = worker_count(rt.settings, workers)
    if count == 1:
        uvicorn.run(create_app(rt), host=host, port=port, proxy_headers=True)
        return
    rt.engine.dispose()  # each worker builds its own runtime (and pool) from the same settings
    serve_processes(host, port, count)


@app.command("poll-imap")
def poll_imap(
    once: Annotated[
        bool, typer.Option("--once", help="Poll one time and exit (e.g. from cron).")
    ] = False,
    interval: Annotated[
        float, typer.Option(min=5, help="Seconds between polls when running continuously.")
    ] = 60.0,
) -> None:
    """Record patients' email replies from the CAMPAIGNS_IMAP_* mailbox."""
    from time import sleep

    from campaigns.channels.imap_poll import ImapConfig, ImapError, ImapPoller

    rt = _runtime()
    try:
        poller = ImapPoller(rt, ImapConfig.from_settings(rt.settings))
    except ValueError as exc:
        fail(str(exc), 2)
    while True:
        try:
            console.print(poller.poll_once().as_dict())
        except ImapError as exc:
            if once:
                fail(str(exc))
            err.print(f"[yellow]warning:[/] {exc}; trying again in {interval:g}s")
        if once:
            return
        sleep(interval)


if __name__ == "__main__":
    app()
