"""Prometheus metrics read from the database at scrape time.

Work happens in many processes (web, workers, beat); in-process counters would each see a
slice. The database already records every planned, sent and failed message, reply, flare
and tick, so one scrape of any web process tells the whole truth.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.dispatching import in_flight
from campaigns.enums import REACHED, AlertStatus, Channel, MessageStatus
from campaigns.heartbeats import TICK, last_beat
from campaigns.models import (
    OUTBOX_PLANNED,
    Alert,
    Enrollment,
    Event,
    InboundReply,
    OutboxMessage,
    outbox_status_in,
    utcnow,
)
from campaigns.runtime import Runtime


class DatabaseCollector(Collector):
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[Metric]:
        with self.rt.session() as session:
            yield from _messages(session)
            yield _replies(session)
            yield _scalar_counter(
                "campaigns_flares",
                "Flares started",
                session.scalar(select(func.count()).where(Event.kind == "flare-start")) or 0,
            )
            yield from _gauges(session)


def _messages(session: Session) -> Iterator[Metric]:
    rows = session.execute(
        select(OutboxMessage.channel, OutboxMessage.status, func.count()).group_by(
            OutboxMessage.channel, OutboxMessage.status
        )
    ).tuples()
    planned = CounterMetricFamily(
        "campaigns_messages_planned", "Messages planned", labels=["channel"]
    )
    sent = CounterMetricFamily("campaigns_messages_sent", "Messages sent", labels=["channel"])
    failed = CounterMetricFamily(
        "campaigns_messages_failed", "Messages failed or unknown", labels=["channel", "status"]
    )
    totals: dict[str, dict[str, int]] = {}
    for channel, status, count in rows:
        bucket = totals.setdefault(channel.value, {"planned": 0, "sent": 0})
        bucket["planned"] += count
        if status in REACHED:
            bucket["sent"] += count
        if status in (MessageStatus.FAILED, MessageStatus.UNKNOWN):
            failed.add_metric([channel.value, status.value], count)
    for name, bucket in sorted(totals.items()):
        planned.add_metric([name], bucket["planned"])
        sent.add_metric([name], bucket["sent"])
    yield from (planned, sent, failed)


def _replies(session: Session) -> Metric:
    metric = CounterMetricFamily(
        "campaigns_replies", "Patient replies received", labels=["channel"]
    )
    rows = session.execute(
        select(InboundReply.channel, func.count()).group_by(InboundReply.channel)
    ).tuples()
    for channel, count in rows:
        metric.add_metric([channel.value], count)
    return metric


def _scalar_counter(name: str, doc: str, value: float) -> Metric:
    metric = CounterMetricFamily(name, doc)
    metric.add_metric([], value)
    return metric


def _gauge(name: str, doc: str, value: float) -> Metric:
    metric = GaugeMetricFamily(name, doc)
    metric.add_metric([], value)
    return metric


def _gauges(session: Session) -> Iterator[Metric]:
    now = utcnow()
    queued = session.scalar(select(func.count()).where(outbox_status_in(OUTBOX_PLANNED))) or 0
    due = (
        session.scalar(
            select(func.count()).where(
                Enrollment.next_due_at.is_not(None), Enrollment.next_due_at <= now
            )
        )
        or 0
    )
    alerts = session.scalar(select(func.count()).where(Alert.status == AlertStatus.OPEN)) or 0
    yield _gauge("campaigns_queue_depth", "Planned messages not yet sent", queued)
    handed = GaugeMetricFamily(
        "campaigns_handed_out",
        "Planned messages handed to send tasks, not yet sent (bounded by the dispatch budget)",
        labels=["channel"],
    )
    counts = in_flight(session, now=now)
    for channel in Channel:
        handed.add_metric([channel.value], counts.get(channel, 0))
    yield handed
    yield _gauge("campaigns_enrollments_due", "Enrollments due but not yet ticked", due)
    yield _gauge("campaigns_alerts_open", "Open staff alerts", alerts)
    tick = last_beat(session, TICK)
    if tick is not None:
        yield _gauge(
            "campaigns_tick_duration_seconds",
            "Duration of the last tick",
            float(tick.data.get("seconds", 0.0)),
        )
        yield _gauge(
            "campaigns_tick_age_seconds",
            "Seconds since the last tick",
            (now - tick.at).total_seconds(),
        )


def registry_for(rt: Runtime) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(rt))
    return registry
