"""The whole pipeline with its queue and catalog on a real PostgreSQL server,
the real model, and sqlite-vec in the home for the vectors."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest
from support import buried, write_corpus

from conveyor.app import Conveyor
from conveyor.catalog.postgres import PostgresCatalog
from conveyor.queue.postgres import PostgresQueue
from conveyor.settings import Settings
from conveyor.testing import make_pdf, prose

TOPICS = {
    "lighthouse.txt": "The lighthouse keeper trimmed the lamp wick before the storm reached "
    "the rocky coast.",
    "bees.md": "# Hives\n\nHoney bees dance to tell the hive where the clover fields bloom.",
    "trains.html": "<html><body><p>The night train to Vienna crosses the Alps through a long "
    "tunnel.</p></body></html>",
    "comets.txt": "A comet's icy nucleus grows a glowing tail as it swings close to the sun.",
}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = write_corpus(
        tmp_path / "docs",
        {name: buried(i, text, 300, gap=7) for i, (name, text) in enumerate(TOPICS.items())},
    )
    make_pdf(
        str(root / "volcano.pdf"),
        [prose(5, 150), "Basalt lava poured from the volcano's summit crater all night."],
        title="Volcano",
    )
    return root


def test_ingest_search_and_status_on_postgres(
    real_embedder, home: Path, corpus: Path, postgres_url: str
) -> None:
    settings = Settings(
        home=home,
        queue_url=postgres_url,
        catalog_url=postgres_url.replace("postgresql://", "postgres://", 1),
        concurrency=2,
    )
    with Conveyor(settings, embedder=real_embedder) as cv:
        assert isinstance(cv.components.queue, PostgresQueue)
        assert isinstance(cv.components.catalog, PostgresCatalog)
        summary = cv.ingest([corpus])
        assert (summary.enqueued, summary.done, summary.failed) == (5, 5, 0), summary.failures
        assert summary.chunks >= 5

        cases = {
            "keeper of the lighthouse lamp": "lighthouse.txt",
            "bees dancing about flowers": "bees.md",
            "overnight train through the Alps": "trains.html",
            "tail of a comet near the sun": "comets.txt",
            "lava from a volcano crater": "volcano.pdf",
        }
        for (query, expected), hits in zip(
            cases.items(), cv.search_many(list(cases), k=3), strict=True
        ):
            assert hits[0].source.endswith(expected), (query, [h.source for h in hits])

        status = cv.status()
        assert status["queue"] == {"visible": 0, "in_flight": 0, "delayed": 0, "dead": 0}
        assert status["documents"]["done"] == 5
        assert status["deltas"]["pending"] == 0 and status["deltas"]["applied"] >= 5
        assert status["compactions"] and status["compactions"][0]["state"] == "applied"
        # the chunks, and the PDF's pages beside them
        assert [c["name"] for c in status["collections"]] == ["default", "default_pages"]
        assert status["workers"] and not any(w["stale"] for w in status["workers"])
        assert {d["state"] for d in cv.documents()} == {"done"}

        again = cv.ingest([corpus])  # unchanged files: skipped, from the catalog's memory
        assert (again.done, again.skipped) == (0, 5)

    # the queue and catalog really live in PostgreSQL, not in the home's SQLite file
    with psycopg.connect(postgres_url) as conn:
        states = conn.execute(
            "SELECT state, count(*) FROM conveyor.documents GROUP BY state"
        ).fetchall()
        assert states == [("skipped", 5)]
        assert conn.execute("SELECT count(*) FROM conveyor.queue_jobs").fetchone() == (0,)
    with sqlite3.connect(settings.database_path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    db.close()
    assert "documents" not in tables and "queue_jobs" not in tables


def test_cli_reads_a_shared_catalog_from_a_host_without_a_home(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On another host, with every backend named by a URL, reading commands need no
    local home: `status` reports what the shared queue and catalog hold."""
    import json

    from click.testing import CliRunner

    from conveyor.cli import main

    queue = PostgresQueue(postgres_url)
    queue.send_many([{"source": "file:///a.txt"}, {"source": "file:///b.txt"}])
    queue.close()
    monkeypatch.setenv("CONVEYOR_QUEUE_URL", postgres_url)
    monkeypatch.setenv("CONVEYOR_CATALOG_URL", postgres_url)
    monkeypatch.setenv("CONVEYOR_VECTORS_URL", f"sqlite-vec://{tmp_path / 'shared' / 'v.db'}")
    home = tmp_path / "no-such-home"
    result = CliRunner().invoke(main, ["status", "--json", "--home", str(home)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["queue"]["visible"] == 2
    monkeypatch.delenv("CONVEYOR_VECTORS_URL")  # the vectors would be in the home
    result = CliRunner().invoke(main, ["status", "--json", "--home", str(home)])
    assert result.exit_code != 0 and "no conveyor data" in result.output
