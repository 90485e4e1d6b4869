"""Every job's measurements reach the catalog: sizes, pages, tokens, peak memory, stages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
    assert m.worker_peak_mb is None or abs(m.worker_peak_mb - (peak_rss_mb() or 0)) <= 1.0


def test_a_workers_peak_from_one_system_call_follows_its_memory() -> None:
    """A worker's peak, read at the end of every job, comes from ``getrusage``: the same
    high-water mark as ``/proc/self/status`` (to within what reading it allocates). In a
    fresh process: this one's peak is whatever the tests before it reached."""
    probe = (
        "import json, numpy as np\n"
        "from conveyor.measure import own_peak_mb, peak_rss_mb\n"
        "before = own_peak_mb()\n"
        "grown = np.ones(40_000_000)\n"  # 305 MiB, touched
        "print(json.dumps([before, own_peak_mb(), peak_rss_mb()]))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    before, after, told = json.loads(out.stdout)
    if before is None:
        pytest.skip("the kernel does not say")
    assert after >= before + 250 and abs(after - told) <= 1.0
