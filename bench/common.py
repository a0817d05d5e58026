"""Shared pieces: figures, timing, throwaway databases and a benchmark runtime."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from campaigns.channels.base import OutgoingMessage, ProviderReceipt
from campaigns.db import engine_for, make_engine, migrate
from campaigns.enums import Channel
from campaigns.field_crypto import new_keys
from campaigns.rendering import TemplateLibrary
from campaigns.runtime import Runtime
from config.settings import REPO_ROOT, Settings

PG_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
WORK_DIR = Path(os.environ.get("BENCH_WORK_DIR", REPO_ROOT / "var" / "bench"))
TEMPLATES = REPO_ROOT / "templates"
PROGRAM_DIR = TEMPLATES / "programs" / "retrain-the-alarm"
SECRET = "bench-secret-key-that-is-long-enough-0000000000"
#: One key set per run for patient contacts, shared by every server and worker it starts.
KEY_VARIABLES = ("CAMPAIGNS_DATA_KEYS", "CAMPAIGNS_LOOKUP_KEY")
for _name, _value in zip(KEY_VARIABLES, new_keys().values(), strict=True):
    os.environ.setdefault(_name, _value)
TWILIO_TOKEN = "bench-twilio-auth-token-0123456789"
#: A weekday instant when 09:00-20:00 is open in every US zone the generator uses.
BENCH_NOW = datetime(2025, 3, 4, 18, 0, tzinfo=UTC)

Better = Literal["higher", "lower", "target"]


@dataclass
class Figure:
    """One measured number, its baseline from the same run and the machine's ceiling."""

    workload: str
    db: str
    size: int
    metric: str
    unit: str
    better: Better
    ours: float
    baseline: float | None
    baseline_desc: str
    ceiling: float | None
    ceiling_desc: str
    goal: str
    goal_met: bool | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def vs_baseline(self) -> float | None:
        """How many times better than the baseline (>1 is better), whatever the unit."""
        if not self.baseline or not self.ours:
            return None
        if self.better == "lower":
            return self.baseline / self.ours
        return self.ours / self.baseline

    @property
    def ceiling_fraction(self) -> float | None:
        """Share of the machine's ceiling reached (1.0 = as fast as the bare primitive)."""
        if not self.ceiling or not self.ours:
            return None
        if self.better == "lower":
            return self.ceiling / self.ours
        return self.ours / self.ceiling

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["vs_baseline"] = self.vs_baseline
        data["ceiling_fraction"] = self.ceiling_fraction
        return data


FIGURE_KEYS = (
    "workload",
    "db",
    "size",
    "metric",
    "unit",
    "ours",
    "baseline",
    "vs_baseline",
    "ceiling",
    "ceiling_fraction",
    "goal",
    "goal_met",
)


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cpu_probe(rounds: int = 5) -> float:
    """Milliseconds one core takes for a fixed mix of the interpreter work this service does
    (dicts, strings, JSON, HMAC), median of ``rounds``. Shared VMs differ from day to day by
    up to 2x; recorded in every report so figures from different runs can be put side by side.
    """
    key = b"k" * 32
    record = {"outbox_id": 12345, "channel": "sms", "body": "Reply 0-10 or FLARE. " * 4}

    def work() -> None:
        for i in range(4000):
            record["outbox_id"] = i
            text = json.dumps(record)
            json.loads(text)
            hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
            "-".join(sorted(text.split(" "))).lower()

    return statistics.median(timed(work) for _ in range(rounds)) * 1000


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values)


def parse_size(text_value: str) -> int:
    raw = text_value.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(raw[-1:], 1)
    return int(float(raw.rstrip("km")) * mult)


def size_label(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


class FakeTransport:
    """In-process transport: accepts everything, costs one counter increment."""

    waits = False  # nothing to overlap: a batch sends on its own thread

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.sent = 0

    def send(self, message: OutgoingMessage) -> ProviderReceipt:
        self.sent += 1
        return ProviderReceipt(f"fake-{message.outbox_id}")


@contextmanager
def fresh_database(kind: str, tag: str) -> Iterator[str]:
    """A migrated, empty database; dropped (PostgreSQL) or deleted (SQLite) afterwards."""
    name = f"bench_{tag}_{uuid.uuid4().hex[:8]}"
    if kind == "sqlite":
        folder = WORK_DIR / name
        folder.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{folder / 'campaigns.db'}"
        try:
            _migrate(url)
            yield url
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    try:
        _migrate(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _migrate(url: str) -> None:
    migrate(url)
    engine_for(url).dispose()
    engine_for.cache_clear()


def bench_settings(url: str, **overrides: Any) -> Settings:
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    values: dict[str, Any] = {
        "environment": "test",
        "data_dir": WORK_DIR / "data",
        "database_url": url,
        "templates_dir": TEMPLATES,
        "secret_key": SECRET,
        **overrides,
    }
    return Settings(**values)


def bench_runtime(url: str, **overrides: Any) -> Runtime:
    """The real runtime pieces, with in-process transports and no rate limit."""
    settings = bench_settings(url, **overrides)
    engine: Engine = make_engine(url)
    return Runtime(
        settings=settings,
        engine=engine,
        templates=TemplateLibrary(settings.templates_dir),
        transports={
            Channel.SMS: FakeTransport(Channel.SMS),
            Channel.EMAIL: FakeTransport(Channel.EMAIL),
        },
        limiter=None,
    )


def child_env(data_dir: Path, database_url: str, **settings: str) -> dict[str, str]:
    """Environment for a server or worker the bench starts: none of the caller's
    ``CAMPAIGNS_*`` settings but the run's patient keys, this checkout importable, and the
    bench's own secrets; ``settings`` adds more ``CAMPAIGNS_*`` variables."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_") or k in KEY_VARIABLES
    }
    env.update(
        PYTHONPATH=str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        CAMPAIGNS_ENVIRONMENT="test",
        CAMPAIGNS_DATABASE_URL=database_url,
        CAMPAIGNS_DATA_DIR=str(data_dir),
        CAMPAIGNS_TEMPLATES_DIR=str(TEMPLATES),
        CAMPAIGNS_SECRET_KEY=SECRET,
        **settings,
    )
    return env


def child_output(log_path: Path) -> IO[bytes]:
    """Where a child's output goes: nowhere unless ``BENCH_KEEP_SERVER_LOG=1``, because a
    traceback can quote SQL parameters (synthetic phone numbers, message bodies)."""
    if os.environ.get("BENCH_KEEP_SERVER_LOG") == "1":
        return log_path.open("ab")
    return open(os.devnull, "wb")


def stop(proc: subprocess.Popen[bytes], timeout: float) -> None:
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def quiet_logs() -> None:
    """The service logs every tick and send at INFO; a benchmark only wants warnings."""
    import logging

    from campaigns.logs import configure

    configure(level=logging.WARNING)
