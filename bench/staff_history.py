"""The staff patient list over a long outbox history, with the outbox's status indexes as
they are (partial: only rows still waiting, migration 0009) against the indexes before them
(over every row), both built in this process from the same data.

A program sends one message per patient-day and keeps them, so after six weeks the outbox
holds ~42 rows per patient, nearly all sent. The list flags patients with a failed or
unknown message ("needs attention"); before 0009 that read each patient's history.

    python -m bench.staff_history [--db sqlite,postgresql] [--patients 10000] [--days 42]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from alembic import command
from sqlalchemy import bindparam, text

from bench.common import BENCH_NOW, bench_runtime, fresh_database, quiet_logs, timed
from bench.datagen import populate
from campaigns.db import alembic_config
from campaigns.models import UTCDateTime
from campaigns.patient_views import PatientFilters, find_patients
from campaigns.runtime import Runtime

#: One patient in this many has a failed message among their history.
FAILED_EVERY = 997
_HISTORY = text(
    "INSERT INTO outbox (patient_id, enrollment_id, occurrence, purpose, channel, body_text,"
    " status, planned_at, sending_at, sent_at, attempts)"
    " SELECT patient_id, id, :day, 'program', CASE WHEN id % 5 = 0 THEN 'email' ELSE 'sms' END,"
    " 'x', CASE WHEN id % :every = 0 AND :day = 3 THEN 'failed' ELSE 'sent' END,"
    " :at, :at, :at, 1 FROM enrollments"
).bindparams(bindparam("at", type_=UTCDateTime()))


def _fill(rt: Runtime, patients: int, days: int) -> None:
    populate(rt, patients, now=BENCH_NOW)
    with rt.engine.begin() as conn:
        for day in range(days):
            at = BENCH_NOW - timedelta(days=days - day)
            conn.execute(_HISTORY, {"day": day, "at": at, "every": FAILED_EVERY})
    with rt.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")


def _median_ms(fn: Callable[[], Any], rounds: int) -> float:
    return statistics.median(timed(fn) for _ in range(rounds)) * 1000


def _measure(rt: Runtime, rounds: int) -> dict[str, float]:
    def listing(filters: PatientFilters) -> Callable[[], Any]:
        def run() -> Any:
            with rt.session() as session:
                return find_patients(session, filters)

        return run

    figures = {
        "list of 200 (ms)": _median_ms(listing(PatientFilters()), rounds),
        "needs attention (ms)": _median_ms(listing(PatientFilters(needs_attention=True)), rounds),
    }
    if rt.engine.dialect.name == "postgresql":
        with rt.engine.connect() as conn:
            size = conn.scalar(text("SELECT pg_indexes_size('outbox')"))
        figures["outbox indexes (MB)"] = int(size or 0) / 2**20
    return figures


def run(db: str, patients: int, days: int, rounds: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    for design in ("ours", "baseline"):
        with fresh_database(db, "staff") as url:
            if design == "baseline":  # the status indexes over every row, as before 0009
                command.downgrade(alembic_config(url), "0008")
            rt = bench_runtime(url)
            try:
                _fill(rt, patients, days)
                results[design] = _measure(rt, rounds)
            finally:
                rt.engine.dispose()
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--db", default="sqlite,postgresql")
    p.add_argument("--patients", type=int, default=10_000)
    p.add_argument("--days", type=int, default=42)
    p.add_argument("--rounds", type=int, default=7, help="medians of this many listings")
    args = p.parse_args()
    quiet_logs()
    print(f"{'db':11} {'figure':22} {'ours':>9} {'baseline':>9} {'x baseline':>11}")
    for db in args.db.split(","):
        results = run(db, args.patients, args.days, args.rounds)
        for name, ours in results["ours"].items():
            base = results["baseline"][name]
            ratio = base / ours if ours else float("nan")
            print(f"{db:11} {name:22} {ours:9.1f} {base:9.1f} {ratio:10.2f}x")


if __name__ == "__main__":
    main()
