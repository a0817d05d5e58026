"""A prepared chunk keeps its columns aligned when rows are dropped or parts are joined."""

from __future__ import annotations

from campaigns.bulk_rows import PreparedChunk, RowError


def _chunk(lines: list[int], errors: list[RowError] | None = None) -> PreparedChunk:
    return PreparedChunk(
        lines,
        {"first_name": [f"p{n}" for n in lines], "phone_hash": [f"h{n}" for n in lines]},
        [("sms",) if n % 2 else ("email",) for n in lines],
        {"state": ["active"] * len(lines), "step": [n * 10 for n in lines]},
        [(("external_ref", f"r{n}"),) for n in lines],
        errors or [],
    )


def _row(chunk: PreparedChunk, i: int) -> tuple[object, ...]:
    return (
        chunk.lines[i],
        *(values[i] for values in chunk.patients.values()),
        chunk.consents[i],
        *(values[i] for values in chunk.enrollments.values()),
        chunk.identities[i],
    )


def test_only_keeps_every_column_of_the_kept_rows_in_step() -> None:
    chunk = _chunk([2, 3, 4, 5])
    kept = chunk.only([True, False, False, True], [RowError(3, "x"), RowError(4, "y")])
    assert len(kept) == 2
    assert [_row(kept, i) for i in range(2)] == [_row(chunk, 0), _row(chunk, 3)]
    assert [e.line for e in kept.errors] == [3, 4]


def test_only_with_every_row_kept_replaces_just_the_errors() -> None:
    chunk = _chunk([2, 3], [RowError(9, "old")])
    kept = chunk.only([True, True], [])
    assert kept.lines == [2, 3] and kept.patients is chunk.patients and kept.errors == []


def test_joined_parts_read_as_one_chunk_in_order() -> None:
    whole = _chunk([2, 3, 4, 5, 6], [RowError(7, "a"), RowError(8, "b")])
    parts = [_chunk([2, 3], [RowError(7, "a")]), _chunk([4, 5, 6], [RowError(8, "b")])]
    joined = PreparedChunk.joined(parts)
    assert joined == whole
    assert PreparedChunk.joined(parts[:1]) is parts[0]
