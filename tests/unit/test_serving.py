"""How many web processes and concurrent requests ``campaigns web`` picks, and the
development keys several processes starting at once must agree on."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import pytest
from anyio import to_thread
from fastapi import FastAPI
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from campaigns.web.serving import DEFAULT_THREADS, admission_lifespan, thread_limit, worker_count
from config.settings import Settings
from tests.event_loops import apart


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(environment="test", data_dir=tmp_path, **values)  # type: ignore[arg-type]


def test_workers_default_to_one_on_sqlite_and_one_per_cpu_on_postgresql(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    assert worker_count(_settings(tmp_path)) == 1
    pg = _settings(tmp_path, database_url="postgresql+psycopg://db/campaigns")
    assert worker_count(pg) == 4
    assert worker_count(_settings(tmp_path, web_workers=3)) == 3
    assert worker_count(pg, requested=2) == 2, "--workers wins over the setting"


def test_threads_default_to_the_connection_pool_capacity(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    pooled = create_engine("sqlite://", poolclass=NullPool)
    assert thread_limit(settings, create_engine("postgresql+psycopg://db/x")) == 5 + 10
    assert thread_limit(settings, create_engine("postgresql+psycopg://db/x", pool_size=7)) == 17
    assert thread_limit(settings, create_engine("sqlite://")) == 1, "one write lock"
    nullpool = create_engine("postgresql+psycopg://db/x", poolclass=NullPool)
    assert thread_limit(settings, nullpool) == DEFAULT_THREADS
    assert thread_limit(_settings(tmp_path, web_threads=2), pooled) == 2


def test_the_lifespan_bounds_the_thread_pool(tmp_path: Path) -> None:
    engine = create_engine("sqlite://", poolclass=NullPool)
    lifespan = admission_lifespan(_settings(tmp_path, web_threads=3), engine)

    async def served() -> float:
        async with lifespan(FastAPI()):
            return to_thread.current_default_thread_limiter().total_tokens

    assert apart(anyio.run, served) == 3


def test_processes_starting_together_share_one_development_secret(tmp_path: Path) -> None:
    made = iter(range(1000))
    with ThreadPoolExecutor(8) as pool:
        secrets = set(
            pool.map(
                lambda _: _settings(tmp_path).dev_secret(".k", lambda: f"key-{next(made)}"),
                range(32),
            )
        )
    assert len(secrets) == 1
    assert (tmp_path / ".k").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [".k"], "no temporary files left behind"
