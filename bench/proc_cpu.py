"""CPU seconds of processes from ``/proc``, to say which part of a run used the cores.

Sampling stacks (py-spy without ``--gil``) counts threads blocked on a socket as busy; the
kernel's utime + stime per process does not.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (0.0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def tree(pid: int) -> list[int]:
    """A process and its descendants (a Celery worker and its pool)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        pending += [int(c) for c in children]
    return found


def named(command: str) -> list[int]:
    """Every process whose command name (``/proc/PID/comm``) is ``command``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == command:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def postgres(database: str) -> list[int]:
    """The PostgreSQL server's processes that work for ``database``: its backends and the
    shared ones (WAL writer, checkpointer, ...), not other databases' backends (a soak
    running beside a benchmark, say)."""
    pids = []
    for pid in named("postgres"):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        words = title.split()
        backend = any(w == "[local]" or w.endswith(")") for w in words)
        if not backend or database in words:
            pids.append(pid)
    return pids


Snapshot = dict[str, dict[int, float]]


def snapshot(groups: Mapping[str, Iterable[int]]) -> Snapshot:
    return {name: {p: cpu_seconds(p) for p in pids} for name, pids in groups.items()}


def spent(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """CPU used between two snapshots per group; a process that started in between (a new
    database connection's backend) counts in full."""
    return {
        name: sum(cpu - before.get(name, {}).get(pid, 0.0) for pid, cpu in pids.items())
        for name, pids in after.items()
    }


def machine_ticks(stat: str | None = None) -> tuple[int, ...]:
    """The whole machine's CPU time counters (``/proc/stat``'s ``cpu`` line: user, nice,
    system, idle, iowait, irq, softirq, steal, ...), in ticks."""
    text = Path("/proc/stat").read_text() if stat is None else stat
    return tuple(int(f) for f in text.split("\n", 1)[0].split()[1:])


def stolen_share(before: Sequence[int], after: Sequence[int]) -> float | None:
    """The share of the machine's CPU time between two ``machine_ticks`` that the hypervisor
    gave to other guests (``steal``). On a shared VM it slows every process alike, and no
    process's own CPU time shows it: a run with a large share reads low on every rate."""
    spent = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(spent[:8])  # guest time is counted in user already
    return spent[7] / total if len(spent) > 7 and total > 0 else None
