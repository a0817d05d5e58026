"""The tick keeps published versions between batches: never stale, never a detached surprise."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from campaigns import claims, scheduler
from campaigns.models import OutboxMessage
from campaigns.runtime import Runtime
from campaigns.scheduler import tick
from tests.factories import MINI, load_program, make_enrollment

MONDAY = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)  # 00:00 in New York; sends at 10:00 local
DAY = timedelta(days=1)


@contextmanager
def _statements(rt: Runtime) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(rt.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(rt.engine, "before_cursor_execute", record)


def _bodies(rt: Runtime) -> list[str]:
    with rt.session() as session:
        return list(session.scalars(select(OutboxMessage.body_text).order_by(OutboxMessage.id)))


def _program_named(tmp_path: Path, name: str) -> Path:
    """The mini program under another name, whose day-2 text says the program's name."""
    folder = tmp_path / name.replace(" ", "-") / "mini"  # the folder is named for the slug
    shutil.copytree(MINI, folder)
    spec = folder / "program.yaml"
    spec.write_text(spec.read_text().replace('name: "Mini Program"', f'name: "{name}"'))
    (folder / "steps" / "d2-write" / "sms.txt.j2").write_text(
        "Hi {{ patient.first_name }}, day {{ program.day }} of {{ program.name }}. Reply 0-10.\n"
    )
    return folder


def test_a_later_tick_does_not_load_the_version_again(rt: Runtime) -> None:
    version = load_program(rt)
    for _ in range(3):
        make_enrollment(rt, version, now=MONDAY)
    first_send = MONDAY + timedelta(hours=10, minutes=5)
    assert len(tick(rt, now=first_send).planned) == 3
    with _statements(rt) as seen:
        assert len(tick(rt, now=first_send + DAY).planned) == 3
    assert not [s for s in seen if "program_steps" in s], "the steps were read again"


def test_a_program_renamed_by_a_later_version_is_named_anew(rt: Runtime, tmp_path: Path) -> None:
    """Publishing renames the program for everyone, also those on an older version: the
    cached version is checked against its program's name at every batch."""
    old = load_program(rt, _program_named(tmp_path, "Mini Program"))
    make_enrollment(rt, old, now=MONDAY)
    first_send = MONDAY + timedelta(hours=10, minutes=5)
    tick(rt, now=first_send)  # day 1, loads and keeps the version
    new = load_program(rt, _program_named(tmp_path, "Calmer Days"))
    assert new != old
    tick(rt, now=first_send + DAY)  # day 2, still on the old version
    assert "day 2 of Calmer Days" in _bodies(rt)[-1]
    kept = [key for key in claims._VERSIONS[rt.engine] if key[0] == old]
    assert [name for _, _, name in kept] == ["Calmer Days"]  # the old name's copy is gone


def test_a_batch_rolled_back_leaves_the_kept_version_usable(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The version is loaded in a batch that then fails: its rollback must not expire the
    objects kept for the next batches (they would be unreadable once that session closed)."""
    version = load_program(rt)
    make_enrollment(rt, version, now=MONDAY)
    first_send = MONDAY + timedelta(hours=10, minutes=5)
    real = scheduler.process_batch

    def failing(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the batch fails after its claim")

    monkeypatch.setattr(scheduler, "process_batch", failing)
    with pytest.raises(RuntimeError):
        tick(rt, now=first_send)
    monkeypatch.setattr(scheduler, "process_batch", real)
    assert len(tick(rt, now=first_send).planned) == 1
    assert "mini step d1-hello" in _bodies(rt)[0]
