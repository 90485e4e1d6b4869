"""Amazon SQS as the :class:`~conveyor.queue.JobQueue`: many hosts, no database.

URLs (``CONVEYOR_QUEUE_URL``)::

    sqs://<queue-name>?region=eu-west-1            # region optional: boto3's default
    sqs+https://sqs.eu-west-1.amazonaws.com/123456789012/<queue-name>
    sqs+http://localhost:4566/000000000000/<queue-name>   # a local SQS (moto, LocalStack)

Add ``&wait=N`` (``?wait=N``) to long-poll up to N seconds (0-20) when the queue
is empty: fewer empty requests to pay for, at the price of a worker noticing a
stop request up to N seconds later. Credentials and the endpoint come from
boto3's chain (environment, config files, the task's role); for the
``sqs+http(s)://`` form on a host that is not ``*.amazonaws.com``, that host is
the endpoint. Standard queues only: FIFO queues refuse per-message delays and
serialise each message group, which conveyor's idempotent jobs do not need.

How the contract maps onto SQS:

* ``receive`` = ReceiveMessage with a VisibilityTimeout; the receive count is
  ``ApproximateReceiveCount``. Timeouts are whole seconds (rounded up), at most
  12 hours; SQS also caps a message's total invisibility at 12 hours, so on
  SQS a job cannot run longer than that.
* ``extend`` (heartbeat) and ``release(delay)`` = ChangeMessageVisibility;
  ``ack`` = DeleteMessage.
* Dead letters: the queue must have a redrive policy. SQS itself moves a
  message to the dead-letter queue once it was received ``maxReceiveCount``
  times, which is this queue's ``max_receives`` (``CONVEYOR_MAX_RECEIVES`` is
  not used). ``dead_letter`` sends the job to that queue with the reason as a
  message attribute, then deletes it.
* ``depth`` reads the ``ApproximateNumberOf*`` attributes of both queues.
* ``dead_letters`` peeks: it receives from the dead-letter queue and makes
  every message visible again at once (nothing is deleted). While it pages,
  those messages are hidden from another lister or a redrive for a moment,
  and each peek counts as a receive of the dead letter — so the dead-letter
  queue must not have a redrive policy of its own.
* ``redrive()`` of everything starts SQS's message move task and waits for it;
  where the endpoint has no move task (moto), and for a chosen set of job ids,
  it receives, sends back and deletes.

What SQS cannot do, and what conveyor does instead:

* A message cannot be changed, so ``release`` cannot store ``last_error`` on
  it: the worker records the error on the document in the catalog (and logs
  it); ``Lease.last_error`` is always None here. A job SQS dead-letters by its
  receive count carries no error either (``DeadLetter.error`` is None; the
  document keeps the worker's last error). Only ``dead_letter`` stores a reason.
* The receive count cannot be lowered, so ``release(refund=True)`` counts the
  delivery anyway (a worker stopped mid-job brings the job one step nearer the
  dead-letter queue).
* SQS accepts a superseded receipt handle for DeleteMessage (and a deleted
  message's handle again), so ``ack`` cannot always tell that a lease was lost.
  Jobs are idempotent, so the cost is a repeated job, never a lost one.
* Standard queues are best-effort FIFO and at-least-once: a job can, rarely,
  be delivered twice.
* ``send_many`` is not atomic: bodies are all validated first, then sent ten
  per request; if a request fails, the error says how many were sent.
* A job released with a delay counts as ``in_flight``, not ``delayed`` (SQS
  shows both as not visible); ``delayed`` counts delayed sends.
* After a redrive by the move task, a job that SQS later dead-letters by its
  receive count may still show the reason of its previous dead-lettering.

Job ids: conveyor stamps its messages with a ``conveyor.job_id`` attribute so
a job keeps its id through the dead-letter queue and back; a message someone
else sent (an S3 event notification) has its SQS MessageId as job id.

The code: this module sends and leases; :mod:`._sqs_connection` reads the URL,
makes the client, translates SQS's errors and opens both queues;
:mod:`._sqs_dead_letters` lists and redrives dead letters.
"""

from __future__ import annotations

import json
import math
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from ..exceptions import ConveyorError
from . import Lease, LeaseLost, QueueDepth, _check_timeout, _encode
from ._sqs_connection import (
    DEAD_AT,
    ERROR,
    JOB_ID,
    OURS,
    RAW_BODY,
    RECEIVES,
    SENT_AT,
    Message,
    QueueAddress,
    attribute,
    error_code,
    failure,
    log,
    number_attribute,
    parse_url,
    string_attribute,
)
from ._sqs_dead_letters import MOVE_WAIT_SECONDS, PEEK_SECONDS, SqsDeadLetters

