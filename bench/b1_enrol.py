"""B1 enrolment: a generated CSV of new patients through ``campaigns.bulk`` beside the
one-row-per-transaction ORM path (``create_patient`` + ``enroll``) and raw executemany."""

from __future__ import annotations

import csv
import dataclasses
import json
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from bench import proc_cpu
from bench.common import BENCH_NOW, WORK_DIR, Figure, bench_runtime, fresh_database, quiet_logs
from bench.datagen import ZONES, seed_program, version_of
from campaigns.bulk import bulk_enroll
from campaigns.bulk_rows import validate
from campaigns.enrollments import enroll
from campaigns.heap import freeze_startup_heap
from campaigns.patients import PatientInput, create_patient
from campaigns.runtime import Runtime
from config.settings import REPO_ROOT

GOAL_PER_S = 20_000.0
FIELDS = ("first_name", "last_name", "email", "phone", "timezone", "channel", "send_time",
          "consent_sms", "consent_email", "external_ref")  # fmt: skip


def write_csv(path: Path, n: int, *, prefix: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(FIELDS)
        for i in range(n):
            sms = i % 5 != 0
            minute = (i * 37) % 660
            out.writerow((
                f"Pat{i}", "Bench", f"{prefix}{i}@example.org",
                f"(212) {200 + (i // 10_000) % 700:03d}-{i % 10_000:04d}",
                ZONES[i % len(ZONES)], "sms" if sms else "email",
                f"{9 + minute // 60:02d}:{minute % 60:02d}", "true" if sms else "false",
                "false" if sms else "true", f"{prefix}{i}",
            ))  # fmt: skip
    return path


def read_csv(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="") as fh:
        yield from csv.DictReader(fh)


def baseline(rt: Runtime, path: Path, version_id: int, n: int, *, now: datetime) -> float:
    """Rows per second through the ORM with one transaction per row."""
    version = version_of(rt, version_id)
    start = time.perf_counter()
    for count, row in enumerate(read_csv(path)):
        if count >= n:
            break
        data = validate(count + 2, row)
        assert isinstance(data, PatientInput), data
        with rt.session() as session:
            patient = create_patient(session, data, by="bench", now=now)
            current = session.merge(version, load=False)
            enroll(session, patient, current, rt.window, by="bench", now=now)
    return n / (time.perf_counter() - start)


def raw_ceiling(rt: Runtime, n: int) -> float:
    """Raw executemany of patient-sized rows into a scratch table, one transaction."""
    rows = [(i, f"Pat{i}", f"p{i}@example.org", "+12125550100", "America/New_York")
            for i in range(n)]  # fmt: skip
    raw = rt.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("DROP TABLE IF EXISTS bench_scratch_p")
        cur.execute(
            "CREATE TABLE bench_scratch_p (id INTEGER PRIMARY KEY, first_name VARCHAR(100),"
            " email VARCHAR(320), phone VARCHAR(16), timezone VARCHAR(64))"
        )
        raw.commit()
        mark = "?" if rt.engine.dialect.name == "sqlite" else "%s"
        start = time.perf_counter()
        if rt.engine.dialect.name == "sqlite":
            cur.execute("BEGIN")
        cur.executemany(f"INSERT INTO bench_scratch_p VALUES ({', '.join([mark] * 5)})", rows)
        raw.commit()
        elapsed = time.perf_counter() - start
        cur.execute("DROP TABLE bench_scratch_p")
        raw.commit()
    finally:
        raw.close()
    return n / elapsed


def run(rt: Runtime, *, db: str, rows: int, version_id: int, now: datetime, base_n: int) -> Figure:
    path = write_csv(WORK_DIR / f"enrol-{db}-{rows}.csv", rows, prefix=f"csv{db}")
    version = version_of(rt, version_id)
    freeze_startup_heap()  # what `campaigns enroll-csv` does before it reads the file
    cpu_before = _cpu(rt)
    start = time.perf_counter()
    result = bulk_enroll(rt.session, read_csv(path), version, rt.window, by="bench", now=now)
    elapsed = time.perf_counter() - start
    cpu = proc_cpu.spent(cpu_before, _cpu(rt))
    base_path = write_csv(WORK_DIR / f"enrol-base-{db}.csv", base_n, prefix=f"base{db}")
    base = baseline(rt, base_path, version_id, base_n, now=now)
    ceiling = raw_ceiling(rt, rows)
    rate = result.created / elapsed
    path.unlink(missing_ok=True)
    base_path.unlink(missing_ok=True)
    return Figure(
        workload="B1",
        db=db,
        size=rows,
        metric="bulk enrol from CSV",
        unit="rows/s",
        better="higher",
        ours=rate,
        baseline=base,
        baseline_desc=f"ORM create_patient + enroll, one transaction per row ({base_n} rows)",
        ceiling=ceiling,
        ceiling_desc="raw executemany of patient-sized rows, one transaction",
        goal=">= 20,000 rows/s",
        goal_met=rate >= GOAL_PER_S,
        extra={
            "created": result.created,
            "errors": len(result.errors),
            "seconds": elapsed,
            # CPU per stored row: what a loaded machine does not change (wall time it does).
            "cpu_us_per_row": {p: 1e6 * s / max(result.created, 1) for p, s in cpu.items()},
        },
    )


def _cpu(rt: Runtime) -> proc_cpu.Snapshot:
    """CPU seconds so far of this process (reading the CSV, writing), of its finished
    children (the workers that prepare rows: reaped when the pool shuts down) and, on
    PostgreSQL, of the server's processes (per process, see ``proc_cpu.spent``)."""
    own, children = (
        resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    parts = {
        "parent": {0: own.ru_utime + own.ru_stime},
        "prepare_workers": {0: children.ru_utime + children.ru_stime},
    }
    if rt.engine.dialect.name == "postgresql":
        database = rt.engine.url.database or ""
        parts |= proc_cpu.snapshot({"postgresql": proc_cpu.postgres(database)})
    return parts


def in_own_process(*, db: str, rows: int, base_n: int) -> Figure:
    """B1 in a fresh process, as ``campaigns enroll-csv`` runs. After the other workloads this
    process's heap made preparing a row ~30% slower in the forked workers (CPU per row 64.8 µs
    alone, 83.9 after B2-B6: ``HISTORY.md``, tenth session), which no import would see."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.b1_enrol", db, str(rows), str(base_n)],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"B1 {db} failed: {done.stderr.strip()[-2000:]}")
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return Figure(**{f.name: data[f.name] for f in dataclasses.fields(Figure)})


def main(argv: list[str]) -> None:
    """``python -m bench.b1_enrol DB ROWS BASE_N``: one B1 figure, as JSON on the last line."""
    db, rows, base_n = argv[0], int(argv[1]), int(argv[2])
    quiet_logs()
    with fresh_database(db, "b1") as url:
        rt = bench_runtime(url)
        try:
            version_id = seed_program(rt)
            fig = run(rt, db=db, rows=rows, version_id=version_id, now=BENCH_NOW, base_n=base_n)
        finally:
            rt.engine.dispose()
    print(json.dumps(fig.as_dict()))


if __name__ == "__main__":
    main(sys.argv[1:])
