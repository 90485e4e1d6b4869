"""A worker thread takes several small jobs at once and embeds their chunks in one model
call; each job still settles alone (its own delta, measurement, failure)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from conveyor.app import Conveyor
from conveyor.catalog import Part
from conveyor.settings import Settings
from conveyor.testing import FakeEmbedder, prose


class Poisoned(FakeEmbedder):
    """Refuses any call holding a text with POISON in it (a text the model cannot take)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if any("POISON" in t for t in texts):
            self.calls += 1
            raise ValueError("the model cannot take this text")
        return super().embed(texts)


def _corpus(root: Path, n: int) -> Path:
    root.mkdir()
    for i in range(n):
        (root / f"note-{i:03d}.txt").write_text(prose(i, 40))
    return root


def _ingest(home: Path, corpus: Path, model: FakeEmbedder, **kw: object) -> Conveyor:
    settings = Settings(
        home=home,
        concurrency=1,
        retry_base_seconds=0.01,
        max_receives=2,
        embedding_cache=False,
        **kw,
    )
    cv = Conveyor(settings, embedder=model)
    cv.summary = cv.ingest([corpus])  # type: ignore[attr-defined]
    return cv


def test_small_jobs_share_model_calls(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "docs", 60)
    (corpus / "empty.txt").write_text("   \n")  # fails alone, inside a group
    grouped, alone = FakeEmbedder(), FakeEmbedder()
    with _ingest(tmp_path / "a", corpus, grouped) as cv:
        summary = cv.summary  # type: ignore[attr-defined]
        assert summary.done == 60 and summary.failed == 1
        assert "only whitespace" in summary.failures[0]["error"]
        calls, texts = grouped.calls, grouped.texts
        hits = cv.search("savanna", k=3)
        assert hits
        rows = cv.components.catalog.measurements(limit=100)
        embeds = [r["stages"].get("embed") for r in rows if r.get("chunks")]
        assert len(embeds) == 60 and all(e is not None and e >= 0 for e in embeds)
    with _ingest(tmp_path / "b", corpus, alone, job_group=1) as cv:
        assert cv.summary.done == 60  # type: ignore[attr-defined]
    assert alone.calls >= 60  # one job a call: the test can tell the two apart
    assert calls <= 15, calls  # groups of 1, 2, 4, 8, 16, 32
    assert texts == alone.texts


def test_a_text_the_model_refuses_fails_only_its_document(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "docs", 40)
    (corpus / "note-017.txt").write_text("A POISON pill for the model.\n")
    model = Poisoned()
    with _ingest(tmp_path / "home", corpus, model) as cv:
        summary = cv.summary  # type: ignore[attr-defined]
        assert summary.done == 39 and summary.failed == 1
        (failure,) = summary.failures
        assert failure["source"].endswith("note-017.txt")
        assert "cannot take this text" in failure["error"]
        assert cv.components.vectors.count("default") == 39


@pytest.mark.parametrize("group", [1, 8])
def test_groups_keep_one_delta_per_document(tmp_path: Path, group: int) -> None:
    corpus = _corpus(tmp_path / "docs", 20)
    with _ingest(tmp_path / "home", corpus, FakeEmbedder(), job_group=group) as cv:
        catalog = cv.components.catalog
        docs = catalog.documents(limit=100)
        assert len(docs) == 20 and {d["state"] for d in docs} == {"done"}
        assert cv.components.vectors.count("default") == 20