__all__ = [
    "DEAD_AT",
    "ERROR",
    "JOB_ID",
    "MAX_SEND_DELAY",
    "MAX_VISIBILITY",
    "MOVE_WAIT_SECONDS",
    "OURS",
    "PEEK_SECONDS",
    "RAW_BODY",
    "RECEIVES",
    "SENT_AT",
    "QueueAddress",
    "SqsQueue",
    "parse_url",
]

MAX_VISIBILITY = 43_200
"""SQS's longest visibility timeout (12 hours)."""
MAX_SEND_DELAY = 900
"""SQS's longest DelaySeconds (15 minutes)."""

_LOST = {
    "ReceiptHandleIsInvalid",
    "AWS.SimpleQueueService.ReceiptHandleIsInvalid",
    "MessageNotInflight",
    "AWS.SimpleQueueService.MessageNotInflight",
    "InvalidParameterValue",  # e.g. past the 12-hour cap on a message's invisibility
}


def _seconds(value: float, what: str, upper: int = MAX_VISIBILITY) -> int:
    """Whole seconds for SQS (rounded up)."""
    seconds = math.ceil(value)
    if seconds > upper:
        raise ValueError(f"{what} of {value!r} s is over SQS's limit of {upper} s")
    return max(0, seconds)


class SqsQueue(SqsDeadLetters):
    """A :class:`~conveyor.queue.JobQueue` on an SQS standard queue and its
    dead-letter queue (see the module docstring for the URL forms and caveats).

    ``max_receives`` is read from the queue's redrive policy; a different value
    passed here is ignored (with a log line), since SQS enforces its own.
    ``clock`` stamps lease ends and the times reported by ``dead_letters``.

    Three layers: :class:`~conveyor.queue._sqs_connection.SqsConnection` opens
    both queues and makes the requests they share,
    :class:`~conveyor.queue._sqs_dead_letters.SqsDeadLetters` lists and redrives
    dead letters, and this class sends and leases.
    """

    # -- sending ---------------------------------------------------------

    def send(self, body: dict[str, Any], *, delay: float = 0.0) -> str:
        text = _encode(body)
        job_id = uuid.uuid4().hex
        self._call(
            "send_message",
            "sending to",
            "sqs:SendMessage",
            QueueUrl=self.url,
            MessageBody=text,
            DelaySeconds=_seconds(max(0.0, delay), "a send delay", MAX_SEND_DELAY),
            MessageAttributes=self._stamp(job_id, self._clock()),
        )
        return job_id

    def send_many(self, bodies: list[dict[str, Any]]) -> list[str]:
        texts = [_encode(b) for b in bodies]  # all valid before any is sent
        ids = [uuid.uuid4().hex for _ in texts]
        batches = [list(range(i, min(i + 10, len(texts)))) for i in range(0, len(texts), 10)]
        now = self._clock()

        def send_batch(batch: list[int]) -> int:
            entries = [
                {
                    "Id": str(i),
                    "MessageBody": texts[i],
                    "MessageAttributes": self._stamp(ids[i], now),
                }
                for i in batch
            ]
            result = self._call(
                "send_message_batch",
                "sending to",
                "sqs:SendMessage",
                QueueUrl=self.url,
                Entries=entries,
            )
            for failed in result.get("Failed", []):  # one more try, alone
                i = int(failed["Id"])
                self._call(
                    "send_message",
                    "sending to",
                    "sqs:SendMessage",
                    QueueUrl=self.url,
                    MessageBody=texts[i],
                    MessageAttributes=self._stamp(ids[i], now),
                )
            return len(batch)

        sent = 0
        try:
            if len(batches) <= 2:
                for batch in batches:
                    sent += send_batch(batch)
            else:  # a bulk ingest: requests in parallel, the client is thread-safe
                with ThreadPoolExecutor(max_workers=8, thread_name_prefix="sqs-send") as pool:
                    for n in pool.map(send_batch, batches):
                        sent += n
        except ConveyorError as exc:
            raise type(exc)(
                f"{exc} (sent {sent} of {len(texts)} jobs before this failure)"
            ) from exc
        return ids

    # -- leasing ---------------------------------------------------------

    def _lease(self, message: Message, now: float, seconds: int) -> Lease:
        attributes = message.get("MessageAttributes", {})
        system = message.get("Attributes", {})
        text = message.get("Body", "")
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {RAW_BODY: text}
        sent_at = attribute(attributes, SENT_AT) or str(int(system.get("SentTimestamp", 0)) / 1000)
        return Lease(
            job_id=self._job_id(message),
            receipt=f"{message['ReceiptHandle']}#{sent_at}",
            body=body,
            receive_count=int(system.get("ApproximateReceiveCount", 1)),
            leased_until=now + seconds,
            last_error=None,  # SQS cannot store one on release (see the module docstring)
        )

    @staticmethod
    def _handle(lease: Lease) -> tuple[str, float | None]:
        handle, _, sent = lease.receipt.partition("#")
        return handle, (float(sent) if sent else None)

    def receive(self, max_jobs: int = 1, visibility_timeout: float = 60.0) -> list[Lease]:
        _check_timeout(visibility_timeout)
        seconds = _seconds(visibility_timeout, "a visibility timeout")
        leases: list[Lease] = []
        while len(leases) < max_jobs:
            wanted = min(10, max_jobs - len(leases))
            messages = self._receive(self.url, wanted, seconds, 0 if leases else self.wait)
            now = self._clock()
            leases += [self._lease(m, now, seconds) for m in messages]
            if len(messages) < wanted:
                break
        return leases

    def _visibility(self, lease: Lease, seconds: int, doing: str) -> None:
        from botocore.exceptions import ClientError

        handle, _ = self._handle(lease)
        try:
            self.client.change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=handle, VisibilityTimeout=seconds
            )
        except ClientError as exc:
            code, _ = error_code(exc)
            if code in _LOST or exc.response.get("Error", {}).get("Code") in _LOST:
                raise LeaseLost(
                    f"lease on job {lease.job_id} is no longer current ({doing}: {code})"
                ) from None
            raise failure(exc, doing, "sqs:ChangeMessageVisibility", self.where) from exc
        except Exception as exc:
            raise failure(exc, doing, "sqs:ChangeMessageVisibility", self.where) from exc

    def extend(self, lease: Lease, visibility_timeout: float) -> Lease:
        _check_timeout(visibility_timeout)
        seconds = _seconds(visibility_timeout, "a visibility timeout")
        self._visibility(lease, seconds, "extending a lease")
        return replace(lease, leased_until=self._clock() + seconds)

    def ack(self, lease: Lease) -> None:
        from botocore.exceptions import ClientError

        handle, _ = self._handle(lease)
        try:
            self.client.delete_message(QueueUrl=self.url, ReceiptHandle=handle)
        except ClientError as exc:
            code, _ = error_code(exc)
            if code in _LOST or exc.response.get("Error", {}).get("Code") in _LOST:
                raise LeaseLost(f"lease on job {lease.job_id} is no longer current") from None
            raise failure(exc, "deleting from", "sqs:DeleteMessage", self.where) from exc
        except Exception as exc:
            raise failure(exc, "deleting from", "sqs:DeleteMessage", self.where) from exc

    def release(
        self, lease: Lease, *, delay: float = 0.0, error: str | None = None, refund: bool = False
    ) -> None:
        # ``error`` and ``refund`` cannot be kept by SQS (module docstring); the worker
        # records the error on the document
        seconds = min(math.ceil(max(0.0, delay)), MAX_VISIBILITY)  # a longer wait: at most 12 h
        self._visibility(lease, seconds, "releasing a job")

    def dead_letter(self, lease: Lease, error: str) -> None:
        # keep the job hidden while it moves; a lost lease stops us before the copy
        self._visibility(lease, 60, "dead-lettering a job")
        _, sent_at = self._handle(lease)
        body = lease.body
        text = body[RAW_BODY] if set(body) == {RAW_BODY} else _encode(body)
        self._call(
            "send_message",
            "sending to the dead-letter queue of",
            "sqs:SendMessage on the dead-letter queue",
            QueueUrl=self.dlq_url,
            MessageBody=text,
            MessageAttributes={
                **self._stamp(lease.job_id, sent_at if sent_at is not None else self._clock()),
                ERROR: string_attribute(error[:1000] or "dead-lettered"),
                RECEIVES: number_attribute(lease.receive_count),
                DEAD_AT: number_attribute(self._clock()),
            },
        )
        try:
            self.ack(lease)
        except LeaseLost:  # the copy stands; a redelivery may dead-letter it again
            log.warning(
                "lease lost after copying to the dead-letter queue", extra={"job": lease.job_id}
            )

    # -- inspecting ------------------------------------------------------

    def depth(self) -> QueueDepth:
        live, dead = self._counts(self.url), self._counts(self.dlq_url)
        return QueueDepth(
            visible=live["ApproximateNumberOfMessages"],
            in_flight=live["ApproximateNumberOfMessagesNotVisible"],
            delayed=live["ApproximateNumberOfMessagesDelayed"],
            dead=sum(dead.values()),
        )
