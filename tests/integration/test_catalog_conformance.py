"""One conformance suite for every catalog backend: SQLite on a file, and
PostgreSQL on the session's real server (a fresh database per test).

Time is a fake clock the tests advance, except where a test says it checks
the server's clock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conformance.catalog_events import *  # noqa: F403 (document histories, on every backend)
from servers.aws import REGION, unique_name
from support import T0, FakeClock

from conveyor.blobstore.local import LocalBlobStore
from conveyor.catalog import STATES, Catalog, NewDelta, Part, SqliteCatalog, open_catalog
from conveyor.exceptions import ConfigurationError

MakeCatalog = Callable[..., Catalog]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sqlite", "postgres", "dynamodb"])
def make_catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeCatalog]:
    """Opens catalogs on one database (each call: another process, as it were); on
    DynamoDB (moto's server) fresh tables per test, large deltas in a local blob store."""
    extra: dict[str, Any] = {}
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
    elif request.param == "dynamodb":
        request.getfixturevalue("moto_server")
        url = f"dynamodb://{unique_name('catalog')}?region={REGION}"
        extra["blobs"] = LocalBlobStore(tmp_path / "blobs")
    else:
        url = f"sqlite://{tmp_path / 'catalog.db'}"
    opened: list[Catalog] = []

    def make(**kw: Any) -> Catalog:
        catalog = open_catalog(url, **extra, **kw)
        opened.append(catalog)
        return catalog

    yield make
    for catalog in opened:
        catalog.close()


@pytest.fixture
def catalog(make_catalog: MakeCatalog, clock: FakeClock) -> Catalog:
    return make_catalog(clock=clock)


def _part(
    catalog: Catalog, doc: str, part: int, delivery: str, read_at: float = T0, vectors: bytes = b""
) -> int:
    """Part ``part`` of a two-part ``delivery`` of ``doc`` in collection ``c``."""
    header = {"part": part, "delivery": delivery, "read_at": read_at, "dim": 4}
    return catalog.add_delta(
        "c", doc, header, [], vectors, read_at=read_at, delivery=delivery, part=part
    )


def _vectors(n: int) -> bytes:
    return np.arange(n * 4, dtype=np.float32).tobytes()


def test_documents_from_queued_to_done(catalog: Catalog, clock: FakeClock) -> None:
    assert isinstance(catalog, Catalog)
    catalog.start_run("r1", "c", 2)
    catalog.start_run("r1", "c", 1)  # a second intake into the same run adds up
    catalog.enqueued([("d1", "c", "file:///a.txt"), ("d2", "c", "file:///b.txt")], "r1")
    first = catalog.get("d1")
    assert first is not None
    assert (first["state"], first["stage"], first["run"], first["attempts"]) == (
        "queued",
        None,
        "r1",
        0,
    )
    assert first["metadata"] == {} and first["timings"] == {}
    assert first["created_at"] == first["updated_at"] == T0
    assert catalog.get("nope") is None

    clock.advance(5)
    catalog.update(
        "d1",
        state="running",
        stage="embed",
        attempts=2,
        size=3_000_000_000,  # bigger than a 32-bit integer
        metadata={"title": "A", "pages": [1, 2], "nested": {"ok": True}},
        timings={"extract": 0.25},
    )
    running = catalog.get("d1")
    assert running is not None
    assert (running["state"], running["stage"], running["attempts"]) == ("running", "embed", 2)
    assert running["size"] == 3_000_000_000
    assert running["metadata"] == {"title": "A", "pages": [1, 2], "nested": {"ok": True}}
    assert running["timings"] == {"extract": 0.25}
    assert running["updated_at"] == T0 + 5 and running["created_at"] == T0

    catalog.update("d1", state="failed", error="CorruptFile: truncated", error_kind="permanent")
    clock.advance(1)
    catalog.enqueued([("d1", "c", "file:///a.txt")], "r2")  # enqueued again: a fresh start
    again = catalog.get("d1")
    assert again is not None
    assert (again["state"], again["run"], again["error"], again["attempts"]) == (
        "queued",
        "r2",
        None,
        0,
    )
    assert again["metadata"] == {"title": "A", "pages": [1, 2], "nested": {"ok": True}}

    clock.advance(1)
    catalog.update("d2", state="done", chunks=7)
    assert catalog.counts() == {"queued": 1, "running": 0, "done": 1, "skipped": 0, "failed": 0}
    assert catalog.counts(run="r1") == {s: int(s == "done") for s in STATES}
    assert catalog.chunk_total() == 7 and catalog.chunk_total(run="r2") == 0
    assert [d["id"] for d in catalog.documents()] == ["d2", "d1"]  # newest update first
    assert [d["id"] for d in catalog.documents(state="done")] == ["d2"]
    assert [d["id"] for d in catalog.documents(run="r2", collection="c")] == ["d1"]
    assert [d["id"] for d in catalog.documents(collection="other")] == []
    assert len(catalog.documents(limit=1)) == 1


def test_deltas_carry_vectors_and_json(catalog: Catalog, clock: FakeClock) -> None:
    chunks = [{"id": "x", "chunk_index": 0, "text": "héllo ✓", "page": None, "metadata": {}}]
    header = {"source": "file:///a", "dim": 4, "read_at": T0, "timings": {"embed": 0.5}}
    first = catalog.add_delta(
        "c", "d1", header, chunks, _vectors(1), read_at=T0, delivery="v1", part=0
    )
    second = catalog.add_delta("other", "d2", header, [], b"", read_at=T0, delivery="v2", part=0)
    assert second > first
    assert catalog.pending_collections() == ["c", "other"]
    assert catalog.delta_counts() == {"pending": 2, "applied": 0, "failed": 0}
    [delta] = catalog.pending_deltas("c")
    assert (delta["id"], delta["document_id"], delta["collection"]) == (first, "d1", "c")
    assert delta["header"] == header and delta["chunks"] == chunks
    assert np.frombuffer(delta["vectors"], dtype=np.float32).tolist() == [0, 1, 2, 3]
    assert [d["id"] for d in catalog.pending_deltas()] == [first, second]
    assert [d["id"] for d in catalog.pending_deltas(limit=1)] == [first]

    catalog.finish_delta(second, "failed", "ModelMismatch: 16 != 4")
    catalog.finish_delta(first, "applied")
    assert catalog.delta_counts() == {"pending": 0, "applied": 1, "failed": 1}
    assert catalog.pending_collections() == []
    assert catalog.newest_applied_read("d1", "c") == T0
    assert catalog.newest_applied_read("d1", "other") == 0.0
    assert catalog.newest_applied_read("d2", "other") == 0.0  # failed deltas do not count


def test_complete_part_waits_for_every_part_of_its_delivery(catalog: Catalog) -> None:
    catalog.enqueued([("d", "c", "file:///a")], "r")
    done = {"state": "done", "stage": None, "chunks": 3, "timings": {"merge": 0.1}}
    old = _part(catalog, "d", 0, "old")
    p1 = _part(catalog, "d", 1, "new", T0 + 2, _vectors(2))
    p0 = _part(catalog, "d", 0, "new", T0 + 1, _vectors(1))
    assert catalog.complete_part(old, "d", "old", 2, done) is False  # its other part never came
    assert catalog.complete_part(p1, "d", "new", 2, done) is False
    assert catalog.get("d")["state"] == "queued"  # type: ignore[index]
    assert catalog.complete_part(p0, "d", "new", 2, done) is True
    doc = catalog.get("d")
    assert doc is not None
    assert (doc["state"], doc["chunks"], doc["timings"]) == ("done", 3, {"merge": 0.1})
    assert catalog.delta_counts()["applied"] == 3
    assert catalog.pending_deltas() == []
    assert catalog.newest_applied_read("d", "c") == T0 + 2
    single = catalog.add_delta("c", "e", {}, [], b"", read_at=T0, delivery="s", part=0)
    catalog.enqueued([("e", "c", "file:///e")], "r")
    assert catalog.complete_part(single, "e", "s", 1, {"state": "done", "chunks": 1}) is True
    assert catalog.get("e")["state"] == "done"  # type: ignore[index]


def test_complete_parts_marks_a_batch_each_as_complete_part_would(catalog: Catalog) -> None:
    """A compactor's batch marked at once: each part answers as ``complete_part`` would
    (in the order given), a delivery's last part completes its document with its
    event, a part whose delivery still misses one does not, and a deletion's removes
    its document."""
    catalog.enqueued([("d", "c", "file:///d"), ("e", "c", "file:///e")], "r")
    catalog.enqueued([("gone", "c", "file:///gone")], "r")
    done = {"state": "done", "stage": None, "chunks": 2, "timings": {}}
    e1 = _part(catalog, "e", 1, "ve", T0 + 1, _vectors(1))
    d0 = _part(catalog, "d", 0, "vd", T0 + 1, _vectors(1))
    tomb = catalog.add_delta("c", "gone", {}, [], b"", read_at=T0, delivery="x", part=0)
    marks = [
        Part(e1, "e", "ve", 2, done),
        Part(d0, "d", "vd", 1, done),
        Part(tomb, "gone", "x", 1, None),
    ]
    assert catalog.complete_parts(marks) == [False, True, True]
    assert catalog.complete_parts([]) == []
    assert catalog.get("d")["state"] == "done"  # type: ignore[index]
    assert [e["reason"] for e in catalog.events("d")] == ["submitted", "merged"]
    assert catalog.get("e")["state"] == "queued"  # type: ignore[index]
    assert catalog.get("gone") is None
    assert catalog.delta_counts()["applied"] == 3


def test_a_merged_deletion_removes_the_document(catalog: Catalog) -> None:
    catalog.enqueued([("d", "c", "file:///a"), ("e", "c", "file:///e")], "r")
    tombstone = catalog.add_delta("c", "d", {}, [], b"", read_at=T0, delivery="del", part=0)
    assert catalog.complete_part(tombstone, "d", "del", 1, None) is True
    assert catalog.get("d") is None and [d["id"] for d in catalog.documents()] == ["e"]
    assert catalog.pending_deltas() == []


def _finish(
    barrier: threading.Barrier, catalog: Catalog, delta: int, doc: str, out: list[bool]
) -> None:
    barrier.wait(timeout=10)
    out.append(catalog.complete_part(delta, doc, "v1", 2, {"state": "done"}))


def test_two_compactors_finishing_two_parts_at_once(make_catalog: MakeCatalog) -> None:
    """Each part is merged by its own compactor at the same moment: exactly one of
    them sees the document complete, every time."""
    first, second = make_catalog(), make_catalog()
    trials = 15
    outcomes: list[list[bool]] = [[] for _ in range(trials)]
    for t in range(trials):
        doc = f"d{t}"
        first.enqueued([(doc, "c", f"file:///{doc}")], "r")
        ids = [_part(first, doc, p, "v1") for p in (0, 1)]
        barrier = threading.Barrier(2)
        threads = [
            threading.Thread(target=_finish, args=(barrier, c, d, doc, outcomes[t]))
            for c, d in zip((first, second), ids, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert first.get(doc)["state"] == "done"  # type: ignore[index]
    assert all(sorted(o) == [False, True] for o in outcomes), outcomes


def test_compaction_runs(catalog: Catalog, clock: FakeClock) -> None:
    empty = catalog.start_compaction("c")
    failed = catalog.start_compaction("c")
    merged = catalog.start_compaction("c")
    assert [r["state"] for r in catalog.compactions()] == ["pending"] * 3
    clock.advance(2)
    catalog.finish_compaction(empty, "applied", 0, 0)  # merged nothing: not kept
    catalog.finish_compaction(failed, "failed", 1, 0, error="OSError: disk full")
    catalog.finish_compaction(merged, "applied", 3, 40)
    runs = catalog.compactions()
    assert [r["id"] for r in runs] == [merged, failed]
    assert (runs[0]["state"], runs[0]["deltas"], runs[0]["chunks"]) == ("applied", 3, 40)
    assert (runs[0]["started_at"], runs[0]["finished_at"], runs[0]["error"]) == (T0, T0 + 2, None)
    assert (runs[1]["state"], runs[1]["error"]) == ("failed", "OSError: disk full")
    assert len(catalog.compactions(limit=1)) == 1


def test_embedding_cache(catalog: Catalog) -> None:
    vec = np.ones(4, dtype=np.float32).tobytes()
    catalog.cache_put("m", [("h1", vec), ("h2", vec + b"")])
    catalog.cache_put("m", [("h1", b"other"), ("h3", vec), ("h3", vec)])  # h1 kept as it was
    catalog.cache_put("m", [])
    found = catalog.cache_get("m", ["h1", "h3", "missing"])
    assert found == {"h1": vec, "h3": vec}
    assert catalog.cache_get("other-model", ["h1"]) == {}
    many = [f"k{i}" for i in range(1200)]  # more than one batch of lookups
    catalog.cache_put("m", [(h, vec) for h in many])
    assert len(catalog.cache_get("m", many)) == 1200


def test_workers_and_stale_heartbeats(catalog: Catalog, clock: FakeClock) -> None:
    catalog.worker_beat("w1", host="a", pid=1, concurrency=2)
    clock.advance(1)
    catalog.worker_beat("w2", host="b", pid=2, concurrency=3, in_flight=1)
    clock.advance(30)
    catalog.worker_beat("w2", host="b", pid=2, concurrency=3, jobs_done=5, jobs_failed=1)
    [w1, w2] = catalog.workers(stale_after=20)
    assert (w1["id"], w1["stale"], w1["heartbeat_age"]) == ("w1", True, 31.0)
    assert (w2["id"], w2["stale"], w2["jobs_done"], w2["jobs_failed"]) == ("w2", False, 5, 1)
    assert (w2["started_at"], w2["heartbeat_at"], w2["concurrency"]) == (T0 + 1, T0 + 31, 3)
    catalog.worker_beat("w1", host="a", pid=1, concurrency=2, state="stopped")
    assert [w["stale"] for w in catalog.workers(stale_after=20)] == [False, False]
    clock.advance(4000)
    assert catalog.workers(stale_after=20) == []  # gone for longer than ``keep``


def test_locks_are_leases(make_catalog: MakeCatalog, clock: FakeClock) -> None:
    one, other = make_catalog(clock=clock), make_catalog(clock=clock)
    assert one.acquire_lock("compactor:c", "a", ttl=60)
    assert not other.acquire_lock("compactor:c", "b", ttl=60)
    assert other.acquire_lock("compactor:d", "b", ttl=60)  # another name is free
    clock.advance(50)
    assert one.acquire_lock("compactor:c", "a", ttl=60)  # renewed to T0+110
    clock.advance(50)
    assert not other.acquire_lock("compactor:c", "b", ttl=60)
    clock.advance(11)  # the holder stopped renewing: the lease ran out
    assert other.acquire_lock("compactor:c", "b", ttl=60)
    assert not one.acquire_lock("compactor:c", "a", ttl=60)
    one.release_lock("compactor:c", "a")  # not its lock any more: nothing happens
    assert not one.acquire_lock("compactor:c", "a", ttl=60)
    other.release_lock("compactor:c", "b")
    assert one.acquire_lock("compactor:c", "a", ttl=60)


def _take(
    barrier: threading.Barrier, catalog: Catalog, name: str, owner: str, won: list[str]
) -> None:
    barrier.wait(timeout=10)
    if catalog.acquire_lock(name, owner, ttl=60):
        won.append(owner)


def test_only_one_of_many_takes_a_free_lock(make_catalog: MakeCatalog) -> None:
    """Processes on several hosts race for a free lock (the real clock here)."""
    catalogs = [make_catalog() for _ in range(6)]
    for trial in range(5):
        barrier = threading.Barrier(len(catalogs))
        won: list[str] = []
        threads = [
            threading.Thread(target=_take, args=(barrier, c, f"lock-{trial}", f"owner-{i}", won))
            for i, c in enumerate(catalogs)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert len(won) == 1, won


def test_open_catalog_urls(tmp_path: Path) -> None:
    for url in (f"sqlite://{tmp_path}/a.db", str(tmp_path / "b.db"), tmp_path / "c.db"):
        catalog = open_catalog(url)
        assert isinstance(catalog, SqliteCatalog)
        catalog.start_run("r", "c", 1)
        catalog.close()
    assert (tmp_path / "a.db").exists() and (tmp_path / "c.db").exists()
    for bad in ("sqlite://", "mysql://bob:hunter2@db/x", ""):
        with pytest.raises(ConfigurationError) as info:
            open_catalog(bad)
        assert "hunter2" not in str(info.value)


# -- PostgreSQL only ----------------------------------------------------------


def test_postgres_takes_what_its_types_refuse(postgres_url: str) -> None:
    """NUL characters (PDF metadata has them) and NaN cannot be stored in
    PostgreSQL text and JSON; they are dropped rather than failing the document."""
    catalog = open_catalog(postgres_url)
    catalog.enqueued([("d", "c", "file:///a")], "r")
    catalog.update("d", stage="extract\x00", metadata={"title": "A\x00B", "score": float("nan")})
    doc = catalog.get("d")
    assert doc is not None
    assert doc["stage"] == "extract"
    assert doc["metadata"] == {"title": "AB", "score": None}
    delta = catalog.add_delta(
        "c", "d", {}, [{"text": "x\x00y"}], b"\x00\x01", read_at=T0, delivery="v\x00", part=0
    )
    [pending] = catalog.pending_deltas()
    assert (pending["id"], pending["chunks"], pending["vectors"]) == (
        delta,
        [{"text": "xy"}],
        b"\x00\x01",
    )
    catalog.close()


def test_postgres_catalog_uses_the_servers_clock(postgres_url: str) -> None:
    import psycopg

    catalog = open_catalog(postgres_url)
    with psycopg.connect(postgres_url) as conn:
        server_now = conn.execute("SELECT extract(epoch FROM now())::float8").fetchone()[0]
    catalog.worker_beat("w", host="h", pid=1, concurrency=1)
    catalog.enqueued([("d", "c", "file:///a")], "r")
    [worker] = catalog.workers(stale_after=60)
    assert abs(worker["heartbeat_at"] - server_now) < 5 and worker["heartbeat_age"] < 5
    assert abs(catalog.get("d")["created_at"] - server_now) < 5  # type: ignore[index]
    assert catalog.acquire_lock("l", "a", ttl=0.2)
    assert not catalog.acquire_lock("l", "b", ttl=0.2)
    threading.Event().wait(0.3)
    assert catalog.acquire_lock("l", "b", ttl=0.2)
    catalog.close()


def test_postgres_catalog_unreachable_fails_at_start() -> None:
    with pytest.raises(ConfigurationError) as info:
        open_catalog("postgres://bob:hunter2@127.0.0.1:1/conveyor?connect_timeout=3")
    message = str(info.value)
    assert "hunter2" not in message and "catalog" in message
    assert "postgres://bob:***@127.0.0.1:1/conveyor" in message


# -- DynamoDB only --------------------------------------------------------------


@pytest.fixture
def dynamo(moto_server: str, tmp_path: Path) -> Iterator[tuple[Catalog, LocalBlobStore]]:
    blobs = LocalBlobStore(tmp_path / "blobs")
    catalog = open_catalog(f"dynamodb://{unique_name('catalog')}?region={REGION}", blobs=blobs)
    yield catalog, blobs
    catalog.close()


def test_dynamodb_keeps_large_deltas_in_the_blob_store(
    dynamo: tuple[Catalog, LocalBlobStore],
) -> None:
    catalog, blobs = dynamo
    chunks = [{"id": f"c{i}", "text": f"chunk {i} " * 300} for i in range(400)]
    vectors = np.random.default_rng(0).random((400, 384), dtype=np.float32).tobytes()  # 600 KB
    catalog.enqueued([("d", "c", "file:///d")], "r")
    big = catalog.add_delta(
        "c", "d", {"dim": 384}, chunks, vectors, read_at=T0, delivery="v", part=0
    )
    [stored] = list(blobs.list("deltas/"))
    [pending] = catalog.pending_deltas("c")
    assert (pending["id"], pending["chunks"], pending["vectors"]) == (big, chunks, vectors)
    assert catalog.complete_part(big, "d", "v", 1, {"state": "done", "chunks": 400}) is True
    assert list(blobs.list("deltas/")) == [] and stored.size > 400_000
    assert catalog.get("d")["chunks"] == 400  # type: ignore[index]


def test_dynamodb_hot_path_never_scans(dynamo: tuple[Catalog, LocalBlobStore]) -> None:
    """What a worker and a compactor do per document goes through keys and indexes."""
    catalog, _ = dynamo
    calls: list[str] = []
    client = catalog._client  # type: ignore[attr-defined]
    client.meta.events.register(
        "before-call.dynamodb.*", lambda model, **_: calls.append(model.name)
    )
    catalog.start_run("r", "c", 1)
    catalog.enqueued([("d", "c", "file:///d")], "r")
    catalog.update("d", state="running", stage="embed", attempts=1)
    catalog.cache_put("m", [("h", b"v")])
    assert catalog.cache_get("m", ["h"]) == {"h": b"v"}
    delta = catalog.add_delta("c", "d", {}, [], b"", read_at=T0, delivery="v", part=0)
    assert catalog.acquire_lock("compactor:c", "me", ttl=60)
    assert catalog.pending_collections() == ["c"]
    assert [d["id"] for d in catalog.pending_deltas("c")] == [delta]
    assert catalog.newest_applied_read("d", "c") == 0.0
    assert catalog.complete_part(delta, "d", "v", 1, {"state": "done", "chunks": 0})
    catalog.worker_beat("w", host="h", pid=1, concurrency=1)
    assert catalog.counts()["done"] == 1 and catalog.documents(state="done")[0]["id"] == "d"
    assert calls and "Scan" not in calls, calls


def test_measurements_are_kept_per_job_and_read_back_by_filter(
    make_catalog: MakeCatalog, clock: FakeClock
) -> None:
    """Jobs' measurements (conveyor.measure) in a table of their own: every field back as
    written, filtered by run, collection and finish time, oldest first."""
    catalog = make_catalog(clock=clock)
    assert catalog.measurements() == []
    base = {
        "document_id": "d1",
        "job_id": "j1",
        "collection": "c",
        "run": "r1",
        "kind": "audio",
        "outcome": "merge",
        "runtime": "lambda",
        "worker": "host:12",
        "started_at": T0,
        "finished_at": T0 + 95.5,
        "seconds": 95.5,
        "input_bytes": 6_000_000_000,  # bigger than a 32-bit integer
        "pages": None,
        "audio_seconds": 612.25,
        "chunks": 40,
        "tokens": 9_000,
        "child_peak_mb": 812.5,
        "worker_peak_mb": 1430.0,
        "stages": {"fetch": 0.5, "extract": 80.25, "embed": 12.0},
    }
    catalog.record_measurement(base)
    catalog.record_measurement(
        {
            **base,
            "document_id": "d2",
            "run": "r2",
            "collection": "other",
            "pages": 12,
            "kind": "pdf",
            "audio_seconds": None,
            "started_at": T0 + 200,
            "finished_at": T0 + 210.0,
            "outcome": "failed",
            "stages": {},
        }
    )
    # a worker's group: several at once (one transaction where the backend has them)
    catalog.record_measurements(
        [
            {**base, "document_id": "d3", "finished_at": T0 + 300.0},
            {**base, "document_id": "d4", "run": "r3", "finished_at": T0 + 301.0},
        ]
    )
    with pytest.raises(ValueError, match="unknown measurement fields: colour"):
        catalog.record_measurement({**base, "colour": "red"})

    everything = catalog.measurements()
    assert [m["document_id"] for m in everything] == ["d1", "d2", "d3", "d4"]
    first = everything[0]
    assert {k: first[k] for k in base} == base
    assert everything[1]["pages"] == 12 and everything[1]["audio_seconds"] is None
    assert everything[1]["stages"] == {}
    assert [m["document_id"] for m in catalog.measurements(run="r1")] == ["d1", "d3"]
    assert [m["document_id"] for m in catalog.measurements(collection="other")] == ["d2"]
    assert [m["document_id"] for m in catalog.measurements(since=T0 + 210)] == ["d2", "d3", "d4"]
    assert [m["document_id"] for m in catalog.measurements(run="r1", since=T0 + 100)] == ["d3"]
    assert [m["document_id"] for m in catalog.measurements(limit=2)] == ["d3", "d4"]
    assert catalog.measurements(run="r3")[0]["stages"] == base["stages"]
    # another process (a fresh catalog object) reads the same records
    assert len(make_catalog(clock=clock).measurements()) == 4


def test_a_waves_deltas_written_at_once_each_with_its_documents_columns(
    catalog: Catalog,
) -> None:
    """A worker's wave of deliveries (``add_deltas``): each delta pending in order, with
    its document's columns; a document that is not there is left alone."""
    catalog.enqueued([("a", "c", "s"), ("b", "c", "t")], "r")
    merge = {"stage": "merge", "model": "m"}
    ids = catalog.add_deltas(
        [
            NewDelta("c", "a", {"n": 1}, [{"i": 0}], _vectors(1), T0, "va", 0, merge),
            NewDelta("c", "ghost", {}, [], b"", T0, "vg", 0, merge),
            NewDelta("c", "b", {"n": 2}, [], b"", T0 + 1, "vb", 0, None),
        ]
    )
    assert len(ids) == 3 and ids == sorted(ids)
    pending = catalog.pending_deltas("c")
    assert [(d["id"], d["document_id"], d["delivery"]) for d in pending] == [
        (ids[0], "a", "va"),
        (ids[1], "ghost", "vg"),
        (ids[2], "b", "vb"),
    ]
    assert pending[0]["header"] == {"n": 1} and pending[0]["chunks"] == [{"i": 0}]
    assert (catalog.get("a") or {})["stage"] == "merge"
    assert (catalog.get("b") or {})["stage"] is None
    assert catalog.get("ghost") is None
    assert catalog.add_deltas([]) == []


def test_a_delta_written_with_its_documents_columns(catalog: Catalog) -> None:
    catalog.enqueued([("d", "c", "s")], "r")
    merge = {"stage": "merge", "model": "m", "content_hash": "h", "metadata": {"pages": 2}}
    catalog.add_delta("c", "d", {}, [], b"", read_at=T0, delivery="v", part=0, document=merge)
    doc = catalog.get("d")
    assert doc is not None
    assert (doc["stage"], doc["model"], doc["content_hash"]) == ("merge", "m", "h")
    assert doc["metadata"] == {"pages": 2} and doc["state"] == "queued"
    # a document that is not there is left alone; its delta is written all the same
    catalog.add_delta("c", "gone", {}, [], b"", read_at=T0, delivery="w", part=0, document=merge)
    assert catalog.get("gone") is None
    assert [d["delivery"] for d in catalog.pending_deltas()] == ["v", "w"]
