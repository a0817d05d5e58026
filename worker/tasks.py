"""Thin tasks: take ids, call one domain function, report a small summary."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import lru_cache

from campaigns.clock import now as clock_now
from campaigns.data_care import expire_reply_text
from campaigns.heartbeats import TICK, beat
from campaigns.logs import configure as configure_logging
from campaigns.outbox import DeliveryResult, deliver, sweep_stale_sending
from campaigns.runtime import Runtime, build_runtime
from campaigns.scheduler import tick
from config.beat import RETENTION_TASK, SWEEP_TASK, TICK_TASK
from config.settings import get_settings
from worker.app import SEND_TASK, app


@lru_cache(maxsize=1)
def runtime() -> Runtime:
    configure_logging()
    return build_runtime(get_settings())


def utcnow() -> datetime:
    return clock_now(runtime().settings.clock_file)


def enqueue_sends(outbox_ids: Sequence[int]) -> None:
    for outbox_id in outbox_ids:
        send_task.delay(outbox_id)


@app.task(name=TICK_TASK)  # type: ignore[untyped-decorator]
def tick_task() -> dict[str, int]:
    rt = runtime()
    started = time.perf_counter()
    summary = tick(rt, now=utcnow(), dispatch=enqueue_sends).as_dict()
    with rt.session() as session:
        beat(session, TICK, now=utcnow(), seconds=time.perf_counter() - started, **summary)
    return summary


@app.task(name=SEND_TASK)  # type: ignore[untyped-decorator]
def send_task(outbox_id: int) -> str:
    result: DeliveryResult = deliver(runtime(), outbox_id, now=utcnow())
    return result.value


@app.task(name=SWEEP_TASK)  # type: ignore[untyped-decorator]
def sweep_task() -> int:
    rt = runtime()
    stale = timedelta(minutes=rt.settings.sending_stale_minutes)
    with rt.session() as session:
        return sweep_stale_sending(session, now=utcnow(), stale_after=stale)


@app.task(name=RETENTION_TASK)  # type: ignore[untyped-decorator]
def retention_task() -> int:
    rt = runtime()
    keep = rt.settings.reply_retention_days
    if keep is None:
        return 0
    with rt.session() as session:
        return expire_reply_text(session, now=utcnow(), keep_days=keep)
