"""The Celery beat schedule: one dict, so what runs periodically is visible in one place."""

from typing import Any

TICK_TASK = "campaigns.tick"
SWEEP_TASK = "campaigns.sweep_stale_sends"

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "tick-every-minute": {"task": TICK_TASK, "schedule": 60.0, "options": {"expires": 55}},
    "sweep-stale-sends": {"task": SWEEP_TASK, "schedule": 300.0, "options": {"expires": 290}},
}
