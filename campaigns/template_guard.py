"""Run admin-written templates for the first time in a child process with a time limit and a
memory cap.

The Jinja sandbox stops templates from reaching Python internals, but not from asking for a
gigabyte (``{{ "x" * 10**9 }}``, ``{{ "" | center(10**9) }}``) or spinning for an hour (nested
loops). Checking every such path in-process is whack-a-mole; a child process that the
operating system caps cannot take the web app or a worker down with it. Templates are
validated here before they can be saved, previewed or published, so workers only ever render
templates that have already rendered within these limits for a sample patient.

A small single-threaded server (``python -m campaigns.template_guard``) is started once per
process and forks one capped child per check, so a check costs a fork, not an interpreter
start, and no thread of the caller (uvicorn's pool, say) is ever forked.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import resource
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

T = TypeVar("T")

LIMIT_SECONDS = 5.0
#: On top of what the child already maps when it starts (Python and the preloaded modules).
LIMIT_EXTRA_BYTES = 256 * 2**20
_HEADER = struct.Struct("!Q")


class TemplateBudgetExceeded(RuntimeError):
    """A template needed more time or memory than any patient message can need."""


# --- framing ------------------------------------------------------------------------------


def _write_frame(out: IO[bytes], payload: bytes) -> None:
    out.write(_HEADER.pack(len(payload)) + payload)
    out.flush()


def _read_exact(stream: IO[bytes], size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            raise EOFError("guard stream closed")
        data += chunk
    return data


def _read_frame(stream: IO[bytes]) -> bytes:
    (size,) = _HEADER.unpack(_read_exact(stream, _HEADER.size))
    return _read_exact(stream, size)


# --- the caller's side --------------------------------------------------------------------


class _Client:
    """One guard server per process, shared by threads under a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None

    def _server(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "campaigns.template_guard"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        return self._proc

    def call(self, request: bytes) -> bytes:
        with self._lock:
            proc = self._server()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                _write_frame(proc.stdin, request)
                return _read_frame(proc.stdout)
            except (OSError, EOFError):
                self.close()
                raise TemplateBudgetExceeded("stopped the template checker") from None

    def close(self) -> None:
        """Closing stdin ends the server; it is killed if it does not go quietly."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        try:
            proc.wait(2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


_client = _Client()
atexit.register(_client.close)


def run_guarded(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a capped child; ``fn`` and its arguments must be picklable."""
    request = pickle.dumps((fn, args, LIMIT_SECONDS, LIMIT_EXTRA_BYTES))
    ok, value = pickle.loads(_client.call(request))  # our own child's reply
    if ok:
        return value  # type: ignore[no-any-return]
    raise value


# --- the server's side --------------------------------------------------------------------


def _mapped_bytes() -> int | None:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pages * resource.getpagesize()


def _compute(fn: Callable[..., Any], args: tuple[Any, ...], extra: int) -> bytes:
    mapped = _mapped_bytes()
    if mapped is not None:
        resource.setrlimit(resource.RLIMIT_AS, (mapped + extra, mapped + extra))
    try:
        outcome: tuple[bool, Any] = (True, fn(*args))
    except MemoryError:
        outcome = (False, TemplateBudgetExceeded(f"needed more than {extra // 2**20} MB"))
    except Exception as exc:
        outcome = (False, exc)
    try:
        return pickle.dumps(outcome)
    except Exception as exc:  # an unpicklable result or exception: report it as text
        return pickle.dumps((False, RuntimeError(f"{type(exc).__name__}: {exc}")))


def _collect(fd: int, pid: int, seconds: float, extra: int) -> bytes:
    """The child's reply, or a budget error once the deadline passes or the child dies."""
    deadline = time.monotonic() + seconds
    data = b""
    while True:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(left, 0))
        if not ready:
            os.kill(pid, signal.SIGKILL)
            error = TemplateBudgetExceeded(f"took longer than {seconds:g} s to render")
            return pickle.dumps((False, error))
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        data += chunk
    if data:
        return data
    error = TemplateBudgetExceeded(f"needed more than {extra // 2**20} MB")
    return pickle.dumps((False, error))


def _serve_one(request: bytes) -> bytes:
    fn, args, seconds, extra = pickle.loads(request)  # from our parent
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compute, reply, vanish, whatever happens
        try:
            os.close(read_fd)
            reply = _compute(fn, args, extra)
            with os.fdopen(write_fd, "wb") as out:
                out.write(reply)
        finally:
            os._exit(0)
    os.close(write_fd)
    try:
        return _collect(read_fd, pid, seconds, extra)
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)


def serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    import campaigns.programs  # noqa: F401 - preloaded once, so each fork starts warm

    while True:
        try:
            request = _read_frame(stdin)
        except EOFError:
            return
        _write_frame(stdout, _serve_one(request))


if __name__ == "__main__":
    # Replies travel on the original stdout; anything printed goes to stderr instead.
    # Run the importable module's ``serve``, so exceptions pickle as
    # ``campaigns.template_guard.*`` rather than ``__main__.*``.
    from campaigns.template_guard import serve as serve_imported

    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    serve_imported(sys.stdin.buffer, replies)
