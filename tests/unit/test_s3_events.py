"""S3 event notifications as jobs: the message shapes S3 (and SNS) really send."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest

from conveyor.components import Components
from conveyor.exceptions import PermanentError
from conveyor.ids import document_id
from conveyor.jobs import Job, document_of, s3_event_jobs
from conveyor.settings import Settings


def record(key: str, event: str = "ObjectCreated:Put", bucket: str = "amzn-s3-demo-bucket"):
    """One record as S3 documents it (notification-content-structure, event version 2.1);
    ``key`` is given decoded and URL-encoded here, as S3 does."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-west-2",
        "eventTime": "2026-11-23T12:00:00.000Z",
        "eventName": event,
        "userIdentity": {"principalId": "AWS:AIDAJDPLRKLG7UEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {
            "x-amz-request-id": "C3D13FE58DE4C810",
            "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD",
        },
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
                "size": 1024,
                "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                "sequencer": "0055AED6DCD90281E5",
            },
        },
    }


def sns(message: dict[str, Any]) -> dict[str, Any]:
    """An SNS notification as SQS receives it without raw message delivery."""
    return {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:us-west-2:123456789012:conveyor-uploads",
        "Subject": "Amazon S3 Notification",
        "Message": json.dumps(message),
        "Timestamp": "2026-11-23T12:00:00.100Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.us-west-2.amazonaws.com/SimpleNotificationService.pem",
        "UnsubscribeURL": "https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe",
    }


TEST_EVENT = {
    "Service": "Amazon S3",
    "Event": "s3:TestEvent",
    "Time": "2026-11-23T12:00:00.000Z",
    "Bucket": "amzn-s3-demo-bucket",
    "RequestId": "5582815E1AEA5ADF",
    "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
}


def test_keys_are_url_decoded() -> None:
    body = {"Records": [record("reports/Q3 results (final)+draft ü€.pdf")]}
    assert body["Records"][0]["s3"]["object"]["key"] == (
        "reports/Q3+results+%28final%29%2Bdraft+%C3%BC%E2%82%AC.pdf"
    )
    assert s3_event_jobs(body) == [
        {
            "source": "s3://amzn-s3-demo-bucket/reports/Q3 results (final)+draft ü€.pdf",
            "options": {"object_size": 1024},  # for routing long jobs
        }
    ]


def test_one_record_is_a_job() -> None:
    body = {"Records": [record("in/a b.pdf")]}
    job = Job.from_message(body, default_collection="docs")
    assert (job.source, job.collection, job.run, job.kind) == (
        "s3://amzn-s3-demo-bucket/in/a b.pdf",
        "docs",
        "adhoc",
        None,
    )
    # the same object listed by `ingest s3://…` is the same document
    assert document_of(body, "docs") == document_id("docs", "s3://amzn-s3-demo-bucket/in/a b.pdf")
    assert Job.from_message(record("in/a b.pdf")).source == job.source  # a record alone


def test_sns_envelope() -> None:
    body = sns({"Records": [record("x/y.txt")]})
    assert [j["source"] for j in s3_event_jobs(body) or []] == ["s3://amzn-s3-demo-bucket/x/y.txt"]
    assert Job.from_message(body).source == "s3://amzn-s3-demo-bucket/x/y.txt"
    # an ordinary job message inside SNS works too
    assert Job.from_message(sns({"source": "s3://b/k.pdf", "run": "r1"})).run == "r1"


def test_several_records_are_several_jobs() -> None:
    body = {
        "Records": [
            record("a.pdf"),
            record("b.pdf", "ObjectCreated:CompleteMultipartUpload"),
            record("old.pdf", "ObjectRemoved:Delete"),
            record("folder/", "ObjectCreated:Put"),
            record("c.pdf", "ObjectCreated:Copy", bucket="other-bucket"),
        ]
    }
    assert [j["source"] for j in s3_event_jobs(body) or []] == [
        "s3://amzn-s3-demo-bucket/a.pdf",
        "s3://amzn-s3-demo-bucket/b.pdf",
        "s3://other-bucket/c.pdf",
    ]
    with pytest.raises(PermanentError, match="3 objects"):
        Job.from_message(body)  # the worker fans such a message out first


def test_test_events_and_removals_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="conveyor.jobs")
    assert s3_event_jobs(TEST_EVENT) == []
    assert s3_event_jobs(sns(TEST_EVENT)) == []
    assert s3_event_jobs({"Records": [record("gone.pdf", "ObjectRemoved:Delete")]}) == []
    assert "not supported yet" in caplog.text and "gone.pdf" in caplog.text
    assert document_of(TEST_EVENT, "default") is None


@pytest.mark.parametrize(
    "body",
    [
        {"source": "s3://b/k"},
        {"Records": [{"eventSource": "aws:dynamodb"}]},
        {"Records": "nope"},
        {"Type": "Notification", "Message": "not json"},
        [1, 2],
    ],
)
def test_other_messages_are_not_s3_events(body: Any) -> None:
    assert s3_event_jobs(body) is None


def test_malformed_s3_records_are_permanent_errors() -> None:
    broken = record("a.pdf")
    del broken["s3"]["object"]["key"]
    with pytest.raises(PermanentError, match="names no object"):
        s3_event_jobs({"Records": [broken]})
    with pytest.raises(PermanentError, match="EventBridge"):
        Job.from_message({"source": "aws.s3", "detail-type": "Object Created", "detail": {}})


def test_worker_fans_out_and_a_redelivery_only_repeats_documents(tmp_path: Path) -> None:
    """An event naming several objects becomes one job each and is acked. If the worker
    died before the ack, the event comes back and is fanned out again: the same
    documents (same ids) once more, nothing lost."""
    components = Components(Settings(home=tmp_path, queue_url="memory://"))
    queue = components.queue
    event = {"Records": [record("a.pdf"), record("b c.pdf"), record("x", "ObjectRemoved:Delete")]}
    queue.send(event)
    queue.send(event)  # as if redelivered: a worker died after fanning it out, before the ack
    for lease in queue.receive(max_jobs=2):
        assert components.processor().process(lease).status == "skipped"
    jobs = queue.receive(max_jobs=10)
    expected = {
        document_id("default", "s3://amzn-s3-demo-bucket/a.pdf"),
        document_id("default", "s3://amzn-s3-demo-bucket/b c.pdf"),
    }
    assert sorted(str(document_of(j.body, "default")) for j in jobs) == sorted([*expected] * 2)
    assert queue.depth().as_dict() == {"visible": 0, "in_flight": 4, "delayed": 0, "dead": 0}
    components.close()
