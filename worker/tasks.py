"""Thin tasks: take ids, call one domain function, report a small summary.

Every task retries transient infrastructure errors (database connection lost, Redis down)
with exponential backoff and jitter, so a restart of either does not drop work and a fleet
of workers does not retry in lockstep. This is safe because every task is idempotent: the
tick claims by due time, and a send claims ``planned -> sending`` conditionally, so a retried
send never re-sends a row it already claimed. Provider errors are not retried here: the
outbox records them and the tick's redispatch sweep retries them after a back-off.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from celery.signals import worker_init, worker_process_init
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

from campaigns.channels.imap_poll import ImapConfig, ImapError, ImapPoller
from campaigns.clock import now as clock_now
from campaigns.data_care import expire_reply_text
from campaigns.heap import freeze_startup_heap
from campaigns.heartbeats import TICK, beat
from campaigns.logs import configure as configure_logging
from campaigns.logs import get_logger
from campaigns.outbox import (
    SEND_BATCH_SIZE,
    DeliveryResult,
    deliver,
    deliver_batch,
    sweep_stale_sending,
)
from campaigns.runtime import Runtime, build_runtime
from campaigns.scheduler import tick
from campaigns.tick_lock import sole_tick
from config.beat import POLL_INBOX_TASK, RETENTION_TASK, SWEEP_TASK, TICK_TASK
from config.settings import get_settings
from worker.app import SEND_BATCH_TASK, SEND_TASK, app

#: Errors that say "try again shortly", not "this input is wrong".
TRANSIENT_ERRORS = (
    OperationalError,
    InterfaceError,
    DisconnectionError,
    RedisConnectionError,
    RedisTimeoutError,
)
#: Backoff 1, 2, 4 ... s (each a random share of that, ``retry_jitter``), at most 60 s apart.
RETRY_POLICY: dict[str, Any] = {
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": True,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 8,
}


log = get_logger(__name__)


@lru_cache(maxsize=1)
def runtime() -> Runtime:
    configure_logging()
    return build_runtime(get_settings())


@worker_init.connect  # type: ignore[untyped-decorator]
def _freeze_before_fork(**_: object) -> None:
    """The pool's processes are forked from here: a frozen heap is one they share untouched."""
    freeze_startup_heap()


@worker_process_init.connect  # type: ignore[untyped-decorator]
def _ready_process(**_: object) -> None:
    """Build the runtime now, not at the first task, so it is frozen with the rest."""
    runtime()
    log.info("worker process ready", pid=os.getpid(), frozen_objects=freeze_startup_heap())


def utcnow() -> datetime:
    return clock_now(runtime().settings.clock_file)


def enqueue_sends(outbox_ids: Sequence[int]) -> None:
    """One ``send_batch`` task per ``SEND_BATCH_SIZE`` ids: a few statements per claim
    instead of ~18 per message, and one task per 500 messages on the broker."""
    ids = list(outbox_ids)
    for start in range(0, len(ids), SEND_BATCH_SIZE):
        send_batch_task.delay(ids[start : start + SEND_BATCH_SIZE])


@app.task(name=TICK_TASK, **RETRY_POLICY)  # type: ignore[untyped-decorator]
def tick_task() -> dict[str, int]:
    rt = runtime()
    with sole_tick(rt.settings.resolved_database_url) as alone:
        if not alone:
            log.info("tick skipped", reason="another tick is running on this database")
            return {"skipped": 1}
        started = time.perf_counter()
        summary = tick(rt, now=utcnow(), dispatch=enqueue_sends).as_dict()
        with rt.session() as session:
            beat(session, TICK, now=utcnow(), seconds=time.perf_counter() - started, **summary)
    return summary


@app.task(name=SEND_TASK, **RETRY_POLICY)  # type: ignore[untyped-decorator]
def send_task(outbox_id: int) -> str:
    """One row; kept for messages already queued by older versions and for replies."""
    result: DeliveryResult = deliver(runtime(), outbox_id, now=utcnow())
    return result.value


@app.task(name=SEND_BATCH_TASK, **RETRY_POLICY)  # type: ignore[untyped-decorator]
def send_batch_task(outbox_ids: list[int]) -> dict[str, int]:
    results = deliver_batch(runtime(), outbox_ids, now=utcnow())
    return dict(Counter(r.value for r in results.values()))


@app.task(name=SWEEP_TASK, **RETRY_POLICY)  # type: ignore[untyped-decorator]
def sweep_task() -> int:
    rt = runtime()
    stale = timedelta(minutes=rt.settings.sending_stale_minutes)
    with rt.session() as session:
        return sweep_stale_sending(session, now=utcnow(), stale_after=stale)


@app.task(name=RETENTION_TASK, **RETRY_POLICY)  # type: ignore[untyped-decorator]
def retention_task() -> int:
    rt = runtime()
    keep = rt.settings.reply_retention_days
    if keep is None:
        return 0
    with rt.session() as session:
        return expire_reply_text(session, now=utcnow(), keep_days=keep)


@app.task(name=POLL_INBOX_TASK, **RETRY_POLICY)  # type: ignore[untyped-decorator]
def poll_inbox_task() -> dict[str, int]:
    """Email replies from the IMAP mailbox; a mailbox that is down waits for the next poll
    (the messages stay there, so nothing is lost)."""
    rt = runtime()
    try:
        return ImapPoller(rt, ImapConfig.from_settings(rt.settings)).poll_once().as_dict()
    except (ImapError, ValueError) as exc:
        log.warning("poll-inbox-failed", reason=str(exc))
        return {"failed": 1}
