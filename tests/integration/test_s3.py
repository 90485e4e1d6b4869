"""S3 (the session's moto server): the blob store conformance suite
(``tests/conformance/blobstore.py``) and S3's specifics, S3 sources, and
conveyor end to end on S3 + SQS — a bucket ingested by prefix, and S3 event
notifications arriving on the queue as jobs."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from conformance.blobstore import *  # noqa: F403 (the suite's tests and fixtures)
from conformance.blobstore import S3, BlobBackend
from servers.aws import SqsQueueInfo, client
from support import ndjson, receipt_rows

from conveyor.app import Conveyor
from conveyor.blobstore import open_blobstore, read_source
from conveyor.blobstore.s3 import S3BlobStore, list_sources, translate
from conveyor.exceptions import (
    ConfigurationError,
    ConveyorError,
    PermanentError,
    SourceNotFound,
    TransientError,
)
from conveyor.ids import document_id
from conveyor.manifests import MANIFEST_KEY
from conveyor.settings import Settings

MiB = 1024 * 1024


@pytest.fixture(params=[S3.param()])
def blob_backend(request: pytest.FixtureRequest) -> BlobBackend:
    return request.param  # type: ignore[no-any-return]


class Stream:
    """A large, non-seekable stream made up as it is read; records the biggest read."""

    def __init__(self, size: int) -> None:
        self.left, self.biggest = size, 0
        self.sha = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        n = self.left if n is None or n < 0 else min(n, self.left)
        self.biggest = max(self.biggest, n)
        block = (hashlib.sha256(str(self.left).encode()).digest() * (n // 32 + 1))[:n]
        self.left -= n
        self.sha.update(block)
        return block


def test_put_of_a_stream_is_multipart_and_streamed(s3_bucket: str) -> None:
    store = open_blobstore(f"s3://{s3_bucket}/big/")
    assert isinstance(store, S3BlobStore)
    stream = Stream(17 * MiB)
    store.put("video.bin", stream)  # type: ignore[arg-type]
    head = client("s3").head_object(Bucket=s3_bucket, Key="big/video.bin")
    assert head["ContentLength"] == 17 * MiB
    assert head["ETag"].strip('"').endswith("-3")  # three 8 MiB parts: a multipart upload
    assert stream.biggest <= 8 * MiB  # never more than a part in memory
    with store.open("video.bin") as body:
        first = body.read(MiB)
        digest = hashlib.sha256(first)
        while block := body.read(MiB):
            digest.update(block)
    assert digest.hexdigest() == stream.sha.hexdigest()
    store.close()


def test_uri_stat_and_keys(s3_bucket: str) -> None:
    store = open_blobstore(f"s3://{s3_bucket}/p")
    store.put("a b/ü#1?.json", b"{}")
    assert store.uri("a b/ü#1?.json") == f"s3://{s3_bucket}/p/a b/ü#1?.json"
    info = store.stat("a b/ü#1?.json")
    assert info is not None and info.size == 2 and abs(info.modified - time.time()) < 60
    assert read_source(store.uri("a b/ü#1?.json")) == b"{}"
    client("s3").put_object(Bucket=s3_bucket, Key="p/folder/", Body=b"")  # console folder
    assert [b.key for b in store.list()] == ["a b/ü#1?.json"]
    with pytest.raises(SourceNotFound, match=f"s3://{s3_bucket}/p/missing"):
        store.get("missing")
    store.close()


def test_read_source_errors(s3_bucket: str) -> None:
    client("s3").put_object(Bucket=s3_bucket, Key="in/big.txt", Body=b"x" * 100)
    assert read_source(f"s3://{s3_bucket}/in/big.txt", max_bytes=100) == b"x" * 100
    with pytest.raises(PermanentError, match="over the limit of 99"):
        read_source(f"s3://{s3_bucket}/in/big.txt", max_bytes=99)
    with pytest.raises(SourceNotFound, match=f"s3://{s3_bucket}/in/gone.txt"):
        read_source(f"s3://{s3_bucket}/in/gone.txt")
    with pytest.raises(SourceNotFound, match=r"no such bucket.*conveyor-no-such-bucket"):
        read_source("s3://conveyor-no-such-bucket/in/a.txt")
    with pytest.raises(PermanentError, match="not an object"):
        read_source(f"s3://{s3_bucket}/in/")


def _client_error(code: str, status: int, operation: str = "GetObject") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "..."}, "ResponseMetadata": {"HTTPStatusCode": status}},
        operation,
    )


def test_error_translation() -> None:
    """What moto cannot be made to answer: denied access, throttling, a dead endpoint."""
    uri = "s3://b/k.pdf"
    denied = translate(_client_error("AccessDenied", 403), doing="reading", uri=uri,
                       permission="s3:GetObject")  # fmt: skip
    assert isinstance(denied, PermanentError) and not isinstance(denied, SourceNotFound)
    assert "s3:GetObject" in str(denied) and uri in str(denied)
    for code, status in [("SlowDown", 503), ("InternalError", 500), ("Whatever", 502)]:
        busy = translate(_client_error(code, status), doing="reading", uri=uri, permission="x")
        assert isinstance(busy, TransientError), code
    gone = EndpointConnectionError(endpoint_url="http://127.0.0.1:9")
    assert isinstance(translate(gone, doing="reading", uri=uri, permission="x"), TransientError)
    odd = _client_error("InvalidObjectState", 400)
    assert translate(odd, doing="reading", uri=uri, permission="x") is odd  # unknown: retried


def test_missing_bucket_fails_at_start(moto_server: str) -> None:
    with pytest.raises(
        ConfigurationError, match="does not exist: s3://conveyor-no-such-bucket/prefix/"
    ):
        open_blobstore("s3://conveyor-no-such-bucket/prefix/")


def test_list_sources(s3_bucket: str) -> None:
    s3 = client("s3")
    for key in ["in/a.pdf", "in/b/c.txt", "in/b/", "in/.hidden", "in/.git/x", "inx.txt", "z"]:
        s3.put_object(Bucket=s3_bucket, Key=key, Body=b"data")
    pages: list[int] = []
    found = list_sources(f"s3://{s3_bucket}/in", progress=pages.append, page_size=1)
    assert found == [f"s3://{s3_bucket}/in/a.pdf", f"s3://{s3_bucket}/in/b/c.txt"]
    assert pages == [1, 2, 3, 4]  # after every page (placeholders are not counted)
    assert list_sources(f"s3://{s3_bucket}/in/a.pdf") == [f"s3://{s3_bucket}/in/a.pdf"]
    assert len(list_sources(f"s3://{s3_bucket}")) == 4  # hidden ones left out
    with pytest.raises(ConveyorError, match="no objects under"):
        list_sources(f"s3://{s3_bucket}/nothing/")
    with pytest.raises(ConveyorError, match="bucket does not exist"):
        list_sources("s3://conveyor-no-such-bucket/")


# -- end to end ---------------------------------------------------------------

DOCS = {
    "volcano.txt": "Volcanoes erupt when magma rises through the crust. Lava flows and ash "
    "clouds follow an eruption, and pyroclastic flows race down the slopes.",
    "bread dough ü.md": "# Baking bread\n\nKnead the dough, let the yeast make it rise, then "
    "bake the loaf in a hot oven until the crust is golden brown.",
    "tides/moon.txt": "Ocean tides are raised by the gravity of the moon and the sun; spring "
    "tides come at new and full moon, neap tides at the quarters.",
}


def s3_event(bucket: str, *keys: str, event: str = "ObjectCreated:Put") -> dict[str, Any]:
    """An S3 event notification as S3 sends it to SQS (keys URL-encoded)."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": "2026-11-23T12:00:00.000Z",
                "eventName": event,
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {"key": quote_plus(key, safe="/"), "size": 100},
                },
            }
            for key in keys
        ]
    }


