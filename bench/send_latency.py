"""What ``CAMPAIGNS_SEND_THREADS`` buys when a provider call takes a real round trip.

B4's fakes answer on loopback in well under a millisecond, so there is nothing for threads to
overlap there. This runs ``deliver_batch`` in one process through the real twilio client
against the fake Twilio answering after ``--latency`` seconds, with 1 and with N threads:

    python -m bench.send_latency [--latency 0.05] [--messages 100] [--threads 8]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.fernet import Fernet
from pydantic import SecretStr

MONDAY = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
DUE = MONDAY + timedelta(hours=10)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--latency", type=float, default=0.05, help="seconds per Twilio request")
    p.add_argument("--messages", type=int, default=100, help="SMS per run, one per patient")
    p.add_argument("--threads", type=int, default=8)
    args = p.parse_args()
    os.environ.setdefault("CAMPAIGNS_DATA_KEYS", Fernet.generate_key().decode())
    os.environ.setdefault("CAMPAIGNS_LOOKUP_KEY", Fernet.generate_key().decode())
    # Imported after the keys are set: patients' numbers are encrypted at rest.
    from campaigns.db import migrate
    from campaigns.enums import Channel
    from campaigns.outbox import deliver_batch
    from campaigns.ratelimit import LocalBucket, RateLimiter
    from campaigns.runtime import build_runtime
    from campaigns.scheduler import tick
    from config.settings import REPO_ROOT, Settings
    from tests.factories import load_program, make_enrollment
    from tests.fakes.twilio_api import running

    with tempfile.TemporaryDirectory(prefix="send_latency_") as folder, running() as fake:
        tmp = Path(folder)
        url = f"sqlite:///{tmp / 'campaigns.db'}"
        migrate(url)
        fake.latency = args.latency
        rt = build_runtime(
            Settings(
                environment="test",
                data_dir=tmp / "data",
                database_url=url,
                templates_dir=REPO_ROOT / "templates",
                secret_key=SecretStr("bench-secret-key-that-is-long-enough-0000"),
                sms_transport="twilio",
                twilio_account_sid=fake.account_sid,
                twilio_auth_token=SecretStr(fake.auth_token),
                twilio_messaging_service_sid="MG" + "a" * 32,
                twilio_api_base_url=fake.base_url,
            )
        )
        rates = {Channel.SMS: 10_000.0, Channel.EMAIL: 10_000.0}
        rt.limiter = RateLimiter(LocalBucket(), rates, burst=100.0)
        version = load_program(rt)
        for _ in range(2 * args.messages):
            make_enrollment(rt, version, now=MONDAY)
        ids = sorted(tick(rt, now=DUE).planned)
        for threads, part in ((1, ids[: args.messages]), (args.threads, ids[args.messages :])):
            rt.settings = rt.settings.model_copy(update={"send_threads": threads})
            started = time.perf_counter()
            results = deliver_batch(rt, part, now=DUE)
            elapsed = time.perf_counter() - started
            sent = sum(r.value == "sent" for r in results.values())
            print(
                f"latency {args.latency * 1000:.0f} ms, send_threads={threads}: "
                f"{len(part) / elapsed:.0f} msg/s ({sent} of {len(part)} sent)"
            )
        rt.engine.dispose()


if __name__ == "__main__":
    main()
