"""The fast paths of the embedded default's search, against their exact forms, on
real sqlite-vec and real FTS5: sqlite-vec's bit scan + exact re-rank against its
exact scan (filters included, and a collection written before the coarse table
existed), and the lexical index leaving out words in over half the chunks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conveyor._sqlite import connect, table_exists
from conveyor.filters import Filter
from conveyor.lexical.sqlite import FtsIndex
from conveyor.vectorstore import ChunkRecord
from conveyor.vectorstore.sqlite_vec import COARSE_MIN, SqliteVecStore

DIM, N = 384, 3000


def _records(rng: np.random.Generator) -> list[ChunkRecord]:
    vectors = rng.standard_normal((N, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [
        ChunkRecord(
            id=f"c{i}",
            document_id=f"doc{i % 50}",
            chunk_index=i,
            text=f"chunk {i}",
            source=f"file:///data/{'a' if i % 3 else 'b'}/doc{i % 50}.txt",
            page=i % 20,
            metadata={"kind": "pdf" if i % 2 else "text", "lang": "en" if i % 5 else "de"},
            vector=vectors[i],
        )
        for i in range(N)
    ]


@pytest.fixture
def store(tmp_path: Path) -> SqliteVecStore:
    s = SqliteVecStore(tmp_path / "v.db")
    s.ensure_collection("c", dim=DIM, model_id="m")
    s.upsert("c", _records(np.random.default_rng(11)))
    return s


def _near(rng: np.random.Generator, store: SqliteVecStore) -> list[np.ndarray]:
    """Queries near stored vectors (so each has true near neighbours) and random ones."""
    stored = [r.vector for r in store.iter_chunks("c") if r.vector is not None]
    picks = [stored[int(i)] for i in rng.integers(0, len(stored), 10)]
    near = [p + rng.normal(0, 0.03, DIM).astype(np.float32) for p in picks]
    return near + [rng.standard_normal(DIM).astype(np.float32) for _ in range(10)]


def test_coarse_table_is_kept_with_the_vectors(store: SqliteVecStore) -> None:
    conn = connect(store.path)
    count = lambda: conn.execute("SELECT count(*) FROM vs_coarse_1").fetchone()[0]  # noqa: E731
    assert count() == N
    store.replace_document("c", "doc3", [])
    store.delete("c", document_id="doc4")
    assert count() == store.count("c") == N - 2 * N // 50
    store.drop_collection("c")
    assert not table_exists(conn, "vs_coarse_1")


def test_coarse_path_finds_what_the_exact_scan_finds(store: SqliteVecStore) -> None:
    rng = np.random.default_rng(5)
    same_top = overlap = 0
    for q in _near(rng, store)[:10]:
        exact = store.query("c", q, 10, exact=True)
        fast = store.query("c", q, 10)
        assert [h.score for h in fast] == sorted((h.score for h in fast), reverse=True)
        same_top += fast[0].id == exact[0].id
        overlap += len({h.id for h in fast} & {h.id for h in exact})
        for h in fast:  # the same exact cosine, not the bits' estimate
            twin = next((e for e in exact if e.id == h.id), None)
            assert twin is None or twin.score == pytest.approx(h.score, abs=1e-5)
    assert same_top == 10
    assert overlap >= 0.85 * 100  # measured 0.90: the rest of a top 10 is ~0.15 apart


def test_coarse_path_is_exact_when_every_chunk_is_a_candidate(tmp_path: Path) -> None:
    s = SqliteVecStore(tmp_path / "v.db")
    s.ensure_collection("c", dim=DIM, model_id="m")
    s.upsert("c", _records(np.random.default_rng(2))[:COARSE_MIN])
    for q in _near(np.random.default_rng(4), s):
        exact = s.query("c", q, 50, exact=True)
        fast = s.query("c", q, 50)
        assert [h.id for h in fast] == [h.id for h in exact]
        assert [h.score for h in fast] == pytest.approx([h.score for h in exact], abs=1e-5)


def test_coarse_path_on_queries_with_no_near_neighbours(store: SqliteVecStore) -> None:
    """Random queries, every chunk about as far: the bits rank worst here (what is lost
    where nothing stands out); the best chunk is still found."""
    rng = np.random.default_rng(5)
    overlap = 0
    for q in _near(rng, store)[10:]:
        exact = store.query("c", q, 10, exact=True)
        fast = store.query("c", q, 10)
        overlap += len({h.id for h in fast} & {h.id for h in exact})
        assert fast[0].id == exact[0].id
    assert overlap >= 0.8 * 100


@pytest.mark.parametrize(
    "where",
    [
        Filter(source_prefix="file:///data/b"),
        Filter(kind="pdf", pages=(3, 5)),
        Filter(where=(("lang", "de"),)),
        Filter(document_id="doc7"),
    ],
)
def test_filters_give_the_exact_answer_on_the_coarse_path(
    store: SqliteVecStore, where: Filter
) -> None:
    rng = np.random.default_rng(9)
    for q in _near(rng, store)[:6]:
        exact = store.query("c", q, 10, where, exact=True)
        fast = store.query("c", q, 10, where)
        assert exact, where
        assert [h.id for h in fast] == [h.id for h in exact]
    matching = [h for h in store.query("c", q, N, where, exact=True)]
    if len(matching) <= COARSE_MIN:  # every match is a candidate: the answer is exact
        assert [h.id for h in store.query("c", q, 50, where)] == [h.id for h in matching[:50]]


def test_a_collection_from_before_the_coarse_table_still_searches(
    store: SqliteVecStore,
) -> None:
    conn = connect(store.path)
    conn.execute("DROP TABLE vs_coarse_1")  # as an older conveyor wrote it
    old = SqliteVecStore(store.path)
    q = np.random.default_rng(1).standard_normal(DIM).astype(np.float32)
    exact = store.query("c", q, 10, exact=True)
    assert [h.id for h in old.query("c", q, 10)] == [h.id for h in exact]
    old.upsert("c", [])  # writing does not need it either
    old.ensure_collection("c", dim=DIM, model_id="m")  # the compactor's next merge builds it
    assert conn.execute("SELECT count(*) FROM vs_coarse_1").fetchone()[0] == N
    assert old.query("c", q, 10)[0].id == exact[0].id


def test_low_dimensional_vectors_are_searched_exactly(tmp_path: Path) -> None:
    s = SqliteVecStore(tmp_path / "v.db")
    s.ensure_collection("small", dim=32, model_id="m")
    assert not table_exists(connect(s.path), "vs_coarse_1")


def _texts(n: int) -> list[ChunkRecord]:
    rng = np.random.default_rng(3)
    words = [f"w{i}" for i in range(40)]
    out = []
    for i in range(n):
        body = ["the", "common", "usual"] + [str(w) for w in rng.choice(words, 8)]
        if i % 17 == 0:
            body += ["zircon"] * int(1 + i % 3)
        out.append(
            ChunkRecord(
                id=f"t{i:04d}",
                document_id=f"d{i // 10}",
                chunk_index=i % 10,
                text=" ".join(body),
                source=f"file:///t/d{i // 10}.txt",
                metadata={"kind": "text"},
            )
        )
    return out


def test_lexical_leaves_out_words_in_most_chunks(tmp_path: Path) -> None:
    index = FtsIndex(tmp_path / "catalog.db")
    records = _texts(400)
    for doc in sorted({r.document_id for r in records}):
        index.replace_document("c", doc, [r for r in records if r.document_id == doc])
    alone = index.search("c", "zircon", 50)
    mixed = index.search("c", "common zircon usual commons", 50)
    assert len(alone) == len([r for r in records if "zircon" in r.text])
    # "common" and "usual" are in every chunk (IDF 1e-6): the same chunks, the same order
    assert [h.id for h in mixed] == [h.id for h in alone]
    assert [h.score for h in mixed] == pytest.approx([h.score for h in alone], abs=1e-5)
    # a query of common words only still finds them; syntax characters stay text
    assert len(index.search("c", "common usual", 5)) == 5
    assert index.search("c", 'common "zircon* NEAR -usual:', 50)[0].id == alone[0].id
    # with a filter (the joined query) the same answer
    where = Filter(source_prefix="file:///t/d1.txt")
    filtered = index.search("c", "common zircon", 50, where)
    assert [h.id for h in filtered] == [h.id for h in alone if h.source == "file:///t/d1.txt"]
    # written after a search (the counts it remembered), then searched again: as a
    # fresh index answers; "zircon" is now in most chunks and left out beside "w3"
    for doc in sorted({r.document_id for r in records}):
        index.replace_document(
            "c",
            doc,
            [replace(r, text=r.text + " zircon") for r in records if r.document_id == doc],
        )
    again = index.search("c", "zircon w3", 50)
    fresh = FtsIndex(tmp_path / "catalog.db").search("c", "zircon w3", 50)
    assert [h.id for h in again] == [h.id for h in fresh]
    assert [h.id for h in again] == [h.id for h in index.search("c", "w3", 50)]


def test_no_candidates_means_the_exact_scan(store: SqliteVecStore) -> None:
    from conveyor.components import Components
    from conveyor.settings import Settings

    exact = SqliteVecStore(store.path, candidates=0)
    narrow = SqliteVecStore(store.path, candidates=1)  # 8 × k: far too few to re-rank well
    rng = np.random.default_rng(5)
    queries = [rng.standard_normal(DIM).astype(np.float32) for _ in range(8)]
    differs = 0
    for q in queries:
        want = [h.id for h in store.query("c", q, 10, exact=True)]
        assert [h.id for h in exact.query("c", q, 10)] == want
        differs += [h.id for h in narrow.query("c", q, 10)] != want
    assert differs  # the setting reaches the scan: too few candidates change answers
    settings = Settings(home=Path(store.path).parent / "home", search_candidates=0)
    vectors = Components(settings).vectors
    assert isinstance(vectors, SqliteVecStore) and vectors.candidates == 0
