"""The job queue contract: leases, heartbeats, retries and a dead-letter queue.

Semantics follow Amazon SQS (at-least-once delivery):

* :meth:`JobQueue.receive` *leases* jobs: each stays invisible to other
  receivers until its lease runs out (``leased_until``). Every delivery gets a
  fresh receipt token; only the current receipt may :meth:`~JobQueue.ack`,
  :meth:`~JobQueue.extend`, :meth:`~JobQueue.release` or
  :meth:`~JobQueue.dead_letter` the job.
* A lease that runs out makes the job visible again. A receipt stays valid
  until the job is delivered again (or dead-lettered); after that the old
  receipt raises :class:`LeaseLost`.
* Every queue has ``max_receives``: a job that has already been delivered that
  many times is moved to the dead-letter queue the next time it would be
  received, with its last recorded error.

The contract moves JSON objects (``dict``); what they mean is the worker's
business. Backends: :mod:`conveyor.queue.sqlite` (default),
:mod:`conveyor.queue.postgres` (many hosts, ``FOR UPDATE SKIP LOCKED``),
:mod:`conveyor.queue.sqs` (Amazon SQS; what it cannot keep is listed there),
:mod:`conveyor.queue.memory` (tests).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

from .._sqlite import file_path
from ..exceptions import ConfigurationError, TransientError, safe_summary

__all__ = [
    "DEFAULT_MAX_RECEIVES",
    "DeadLetter",
    "JobQueue",
    "Lease",
    "LeaseLost",
    "QueueDepth",
    "ack_all",
    "expired_message",
    "open_queue",
]

DEFAULT_MAX_RECEIVES = 5


class LeaseLost(TransientError):
    """The lease's receipt is no longer current: the job was delivered again,
    dead-lettered or redriven. The work done under it may be repeated elsewhere."""


@dataclass(frozen=True)
class Lease:
    """One delivery of one job."""

    job_id: str
    """Stable id of the job (uuid4 hex, assigned by ``send``)."""
    receipt: str
    """Opaque token for this delivery (uuid4 hex); a new one per delivery."""
    body: dict[str, Any]
    """The JSON job message, as sent."""
    receive_count: int
    """How many times the job has been delivered, this one included (1 at first)."""
    leased_until: float
    """Unix time at which the lease runs out unless extended."""
    last_error: str | None
    """The error recorded by the previous ``release``, if any."""


@dataclass(frozen=True)
class QueueDepth:
    """How many jobs are in each state right now."""

    visible: int
    """Ready to be received (including jobs whose lease ran out)."""
    in_flight: int
    """Leased, lease not yet run out."""
    delayed: int
    """Sent or released with a delay that has not passed yet."""
    dead: int
    """In the dead-letter queue."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class DeadLetter:
    """A job in the dead-letter queue."""

    job_id: str
    body: dict[str, Any]
    receive_count: int
    error: str | None
    first_seen: float
    """Unix time the job was first sent."""
    last_seen: float
    """Unix time the job was moved to the dead-letter queue."""


def expired_message(receive_count: int) -> str:
    """The error recorded when a job runs out of receives without any error of its own."""
    return f"lease expired {receive_count} times without ack (worker died or hung?)"


