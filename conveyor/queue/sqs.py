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
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..exceptions import (
    ConfigurationError,
    ConveyorError,
    PermanentError,
    TransientError,
    safe_summary,
)
from . import DeadLetter, Lease, LeaseLost, QueueDepth, _check_timeout, _encode

log = logging.getLogger(__name__)

MAX_VISIBILITY = 43_200
"""SQS's longest visibility timeout (12 hours)."""
MAX_SEND_DELAY = 900
"""SQS's longest DelaySeconds (15 minutes)."""
PEEK_SECONDS = 120
"""How long ``dead_letters`` hides the messages it pages through (then shows them again)."""
MOVE_WAIT_SECONDS = 60.0
"""How long ``redrive`` waits for SQS's move task before returning its count so far."""

JOB_ID = "conveyor.job_id"
SENT_AT = "conveyor.sent_at"
ERROR = "conveyor.error"
RECEIVES = "conveyor.receives"
DEAD_AT = "conveyor.dead_at"
OURS = (JOB_ID, SENT_AT, ERROR, RECEIVES, DEAD_AT)
RAW_BODY = "sqs_raw_body"
"""A message that is not a JSON object arrives as ``{RAW_BODY: text}`` (the worker then
dead-letters it as malformed, with its text intact)."""

_LOST = {
    "ReceiptHandleIsInvalid",
    "AWS.SimpleQueueService.ReceiptHandleIsInvalid",
    "MessageNotInflight",
    "AWS.SimpleQueueService.MessageNotInflight",
    "InvalidParameterValue",  # e.g. past the 12-hour cap on a message's invisibility
}
_MISSING = {"QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue"}
_BUSY = {
    "RequestThrottled",
    "ThrottlingException",
    "Throttling",
    "ServiceUnavailable",
    "InternalError",
    "KmsThrottled",
}
_AWS_HOST = re.compile(r"^(?:sqs\.([a-z0-9-]+)|([a-z0-9-]+)\.queue)\.amazonaws\.com(?:\.cn)?$")


def _code(exc: Exception) -> tuple[str, int]:
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {})
    code = str(error.get("QueryErrorCode") or error.get("Code") or "")
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return code, status


def _failure(exc: Exception, doing: str, permission: str, where: str) -> Exception:
    """An SQS failure as the error conveyor acts on."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    if isinstance(exc, ClientError):
        code, status = _code(exc)
        plain = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _MISSING or plain in _MISSING:
            return ConfigurationError(
                f"the SQS queue {where} does not exist (create it, or fix CONVEYOR_QUEUE_URL)"
            )
        if "AccessDenied" in code or status == 403:
            return PermanentError(f"access denied {doing} {where}: the role needs {permission}")
        if code in _BUSY or plain in _BUSY or status >= 500 or status == 429:
            return TransientError(f"SQS is busy or failing ({code or status}) {doing} {where}")
        return ConveyorError(f"SQS refused {doing} {where}: {safe_summary(exc)}")
    if isinstance(exc, NoCredentialsError):
        return ConfigurationError(f"no AWS credentials found {doing} {where}")
    if isinstance(exc, BotoCoreError):
        return TransientError(f"cannot reach SQS {doing} {where}: {safe_summary(exc)}")
    return exc


def _seconds(value: float, what: str, upper: int = MAX_VISIBILITY) -> int:
    """Whole seconds for SQS (rounded up)."""
    seconds = math.ceil(value)
    if seconds > upper:
        raise ValueError(f"{what} of {value!r} s is over SQS's limit of {upper} s")
    return max(0, seconds)


def _attr(attributes: dict[str, Any], name: str) -> str | None:
    value = attributes.get(name)
    return None if value is None else str(value.get("StringValue"))


def _string(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def _number(value: float | int) -> dict[str, str]:
    return {"DataType": "Number", "StringValue": repr(value)}


def parse_url(url: str) -> dict[str, Any]:
    """``queue_name`` or ``queue_url``, ``region``, ``endpoint_url`` and ``wait`` of a queue URL."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(query) - {"region", "wait"}
    if unknown:
        raise ConfigurationError(
            f"unknown option(s) {', '.join(sorted(unknown))} in queue URL "
            f"{safe_summary(url)!r}: use ?region=…&wait=…"
        )
    try:
        wait = int(query.get("wait", "0"))
    except ValueError:
        wait = -1
    if not 0 <= wait <= 20:
        raise ConfigurationError(f"wait in {safe_summary(url)!r} must be 0-20 seconds")
    found: dict[str, Any] = {"region": query.get("region"), "wait": wait, "endpoint_url": None}
    if parts.scheme == "sqs":
        name = (parts.netloc + parts.path).strip("/")
        if not name or "/" in name:
            raise ConfigurationError(
                f"queue URL {safe_summary(url)!r} names no queue: use sqs://<queue-name>?region=…"
            )
        found["queue_name"] = name
    elif parts.scheme in ("sqs+https", "sqs+http"):
        scheme = parts.scheme.split("+", 1)[1]
        host = (parts.hostname or "").lower()
        if not host or len([p for p in parts.path.split("/") if p]) != 2:
            raise ConfigurationError(
                f"queue URL {safe_summary(url)!r} is not a queue URL: use "
                "sqs+https://sqs.<region>.amazonaws.com/<account>/<queue-name>"
            )
        found["queue_url"] = f"{scheme}://{parts.netloc}{parts.path}"
        aws = _AWS_HOST.match(host)
        if aws:
            found["region"] = found["region"] or aws.group(1) or aws.group(2)
        else:
            found["endpoint_url"] = f"{scheme}://{parts.netloc}"
    else:
        raise ConfigurationError(f"not an SQS queue URL: {safe_summary(url)!r}")
    return found