def test_the_compactor_writes_a_batch_at_once_and_a_refused_delta_fails_alone(
    tmp_path: Path,
) -> None:
    from conveyor.compactor import Compactor

    corpus = _corpus(tmp_path / "docs", 10)
    settings = Settings(home=tmp_path / "home", isolate_extraction=False, embedding_cache=False)
    with Conveyor(settings, embedder=FakeEmbedder(dim=32)) as cv:
        c = cv.components
        cv.enqueue([corpus])
        leases = c.queue.receive(10, visibility_timeout=60)
        processor = c.processor()
        for lease in leases[:5]:
            assert processor.process(lease).status == "merge"
        # the sixth from a worker on another model: its rows cannot join the collection
        other = Conveyor(settings, embedder=FakeEmbedder(dim=16, model_id="other/model"))
        with other:
            assert other.components.processor().process(leases[5]).status == "merge"
        calls: list[int] = []
        many = c.vectors.replace_documents

        def spy(collection: str, documents: Sequence[tuple[str, object]]) -> None:
            calls.append(len(documents))
            many(collection, documents)  # type: ignore[arg-type]

        c.vectors.replace_documents = spy  # type: ignore[method-assign]
        writer = Compactor(c.catalog, c.vectors, c.blobs, lexical=c.lexical)
        assert writer.run_once() == 6  # five merged, one rejected: none left pending
        assert calls == [1] * 5  # the shared write refused before writing, then each alone
        states = {d["source"].rsplit("/", 1)[1]: d for d in cv.documents()}
        failed = [name for name, d in states.items() if d["state"] == "failed"]
        assert len(failed) == 1 and "dimension" in states[failed[0]]["error"].lower()
        assert sum(d["state"] == "done" for d in states.values()) == 5
        assert c.vectors.count("default") == 5
        assert c.lexical is not None and c.lexical.indexed("default") == 5
        calls.clear()
        for lease in leases[6:]:
            assert processor.process(lease).status == "merge"
        marked: list[int] = []
        mark_many = c.catalog.complete_parts

        def marking(parts: list[Part]) -> list[bool]:
            marked.append(len(parts))
            if len(marked) == 1:  # the batch's marking fails: each is marked alone
                raise OSError("disk I/O error")
            return mark_many(parts)

        c.catalog.complete_parts = marking  # type: ignore[method-assign]
        assert writer.run_once() == 4
        assert calls == [4]  # one transaction for the four
        assert marked == [4]
        assert c.vectors.count("default") == 9 and c.lexical.indexed("default") == 9
        assert sum(d["state"] == "done" for d in cv.documents()) == 9
        more = _corpus(tmp_path / "more", 3)
        cv.enqueue([more])
        for lease in c.queue.receive(10, visibility_timeout=60):
            assert processor.process(lease).status == "merge"
        assert writer.run_once() == 3
        assert marked == [4, 3]  # the three marked in one transaction
        assert sum(d["state"] == "done" for d in cv.documents()) == 12


def test_a_stopping_worker_hands_back_the_jobs_of_its_group_not_yet_begun(
    tmp_path: Path,
) -> None:
    import threading

    corpus = _corpus(tmp_path / "docs", 5)
    settings = Settings(home=tmp_path / "home", isolate_extraction=False)
    with Conveyor(settings, embedder=FakeEmbedder()) as cv:
        c = cv.components
        cv.enqueue([corpus])
        leases = c.queue.receive(5, visibility_timeout=60)
        assert len(leases) == 5
        ended: dict[str, str] = {}
        stop = threading.Event()
        stop.set()
        c.processor().process_many(
            leases,
            lambda lease, out: ended.__setitem__(lease.job_id, getattr(out, "status", "error")),
            stop=stop,
        )
        assert sorted(ended.values()) == ["lost"] * 4 + ["merge"]  # the one begun finishes
        depth = c.queue.depth()
        assert (depth.visible, depth.in_flight) == (4, 0)  # visible at once
        assert {lease.receive_count for lease in c.queue.receive(5, 60)} == {1}  # refunded


def test_jobs_waiting_behind_a_slow_one_are_handed_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    from conveyor import worker
    from conveyor.pipeline import Pipeline

    corpus = _corpus(tmp_path / "docs", 4)
    (corpus / "a-slow.txt").write_text(prose(99, 40))  # received first: sources in order
    extract = Pipeline.extract

    def slow_extract(self, doc, fetched):  # type: ignore[no-untyped-def]
        if "slow" in doc.job.source:
            time.sleep(2.5)  # a long recording, say
        return extract(self, doc, fetched)

    monkeypatch.setattr(Pipeline, "extract", slow_extract)
    monkeypatch.setattr(worker, "GROUP_HOLD_SECONDS", 0.3)
    settings = Settings(
        home=tmp_path / "home", isolate_extraction=False, visibility_timeout=0.9
    )  # a heartbeat every 0.3 s
    with Conveyor(settings, embedder=FakeEmbedder()) as cv:
        c = cv.components
        cv.enqueue([corpus])
        pool = c.worker_pool(concurrency=2)
        pool.max_group = pool.group = 5  # one thread takes all five at once
        ended: list[tuple[str, str, float]] = []
        lock = threading.Lock()
        settle = pool._settle

        def record(lease, outcome):  # type: ignore[no-untyped-def]
            with lock:
                status = getattr(outcome, "status", "error")
                ended.append((lease.body["source"].rsplit("/", 1)[1], status, time.monotonic()))
            settle(lease, outcome)

        pool._settle = record  # type: ignore[method-assign]
        pool.start(until_idle=True)
        assert pool.join(timeout=60)
        pool.close()
        finished = {name: at for name, status, at in ended if status == "merge"}
        assert len(finished) == 5, ended
        handed = [name for name, status, _ in ended if status == "lost"]
        assert sorted(handed) == [f"note-{i:03d}.txt" for i in range(4)]
        # the other thread took them while the slow one was still being read
        assert (
            max(at for name, at in finished.items() if name != "a-slow.txt")
            < finished["a-slow.txt"]
        )
        assert c.queue.depth().visible == 0 and not c.queue.dead_letters()