@runtime_checkable
class JobQueue(Protocol):
    """A durable queue of JSON jobs with leases (see the module docstring)."""

    max_receives: int
    """Deliveries allowed before a job is dead-lettered on its next receive."""

    def send(self, body: dict[str, Any], *, delay: float = 0.0) -> str:
        """Enqueue ``body`` (a JSON-serializable dict); visible after ``delay``
        seconds. Returns the new job id. Raises ``TypeError`` if ``body`` is not
        a JSON object."""
        ...

    def send_many(self, bodies: list[dict[str, Any]]) -> list[str]:
        """Enqueue several jobs at once, all or none (one transaction), in order.
        Returns their ids in the same order."""
        ...

    def receive(self, max_jobs: int = 1, visibility_timeout: float = 60.0) -> list[Lease]:
        """Lease up to ``max_jobs`` visible jobs for ``visibility_timeout``
        seconds, oldest first (by send time, then visible time). Never hands the
        same job to two concurrent receivers. Jobs that already had
        ``max_receives`` deliveries are dead-lettered instead of returned.
        Returns ``[]`` when nothing is visible; it does not wait."""
        ...

    def extend(self, lease: Lease, visibility_timeout: float) -> Lease:
        """Heartbeat: the lease now runs out ``visibility_timeout`` seconds from
        now. Returns the updated lease. Raises :class:`LeaseLost` if the
        receipt is no longer current."""
        ...

    def ack(self, lease: Lease) -> None:
        """The job is done: remove it. Raises :class:`LeaseLost` if the receipt
        is no longer current (the job may then run, or have run, elsewhere)."""
        ...

    def release(
        self, lease: Lease, *, delay: float = 0.0, error: str | None = None, refund: bool = False
    ) -> None:
        """Give the job back: visible again after ``delay`` seconds, its
        receive count kept, ``error`` stored as its ``last_error`` (pass a
        :func:`~conveyor.exceptions.safe_summary`). ``refund`` takes this
        delivery off the receive count (a worker shutting down did not try
        the job, so it must not bring it closer to the dead-letter queue).
        Raises :class:`LeaseLost` if the receipt is no longer current."""
        ...

    def dead_letter(self, lease: Lease, error: str) -> None:
        """Move the job to the dead-letter queue now, with ``error`` as the
        reason. Raises :class:`LeaseLost` if the receipt is no longer current."""
        ...

    def depth(self) -> QueueDepth:
        """Count the jobs in each state (see :class:`QueueDepth`)."""
        ...

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Up to ``limit`` dead letters, most recently dead-lettered first."""
        ...

    def redrive(self, job_ids: list[str] | None = None) -> int:
        """Move dead letters (all if ``job_ids`` is None, else those of the ids
        that are dead) back to visible, receive count reset to 0 and last error
        cleared. Returns how many were moved."""
        ...

    def close(self) -> None:
        """Release connections. The queue must not be used afterwards."""
        ...


def ack_all(queue: JobQueue, leases: list[Lease]) -> list[Lease]:
    """Ack each of ``leases``: in one transaction where the queue has ``ack_many`` (SQLite,
    PostgreSQL), else one at a time. Returns those whose lease was no longer current."""
    many = getattr(queue, "ack_many", None)
    if many is not None:
        lost: list[Lease] = many(leases)
        return lost
    lost = []
    for lease in leases:
        try:
            queue.ack(lease)
        except LeaseLost:
            lost.append(lease)
    return lost


def _encode(body: dict[str, Any]) -> str:
    if not isinstance(body, dict):
        raise TypeError(f"a job body must be a dict (a JSON object), not {type(body).__name__}")
    return json.dumps(body, separators=(",", ":"), allow_nan=False)


def _check_timeout(visibility_timeout: float) -> None:
    if not visibility_timeout > 0:
        raise ValueError(f"visibility_timeout must be > 0, got {visibility_timeout!r}")


SUPPORTED_SCHEMES = (
    "sqlite:///path/to/file.db (or a plain file path), "
    "postgresql://user:password@host/database (or postgres://), "
    "sqs://<queue-name>?region=… (or sqs+https://<SQS queue URL>), memory://"
)


def open_queue(url: str, **kw: Any) -> JobQueue:
    """Open the queue named by ``url``; ``kw`` go to the backend's constructor.

    * ``sqlite:///abs/path.db`` (``sqlite://rel/path.db`` is relative) or a plain
      file path → :class:`~conveyor.queue.sqlite.SqliteQueue`;
    * ``postgresql://…`` or ``postgres://…`` →
      :class:`~conveyor.queue.postgres.PostgresQueue` (an unreachable database
      raises :class:`~conveyor.exceptions.ConfigurationError` here);
    * ``sqs://<queue-name>?region=…`` or
      ``sqs+https://sqs.<region>.amazonaws.com/<account>/<name>`` →
      :class:`~conveyor.queue.sqs.SqsQueue` (needs a redrive policy; checked here);
    * ``memory://`` → :class:`~conveyor.queue.memory.MemoryQueue` (one process).

    Anything else raises :class:`~conveyor.exceptions.ConfigurationError`.
    """
    if url.startswith("memory://"):
        from .memory import MemoryQueue

        return MemoryQueue(**kw)
    if url.startswith("sqlite://"):
        path = url[len("sqlite://") :]
        if not path:
            raise ConfigurationError(
                f"queue URL {safe_summary(url)!r} names no file; use sqlite:///path/to/file.db"
            )
        from .sqlite import SqliteQueue

        return SqliteQueue(file_path(path, "queue URL"), **kw)
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresQueue

        return PostgresQueue(url, **kw)
    if url.startswith(("sqs://", "sqs+https://", "sqs+http://")):
        from .sqs import SqsQueue

        return SqsQueue(url, **kw)
    if "://" not in url and url.strip():
        from .sqlite import SqliteQueue

        return SqliteQueue(file_path(url, "queue URL"), **kw)
    raise ConfigurationError(
        f"unsupported queue URL {safe_summary(url)!r}: supported are {SUPPORTED_SCHEMES}"
    )