def _client(region: str | None, endpoint_url: str | None, *, retries: int = 5) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:  # pragma: no cover - depends on the install
        raise ConfigurationError("sqs:// needs boto3: pip install 'conveyor[aws]'") from None
    config = Config(
        retries={"mode": "standard", "max_attempts": retries},
        connect_timeout=10,
        read_timeout=40,  # above the longest long poll (20 s)
        max_pool_connections=32,
    )
    return boto3.session.Session().client(
        "sqs", region_name=region, endpoint_url=endpoint_url, config=config
    )


class SqsQueue:
    """A :class:`~conveyor.queue.JobQueue` on an SQS standard queue and its
    dead-letter queue (see the module docstring for the URL forms and caveats).

    ``max_receives`` is read from the queue's redrive policy; a different value
    passed here is ignored (with a log line), since SQS enforces its own.
    ``clock`` stamps lease ends and the times reported by ``dead_letters``.
    """

    def __init__(
        self,
        url: str,
        *,
        max_receives: int | None = None,
        clock: Callable[[], float] = time.time,
        client: Any = None,
    ) -> None:
        self.where = safe_summary(url)
        options = parse_url(url)
        self.wait = int(options["wait"])
        self._clock = clock
        self._region, self._endpoint = options["region"], options["endpoint_url"]
        self.client = client if client is not None else _client(self._region, self._endpoint)
        self._mover: Any = None
        self._move_supported: bool | None = None
        try:
            self._open(options)
        except Exception:
            self.close()
            raise
        if max_receives is not None and max_receives != self.max_receives:
            log.info(
                "the SQS queue's redrive policy allows %d receives; max_receives=%d is not used",
                self.max_receives,
                max_receives,
            )

    def _open(self, options: dict[str, Any]) -> None:
        """Find both queues; fail here, naming the queue, if anything is amiss."""
        try:
            if "queue_url" in options:
                self.url = options["queue_url"]
            else:
                self.url = self.client.get_queue_url(QueueName=options["queue_name"])["QueueUrl"]
            attributes = self.client.get_queue_attributes(
                QueueUrl=self.url, AttributeNames=["QueueArn", "RedrivePolicy", "FifoQueue"]
            )["Attributes"]
        except Exception as exc:
            error = _failure(
                exc, "opening", "sqs:GetQueueUrl and sqs:GetQueueAttributes", self.where
            )
            if isinstance(error, ConfigurationError):
                raise error from None
            raise ConfigurationError(
                f"cannot open the queue {self.where}: {safe_summary(error)}"
            ) from None
        if attributes.get("FifoQueue") == "true":
            raise ConfigurationError(
                f"{self.where} is a FIFO queue; conveyor needs a standard queue "
                "(FIFO queues refuse per-message delays)"
            )
        self.arn = attributes["QueueArn"]
        policy = attributes.get("RedrivePolicy")
        if not policy:
            raise ConfigurationError(
                f"the queue {self.where} has no dead-letter queue: give it a redrive policy "
                '(RedrivePolicy {"deadLetterTargetArn": <DLQ ARN>, "maxReceiveCount": 5})'
            )
        redrive = json.loads(policy)
        self.max_receives = int(redrive["maxReceiveCount"])
        self.dlq_arn = str(redrive["deadLetterTargetArn"])
        _, _, _, _, account, dlq_name = self.dlq_arn.split(":", 5)
        try:
            self.dlq_url = self.client.get_queue_url(
                QueueName=dlq_name, QueueOwnerAWSAccountId=account
            )["QueueUrl"]
        except Exception as exc:
            error = _failure(exc, "opening", "sqs:GetQueueUrl", self.dlq_arn)
            raise ConfigurationError(
                f"cannot open the dead-letter queue of {self.where}: {safe_summary(error)}"
            ) from None

    def __repr__(self) -> str:
        return f"SqsQueue({self.where!r})"

    def close(self) -> None:
        for client in (getattr(self, "client", None), self._mover):
            if client is not None:
                client.close()
        self._mover = None

    def _call(self, method: str, doing: str, permission: str, **params: Any) -> Any:
        try:
            return getattr(self.client, method)(**params)
        except Exception as exc:
            raise _failure(exc, doing, permission, self.where) from exc

    # -- sending ---------------------------------------------------------

    def _stamp(self, job_id: str, sent_at: float) -> dict[str, Any]:
        return {JOB_ID: _string(job_id), SENT_AT: _number(sent_at)}

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

    def _lease(self, message: dict[str, Any], now: float, seconds: int) -> Lease:
        attributes = message.get("MessageAttributes", {})
        system = message.get("Attributes", {})
        text = message.get("Body", "")
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {RAW_BODY: text}
        sent_at = _attr(attributes, SENT_AT) or str(int(system.get("SentTimestamp", 0)) / 1000)
        return Lease(
            job_id=self._job_id(message),
            receipt=f"{message['ReceiptHandle']}#{sent_at}",
            body=body,
            receive_count=int(system.get("ApproximateReceiveCount", 1)),
            leased_until=now + seconds,
            last_error=None,  # SQS cannot store one on release (see the module docstring)
        )

    @staticmethod
    def _job_id(message: dict[str, Any]) -> str:
        stamped = _attr(message.get("MessageAttributes", {}), JOB_ID)
        if stamped:
            return stamped
        try:
            return uuid.UUID(message["MessageId"]).hex
        except ValueError:
            return str(message["MessageId"])

    @staticmethod
    def _handle(lease: Lease) -> tuple[str, float | None]:
        handle, _, sent = lease.receipt.partition("#")
        return handle, (float(sent) if sent else None)

    def _receive(self, url: str, count: int, seconds: int, wait: int) -> list[dict[str, Any]]:
        response = self._call(
            "receive_message",
            "receiving from",
            "sqs:ReceiveMessage",
            QueueUrl=url,
            MaxNumberOfMessages=count,
            VisibilityTimeout=seconds,
            WaitTimeSeconds=wait,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages", []))

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
            code, _ = _code(exc)
            if code in _LOST or exc.response.get("Error", {}).get("Code") in _LOST:
                raise LeaseLost(
                    f"lease on job {lease.job_id} is no longer current ({doing}: {code})"
                ) from None
            raise _failure(exc, doing, "sqs:ChangeMessageVisibility", self.where) from exc
        except Exception as exc:
            raise _failure(exc, doing, "sqs:ChangeMessageVisibility", self.where) from exc

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
            code, _ = _code(exc)
            if code in _LOST or exc.response.get("Error", {}).get("Code") in _LOST:
                raise LeaseLost(f"lease on job {lease.job_id} is no longer current") from None
            raise _failure(exc, "deleting from", "sqs:DeleteMessage", self.where) from exc
        except Exception as exc:
            raise _failure(exc, "deleting from", "sqs:DeleteMessage", self.where) from exc

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
                ERROR: _string(error[:1000] or "dead-lettered"),
                RECEIVES: _number(lease.receive_count),
                DEAD_AT: _number(self._clock()),
            },
        )
        try:
            self.ack(lease)
        except LeaseLost:  # the copy stands; a redelivery may dead-letter it again
            log.warning(
                "lease lost after copying to the dead-letter queue", extra={"job": lease.job_id}
            )

    # -- inspecting ------------------------------------------------------

    def _counts(self, url: str) -> dict[str, int]:
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        attributes = self._call(
            "get_queue_attributes",
            "reading the depth of",
            "sqs:GetQueueAttributes",
            QueueUrl=url,
            AttributeNames=names,
        )["Attributes"]
        return {name: int(attributes.get(name, 0)) for name in names}

    def depth(self) -> QueueDepth:
        live, dead = self._counts(self.url), self._counts(self.dlq_url)
        return QueueDepth(
            visible=live["ApproximateNumberOfMessages"],
            in_flight=live["ApproximateNumberOfMessagesNotVisible"],
            delayed=live["ApproximateNumberOfMessagesDelayed"],
            dead=sum(dead.values()),
        )

    def _peek(self, pick: Callable[[dict[str, Any]], bool]) -> Iterator[dict[str, Any]]:
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

        def collect(message: dict[str, Any]) -> bool:
            letters.append(self._letter(message))
            return False

        for _ in self._peek(collect):
            pass
        letters.sort(key=lambda d: d.last_seen, reverse=True)
        return letters[: max(0, limit)]

    def _letter(self, message: dict[str, Any]) -> DeadLetter:
        attributes = message.get("MessageAttributes", {})
        system = message.get("Attributes", {})
        try:
            body = json.loads(message.get("Body", ""))
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {RAW_BODY: message.get("Body", "")}
        sent = _attr(attributes, SENT_AT)
        first_seen = float(sent) if sent else int(system.get("SentTimestamp", 0)) / 1000
        dead_at = _attr(attributes, DEAD_AT)
        receives = _attr(attributes, RECEIVES)
        return DeadLetter(
            job_id=self._job_id(message),
            body=body,
            # moved by SQS: it was received exactly maxReceiveCount times
            receive_count=int(float(receives)) if receives else self.max_receives,
            error=_attr(attributes, ERROR),
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
            first = _attr(message.get("MessageAttributes", {}), SENT_AT)
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
            self._mover = _client(self._region, self._endpoint, retries=1)
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
