"""Column values through their type's bind processor, once per distinct value.

Batch writes convert whole columns at a time (``sqlite_bulk``, ``pgbulk``); a batch's
timestamps are mostly one ``now`` and its enums a handful of members, so remembering each
distinct value's conversion saves most of the calls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def converted(values: Sequence[Any], process: Callable[[Any], Any]) -> list[Any]:
    """``process`` of each value, called once per distinct value."""
    memo: dict[Any, Any] = {}
    try:
        return [memo[v] if v in memo else memo.setdefault(v, process(v)) for v in values]
    except TypeError:  # unhashable (JSON documents): each converted on its own
        return [process(v) for v in values]
