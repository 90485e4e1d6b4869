"""Hostile files fail alone, within their limits; the worker lives on."""

from __future__ import annotations

import io
import os
import time
import zlib
from pathlib import Path

import pytest
from pypdf import PdfWriter
from pypdf.generic import DictionaryObject, NameObject, StreamObject
from support import wait_for

from conveyor.app import Conveyor
from conveyor.exceptions import PermanentError
from conveyor.isolation import (
    INLINE_BYTES,
    ExtractionMemoryLimit,
    ExtractionTimeout,
    IsolatedExtractor,
)
from conveyor.settings import Settings
from conveyor.testing import FakeEmbedder


def quadratic_html(depth: int = 200_000) -> bytes:
    """HTML nested ``depth`` elements deep: an HTML tree builder (lexbor) looks through
    the open elements at every tag, so 1 MB of it takes minutes."""
    return b"<html><body>" + b"<div>" * depth


def pdf_bomb() -> bytes:
    """A 130 KB PDF whose page content inflates to 65 MB of text operators."""
    writer = PdfWriter()
    page = writer.add_blank_page(612, 792)
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    page[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})}
    )
    stream = StreamObject()
    raw = b"BT /F1 12 Tf 72 700 Td " + b"(AAAAAAA) Tj " * 5_000_000 + b"ET"
    stream._data = zlib.compress(raw, 9)
    stream[NameObject("/Filter")] = NameObject("/FlateDecode")
    page[NameObject("/Contents")] = writer._add_object(stream)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


@pytest.fixture
def extractor():
    x = IsolatedExtractor(timeout=2.0, memory_mb=300)
    yield x
    x.close()


def test_hanging_parse_is_stopped_and_the_next_file_works(extractor: IsolatedExtractor) -> None:
    started = time.monotonic()
    with pytest.raises(ExtractionTimeout, match="longer than 2 s"):
        extractor.extract(quadratic_html(), kind="html")
    assert time.monotonic() - started < 10
    assert extractor.extract(b"<p>after the storm</p>", kind="html").text == "after the storm"


def test_decompression_bomb_hits_the_memory_limit(extractor: IsolatedExtractor) -> None:
    started = time.monotonic()
    with pytest.raises(ExtractionMemoryLimit, match="more than 300 MiB"):
        extractor.extract(pdf_bomb())
    assert time.monotonic() - started < 10
    assert extractor.extract(b"calm again", name="a.txt").text == "calm again"


def test_input_errors_come_back_as_they_are(extractor: IsolatedExtractor) -> None:
    with pytest.raises(PermanentError, match="empty"):
        extractor.extract(b"")


def test_small_plain_text_is_extracted_in_the_worker(
    extractor: IsolatedExtractor, tmp_path: Path
) -> None:
    """A local file of at most INLINE_BYTES that sniffs as text never reaches a child;
    a larger one, or a small one whose bytes are not text, does (and is extracted as the
    child always extracted it)."""
    small = tmp_path / "small.txt"
    small.write_text("Small notes stay in the worker.\n")
    assert extractor.extract(small, name="small.txt").text == "Small notes stay in the worker."
    assert extractor._slots == {}  # no child was started

    disguised = tmp_path / "disguised.txt"  # HTML bytes under a .txt name: the child's
    disguised.write_bytes(b"<!DOCTYPE html><html><body><p>Marked up.</p></body></html>")
    found = extractor.extract(disguised, name="disguised.txt")
    assert (found.kind, found.text) == ("html", "Marked up.")
    assert len(extractor._slots) == 1

    fifo = tmp_path / "pipe.txt"  # not a regular file: never read in the worker
    os.mkfifo(fifo)
    waiting = IsolatedExtractor(timeout=1.0, memory_mb=300)
    try:
        with pytest.raises(ExtractionTimeout):  # the child waited on it, not the worker
            waiting.extract(fifo, name="pipe.txt")
    finally:
        waiting.close()

    extractor.close()
    large = tmp_path / "large.txt"
    large.write_text("word " * (INLINE_BYTES // 5 + 10))
    assert large.stat().st_size > INLINE_BYTES
    assert extractor.extract(large, name="large.txt").kind == "text"
    assert len(extractor._slots) == 1  # the large one went to a child


def test_limits_can_be_switched_off() -> None:
    x = IsolatedExtractor(timeout=None, memory_mb=None)
    try:
        assert x.extract(b"no limits here", name="a.txt").text == "no limits here"
    finally:
        x.close()


def test_hostile_files_fail_alone_in_a_run(home: Path, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "hang.html").write_bytes(quadratic_html())
    (docs / "bomb.pdf").write_bytes(pdf_bomb())
    (docs / "good.txt").write_text("Otters hold hands while they sleep.")
    settings = Settings(home=home, extract_timeout=2.0, extract_memory_mb=300)
    with Conveyor(settings, embedder=FakeEmbedder()) as cv:
        started = time.monotonic()
        summary = cv.ingest([docs])
        assert time.monotonic() - started < 30
        assert (summary.done, summary.failed) == (1, 2)
        reasons = {Path(f["source"]).name: f["error"] for f in summary.failures}
        assert "longer than 2 s" in reasons["hang.html"]
        assert "300 MiB" in reasons["bomb.pdf"]
        assert cv.search("otters sleeping", k=1)[0].source.endswith("good.txt")


def test_child_ends_when_its_worker_is_killed(tmp_path: Path) -> None:
    """A worker SIGKILLed mid-parse leaves no orphan burning CPU."""
    import os
    import signal
    import subprocess
    import sys

    script = tmp_path / "parent.py"
    script.write_text(
        "import sys\n"
        "from conveyor.isolation import IsolatedExtractor\n"
        "x = IsolatedExtractor(timeout=None, memory_mb=None)\n"
        "slot = x._slot()\n"
        "print(slot.process.pid, flush=True)\n"
        "x.extract(open(sys.argv[1], 'rb').read(), kind='html')\n"
    )
    (tmp_path / "slow.html").write_bytes(quadratic_html())
    parent = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "slow.html")],
        stdout=subprocess.PIPE,
        text=True,
    )
    child = int(parent.stdout.readline())
    time.sleep(1.0)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    parent.stdout.close()

    def gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        return False

    try:
        wait_for(gone, 10, "the extraction child to end with its worker", every=0.2)
    finally:
        if not gone():
            os.kill(child, signal.SIGKILL)


def test_pdf_that_parses_for_minutes_is_stopped() -> None:
    """The same bomb without a memory limit: pypdf would parse it for minutes."""
    x = IsolatedExtractor(timeout=2.0, memory_mb=None)
    try:
        started = time.monotonic()
        with pytest.raises(ExtractionTimeout, match="longer than 2 s"):
            x.extract(pdf_bomb())
        assert time.monotonic() - started < 10
    finally:
        x.close()
