"""B6 signed inbound Twilio webhooks: parse + store + pacing under an open-loop load.

The real app runs as production runs it, ``campaigns web`` (uvicorn, one process per CPU on
PostgreSQL and one on SQLite unless ``--b6-workers`` says otherwise, each running at most its
connection pool's capacity of requests at once), in subprocesses so the server and the load
generator never share a GIL. The generator sends pre-built bytes (``bench.rawhttp``: it shares
the machine's cores with the server) at a fixed rate on a precomputed schedule and measures
each latency from the request's *scheduled* send time, so a slow server cannot hide its
queueing by slowing the generator (coordinated omission).

Baseline (same run, same rate): the design most projects start with, a plain handler that
checks the signature the same way but finds the sender by loading every patient and comparing
numbers in Python (what a "just decrypt and compare" lookup over encrypted phone numbers
degenerates to), then stores the reply through the same ``receive_reply``. Ceiling: ``/healthz``
on the same server at the same rate (HTTP + uvicorn + FastAPI with no database work).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode, urlsplit

import httpx
from fastapi import Depends, FastAPI, Response
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from bench.common import (
    BENCH_NOW,
    TWILIO_TOKEN,
    WORK_DIR,
    Figure,
    bench_runtime,
    child_env,
    child_output,
    fresh_database,
    parse_size,
    percentile,
    stop,
)
from bench.datagen import phone_of, populate
from bench.rawhttp import ConnectionPool, ProtocolError, encode_request
from campaigns.enums import Channel
from campaigns.inbound import receive_reply
from campaigns.models import InboundReply, Patient, utcnow
from campaigns.web.deps import RuntimeDep
from campaigns.web.twilio_hooks import SIGNATURE_HEADER, SMS_PATH, InboundSms, signed_form, twiml

PUBLIC = "https://clinic.example"
NAIVE_PATH = "/bench/naive/sms"
GOAL_P99_MS = 50.0
#: Share of requests from numbers that are not patients (stored nowhere, answered empty).
UNKNOWN_SHARE = 0.05
BODIES = (
    "4", "7 today", "flare", "3", "pain is 5", "6/10 this morning", "2 - better",
    "Wrote in my journal about the argument with my sister, the pain eased after",
    "Did the somatic tracking, noticed the tingling without fear", "5", "worse today, 8",
    "Walked for 20 minutes, felt ok", "bad day", "1", "pain 3 after the walk",
)  # fmt: skip


@dataclass(frozen=True)
class Req:
    """One precomputed request: signing costs the generator nothing during the run."""

    path: str
    body: bytes
    headers: dict[str, str]
    sid: str
    known: bool

    def encode(self, host: str) -> bytes:
        """The request's bytes on the wire, for ``host`` (``127.0.0.1:port``)."""
        if not self.body:
            return encode_request("GET", self.path, host, self.headers)
        return encode_request("POST", self.path, host, self.headers, self.body)


@dataclass
class Step:
    """One constant-rate phase of the load."""

    target_rps: float
    sent: int
    ok: int
    errors: int
    achieved_rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    #: The load generator's own CPU per request (ms): taken from the server's 2 cores.
    client_cpu_ms: float = 0.0

    @property
    def sustained(self) -> bool:
        """Kept up: >= 95% of the rate, no errors, and no growing queue (p99 under 1 s)."""
        return (
            self.errors == 0
            and self.achieved_rps >= 0.95 * self.target_rps
            and (self.p99_ms < 1000)
        )


def sms_requests(n: int, patients: int, path: str, rng: random.Random) -> list[Req]:
    """Distinct MessageSids, realistic bodies, mostly from seeded patients' numbers."""
    validator = RequestValidator(TWILIO_TOKEN)
    out = []
    for _ in range(n):
        known = rng.random() >= UNKNOWN_SHARE
        stranger = f"+1{3_000_000_000 + rng.randint(0, 10**6)}"
        sender = phone_of(rng.randint(1, patients)) if known else stranger
        sid = "SM" + uuid.uuid4().hex
        form = {
            "MessageSid": sid, "SmsSid": sid, "AccountSid": "AC" + "0" * 32, "From": sender,
            "To": "+15005550006", "Body": rng.choice(BODIES), "NumMedia": "0",
        }  # fmt: skip
        signature = validator.compute_signature(PUBLIC + path, form)
        headers = {
            SIGNATURE_HEADER: signature,
            "Content-Type": "application/x-www-form-urlencoded",
        }
        out.append(Req(path, urlencode(form).encode(), headers, sid, known))
    return out


def health_requests(n: int) -> list[Req]:
    return [Req("/healthz", b"", {}, "", False) for _ in range(n)]


