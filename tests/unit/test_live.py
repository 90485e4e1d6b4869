"""The API's catalog watcher: what exists when it starts is its baseline, and every
change after that is counted — the first document into an empty catalog included."""

from __future__ import annotations

from pathlib import Path

from conveyor.app import Conveyor
from conveyor.server.live import Live
from conveyor.settings import Settings
from conveyor.testing import FakeEmbedder


def test_the_first_document_into_an_empty_catalog_is_counted(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Some words.\n")
    (tmp_path / "b.txt").write_text("Other words.\n")
    with Conveyor(Settings(home=tmp_path / "home"), embedder=FakeEmbedder()) as cv:
        old = cv.enqueue([tmp_path / "b.txt"], run="before").document_ids[0]
        cv.components.catalog.update(old, state="done", chunks=1)
        live = Live(cv)
        assert all(e.kind == "queue" for e in live.poll())
        value = live.metrics.registry.get_sample_value
        assert value("conveyor_jobs_total", {"outcome": "done"}) == 0  # before it started

        with Conveyor(Settings(home=tmp_path / "empty"), embedder=FakeEmbedder()) as fresh:
            watcher = Live(fresh)
            watcher.poll()  # an empty catalog at start-up
            doc = fresh.enqueue([tmp_path / "a.txt"], run="r").document_ids[0]
            fresh.components.catalog.update(doc, state="done", chunks=3)
            events = watcher.poll()
            value = watcher.metrics.registry.get_sample_value
            assert value("conveyor_jobs_total", {"outcome": "done"}) == 1
            assert value("conveyor_embeddings_generated_total") == 3
            assert any(e.kind == "document" and e.data["id"] == doc for e in events)
