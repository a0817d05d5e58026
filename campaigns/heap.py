"""Keep the cyclic garbage collector off what a process builds once at start-up.

A worker's long-lived heap (SQLAlchemy's mappers and statement caches, Jinja2's compiled
templates, Celery, twilio) is ~150k objects that live as long as the process, and every full
collection walks all of them: ~85 ms each here, a fifth of a 2,000-message pass of the batch
path when one fell in it (``bench/HISTORY.md``, "... a frozen start-up heap").
Frozen objects are skipped by the collector but still freed by reference counting. Freezing
before a fork also keeps the collector from writing to pages the children share.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect what start-up left as garbage, then freeze the rest; returns how many objects
    are frozen in all (calling it again after more start-up work freezes that too)."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
