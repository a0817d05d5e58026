"""On SQLite one tick runs at a time across processes; a killed holder frees the lock."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from campaigns.tick_lock import lock_path, sole_tick

HOLD = """
import sys, time
from campaigns.tick_lock import sole_tick
with sole_tick(sys.argv[1]) as alone:
    print("held" if alone else "refused", flush=True)
    time.sleep(60)
"""


def test_a_second_tick_on_the_same_sqlite_database_is_refused_until_the_first_ends(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'campaigns.db'}"
    other = f"sqlite:///{tmp_path / 'other.db'}"
    with sole_tick(url) as first, sole_tick(url) as second, sole_tick(other) as elsewhere:
        assert (first, second, elsewhere) == (True, False, True)
    with sole_tick(url) as later:
        assert later
    assert lock_path(url) == tmp_path / "campaigns.db.tick-lock"


def test_a_killed_tick_lets_go_of_the_lock(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'campaigns.db'}"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, url], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with sole_tick(url) as alone:
            assert not alone
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        if holder.stdout is not None:
            holder.stdout.close()
    deadline = time.monotonic() + 5
    while True:
        with sole_tick(url) as alone:
            if alone or time.monotonic() > deadline:
                break
        time.sleep(0.05)
    assert alone


def test_postgresql_and_in_memory_ticks_are_never_refused() -> None:
    for url in ("postgresql+psycopg://postgres@127.0.0.1:5432/campaigns", "sqlite://"):
        assert lock_path(url) is None
        with sole_tick(url) as first, sole_tick(url) as second:
            assert first and second
