"""Helpers for fault-injection tests: a private Redis we may stop, polling with deadlines."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import redis

from tests.fakes.twilio_api import FakeTwilio
from tests.servers import free_port

T = TypeVar("T")
_REDIS = ["redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]


def wait_for(
    probe: Callable[[], T],
    *,
    timeout: float,
    interval: float = 0.05,
    what: str = "condition",
    state: Callable[[], object] | None = None,
) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds,
    with what ``state`` reports, so a timeout in CI says where things stood."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = f"; state: {state()}" if state is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{seen}")
        time.sleep(interval)


class PrivateRedis:
    """A ``redis-server`` owned by one test, on its own port, with no persistence."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        with self.log_path.open("a") as log:
            self.proc = subprocess.Popen(
                [*_REDIS, "--port", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        client = redis.Redis(port=self.port, socket_connect_timeout=1)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_for(up, timeout=20, what=f"redis-server on port {self.port}")
        client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)
        self.proc = None


@contextmanager
def private_redis(log_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(log_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def delivered_sends(log_paths: Iterable[Path]) -> Counter[int]:
    """How many times the workers' JSON logs say each outbox id was delivered (``sent``)."""
    sent: Counter[int] = Counter()
    for path in log_paths:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            start = line.find("{")
            if start < 0:
                continue
            try:
                record = json.loads(line[start:])
            except ValueError:
                continue
            if record.get("event") == "deliver":
                sent.update(int(outbox_id) for outbox_id in record.get("sent", []))
    return sent


class OutageTwilio(FakeTwilio):
    """The fake Twilio, plus a switch to end a scripted outage (scripts otherwise persist)."""

    def end_outage(self) -> None:
        with self._lock:
            self._next.clear()
            self._for_to.clear()