def manifest_of(bucket: str, run: str, doc_id: str) -> dict[str, Any]:
    key = "conveyor/" + MANIFEST_KEY.format(run=run, document_id=doc_id)
    return json.loads(client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())  # type: ignore[no-any-return]


def test_bucket_ingest_and_s3_events_end_to_end(
    real_embedder: Any, home: Path, s3_bucket: str, sqs_queue: SqsQueueInfo
) -> None:
    s3, sqs = client("s3"), client("sqs")
    for name, text in DOCS.items():
        s3.put_object(Bucket=s3_bucket, Key=f"source/{name}", Body=text.encode())
    s3.put_object(Bucket=s3_bucket, Key="source/empty-folder/", Body=b"")
    settings = Settings(
        home=home,
        blobs_url=f"s3://{s3_bucket}/conveyor/",
        queue_url=sqs_queue.conveyor_url,
        isolate_extraction=False,
        visibility_timeout=30,
    )
    with Conveyor(settings, embedder=real_embedder) as cv:
        summary = cv.ingest([f"s3://{s3_bucket}/source/"], run="bulk")
        assert (summary.enqueued, summary.done, summary.failed) == (3, 3, 0), summary.failures
        assert cv.components.queue.depth().as_dict() == {
            "visible": 0,
            "in_flight": 0,
            "delayed": 0,
            "dead": 0,
        }
        for name in DOCS:
            source = f"s3://{s3_bucket}/source/{name}"
            doc = manifest_of(s3_bucket, "bulk", document_id("default", source))
            assert doc["FileURI"] == source
            assert doc["EmbeddingsGenerated"] >= 1 and doc["status"] == "done"
        [hit] = cv.search("what makes lava and ash come out of a mountain", k=1)
        assert hit.source == f"s3://{s3_bucket}/source/volcano.txt"

        # S3 event notifications sent to the queue by hand: one object, a batch of
        # two (fanned out into a job each), S3's test event and a removal (ignored)
        more = {
            "new/deep sea ü+fish.txt": "Anglerfish lure prey in the deep sea with a glowing "
            "lantern of bioluminescent bacteria.",
            "new/a.txt": "Glaciers carve U-shaped valleys as the ice grinds the bedrock.",
            "new/b.txt": "Honeybees dance to tell the hive where the flowers are.",
        }
        for key, text in more.items():
            s3.put_object(Bucket=s3_bucket, Key=key, Body=text.encode())
        test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": s3_bucket}
        for body in (
            s3_event(s3_bucket, "new/deep sea ü+fish.txt"),
            s3_event(s3_bucket, "new/a.txt", "new/b.txt"),
            test_event,
            s3_event(s3_bucket, "source/volcano.txt", event="ObjectRemoved:Delete"),
        ):
            sqs.send_message(QueueUrl=sqs_queue.url, MessageBody=json.dumps(body))
        cv.work()
        for key in more:
            source = f"s3://{s3_bucket}/{key}"
            doc = cv.components.catalog.get(document_id("default", source))
            assert doc is not None and doc["state"] == "done", (key, doc)
            assert manifest_of(s3_bucket, "adhoc", doc["id"])["FileURI"] == source
        [hit] = cv.search("a fish that glows in the dark ocean", k=1)
        assert hit.source == f"s3://{s3_bucket}/new/deep sea ü+fish.txt"
        assert cv.components.queue.depth().as_dict()["visible"] == 0
        # the removal did not remove anything (not supported yet)
        assert cv.components.catalog.get(
            document_id("default", f"s3://{s3_bucket}/source/volcano.txt")
        )["state"] == "done"  # fmt: skip


