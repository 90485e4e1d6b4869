"""Each server-grade vector store behind the whole pipeline, and their URLs.

End to end per backend (Chroma embedded and server, Qdrant local mode,
pgvector): the real model ingests generated documents, a search finds the
right one, a forced re-ingest overwrites instead of duplicating, and
``conveyor status`` / ``conveyor export`` read the same store. Qdrant server
has no binary here (it is not on PyPI): its URL parsing and the error for an
unreachable server are tested, its protocol is the local mode's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from support import QUERIES, TOPICS, free_port, topic_corpus

from conveyor.app import Conveyor
from conveyor.cli import main
from conveyor.exceptions import ConfigurationError
from conveyor.settings import Settings
from conveyor.vectorstore import open_vectorstore
from conveyor.vectorstore.chroma import chroma_name
from conveyor.vectorstore.pgvector import split_url
from conveyor.vectorstore.qdrant import server_args


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return topic_corpus(tmp_path / "docs", filler=400)


@pytest.fixture(params=["chroma", "chroma_server", "qdrant", "pgvector"])
def vectors_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "chroma":
        return f"chroma://{tmp_path / 'chroma'}"
    if request.param == "chroma_server":
        return str(request.getfixturevalue("chroma_url"))
    if request.param == "qdrant":
        return f"qdrant://{tmp_path / 'qdrant'}"
    return str(request.getfixturevalue("pgvector_url"))


def test_pipeline_end_to_end(
    real_embedder, home: Path, corpus: Path, vectors_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(home=home, vectors_url=vectors_url, isolate_extraction=False)
    with Conveyor(settings, embedder=real_embedder) as cv:
        summary = cv.ingest([corpus])
        assert (summary.done, summary.failed) == (3, 0)
        chunks = cv.components.vectors.count("default")
        assert chunks == summary.chunks > 3
        results = cv.search_many(list(QUERIES), k=3)
        for (query, expected), hits in zip(QUERIES.items(), results, strict=True):
            assert hits[0].source.endswith(expected), (query, [h.source for h in hits])
            assert hits[0].score > hits[-1].score
        again = cv.ingest([corpus], force=True)  # same chunk ids: overwritten in place
        assert again.done == 3 and cv.components.vectors.count("default") == chunks

    monkeypatch.setenv("CONVEYOR_VECTORS_URL", vectors_url)
    runner = CliRunner()
    status = runner.invoke(main, ["status", "--json", "--home", str(home)])
    assert status.exit_code == 0, status.output
    (collection,) = json.loads(status.output)["collections"]
    assert (collection["name"], collection["chunks"], collection["dim"]) == ("default", chunks, 384)
    exported = runner.invoke(main, ["export", "--home", str(home)])
    assert exported.exit_code == 0, exported.output
    rows = [json.loads(line) for line in exported.output.splitlines()]
    assert len(rows) == chunks
    keys = [(r["document_id"], r["chunk_index"]) for r in rows]
    assert keys == sorted(keys)
    assert all(len(r["vector"]) == 384 for r in rows)
    assert {r["source"].rsplit("/", 1)[-1] for r in rows} == set(TOPICS)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("chroma+http://admin:hunter2@127.0.0.1:{port}", "cannot reach the Chroma server"),
        ("qdrant+https://127.0.0.1:{port}?api_key=hunter2", "cannot open the Qdrant store"),
        ("pgvector+postgresql://cv:hunter2@127.0.0.1:{port}/db", "cannot open the pgvector"),
    ],
)
def test_unreachable_server_fails_at_once_naming_the_url(url: str, says: str) -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(ConfigurationError, match=says) as caught:
        open_vectorstore(url.format(port=port))
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and "refused" in message
    assert "hunter2" not in message and "***" in message


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("milvus://host:19530", "unsupported vector store URL"),
        ("chroma+http://127.0.0.1:8000?colection=x", "unknown parameter"),
        ("chroma://", "no folder"),
        ("qdrant://", "no folder"),
        ("qdrant+http://host:6333?apikey=secret", "unknown parameter"),
        ("pgvector+postgresql://u:secret@h/db?schema=Bad-Name", "lower-case SQL identifier"),
    ],
)
def test_bad_urls_are_configuration_errors(url: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says) as caught:
        open_vectorstore(url)
    assert "secret" not in str(caught.value)


def test_qdrant_server_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QDRANT_API_KEY", raising=False)
    assert server_args("qdrant+http://qdrant:6333") == {
        "url": "http://qdrant:6333", "port": 6333, "https": False, "api_key": None,
    }  # fmt: skip
    args = server_args("qdrant+https://xyz.cloud.qdrant.io?api_key=k1")
    assert (args["url"], args["https"], args["api_key"]) == (
        "https://xyz.cloud.qdrant.io:443",
        True,
        "k1",
    )
    monkeypatch.setenv("QDRANT_API_KEY", "k2")
    assert server_args("qdrant+http://10.0.0.5")["api_key"] == "k2"
    assert server_args("qdrant+http://[::1]:7000")["url"] == "http://[::1]:7000"


def test_qdrant_local_mode_is_one_process_at_a_time(tmp_path: Path) -> None:
    url = f"qdrant://{tmp_path / 'q'}"
    first = open_vectorstore(url)
    try:
        first.ensure_collection("c", dim=4, model_id="m")
        with pytest.raises(ConfigurationError, match="one process at a time"):
            open_vectorstore(url)
    finally:
        first.close()
    second = open_vectorstore(url)  # free again once closed
    assert [c.name for c in second.collections()] == ["c"]
    second.close()


def test_pgvector_urls() -> None:
    libpq, schema = split_url("pgvector+postgresql://u:p@db.example.com:5433/app?sslmode=require")
    assert schema == "conveyor"
    assert libpq.startswith("postgresql://u:p@db.example.com:5433/app?sslmode=require&")
    assert "connect_timeout=10" in libpq
    libpq, schema = split_url("pgvector+postgres://u@h/app?schema=vectors&connect_timeout=3")
    assert schema == "vectors" and "schema=" not in libpq and "connect_timeout=3" in libpq


def test_chroma_names_stay_within_chromas_rules() -> None:
    assert chroma_name("default") == "default"
    assert chroma_name("docs_lines") == "docs_lines"
    for odd in ("c", "ab", "notes-", "a..b", "10.0.0.1"):
        name = chroma_name(odd)
        assert name.startswith("cv-") and len(name) == 27
    assert chroma_name("c") != chroma_name("d")


def test_pgvector_schema_keeps_stores_apart(pgvector_url: str) -> None:
    one = open_vectorstore(pgvector_url)
    two = open_vectorstore(pgvector_url + "&schema=other")
    try:
        one.ensure_collection("c", dim=4, model_id="m")
        two.ensure_collection("c", dim=8, model_id="n")  # another schema: no mismatch
        assert [(c.name, c.dim) for c in one.collections()] == [("c", 4)]
        assert [(c.name, c.dim) for c in two.collections()] == [("c", 8)]
    finally:
        one.close()
        two.close()
