"""B3 claim -> render -> in-process transport -> mark sent, with real program templates.

Ours: the product's ``tick`` (claims, per-batch consent and score lookups, pacing, rendering
with cached sandboxed templates, outbox rows inserted per batch) then ``deliver_batch`` in the
send tasks' chunks. Baseline: the same
steps with a freshly compiled template set per message and one commit per row.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from datetime import time as dtime
from typing import Any

from sqlalchemy import func, select, text, update

from bench.common import Figure
from bench.datagen import version_of
from campaigns.claims import claim_due
from campaigns.composer import base_context, program_context
from campaigns.enums import Channel, MessageStatus
from campaigns.heap import freeze_startup_heap
from campaigns.models import Enrollment, OutboxMessage, Patient, ProgramVersion
from campaigns.outbox import SEND_BATCH_SIZE, DeliveryResult, deliver, deliver_batch
from campaigns.rendering import TemplateLibrary
from campaigns.runtime import Runtime
from campaigns.scheduler import process, tick

GOAL_PER_S = 10_000.0


def make_due(rt: Runtime, count: int, *, now: datetime) -> None:
    """The first ``count`` enrollments fall due now, their patients all at 09:00."""
    with rt.session() as session:
        session.execute(
            update(Enrollment)
            .where(Enrollment.id <= count)
            .values(next_due_at=now - timedelta(minutes=1))
        )
        session.execute(update(Patient).where(Patient.id <= count).values(send_time=dtime(9, 0)))


def _deliver_all(rt: Runtime, ids: list[int], now: datetime) -> int:
    return sum(deliver(rt, i, now=now) == DeliveryResult.SENT for i in ids)


def baseline(rt: Runtime, count: int, *, now: datetime) -> tuple[int, float]:
    """Per message: compile the templates afresh, one transaction per row, then send."""
    sent = 0
    start = time.perf_counter()
    for _ in range(count):
        library = TemplateLibrary(rt.settings.templates_dir, shared_renders=False)
        fresh = dataclasses.replace(rt, templates=library)
        with rt.session() as session:
            due = claim_due(session, now=now, limit=1)
            planned = process(fresh, session, due[0], now=now) if due else None
        if planned is not None:
            sent += _deliver_all(rt, [planned], now)
    return sent, time.perf_counter() - start


def _deliver_batches(rt: Runtime, ids: list[int], now: datetime) -> int:
    """What the ``campaigns.send_batch`` tasks do, in chunks of the tick's dispatch."""
    sent = 0
    for start in range(0, len(ids), SEND_BATCH_SIZE):
        results = deliver_batch(rt, ids[start : start + SEND_BATCH_SIZE], now=now)
        sent += sum(r == DeliveryResult.SENT for r in results.values())
    return sent


def ours(rt: Runtime, *, now: datetime) -> tuple[int, float, float]:
    planned: list[int] = []
    start = time.perf_counter()
    tick(rt, now=now, dispatch=planned.extend)
    mid = time.perf_counter()
    sent = _deliver_batches(rt, planned, now)
    return sent, time.perf_counter() - start, mid - start


def render_ceiling(rt: Runtime, version_id: int, count: int) -> float:
    """Bare cached renders/s of the same step, 4 SMS : 1 email like the generated patients
    (every message rendered in full, without the shared renders ``tick`` uses)."""
    version = version_of(rt, version_id)
    library = TemplateLibrary(rt.settings.templates_dir, shared_renders=False)
    key = version.steps[0].key
    ctx = step_context(rt, version)
    channels = [Channel.EMAIL if i % 5 == 0 else Channel.SMS for i in range(count)]
    library.render_step(version.id, version.files, key, Channel.EMAIL, ctx)
    start = time.perf_counter()
    for channel in channels:
        library.render_step(version.id, version.files, key, channel, ctx)
    return count / (time.perf_counter() - start)


def step_context(rt: Runtime, version: ProgramVersion) -> dict[str, Any]:
    """A context the program's step templates render with: the first patient's, on day 1."""
    with rt.session() as session:
        patient = session.get_one(Patient, 1)
        ctx = base_context(rt, patient, Channel.SMS)
    ctx["program"] = program_context(version, 1)
    ctx["trend"] = {"latest": None, "baseline": None, "direction": "unknown"}
    return ctx


def warm(rt: Runtime, version_ids: Iterable[int]) -> None:
    """What a worker process that has run for a while has: every step's templates compiled
    (with their shared renders) and a pooled connection."""
    for version_id in version_ids:
        version = version_of(rt, version_id)
        ctx = step_context(rt, version)
        for step in version.steps:
            for channel in Channel:
                rt.templates.render_step(version.id, version.files, step.key, channel, ctx)


def insert_ceiling(rt: Runtime, count: int) -> float:
    """Raw executemany of outbox-sized rows into a scratch table, one transaction."""
    body = "x" * 300
    rows = [(i, i, body, "sent") for i in range(1, count + 1)]
    raw = rt.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("DROP TABLE IF EXISTS bench_scratch")
        cur.execute(
            "CREATE TABLE bench_scratch (id INTEGER PRIMARY KEY, patient_id INTEGER,"
            " body_text TEXT, status VARCHAR(16))"
        )
        raw.commit()
        mark = "?" if rt.engine.dialect.name == "sqlite" else "%s"
        start = time.perf_counter()
        if rt.engine.dialect.name == "sqlite":
            cur.execute("BEGIN")
        cur.executemany(f"INSERT INTO bench_scratch VALUES ({mark}, {mark}, {mark}, {mark})", rows)
        raw.commit()
        elapsed = time.perf_counter() - start
        cur.execute("DROP TABLE bench_scratch")
        raw.commit()
    finally:
        raw.close()
    return count / elapsed


def run(
    rt: Runtime, *, db: str, size: int, version_id: int, now: datetime, due: int, base_n: int
) -> Figure:
    make_due(rt, due, now=now)
    freeze_startup_heap()  # what a worker process does once it is set up (worker.tasks)
    base_sent, base_s = baseline(rt, base_n, now=now)
    sent, total_s, plan_s = ours(rt, now=now)
    with rt.session() as session:
        sent_rows = session.scalar(
            select(func.count()).where(OutboxMessage.status == MessageStatus.SENT)
        )
        session.execute(text("SELECT 1"))
    rate = sent / total_s if total_s else 0.0
    renders = render_ceiling(rt, version_id, 2000)
    inserts = insert_ceiling(rt, max(due, 1000))
    return Figure(
        workload="B3",
        db=db,
        size=size,
        metric=f"claim->send ({sent} due)",
        unit="msg/s",
        better="higher",
        ours=rate,
        baseline=base_sent / base_s if base_s else None,
        baseline_desc=f"compile templates per message, one commit per row ({base_n} msgs)",
        ceiling=min(renders, inserts),
        ceiling_desc="min(bare cached Jinja2 renders/s, raw executemany inserts/s)",
        goal=">= 10,000 msg/s; <= 20% slower at 1M than 10k",
        goal_met=rate >= GOAL_PER_S,
        extra={
            "sent": sent,
            "outbox_sent_rows": sent_rows,
            "plan_s": plan_s,
            "send_s": total_s - plan_s,
            "plan_per_s": sent / plan_s if plan_s else None,
            "deliver_per_s": sent / (total_s - plan_s) if total_s > plan_s else None,
            "render_ceiling_per_s": renders,
            "insert_ceiling_per_s": inserts,
        },
    )
