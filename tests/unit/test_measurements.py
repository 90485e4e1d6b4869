"""Every job's measurements reach the catalog: sizes, pages, tokens, peak memory, stages."""

from __future__ import annotations

from pathlib import Path

from conveyor.app import Conveyor
from conveyor.measure import Measurement, measuring, note, peak_rss_mb
from conveyor.settings import Settings
from conveyor.testing import FakeEmbedder, make_pdf, prose


def test_each_job_is_measured_in_the_catalog(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(prose(3, 400))
    make_pdf(str(docs / "b.pdf"), ["Glaciers carve valleys.", "Fjords.", "Moraines."])
    (docs / "c.pdf").write_bytes(b"%PDF-1.7\n garbage, no xref")  # fails: measured too
    settings = Settings(home=tmp_path / "home", chunk_size=60, chunk_overlap=10)
    with Conveyor(settings, embedder=FakeEmbedder()) as cv:
        summary = cv.ingest([docs], run="r1")
        assert (summary.done, summary.failed) == (2, 1)
        rows = cv.components.catalog.measurements(run="r1")
        docs_by_source = {d["id"]: d for d in cv.documents()}
    by_source = {docs_by_source[r["document_id"]]["source"].rsplit("/", 1)[1]: r for r in rows}
    assert sorted(by_source) == ["a.txt", "b.pdf", "c.pdf"] and len(rows) == 3
    text, pdf, bad = by_source["a.txt"], by_source["b.pdf"], by_source["c.pdf"]
    assert text["input_bytes"] == (docs / "a.txt").stat().st_size
    assert pdf["input_bytes"] == (docs / "b.pdf").stat().st_size
    assert (text["kind"], pdf["kind"], pdf["pages"], text["pages"]) == ("text", "pdf", 3, None)
    assert text["outcome"] == pdf["outcome"] == "merge" and bad["outcome"] == "failed"
    # tokens embedded: the chunks' own counts, as the delta recorded them
    assert text["chunks"] == docs_by_source[text["document_id"]]["chunks"] > 1
    assert text["tokens"] > text["chunks"] * 10
    # the extraction child is a Python process with the parsers loaded: tens of MiB
    assert 10 < pdf["child_peak_mb"] < 2048
    assert pdf["worker_peak_mb"] > pdf["child_peak_mb"] * 0.5
    assert text["child_peak_mb"] is None  # small plain text is extracted in the worker
    for row in (text, pdf):
        assert {"fetch", "extract", "embed"} <= set(row["stages"])
        assert row["seconds"] >= row["stages"]["extract"] > 0
        assert row["finished_at"] >= row["started_at"] > 0
        assert row["runtime"] == "worker" and ":" in row["worker"]
    assert bad["input_bytes"] == (docs / "c.pdf").stat().st_size and bad["tokens"] is None
    assert Measurement.from_row(pdf).memory_mb == pdf["child_peak_mb"] + pdf["worker_peak_mb"]
    assert Measurement.from_row(text).memory_mb == text["worker_peak_mb"]


def test_notes_outside_a_job_go_nowhere() -> None:
    note(pages=3)  # no job measured in this context: nothing to fail
    with measuring("lambda") as m:
        note(pages=3, tokens=None)
    assert (m.pages, m.tokens, m.runtime) == (3, None, "lambda")
    assert m.worker_peak_mb == peak_rss_mb() or m.worker_peak_mb is None
