"""A document's stages are held back and written with its next write: a small
document's stages cost no write of their own, a slow stage still shows within
:data:`~conveyor.documents.STAGE_DELAY`, and nothing learnt on the way is lost."""

from __future__ import annotations

import itertools
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

import conveyor.catalog.sqlite
from conveyor import documents as documents_module
from conveyor.app import Conveyor
from conveyor.catalog import SqliteCatalog
from conveyor.documents import Documents
from conveyor.exceptions import ModelMismatch
from conveyor.settings import Settings
from conveyor.testing import FakeEmbedder


def _settings(home: Path, **kw: Any) -> Settings:
    return Settings(home=home, embedding_cache=False, retry_base_seconds=0.05, **kw)


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    """Every SQL statement the catalog runs: (which connection, the statement)."""
    seen: list[tuple[int, str]] = []
    connect, opened = conveyor.catalog.sqlite.connect, itertools.count()

    def traced(*args: Any, **kw: Any) -> sqlite3.Connection:
        conn, n = connect(*args, **kw), next(opened)
        conn.set_trace_callback(lambda sql: seen.append((n, sql)))
        return conn

    monkeypatch.setattr(conveyor.catalog.sqlite, "connect", traced)
    return seen


def test_a_fast_document_writes_its_stages_with_its_delivery(
    home: Path, tmp_path: Path, statements: list[tuple[int, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(documents_module, "STAGE_DELAY", 60.0)  # nothing written on its own
    f = tmp_path / "a.txt"
    f.write_text("Otters hold hands while they sleep.")
    with Conveyor(_settings(home), embedder=FakeEmbedder()) as cv:
        statements.clear()
        assert cv.ingest([f]).done == 1
        doc = cv.documents()[0]
    updates = [s for _, s in statements if s.startswith("UPDATE documents")]
    # the worker's start, its delivery (the stages extract and embed folded in), the
    # compactor's done; no stage of its own
    assert len(updates) == 3
    # the delivery: the delta and the document's stage in one transaction
    [(conn, _)] = [(c, s) for c, s in statements if s.startswith("INSERT INTO deltas")]
    own = [" ".join(s.split()[:3]) for c, s in statements if c == conn]
    at = own.index("INSERT INTO deltas")
    assert own[at - 1 : at + 3] == [
        "BEGIN IMMEDIATE",
        "INSERT INTO deltas",
        "UPDATE documents SET",
        "COMMIT",
    ]
    assert doc["state"] == "done" and doc["stage"] is None
    assert doc["content_hash"] and doc["size"] == f.stat().st_size
    assert doc["kind"] == "text" and doc["mime"].startswith("text/plain")
    assert doc["model"] and doc["chunks"] == 1


class Slow(FakeEmbedder):
    """Looks at its document's row while the model call runs long."""

    def __init__(self, catalog: Any, seconds: float) -> None:
        super().__init__()
        self.catalog, self.seconds = catalog, seconds
        self.seen: list[dict[str, Any]] = []

    def embed(self, texts: list[str]) -> Any:
        started = time.monotonic()
        while time.monotonic() - started < self.seconds:
            self.seen += self.catalog.documents()
            time.sleep(0.05)
        return super().embed(texts)


def test_a_slow_stage_shows_within_the_delay(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(documents_module, "STAGE_DELAY", 0.2)
    f = tmp_path / "a.txt"
    f.write_text("Tortoises outlive their keepers.")
    settings = _settings(home)
    slow = Slow(None, seconds=1.5)
    with Conveyor(settings, embedder=slow) as cv:
        slow.catalog = cv.components.catalog
        assert cv.ingest([f]).done == 1
    embedding = [d for d in slow.seen if d["stage"] == "embed"]
    assert embedding, [d["stage"] for d in slow.seen]
    assert embedding[0]["kind"] == "text" and embedding[0]["content_hash"]
    # shown soon after the delay (each read takes 0.05 s and more; room for a busy
    # machine), long before the model call's 1.5 s are up and the delivery writes it
    assert slow.seen.index(embedding[0]) <= 0.2 / 0.05 + 10


def test_a_held_stage_is_written_on_its_own_after_the_delay(tmp_path: Path) -> None:
    catalog = SqliteCatalog(tmp_path / "c.db")
    documents = Documents(catalog, delay=0.3)
    documents.queued([("d", "c", "file:///a.txt")], "run")
    documents.started("d", "queued", attempts=1)
    started = time.monotonic()
    documents.stage("d", "extract", content_hash="h1", size=3)
    documents.stage("d", "page 1 of 9")  # progress: the newer stage wins, fields kept
    assert catalog.get("d")["stage"] == "fetch"  # type: ignore[index]
    while catalog.get("d")["stage"] == "fetch":  # type: ignore[index]
        assert time.monotonic() - started < 5
        time.sleep(0.02)
    assert time.monotonic() - started >= 0.3
    row = catalog.get("d")
    assert row is not None
    assert (row["stage"], row["content_hash"], row["size"]) == ("page 1 of 9", "h1", 3)


class Refusing(FakeEmbedder):
    def embed(self, texts: list[str]) -> Any:
        raise ModelMismatch("the collection was embedded with another model")


def test_a_failure_after_a_held_stage_keeps_what_was_learnt(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(documents_module, "STAGE_DELAY", 60.0)
    f = tmp_path / "a.txt"
    f.write_text("Herons stand still for hours.")
    with Conveyor(_settings(home), embedder=Refusing()) as cv:
        assert cv.ingest([f]).failed == 1
        [doc] = cv.documents()
        events = cv.components.catalog.events(doc["id"])
    assert doc["state"] == "failed" and doc["stage"] is None
    assert "another model" in doc["error"] and doc["error_kind"] == "permanent"
    assert doc["content_hash"] and doc["size"] == f.stat().st_size
    assert doc["kind"] == "text" and doc["mime"].startswith("text/plain")
    assert events[-1]["to_state"] == "failed" and events[-1]["content_hash"] == doc["content_hash"]


def test_a_retry_after_a_held_stage_keeps_what_was_learnt(tmp_path: Path) -> None:
    catalog = SqliteCatalog(tmp_path / "c.db")
    documents = Documents(catalog, delay=60.0)
    documents.queued([("d", "c", "file:///a.txt")], "run")
    documents.started("d", "queued", attempts=1)
    documents.stage("d", "embed", content_hash="h1", size=3, kind="text", mime="text/plain")
    documents.retrying("d", "model server hiccup", "transient")
    row = catalog.get("d")
    assert row is not None
    assert (row["state"], row["stage"], row["error"]) == ("queued", "retry", "model server hiccup")
    assert (row["content_hash"], row["size"], row["kind"], row["mime"]) == (
        "h1",
        3,
        "text",
        "text/plain",
    )
    documents.forget("d")  # nothing held any more: nothing written later
    assert documents.held.take("d") == {}


def test_a_job_that_lost_its_document_drops_its_held_stage(tmp_path: Path) -> None:
    catalog = SqliteCatalog(tmp_path / "c.db")
    documents = Documents(catalog, delay=0.1)
    documents.queued([("d", "c", "file:///a.txt")], "run")
    documents.started("d", "queued", attempts=1)
    documents.stage("d", "extract", content_hash="old")
    documents.forget("d")
    time.sleep(0.3)
    assert catalog.get("d")["content_hash"] is None  # type: ignore[index]
