"""Shared fixtures: settings on a temp dir, and databases on SQLite and real PostgreSQL.

PostgreSQL and Redis tests skip on a laptop without them, but under ``CI=true`` a missing
service is a failure, never a skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from campaigns.db import engine_for, migrate
from campaigns.runtime import Runtime, build_runtime
from config.settings import Settings

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_URL = os.environ.get(
    "CAMPAIGNS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("CAMPAIGNS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REPO = Path(__file__).resolve().parent.parent
# One key set for the whole run, inherited by every CLI, web and worker process a test starts.
os.environ.setdefault("CAMPAIGNS_DATA_KEYS", Fernet.generate_key().decode())
os.environ.setdefault("CAMPAIGNS_LOOKUP_KEY", Fernet.generate_key().decode())


def require_service(name: str, error: Exception) -> None:
    """Skip locally, fail in CI: CI must exercise the real thing."""
    if IN_CI:
        pytest.fail(f"{name} is required when CI=true but unavailable: {error}")
    pytest.skip(f"{name} not available: {error}")


def _pg_admin_url() -> str:
    return make_url(PG_URL).set(database="postgres").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated template database; each test clones it (fast) instead of migrating."""
    name = f"campaigns_tpl_{uuid.uuid4().hex[:8]}"
    try:
        admin = create_engine(_pg_admin_url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        require_service("PostgreSQL", exc)
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    migrate(url)
    engine_for(url).dispose()
    engine_for.cache_clear()
    yield name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    name = f"campaigns_t_{uuid.uuid4().hex[:10]}"
    admin = create_engine(_pg_admin_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    yield url
    engine_for(url).dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each database test runs on both backends."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    url = f"sqlite:///{tmp_path / 'campaigns.db'}"
    migrate(url)
    return url


def make_settings(tmp_path: Path, db_url: str, **overrides: Any) -> Settings:
    """Test settings on ``db_url`` with data under ``tmp_path``; ``overrides`` as fields."""
    return Settings(
        environment="test",
        data_dir=tmp_path / "data",
        database_url=db_url,
        templates_dir=REPO / "templates",
        secret_key="test-secret-key-that-is-long-enough-000000",  # type: ignore[arg-type]
        **overrides,
    )


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return make_settings(tmp_path, db_url)


@pytest.fixture
def rt(settings: Settings) -> Iterator[Runtime]:
    runtime = build_runtime(settings)
    yield runtime
    runtime.engine.dispose()
    engine_for.cache_clear()
