"""A blob store that cannot be written for a while (issue 20, item 5) fails nothing: the
compactor keeps the deltas pending, backs off, and merges them once it can write."""

from __future__ import annotations

import shutil
from pathlib import Path

from support import FakeClock

from conveyor import compactor as compactor_module
from conveyor.app import Conveyor
from conveyor.compactor import Compactor
from conveyor.settings import Settings
from conveyor.testing import FakeEmbedder, prose


def test_an_unwritable_blob_store_delays_merges_and_fails_nothing(
    home: Path, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(3):
        (docs / f"{i}.txt").write_text(prose(i, 200))
    settings = Settings(home=home, chunk_size=60, chunk_overlap=10, isolate_extraction=False)
    with Conveyor(settings, embedder=FakeEmbedder()) as cv:
        c = cv.components
        queued = cv.enqueue([docs])
        processor = c.processor()
        for lease in c.queue.receive(10, visibility_timeout=60):
            assert processor.process(lease).status == "merge"
        # the outage: where the manifests go is a file, so no manifest can be written
        outputs = c.settings.blobs_path / "ingestion_output"
        shutil.rmtree(outputs, ignore_errors=True)
        outputs.parent.mkdir(parents=True, exist_ok=True)
        outputs.write_text("in the way")
        clock = FakeClock()
        writer = Compactor(c.catalog, c.vectors, c.blobs, clock=clock)
        pauses = []
        for _ in range(2 * compactor_module.MAX_ATTEMPTS + 2):  # far past the old limit
            assert writer.run_once() == 0
            pauses.append(max(writer._retry_at.values()) - clock())
            assert writer.run_once() == 0  # within the pause nothing is tried
            clock.advance(compactor_module.BACKOFF_MAX)
        assert pauses[:3] == [1.0, 2.0, 4.0] and pauses[-1] == compactor_module.BACKOFF_MAX
        assert c.catalog.delta_counts().get("failed", 0) == 0
        assert {(d["state"], d["stage"]) for d in cv.documents()} == {("running", "merge")}

        outputs.unlink()  # the disk is back
        clock.advance(compactor_module.BACKOFF_MAX)
        assert writer.run_once() == 3
        assert {d["state"] for d in cv.documents()} == {"done"}
        summary = cv.summary(queued, 1.0)
        assert (summary.done, summary.failed) == (3, 0)
