"""What got in a new user's way in their first hour (issue 14), each pinned down.

The library and the CLI over a fake model: paths that name nothing, a single path,
a run's counts when jobs of an interrupted run are still queued, wording, times.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from support import ndjson, receipt_rows

from conveyor.app import Conveyor
from conveyor.cli import main
from conveyor.documents import State
from conveyor.exceptions import ConveyorError
from conveyor.settings import Settings
from conveyor.testing import FakeEmbedder


@pytest.fixture
def cv(home: Path):
    settings = Settings(home=home, chunk_size=60, chunk_overlap=10, retry_base_seconds=0.05)
    with Conveyor(settings, embedder=FakeEmbedder()) as c:
        yield c


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    for n in range(5):
        (root / f"note_{n}.txt").write_text(f"Note {n}: the code word is lantern-{n}.\n")
    return root


def test_good_paths_are_ingested_and_a_missing_one_is_a_failed_document(
    cv: Conveyor, docs: Path, tmp_path: Path
) -> None:
    summary = cv.ingest([docs / "note_0.txt", tmp_path / "nope.txt", docs / "note_1.txt"])
    assert (summary.enqueued, summary.done, summary.failed, summary.unfinished) == (3, 2, 1, 0)
    [failure] = summary.failures
    assert failure["error"] == f"file not found: {tmp_path / 'nope.txt'}"
    failed = cv.documents(state="failed")
    assert [d["source"] for d in failed] == [(tmp_path / "nope.txt").as_uri()]


def test_a_single_path_is_one_path_not_its_letters(cv: Conveyor, docs: Path) -> None:
    summary = cv.ingest(str(docs / "note_2.txt"))
    assert (summary.enqueued, summary.done) == (1, 1)
    assert cv.ingest(docs / "note_3.txt").done == 1


def test_an_empty_folder_and_a_glob_matching_nothing_are_reported(
    cv: Conveyor, docs: Path, tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    pattern = str(docs / "*.pdf")
    summary = cv.ingest([tmp_path / "empty", pattern, docs / "note_4.txt"])
    assert summary.empty == [str(tmp_path / "empty"), pattern]
    assert (summary.enqueued, summary.done) == (1, 1)


def test_a_run_counts_what_it_did_when_an_earlier_runs_jobs_are_still_queued(
    cv: Conveyor, docs: Path
) -> None:
    """An interrupted ingest leaves its jobs on the queue; ingesting the folder again
    sends a second job per file. Whichever of the two comes first embeds the file; the
    other finds it unchanged and must not turn the new run's 'done' into 'skipped'."""
    cv.enqueue([docs])  # the interrupted run: its jobs are still queued
    summary = cv.ingest([docs])
    assert (summary.done, summary.skipped, summary.failed) == (5, 0, 0)
    assert cv.components.catalog.counts()[State.DONE] == 5
    again = cv.ingest([docs])  # and a later run of unchanged files says so
    assert (again.done, again.skipped) == (0, 5)


def test_released_and_redriven_documents_carry_no_stale_reason(cv: Conveyor, docs: Path) -> None:
    queued = cv.enqueue([docs / "note_0.txt"])
    doc = queued.document_ids[0]
    cv._documents.failed(doc, "OCR needs Tesseract", "configuration")
    cv._documents.redriven(doc)
    assert cv.components.catalog.get(doc)["error"] is None  # type: ignore[index]


def _cli(home: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [*args, "--home", str(home)])
    return result.exit_code, result.stdout, result.stderr


def test_search_says_what_is_missing(cv: Conveyor, docs: Path, home: Path) -> None:
    cv.ingest([docs])
    code, _, err = _cli(home, "search", "")
    assert code == 2 and "QUERY is empty" in err
    code, _, err = _cli(home, "search")
    assert code == 2 and "give a QUERY, or --batch FILE" in err and "not both" not in err


