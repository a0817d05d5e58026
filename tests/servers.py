"""Real servers for integration tests: the app under uvicorn on a free loopback port."""

from __future__ import annotations

import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from config.beat import QUEUES
from config.settings import Settings

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def in_thread(server: socketserver.BaseServer, *, poll_interval: float = 0.5) -> Iterator[None]:
    """Run a stdlib socket server (the fakes') in a thread; shut it down and close it on exit."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": poll_interval}, daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


@contextmanager
def serve(app: FastAPI, port: int | None = None) -> Iterator[str]:
    """Run ``app`` in a thread; yields its base URL and stops it on exit."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _celery_env(settings: Settings, extra_env: dict[str, str] | None) -> dict[str, str]:
    return {
        **os.environ,
        "CAMPAIGNS_DATA_DIR": str(settings.data_dir),
        "CAMPAIGNS_DATABASE_URL": settings.resolved_database_url,
        "CAMPAIGNS_BROKER_URL": settings.resolved_broker_url,
        "CAMPAIGNS_SECRET_KEY": "test-secret-key-that-is-long-enough-000000",
        **(extra_env or {}),
    }


@contextmanager
def _celery(
    args: list[str],
    settings: Settings,
    log_path: Path,
    extra_env: dict[str, str] | None,
    new_session: bool = False,
) -> Iterator[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "celery", "-A", "worker.app", *args]
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            env=_celery_env(settings, extra_env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(30)


@contextmanager
def celery_worker(
    settings: Settings,
    log_path: Path,
    *,
    concurrency: int = 2,
    extra_env: dict[str, str] | None = None,
    new_session: bool = False,
) -> Iterator[subprocess.Popen[bytes]]:
    """A real ``celery worker`` process on the settings' database and broker.

    ``new_session`` puts the worker and its pool children in their own process group, so a
    test can ``os.killpg`` all of them at once; ``extra_env`` adds ``CAMPAIGNS_*`` variables.
    """
    args = ["worker", "-Q", QUEUES, "-c", str(concurrency), "--loglevel=INFO",
            "--without-gossip", "--without-mingle"]  # fmt: skip
    with _celery(args, settings, log_path, extra_env, new_session) as proc:
        yield proc


@contextmanager
def celery_beat(
    settings: Settings, log_path: Path, *, extra_env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A real ``celery beat`` process, its schedule file beside its log."""
    args = ["beat", "-s", str(log_path.with_suffix(".schedule")), "--loglevel=INFO"]
    with _celery(args, settings, log_path, extra_env) as proc:
        yield proc
