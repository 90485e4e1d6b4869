"""Ctrl-C during ``conveyor ingest`` (issue 14, defect 1): a clean stop that says what
happened, exit 130, and a next ingest whose summary counts what it did."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from conveyor.testing import prose

from .helpers import BUSY, run, start, status

FILES = 60


def test_ctrl_c_stops_cleanly_and_the_next_ingest_counts_right(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for n in range(FILES):
        (docs / f"doc_{n:02d}.txt").write_text(prose(n, 300))
    home, log = tmp_path / "home", tmp_path / "ingest.log"
    ingest = start("ingest", str(docs), home=home, log=log, **BUSY)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            text = log.read_text() if log.exists() else ""
            lines = [x for x in text.splitlines() if x.startswith("ingest: ")]
            if lines and "· done 0 ·" not in lines[-1]:
                break  # a progress line (stderr is not a terminal) says some are done
            assert ingest.poll() is None, text
            time.sleep(0.5)
        ingest.send_signal(signal.SIGINT)
        assert ingest.wait(timeout=120) == 130
    finally:
        if ingest.poll() is None:
            ingest.kill()
    text = log.read_text()
    assert "Traceback" not in text and "Aborted" not in text, text
    assert "interrupted:" in text and "went back to the queue" in text

    counts = status(home)["documents"]
    # a thread still inside the model when the process ended may have written its delta
    # (stage "merge") after the compactor's last pass: the next run's compactor merges
    # it, and that run finds the document unchanged
    listed = json.loads(run("documents", "--json", home=home, **BUSY).stdout)
    finished = sum(d["state"] == "done" or d.get("stage") == "merge" for d in listed)
    assert 0 < counts["done"] <= finished < FILES, (counts, finished)
    again = run("ingest", str(docs), "--json", home=home, **BUSY)
    summary = json.loads(again.stdout)
    assert (summary["done"], summary["skipped"], summary["failed"]) == (
        FILES - finished,
        finished,
        0,
    ), summary
