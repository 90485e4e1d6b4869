"""Every limit on what one document may cost holds (issue 20, items 1 and 2): text and
chunks per document, pages per PDF, time in all, and the worker's own memory."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conveyor.app import Conveyor
from conveyor.chunking import ChunkPlan
from conveyor.exceptions import DocumentTooLarge
from conveyor.extract import extract
from conveyor.isolation import ExtractionTimeout, IsolatedExtractor
from conveyor.settings import Settings
from conveyor.testing import FakeEmbedder, WhitespaceTokenizer, prose

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hostile import (
    Hostile,
    distinct_blank_pages_pdf,
    one_line_markdown,
    repeated_page_pdf,
)
from hostile.run import run


def test_a_document_with_too_many_chunks_fails_with_the_setting_named(
    home: Path, tmp_path: Path
) -> None:
    (tmp_path / "long.txt").write_text(prose(3, 3000))
    (tmp_path / "short.txt").write_text("Otters hold hands while they sleep.")
    with Conveyor(Settings(home=home, max_chunks=5), embedder=FakeEmbedder()) as cv:
        summary = cv.ingest([tmp_path])
    assert (summary.done, summary.failed) == (1, 1)
    assert (
        "over the limit of 5 per document (CONVEYOR_MAX_CHUNKS)" in (summary.failures[0]["error"])
    )


def test_chunking_runs_in_the_extraction_child_within_its_memory_limit() -> None:
    """A text that tokenizes past the child's memory stops there, with the memory reason;
    the worker never tokenizes it."""
    plan = ChunkPlan(WhitespaceTokenizer(), 60, 10, max_chunks=10**9, max_text_chars=10**9)
    x = IsolatedExtractor(timeout=None, memory_mb=400)
    try:
        small = x.extract(b"Otters hold hands while they sleep.", name="a.txt", chunking=plan)
        assert [c.text for c in small.chunks or []] == ["Otters hold hands while they sleep."]
        from conveyor.isolation import ExtractionMemoryLimit

        with pytest.raises(ExtractionMemoryLimit, match="400 MiB"):
            x.extract(one_line_markdown(40_000_000), name="big.md", chunking=plan)
    finally:
        x.close()


def test_a_huge_one_line_file_costs_the_worker_little(tmp_path: Path) -> None:
    """The worker hands the child the file's path, and gets back chunks, capped: its
    memory barely moves (before: +985 MB for 6 MB of one-line Markdown)."""
    hostile = Hostile(
        "one-line-3mb.md", lambda: one_line_markdown(3_000_000), "failed", "CONVEYOR_MAX_CHUNKS"
    )
    row = run(hostile, tmp_path, env={"CONVEYOR_MAX_CHUNKS": "1000"})
    assert row.ok, row
    assert row.growth_mb < 150, row


def test_pdf_pages_are_capped_by_default(home: Path, tmp_path: Path) -> None:
    (tmp_path / "tree.pdf").write_bytes(repeated_page_pdf(11))  # 1.4 KB, 2,048 pages
    with Conveyor(Settings(home=home), embedder=FakeEmbedder()) as cv:
        summary = cv.ingest([tmp_path])
    assert summary.failed == 1
    assert (
        "2,048 pages, more than the limit of 2,000 (CONVEYOR_MAX_PDF_PAGES)"
        in (summary.failures[0]["error"])
    )


def test_a_page_repeated_in_the_page_tree_is_ocred_once() -> None:
    reports: list[str] = []
    with pytest.raises(Exception, match="OCR found no text"):
        extract(repeated_page_pdf(6), progress=reports.append)  # 64 pages, one page object
    assert reports == ["ocr page 1 (1/1)"]


def test_progress_does_not_extend_extraction_past_its_total_budget() -> None:
    """Each OCR'd page reports progress (restarting the quiet timeout); the total budget
    still ends the file."""
    x = IsolatedExtractor(timeout=30, total_timeout=3, memory_mb=None)
    reports: list[str] = []
    try:
        with pytest.raises(ExtractionTimeout, match="longer than 3 s in all"):
            x.extract(distinct_blank_pages_pdf(60), progress=reports.append)
        assert 0 < len(reports) < 60
    finally:
        x.close()


def test_text_over_the_cap_fails_before_it_is_tokenized() -> None:
    plan = ChunkPlan(WhitespaceTokenizer(), 60, 10, max_text_chars=1000)
    with pytest.raises(DocumentTooLarge, match="CONVEYOR_MAX_TEXT_CHARS"):
        extract(b"word " * 1000, name="a.txt", chunking=plan)
