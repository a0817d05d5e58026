"""Running a ``bench`` module as its users do, for the tests that check it end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from config.settings import REPO_ROOT


def run_bench(module: str, *args: str, work_dir: Path | None = None, timeout: float = 240) -> str:
    """``python -m bench.<module> args`` from the repository; its standard output. Fails the
    test (``CalledProcessError``, with the output) if the module exits non-zero."""
    env = dict(os.environ)
    if work_dir is not None:
        env["BENCH_WORK_DIR"] = str(work_dir)
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return done.stdout
