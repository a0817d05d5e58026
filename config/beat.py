"""The Celery beat schedule: one dict, so what runs periodically is visible in one place."""

from typing import Any

TICK_TASK = "campaigns.tick"
SWEEP_TASK = "campaigns.sweep_stale_sends"
RETENTION_TASK = "campaigns.expire_reply_text"

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "tick-every-minute": {"task": TICK_TASK, "schedule": 60.0, "options": {"expires": 55}},
    "sweep-stale-sends": {"task": SWEEP_TASK, "schedule": 300.0, "options": {"expires": 290}},
    "expire-reply-text": {
        "task": RETENTION_TASK,
        "schedule": 6 * 3600.0,
        "options": {"expires": 3600},
    },
}
