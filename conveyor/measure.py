"""What one job cost to run: measured as it runs, recorded in the catalog when it ends.

The worker's :class:`~conveyor.worker.Processor` opens a :func:`measuring`
context around each job; the stages it passes through :func:`note` what they
learn (the input's size and kind, its pages or minutes of audio, the tokens
embedded) and the extraction child reports its peak memory
(:mod:`conveyor.isolation`). A context variable carries the record, so no stage
signature changes and a note outside a job is a no-op.

Peak memory is the kernel's high-water mark of resident memory (``VmHWM``): the
extraction child resets its own before each document (``/proc/self/clear_refs``),
so its figure is the document's; the worker's is the process's peak so far,
which is what a container or a Lambda function must be sized to (threads share
it). On a system without ``/proc`` both are None.

Every job is recorded — done, skipped, retried or failed — because every
attempt is billed. :mod:`conveyor.cost` reads the records back.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import resource
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from .exceptions import safe_summary

log = logging.getLogger(__name__)

FIELDS = (
    "document_id",
    "job_id",
    "collection",
    "run",
    "kind",
    "outcome",
    "runtime",
    "worker",
    "started_at",
    "finished_at",
    "seconds",
    "input_bytes",
    "pages",
    "audio_seconds",
    "chunks",
    "tokens",
    "child_peak_mb",
    "worker_peak_mb",
    "stages",
)
"""A measurement record's fields, in the order the catalogs store them."""


@dataclass
class Measurement:
    """One job's measurements (see :data:`FIELDS`); None where not known."""

    document_id: str | None = None
    job_id: str | None = None
    collection: str | None = None
    run: str | None = None
    kind: str | None = None
    outcome: str | None = None
    """What became of the job: merge, skipped, retry, failed, lost."""
    runtime: str = "worker"
    """Where it ran: worker, lambda or run-job."""
    worker: str = ""
    """The process: host:pid."""
    started_at: float = 0.0
    finished_at: float = 0.0
    seconds: float = 0.0
    """Wall-clock seconds from lease to outcome (settled before the ack)."""
    input_bytes: int | None = None
    pages: int | None = None
    audio_seconds: float | None = None
    chunks: int | None = None
    tokens: int | None = None
    """Tokens embedded (the text's chunks, in the model's tokens)."""
    child_peak_mb: float | None = None
    worker_peak_mb: float | None = None
    stages: dict[str, float] = field(default_factory=dict)
    """Seconds per stage (fetch, extract, chunk, embed, …)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Measurement:
        """A catalog's row (extra columns, such as its id, are left out)."""
        known: dict[str, Any] = {k: row[k] for k in FIELDS if row.get(k) is not None}
        return cls(**known)

    @property
    def memory_mb(self) -> float | None:
        """Memory the job needed in all: the worker's peak plus its extraction child's."""
        parts = [m for m in (self.worker_peak_mb, self.child_peak_mb) if m is not None]
        return sum(parts) if parts else None


_current: contextvars.ContextVar[Measurement | None] = contextvars.ContextVar(
    "conveyor_measurement", default=None
)


def note(**fields: Any) -> None:
    """Set fields of the job being measured in this context (no-op outside one);
    ``None`` values are ignored."""
    current = _current.get()
    if current is None:
        return
    for key, value in fields.items():
        if value is not None:
            setattr(current, key, value)


def current() -> Measurement | None:
    return _current.get()


@contextmanager
def measuring(runtime: str = "worker") -> Iterator[Measurement]:
    """Measure the job run inside; its wall time and the worker's peak memory are
    filled in on the way out."""
    record = Measurement(
        runtime=runtime, worker=f"{socket.gethostname()}:{os.getpid()}", started_at=time.time()
    )
    token = _current.set(record)
    try:
        yield record
    finally:
        if not record.seconds:  # not settled before its ack
            record.seconds = round(max(0.0, time.time() - record.started_at), 4)
        record.finished_at = record.started_at + record.seconds
        record.worker_peak_mb = own_peak_mb()
        _current.reset(token)


def settled() -> None:
    """The job's outcome is settled: its time stops here, before the queue hears of it
    (an ack frees its place for another job, which must not seem to overlap it)."""
    current = _current.get()
    if current is not None and not current.seconds:
        current.seconds = round(max(0.0, time.time() - current.started_at), 4)


def runtime() -> str:
    """Where this process runs jobs: ``lambda`` inside AWS Lambda, else ``worker``."""
    return "lambda" if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") else "worker"


_HWM = re.compile(r"^VmHWM:\s+(\d+)\s+kB", re.MULTILINE)


def peak_rss_mb() -> float | None:
    """This process's peak resident memory in MiB, or None where the kernel does not say."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            found = _HWM.search(status.read())
    except OSError:
        return None
    return round(int(found.group(1)) / 1024, 1) if found else None


def own_peak_mb() -> float | None:
    """:func:`peak_rss_mb` of a process that never resets its peak (a worker), from one
    system call instead of reading ``/proc/self/status``: measured at the end of every
    job, the file cost more than a small document's catalog writes. ``ru_maxrss`` starts
    at the peak of the image this process replaced (a big parent that spawned it): until
    it passes that, and after a reset, and off Linux, the file's figure."""
    global _inherited
    if sys.platform != "linux" or _reset:
        return peak_rss_mb()
    told = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if _inherited is None:
        own = peak_rss_mb()
        _inherited = told if own is not None and told > own + 1 else 0.0
    return peak_rss_mb() if told <= _inherited else told


_inherited: float | None = None
"""``ru_maxrss`` at the first look, where it was the replaced image's, not ours (else 0)."""
_reset = False
"""Whether this process reset its peak (:func:`reset_peak`): ``ru_maxrss`` keeps the
life's."""


def reset_peak() -> None:
    """Start this process's peak memory afresh (Linux ≥ 4.0); best effort."""
    global _reset
    _reset = True
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
    except OSError:
        pass


def record_many(catalog: Any, measurements: list[Measurement]) -> None:
    """:func:`record` several jobs' measurements (in one transaction where the catalog
    can); a failure is logged, never raised."""
    try:
        catalog.record_measurements([m.as_dict() for m in measurements])
    except Exception as exc:
        log.warning(
            "could not record %d jobs' measurements: %s", len(measurements), safe_summary(exc)
        )


def record(catalog: Any, measurement: Measurement) -> None:
    """Store ``measurement`` in the catalog; a failure is logged, never raised (the job's
    outcome is already settled)."""
    try:
        catalog.record_measurement(measurement.as_dict())
    except Exception as exc:
        log.warning(
            "could not record the job's measurements: %s",
            safe_summary(exc),
            extra={"job": measurement.job_id, "document": measurement.document_id},
        )
