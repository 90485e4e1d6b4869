"""The VectorStore contract, run against every backend: sqlite-vec, Chroma
(embedded and a real ``chroma run`` server), Qdrant local mode, and
PostgreSQL 16 with pgvector (``pgserver``)."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conformance import search_filters

from conveyor.exceptions import ConveyorError, ModelMismatch
from conveyor.filters import Filter
from conveyor.vectorstore import ChunkRecord, VectorStore, open_vectorstore

BACKENDS = ["sqlite_vec", "chroma", "chroma_server", "qdrant", "pgvector"]


def qdrant_folder(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A folder for Qdrant's local mode, in memory (/dev/shm) where there is one:
    local mode commits each point to SQLite on its own, ~10 ms apiece on a disk
    that honours fsync, which would make the thousand-vector test take 15 s."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        return tmp_path / "qdrant"
    folder = Path(tempfile.mkdtemp(prefix="conveyor-qdrant-", dir=shm))
    request.addfinalizer(lambda: shutil.rmtree(folder, ignore_errors=True))
    return folder


def store_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    """A URL of an empty store of ``backend``; servers start on first use."""
    if backend == "sqlite_vec":
        return f"sqlite-vec://{tmp_path / 'v.db'}"
    if backend == "chroma":
        return f"chroma://{tmp_path / 'chroma'}"
    if backend == "chroma_server":
        return str(request.getfixturevalue("chroma_url"))
    if backend == "qdrant":
        return f"qdrant://{qdrant_folder(request, tmp_path)}"
    if backend == "pgvector":
        return str(request.getfixturevalue("pgvector_url"))
    raise AssertionError(backend)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    s = open_vectorstore(store_url(request, request.param, tmp_path))
    s.ensure_collection("c", dim=4, model_id="m")
    yield s
    s.close()


def _rec(doc: str, i: int, vec: list[float], text: str = "") -> ChunkRecord:
    v = np.asarray(vec, dtype=np.float32)
    return ChunkRecord(
        id=f"{doc}-{i}",
        document_id=doc,
        chunk_index=i,
        text=text or f"{doc}{i}",
        source=f"file:///{doc}",
        page=i + 1,
        metadata={"i": i},
        vector=v / np.linalg.norm(v),
    )


def test_query_orders_by_cosine(store: VectorStore) -> None:
    store.upsert(
        "c", [_rec("a", 0, [1, 0, 0, 0]), _rec("a", 1, [0, 1, 0, 0]), _rec("b", 0, [1, 1, 0, 0])]
    )
    hits = store.query("c", np.array([1, 0.1, 0, 0], dtype=np.float32), k=3)
    assert [h.id for h in hits] == ["a-0", "b-0", "a-1"]
    assert hits[0].score > hits[1].score > hits[2].score
    assert hits[0].page == 1 and hits[0].metadata == {"i": 0}
    q = np.array([1, 0.1, 0, 0]) / np.linalg.norm([1, 0.1, 0, 0])
    assert hits[0].score == pytest.approx(float(q @ [1, 0, 0, 0]), abs=1e-4)
    assert hits[2].score == pytest.approx(float(q @ [0, 1, 0, 0]), abs=1e-4)
    assert [h.id for h in store.query("c", np.array([0, 1, 0, 0], np.float32), k=1)] == ["a-1"]


def test_upsert_is_idempotent(store: VectorStore) -> None:
    recs = [_rec("a", i, [1, i, 0, 0]) for i in range(3)]
    store.upsert("c", recs)
    store.upsert("c", recs)
    assert store.count("c") == 3
    store.upsert("c", [_rec("a", 0, [0, 0, 0, 1], text="new")])
    assert store.count("c") == 3
    hit = store.query("c", np.array([0, 0, 0, 1], dtype=np.float32), k=1)[0]
    assert (hit.id, hit.text) == ("a-0", "new")


def test_replace_document_leaves_nothing_behind(store: VectorStore) -> None:
    store.replace_document("c", "a", [_rec("a", i, [1, i, 0, 0]) for i in range(5)])
    store.replace_document("c", "b", [_rec("b", 0, [0, 0, 1, 0])])
    store.replace_document(
        "c", "a", [_rec("a", i, [0, 1, i, 0], text=f"second {i}") for i in range(2)]
    )
    assert store.count("c", document_id="a") == 2
    assert store.count("c") == 3
    assert [(r.id, r.text) for r in store.iter_chunks("c") if r.document_id == "a"] == [
        ("a-0", "second 0"),
        ("a-1", "second 1"),
    ]
    hits = store.query("c", np.array([1, 4, 0, 0], np.float32), k=10, where={"document_id": "a"})
    assert sorted(h.id for h in hits) == ["a-0", "a-1"]
    store.replace_document("c", "b", [])  # a document that lost all its text
    assert store.count("c", document_id="b") == 0
    assert store.delete("c", document_id="a") == 2
    assert store.count("c") == 0
    assert store.delete("c", document_id="a") == 0
    assert store.delete("missing", document_id="a") == 0


def test_where_filters_on_document_and_source(store: VectorStore) -> None:
    store.upsert("c", [_rec("a", 0, [1, 0, 0, 0]), _rec("b", 0, [1, 0.01, 0, 0])])
    store.upsert("c", [_rec("b", 1, [1, 0.02, 0, 0])])
    q = np.array([1, 0, 0, 0], dtype=np.float32)
    assert [h.id for h in store.query("c", q, k=5, where={"document_id": "b"})] == ["b-0", "b-1"]
    assert [h.id for h in store.query("c", q, k=1, where={"document_id": "b"})] == ["b-0"]
    assert [h.id for h in store.query("c", q, k=5, where={"source": "file:///a"})] == ["a-0"]
    both = {"document_id": "b", "source": "file:///b"}
    assert [h.id for h in store.query("c", q, k=5, where=both)] == ["b-0", "b-1"]
    assert store.query("c", q, k=5, where={"document_id": "b", "source": "file:///a"}) == []
    assert store.query("c", q, k=5, where={"document_id": "nobody"}) == []
    assert len(store.query("c", q, k=5, where={"document_id": None})) == 3
    with pytest.raises(ConveyorError, match="cannot filter"):
        store.query("c", q, k=5, where={"page": 1})


def test_export_is_ordered_by_document_then_chunk_index(store: VectorStore) -> None:
    recs = [_rec(doc, i, [1, i, len(doc), 0]) for doc in ("b", "a", "ab") for i in (10, 2, 0)]
    random.Random(4).shuffle(recs)
    store.upsert("c", recs[:4])
    store.upsert("c", recs[4:])
    exported = list(store.iter_chunks("c"))
    assert [r.id for r in exported] == [
        f"{doc}-{i}" for doc in ("a", "ab", "b") for i in (0, 2, 10)
    ]
    by_id = {r.id: r for r in recs}
    for r in exported:
        assert r.vector is not None and r.vector.dtype == np.float32 and r.vector.shape == (4,)
        np.testing.assert_allclose(r.vector, by_id[r.id].vector, atol=1e-6)
        assert (r.document_id, r.chunk_index, r.source) == (
            by_id[r.id].document_id,
            by_id[r.id].chunk_index,
            by_id[r.id].source,
        )
    bare = list(store.iter_chunks("c", vectors=False))
    assert [r.id for r in bare] == [r.id for r in exported]
    assert all(r.vector is None for r in bare)
    assert list(store.iter_chunks("missing")) == []


def test_metadata_round_trips(store: VectorStore) -> None:
    metadata = {
        "start_s": 12.5,
        "end_s": 47.25,
        "title": "Ünïcode — «quoted» 🐋",
        "bounding_box": {"x": 10, "y": 20, "width": 300, "height": 41},
        "nested": {"list": [1, 2.5, "three", None, True], "deep": {"k": {"v": [{"a": 1}]}}},
        "confidence": 0.9375,
        "empty": {},
    }
    text = "line one\nline two — with «unicode» 🐋 and 'quotes' \"too\""
    rec = ChunkRecord(
        id="doc-7", document_id="doc", chunk_index=7, text=text, source="s3://b/k.png",
        page=3, metadata=metadata, vector=np.array([0, 0, 1, 0], np.float32),
    )  # fmt: skip
    bare = ChunkRecord(
        id="doc-8", document_id="doc", chunk_index=8, text="no page", source="s3://b/k.png",
        vector=np.array([0, 0, 0.9, 0.1], np.float32),
    )  # fmt: skip
    store.upsert("c", [rec, bare])
    hit = store.query("c", np.array([0, 0, 1, 0], np.float32), k=1)[0]
    assert (hit.id, hit.document_id, hit.chunk_index, hit.page) == ("doc-7", "doc", 7, 3)
    assert (hit.text, hit.source, hit.collection) == (text, "s3://b/k.png", "c")
    assert hit.metadata == metadata
    shown = hit.as_dict()
    assert (shown["start_s"], shown["end_s"]) == (12.5, 47.25)
    assert shown["box"] == {"x": 10, "y": 20, "width": 300, "height": 41}
    exported = {r.id: r for r in store.iter_chunks("c")}
    assert exported["doc-7"].metadata == metadata and exported["doc-7"].page == 3
    assert exported["doc-7"].text == text
    assert exported["doc-8"].page is None and exported["doc-8"].metadata == {}


def test_collection_bound_to_model_and_dim(store: VectorStore) -> None:
    store.ensure_collection("c", dim=4, model_id="m")  # same: fine
    with pytest.raises(ModelMismatch):
        store.ensure_collection("c", dim=8, model_id="m")
    with pytest.raises(ModelMismatch):
        store.ensure_collection("c", dim=4, model_id="other")
    with pytest.raises(ModelMismatch):
        store.query("c", np.ones(8, dtype=np.float32), k=1)
    info = store.collection("c")
    assert info is not None and (info.dim, info.model_id, info.count) == (4, "m", 0)
    assert store.collection("missing") is None
    assert store.query("missing", np.ones(4, dtype=np.float32), k=1) == []
    assert store.count("missing") == 0
    with pytest.raises(ConveyorError, match="does not exist"):
        store.upsert("missing", [_rec("a", 0, [1, 0, 0, 0])])


def test_collections_are_separate(store: VectorStore) -> None:
    # the names conveyor makes for OCR units, and a one-letter name Chroma would refuse
    for name in ("d", "docs_lines", "docs_words", "v1.2-x"):
        store.ensure_collection(name, dim=4, model_id="m")
    store.ensure_collection("wide", dim=6, model_id="m2")
    # chunk ids are unique across collections (units derive theirs from "<doc>/lines")
    store.upsert("c", [_rec("a", 0, [1, 0, 0, 0])])
    store.upsert("d", [_rec("a", 1, [1, 0, 0, 0]), _rec("z", 0, [1, 0, 0, 0])])
    store.upsert("docs_lines", [_rec("a", 2, [0, 1, 0, 0])])
    assert [h.id for h in store.query("c", np.array([1, 0, 0, 0], np.float32), k=5)] == ["a-0"]
    hits = store.query("docs_lines", np.array([1, 0, 0, 0], np.float32), k=5)
    assert [(h.id, h.collection) for h in hits] == [("a-2", "docs_lines")]
    assert store.delete("d", document_id="a") == 1
    assert store.count("c") == 1 and store.count("d") == 1
    infos = {i.name: i for i in store.collections()}
    assert list(infos) == sorted(["c", "d", "docs_lines", "docs_words", "v1.2-x", "wide"])
    assert (infos["c"].count, infos["d"].count, infos["docs_words"].count) == (1, 1, 0)
    assert (infos["wide"].dim, infos["wide"].model_id) == (6, "m2")


def test_a_dropped_collection_is_gone_and_the_others_stay(store: VectorStore) -> None:
    # a retired generation ("docs" after "docs__g1" replaced it) and its unit collection
    before = {i.name for i in store.collections()}
    for n, name in enumerate(("docs", "docs_lines", "docs__g1")):
        store.ensure_collection(name, dim=4, model_id="m")
        store.upsert(name, [_rec(f"a{n}", 0, [1, 0, 0, 0]), _rec(f"b{n}", 0, [0, 1, 0, 0])])
    assert store.drop_collection("docs") is True
    assert store.drop_collection("docs") is False
    assert store.drop_collection("never") is False
    assert store.collection("docs") is None
    assert store.query("docs", np.array([1, 0, 0, 0], np.float32), k=5) == []
    assert {i.name for i in store.collections()} - before == {"docs__g1", "docs_lines"}
    assert store.count("docs__g1") == 2 and store.count("docs_lines") == 2
    # the name can be made again, for another model, and starts empty
    store.ensure_collection("docs", dim=6, model_id="m2")
    info = store.collection("docs")
    assert info is not None and (info.dim, info.model_id, info.count) == (6, "m2", 0)


def test_thousand_vectors_nearest_neighbour_matches_brute_force(store: VectorStore) -> None:
    rng = np.random.default_rng(7)
    dim, n = 32, 1200
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store.ensure_collection("big", dim=dim, model_id="m")
    store.upsert(
        "big",
        [
            ChunkRecord(
                id=f"p{i}",
                document_id=f"doc{i % 37}",
                chunk_index=i,
                text=f"t{i}",
                source=f"file:///doc{i % 37}",
                vector=vectors[i],
            )
            for i in range(n)
        ],
    )
    assert store.count("big") == n
    exported = [(r.document_id, r.chunk_index) for r in store.iter_chunks("big", vectors=False)]
    assert exported == sorted((f"doc{i % 37}", i) for i in range(n))  # pages of a large export
    queries = rng.standard_normal((20, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    recall = []
    for q in queries:
        scores = vectors @ q
        truth = np.argsort(-scores)[:10]
        hits = store.query("big", q, k=10)
        assert len(hits) == 10
        assert hits[0].id == f"p{truth[0]}"
        assert hits[0].score == pytest.approx(float(scores[truth[0]]), abs=1e-4)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        recall.append(len({h.id for h in hits} & {f"p{i}" for i in truth}) / 10)
        mine = [i for i in range(n) if i % 37 == 5]
        best = mine[int(np.argmax(scores[mine]))]
        filtered = store.query("big", q, k=3, where={"document_id": "doc5"})
        assert filtered[0].id == f"p{best}" and {h.document_id for h in filtered} == {"doc5"}
    assert np.mean(recall) >= 0.95


@pytest.fixture
def filtered(store: VectorStore) -> VectorStore:
    store.ensure_collection("f", dim=search_filters.DIM, model_id="m")
    store.upsert("f", search_filters.records())
    return store


@pytest.mark.parametrize("case", search_filters.CASES, ids=search_filters.case_id)
def test_filters_find_exactly_what_matches(
    filtered: VectorStore, case: tuple[Filter, set[str]]
) -> None:
    where, expected = case
    hits = filtered.query("f", search_filters.QUERY, k=50, where=where)
    assert {h.id for h in hits} == expected
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    if len(expected) > 1:  # applied inside the store: k smaller than the matches still fills
        assert len(filtered.query("f", search_filters.QUERY, k=2, where=where)) == 2
