"""The Celery beat schedule: one function, so what runs periodically is visible in one place."""

from typing import Any

TICK_TASK = "campaigns.tick"
SWEEP_TASK = "campaigns.sweep_stale_sends"
RETENTION_TASK = "campaigns.expire_reply_text"
POLL_INBOX_TASK = "campaigns.poll_inbox"
#: Every queue a worker should consume; ``replies`` only carries work when IMAP is set up.
QUEUES = "ticks,sends,replies,default"


def beat_schedule(tick_seconds: float = 60.0, *, poll_inbox: bool = False) -> dict[str, Any]:
    """A tick that waits in the queue past the next one is dropped: the next covers it.

    ``poll_inbox`` reads email replies from the IMAP mailbox every minute (the alternative
    to the inbound-email webhook); a poll that waits past the next one is dropped too.
    """
    polls = (
        {"poll-inbox": {"task": POLL_INBOX_TASK, "schedule": 60.0, "options": {"expires": 55}}}
        if poll_inbox
        else {}
    )
    return polls | {
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
