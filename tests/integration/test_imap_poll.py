"""The IMAP poller against a protocol-correct fake IMAP4rev1 server on a real socket."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from campaigns.channels.imap_poll import ImapConfig, ImapError, ImapPoller, ImapSecurity
from campaigns.cli import app as cli
from campaigns.db import make_engine
from campaigns.enums import Channel, EnrollmentState, MessagePurpose, MessageStatus
from campaigns.models import Enrollment, InboundReply, OutboxMessage, Patient
from campaigns.outbox import deliver
from campaigns.runtime import Runtime
from campaigns.scheduler import tick
from config.beat import POLL_INBOX_TASK
from config.settings import get_settings
from tests.factories import load_program, make_enrollment
from tests.fakes.imap_server import PASSWORD, USERNAME, Mailbox, imap_server
from tests.fakes.mail_clients import gmail, outlook
from tests.fakes.smtp_server import configure_email
from tests.fakes.tls import Certificates, make_certificates
from tests.faults_support import wait_for
from tests.servers import celery_worker
from worker.app import create_app as create_worker_app

MONDAY = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)  # 00:00 in New York
DAY1_SEND = MONDAY + timedelta(hours=10)
SEEN, FLAGGED = "\\Seen", "\\Flagged"


@pytest.fixture
def clinic(rt: Runtime) -> Runtime:
    configure_email(rt)
    return rt


@pytest.fixture
def certs(tmp_path: Path) -> Certificates:
    return make_certificates(tmp_path / "tls")


def config(port: int, security: ImapSecurity = "none", **overrides: str) -> ImapConfig:
    values = {"username": USERNAME, "password": PASSWORD, **overrides}
    return ImapConfig("127.0.0.1", port=port, security=security, timeout=5, **values)


def emailed(rt: Runtime) -> tuple[int, EmailMessage, str]:
    """An email patient who got day 1: (patient id, the email as sent, their address)."""
    version = load_program(rt)
    patient_id, _ = make_enrollment(rt, version, now=MONDAY, channel=Channel.EMAIL)

    def dispatch(ids: Sequence[int]) -> None:
        for outbox_id in ids:
            deliver(rt, outbox_id, now=DAY1_SEND)

    [outbox_id] = tick(rt, now=DAY1_SEND, dispatch=dispatch).planned
    path = rt.settings.resolved_outbox_dir / "email" / f"{outbox_id:09d}.eml"
    mime = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert isinstance(mime, EmailMessage)
    with rt.session() as session:
        email = session.get_one(Patient, patient_id).email
    assert email is not None
    return patient_id, mime, email


def stored(rt: Runtime) -> list[str]:
    with rt.session() as session:
        return list(session.scalars(select(InboundReply.raw_text).order_by(InboundReply.id)))


def not_a_reply() -> bytes:
    message = EmailMessage()
    message["From"] = "newsletter@shop.example"
    message["To"] = "care@clinic.example"
    message["Subject"] = "50% off"
    message["Message-ID"] = "<promo-1@shop.example>"
    message.set_content("Stop by our store")
    return message.as_bytes()


def test_unseen_replies_are_stored_and_only_then_marked_seen(clinic: Runtime) -> None:
    _, original, email = emailed(clinic)
    mailbox = Mailbox()
    reply_uid = mailbox.add(gmail(original, email, "pain 4, better today"))
    old_uid = mailbox.add(outlook(original, email, "old news"), SEEN)
    with imap_server(mailbox) as server:
        summary = ImapPoller(clinic, config(server.port)).poll_once()
    assert (summary.fetched, summary.stored) == (1, 1)
    assert stored(clinic) == ["pain 4, better today"]
    assert mailbox.flags(reply_uid) == {SEEN} and mailbox.flags(old_uid) == {SEEN}
    fetches = [c for c in mailbox.commands if c.startswith("UID FETCH")]
    assert fetches == [f"UID FETCH {reply_uid} (BODY.PEEK[])"]


def test_a_database_failure_leaves_the_message_unseen_for_the_next_poll(clinic: Runtime) -> None:
    _, original, email = emailed(clinic)
    mailbox = Mailbox()
    uid = mailbox.add(gmail(original, email, "7, awful flare"))
    down = make_engine("postgresql+psycopg://postgres@127.0.0.1:9/none?connect_timeout=2")
    broken = dataclasses.replace(clinic, engine=down)
    with imap_server(mailbox) as server:
        failed = ImapPoller(broken, config(server.port)).poll_once()
        assert (failed.failed, mailbox.flags(uid)) == (1, set())
        retried = ImapPoller(clinic, config(server.port)).poll_once()
    down.dispose()
    assert retried.stored == 1 and mailbox.flags(uid) == {SEEN}
    assert stored(clinic) == ["7, awful flare"]


def test_mail_that_answers_nothing_is_flagged_for_staff_and_not_read_again(
    clinic: Runtime,
) -> None:
    emailed(clinic)
    mailbox = Mailbox()
    uid = mailbox.add(not_a_reply())
    with imap_server(mailbox) as server:
        poller = ImapPoller(clinic, config(server.port))
        first, second = poller.poll_once(), poller.poll_once()
    assert (first.rejected, second.fetched) == (1, 0)
    assert mailbox.flags(uid) == {SEEN, FLAGGED}
    assert stored(clinic) == []


def test_the_same_message_twice_is_stored_once_and_both_are_marked_seen(
    clinic: Runtime,
) -> None:
    _, original, email = emailed(clinic)
    raw = gmail(original, email, "5")
    mailbox = Mailbox()
    uids = [mailbox.add(raw), mailbox.add(raw)]
    with imap_server(mailbox) as server:
        summary = ImapPoller(clinic, config(server.port)).poll_once()
    assert (summary.stored, summary.duplicates) == (1, 1)
    assert [mailbox.flags(uid) for uid in uids] == [{SEEN}, {SEEN}]


def test_stop_by_email_is_honoured_and_confirmed(clinic: Runtime) -> None:
    patient_id, original, email = emailed(clinic)
    mailbox = Mailbox()
    mailbox.add(outlook(original, email, "Stop"))
    with imap_server(mailbox) as server:
        ImapPoller(clinic, config(server.port)).poll_once()
    with clinic.session() as session:
        state = session.scalar(select(Enrollment.state).where(Enrollment.patient_id == patient_id))
        confirmation = session.scalars(
            select(OutboxMessage).where(OutboxMessage.purpose == MessagePurpose.CONFIRMATION)
        ).one()
    assert state == EnrollmentState.OPTED_OUT
    assert confirmation.status == MessageStatus.SENT


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_tls_connections_verify_the_server(
    clinic: Runtime, certs: Certificates, security: ImapSecurity
) -> None:
    _, original, email = emailed(clinic)
    mailbox = Mailbox()
    mailbox.add(gmail(original, email, "3"))
    with imap_server(mailbox, security, tls=certs.server_context()) as server:
        untrusting = ImapPoller(clinic, config(server.port, security))
        with pytest.raises(ImapError):
            untrusting.poll_once()
        trusting = ImapPoller(
            clinic, config(server.port, security), ssl_context=certs.client_context()
        )
        assert trusting.poll_once().stored == 1
    # The fake refuses LOGIN before STARTTLS, so the stored reply proves TLS came first.


def test_a_wrong_password_is_an_error_that_names_no_secret(clinic: Runtime) -> None:
    with imap_server(Mailbox()) as server, pytest.raises(ImapError) as raised:
        ImapPoller(clinic, config(server.port, password="hunter2")).poll_once()
    assert "hunter2" not in str(raised.value) and USERNAME not in str(raised.value)


# --- the command ----------------------------------------------------------------------------


@pytest.fixture
def cli_env(clinic: Runtime, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    settings = clinic.settings
    monkeypatch.setenv("CAMPAIGNS_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("CAMPAIGNS_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("CAMPAIGNS_SECRET_KEY", settings.signing_key.decode())
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_poll_imap_command_reads_the_mailbox_once(
    clinic: Runtime, cli_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, original, email = emailed(clinic)
    mailbox = Mailbox()
    mailbox.add(gmail(original, email, "6"))
    with imap_server(mailbox) as server:
        for name, value in {
            "HOST": "127.0.0.1",
            "PORT": str(server.port),
            "SECURITY": "none",
            "USERNAME": USERNAME,
            "PASSWORD": PASSWORD,
        }.items():
            monkeypatch.setenv(f"CAMPAIGNS_IMAP_{name}", value)
        get_settings.cache_clear()
        result = CliRunner().invoke(cli, ["poll-imap", "--once"])
    assert result.exit_code == 0, result.output
    assert "'stored': 1" in result.output
    assert stored(clinic) == ["6"]


def test_poll_imap_without_settings_names_what_is_missing(cli_env: None) -> None:
    result = CliRunner().invoke(cli, ["poll-imap", "--once"])
    assert result.exit_code == 2
    assert "CAMPAIGNS_IMAP_HOST" in result.output and "CAMPAIGNS_IMAP_PASSWORD" in result.output


# --- the worker task ------------------------------------------------------------------------


def test_a_real_worker_polls_the_inbox_on_the_replies_queue(
    clinic: Runtime, tmp_path: Path
) -> None:
    _, original, email = emailed(clinic)
    mailbox = Mailbox()
    mailbox.add(gmail(original, email, "5 today"))
    with imap_server(mailbox) as server:
        env = {
            "CAMPAIGNS_IMAP_HOST": "127.0.0.1",
            "CAMPAIGNS_IMAP_PORT": str(server.port),
            "CAMPAIGNS_IMAP_SECURITY": "none",
            "CAMPAIGNS_IMAP_USERNAME": USERNAME,
            "CAMPAIGNS_IMAP_PASSWORD": PASSWORD,
        }
        settings = clinic.settings.model_copy(update={"imap_host": "127.0.0.1"})
        celery = create_worker_app(settings)
        assert celery.conf.beat_schedule["poll-inbox"]["task"] == POLL_INBOX_TASK
        assert celery.conf.task_routes[POLL_INBOX_TASK] == {"queue": "replies"}
        with celery_worker(settings, tmp_path / "worker.log", extra_env=env):
            celery.send_task(POLL_INBOX_TASK)
            wait_for(lambda: stored(clinic) == ["5 today"], timeout=60, what="the polled reply")
    assert "poll-inbox" not in create_worker_app(clinic.settings).conf.beat_schedule
