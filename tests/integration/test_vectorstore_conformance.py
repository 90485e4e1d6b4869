"""The VectorStore contract, run against every backend (sqlite-vec for now)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conveyor.exceptions import ModelMismatch
from conveyor.vectorstore import ChunkRecord, VectorStore
from conveyor.vectorstore.sqlite_vec import SqliteVecStore


@pytest.fixture(params=["sqlite_vec"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> VectorStore:
    s = SqliteVecStore(tmp_path / "v.db")
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
    store.replace_document("c", "a", [_rec("a", i, [1, i, 0, 0]) for i in range(2)])
    assert store.count("c", document_id="a") == 2
    assert store.count("c") == 3
    assert store.delete("c", document_id="a") == 2
    assert store.count("c") == 1


def test_filter_and_export(store: VectorStore) -> None:
    store.upsert("c", [_rec("a", 0, [1, 0, 0, 0]), _rec("b", 0, [1, 0.01, 0, 0])])
    hits = store.query(
        "c", np.array([1, 0, 0, 0], dtype=np.float32), k=5, where={"document_id": "b"}
    )
    assert [h.document_id for h in hits] == ["b"]
    exported = list(store.iter_chunks("c"))
    assert [r.id for r in exported] == ["a-0", "b-0"]
    assert exported[0].vector is not None and exported[0].vector.shape == (4,)


def test_collection_bound_to_model_and_dim(store: VectorStore) -> None:
    store.ensure_collection("c", dim=4, model_id="m")  # same: fine
    with pytest.raises(ModelMismatch):
        store.ensure_collection("c", dim=8, model_id="m")
    with pytest.raises(ModelMismatch):
        store.ensure_collection("c", dim=4, model_id="other")
    with pytest.raises(ModelMismatch):
        store.query("c", np.ones(8, dtype=np.float32), k=1)
    info = store.collection("c")
    assert info is not None and (info.dim, info.model_id) == (4, "m")
    assert store.collection("missing") is None
    assert store.query("missing", np.ones(4, dtype=np.float32), k=1) == []


def test_collections_are_separate(store: VectorStore) -> None:
    store.ensure_collection("d", dim=4, model_id="m")
    store.upsert("c", [_rec("a", 0, [1, 0, 0, 0])])
    store.upsert("d", [_rec("z", 0, [1, 0, 0, 0])])
    assert [h.id for h in store.query("d", np.array([1, 0, 0, 0], np.float32), k=5)] == ["z-0"]
    assert sorted(i.name for i in store.collections()) == ["c", "d"]
