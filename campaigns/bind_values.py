"""Column values through their type's bind processor, once per distinct value.

Batch writes convert whole columns at a time (``sqlite_bulk``, ``pgbulk``); a batch's
timestamps are mostly one ``now`` and its enums a handful of members, so remembering each
distinct value's conversion saves most of the calls. JSON documents cannot be hashed: one
object repeated in a column (bulk enrolment's ``enrolled`` events share a few) is
serialised once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def converted(values: Sequence[Any], process: Callable[[Any], Any]) -> list[Any]:
    """``process`` of each value, called once per distinct value (per object if unhashable)."""
    memo: dict[Any, Any] = {}
    try:
        return [memo[v] if v in memo else memo.setdefault(v, process(v)) for v in values]
    except TypeError:  # unhashable (JSON documents): once per object, by identity
        by_id: dict[int, Any] = {}
        return [by_id[i] if (i := id(v)) in by_id else by_id.setdefault(i, process(v))
                for v in values]  # fmt: skip
