"""reconcile: a job the queue dead-lettered by itself fails its document — but only
the document's latest submission, not one submitted again since."""

from __future__ import annotations

import time
from pathlib import Path

from conveyor.app import Conveyor
from conveyor.settings import Settings
from conveyor.testing import FakeEmbedder


def kill_the_job(cv: Conveyor) -> None:
    """Lease the job and let the lease run out until the queue dead-letters it."""
    queue = cv.components.queue
    assert len(queue.receive(1, visibility_timeout=0.05)) == 1
    time.sleep(0.1)
    assert queue.receive(1, visibility_timeout=0.05) == []  # moved to the dead letters
    assert queue.depth().dead == 1


def test_only_the_latest_submission_is_failed(tmp_path: Path) -> None:
    doc = tmp_path / "a.txt"
    doc.write_text("Some words to index.\n")
    settings = Settings(home=tmp_path / "home", max_receives=1)
    with Conveyor(settings, embedder=FakeEmbedder()) as cv:
        first = cv.enqueue([doc], run="first").document_ids[0]
        kill_the_job(cv)
        assert cv.reconcile() == 1
        failed = cv.components.catalog.get(first)
        assert failed["state"] == "failed" and "lease expired" in failed["error"]

        time.sleep(0.01)
        cv.enqueue([doc], run="again")  # submitted again; the old letter stays in the DLQ
        cv._dead_letters._seen = None  # as a fresh process would
        assert cv.reconcile() == 0
        assert cv.components.catalog.get(first)["state"] == "queued"