async def _fire(
    base_url: str, reqs: Sequence[Req], rate: float, timeout: float, failed: set[str]
) -> Step:
    """Open loop: request i is due at t0 + i/rate whatever happened to earlier ones.
    SIDs of requests that got no 200 go into ``failed`` (the check expects nothing of them).
    Requests go out as pre-built bytes (``bench.rawhttp``): the generator's CPU is the
    server's loss on a shared machine, so it is measured and reported per request."""
    url = urlsplit(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    wire = [req.encode(url.netloc) for req in reqs]
    latencies: list[float] = []
    errors = 0
    pool = ConnectionPool(host, port, limit=512)

    async def one(req: Req, data: bytes, due: float) -> None:
        nonlocal errors
        try:
            async with asyncio.timeout(timeout):
                status = await pool.send(data)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ProtocolError):
            status = 0
        if status != 200:
            errors += 1
            failed.add(req.sid)
            return
        latencies.append(time.perf_counter() - due)

    tasks = []
    cpu0 = time.process_time()
    t0 = time.perf_counter() + 0.05
    for i, (req, data) in enumerate(zip(reqs, wire, strict=True)):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(req, data, due)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    await pool.aclose()
    ms = [x * 1000 for x in latencies]
    return Step(
        target_rps=rate,
        sent=len(reqs),
        ok=len(latencies),
        errors=errors,
        achieved_rps=len(latencies) / elapsed if elapsed else 0.0,
        p50_ms=percentile(ms, 50),
        p99_ms=percentile(ms, 99),
        max_ms=max(ms, default=float("nan")),
        client_cpu_ms=cpu * 1000 / len(reqs) if reqs else 0.0,
    )


def fire(
    base_url: str, reqs: Sequence[Req], rate: float, failed: set[str], timeout: float = 60.0
) -> Step:
    return asyncio.run(_fire(base_url, reqs, rate, timeout, failed))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_env(url: str, data_dir: Path) -> dict[str, str]:
    """Settings for the server process: Twilio webhooks on, file transports, bench secrets."""
    return child_env(
        data_dir,
        url,
        CAMPAIGNS_TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
        CAMPAIGNS_PUBLIC_BASE_URL=PUBLIC,
    )


def server_command(factory: str | None, port: int, workers: int) -> list[str]:
    """``campaigns web`` as production runs it (``factory`` None), else plain uvicorn serving
    ``factory`` (the baseline) with as many processes. ``workers`` 0: what ``campaigns web``
    picks (one per CPU on PostgreSQL, one on SQLite)."""
    python = os.environ.get("BENCH_PYTHON", sys.executable)
    address = ["--host", "127.0.0.1", "--port", str(port)]
    if factory is None:
        return [python, "-m", "campaigns.cli", "web", *address,
                *(["--workers", str(workers)] if workers else [])]  # fmt: skip
    return [python, "-m", "uvicorn", factory, "--factory", *address,
            "--workers", str(max(1, workers)), "--no-access-log"]  # fmt: skip


