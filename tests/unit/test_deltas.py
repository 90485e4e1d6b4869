"""The worker → compactor contract: typed, versioned, readable across an upgrade."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from conveyor import deltas
from conveyor.catalog import SqliteCatalog
from conveyor.documents import InvalidTransition, State, check


def _header(**kw: object) -> deltas.Header:
    base: dict[str, object] = {
        "source": "file:///a.txt",
        "run": "r",
        "job_id": "j",
        "read_at": 12.5,
        "content_hash": "sha256:x",
        "fingerprint": "f",
        "kind": "text",
        "mime": "text/plain",
        "size": 3,
        "model": "m",
        "backend": "fake",
        "dim": 2,
        "timings": {"embed": 0.25},
        "metadata": {"title": "A"},
        "delivery": deltas.Delivery("d1", {"c": 2, "c_lines": 5}, 2),
        "part": 1,
    }
    return deltas.Header(**{**base, **kw})  # type: ignore[arg-type]


def test_a_header_survives_its_json() -> None:
    header = _header()
    data = json.loads(json.dumps(header.to_json()))
    assert data["format"] == deltas.FORMAT
    back = deltas.Header.from_json(data)
    assert back == header
    assert back.delivery.parts == 2 and back.delivery.embeddings == 7


def test_a_header_from_before_formats_is_read() -> None:
    """Deltas left pending by an older conveyor still merge after an upgrade."""
    old = {
        "source": "file:///a.txt",
        "run": "r",
        "read_at": 3.0,
        "content_hash": "sha256:x",
        "fingerprint": "f",
        "model": "m",
        "dim": 2,
        "delivery": "abc",
        "part": 1,
        "parts": 2,
        "main_chunks": 4,
        "embeddings_total": 9,
        "collections": {"c": 4, "c_words": 5},
    }
    header = deltas.Header.from_json(old)
    assert header.delivery == deltas.Delivery("abc", {"c": 4, "c_words": 5}, 4)
    assert (header.part, header.kind, header.backend, dict(header.timings)) == (1, "", None, {})


def test_a_newer_format_is_refused_with_what_to_do() -> None:
    with pytest.raises(deltas.UnknownFormat, match="upgrade the compactor"):
        deltas.Header.from_json({**_header().to_json(), "format": deltas.FORMAT + 1})


def test_vectors_that_do_not_fit_the_chunks_are_an_error(tmp_path: Path) -> None:
    catalog = SqliteCatalog(tmp_path / "c.db")
    rows = [deltas.Chunk("x", 0, "one"), deltas.Chunk("y", 1, "two")]
    header = _header(delivery=deltas.Delivery("d", {"c": 2}, 2), part=0)
    with pytest.raises(ValueError, match="2 chunks but 1 vectors"):
        deltas.write(catalog, "c", "doc", header, rows, np.zeros((1, 2), np.float32))
    deltas.write(catalog, "c", "doc", header, rows, np.eye(2, dtype=np.float32))
    [delta] = deltas.pending(catalog, "c")
    assert delta.header == header and delta.chunks == tuple(rows)
    assert delta.matrix().tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_an_older_catalog_file_gets_the_delta_columns(tmp_path: Path) -> None:
    """A SQLite file from before read_at/delivery/part were columns: they are added and
    filled from the headers, so a delivery in flight completes after the upgrade."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE deltas (id INTEGER PRIMARY KEY AUTOINCREMENT, collection TEXT NOT NULL,"
        " document_id TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending', header TEXT NOT NULL,"
        " chunks TEXT NOT NULL, vectors BLOB NOT NULL, created_at REAL NOT NULL,"
        " applied_at REAL, error TEXT)"
    )
    for part in (0, 1):
        header = {"delivery": "v1", "part": part, "parts": 2, "read_at": 7.0 + part}
        conn.execute(
            "INSERT INTO deltas (collection, document_id, header, chunks, vectors, created_at)"
            " VALUES ('c', 'd', ?, '[]', x'', 1.0)",
            (json.dumps(header),),
        )
    conn.commit()
    conn.close()
    catalog = SqliteCatalog(path)
    catalog.enqueued([("d", "c", "file:///d")], "r")
    ids = [d["id"] for d in catalog.pending_deltas("c")]
    assert catalog.complete_part(ids[0], "d", "v1", 2, {"state": "done"}) is False
    assert catalog.complete_part(ids[1], "d", "v1", 2, {"state": "done"}) is True
    assert catalog.newest_applied_read("d", "c") == 8.0


def test_the_state_machine_refuses_what_cannot_happen() -> None:
    check(None, State.QUEUED)
    check(State.DONE, State.QUEUED)
    check(State.RUNNING, State.DONE)
    with pytest.raises(InvalidTransition):
        check(None, State.DONE)
    with pytest.raises(InvalidTransition):
        check(State.QUEUED, State.DONE)  # only the compactor, after running
    with pytest.raises(InvalidTransition):
        check(State.SKIPPED, State.FAILED)
