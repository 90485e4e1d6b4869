"""What the status page reads beyond ``/status``: a document's detail, its artifacts
streamed by name (and only its own), and the seconds per stage of the last documents.

One home, ingested once with the real model: two text files, one of them long enough
for several chunks, and an empty one that fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from support import wait_for

from conveyor.app import Conveyor
from conveyor.documents import State
from conveyor.server.api import create_api
from conveyor.settings import Settings
from conveyor.testing import prose

KEY = "page-key"
H = {"x-api-key": KEY}


@pytest.fixture(scope="module")
def conveyor(tmp_path_factory: pytest.TempPathFactory, real_embedder: Any) -> Iterator[Conveyor]:
    home = tmp_path_factory.mktemp("page-home")
    docs = home / "docs"
    docs.mkdir()
    (docs / "long.txt").write_text(prose(1, 900))
    (docs / "short.txt").write_text("Refunds are paid within thirty days of a return.\n")
    (docs / "empty.txt").write_text("")
    settings = Settings(home=home / "data", api_keys=KEY, isolate_extraction=False)
    with Conveyor(settings, embedder=real_embedder) as cv:
        summary = cv.ingest([docs])
        assert (summary.done, summary.failed) == (2, 1)
        yield cv


@pytest.fixture(scope="module")
def client(conveyor: Conveyor) -> Iterator[TestClient]:
    with TestClient(create_api(conveyor=conveyor)) as c:
        yield c


def by_name(client: TestClient, name: str) -> dict[str, Any]:
    docs = client.get("/documents", headers=H).json()
    return next(d for d in docs if d["name"] == name)


def test_detail_gathers_status_history_chunks_and_manifest(client: TestClient) -> None:
    doc = by_name(client, "long.txt")
    assert client.get(f"/documents/{doc['id']}/detail").status_code == 401
    detail = client.get(f"/documents/{doc['id']}/detail", headers=H, params={"chunks": 3}).json()
    assert detail["document"]["state"] == "done"
    assert detail["stored_chunks"] == doc["chunks"] > 3
    first = detail["first_chunks"]
    assert [c["index"] for c in first] == [0, 1, 2]  # the first ones, in order
    assert first[0]["text"].split()[0] == prose(1, 900).split()[0]
    assert detail["manifest"]["EmbeddingsGenerated"] == doc["chunks"]
    assert detail["manifest_key"].endswith(f"/results/{doc['id']}.json")
    assert set(detail["document"]["timings"]) >= {"fetch", "extract", "chunk", "embed", "merge"}
    events = [h["what"] for h in detail["history"]]
    assert events[0].startswith("first submitted") and events[-1].startswith("now done")
    assert [h["to_state"] for h in detail["history"]] == ["queued", "running", "done"]
    [version] = detail["versions"]
    assert (version["outcome"], version["chunks"]) == ("done", doc["chunks"])
    assert version["content_hash"] == detail["document"]["content_hash"]
    history = client.get(f"/documents/{doc['id']}/history", headers=H).json()
    assert history["versions"] == detail["versions"]
    assert [e["what"] for e in history["events"]][1] == "queued → running: a worker took it"
    assert client.get("/documents/nope/history", headers=H).status_code == 404
    assert detail["dead_letter"] is None and detail["artifacts"] == []
    missing = client.get("/documents/no-such-id/detail", headers=H)
    assert missing.status_code == 404 and "no-such-id" in missing.json()["error"]["message"]


def test_a_failed_document_names_its_dead_letter(client: TestClient) -> None:
    doc = by_name(client, "empty.txt")
    detail = client.get(f"/documents/{doc['id']}/detail", headers=H).json()
    assert detail["document"]["error"] == "file is empty"
    assert detail["document"]["error_kind"] == "permanent"
    letters = client.get("/dead-letters", headers=H).json()
    assert detail["dead_letter"] == next(d["job_id"] for d in letters if d["name"] == "empty.txt")
    last = detail["history"][-1]
    assert (last["from_state"], last["to_state"], last["attempt"]) == ("running", "failed", 1)
    assert last["what"] == "now failed (from running): permanent: file is empty"
    assert [v["outcome"] for v in detail["versions"]] == ["failed"]
    assert detail["stored_chunks"] == 0 and detail["first_chunks"] == []


def test_artifacts_stream_by_name_and_never_leave_their_folder(
    client: TestClient, conveyor: Conveyor
) -> None:
    doc = by_name(client, "short.txt")
    other = by_name(client, "long.txt")
    c = conveyor.components
    lines = b'{"line_id": 0, "text": "REFUNDS 30 DAYS"}\n' * 5000  # several stream pieces
    c.blobs.put(f"artifacts/{doc['id']}/lines.ndjson", lines)
    c.blobs.put(f"artifacts/{other['id']}/secret.txt", b"another document's")
    row = c.catalog.get(doc["id"])
    assert row is not None
    artifacts = {
        "lines.ndjson": f"artifacts/{doc['id']}/lines.ndjson",
        "theirs.txt": f"artifacts/{other['id']}/secret.txt",  # not under its own folder
        "up.txt": f"artifacts/{doc['id']}/../{other['id']}/secret.txt",
        "manifest.json": "ingestion_output/x/results/y.json",
    }
    c.catalog.update(doc["id"], metadata={**row["metadata"], "artifacts": artifacts})

    detail = client.get(f"/documents/{doc['id']}/detail", headers=H).json()
    assert [(a["name"], a["size"]) for a in detail["artifacts"]] == [("lines.ndjson", len(lines))]
    got = client.get(detail["artifacts"][0]["url"], headers=H)
    assert got.status_code == 200 and got.content == lines
    assert got.headers["content-type"] == "application/x-ndjson"
    assert got.headers["x-content-type-options"] == "nosniff"
    for name in ("theirs.txt", "up.txt", "manifest.json", "..%2F..%2Fcatalog.db", "nope"):
        refused = client.get(f"/documents/{doc['id']}/artifacts/{name}", headers=H)
        assert refused.status_code == 404, name
        assert refused.json()["error"]["type"] == "not_found"
    assert client.get(detail["artifacts"][0]["url"]).status_code == 401


def test_timings_say_where_the_time_went(client: TestClient) -> None:
    timings = client.get("/timings", headers=H, params={"limit": 10}).json()
    assert timings["stages"][:4] == ["fetch", "extract", "chunk", "embed"]
    assert timings["stages"][-1] == "merge"
    names = [d["name"] for d in timings["documents"]]
    assert sorted(names) == ["long.txt", "short.txt"]  # done ones only, oldest first
    finished = [d["finished_at"] for d in timings["documents"]]
    assert finished == sorted(finished)
    for d in timings["documents"]:
        assert d["total"] == pytest.approx(sum(d["timings"].values()), abs=1e-3)
    embed = sum(d["timings"]["embed"] for d in timings["documents"])
    assert timings["seconds"]["embed"] == pytest.approx(embed, abs=1e-3)
    assert len(client.get("/timings", headers=H, params={"limit": 1}).json()["documents"]) == 1


def test_status_lists_the_states_and_counts_skipped_per_minute(
    client: TestClient, conveyor: Conveyor
) -> None:
    overview = client.get("/status", headers=H).json()
    assert overview["states"] == [s.value for s in State]
    assert sum(p["failed"] for p in overview["throughput"]) >= 1
    again = conveyor.ingest([conveyor.settings.home.parent / "docs"])
    assert again.skipped == 2

    def skipped() -> int:
        points = client.get("/status", headers=H).json()["throughput"]
        return sum(p[State.SKIPPED.value] for p in points)

    wait_for(lambda: skipped() == 2, 15, "the chart to count the unchanged documents")
