"""The Celery beat schedule: one function, so what runs periodically is visible in one place."""

from typing import Any

TICK_TASK = "campaigns.tick"
SWEEP_TASK = "campaigns.sweep_stale_sends"
RETENTION_TASK = "campaigns.expire_reply_text"


def beat_schedule(tick_seconds: float = 60.0) -> dict[str, dict[str, Any]]:
    """A tick that waits in the queue past the next one is dropped: the next covers it."""
    return {
        "tick": {
            "task": TICK_TASK,
            "schedule": tick_seconds,
            "options": {"expires": max(tick_seconds * 0.9, 0.5)},
        },
        "sweep-stale-sends": {"task": SWEEP_TASK, "schedule": 300.0, "options": {"expires": 290}},
        "expire-reply-text": {
            "task": RETENTION_TASK,
            "schedule": 6 * 3600.0,
            "options": {"expires": 3600},
        },
    }