def test_receipt_artifacts_in_a_bucket(
    real_embedder: Any, home: Path, s3_bucket: str, sqs_queue: SqsQueueInfo
) -> None:
    """A receipt message whose artifacts_bucket is an S3 bucket, by name."""
    texts = ["HARBOUR FISH MARKET", "Smoked mackerel 7.50", "TOTAL 7.50"]
    lines = receipt_rows("img-9", 1, texts)
    words = receipt_rows("img-9", 1, texts, words_of_line=0)
    s3 = client("s3")
    for name, rows in (("lines", lines), ("words", words)):
        s3.put_object(Bucket=s3_bucket, Key=f"ocr/img-9/1/{name}.ndjson", Body=ndjson(rows))
    message = {
        "image_id": "img-9",
        "receipt_id": 1,
        "artifacts_bucket": s3_bucket,
        "lines_key": "ocr/img-9/1/lines.ndjson",
        "words_key": "ocr/img-9/1/words.ndjson",
        "collection": "receipts",
    }
    client("sqs").send_message(QueueUrl=sqs_queue.url, MessageBody=json.dumps(message))
    settings = Settings(
        home=home,
        blobs_url=f"s3://{s3_bucket}/conveyor/",
        queue_url=sqs_queue.conveyor_url,
        isolate_extraction=False,
    )
    with Conveyor(settings, embedder=real_embedder) as cv:
        cv.work()
        [doc] = cv.documents(collection="receipts")
        assert doc["state"] == "done", doc
        assert doc["source"] == "receipt://img-9/1"
        [hit] = cv.search("smoked fish", k=1, collection="receipts_lines", mode="dense")
        assert hit.text == "Smoked mackerel 7.50"


def test_events_for_conveyors_own_blob_store_are_ignored(tmp_path: Path, s3_bucket: str) -> None:
    """A notification on the whole bucket fires for the manifests conveyor writes too;
    indexing them would write a manifest for each, firing another event, forever."""
    from conveyor.components import Components

    def created(key: str) -> dict[str, Any]:
        return {
            "eventSource": "aws:s3",
            "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": s3_bucket}, "object": {"key": key}},
        }

    components = Components(
        Settings(home=tmp_path, queue_url="memory://", blobs_url=f"s3://{s3_bucket}/conveyor/")
    )
    queue = components.queue
    manifest = "conveyor/ingestion_output/r/results/abc.json"
    queue.send({"Records": [created(manifest)]})
    queue.send({"Records": [created(manifest), created("src/a.pdf")]})
    for lease in queue.receive(max_jobs=2):
        assert components.processor().process(lease).status == "skipped"
    jobs = queue.receive(max_jobs=10)
    assert [j.body["source"] for j in jobs] == [f"s3://{s3_bucket}/src/a.pdf"]
    components.close()
