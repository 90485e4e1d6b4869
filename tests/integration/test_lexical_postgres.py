"""The lexical index in a real PostgreSQL catalog (tsvector + GIN, BM25 computed in
SQL): the same filters as every other backend, BM25's ordering, and a home whose
catalog is PostgreSQL searching hybrid over sqlite-vec vectors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conformance import search_filters

from conveyor.app import Conveyor
from conveyor.catalog.postgres import PostgresCatalog
from conveyor.filters import Filter
from conveyor.lexical import open_lexical
from conveyor.lexical.postgres import TextSearchIndex
from conveyor.settings import Settings
from conveyor.testing import FakeEmbedder
from conveyor.vectorstore import ChunkRecord


@pytest.fixture
def index(postgres_url: str) -> Iterator[TextSearchIndex]:
    catalog = PostgresCatalog(postgres_url)
    found = open_lexical(catalog)
    assert isinstance(found, TextSearchIndex)
    by_doc: dict[str, list[ChunkRecord]] = {}
    for rec in search_filters.records():
        by_doc.setdefault(rec.document_id, []).append(rec)
    for doc, recs in by_doc.items():
        found.replace_document("f", doc, recs)
    yield found
    catalog.close()


@pytest.mark.parametrize("case", search_filters.CASES, ids=search_filters.case_id)
def test_filters(index: TextSearchIndex, case: tuple[Filter, set[str]]) -> None:
    where, expected = case
    assert {h.id for h in index.search("f", search_filters.WORD, 50, where)} == expected


def _rec(doc: str, text: str) -> ChunkRecord:
    return ChunkRecord(doc, doc, 0, text, f"file:///{doc}.txt")


def test_bm25_orders_by_frequency_rarity_and_length(postgres_url: str) -> None:
    catalog = PostgresCatalog(postgres_url)
    index = TextSearchIndex(catalog.pool)
    texts = {
        "once": "the walrus sleeps on the ice floe",
        "twice": "the walrus and another walrus sleep on the ice",
        "long": "the walrus " + " ".join(f"filler{i}" for i in range(60)),
        "rare": "a narwhal swims under the ice",
        "other": "penguins huddle in the cold wind",
    }
    for doc, text in texts.items():
        index.replace_document("c", doc, [_rec(doc, text)])
    assert index.indexed("c") == 5
    ranked = [h.id for h in index.search("c", "walrus", 10)]
    assert ranked == ["twice", "once", "long"]  # frequency first, then the shorter chunk
    # the rarer term weighs more: narwhal (1 chunk) beats ice (3 chunks)
    assert index.search("c", "ice narwhal", 2)[0].id == "rare"
    scores = [h.score for h in index.search("c", "walrus sleeping", 10)]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0  # stemmed: sleep(s)
    for query in ['"', "walrus:*", "!walrus", "walrus & (", "NEAR -", "'; DROP TABLE x; --"]:
        assert isinstance(index.search("c", query, 3), list), query
    assert [h.id for h in index.search("c", "walrus:* & !", 1)] == ["twice"]
    index.replace_document("c", "twice", [])
    assert index.indexed("c") == 4
    assert [h.id for h in index.search("c", "walrus", 10)] == ["once", "long"]
    assert index.rebuild("c", [_rec("x", "walrus alone")]) == 1
    assert [h.id for h in index.search("c", "walrus", 10)] == ["x"]
    catalog.close()


def test_hybrid_search_with_a_postgres_catalog(
    home: Path, tmp_path: Path, postgres_url: str
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for n in (123, 132, 321):
        (docs / f"note_{n}.txt").write_text(f"The code word for note {n} is secret{n}.")
    settings = Settings(home=home, queue_url=postgres_url, catalog_url=postgres_url)
    with Conveyor(settings, embedder=FakeEmbedder()) as cv:
        assert isinstance(cv.components.lexical, TextSearchIndex)
        assert cv.ingest([docs]).done == 3
        hits = cv.search("code word for note 132", k=1, mode="lexical")
        assert Path(hits[0].source).name == "note_132.txt"
        assert Path(cv.search("secret321", k=1)[0].source).name == "note_321.txt"
        (docs / "note_321.txt").write_text("Nothing secret any more.")
        cv.ingest([docs / "note_321.txt"])
        assert cv.search("secret321", k=3, mode="lexical") == []
        assert cv.components.lexical.indexed("default") == 3
