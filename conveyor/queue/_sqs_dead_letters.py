"""The dead-letter side of :class:`~conveyor.queue.sqs.SqsQueue`: listing and redriving.

SQS has no way to look at a queue without receiving from it, so listing
*peeks*: it receives the dead letters for a moment and makes them visible
again. ``redrive()`` of everything uses SQS's message move task where the
endpoint has one; otherwise, and for chosen job ids, it receives, sends back
and deletes. The module docstring of :mod:`conveyor.queue.sqs` tells what this
costs (each peek counts as a receive of the dead letter).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

from ..exceptions import ConveyorError, safe_summary
from . import DeadLetter
from ._sqs_connection import (
    DEAD_AT,
    ERROR,
    RAW_BODY,
    RECEIVES,
    SENT_AT,
    Message,
    SqsConnection,
    attribute,
    log,
    new_client,
)

PEEK_SECONDS = 120
"""How long ``dead_letters`` hides the messages it pages through (then shows them again)."""
MOVE_WAIT_SECONDS = 60.0
"""How long ``redrive`` waits for SQS's move task before returning its count so far."""


class SqsDeadLetters(SqsConnection):
    """``dead_letters`` and ``redrive`` of the queue contract, on the dead-letter queue."""

    # -- inspecting ------------------------------------------------------

    def _peek(self, pick: Callable[[Message], bool]) -> Iterator[Message]:
        """Page through the dead-letter queue; yields what ``pick`` takes (the caller
        owns those), makes the rest visible again when done."""
        expected = self._counts(self.dlq_url)["ApproximateNumberOfMessages"]
        seen: set[str] = set()
        keep: list[str] = []
        waited = False
        try:
            while True:
                messages = self._receive(self.dlq_url, 10, PEEK_SECONDS, 0)
                if not messages:
                    # short polls sample some of SQS's servers: one long poll before
                    # concluding that fewer messages are there than it reported
                    if len(seen) >= expected or waited:
                        break
                    waited = True
                    messages = self._receive(self.dlq_url, 10, PEEK_SECONDS, 1)
                    if not messages:
                        break
                fresh = 0
                for message in messages:
                    new = message["MessageId"] not in seen
                    seen.add(message["MessageId"])
                    fresh += new
                    if new and pick(message):
                        yield message
                    else:
                        keep.append(message["ReceiptHandle"])
                if not fresh:  # everything seen already: the peek timeout ran out
                    break
        finally:
            self._show(keep)

    def _show(self, handles: list[str]) -> None:
        """Make peeked dead letters visible again at once (best effort: their peek
        timeout shows them again anyway)."""
        for i in range(0, len(handles), 10):
            entries = [
                {"Id": str(n), "ReceiptHandle": h, "VisibilityTimeout": 0}
                for n, h in enumerate(handles[i : i + 10])
            ]
            try:
                self.client.change_message_visibility_batch(QueueUrl=self.dlq_url, Entries=entries)
            except Exception as exc:
                log.warning("could not show peeked dead letters again: %s", safe_summary(exc))

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        letters: list[DeadLetter] = []

        def collect(message: Message) -> bool:
            letters.append(self._letter(message))
            return False

        for _ in self._peek(collect):
            pass
        letters.sort(key=lambda d: d.last_seen, reverse=True)
        return letters[: max(0, limit)]

    def _letter(self, message: Message) -> DeadLetter:
        attributes = message.get("MessageAttributes", {})
        system = message.get("Attributes", {})
        try:
            body = json.loads(message.get("Body", ""))
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {RAW_BODY: message.get("Body", "")}
        sent = attribute(attributes, SENT_AT)
        first_seen = float(sent) if sent else int(system.get("SentTimestamp", 0)) / 1000
        dead_at = attribute(attributes, DEAD_AT)
        receives = attribute(attributes, RECEIVES)
        return DeadLetter(
            job_id=self._job_id(message),
            body=body,
            # moved by SQS: it was received exactly maxReceiveCount times
            receive_count=int(float(receives)) if receives else self.max_receives,
            error=attribute(attributes, ERROR),
            first_seen=first_seen,
            last_seen=float(dead_at) if dead_at else first_seen,  # SQS keeps no move time
        )

    # -- redriving -------------------------------------------------------

    def redrive(self, job_ids: list[str] | None = None) -> int:
        if job_ids is None and self._move_supported is not False:
            try:
                return self._move_task()
            except _Unsupported as exc:
                log.info("no SQS message move task here (%s); moving messages one by one", exc)
                self._move_supported = False
        wanted = None if job_ids is None else set(job_ids)
        moved = 0
        for message in self._peek(lambda m: wanted is None or self._job_id(m) in wanted):
            first = attribute(message.get("MessageAttributes", {}), SENT_AT)
            sent_at = float(first) if first else int(message["Attributes"]["SentTimestamp"]) / 1000
            self._call(
                "send_message",
                "redriving to",
                "sqs:SendMessage",
                QueueUrl=self.url,
                MessageBody=message["Body"],
                MessageAttributes=self._stamp(self._job_id(message), sent_at),
            )
            self._call(
                "delete_message",
                "redriving from the dead-letter queue of",
                "sqs:DeleteMessage on the dead-letter queue",
                QueueUrl=self.dlq_url,
                ReceiptHandle=message["ReceiptHandle"],
            )
            moved += 1
        return moved

    def _move_task(self) -> int:
        """Everything back through SQS's message move task; waits for it a while."""
        if self._mover is None:  # no retries: an endpoint without the action answers 500
            self._mover = new_client(self._region, self._endpoint, retries=1)
        try:
            self._mover.start_message_move_task(SourceArn=self.dlq_arn, DestinationArn=self.arn)
        except Exception as exc:
            raise _Unsupported(safe_summary(exc)) from exc
        self._move_supported = True
        deadline = time.monotonic() + MOVE_WAIT_SECONDS
        while True:
            tasks = self._call(
                "list_message_move_tasks",
                "watching the redrive of",
                "sqs:ListMessageMoveTasks",
                SourceArn=self.dlq_arn,
                MaxResults=1,
            ).get("Results", [])
            task = tasks[0] if tasks else {}
            status = task.get("Status")
            moved = int(task.get("ApproximateNumberOfMessagesMoved", 0))
            if status == "FAILED":
                raise ConveyorError(
                    f"SQS's redrive of {self.where} failed after {moved} messages: "
                    f"{task.get('FailureReason', 'no reason given')}"
                )
            if status in ("COMPLETED", "CANCELLED") or time.monotonic() > deadline:
                if status == "RUNNING":
                    log.info("SQS's redrive is still running; %d moved so far", moved)
                return moved
            time.sleep(1.0)


class _Unsupported(Exception):
    """The endpoint has no message move task (or refused to start one)."""
