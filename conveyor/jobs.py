"""The job message, as users integrate with it.

Besides conveyor's own job message, a queue may carry, as they are, the receipt
message of an OCR producer and S3 event notifications (``{"Records": [...]}``,
straight from S3 or inside an SNS envelope): see :func:`s3_event_jobs`.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from .exceptions import PermanentError

log = logging.getLogger(__name__)

RECEIPT_KEYS = ("image_id", "receipt_id", "artifacts_bucket", "lines_key", "words_key")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_name(what: str, value: str) -> str:
    """Run and collection names become storage keys: letters, digits, ``.``, ``_``, ``-``."""
    if not _NAME.fullmatch(value):
        raise PermanentError(
            f"invalid {what} name {value[:80]!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


@dataclass(frozen=True)
class Job:
    """``{"source": uri, "collection": ..., "run": ..., "kind": null|"pdf"|..., "options": {}}``"""

    source: str
    collection: str
    run: str
    kind: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_message(cls, body: Any, *, default_collection: str = "default") -> Job:
        if not isinstance(body, dict):
            raise PermanentError("job message is not a JSON object")
        if body.get("Type") == "Notification" and isinstance(body.get("Message"), str):
            try:  # an SNS envelope (SNS → SQS without raw delivery)
                inner = json.loads(body["Message"])
            except ValueError:
                raise PermanentError("SNS message is not JSON") from None
            if not isinstance(inner, dict):
                raise PermanentError("SNS message is not a JSON object")
            body = inner
        events = s3_event_jobs(body)
        if events is not None:
            if len(events) != 1:  # the worker fans these out before they get here
                raise PermanentError(
                    f"S3 event with {len(events)} objects to ingest, not one: "
                    "split it with s3_event_jobs()"
                )
            body = events[0]
        if body.get("source") == "aws.s3" and "detail" in body:
            raise PermanentError(
                "EventBridge events are not supported: send S3 event notifications "
                "to the queue (directly or through SNS)"
            )
        if all(k in body for k in RECEIPT_KEYS) and "source" not in body:
            return cls._receipt(body, default_collection)
        source = body.get("source")
        if not isinstance(source, str) or not source:
            raise PermanentError("job message has no 'source'")
        options = body.get("options") or {}
        if not isinstance(options, dict):
            raise PermanentError("job message 'options' must be an object")
        return cls(
            source=source,
            collection=check_name("collection", str(body.get("collection") or default_collection)),
            run=check_name("run", str(body.get("run") or "adhoc")),
            kind=body.get("kind"),
            options=options,
        )

    @classmethod
    def _receipt(cls, body: dict[str, Any], default_collection: str) -> Job:
        """The receipt message a producer's OCR step writes, as a job of kind ``receipt``."""
        for key in RECEIPT_KEYS:
            if body.get(key) in (None, ""):
                raise PermanentError(f"receipt message has no '{key}'")
        return cls(
            source=f"receipt://{body['image_id']}/{body['receipt_id']}",
            collection=check_name("collection", str(body.get("collection") or default_collection)),
            run=check_name("run", str(body.get("run") or "adhoc")),
            kind="receipt",
            options={k: body[k] for k in RECEIPT_KEYS},
        )

    def message(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "collection": self.collection,
            "run": self.run,
            "kind": self.kind,
            "options": self.options,
        }


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


OBJECT_SIZE = "object_size"
"""A job's option: its object's size in bytes, as an S3 event gave it."""


def s3_event_jobs(body: Any) -> list[dict[str, Any]] | None:
    """The job messages an S3 event notification stands for; None when ``body`` is
    not one.

    Accepted: ``{"Records": [...]}`` as S3 sends it to SQS, one such record alone,
    and either inside an SNS envelope (``{"Type": "Notification", "Message":
    "<json>"}``, S3 → SNS → SQS without raw delivery). Each ``ObjectCreated:*``
    record becomes ``{"source": "s3://bucket/key", "options": {"object_size": N}}``
    with the key URL-decoded
    (S3 sends ``red+flower.jpg`` for ``red flower.jpg``). S3's ``s3:TestEvent``
    and other events give ``[]``: removing a document when its object is deleted
    is not supported yet, so ObjectRemoved events are logged and ignored.
    """
    if not isinstance(body, dict):
        return None
    if body.get("Type") == "Notification" and isinstance(body.get("Message"), str):
        try:
            inner = json.loads(body["Message"])
        except ValueError:
            return None
        return s3_event_jobs(inner)
    if body.get("Event") == "s3:TestEvent" and body.get("Service") == "Amazon S3":
        log.info("S3 test event (sent when a notification is set up): nothing to ingest")
        return []
    if body.get("eventSource") == "aws:s3":
        records: Any = [body]
    else:
        records = body.get("Records")
        if not isinstance(records, list) or not any(
            isinstance(r, dict) and r.get("eventSource") == "aws:s3" for r in records
        ):
            return None
    jobs = []
    for record in records:
        if not isinstance(record, dict) or record.get("eventSource") != "aws:s3":
            log.warning("ignoring a record that is not an S3 event in an S3 event message")
            continue
        name = str(record.get("eventName") or "")
        s3 = _object(record.get("s3"))
        bucket = _object(s3.get("bucket")).get("name")
        key = _object(s3.get("object")).get("key")
        if not isinstance(bucket, str) or not bucket or not isinstance(key, str) or not key:
            raise PermanentError(f"S3 event record {name or '(no eventName)'} names no object")
        uri = f"s3://{bucket}/{unquote_plus(key)}"
        if not name.startswith("ObjectCreated:"):
            log.info(
                "ignoring S3 event %s for %s%s",
                name or "(no eventName)",
                uri,
                ": deleting a document with its object is not supported yet"
                if name.startswith("ObjectRemoved:")
                else "",
            )
            continue
        if uri.endswith("/"):  # a console "folder"
            continue
        size = _object(s3.get("object")).get("size")
        if isinstance(size, int) and size >= 0:  # for routing: a long job to the long queue
            jobs.append({"source": uri, "options": {OBJECT_SIZE: size}})
        else:
            jobs.append({"source": uri})
    return jobs


def document_of(body: Any, default_collection: str) -> str | None:
    """The document id a job message is about, or None for a malformed message."""
    from .ids import document_id

    try:
        job = Job.from_message(body, default_collection=default_collection)
    except PermanentError:
        return None
    return document_id(job.collection, job.source)
