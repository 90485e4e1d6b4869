"""An in-memory queue for messages that someone else received, remembering each one's fate.

Lambda's SQS poller and Step Functions hand conveyor messages that are already
received: there is nothing to lease from a queue of ours. To run them through
the ordinary :class:`~conveyor.worker.Processor` — one code path for a job —
they are put into this :class:`~conveyor.queue.memory.MemoryQueue`, which the
processor then receives, acks, releases or dead-letters as it would any queue.
What it did is recorded per message, and the entry point turns it into its
own answer: ``batchItemFailures`` for Lambda, an exit status for
``conveyor run-job``.
"""

from __future__ import annotations

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
