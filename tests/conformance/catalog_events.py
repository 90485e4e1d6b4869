"""Document histories, as every catalog backend must keep them: each move of a
document's state (through :class:`~conveyor.documents.Documents`, the catalog's
``enqueued`` and ``complete_part``) is one event, written with the move.

Imported by ``tests/integration/test_catalog_conformance.py``, whose ``catalog``
and ``clock`` fixtures run these on SQLite, PostgreSQL and DynamoDB (moto).
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

import pytest
from support import T0, FakeClock

from conveyor.catalog import Catalog
from conveyor.documents import Documents, State
from conveyor.history import describe, versions


def _merge(catalog: Catalog, doc: str, delivery: str, chunks: int, digest: str) -> None:
    """The compactor's side: the delivery's one part merged, the document done."""
    delta = catalog.add_delta("c", doc, {}, [], b"", read_at=T0, delivery=delivery, part=0)
    done = Documents.done_fields(
        chunks=chunks, content_hash=digest, fingerprint=f"fp-{digest}", model="m", timings={}
    )
    assert catalog.complete_part(delta, doc, delivery, 1, done) is True


def _moves(catalog: Catalog, doc: str) -> list[tuple[Any, ...]]:
    return [(e["from_state"], e["to_state"], e["reason"]) for e in catalog.events(doc)]


def test_every_move_is_an_event_written_with_it(catalog: Catalog, clock: FakeClock) -> None:
    documents = Documents(catalog)
    documents.queued([("d", "c", "file:///a.pdf")], "r1")
    clock.advance(1)
    documents.started("d", "queued", attempts=1)
    documents.retrying("d", "connection reset", "transient")
    clock.advance(2)
    documents.started("d", "queued", attempts=2)
    documents.stage("d", "extract", content_hash="h1", metadata={"page_count": 4})
    documents.merging("d", model="m", metadata={"page_count": 4}, timings={})
    clock.advance(3)
    _merge(catalog, "d", "v1", 7, "h1")

    events = catalog.events("d")
    assert _moves(catalog, "d") == [
        (None, "queued", "submitted"),
        ("queued", "running", "a worker took it"),
        ("running", "queued", "to retry (transient): connection reset"),
        ("queued", "running", "attempt 2"),
        ("running", "done", "merged"),
    ]
    assert [e["at"] for e in events] == [T0, T0 + 1, T0 + 1, T0 + 3, T0 + 6]
    assert [e["attempt"] for e in events] == [0, 1, 1, 2, 2]
    assert {e["run"] for e in events} == {"r1"} and {e["document_id"] for e in events} == {"d"}
    done = events[-1]
    assert (done["content_hash"], done["chunks"], done["pages"]) == ("h1", 7, 4)
    assert events[1]["chunks"] is None  # only a settled document's chunks are told
    assert describe(done) == "running → done: merged, 7 chunks, 4 pages"
    assert catalog.get("d")["state"] == "done"  # type: ignore[index]
    assert catalog.events("other") == []


def test_a_changed_file_is_a_second_version(catalog: Catalog, clock: FakeClock) -> None:
    documents = Documents(catalog)
    documents.queued([("d", "c", "file:///a.txt")], "r1")
    documents.started("d", "queued", attempts=1)
    documents.stage("d", "extract", content_hash="h1")
    _merge(catalog, "d", "v1", 3, "h1")
    clock.advance(10)
    documents.queued([("d", "c", "file:///a.txt")], "r2")  # unchanged
    documents.started("d", "queued", attempts=1)
    documents.skipped("d")
    clock.advance(10)
    documents.queued([("d", "c", "file:///a.txt")], "r3")  # changed, then broken
    documents.started("d", "queued", attempts=1)
    documents.stage("d", "extract", content_hash="h2")
    documents.failed("d", "PDF is truncated", "permanent")
    documents.redriven("d")
    documents.started("d", "queued", attempts=1)
    _merge(catalog, "d", "v3", 5, "h2")

    found = versions(catalog.events("d"))
    assert [(v["run"], v["outcome"], v["content_hash"], v["chunks"]) for v in found] == [
        ("r1", "done", "h1", 3),
        ("r2", "unchanged", "h1", 3),
        ("r3", "done", "h2", 5),  # its failure was redriven: the run ended done
    ]
    assert [v["at"] for v in found] == [T0, T0 + 10, T0 + 20]
    failed = [e for e in catalog.events("d") if e["to_state"] == State.FAILED]
    assert failed[0]["reason"] == "permanent: PDF is truncated"
    assert failed[0]["content_hash"] == "h2" and failed[0]["from_state"] == "running"


def test_a_merged_deletion_takes_the_history_with_it(catalog: Catalog) -> None:
    documents = Documents(catalog)
    documents.queued([("d", "c", "file:///a"), ("e", "c", "file:///e")], "r")
    tombstone = catalog.add_delta("c", "d", {}, [], b"", read_at=T0, delivery="del", part=0)
    assert catalog.complete_part(tombstone, "d", "del", 1, None) is True
    assert catalog.events("d") == []
    assert _moves(catalog, "e") == [(None, "queued", "submitted")]


def test_a_groups_starts_are_written_together_each_before_its_next_move(
    catalog: Catalog, clock: FakeClock
) -> None:
    """In a worker's group (``Documents.gather``) a start is held back with the stage
    that follows it; ``flush`` writes the group's together (``Catalog.move_many``), each
    with its event. A document that moves on before the flush has its start written
    first, so its history keeps the order; a missing one is left alone."""
    documents = Documents(catalog, delay=60)
    documents.queued([("a", "c", "file:///a"), ("b", "c", "file:///b")], "r")
    documents.queued([("s", "c", "file:///s")], "r")
    clock.advance(1)
    with documents.gather() as gathered:
        for doc in ("a", "b", "s", "ghost"):
            documents.started(doc, "queued" if doc != "ghost" else None, attempts=1)
        documents.stage("a", "extract", content_hash="ha")
    assert gathered == ["a", "b", "s", "ghost"]
    assert {catalog.get(d)["state"] for d in "abs"} == {"queued"}  # type: ignore[index]
    clock.advance(1)
    documents.skipped("s")  # unchanged: moved on before the group's flush
    documents.flush(gathered)
    assert gathered == []
    for doc in "ab":
        assert _moves(catalog, doc) == [
            (None, "queued", "submitted"),
            ("queued", "running", "a worker took it"),
        ]
        assert [e["at"] for e in catalog.events(doc)] == [T0, T0 + 2]
    a = catalog.get("a")
    assert a is not None and (a["stage"], a["content_hash"], a["attempts"]) == ("extract", "ha", 1)
    assert _moves(catalog, "s") == [
        (None, "queued", "submitted"),
        ("queued", "running", "a worker took it"),
        ("running", "skipped", "unchanged"),
    ]
    assert catalog.get("ghost") is None and catalog.events("ghost") == []
    documents.flush(gathered)  # nothing left: writes nothing
    assert len(catalog.events("a")) == 2


def test_a_move_of_a_missing_document_records_nothing(catalog: Catalog) -> None:
    catalog.move("ghost", "released", state="queued", stage=None)
    assert catalog.get("ghost") is None and catalog.events("ghost") == []


def test_moves_from_two_hosts_at_once_chain_up(make_catalog: Any) -> None:
    """Two hosts move one document at the same moments: each event's from-state is the
    state the one before it left, so none was read outside its move's transaction."""
    first, second = make_catalog(), make_catalog()
    if type(first).__name__ == "DynamoCatalog":
        pytest.skip(
            "moto's TransactWriteItems is not isolated (a failed condition restores a table"
            " snapshot, undoing a concurrent transaction): DynamoDB's own conflict path is"
            " tested in tests/integration/test_document_history.py"
        )
    Documents(first).queued([("d", "c", "file:///d")], "r")
    barrier = threading.Barrier(2)

    def mover(catalog: Catalog, target: str) -> None:
        barrier.wait(timeout=10)
        for n in range(8):
            catalog.move("d", f"{target} {n}", state=target, attempts=n)

    threads = [
        threading.Thread(target=mover, args=(c, t))
        for c, t in ((first, "running"), (second, "queued"))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    events = first.events("d")
    assert len(events) == 17
    for before, after in itertools.pairwise(events):
        assert after["from_state"] == before["to_state"], (before, after)
    assert first.get("d")["state"] == events[-1]["to_state"]  # type: ignore[index]
