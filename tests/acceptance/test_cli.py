"""The installed ``conveyor`` command, in a subprocess, on documents made here."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conveyor.testing import make_pdf, prose

from .helpers import run


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("accept")
    docs = root / "docs"
    (docs / "nested").mkdir(parents=True)
    (docs / "tides.txt").write_text(
        prose(1, 400) + "\n\nThe moon's gravity pulls the ocean into two tidal bulges.\n"
    )
    (docs / "nested" / "guide.md").write_text(
        "# Keys\n\nTo rotate the signing keys, create a new key, deploy it, then revoke the "
        "old one.\n"
    )
    (docs / "page.html").write_text(
        "<html><head><title>Bees</title><style>p{}</style></head><body>"
        "<p>Honey bees dance to tell the hive where flowers are.</p>"
        "<script>console.log('not text')</script></body></html>"
    )
    make_pdf(
        str(docs / "report.pdf"),
        [
            "Quarterly revenue grew by twelve percent.",
            "The glacier retreated forty metres this summer.",
        ],
        title="Report",
    )
    bad = root / "bad"
    bad.mkdir()
    (bad / "empty.txt").write_bytes(b"")
    (bad / "noise.dat").write_bytes(os.urandom(4096))
    make_pdf(str(bad / "cut.pdf"), [prose(2, 300)])
    data = (bad / "cut.pdf").read_bytes()
    (bad / "cut.pdf").write_bytes(data[: len(data) // 2])
    return docs, bad


@pytest.fixture(scope="module")
def ingested(workspace: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory):
    docs, bad = workspace
    home = tmp_path_factory.mktemp("home")
    result = run("ingest", str(docs), str(bad), "--run", "accept", home=home, check=None)
    return home, result


def test_ingest_reports_and_exits_nonzero_on_failures(ingested) -> None:
    _, result = ingested
    assert result.returncode == 1, result.stderr
    assert "4 done, 0 unchanged, 3 failed of 7 · 4 searchable" in result.stdout
    assert "empty.txt: " in result.stdout and "cut.pdf: " in result.stdout
    assert "chunks/s" in result.stdout


def test_search_json_finds_phrase_document_first(ingested) -> None:
    home, _ = ingested
    out = run("search", "where is the glacier retreating?", "-k", "3", "--json", home=home)
    hits = json.loads(out.stdout)
    assert hits[0]["source"].endswith("report.pdf") and hits[0]["page"] == 2
    for key in ("score", "document_id", "source", "chunk_index", "page", "text"):
        assert key in hits[0]


def test_search_batch_from_stdin(ingested) -> None:
    home, _ = ingested
    queries = "how to rotate signing keys\nwhy do bees dance\n"
    out = run("search", "--batch", "-", "-k", "2", home=home, stdin=queries)
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [line["query"] for line in lines] == ["how to rotate signing keys", "why do bees dance"]
    assert lines[0]["hits"][0]["source"].endswith("guide.md")
    assert lines[1]["hits"][0]["source"].endswith("page.html")


def test_status_documents_export(ingested) -> None:
    home, _ = ingested
    status = json.loads(run("status", "--json", home=home).stdout)
    assert status["queue"] == {"visible": 0, "in_flight": 0, "delayed": 0, "dead": 3}
    assert status["documents"]["done"] == 4 and status["documents"]["failed"] == 3

    failed = json.loads(run("documents", "--state", "failed", "--json", home=home).stdout)
    assert len(failed) == 3
    for doc in failed:
        assert doc["state"] == "failed" and doc["error"] and "\n" not in doc["error"]
        assert {"id", "source", "chunks", "collection"} <= set(doc)

    done = json.loads(run("documents", "--state", "done", "--json", home=home).stdout)
    lines = run("export", home=home).stdout.splitlines()
    assert len(lines) == sum(d["chunks"] for d in done) > 0
    first = json.loads(lines[0])
    assert {"id", "document_id", "source", "chunk_index", "text", "vector", "metadata"} <= set(
        first
    )
    assert len(first["vector"]) == 384

    manifest = home / "blobs" / "ingestion_output" / "accept" / "results" / f"{done[0]['id']}.json"
    data = json.loads(manifest.read_text())
    assert data["FileURI"] == done[0]["source"]
    # every vector stored: the chunks, and a PDF's pages in <collection>_pages too
    assert data["collections"][done[0]["collection"]] == done[0]["chunks"]
    assert data["EmbeddingsGenerated"] == sum(data["collections"].values())


def test_second_ingest_skips_unchanged(workspace, tmp_path: Path) -> None:
    docs, _ = workspace
    home = tmp_path / "h"
    run("ingest", str(docs), home=home)
    again = run("ingest", str(docs), "--json", home=home)
    summary = json.loads(again.stdout)
    assert (summary["skipped"], summary["done"], summary["failed"]) == (4, 0, 0)


def test_missing_path_and_no_collection_are_clear_errors(tmp_path: Path) -> None:
    result = run("ingest", str(tmp_path / "nope"), home=tmp_path / "h", check=1)
    assert f"failed: {tmp_path / 'nope'}: file not found: {tmp_path / 'nope'}" in result.stdout
    (tmp_path / "empty").mkdir()
    result = run("ingest", str(tmp_path / "empty"), home=tmp_path / "h", check=2)
    assert "no files to ingest" in result.stderr and "nothing to ingest" in result.stderr
    result = run("search", "anything", home=tmp_path / "h2", check=2)
    assert "no conveyor data in" in result.stderr
    assert not (tmp_path / "h2").exists()  # a mistyped home is not created
    (tmp_path / "note.txt").write_text("a note")
    run("ingest", str(tmp_path / "note.txt"), "--no-wait", home=tmp_path / "h")
    result = run("export", "--collection", "typo", home=tmp_path / "h", check=2)
    assert "collection 'typo' does not exist" in result.stderr
    result = run("ingest", str(tmp_path), "--run", "..", home=tmp_path / "h", check=2)
    assert "invalid run name" in result.stderr


def test_search_modes_filters_and_bad_queries(ingested, workspace) -> None:
    home, _ = ingested
    docs, _ = workspace
    for mode in ("hybrid", "dense", "lexical"):
        out = run("search", "glacier retreated", "--mode", mode, "-k", "1", "--json", home=home)
        assert json.loads(out.stdout)[0]["source"].endswith("report.pdf"), mode
    out = run("search", 'glacier "metres" NEAR* -summer:', "--mode", "lexical", "--json", home=home)
    assert json.loads(out.stdout)[0]["page"] == 2  # syntax characters are text, not an error
    nested = run("search", "keys", "--source", str(docs / "nested"), "--json", home=home)
    assert {h["source"].rsplit("/", 1)[1] for h in json.loads(nested.stdout)} == {"guide.md"}
    pdf = run("search", "revenue", "--kind", "pdf", "--pages", "2-", "--json", home=home)
    assert {h["page"] for h in json.loads(pdf.stdout)} == {2}
    assert json.loads(run("search", "x", "--where", "team=none", "--json", home=home).stdout) == []
    for bad in ([""], ["   "], ["x", "--pages", "5-2"], ["x", "--where", "novalue"]):
        result = run("search", *bad, home=home, check=2)
        assert "Usage:" in result.stderr and result.stderr.strip().splitlines()[-1], bad
    long = run("search", "moon gravity ocean " * 1000, "-k", "1", home=home)
    assert "note: the query was cut to the model's window" in long.stderr
    assert "tides.txt" in long.stdout


def test_eval_prints_metrics_for_each_mode(ingested, tmp_path: Path) -> None:
    home, _ = ingested
    (tmp_path / "q.jsonl").write_text(
        '{"_id": "g", "text": "where is the glacier retreating?"}\n'
        '{"_id": "k", "text": "how do I rotate the signing keys"}\n'
    )
    (tmp_path / "r.trec").write_text("g 0 report 1\nk 0 guide 1\nk 0 tides 0\n")
    out = run(
        "eval",
        "--queries",
        str(tmp_path / "q.jsonl"),
        "--qrels",
        str(tmp_path / "r.trec"),
        "--mode",
        "all",
        "--json",
        home=home,
    )
    runs = json.loads(out.stdout)["runs"]
    assert [r["mode"] for r in runs] == ["hybrid", "dense", "lexical"]
    for r in runs:
        assert r["queries"] == 2 and r["ndcg@10"] == 1.0 and r["mrr@10"] == 1.0
        assert r["recall@10"] == r["recall@100"] == 1.0
        assert 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p95"] <= r["latency_ms"]["p99"]
    text = run(
        "eval",
        "--queries",
        str(tmp_path / "q.jsonl"),
        "--qrels",
        str(tmp_path / "r.trec"),
        home=home,
    )
    assert "nDCG@10" in text.stdout and text.stdout.splitlines()[-1].startswith("hybrid")
    (tmp_path / "bad.trec").write_text("g report\n")
    bad = run(
        "eval",
        "--queries",
        str(tmp_path / "q.jsonl"),
        "--qrels",
        str(tmp_path / "bad.trec"),
        home=home,
        check=2,
    )
    assert "bad.trec:1" in bad.stderr
