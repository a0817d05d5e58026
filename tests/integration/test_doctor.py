"""``campaigns doctor`` names what is wrong, checked against real services and peers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from sqlalchemy import text

from bench.common import BENCH_NOW
from bench.datagen import populate
from campaigns.channels.smtp_email import SmtpConfig, SmtpEmailTransport
from campaigns.channels.twilio_sms import TwilioSmsTransport
from campaigns.email_headers import EmailIdentity
from campaigns.enums import Channel
from campaigns.runtime import Runtime, build_runtime
from tests.conftest import REDIS_URL, make_settings, require_service
from tests.fakes import twilio_api
from tests.fakes.smtp_server import PASSWORD, USERNAME, smtp_server
from tests.fakes.tls import make_certificates
from tests.servers import celery_worker, free_port
from worker.app import create_app
from worker.doctor import (
    Check,
    Verdict,
    check_channels,
    check_migrations,
    check_statistics,
    run_checks,
)


def _by_name(rt: Runtime) -> dict[str, Verdict]:
    return {c.name: c.verdict for c in run_checks(rt)}


def test_a_fresh_embedded_install_reports_missing_worker_and_beat(rt: Runtime) -> None:
    verdicts = _by_name(rt)
    assert verdicts["database"] == verdicts["migrations"] == verdicts["broker"] == Verdict.OK
    assert verdicts["workers"] == verdicts["beat"] == Verdict.FAIL
    assert verdicts["smtp"] == verdicts["twilio"] == Verdict.WARN


def test_an_unmigrated_database_says_to_run_init(tmp_path: Path, rt: Runtime) -> None:
    empty = build_runtime(
        rt.settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'empty.db'}"})
    )
    check = check_migrations(empty)
    empty.engine.dispose()
    assert check.verdict == Verdict.FAIL
    assert "campaigns init" in check.detail


def test_smtp_and_twilio_credentials_are_probed_without_sending(
    rt: Runtime, tmp_path: Path
) -> None:
    certs = make_certificates(tmp_path / "tls")
    with (
        smtp_server("starttls", tls=certs.server_context(), require_auth=True) as server,
        twilio_api.running() as fake,
    ):
        identity = EmailIdentity.from_settings(rt.settings)
        good = SmtpEmailTransport(
            SmtpConfig("127.0.0.1", server.port, "starttls", USERNAME, PASSWORD, timeout=5),
            identity,
            ssl_context=certs.client_context(),
        )
        twilio = TwilioSmsTransport(
            account_sid=fake.account_sid,
            auth_token=fake.auth_token,
            status_callback="https://clinic.example/s",
            messaging_service_sid="MG" + "0" * 32,
            api_base_url=fake.base_url,
        )
        rt.transports = {Channel.EMAIL: good, Channel.SMS: twilio}
        ok = {c.name: c for c in check_channels(rt)}
        rt.transports[Channel.EMAIL] = SmtpEmailTransport(
            SmtpConfig("127.0.0.1", server.port, "starttls", USERNAME, "wrong", timeout=5),
            identity,
            ssl_context=certs.client_context(),
        )
        rt.transports[Channel.SMS] = TwilioSmsTransport(
            account_sid=fake.account_sid,
            auth_token="wrong-token",
            status_callback="https://clinic.example/s",
            messaging_service_sid="MG" + "0" * 32,
            api_base_url=fake.base_url,
        )
        bad = {c.name: c for c in check_channels(rt)}
        twilio.close()
        assert server.handler.received == []  # probing sends no mail
    assert ok["smtp"].verdict == ok["twilio"].verdict == Verdict.OK
    assert bad["smtp"].verdict == bad["twilio"].verdict == Verdict.FAIL
    assert "20003" in bad["twilio"].detail
    assert fake.requests == []  # nothing was sent


@pytest.mark.slow
def test_a_running_worker_and_a_recent_tick_are_healthy(rt: Runtime, tmp_path: Path) -> None:
    broker = REDIS_URL.rsplit("/", 1)[0] + "/12"  # its own database: other tests flush theirs
    try:
        redis.Redis.from_url(broker).ping()
    except redis.RedisError as exc:
        require_service("Redis", exc)
    redis.Redis.from_url(broker).flushdb()
    settings = rt.settings.model_copy(update={"broker_url": broker})
    with celery_worker(settings, tmp_path / "worker.log", concurrency=1):
        checked = build_runtime(settings)
        app = create_app(settings)
        app.send_task("campaigns.tick")
        deadline = time.monotonic() + 60
        verdicts: dict[str, Verdict] = {}
        while time.monotonic() < deadline:
            verdicts = _by_name(checked)
            if verdicts["workers"] == verdicts["beat"] == Verdict.OK:
                break
            time.sleep(1)
        app.close()
    assert verdicts["workers"] == Verdict.OK
    assert verdicts["beat"] == Verdict.OK


def test_stale_postgresql_statistics_and_autovacuum_are_named(pg_url: str, tmp_path: Path) -> None:
    """A table changed past its statistics is named until an ANALYZE; a server or table
    without autovacuum is named whatever the statistics."""
    rt = build_runtime(make_settings(tmp_path, pg_url))
    populate(rt, 3000, now=BENCH_NOW)
    rt.engine.dispose()  # a backend reports its counts to the statistics when it ends
    wait_for_detail(rt, "consents (3,000 rows changed)")  # the load's counts have arrived
    with rt.engine.begin() as conn:
        conn.execute(text("ANALYZE"))
        autovacuum = conn.execute(text("SELECT current_setting('autovacuum')")).scalar() == "on"
        conn.execute(text("ALTER TABLE outbox SET (autovacuum_enabled = false)"))
        conn.execute(text("ALTER TABLE pain_reports SET (autovacuum_enabled = off)"))
        conn.execute(text("UPDATE enrollments SET row_version = row_version + 1"))
    rt.engine.dispose()

    stale = wait_for_detail(rt, "enrollments (3,000 rows changed)")
    assert "statistics are stale for enrollments (3,000 rows changed):" in stale.detail, stale
    assert stale.verdict == Verdict.WARN
    assert "autovacuum is off for outbox, pain_reports;" in stale.detail
    assert ("autovacuum is off on the server" in stale.detail) is not autovacuum
    with rt.engine.begin() as conn:
        conn.execute(text("ANALYZE"))
        conn.execute(text("ALTER TABLE outbox RESET (autovacuum_enabled)"))
        conn.execute(text("ALTER TABLE pain_reports SET (autovacuum_enabled = on)"))
    fresh = check_statistics(rt)
    assert "stale" not in fresh.detail and "autovacuum is off for" not in fresh.detail, fresh
    assert fresh.verdict == (Verdict.OK if autovacuum else Verdict.WARN), fresh
    rt.engine.dispose()


def wait_for_detail(rt: Runtime, wanted: str) -> Check:
    """Statistics counters reach the server up to a second after a backend's work."""
    deadline = time.monotonic() + 10
    while True:
        check = check_statistics(rt)
        if wanted in check.detail or time.monotonic() > deadline:
            return check
        time.sleep(0.1)


def test_statistics_of_an_unreachable_postgresql_fail_without_hiding_other_checks(
    tmp_path: Path,
) -> None:
    rt = build_runtime(
        make_settings(tmp_path, f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none")
    )
    checks = {c.name: c for c in run_checks(rt)}
    assert checks["statistics"].verdict == Verdict.FAIL, checks["statistics"]
    assert "cannot read" in checks["statistics"].detail
    # ... and the rest are still reported, those that read the database as failed
    assert checks["database"].verdict == checks["beat"].verdict == Verdict.FAIL
    assert checks["smtp"].verdict == checks["twilio"].verdict == Verdict.WARN
    rt.engine.dispose()
