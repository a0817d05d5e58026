"""Builds the Celery app from settings; task names are explicit and stable."""

from __future__ import annotations

from celery import Celery

from config.beat import POLL_INBOX_TASK, RETENTION_TASK, SWEEP_TASK, TICK_TASK, beat_schedule
from config.settings import Settings, get_settings
from worker.broker import TRANSPORT as REDIS_TRANSPORT

SEND_TASK = "campaigns.send"
SEND_BATCH_TASK = "campaigns.send_batch"


def _is_redis(broker_url: str) -> bool:
    return broker_url.startswith(("redis://", "rediss://"))


def _transport_options(broker_url: str) -> dict[str, int]:
    """Redis redelivers unacked tasks after the visibility timeout; kombu's SQLAlchemy
    transport passes options to ``create_engine``, which rejects it."""
    if _is_redis(broker_url):
        return {"visibility_timeout": 3600}
    return {}


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    if settings.resolved_broker_url.startswith("sqla+sqlite:///"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = Celery("campaigns", broker=settings.resolved_broker_url, include=["worker.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        # Our JSON log lines go to stderr themselves; with the default redirect Celery
        # re-logged each one from a pool process as a WARNING in its own text format.
        worker_redirect_stdouts=False,
        broker_connection_retry_on_startup=True,
        broker_transport=REDIS_TRANSPORT if _is_redis(settings.resolved_broker_url) else None,
        broker_transport_options=_transport_options(settings.resolved_broker_url),
        timezone="UTC",
        enable_utc=True,
        beat_schedule=beat_schedule(
            settings.tick_seconds, poll_inbox=settings.imap_host is not None
        ),
        task_routes={
            TICK_TASK: {"queue": "ticks"},
            SWEEP_TASK: {"queue": "ticks"},
            RETENTION_TASK: {"queue": "ticks"},
            SEND_TASK: {"queue": "sends"},
            SEND_BATCH_TASK: {"queue": "sends"},
            POLL_INBOX_TASK: {"queue": "replies"},
        },
        task_default_queue="default",
    )
    return app


app = create_app()
