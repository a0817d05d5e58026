"""The start-up heap is frozen: the collector no longer walks it, and garbage is not kept."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from campaigns.heap import freeze_startup_heap


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector can free it


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("unfrozen")
def test_live_objects_leave_the_collectors_generations() -> None:
    kept = _Node()
    assert any(o is kept for o in gc.get_objects())
    frozen = freeze_startup_heap()
    assert frozen == gc.get_freeze_count() > 0
    assert not any(o is kept for o in gc.get_objects()), "not walked by full collections"
    later = _Node()
    assert any(o is later for o in gc.get_objects()), "what comes after is still collected"


@pytest.mark.usefixtures("unfrozen")
def test_garbage_left_by_start_up_is_collected_not_frozen() -> None:
    gc.disable()
    try:
        node = _Node()
        gone = weakref.ref(node)
        del node
        assert gone() is not None, "a cycle survives reference counting"
        freeze_startup_heap()
        assert gone() is None, "collected before the freeze, not kept for good"
    finally:
        gc.enable()
