"""Bulk enrolment: many new patients validated like ``PatientInput`` and enrolled in chunks.

Each chunk of rows is checked, hashed and encrypted (``bulk_rows``), then written in one
transaction with one statement per table (``bulk_write``), so 100k rows take seconds instead
of minutes. Preparing is most of the CPU, so past one chunk it runs in worker processes while
this one writes the chunk before. Rows that fail validation, or reuse an ``external_ref``,
phone or email (replies are matched to patients by them), are reported by line and skipped;
a stored row is always a whole one (patient, consents, enrollment and its event).
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain, islice
from typing import Any

from campaigns import field_crypto
from campaigns.bulk_rows import Job, PreparedChunk, RowError, prepare
from campaigns.bulk_write import write_chunk
from campaigns.enrollments import rules_of
from campaigns.models import ProgramVersion
from campaigns.sendwindow import SendWindow

CHUNK = 5000
#: Processes preparing chunks (one per core of the 2-core target); 0 prepares in this one.
WORKERS = 2
#: How much lower the workers' scheduling priority is than this process's. Writing is the
#: serial part: at equal priority the three processes shared two cores evenly, the workers
#: ran ahead, then waited while this process wrote alone with a core idle. With the writer
#: first and the workers taking what it leaves, both cores stay busy (B1 on SQLite ~+7%,
#: ``bench/HISTORY.md``, eleventh session), and an import yields to the service's other
#: processes too.
WORKER_NICENESS = 10
# Forked: a worker is ready in milliseconds (a fresh interpreter needs seconds to import the
# models), and it runs only ``bulk_rows.prepare``: it never touches the database connections
# it inherits, and exits with ``os._exit``, so it cannot close them either.
_CONTEXT = "fork"

Chunk = list[tuple[int, Mapping[str, Any]]]


@dataclass
class BulkResult:
    created: int = 0
    errors: list[RowError] = field(default_factory=list)


def bulk_enroll(
    sessions: Any,
    rows: Iterable[Mapping[str, Any]],
    version: ProgramVersion,
    window: SendWindow,
    *,
    by: str,
    now: datetime,
    chunk_size: int = CHUNK,
    workers: int = WORKERS,
) -> BulkResult:
    """``sessions`` is a context-manager factory (``Runtime.session``): one per chunk."""
    result = BulkResult()
    job = Job(rules_of(version), window, now)
    seen: set[tuple[str, str]] = set()
    for prepared in _prepared_chunks(job, _chunks(rows, chunk_size), workers):
        fresh = _first_sightings(prepared, seen, result)
        with sessions() as session:
            created, clashes = write_chunk(
                session, fresh, version.id, version.version, by=by, now=now
            )
        result.created += created
        result.errors += clashes
    return result


def _chunks(rows: Iterable[Mapping[str, Any]], size: int) -> Iterator[Chunk]:
    numbered = enumerate(rows, start=2)  # line 1 is the CSV header
    while chunk := list(islice(numbered, size)):
        yield chunk


def _first_sightings(
    prepared: PreparedChunk, seen: set[tuple[str, str]], result: BulkResult
) -> PreparedChunk:
    """Valid rows sharing nothing with an earlier row of the file; the rest become errors,
    reported in line order."""
    keep: list[bool] = []
    repeats: list[RowError] = []
    for line, keys in zip(prepared.lines, prepared.identities, strict=True):
        if repeated := [kind for kind, value in keys if (kind, value) in seen]:
            repeats.append(RowError(line, f"{repeated[0]} repeats an earlier row"))
        else:
            seen.update(keys)
        keep.append(not repeated)
    result.errors += sorted(prepared.errors + repeats, key=lambda e: e.line)
    return prepared.only(keep, [])


def _prepared_chunks(job: Job, chunks: Iterator[Chunk], workers: int) -> Iterator[PreparedChunk]:
    """Each chunk prepared, in order. A file of one chunk is prepared here: starting
    workers would cost more than it saves."""
    first, second = next(chunks, None), next(chunks, None)
    if first is None:
        return
    rest = chain([first] if second is None else [first, second], chunks)
    if second is None or workers < 1:
        yield from (prepare(job, chunk) for chunk in rest)
    else:
        yield from _in_workers(job, rest, workers)


def _in_workers(job: Job, chunks: Iterator[Chunk], workers: int) -> Iterator[PreparedChunk]:
    """Each chunk is split across the workers, so none waits while another prepares a whole
    chunk; at most ``workers + 1`` chunks are in flight, so memory stays bounded."""
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context(_CONTEXT),
        initializer=_start_worker,
        initargs=(field_crypto.active(),),
    )
    pending: deque[list[Future[PreparedChunk]]] = deque()
    try:
        for chunk in chunks:
            step = -(-len(chunk) // workers)
            pending.append([pool.submit(prepare, job, chunk[i : i + step])
                            for i in range(0, len(chunk), step)])  # fmt: skip
            if len(pending) > workers:
                yield PreparedChunk.joined([part.result() for part in pending.popleft()])
        while pending:
            yield PreparedChunk.joined([part.result() for part in pending.popleft()])
    finally:
        pool.shutdown(cancel_futures=True)


def _start_worker(keys: field_crypto.FieldKeys) -> None:
    os.nice(WORKER_NICENESS)
    field_crypto.install(keys)