def test_status_and_documents_speak_plainly(cv: Conveyor, docs: Path, home: Path) -> None:
    cv.ingest([docs])
    cv.ingest([docs])  # all unchanged now
    code, out, _ = _cli(home, "status")
    assert code == 0
    line = next(x for x in out.splitlines() if x.startswith("documents"))
    assert "unchanged 5" in line and "(5 searchable)" in line and "skipped" not in line
    code, out, _ = _cli(home, "documents")
    assert out.splitlines()[0].split() == ["STATE", "CHUNKS", "SOURCE"]
    assert out.splitlines()[1].startswith("unchanged")


def test_cli_json_times_are_iso_8601(cv: Conveyor, docs: Path, home: Path) -> None:
    cv.ingest([docs])
    _, out, _ = _cli(home, "status", "--json")
    worker = json.loads(out)["workers"][0]
    assert worker["heartbeat_at"].endswith("+00:00") and "T" in worker["heartbeat_at"]
    _, out, _ = _cli(home, "documents", "--json")
    assert json.loads(out)[0]["updated_at"].endswith("+00:00")


def test_redrive_wording(home: Path, cv: Conveyor, docs: Path) -> None:
    cv.ingest([docs])
    code, _, err = _cli(home, "dlq", "redrive")
    assert code == 2 and "or --all" in err and "not both" not in err
    code, out, _ = _cli(home, "dlq", "redrive", "--all")
    assert code == 0 and out.startswith("moved 0 jobs back onto the queue")


def test_delete_removes_chunks_and_document_through_the_compactor(cv: Conveyor, docs: Path) -> None:
    cv.ingest([docs])
    store = cv.components.vectors
    victim = cv.documents()[0]
    before = store.count("default")
    with pytest.raises(ConveyorError, match="not ingested in collection 'default'"):
        cv.delete_sources([str(docs / "nope.txt")])
    [doc_id] = cv.delete_sources([victim["source"]])
    assert cv.components.catalog.get(doc_id)["stage"] == "delete"  # type: ignore[index]
    assert store.count("default", document_id=doc_id) == victim["chunks"]  # not yet merged
    cv.merge()
    assert store.count("default", document_id=doc_id) == 0
    assert store.count("default") == before - victim["chunks"]
    assert cv.components.catalog.get(doc_id) is None
    assert victim["id"] not in {h.document_id for h in cv.search("code word lantern", k=10)}


def test_delete_clears_unit_collections_too(cv: Conveyor, tmp_path: Path) -> None:
    bucket = tmp_path / "artifacts"
    (bucket / "r").mkdir(parents=True)
    (bucket / "r" / "lines.ndjson").write_bytes(ndjson(receipt_rows("img", 1, ["MILK 2.50"])))
    (bucket / "r" / "words.ndjson").write_bytes(
        ndjson(receipt_rows("img", 1, ["MILK 2.50"], words_of_line=0))
    )
    cv.components.queue.send(
        {
            "image_id": "img",
            "receipt_id": 1,
            "artifacts_bucket": str(bucket),
            "lines_key": "r/lines.ndjson",
            "words_key": "r/words.ndjson",
        }
    )
    cv.work()
    [doc] = cv.documents()
    store = cv.components.vectors
    assert store.count("default_lines") == 1 and store.count("default_words") == 2
    cv.delete([doc["id"]])
    cv.merge()
    assert (store.count("default"), store.count("default_lines"), store.count("default_words")) == (
        0,
        0,
        0,
    )


def test_ingest_sync_deletes_documents_whose_file_is_gone(cv: Conveyor, docs: Path) -> None:
    cv.ingest([docs])
    (docs / "note_1.txt").unlink()
    summary = cv.ingest([docs], sync=True)
    assert (summary.deleted, summary.skipped) == (1, 4)
    sources = {d["source"] for d in cv.documents()}
    assert (docs / "note_1.txt").as_uri() not in sources and len(sources) == 4
    assert "lantern-1" not in " ".join(h.text for h in cv.search("code word lantern-1", k=10))
