"""Hosts that share nothing but the engines: PostgreSQL, S3 and a Chroma server —
or, in the serverless shape, SQS, DynamoDB and S3 (all on a moto server) with the
Chroma server.

Three `conveyor worker` processes, each with its own scratch home (as on three
machines), take jobs from the shared queue, record progress in the shared
catalog, read sources from and write manifests to S3 (a moto server), and merge
into a Chroma server; each also runs the compactor, so the writer lock in the
catalog is what keeps one writer per collection. One worker is SIGKILLed while
it works. At the end every good document is in the store exactly once, every
corrupt one failed with its reason, and any host can search.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest
from servers.aws import REGION, SqsQueueInfo, unique_name
from support import stop_processes

from conveyor.app import Conveyor
from conveyor.settings import Settings
from conveyor.testing import prose

from .helpers import BUSY, run, start

GOOD, CORRUPT = 36, 4
DEADLINE = 240.0


def upload_corpus(bucket: str) -> tuple[set[str], set[str]]:
    from servers.aws import client

    s3 = client("s3")
    good, bad = set(), set()
    for i in range(GOOD):
        key = f"src/doc {i:03d}.txt"  # a space: keys are URL-encoded in places
        body = f"Document {i} is about topic {i}.\n\n" + prose(i, 40 + (i * 7) % 120)
        s3.put_object(Bucket=bucket, Key=key, Body=body.encode())
        good.add(f"s3://{bucket}/{key}")
    for i in range(CORRUPT):
        key = f"src/bad-{i}.pdf"
        s3.put_object(Bucket=bucket, Key=key, Body=b"%PDF-1.7\n" + bytes(range(256)) * 4)
        bad.add(f"s3://{bucket}/{key}")
    return good, bad


@pytest.mark.slow
def test_three_hosts_share_only_the_engines(
    tmp_path: Path, postgres_url: str, chroma_url: str, s3_bucket: str
) -> None:
    engines = {
        "CONVEYOR_QUEUE_URL": postgres_url,
        "CONVEYOR_CATALOG_URL": postgres_url,
        "CONVEYOR_VECTORS_URL": chroma_url,
        "CONVEYOR_BLOBS_URL": f"s3://{s3_bucket}/conveyor/",
    }
    three_hosts(tmp_path, engines, s3_bucket)


@pytest.mark.slow
def test_three_hosts_on_the_serverless_engines(
    tmp_path: Path, chroma_url: str, s3_bucket: str, sqs_queue: SqsQueueInfo
) -> None:
    """SQS for the queue, DynamoDB for the catalog, S3 for blobs and large deltas."""
    engines = {
        "CONVEYOR_QUEUE_URL": sqs_queue.conveyor_url,
        "CONVEYOR_CATALOG_URL": f"dynamodb://{unique_name('conveyor')}?region={REGION}",
        "CONVEYOR_VECTORS_URL": chroma_url,
        "CONVEYOR_BLOBS_URL": f"s3://{s3_bucket}/conveyor/",
    }
    three_hosts(tmp_path, engines, s3_bucket)


def three_hosts(tmp_path: Path, engines: dict[str, str], s3_bucket: str) -> None:
    good, bad = upload_corpus(s3_bucket)
    env = {**engines, "CONVEYOR_VISIBILITY_TIMEOUT": "4", **BUSY}
    hosts = [tmp_path / f"host-{n}" for n in range(3)]
    logs = tmp_path / "logs"
    logs.mkdir()
    run("ingest", f"s3://{s3_bucket}/src/", "--no-wait", "--run", "multi", home=hosts[0], **env)

    workers = [
        start("worker", "-j", "2", home=hosts[n], log=logs / f"host-{n}.log", **env)
        for n in range(3)
    ]
    observer = Conveyor(
        Settings(
            home=tmp_path / "observer",
            queue_url=engines["CONVEYOR_QUEUE_URL"],
            catalog_url=engines["CONVEYOR_CATALOG_URL"],
            vectors_url=engines["CONVEYOR_VECTORS_URL"],
            blobs_url=engines["CONVEYOR_BLOBS_URL"],
        )
    )
    killed = False
    started = time.monotonic()
    try:
        while True:
            s = observer.status()
            q, d = s["queue"], s["documents"]
            if (
                d["done"] + d["failed"] == GOOD + CORRUPT
                and q["visible"] == q["in_flight"] == q["delayed"] == 0
                and s["deltas"]["pending"] == 0
            ):
                break
            assert time.monotonic() - started < DEADLINE, f"not finished: {s}"
            busy = {w["pid"] for w in s["workers"] if w.get("in_flight")}
            victim = next((p for p in workers if p.pid in busy), None)
            if not killed and d["done"] >= 6 and victim is not None:
                victim.kill()  # mid-job: its leases must expire and go elsewhere
                victim.wait()
                killed = True
            time.sleep(0.5)
    finally:
        observer.close()
        stop_processes(workers)
    assert killed, "the run ended before a worker could be killed"

    # any host reads the same state: the third one, which never enqueued anything
    documents = json.loads(run("documents", "--json", home=hosts[2], **env).stdout)
    by_source = {d["source"]: d for d in documents}
    assert set(by_source) == good | bad
    assert all(by_source[s]["state"] == "done" and by_source[s]["chunks"] > 0 for s in good)
    assert all(by_source[s]["state"] == "failed" and by_source[s]["error"] for s in bad)

    chunks = [json.loads(line) for line in run("export", home=hosts[2], **env).stdout.splitlines()]
    ids = Counter(c["id"] for c in chunks)  # ids are keys in Chroma: the index check matters
    assert [i for i, n in ids.items() if n > 1] == [], "duplicated chunks"
    per_doc: dict[str, list[int]] = {}
    for c in chunks:
        per_doc.setdefault(c["source"], []).append(c["chunk_index"])
    assert set(per_doc) == good
    for source in good:
        assert sorted(per_doc[source]) == list(range(by_source[source]["chunks"])), source

    # a result manifest per document, in S3
    from servers.aws import client

    listed = client("s3").list_objects_v2(
        Bucket=s3_bucket, Prefix="conveyor/ingestion_output/multi/results/"
    )
    manifests = [
        json.loads(client("s3").get_object(Bucket=s3_bucket, Key=o["Key"])["Body"].read())
        for o in listed.get("Contents", [])
    ]
    done = {m["FileURI"]: m["EmbeddingsGenerated"] for m in manifests if m.get("status") == "done"}
    assert done == {s: by_source[s]["chunks"] for s in good}

    target = next(c for c in chunks if c["source"].endswith("doc 017.txt"))
    hits = json.loads(
        run("search", target["text"], "-k", "1", "--json", home=tmp_path / "fresh", **env).stdout
    )
    assert hits[0]["id"] == target["id"]
