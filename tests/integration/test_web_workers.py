"""``campaigns web --workers N`` as production runs it: a real uvicorn parent and N server
processes on PostgreSQL, each answering, and signed texts stored exactly once whichever
process takes them (the development keys they share are in tests/unit/test_serving.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from campaigns.models import InboundReply, Patient, utcnow
from campaigns.runtime import Runtime
from campaigns.web.twilio_hooks import SIGNATURE_HEADER, SMS_PATH
from config.settings import Settings
from tests.conftest import REPO
from tests.factories import make_patient
from tests.servers import free_port

TOKEN = "twilio-test-token-for-the-workers-test"
PUBLIC = "https://clinic.example"
WORKERS = 2


@pytest.fixture
def db_url(pg_url: str) -> str:
    """Several processes on one database is the production topology: PostgreSQL."""
    return pg_url


def _env(settings: Settings) -> dict[str, str]:
    keys = ("CAMPAIGNS_DATA_KEYS", "CAMPAIGNS_LOOKUP_KEY")  # the test session's patient keys
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_") or k in keys}
    return {
        **env,
        "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        "CAMPAIGNS_ENVIRONMENT": "test",
        "CAMPAIGNS_DATA_DIR": str(settings.data_dir),
        "CAMPAIGNS_DATABASE_URL": settings.resolved_database_url,
        "CAMPAIGNS_TEMPLATES_DIR": str(settings.templates_dir),
        "CAMPAIGNS_SECRET_KEY": "test-secret-key-that-is-long-enough-000000",
        "CAMPAIGNS_TWILIO_AUTH_TOKEN": TOKEN,
        "CAMPAIGNS_PUBLIC_BASE_URL": PUBLIC,
        "CAMPAIGNS_WEB_THREADS": "3",
    }


def _ready_pids(log_path: Path) -> set[int]:
    pids = set()
    for line in log_path.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"web process ready"' in line:
            entry = json.loads(line)
            assert entry["threads"] == 3, "CAMPAIGNS_WEB_THREADS bounds each process"
            assert entry["frozen_objects"] > 50_000, "the start-up heap is frozen"
            pids.add(int(entry["pid"]))
    return pids


@contextmanager
def web(settings: Settings, log_path: Path) -> Iterator[tuple[str, set[int]]]:
    """``campaigns web --workers 2``; yields its URL and its server processes' pids."""
    port = free_port()
    cmd = [sys.executable, "-m", "campaigns.cli", "web", "--port", str(port),
           "--workers", str(WORKERS)]  # fmt: skip
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=_env(settings), stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while len(pids := _ready_pids(log_path)) < WORKERS:
            assert proc.poll() is None, log_path.read_text(errors="replace")[-2000:]
            assert time.monotonic() < deadline, "workers did not start"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", pids
    finally:
        proc.terminate()
        proc.wait(30)


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _text(sid: str, sender: str) -> tuple[bytes, dict[str, str]]:
    form = {"MessageSid": sid, "From": sender, "To": "+15005550006", "Body": "4"}
    signature = RequestValidator(TOKEN).compute_signature(PUBLIC + SMS_PATH, form)
    headers = {SIGNATURE_HEADER: signature, "Content-Type": "application/x-www-form-urlencoded"}
    return urlencode(form).encode(), headers


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_workers_flag_starts_several_processes_that_all_serve(
    rt: Runtime, settings: Settings, tmp_path: Path
) -> None:
    patient_id = make_patient(rt, now=utcnow())
    with rt.session() as session:
        phone = session.get_one(Patient, patient_id).phone_e164
    assert phone is not None
    senders = [phone, "+15005550199"]  # the patient, and a stranger (stored nowhere)
    with web(settings, tmp_path / "web.log") as (base, pids):
        assert len(pids) == WORKERS
        before = {pid: _cpu_ticks(pid) for pid in pids}

        def texts(i: int) -> int:
            body, headers = _text(f"SMworkers{i:04d}", senders[i % len(senders)])
            with httpx.Client(base_url=base, timeout=30) as client:  # a new connection each
                codes = [client.post(SMS_PATH, content=body, headers=headers).status_code]
                codes += [client.get("/healthz").status_code for _ in range(20)]
            return max(codes)

        with ThreadPoolExecutor(16) as pool:
            assert set(pool.map(texts, range(200))) == {200}
        busy = {pid for pid in pids if _cpu_ticks(pid) > before[pid]}
        assert busy == pids, "every server process answered requests"
        with httpx.Client(base_url=base) as client:  # one keep-alive connection
            took = []
            for _ in range(21):
                started = time.perf_counter()
                client.get("/healthz")
                took.append(time.perf_counter() - started)
        # TCP_NODELAY is on: without it every kept-alive answer waited ~40 ms (delayed ACK).
        assert sorted(took)[10] < 0.02
        retry_body, retry_headers = _text("SMworkers0000", senders[0])
        retry = httpx.post(base + SMS_PATH, content=retry_body, headers=retry_headers)
        assert retry.status_code == 200
    with rt.session() as session:
        stored = dict(
            session.execute(
                select(InboundReply.provider_id, func.count()).group_by(InboundReply.provider_id)
            ).all()
        )
    assert stored == {f"SMworkers{i:04d}": 1 for i in range(0, 200, 2)}