@contextmanager
def server(factory: str | None, url: str, log_path: Path, workers: int = 0) -> Iterator[str]:
    """The server in its own process(es); yields its base URL once ``/healthz`` answers."""
    port = _free_port()
    data_dir = log_path.parent / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd = server_command(factory, port, workers)
    with child_output(log_path) as log:
        proc = subprocess.Popen(cmd, env=server_env(url, data_dir), stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    hint = f"(BENCH_KEEP_SERVER_LOG=1 keeps its output in {log_path})"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {proc.returncode} {hint}")
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start {hint}")
            time.sleep(0.1)
        yield base
    finally:
        stop(proc, 10)


def naive_app() -> FastAPI:
    """Baseline server: the real app plus a plain handler that scans every patient."""
    from campaigns.web.app import create_app

    app = create_app()

    @app.post(NAIVE_PATH, response_class=Response)
    def naive_sms(
        form: Annotated[dict[str, str], Depends(signed_form(NAIVE_PATH))], rt: RuntimeDep
    ) -> Response:
        sms = InboundSms.from_form(form)
        with rt.session() as session:
            patient = next(
                (p for p in session.scalars(select(Patient)) if p.phone_e164 == sms.sender), None
            )
            if patient is not None:
                receive_reply(
                    rt, session, patient, sms.body, channel=Channel.SMS, now=utcnow(),
                    provider_id=sms.message_sid,
                )  # fmt: skip
        return twiml()

    return app


def stored_counts(url: str, reqs: Sequence[Req], failed: set[str]) -> dict[str, int]:
    """Inbound rows per answered request: a patient's text is stored once, a stranger's
    never. A request that got an error (overload) must not be stored twice either."""
    rt = bench_runtime(url)
    sids = [r.sid for r in reqs if r.sid]
    counts: dict[str, int] = {}
    with rt.session() as session:
        for i in range(0, len(sids), 500):
            chunk = sids[i : i + 500]
            rows = session.execute(
                select(InboundReply.provider_id, func.count())
                .where(InboundReply.provider_id.in_(chunk))
                .group_by(InboundReply.provider_id)
            ).all()
            counts.update({sid: n for sid, n in rows if sid is not None})
    rt.engine.dispose()
    answered = [r for r in reqs if r.sid and r.sid not in failed]
    wrong = sum(counts.get(r.sid, 0) != (1 if r.known else 0) for r in answered)
    wrong += sum(counts.get(r.sid, 0) > 1 for r in reqs if r.sid in failed)
    return {
        "requests": len(sids),
        "failed": len(failed & set(sids)),
        "failed_but_stored": sum(counts.get(sid, 0) for sid in failed),
        "known_senders": sum(r.known for r in answered),
        "stored": sum(counts.get(r.sid, 0) for r in answered),
        "wrong": wrong,
    }


def run(
    *,
    db: str,
    patients: int,
    rate: float,
    seconds: float,
    base_seconds: float,
    step_rates: Sequence[float],
    step_seconds: float,
    workers: int = 0,
) -> Figure:
    """Seed, then on one server: warm-up, /healthz ceiling, ours at ``rate``, the step-up;
    check storage; then the naive server for the baseline. Raises if an answered text was not
    stored exactly once (a correctness failure, not a slow run)."""
    rng = random.Random(6)
    with fresh_database(db, "b6") as url:
        rt = bench_runtime(url)
        populate(rt, patients, now=BENCH_NOW)
        rt.engine.dispose()
        log_path = WORK_DIR / f"b6-{db}-{uuid.uuid4().hex[:6]}" / "server.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        n = max(1, int(rate * seconds))
        checked: list[Req] = []
        failed: set[str] = set()
        base_failed: set[str] = set()
        with server(None, url, log_path, workers) as base:
            warm = sms_requests(max(20, int(rate)), patients, SMS_PATH, rng)
            fire(base, warm, rate / 2, failed)
            ceiling = fire(base, health_requests(n), rate, failed)
            main = sms_requests(n, patients, SMS_PATH, rng)
            ours = fire(base, main, rate, failed)
            checked += warm + main
            steps: list[Step] = []
            for step_rate in step_rates:
                reqs = sms_requests(max(1, int(step_rate * step_seconds)), patients, SMS_PATH, rng)
                steps.append(fire(base, reqs, step_rate, failed))
                checked += reqs
                if not steps[-1].sustained:
                    break
                time.sleep(0.5)
        verify = stored_counts(url, checked, failed)
        base_reqs = sms_requests(max(1, int(rate * base_seconds)), patients, NAIVE_PATH, rng)
        naive_workers = workers or (1 if db == "sqlite" else os.cpu_count() or 1)
        with server("bench.b6_replies:naive_app", url, log_path, naive_workers) as base:
            baseline = fire(base, base_reqs, rate, base_failed)
        base_verify = stored_counts(url, base_reqs, base_failed)
    if verify["wrong"]:
        raise AssertionError(f"B6: {verify['wrong']} requests not stored exactly once: {verify}")
    sustained = [s.target_rps for s in steps if s.sustained]
    under_goal = [s.target_rps for s in steps if s.sustained and s.p99_ms < GOAL_P99_MS]
    return Figure(
        workload="B6",
        db=db,
        size=patients,
        metric=f"webhook p99 at {rate:g}/s",
        unit="ms",
        better="lower",
        ours=ours.p99_ms,
        baseline=baseline.p99_ms,
        baseline_desc=(
            f"plain handler scanning every patient to match the sender, {base_seconds:g} s"
            " at the same rate"
        ),
        ceiling=ceiling.p99_ms,
        ceiling_desc="/healthz p99 on the same server at the same rate",
        goal=f"p99 < {GOAL_P99_MS:g} ms at {rate:g} req/s",
        goal_met=ours.sustained and ours.p99_ms < GOAL_P99_MS,
        extra={
            "ours": asdict(ours),
            "baseline": asdict(baseline),
            "ceiling": asdict(ceiling),
            "steps": [asdict(s) for s in steps],
            "max_sustained_rps": max(sustained, default=0.0),
            "max_rps_p99_under_goal": max(under_goal, default=0.0),
            "stored_once": verify["wrong"] == 0,
            "verify": verify,
            "baseline_verify": base_verify,
            "workers": workers or "campaigns web default",
        },
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--b6-patients", default="10k", help="seeded patients for B6")
    p.add_argument("--b6-rate", type=float, default=200.0, help="B6 request rate (req/s)")
    p.add_argument("--b6-seconds", type=float, default=10.0, help="B6 run at --b6-rate")
    p.add_argument("--b6-base-seconds", type=float, default=1.0, help="B6 baseline run")
    p.add_argument("--b6-steps", default="25,50,75,100,150,200,300,400", help="step-up rates")
    p.add_argument("--b6-step-seconds", type=float, default=5.0)
    p.add_argument(
        "--b6-workers", type=int, default=0,
        help="server processes (0: as `campaigns web` picks: 1 on SQLite, 1 per CPU otherwise)",
    )  # fmt: skip


def run_cli(args: argparse.Namespace, db: str) -> Figure:
    """``bench/run`` entry point; ``--smoke`` proves the whole path in a few seconds."""
    if args.smoke:
        return run(db=db, patients=200, rate=20, seconds=1, base_seconds=1,
                   step_rates=[20], step_seconds=1)  # fmt: skip
    return run(
        db=db,
        patients=parse_size(args.b6_patients),
        rate=args.b6_rate,
        seconds=args.b6_seconds,
        base_seconds=args.b6_base_seconds,
        step_rates=[float(r) for r in args.b6_steps.split(",") if r],
        step_seconds=args.b6_step_seconds,
        workers=args.b6_workers,
    )
