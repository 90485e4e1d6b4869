"""Hybrid search over every vector backend: the lexical index lives in the catalog, so
a home whose vectors are in Chroma, Qdrant or pgvector searches the same way as the
embedded default, filters included."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.app import Conveyor
from conveyor.filters import Filter
from conveyor.settings import Settings
from conveyor.testing import FakeEmbedder


@pytest.fixture(params=["chroma", "qdrant", "pgvector"])
def vectors_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "chroma":
        return f"chroma://{tmp_path / 'chroma'}"
    if request.param == "qdrant":
        return f"qdrant://{tmp_path / 'qdrant'}"  # a few chunks: a disk folder is fast enough
    return str(request.getfixturevalue("pgvector_url"))


def test_hybrid_lexical_and_filters(vectors_url: str, home: Path, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "archive").mkdir(parents=True)
    for n in (123, 132, 321):
        (docs / f"note_{n}.txt").write_text(f"The code word for note {n} is secret{n}.")
    (docs / "archive" / "note_999.md").write_text("# Old\n\nThe code word for note 999 is gone.")
    settings = Settings(home=home, vectors_url=vectors_url)
    with Conveyor(settings, embedder=FakeEmbedder()) as cv:
        assert cv.ingest([docs]).done == 4
        query = "what is the code word for note 132?"
        [hit] = cv.search(query, k=1, mode="lexical")
        assert Path(hit.source).name == "note_132.txt"
        # fused with the fake model's ranking, where the notes tie: in the top two
        assert "note_132.txt" in [Path(h.source).name for h in cv.search(query, k=2)]
        archive = Filter(source_prefix=(docs / "archive").as_uri())
        for mode in ("hybrid", "dense", "lexical"):
            hits = cv.search("code word note", k=5, mode=mode, where=archive)
            assert [Path(h.source).name for h in hits] == ["note_999.md"], mode
            hits = cv.search("code word note", k=5, mode=mode, where=Filter(kind="markdown"))
            assert [Path(h.source).name for h in hits] == ["note_999.md"], mode
        (docs / "note_321.txt").write_text("Nothing to see.")
        cv.ingest([docs / "note_321.txt"])
        assert cv.search("secret321", k=3, mode="lexical") == []
