"""``conveyor run-job`` in a subprocess, as Step Functions / ECS RunTask starts it."""

from __future__ import annotations

import json
from pathlib import Path

from servers.aws import client

from conveyor.ids import document_id
from conveyor.testing import make_pdf

from .helpers import run

SF_RESULT = "blobs/ingestion_output/{execution}/sf-results/{document_id}.json"


def test_a_good_file_is_merged_and_its_result_written(home: Path, tmp_path: Path) -> None:
    f = tmp_path / "tides.txt"
    f.write_text("The moon's gravity pulls the ocean into two tidal bulges.")
    job = {"FileURI": f.as_uri(), "collection": "notes", "execution_name": "exec-42"}
    result = run("run-job", home=home, INPUT_JSON=json.dumps(job))

    doc_id = document_id("notes", f.as_uri())
    stored = home / SF_RESULT.format(execution="exec-42", document_id=doc_id)
    data = json.loads(stored.read_text())
    assert json.loads(result.stdout) == data
    assert list(data)[:2] == ["FileURI", "EmbeddingsGenerated"]
    assert data["FileURI"] == f.as_uri() and data["EmbeddingsGenerated"] == 1
    assert (data["status"], data["collection"], data["run"]) == ("done", "notes", "exec-42")
    assert data["execution_name"] == "exec-42" and data["document_id"] == doc_id
    manifest = home / "blobs" / data["result_manifest"]
    assert json.loads(manifest.read_text())["EmbeddingsGenerated"] == 1

    hits = run("search", "tides and the moon", "-c", "notes", "--json", home=home)
    assert json.loads(hits.stdout)[0]["source"] == f.as_uri()

    # the same file again, the execution name from the environment: unchanged, exit 0
    again = run(
        "run-job",
        "--input",
        json.dumps({"FileURI": f.as_uri(), "collection": "notes"}),
        home=home,
        EXECUTION_NAME="exec-43",
    )
    skipped = json.loads(again.stdout)
    assert (skipped["status"], skipped["EmbeddingsGenerated"], skipped["run"]) == (
        "skipped",
        0,
        "exec-43",
    )
    assert (home / SF_RESULT.format(execution="exec-43", document_id=doc_id)).exists()


def test_a_corrupt_file_exits_1_with_the_reason(home: Path, tmp_path: Path) -> None:
    pdf = tmp_path / "cut.pdf"
    make_pdf(str(pdf), ["Numbers for the quarter. " * 40])
    pdf.write_bytes(pdf.read_bytes()[:300])
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"source": pdf.as_uri(), "run": "nightly"}))
    result = run("run-job", "--input", f"@{job}", home=home, check=1)
    assert "PDF" in result.stderr and result.stderr.startswith("error: failed:")
    data = json.loads(result.stdout)
    assert (data["status"], data["EmbeddingsGenerated"]) == ("failed", 0)
    assert "PDF" in data["error"] and data["execution_name"] == "nightly"
    doc_id = document_id("default", pdf.as_uri())
    assert (home / SF_RESULT.format(execution="nightly", document_id=doc_id)).exists()


def test_bad_input_exits_2(home: Path, tmp_path: Path) -> None:
    result = run("run-job", home=home, INPUT_JSON='{"FileURI": "s3://b/k.pdf",', check=2)
    assert "not JSON" in result.stderr
    result = run("run-job", home=home, INPUT_JSON='{"collection": "c"}', check=2)
    assert "no 'source'" in result.stderr
    result = run("run-job", "--input", f"@{tmp_path / 'missing.json'}", home=home, check=2)
    assert "cannot read the input file" in result.stderr
    result = run("run-job", home=home, check=2)
    assert "INPUT_JSON" in result.stderr
    assert not (home / "blobs").exists()  # nothing was started


def test_an_s3_file_with_results_in_the_bucket(home: Path, s3_bucket: str) -> None:
    """Step Functions' shape: the source and the blob store on S3 (a local moto server)."""
    s3 = client("s3")
    key = "in/tides report.txt"
    s3.put_object(
        Bucket=s3_bucket, Key=key, Body=b"The moon's gravity pulls the ocean into two bulges."
    )
    uri = f"s3://{s3_bucket}/{key}"
    job = {"FileURI": uri, "collection": "notes", "execution_name": "sf-exec-7"}
    result = run(
        "run-job",
        home=home,
        INPUT_JSON=json.dumps(job),
        CONVEYOR_BLOBS_URL=f"s3://{s3_bucket}/conveyor/",
    )

    doc_id = document_id("notes", uri)
    stored = s3.get_object(
        Bucket=s3_bucket, Key=f"conveyor/ingestion_output/sf-exec-7/sf-results/{doc_id}.json"
    )
    data = json.loads(stored["Body"].read())
    assert data == json.loads(result.stdout)
    assert (data["FileURI"], data["EmbeddingsGenerated"], data["status"]) == (uri, 1, "done")
    manifest = s3.get_object(Bucket=s3_bucket, Key=f"conveyor/{data['result_manifest']}")
    assert json.loads(manifest["Body"].read())["FileURI"] == uri
    assert not (home / "blobs").exists()
