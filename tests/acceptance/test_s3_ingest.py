"""``conveyor ingest s3://… --no-wait`` then ``conveyor worker``, on S3 + SQS (moto),
as the issue's user runs them; the moto environment reaches the subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

from servers.aws import SqsQueueInfo, client

from conveyor.ids import document_id
from conveyor.manifests import MANIFEST_KEY

from .helpers import run, status


def test_ingest_a_bucket_prefix_then_work(
    tmp_path: Path, s3_bucket: str, sqs_queue: SqsQueueInfo
) -> None:
    s3 = client("s3")
    texts = {
        "pdfs/tides.txt": "Ocean tides follow the moon; spring tides come at full moon.",
        "pdfs/sub/bees.txt": "Honey bees dance to tell the hive where the flowers are.",
    }
    for key, text in texts.items():
        s3.put_object(Bucket=s3_bucket, Key=key, Body=text.encode())
    s3.put_object(Bucket=s3_bucket, Key="pdfs/sub/", Body=b"")  # a console folder
    s3.put_object(Bucket=s3_bucket, Key="elsewhere.txt", Body=b"not under the prefix")
    home = tmp_path / "home"
    env = {
        "CONVEYOR_QUEUE_URL": sqs_queue.conveyor_url,
        "CONVEYOR_BLOBS_URL": f"s3://{s3_bucket}/conveyor/",
        "CONVEYOR_VISIBILITY_TIMEOUT": "30",
    }

    result = run(
        "ingest", f"s3://{s3_bucket}/pdfs/", "--no-wait", "--json", "--run", "r1", home=home, **env
    )
    assert json.loads(result.stdout)["enqueued"] == 2
    before = status(home, **env)
    assert before["queue"]["visible"] == 2
    assert before["documents"]["queued"] == 2

    run("worker", "--exit-when-idle", home=home, **env)
    after = status(home, **env)
    assert after["documents"]["done"] == 2, after
    assert after["queue"] == {"visible": 0, "in_flight": 0, "delayed": 0, "dead": 0}
    for key in texts:
        source = f"s3://{s3_bucket}/{key}"
        manifest_key = MANIFEST_KEY.format(run="r1", document_id=document_id("default", source))
        body = s3.get_object(Bucket=s3_bucket, Key=f"conveyor/{manifest_key}")["Body"].read()
        assert json.loads(body)["FileURI"] == source


def test_a_wrong_queue_fails_at_start_naming_it(tmp_path: Path, moto_server: str) -> None:
    result = run(
        "ingest",
        str(tmp_path),
        "--no-wait",
        home=tmp_path / "home",
        check=2,
        CONVEYOR_QUEUE_URL="sqs://conveyor-no-such-queue?region=us-east-1",
    )
    assert "conveyor-no-such-queue" in result.stderr and "does not exist" in result.stderr
