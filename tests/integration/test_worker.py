"""A real Celery worker process runs the tick and the sends, on the embedded broker and Redis."""

from __future__ import annotations

import json
import time as clock
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import select, update
from sqlalchemy.engine import make_url

from campaigns.enums import MessageStatus
from campaigns.models import Enrollment, OutboxMessage, utcnow
from campaigns.runtime import Runtime, build_runtime
from campaigns.tick_lock import sole_tick
from config.settings import Settings
from tests.conftest import REDIS_URL, make_settings, require_service
from tests.factories import load_program, make_enrollment
from tests.fakes.tcp_proxy import TcpProxy
from tests.faults_support import wait_for
from tests.servers import celery_worker
from worker.app import create_app

pytestmark = pytest.mark.slow


def _noon_zone() -> str:
    """An IANA zone where it is about midday now, so the send window is open."""
    offset = 12 - utcnow().hour
    offset = (offset + 12) % 24 - 12
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


@pytest.fixture(params=["embedded", "redis"])
def broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "embedded":
        return f"sqla+sqlite:///{tmp_path / 'broker.db'}"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
        client.flushdb()
    except redis.RedisError as exc:
        require_service("Redis", exc)
    finally:
        client.close()  # an unclosed socket fails the session under filterwarnings=error
    return REDIS_URL


@pytest.fixture
def worker(rt: Runtime, broker_url: str, tmp_path: Path) -> Iterator[Settings]:
    settings = rt.settings.model_copy(update={"broker_url": broker_url})
    with celery_worker(settings, tmp_path / "worker.log"):
        yield settings


def _ready_processes(log: Path) -> list[dict[str, object]]:
    """The pool processes' "ready" lines, each one JSON object on a line of its own: not
    re-logged through Celery's stdout redirect (which labelled every line a WARNING)."""
    lines = log.read_text(errors="replace").splitlines()
    ours = [line for line in lines if '"event": ' in line]
    assert ours and all(line.startswith("{") for line in ours), ours
    return [json.loads(line) for line in lines if '"worker process ready"' in line]


def test_worker_ticks_and_sends_each_message_once(
    rt: Runtime, worker: Settings, tmp_path: Path
) -> None:
    version = load_program(rt)
    now = utcnow()
    for _ in range(3):
        make_enrollment(rt, version, now=now, timezone=_noon_zone())
    with rt.session() as session:
        session.execute(update(Enrollment).values(next_due_at=now - timedelta(minutes=1)))
    app = create_app(worker)
    app.send_task("campaigns.tick")
    app.send_task("campaigns.tick")  # a double-fired beat must not duplicate anything
    deadline = clock.monotonic() + 90
    statuses: list[MessageStatus] = []
    while clock.monotonic() < deadline:
        with rt.session() as session:
            statuses = list(session.scalars(select(OutboxMessage.status)))
        if len(statuses) >= 3 and all(s == MessageStatus.SENT for s in statuses):
            break
        clock.sleep(0.5)
    app.close()
    assert statuses == [MessageStatus.SENT] * 3
    sms = list((worker.resolved_outbox_dir / "sms").glob("*.json"))
    assert len(sms) == 3
    ready = _ready_processes(tmp_path / "worker.log")
    assert len({entry["pid"] for entry in ready}) == 2, "both pool processes were set up"
    # Each froze its start-up heap (runtime included) so full collections skip it.
    assert all(int(str(entry["frozen_objects"])) > 50_000 for entry in ready), ready


def test_tick_retries_with_backoff_after_the_database_was_unreachable(
    pg_url: str, tmp_path: Path
) -> None:
    """The worker's database refuses connections at first: the tick task is retried (with
    backoff and jitter) instead of being lost, and goes through once the database is back."""
    settings = make_settings(tmp_path, pg_url)
    rt = build_runtime(settings)
    version = load_program(rt)
    now = utcnow()
    make_enrollment(rt, version, now=now, timezone=_noon_zone())
    with rt.session() as session:
        session.execute(update(Enrollment).values(next_due_at=now - timedelta(minutes=1)))
    target = make_url(pg_url)
    proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    proxied = target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    broker = f"sqla+sqlite:///{tmp_path / 'broker.db'}"
    on_worker = settings.model_copy(update={"database_url": proxied, "broker_url": broker})
    log = tmp_path / "worker.log"
    app = create_app(on_worker)
    try:
        with celery_worker(on_worker, log):
            app.send_task("campaigns.tick")
            wait_for(lambda: _retries(log), timeout=60, what="the tick to be retried")
            proxy.open()
            wait_for(lambda: _statuses(rt) == [MessageStatus.SENT], timeout=90, what="the send")
    finally:
        app.close()
        proxy.close()
        rt.engine.dispose()
    retries = _retries(log)
    assert retries and all("OperationalError" in line for line in retries), retries
    assert "campaigns.tick" in retries[0]


def _retries(log: Path) -> list[str]:
    text = log.read_text(errors="replace") if log.exists() else ""
    return [line for line in text.splitlines() if " retry: Retry in " in line]


def _statuses(rt: Runtime) -> list[MessageStatus]:
    with rt.session() as session:
        return list(session.scalars(select(OutboxMessage.status)))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_on_sqlite_a_tick_finding_another_running_skips_and_the_next_one_runs(
    rt: Runtime, worker: Settings, tmp_path: Path
) -> None:
    version = load_program(rt)
    now = utcnow()
    make_enrollment(rt, version, now=now, timezone=_noon_zone())
    with rt.session() as session:
        session.execute(update(Enrollment).values(next_due_at=now - timedelta(minutes=1)))
    log = tmp_path / "worker.log"
    app = create_app(worker)
    try:
        with sole_tick(worker.resolved_database_url) as alone:  # "another tick" is running
            assert alone
            app.send_task("campaigns.tick")
            wait_for(lambda: '"tick skipped"' in log.read_text(errors="replace"), timeout=60,
                     what="the tick to skip")  # fmt: skip
            assert _statuses(rt) == []
        app.send_task("campaigns.tick")
        wait_for(lambda: _statuses(rt) == [MessageStatus.SENT], timeout=90, what="the send")
    finally:
        app.close()
