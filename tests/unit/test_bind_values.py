"""Batch writes convert each distinct value once, and every row still gets its own value."""

from __future__ import annotations

from typing import Any

from campaigns.bind_values import converted


class _Counting:
    def __init__(self) -> None:
        self.calls: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.calls.append(value)
        return repr(value)


def test_hashable_values_are_converted_once_each_and_kept_in_row_order() -> None:
    process = _Counting()
    values = ["a", "b", "a", None, "b", "a"]
    assert converted(values, process) == [repr(v) for v in values]
    assert process.calls == ["a", "b", None]


def test_documents_are_converted_once_per_object_and_equal_ones_each_on_their_own() -> None:
    shared = {"first_due": "2026-03-02T14:00:00+00:00"}
    twin = dict(shared)  # equal, but another object: identity is all a dict can be keyed by
    values = [shared, twin, shared, shared]
    process = _Counting()
    assert converted(values, process) == [repr(shared)] * 4
    assert [id(v) for v in process.calls] == [id(shared), id(twin)]