def test_a_group_begins_acks_and_measures_its_jobs_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group's moves to running, its deliveries, its acks and its measurements are
    written a wave at a time (one transaction each), not once per job; each document's
    history still tells its start before its merge, and each job its own measurement."""
    from conveyor.catalog.events import SqlEvents
    from conveyor.catalog.measurements import SqlMeasurements
    from conveyor.catalog.sql import SqlCatalog
    from conveyor.queue.sqlite import SqliteQueue

    calls: dict[str, list[int]] = {"moves": [], "acks": [], "measured": [], "deltas": []}

    def spy(cls: type, name: str, key: str) -> None:
        real = getattr(cls, name)

        def counted(self: object, items: list[object]) -> object:
            calls[key].append(len(items))
            return real(self, items)

        monkeypatch.setattr(cls, name, counted)

    spy(SqlEvents, "move_many", "moves")
    spy(SqliteQueue, "ack_many", "acks")
    spy(SqlMeasurements, "record_measurements", "measured")
    spy(SqlCatalog, "add_deltas", "deltas")
    corpus = _corpus(tmp_path / "docs", 60)
    with _ingest(tmp_path / "home", corpus, FakeEmbedder()) as cv:
        assert cv.summary.done == 60  # type: ignore[attr-defined]
        catalog = cv.components.catalog
        for doc in catalog.documents():
            moves = [(e["to_state"], e["reason"]) for e in catalog.events(doc["id"])]
            assert moves == [
                ("queued", "submitted"),
                ("running", "a worker took it"),
                ("done", "merged"),
            ]
        assert len(catalog.measurements(limit=100)) == 60
        assert cv.components.queue.depth().visible == 0
    for key, sizes in calls.items():
        assert sum(sizes) == 60, (key, sizes)  # every job, once
        assert len(sizes) < 20, (key, sizes)  # groups grow 1, 2, 4, 8…


def test_a_job_is_settled_only_once_its_ack_is_written(tmp_path: Path) -> None:
    """Acks wait for the rest of their wave; the worker hears a job ended (and stops
    keeping its lease) only once its ack is written, however long the wave runs on."""
    from conveyor.pipeline import Outcome
    from conveyor.queue import Lease, LeaseLost

    corpus = _corpus(tmp_path / "docs", 6)
    settings = Settings(home=tmp_path / "home", embedding_cache=False)
    with Conveyor(settings, embedder=FakeEmbedder()) as cv:
        c = cv.components
        cv.enqueue([corpus])
        leases = c.queue.receive(6, visibility_timeout=60)
        acked_when_settled: list[bool] = []

        def settle(lease: Lease, ended: Outcome | Exception) -> None:
            assert isinstance(ended, Outcome) and ended.status == "merge"
            try:
                c.queue.extend(lease, 60)
            except LeaseLost:
                acked_when_settled.append(True)
            else:
                acked_when_settled.append(False)

        assert c.processor().process_many(leases, settle) == 6
        assert acked_when_settled == [True] * 6
        assert c.queue.depth().in_flight == 0


def test_a_delivery_the_catalog_refuses_fails_only_its_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wave's deliveries are written together; when that fails they are written one by
    one, and the one the catalog refuses fails its own job (retried, then failed), while
    the others are delivered."""
    from conveyor.catalog.parts import NewDelta
    from conveyor.catalog.sql import SqlCatalog

    corpus = _corpus(tmp_path / "docs", 12)
    (corpus / "note-005.txt").write_text("REFUSED by the catalog, every time.\n")
    together = SqlCatalog.add_deltas

    def refusing(self: SqlCatalog, deltas: list[NewDelta]) -> list[int]:
        if any("note-005" in str(d.header.get("source")) for d in deltas):
            raise OSError("disk I/O error")
        return together(self, deltas)

    monkeypatch.setattr(SqlCatalog, "add_deltas", refusing)
    with _ingest(tmp_path / "home", corpus, FakeEmbedder()) as cv:
        summary = cv.summary  # type: ignore[attr-defined]
        assert summary.done == 11 and summary.failed == 1
        (failure,) = summary.failures
        assert failure["source"].endswith("note-005.txt")
        assert "disk I/O error" in failure["error"]
        assert cv.components.vectors.count("default") == 11


def test_a_worker_exiting_when_idle_leaves_nothing_unmerged(tmp_path: Path) -> None:
    """`conveyor worker --exit-when-idle`: once the queue is empty its compactor merges
    what is pending before it returns (the last deliveries land just before the queue
    empties), so every document is done when it exits."""
    import threading

    corpus = _corpus(tmp_path / "docs", 40)
    settings = Settings(home=tmp_path / "home", embedding_cache=False)
    with Conveyor(settings, embedder=FakeEmbedder()) as cv:
        cv.enqueue([corpus])
        result = cv.serve_worker(stop=threading.Event(), until_idle=True)
        assert result["done"] == 40
        counts = cv.components.catalog.counts()
        assert counts["done"] == 40, counts
        assert cv.components.catalog.delta_counts()["pending"] == 0
