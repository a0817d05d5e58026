"""B5 queue depth: a backlog draining at the global rate, on a simulated clock.

The real ``scheduler.tick`` runs every ``tick_seconds`` and hands ids to a list standing in
for the broker's queue; a sender takes ids from its head and sends them through the real
``outbox.deliver_batch`` no faster than each channel's rate (when the head's channel has no
token left the sender waits, as a worker blocked in the rate limiter does). Ours: the tick
with its dispatch budget. Baseline: the same tick handing every planned row out at once and
again whenever one has waited ``REDISPATCH_AFTER`` unsent (``dispatch_budget.unlimited``),
which is what a queue fed without regard to the rate does.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from bench.b3_send import make_due
from bench.common import BENCH_NOW, Figure, bench_runtime, fresh_database
from bench.datagen import populate
from campaigns.dispatch_budget import DispatchBudget, horizon_for, unlimited
from campaigns.enums import Channel, MessageStatus
from campaigns.models import OutboxMessage
from campaigns.outbox import DeliveryResult, deliver_batch
from campaigns.ratelimit import LocalBucket, RateLimiter
from campaigns.runtime import Runtime
from campaigns.scheduler import tick


@dataclass(frozen=True)
class Drain:
    rate: float
    planned: int
    sent: int
    #: Most message ids waiting in the queue at once (copies included).
    max_depth: int
    #: Ids handed to the queue in all, and most times one message was handed out.
    handed_out: int
    most_per_message: int
    #: Simulated seconds from the first tick until the last message was sent.
    cleared_s: float


def limited(rt: Runtime, rate: float) -> Runtime:
    """``rt`` whose tick budgets for ``rate`` per channel (the limiter is not waited on:
    the simulated sender keeps the rate)."""
    return dataclasses.replace(rt, limiter=RateLimiter(LocalBucket(), dict.fromkeys(Channel, rate)))


def drain(
    rt: Runtime,
    *,
    rate: float,
    start: datetime,
    until: timedelta,
    step: timedelta = timedelta(seconds=5),
    budgeted: bool = True,
) -> Drain:
    """Tick and send on a simulated clock from ``start`` until everything due is sent or
    ``until`` has passed."""
    ticking = limited(rt, rate)
    sender = dataclasses.replace(rt, limiter=None)
    budget: DispatchBudget | None = None if budgeted else unlimited()
    tick_every = timedelta(seconds=rt.settings.tick_seconds)
    queue: deque[int] = deque()
    handed: dict[int, int] = {}
    channel_of: dict[int, Channel] = {}
    max_depth, sent, cleared = 0, 0, math.inf
    allowance = dict.fromkeys(Channel, 0.0)
    now, next_tick = start, start

    def hand_out(ids: Iterable[int]) -> None:
        for outbox_id in ids:
            queue.append(outbox_id)
            handed[outbox_id] = handed.get(outbox_id, 0) + 1

    while now <= start + until:
        if now >= next_tick:
            tick(ticking, now=now, dispatch=hand_out, budget=budget)
            next_tick += tick_every
            channel_of.update(_channels(rt, [i for i in handed if i not in channel_of]))
        max_depth = max(max_depth, len(queue))
        per_step = rate * step.total_seconds()
        for channel in Channel:  # a step's worth of tokens, at least one
            allowance[channel] = min(allowance[channel] + per_step, max(1.0, per_step))
        sent += _send_head(sender, queue, channel_of, allowance, now=now)
        if handed and not queue and _planned(rt) == 0:
            cleared = (now - start).total_seconds()
            break
        now += step
    return Drain(
        rate=rate,
        planned=_total(rt),
        sent=sent,
        max_depth=max_depth,
        handed_out=sum(handed.values()),
        most_per_message=max(handed.values(), default=0),
        cleared_s=cleared,
    )


def _send_head(
    sender: Runtime,
    queue: deque[int],
    channel_of: dict[int, Channel],
    allowance: dict[Channel, float],
    *,
    now: datetime,
) -> int:
    """Send from the head while its channel has tokens; a copy of a sent id costs none."""
    sent = 0
    while queue and (tokens := int(allowance[channel := channel_of[queue[0]]])) >= 1:
        batch: list[int] = []
        while queue and len(batch) < tokens and channel_of[queue[0]] == channel:
            batch.append(queue.popleft())
        results = deliver_batch(sender, batch, now=now)
        done = sum(result == DeliveryResult.SENT for result in results.values())
        allowance[channel] -= done
        sent += done
    return sent


def _channels(rt: Runtime, ids: list[int]) -> dict[int, Channel]:
    if not ids:
        return {}
    with rt.session() as session:
        rows = session.execute(
            select(OutboxMessage.id, OutboxMessage.channel).where(OutboxMessage.id.in_(ids))
        ).all()
    return {outbox_id: channel for outbox_id, channel in rows}


def _planned(rt: Runtime) -> int:
    with rt.session() as session:
        query = select(func.count()).where(OutboxMessage.status == MessageStatus.PLANNED)
        return int(session.scalar(query) or 0)


def _total(rt: Runtime) -> int:
    with rt.session() as session:
        return int(session.scalar(select(func.count()).select_from(OutboxMessage)) or 0)


RATES = (1.0, 3.0, 30.0, 150.0)
#: A backlog of this many seconds of sending at each rate (within ``BACKLOG_RANGE``).
BACKLOG_SECONDS = 1200
BACKLOG_RANGE = (200, 20_000)
BASELINE_DESC = "no budget: every planned row handed out at once, again when 2 min unsent"


def backlog_for(rate: float, *, smoke: bool) -> int:
    if smoke:
        return 40
    low, high = BACKLOG_RANGE
    return int(min(max(rate * BACKLOG_SECONDS, low), high))


def _measure(db: str, rate: float, backlog: int, *, budgeted: bool) -> tuple[Drain, int]:
    with fresh_database(db, "b5q") as url:
        rt = bench_runtime(url)
        populate(rt, backlog, now=BENCH_NOW)
        make_due(rt, backlog, now=BENCH_NOW)
        capacity = math.ceil(rate * horizon_for(rt.settings.tick_seconds).total_seconds())
        until = timedelta(seconds=backlog / rate * 1.5 + 600)
        run = drain(rt, rate=rate, start=BENCH_NOW, until=until, budgeted=budgeted)
        rt.engine.dispose()
    return run, capacity


def run(db: str, *, smoke: bool) -> list[Figure]:
    """Most ids waiting in the queue while a backlog drains at each rate, ours vs baseline."""
    figures = []
    for rate in RATES:
        backlog = backlog_for(rate, smoke=smoke)
        ours, capacity = _measure(db, rate, backlog, budgeted=True)
        base, _ = _measure(db, rate, backlog, budgeted=False)
        complete = ours.sent == ours.planned == backlog
        figures.append(
            Figure(
                workload="B5",
                db=db,
                size=backlog,
                metric=f"queue depth at {rate:g}/s",
                unit="ids",
                better="lower",
                ours=float(ours.max_depth),
                baseline=float(base.max_depth),
                baseline_desc=BASELINE_DESC,
                ceiling=None,
                ceiling_desc="",
                goal=f"bounded by rate x horizon ({capacity:,}), each message handed out once",
                goal_met=complete and ours.max_depth <= capacity and ours.most_per_message == 1,
                extra={
                    "backlog": backlog,
                    "capacity": capacity,
                    "ours": dataclasses.asdict(ours),
                    "baseline": dataclasses.asdict(base),
                },
            )
        )
    return figures
