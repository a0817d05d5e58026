"""B7's outbox-vs-engine check is not vacuous: a short soak matches, a tampered outbox does not."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from bench import b7_soak
from bench.common import BENCH_NOW, bench_runtime, fresh_database
from bench.datagen import populate
from campaigns.models import OutboxMessage
from campaigns.runtime import Runtime

STEP = timedelta(minutes=60)
PATIENTS, DAYS = 14, 9  # patient 13 flares on days 4-6


@pytest.fixture
def soaked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Runtime, int]]:
    monkeypatch.setattr("bench.common.WORK_DIR", tmp_path)
    with fresh_database("sqlite", "b7test") as url:
        rt = bench_runtime(url)
        seeded = populate(rt, PATIENTS, now=BENCH_NOW)
        b7_soak.prepare(rt, seeded.version_id, PATIENTS, STEP, BENCH_NOW)
        b7_soak.soak(rt, patients=PATIENTS, days=DAYS, step=STEP, start=BENCH_NOW)
        yield rt, seeded.version_id
        rt.engine.dispose()


def _check(rt: Runtime, version_id: int) -> dict[str, int]:
    return b7_soak.compare(rt, version_id, PATIENTS, start=BENCH_NOW, days=DAYS, step=STEP)


def test_soak_outbox_equals_engine_plan_and_tampering_is_caught(
    soaked: tuple[Runtime, int],
) -> None:
    rt, version_id = soaked
    check = _check(rt, version_id)
    assert check["expected"] > PATIENTS and check["flare_messages"] > 0
    assert check["outbox"] == check["expected"]
    assert check["lost"] == check["unexpected"] == check["duplicated"] == 0
    assert check["not_sent"] == check["outside_window"] == 0

    with rt.session() as session:
        first, second = session.scalars(
            select(OutboxMessage).order_by(OutboxMessage.id).limit(2)
        ).all()
        assert second.local_date is not None
        moved = second.local_date + timedelta(days=1)
        session.execute(delete(OutboxMessage).where(OutboxMessage.id == first.id))
        session.execute(
            update(OutboxMessage).where(OutboxMessage.id == second.id).values(local_date=moved)
        )
    check = _check(rt, version_id)
    assert check["lost"] == 2 and check["unexpected"] == 1
    assert check["outside_window"] == 1  # sent on another local date than planned
