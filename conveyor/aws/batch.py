"""An in-memory queue for messages that someone else received, remembering each one's fate.

Lambda's SQS poller and Step Functions hand conveyor messages that are already
received: there is nothing to lease from a queue of ours. To run them through
the ordinary :class:`~conveyor.worker.Processor` — one code path for a job —
they are put into this :class:`~conveyor.queue.memory.MemoryQueue`, which the
processor then receives, acks, releases or dead-letters as it would any queue.
What it did is recorded per message, and the entry point turns it into its
own answer: ``batchItemFailures`` for Lambda, an exit status for
``conveyor run-job``.

Jobs the processor sends while it handles a message (an S3 event naming
several objects fans out into one job each) join the batch as that message's
*children*: they run in the same invocation, and if one of them is not
finished, the message they came from is what goes back to SQS — delivering it
again fans it out again, and the children already done are skipped as
unchanged. A child inherits its parent's delivery count, so the retry policy
gives up on it when SQS is about to give up on the parent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

from ..queue import Lease, _encode
from ..queue.memory import MemoryQueue, _Job

FateState = Literal["done", "retry", "dead"]


@dataclass(frozen=True)
class Fate:
    """What the processor did with a message: acked it (``done``: merged or
    skipped), released it for a retry (``retry``, after ``delay`` seconds), or
    gave up on it (``dead``, with the reason)."""

    state: FateState
    error: str | None = None
    delay: float = 0.0


class BatchQueue(MemoryQueue):
    """The messages of one batch, handed out in the order they were delivered."""

    def __init__(self, *, max_receives: int) -> None:
        super().__init__(max_receives=max_receives)
        self.fates: dict[str, Fate] = {}
        self.parents: dict[str, str] = {}
        """A child's id → the id of the message it was sent while handling."""
        self.current: Lease | None = None
        """The lease the processor is handling (the entry point sets it)."""

    def deliver(self, message_id: str, body: dict[str, Any], *, previous_receives: int = 0) -> bool:
        """Add a message received elsewhere under its own id (SQS's ``messageId``),
        so logs and catalog rows name the message. ``previous_receives`` is how
        often it was delivered before this time (SQS's ``ApproximateReceiveCount``
        minus one): the retry policy counts on it. It is capped one below
        ``max_receives``, so a message is always processed once more here rather
        than dropped unseen. Returns False for an id already in the batch."""
        encoded = _encode(body)
        with self._lock:
            if message_id in self._jobs:
                return False
            self._seq += 1
            now = self._clock()
            self._jobs[message_id] = _Job(
                message_id,
                encoded,
                self._seq,
                now,
                now,
                receive_count=max(0, min(previous_receives, self.max_receives - 1)),
            )
            return True

    def send(self, body: dict[str, Any], *, delay: float = 0.0) -> str:
        if self.current is None:
            return super().send(body, delay=delay)
        return self.send_many([body])[0]

    def send_many(self, bodies: list[dict[str, Any]]) -> list[str]:
        parent = self.current
        if parent is None:
            return super().send_many(bodies)
        ids = []
        for body in bodies:
            child = f"{parent.job_id}/{uuid.uuid4().hex[:8]}"
            self.deliver(child, body, previous_receives=parent.receive_count - 1)
            self.parents[child] = parent.job_id
            ids.append(child)
        return ids

    def origin(self, job_id: str) -> str:
        """The delivered message ``job_id`` descends from (itself if delivered)."""
        while job_id in self.parents:
            job_id = self.parents[job_id]
        return job_id

    def unfinished(self) -> set[str]:
        """Delivered messages SQS should bring back: not settled here, or with a
        child (grandchild…) that is not — released for a retry, or never started."""
        out = set()
        with self._lock:
            ids = list(self._jobs)
        for job_id in set(ids) | set(self.fates):
            fate = self.fates.get(job_id)
            if fate is None or fate.state == "retry":
                out.add(self.origin(job_id))
        return out

    def ack(self, lease: Lease) -> None:
        super().ack(lease)
        self.fates[lease.job_id] = Fate("done")

    def release(
        self, lease: Lease, *, delay: float = 0.0, error: str | None = None, refund: bool = False
    ) -> None:
        super().release(lease, delay=delay, error=error, refund=refund)
        self.fates[lease.job_id] = Fate("retry", error, delay)

    def dead_letter(self, lease: Lease, error: str) -> None:
        super().dead_letter(lease, error)
        self.fates[lease.job_id] = Fate("dead", error)

    def delayed(self) -> bool:
        """Whether a released message will become visible again (a retry pending)."""
        return self.depth().delayed > 0
