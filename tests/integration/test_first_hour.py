"""A missing program is a configuration problem, not bad luck (issue 14, defect 2):
real Tesseract, taken off the PATH and put back."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from conveyor.app import Conveyor
from conveyor.settings import Settings
from conveyor.testing import FakeEmbedder


def _scan(path: Path) -> Path:
    image = Image.new("L", (900, 200), 255)
    font = ImageFont.load_default(size=36)
    ImageDraw.Draw(image).text((30, 70), "Invoice total 42 euros", font=font, fill=0)
    image.save(path)
    return path


def test_missing_tesseract_fails_at_once_and_a_redrive_mends_it(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    scan = _scan(tmp_path / "scan.png")
    settings = Settings(home=home, isolate_extraction=False, retry_base_seconds=0.05)
    with Conveyor(settings, embedder=FakeEmbedder()) as cv:
        path = os.environ["PATH"]
        monkeypatch.setenv("PATH", str(tmp_path / "no-programs-here"))
        with caplog.at_level(logging.INFO):
            summary = cv.ingest([scan])
        [doc] = cv.documents()
        assert (summary.failed, doc["attempts"], doc["error_kind"]) == (1, 1, "configuration")
        assert "apt-get install tesseract-ocr" in doc["error"]
        assert not [r for r in caplog.records if r.exc_info], "no traceback for a missing program"
        assert len(cv.dead_letters()) == 1

        monkeypatch.setenv("PATH", path)  # installed now
        assert cv.redrive() == 1
        cv.work()
        [doc] = cv.documents()
        assert doc["state"] == "done" and doc["chunks"] >= 1
        assert "42" in cv.search("invoice total", k=1)[0].text
