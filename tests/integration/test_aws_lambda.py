"""The Lambda handler with the real model, real extraction (in child processes) and sqlite-vec."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from lambda_events import (
    LambdaContext,
    ScriptedContext,
    ids,
    s3_notification,
    s3_record,
    sqs_event,
    sqs_record,
)
from servers.aws import client

from conveyor.app import Conveyor
from conveyor.aws import lambda_handler
from conveyor.ids import document_id
from conveyor.manifests import MANIFEST_KEY
from conveyor.settings import Settings
from conveyor.testing import make_pdf

TOPICS = {
    "volcano.txt": "Basaltic lava flows slowly downhill from the erupting volcano.",
    "bread.md": "# Sourdough\n\nKnead the dough and let the sourdough starter ferment overnight.",
    "chess.html": "<html><body><p>The Sicilian Defence answers e4 with c5.</p></body></html>",
    "whales.txt": "Humpback whales sing long songs while migrating to warm waters.",
    "bees.txt": "Honey bees dance to tell the hive where the flowers are.",
}
QUERIES = {
    "lava from an erupting volcano": "volcano.txt",
    "letting sourdough starter ferment": "bread.md",
    "Sicilian Defence chess opening": "chess.html",
    "humpback whale songs": "whales.txt",
    "bees dancing about flowers": "bees.txt",
}


@pytest.fixture
def warm(home: Path, real_embedder) -> Iterator[lambda_handler.Warm]:
    lambda_handler.reset()
    yield lambda_handler.warm(Settings(home=home), embedder=real_embedder)
    lambda_handler.reset()


def _job(path: Path) -> dict:
    return {"source": path.as_uri(), "collection": "default", "run": "lambda-run"}


def test_batch_with_bad_records_merges_the_good_and_retries_nothing(
    warm: lambda_handler.Warm, home: Path, tmp_path: Path, real_embedder
) -> None:
    good = []
    for name, text in TOPICS.items():
        good.append(tmp_path / name)
        good[-1].write_text(text)
    corrupt = tmp_path / "report.pdf"
    make_pdf(str(corrupt), ["Quarterly numbers. " * 40])
    corrupt.write_bytes(corrupt.read_bytes()[:300])  # truncated in transit
    records = [sqs_record(_job(p)) for p in good]
    records.insert(2, sqs_record(_job(corrupt)))
    unparseable = sqs_record('{"source": "file:///tmp/x.txt", ')
    records.append(unparseable)

    response = lambda_handler.handler(sqs_event(*records), LambdaContext())

    assert ids(response) == []  # nothing here gets better by retrying
    catalog = warm.components.catalog
    for path in good:
        doc = catalog.get(document_id("default", path.as_uri()))
        assert doc is not None and doc["state"] == "done" and doc["chunks"] >= 1, doc
        manifest = warm.components.blobs.get(
            MANIFEST_KEY.format(run="lambda-run", document_id=doc["id"])
        )
        assert b'"EmbeddingsGenerated": 1' in manifest
    bad = catalog.get(document_id("default", corrupt.as_uri()))
    assert bad is not None and bad["state"] == "failed" and "PDF" in bad["error"]
    message = catalog.get(document_id("default", f"sqs://conveyor-jobs/{unparseable['messageId']}"))
    assert message is not None and message["state"] == "failed"
    assert "not JSON" in message["error"] and message["error_kind"] == "permanent"
    assert catalog.counts()["failed"] == 2
    assert catalog.pending_collections() == []

    with Conveyor(Settings(home=home), embedder=real_embedder) as cv:
        results = cv.search_many(list(QUERIES), k=1)
    for (query, expected), hits in zip(QUERIES.items(), results, strict=True):
        assert hits[0].source.endswith(expected), (query, hits[0].source)


def test_too_little_time_starts_nothing_and_fails_nothing(
    warm: lambda_handler.Warm, tmp_path: Path
) -> None:
    paths = [tmp_path / f"{i}.txt" for i in range(3)]
    for p in paths:
        p.write_text("Glaciers carve valleys over thousands of years.")
    records = [sqs_record(_job(p)) for p in paths]
    response = lambda_handler.handler(sqs_event(*records), LambdaContext(millis=3_000))
    assert ids(response) == [r["messageId"] for r in records]
    assert warm.components.catalog.counts()["failed"] == 0
    assert warm.components.catalog.documents() == []
    assert warm.components.vectors.collection("default") is None


def test_the_model_is_loaded_once_per_container(
    monkeypatch: pytest.MonkeyPatch, home: Path, tmp_path: Path
) -> None:
    """Built from the environment on the first call, as in Lambda, and kept."""
    lambda_handler.reset()
    monkeypatch.setenv("CONVEYOR_HOME", str(home))
    monkeypatch.setenv("CONVEYOR_ISOLATE_EXTRACTION", "false")
    monkeypatch.setenv("CONVEYOR_EMBEDDING_BACKEND", "torch")  # its model is `_model`
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("Owls hunt at night with silent feathers.")
    b.write_text("Cacti store water in their thick stems.")
    try:
        assert ids(lambda_handler.handler(sqs_event(sqs_record(_job(a))), LambdaContext())) == []
        state = lambda_handler.warm()
        embedder = state.components.local_embedder
        model = embedder._model
        assert model is not None  # loaded by the first invocation
        assert ids(lambda_handler.handler(sqs_event(sqs_record(_job(b))), LambdaContext())) == []
        again = lambda_handler.warm()
        assert again is state and again.invocations == 2
        assert again.components.local_embedder is embedder and embedder._model is model
        assert again.components.settings.home == home
        assert again.components.vectors.count("default") == 2
    finally:
        lambda_handler.reset()


# -- S3 (a local moto server) ------------------------------------------------


@pytest.fixture
def s3_warm(home: Path, real_embedder, s3_bucket: str) -> Iterator[lambda_handler.Warm]:
    lambda_handler.reset()
    settings = Settings(home=home, blobs_url=f"s3://{s3_bucket}/conveyor/")
    yield lambda_handler.warm(settings, embedder=real_embedder)
    lambda_handler.reset()


def _put(bucket: str, key: str, text: str) -> str:
    client("s3").put_object(Bucket=bucket, Key=key, Body=text.encode())
    return f"s3://{bucket}/{key}"


def test_s3_event_notifications_in_an_sqs_batch(
    s3_warm: lambda_handler.Warm, s3_bucket: str, home: Path, real_embedder
) -> None:
    b = s3_bucket
    volcano = _put(b, "in/volcano.txt", TOPICS["volcano.txt"])
    flower = _put(b, "in/red flower.txt", "Red poppies flower in the wheat fields in June.")
    bees = _put(b, "in/bees.txt", TOPICS["bees.txt"])
    two = sqs_record(
        s3_notification(s3_record(b, "in/volcano.txt"), s3_record(b, "in/red flower.txt"))
    )
    one = sqs_record(s3_notification(s3_record(b, "in/bees.txt")))
    removed = sqs_record(s3_notification(s3_record(b, "in/old.txt", event="ObjectRemoved:Delete")))
    gone = sqs_record(s3_notification(s3_record(b, "in/gone.txt")))

    response = lambda_handler.handler(sqs_event(two, one, removed, gone), LambdaContext())

    assert ids(response) == []
    catalog = s3_warm.components.catalog
    for uri in (volcano, flower, bees):
        doc = catalog.get(document_id("default", uri))
        assert doc is not None and doc["state"] == "done", (uri, doc)
    missing = catalog.get(document_id("default", f"s3://{b}/in/gone.txt"))
    assert missing is not None and missing["state"] == "failed" and "not found" in missing["error"]
    listed = client("s3").list_objects_v2(
        Bucket=b, Prefix="conveyor/ingestion_output/adhoc/results/"
    )
    assert len(listed["Contents"]) == 4  # three done, one failed
    assert not (home / "blobs").exists()  # everything went to the bucket
    with Conveyor(
        Settings(home=home, blobs_url=f"s3://{b}/conveyor/"), embedder=real_embedder
    ) as cv:
        assert cv.search("poppies in a wheat field", k=1)[0].source == flower


def test_an_s3_event_cut_short_by_time_comes_back_whole(
    s3_warm: lambda_handler.Warm, s3_bucket: str
) -> None:
    """The jobs an event fans out into belong to its message: one not started sends the
    message back, and the next delivery skips what is already in the store."""
    b = s3_bucket
    first = _put(b, "in/a.txt", "Kingfishers dive for small fish in clear rivers.")
    second = _put(b, "in/b.txt", "Lighthouses guide ships along the rocky coast.")
    event = s3_notification(s3_record(b, "in/a.txt"), s3_record(b, "in/b.txt"))
    record = sqs_record(event)
    # time for the event and its first object, then below the 10 s reserve
    response = lambda_handler.handler(sqs_event(record), ScriptedContext([60_000, 60_000, 4_000]))
    assert ids(response) == [record["messageId"]]
    catalog = s3_warm.components.catalog
    assert catalog.get(document_id("default", first))["state"] == "done"
    assert catalog.get(document_id("default", second)) is None

    again = sqs_record(event, receive_count=2, message_id=record["messageId"])
    assert ids(lambda_handler.handler(sqs_event(again), LambdaContext())) == []
    # the redelivered event's first object is unchanged and already merged: it stays done
    assert catalog.get(document_id("default", first))["state"] == "done"
    assert catalog.get(document_id("default", second))["state"] == "done"
    assert s3_warm.components.vectors.count("default") == 2


def test_the_handler_on_the_serverless_engines(
    home: Path, tmp_path: Path, real_embedder, s3_bucket: str
) -> None:
    """DynamoDB for the catalog and S3 for blobs (moto): the same handler, unchanged."""
    from servers.aws import REGION, unique_name

    settings = Settings(
        home=home,
        catalog_url=f"dynamodb://{unique_name('lambda')}?region={REGION}",
        blobs_url=f"s3://{s3_bucket}/conveyor/",
    )
    lambda_handler.reset()
    warm = lambda_handler.warm(settings, embedder=real_embedder)
    try:
        paths = []
        for name, text in TOPICS.items():
            paths.append(tmp_path / name)
            paths[-1].write_text(text)
        corrupt = tmp_path / "report.pdf"
        corrupt.write_bytes(b"%PDF-1.7\n" + bytes(range(256)))
        records = [sqs_record(_job(p)) for p in [*paths, corrupt]]
        assert ids(lambda_handler.handler(sqs_event(*records), LambdaContext())) == []
        catalog = warm.components.catalog
        assert type(catalog).__name__ == "DynamoCatalog"
        assert catalog.counts()["done"] == len(TOPICS) and catalog.counts()["failed"] == 1
        assert catalog.pending_collections() == []
        key = MANIFEST_KEY.format(
            run="lambda-run", document_id=document_id("default", paths[0].as_uri())
        )
        manifest = client("s3").get_object(Bucket=s3_bucket, Key=f"conveyor/{key}")["Body"].read()
        assert b'"status": "done"' in manifest
    finally:
        lambda_handler.reset()
    with Conveyor(settings, embedder=real_embedder) as cv:
        [hits] = cv.search_many(["humpback whale songs"], k=1)
    assert hits[0].source.endswith("whales.txt")
