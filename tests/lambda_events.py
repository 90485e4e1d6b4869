"""What AWS Lambda hands a function fed by SQS: the event and the context object.

The context is the Lambda contract (``get_remaining_time_in_millis``), not a
stand-in for our code; the events are shaped as the SQS event source mapping
sends them.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any
from urllib.parse import quote_plus

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:conveyor-jobs"


class LambdaContext:
    """A context whose deadline is ``millis`` from now, counting down in real time."""

    function_name = "conveyor-test"
    aws_request_id = "00000000-0000-0000-0000-000000000000"

    def __init__(self, millis: float = 900_000) -> None:
        self._deadline = time.monotonic() + millis / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class ScriptedContext(LambdaContext):
    """Remaining time taken from ``script`` (milliseconds), one value per call;
    the last value repeats. For deciding exactly where the time runs out."""

    def __init__(self, script: list[int]) -> None:
        super().__init__()
        self.script = list(script)
        self.calls = 0

    def get_remaining_time_in_millis(self) -> int:
        self.calls += 1
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]


def sqs_record(
    body: str | dict[str, Any], *, receive_count: int = 1, message_id: str | None = None
) -> dict[str, Any]:
    """One record of an SQS event (``body`` as text, dicts JSON-encoded)."""
    text = body if isinstance(body, str) else json.dumps(body)
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": "AQEB" + uuid.uuid4().hex,
        "body": text,
        "attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": str(int(time.time() * 1000)),
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": str(int(time.time() * 1000)),
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(text.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": QUEUE_ARN,
        "awsRegion": "us-east-1",
    }


def sqs_event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


def ids(response: dict[str, Any]) -> list[str]:
    """The message ids a handler response asks SQS to deliver again."""
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


def s3_record(bucket: str, key: str, event: str = "ObjectCreated:Put", size: int = 1) -> dict:
    """One S3 event notification record, the key URL-encoded as S3 sends it."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2024-06-01T12:00:00.000Z",
        "eventName": event,
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "conveyor-ingest",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": {
                "key": quote_plus(key, safe="/"),
                "size": size,
                "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                "sequencer": "0055AED6DCD90281E5",
            },
        },
    }


def s3_notification(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}
