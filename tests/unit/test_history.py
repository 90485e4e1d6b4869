"""Document histories on the default catalog: an older SQLite file gains them on open,
and a run's moves through the pipeline are all there (unit tier: fakes, a local file)."""

from __future__ import annotations

from pathlib import Path

from conveyor._sqlite import connect
from conveyor.catalog import SqliteCatalog
from conveyor.documents import Documents
from conveyor.history import describe, entries, versions


def test_an_older_catalog_file_gets_the_events_table(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    catalog = SqliteCatalog(path)
    catalog.enqueued([("d", "c", "file:///d")], "r")
    catalog.close()
    conn = connect(path, vec=False)  # as a conveyor from before histories left it
    conn.execute("DROP TABLE document_events")
    conn.close()

    catalog = SqliteCatalog(path)
    assert catalog.get("d")["state"] == "queued"  # type: ignore[index]
    Documents(catalog).started("d", "queued", attempts=1)
    assert [(e["from_state"], e["to_state"]) for e in catalog.events("d")] == [
        ("queued", "running")
    ]
    catalog.close()


def test_versions_keep_how_each_run_ended() -> None:
    def event(n: int, run: str | None, target: str, **kw: object) -> dict[str, object]:
        return {"id": n, "run": run, "to_state": target, "at": float(n), **kw}

    events = [
        event(1, "r1", "queued"),
        event(2, "r1", "failed", reason="transient: timeout"),
        event(3, "r2", "done", content_hash="a", chunks=2),
        event(4, "r1", "done", content_hash="b", chunks=3),  # r1 redriven after r2
        event(5, None, "failed", reason="permanent: bad"),
    ]
    found = versions(events)
    assert [(v["version"], v["run"], v["outcome"]) for v in found] == [
        (1, "r2", "done"),
        (2, "r1", "done"),
        (3, None, "failed"),
    ]
    assert found[2]["reason"] == "permanent: bad" and found[0]["reason"] is None
    assert describe(
        {"from_state": None, "to_state": "queued", "reason": "submitted", "run": "x"}
    ) == ("submitted: queued: run x")


def test_entries_say_first_submitted_each_move_and_now() -> None:
    doc = {"state": "running", "stage": "embed", "created_at": 1.0, "updated_at": 9.0}
    moves = [
        {
            "id": 1,
            "at": 1.0,
            "from_state": None,
            "to_state": "queued",
            "reason": "submitted",
            "run": "r1",
            "attempt": 0,
        },
        {
            "id": 2,
            "at": 2.0,
            "from_state": "queued",
            "to_state": "running",
            "reason": "a worker took it",
            "run": "r1",
            "attempt": 1,
        },
    ]
    said = [e["what"] for e in entries(doc, moves)]
    assert said == [
        "first submitted, run r1",
        "now running (from queued, stage embed): a worker took it",
    ]
    older = entries({**doc, "state": "done", "stage": None, "attempts": 1}, [])
    assert [e["what"] for e in older] == ["first submitted", "now done after 1 attempt"]
