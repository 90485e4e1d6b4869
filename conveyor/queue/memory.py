"""In-memory :class:`~conveyor.queue.JobQueue`: one process, thread-safe, for tests.

Same semantics as the SQLite backend, nothing persisted. Bodies are copied
through JSON on the way in and out, so a test sees exactly what a durable
backend would give back (and a non-JSON body fails here too).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from . import (
    DEFAULT_MAX_RECEIVES,
    DeadLetter,
    Lease,
    LeaseLost,
    QueueDepth,
    _check_timeout,
    _encode,
    expired_message,
)

_QUEUED, _LEASED, _DEAD = "queued", "leased", "dead"


@dataclass
class _Job:
    job_id: str
    body: str  # JSON text
    seq: int
    enqueued_at: float
    visible_at: float  # for leased jobs: when the lease runs out
    state: str = _QUEUED
    receive_count: int = 0
    receipt: str | None = None
    last_error: str | None = None
    dead_at: float | None = None


class MemoryQueue:
    """A :class:`~conveyor.queue.JobQueue` held in a dict behind one lock."""

    def __init__(
        self,
        *,
        max_receives: int = DEFAULT_MAX_RECEIVES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_receives < 1:
            raise ValueError(f"max_receives must be >= 1, got {max_receives!r}")
        self.max_receives = max_receives
        self._clock = clock
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}
        self._seq = 0

    # -- sending ---------------------------------------------------------

    def send(self, body: dict[str, Any], *, delay: float = 0.0) -> str:
        encoded = _encode(body)
        with self._lock:
            return self._insert(encoded, self._clock(), max(0.0, delay))

    def send_many(self, bodies: list[dict[str, Any]]) -> list[str]:
        encoded = [_encode(body) for body in bodies]  # all or none: validate first
        with self._lock:
            now = self._clock()
            return [self._insert(text, now, 0.0) for text in encoded]

    def _insert(self, encoded: str, now: float, delay: float) -> str:
        job_id = uuid.uuid4().hex
        self._seq += 1
        self._jobs[job_id] = _Job(job_id, encoded, self._seq, now, now + delay)
        return job_id

    # -- leasing ---------------------------------------------------------

    def receive(self, max_jobs: int = 1, visibility_timeout: float = 60.0) -> list[Lease]:
        _check_timeout(visibility_timeout)
        leases: list[Lease] = []
        with self._lock:
            now = self._clock()
            candidates = sorted(
                (
                    job
                    for job in self._jobs.values()
                    if job.state != _DEAD and job.visible_at <= now
                ),
                key=lambda job: (job.enqueued_at, job.visible_at, job.seq),
            )
            for job in candidates:
                if len(leases) >= max_jobs:
                    break
                if job.receive_count >= self.max_receives:
                    self._kill(job, job.last_error or expired_message(job.receive_count), now)
                    continue
                job.state = _LEASED
                job.receipt = uuid.uuid4().hex
                job.receive_count += 1
                job.visible_at = now + visibility_timeout
                leases.append(
                    Lease(
                        job_id=job.job_id,
                        receipt=job.receipt,
                        body=json.loads(job.body),
                        receive_count=job.receive_count,
                        leased_until=job.visible_at,
                        last_error=job.last_error,
                    )
                )
        return leases

    def _current(self, lease: Lease) -> _Job:
        """The job ``lease`` still holds; the caller holds the lock."""
        job = self._jobs.get(lease.job_id)
        if job is None or job.state != _LEASED or job.receipt != lease.receipt:
            raise LeaseLost(f"lease on job {lease.job_id} is no longer current")
        return job

    def _kill(self, job: _Job, error: str, now: float) -> None:
        job.state = _DEAD
        job.receipt = None
        job.last_error = error
        job.dead_at = now

    def extend(self, lease: Lease, visibility_timeout: float) -> Lease:
        _check_timeout(visibility_timeout)
        with self._lock:
            job = self._current(lease)
            job.visible_at = self._clock() + visibility_timeout
            return replace(lease, leased_until=job.visible_at)

    def ack(self, lease: Lease) -> None:
        with self._lock:
            self._current(lease)
            del self._jobs[lease.job_id]

    def release(
        self, lease: Lease, *, delay: float = 0.0, error: str | None = None, refund: bool = False
    ) -> None:
        with self._lock:
            job = self._current(lease)
            if refund:
                job.receive_count = max(0, job.receive_count - 1)
            job.state = _QUEUED
            job.receipt = None
            job.visible_at = self._clock() + max(0.0, delay)
            job.last_error = error

    def dead_letter(self, lease: Lease, error: str) -> None:
        with self._lock:
            self._kill(self._current(lease), error, self._clock())

    # -- inspecting ------------------------------------------------------

    def depth(self) -> QueueDepth:
        visible = in_flight = delayed = dead = 0
        with self._lock:
            now = self._clock()
            for job in self._jobs.values():
                if job.state == _DEAD:
                    dead += 1
                elif job.visible_at <= now:
                    visible += 1
                elif job.state == _LEASED:
                    in_flight += 1
                else:
                    delayed += 1
        return QueueDepth(visible=visible, in_flight=in_flight, delayed=delayed, dead=dead)

    def oldest_visible_age(self) -> float | None:
        """Seconds since the oldest visible job was sent; None when none is visible."""
        with self._lock:
            now = self._clock()
            sent = [
                j.enqueued_at
                for j in self._jobs.values()
                if j.state != _DEAD and j.visible_at <= now
            ]
        return max(0.0, now - min(sent)) if sent else None

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        with self._lock:
            dead = [job for job in self._jobs.values() if job.state == _DEAD]
            dead.sort(key=lambda job: (job.dead_at or 0.0, job.seq), reverse=True)
            return [
                DeadLetter(
                    job_id=job.job_id,
                    body=json.loads(job.body),
                    receive_count=job.receive_count,
                    error=job.last_error,
                    first_seen=job.enqueued_at,
                    last_seen=job.dead_at or job.enqueued_at,
                )
                for job in dead[: max(0, limit)]
            ]

    def redrive(self, job_ids: list[str] | None = None) -> int:
        with self._lock:
            now = self._clock()
            wanted = self._jobs.keys() if job_ids is None else set(job_ids)
            moved = 0
            for job_id in wanted:
                job = self._jobs.get(job_id)
                if job is None or job.state != _DEAD:
                    continue
                job.state = _QUEUED
                job.receive_count = 0
                job.last_error = None
                job.dead_at = None
                job.visible_at = now
                moved += 1
            return moved

    def close(self) -> None:
        """Nothing to release; the jobs stay until the object is dropped."""
