"""A real local S3 + SQS endpoint for the test session: moto's server.

``moto_server`` starts one ``moto.server.ThreadedMotoServer`` on 127.0.0.1 (a
free port) for the whole session and yields its endpoint URL. While it runs,
the session's environment carries fake credentials, a region and
``AWS_ENDPOINT_URL``: boto3 honours that variable, so conveyor's own code needs
no test hooks, and subprocesses started by tests inherit it (or copy
:func:`aws_env` into an environment they build). Anything that could point
boto3 elsewhere (a profile, a config file, instance metadata) is cleared, and
everything is restored when the session ends.

This is the one place tests use a stand-in for a service: the real AWS APIs
over HTTP, served by moto. ``s3_bucket`` and ``sqs_queue`` give each test a
fresh bucket and a fresh queue with its dead-letter queue (redrive policy), so
tests never see each other's objects or messages.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

REGION = "us-east-1"

_CLEARED = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_SQS",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)


def aws_env(endpoint: str) -> dict[str, str]:
    """The variables that point boto3 at ``endpoint`` with fake credentials."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """The endpoint URL of a moto server running for the whole session."""
    pytest.importorskip("boto3", reason="boto3 is not installed: pip install 'conveyor[aws]'")
    server_mod = pytest.importorskip(
        "moto.server", reason="moto is not installed: pip install 'moto[server]'"
    )
    # one line per request, and a traceback for every action moto does not implement
    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    patch = pytest.MonkeyPatch()
    for name in _CLEARED:
        patch.delenv(name, raising=False)
    for name, value in aws_env(endpoint).items():
        patch.setenv(name, value)
    try:
        yield endpoint
    finally:
        for made in _clients.values():
            made.close()
        _clients.clear()
        patch.undo()
        server.stop()
        inner = getattr(server, "_server", None)  # stop() shuts down but leaves the socket
        if inner is not None:
            inner.server_close()


_clients: dict[str, Any] = {}


def client(service: str) -> Any:
    """The session's boto3 client for the moto server (settings from the environment;
    closed when the server stops, so callers do not close it)."""
    import boto3

    if service not in _clients:
        _clients[service] = boto3.session.Session().client(service)  # type: ignore[call-overload]
    return _clients[service]


def unique_name(prefix: str) -> str:
    """A bucket or queue name no other test uses (S3 names: lowercase, 3-63 chars)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class SqsQueueInfo:
    name: str
    url: str
    dlq_name: str
    dlq_url: str
    max_receives: int

    @property
    def conveyor_url(self) -> str:
        """The queue as conveyor names it (``CONVEYOR_QUEUE_URL``)."""
        return f"sqs://{self.name}?region={REGION}"


def make_sqs_queue(
    *, max_receives: int = 5, visibility_timeout: int = 30, redrive: bool = True
) -> SqsQueueInfo:
    """A new queue with its own dead-letter queue, wired by a redrive policy."""
    sqs = client("sqs")
    name = unique_name("conveyor-test")
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    attributes = {"VisibilityTimeout": str(visibility_timeout)}
    if redrive:
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives}
        )
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return SqsQueueInfo(name, url, f"{name}-dlq", dlq_url, max_receives)


def make_bucket() -> str:
    name = unique_name("conveyor-test")
    client("s3").create_bucket(Bucket=name)
    return name


def empty_bucket(name: str) -> None:
    s3 = client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=name, Delete={"Objects": keys})
    s3.delete_bucket(Bucket=name)


@pytest.fixture
def s3_bucket(moto_server: str) -> Iterator[str]:
    """A fresh, empty bucket on the moto server; removed with its objects afterwards."""
    name = make_bucket()
    yield name
    empty_bucket(name)


@pytest.fixture
def sqs_queue(moto_server: str) -> Iterator[SqsQueueInfo]:
    """A fresh SQS queue with a dead-letter queue (``maxReceiveCount`` 5); deleted afterwards."""
    info = make_sqs_queue()
    yield info
    for url in (info.url, info.dlq_url):
        client("sqs").delete_queue(QueueUrl=url)
