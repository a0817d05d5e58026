"""B5 queue depth: a backlog draining at the global rate, on a simulated clock.

The real ``scheduler.tick`` runs every ``tick_seconds`` and hands ids to queues standing in
for the broker's; a sender sends them through the real ``outbox.deliver_batch``, each channel
no faster than its rate and independently of the other (what a worker's send threads do, each
waiting on its own channel's limiter), skipping copies of ids already sent at no cost. Ours:
the tick with its dispatch budget. Baseline: the same tick handing every planned row out at
once and again whenever one has waited ``REDISPATCH_AFTER`` unsent
(``dispatch_budget.unlimited``), which is what a queue fed without regard to the rate does.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from bench.b3_send import make_due
from bench.common import BENCH_NOW, Figure, bench_runtime, fresh_database
from bench.datagen import populate
from campaigns.dispatch_budget import DispatchBudget, horizon_for, unlimited
from campaigns.enums import Channel
from campaigns.models import OUTBOX_PLANNED, OutboxMessage, outbox_status_in
from campaigns.outbox import DeliveryResult, deliver_batch
from campaigns.ratelimit import LocalBucket, RateLimiter
from campaigns.runtime import Runtime
from campaigns.scheduler import tick


@dataclass(frozen=True)
class Drain:
    rate: float
    planned: int
    sent: int
    #: Most message ids waiting in the queues at once (copies included).
    max_depth: int
    #: Ids handed to the queues in all, and most times one message was handed out.
    handed_out: int
    most_per_message: int
    #: Simulated seconds from the first tick until the last message was sent.
    cleared_s: float


def limited(rt: Runtime, rate: float) -> Runtime:
    """``rt`` whose tick budgets for ``rate`` per channel (the limiter is not waited on:
    the simulated sender keeps the rate)."""
    return dataclasses.replace(rt, limiter=RateLimiter(LocalBucket(), dict.fromkeys(Channel, rate)))


def capacity(rt: Runtime, rate: float) -> int:
    """What the budget lets wait at once, all channels together."""
    horizon = horizon_for(rt.settings.tick_seconds).total_seconds()
    return len(Channel) * math.ceil(rate * horizon)


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
    queues: dict[Channel, deque[int]] = {channel: deque() for channel in Channel}
    handed: dict[int, int] = {}
    max_depth, sent, cleared = 0, 0, math.inf
    allowance = dict.fromkeys(Channel, 0.0)
    per_step = rate * step.total_seconds()
    now, next_tick = start, start
    while now <= start + until:
        if now >= next_tick:
            batch: list[int] = []
            tick(ticking, now=now, dispatch=batch.extend, budget=budget)
            for outbox_id, channel in _in_order(rt, batch):
                queues[channel].append(outbox_id)
                handed[outbox_id] = handed.get(outbox_id, 0) + 1
            next_tick += tick_every
        max_depth = max(max_depth, sum(len(q) for q in queues.values()))
        for channel, queue in queues.items():  # a step's worth of tokens, at least one
            allowance[channel] = min(allowance[channel] + per_step, max(1.0, per_step))
            sent += _send(sender, queue, allowance, channel, now=now)
        if handed and not any(queues.values()) and _planned(rt) == 0:
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


def _send(
    sender: Runtime,
    queue: deque[int],
    allowance: dict[Channel, float],
    channel: Channel,
    *,
    now: datetime,
) -> int:
    """Send from the head while the channel has tokens; a copy of a sent id costs none."""
    sent = 0
    while queue and (tokens := int(allowance[channel])) >= 1:
        batch = [queue.popleft() for _ in range(min(tokens, len(queue)))]
        results = deliver_batch(sender, batch, now=now)
        done = sum(result == DeliveryResult.SENT for result in results.values())
        allowance[channel] -= done
        sent += done
    return sent


def _in_order(rt: Runtime, ids: Sequence[int]) -> list[tuple[int, Channel]]:
    if not ids:
        return []
    with rt.session() as session:
        rows = session.execute(
            select(OutboxMessage.id, OutboxMessage.channel).where(OutboxMessage.id.in_(ids))
        ).all()
    channels = {outbox_id: channel for outbox_id, channel in rows}
    return [(outbox_id, channels[outbox_id]) for outbox_id in ids]


def _planned(rt: Runtime) -> int:
    with rt.session() as session:
        query = select(func.count()).where(outbox_status_in(OUTBOX_PLANNED))
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
        bound = capacity(rt, rate)
        until = timedelta(seconds=backlog / rate * 1.5 + 600)
        run = drain(rt, rate=rate, start=BENCH_NOW, until=until, budgeted=budgeted)
        rt.engine.dispose()
    return run, bound


def run(db: str, *, smoke: bool) -> list[Figure]:
    """Most ids waiting in the queue while a backlog drains at each rate, ours vs baseline."""
    figures = []
    for rate in RATES:
        backlog = backlog_for(rate, smoke=smoke)
        ours, bound = _measure(db, rate, backlog, budgeted=True)
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
                goal=f"<= rate x horizon per channel ({bound:,} in all), each handed out once",
                goal_met=complete and ours.max_depth <= bound and ours.most_per_message == 1,
                extra={
                    "backlog": backlog,
                    "capacity": bound,
                    "ours": dataclasses.asdict(ours),
                    "baseline": dataclasses.asdict(base),
                },
            )
        )
    return figures
