"""The SQS side of :class:`~conveyor.queue.sqs.SqsQueue`: URLs, clients, errors, both queues.

:func:`parse_url` reads a queue URL; :func:`new_client` makes the boto3 client;
:func:`failure` turns an SQS error into the error conveyor acts on; and
:class:`SqsConnection` finds the queue and its dead-letter queue on opening and
makes the requests that both the lease path (:mod:`conveyor.queue.sqs`) and
the dead-letter handling (:mod:`conveyor.queue._sqs_dead_letters`) use. How
the queue contract maps onto SQS is told in :mod:`conveyor.queue.sqs`.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any, NotRequired, TypedDict
from urllib.parse import parse_qs, urlsplit

from ..exceptions import (
    ConfigurationError,
    ConveyorError,
    PermanentError,
    TransientError,
    safe_summary,
)

log = logging.getLogger("conveyor.queue.sqs")  # the backend's one logger, as before the split

JOB_ID = "conveyor.job_id"
SENT_AT = "conveyor.sent_at"
ERROR = "conveyor.error"
RECEIVES = "conveyor.receives"
DEAD_AT = "conveyor.dead_at"
OURS = (JOB_ID, SENT_AT, ERROR, RECEIVES, DEAD_AT)
RAW_BODY = "sqs_raw_body"
"""A message that is not a JSON object arrives as ``{RAW_BODY: text}`` (the worker then
dead-letters it as malformed, with its text intact)."""

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

SqsClient = Any
"""boto3's SQS client (boto3 ships no type information)."""
Message = dict[str, Any]
"""An SQS message as ReceiveMessage returns it (``Body``, ``ReceiptHandle``, attributes…)."""


class QueueAddress(TypedDict):
    """What a queue URL says: the queue by name or by URL, and where and how to reach it."""

    region: str | None
    wait: int
    endpoint_url: str | None
    queue_name: NotRequired[str]
    queue_url: NotRequired[str]


def error_code(exc: Exception) -> tuple[str, int]:
    """The error code and HTTP status of a botocore ``ClientError`` (``""``, 0 if none)."""
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {})
    code = str(error.get("QueryErrorCode") or error.get("Code") or "")
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return code, status


def failure(exc: Exception, doing: str, permission: str, where: str) -> Exception:
    """An SQS failure as the error conveyor acts on."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    if isinstance(exc, ClientError):
        code, status = error_code(exc)
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


def attribute(attributes: dict[str, Any], name: str) -> str | None:
    """The string value of message attribute ``name``, or None."""
    value = attributes.get(name)
    return None if value is None else str(value.get("StringValue"))


def string_attribute(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def number_attribute(value: float | int) -> dict[str, str]:
    return {"DataType": "Number", "StringValue": repr(value)}


def parse_url(url: str) -> QueueAddress:
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
    found: QueueAddress = {"region": query.get("region"), "wait": wait, "endpoint_url": None}
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


def new_client(region: str | None, endpoint_url: str | None, *, retries: int = 5) -> SqsClient:
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


class SqsConnection:
    """An SQS standard queue and its dead-letter queue, found and checked on opening.

    ``max_receives`` is read from the queue's redrive policy; a different value
    passed here is ignored (with a log line), since SQS enforces its own.
    ``clock`` stamps lease ends and the times reported by ``dead_letters``.
    """

    url: str
    """The queue's SQS URL."""
    arn: str
    dlq_url: str
    """The dead-letter queue's SQS URL (from the queue's redrive policy)."""
    dlq_arn: str
    max_receives: int

    def __init__(
        self,
        url: str,
        *,
        max_receives: int | None = None,
        clock: Callable[[], float] = time.time,
        client: SqsClient = None,
    ) -> None:
        self.where = safe_summary(url)
        options = parse_url(url)
        self.wait = int(options["wait"])
        self._clock = clock
        self._region, self._endpoint = options["region"], options["endpoint_url"]
        self.client = client if client is not None else new_client(self._region, self._endpoint)
        self._mover: SqsClient = None  # the message move task's client, made when first used
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

    def _open(self, options: QueueAddress) -> None:
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
            error = failure(
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
            error = failure(exc, "opening", "sqs:GetQueueUrl", self.dlq_arn)
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
        """``client.<method>(**params)``, its failure as :func:`failure` says."""
        try:
            return getattr(self.client, method)(**params)
        except Exception as exc:
            raise failure(exc, doing, permission, self.where) from exc

    def _stamp(self, job_id: str, sent_at: float) -> dict[str, Any]:
        """The message attributes that carry a job's id and first send time."""
        return {JOB_ID: string_attribute(job_id), SENT_AT: number_attribute(sent_at)}

    @staticmethod
    def _job_id(message: Message) -> str:
        stamped = attribute(message.get("MessageAttributes", {}), JOB_ID)
        if stamped:
            return stamped
        try:
            return uuid.UUID(message["MessageId"]).hex
        except ValueError:
            return str(message["MessageId"])

    def _receive(self, url: str, count: int, seconds: int, wait: int) -> list[Message]:
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
