"""The whole pipeline on one machine with fakes for the model: fast, and exact."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pypdf import PdfReader, PdfWriter

from conveyor import deltas
from conveyor.app import Conveyor
from conveyor.ids import chunk_id
from conveyor.settings import Settings
from conveyor.testing import FakeEmbedder, make_pdf, prose


def _settings(home: Path, **kw) -> Settings:
    base = {
        "home": home,
        "chunk_size": 60,
        "chunk_overlap": 10,
        "retry_base_seconds": 0.05,
        "visibility_timeout": 5.0,
    }
    base.update(kw)
    return Settings(**base)


@pytest.fixture
def fake() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def cv(home: Path, fake: FakeEmbedder):
    with Conveyor(_settings(home), embedder=fake) as c:
        yield c


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "alpha.txt").write_text("Zebras graze on the savanna at dawn.\n\n" + prose(1, 300))
    (root / "sub" / "beta.md").write_text("# Beta\n\nPenguins huddle in the Antarctic winter.\n")
    (root / "gamma.html").write_text(
        "<html><head><title>Gamma</title><script>var hidden = 1;</script></head>"
        "<body><p>Volcanoes erupt molten lava.</p></body></html>"
    )
    make_pdf(
        str(root / "delta.pdf"),
        ["Glaciers carve deep valleys.", "Second page on fjords."],
        title="Delta",
    )
    (root / ".hidden").write_text("never ingested")
    return root


def test_ingest_folder_then_search(cv: Conveyor, corpus: Path) -> None:
    summary = cv.ingest([corpus])
    assert (summary.enqueued, summary.done, summary.failed) == (4, 4, 0)
    total = sum(d["chunks"] for d in cv.documents())
    assert summary.chunks == total == cv.components.vectors.count("default")
    hits = cv.search("penguins antarctic winter", k=3)
    assert hits[0].source.endswith("sub/beta.md")
    pdf_hits = cv.search("fjords second page", k=1)
    assert pdf_hits[0].source.endswith("delta.pdf") and pdf_hits[0].page == 2
    assert all(not d["source"].endswith(".hidden") for d in cv.documents())


def test_manifest_per_document(cv: Conveyor, corpus: Path) -> None:
    summary = cv.ingest([corpus], run="r1")
    keys = [b.key for b in cv.components.blobs.list("ingestion_output/r1/results/")]
    assert len(keys) == 4
    for doc in cv.documents():
        data = json.loads(cv.components.blobs.get(f"ingestion_output/r1/results/{doc['id']}.json"))
        assert data["FileURI"] == doc["source"]
        pages = cv.components.vectors.count("default_pages", document_id=doc["id"])
        assert pages == (2 if doc["source"].endswith(".pdf") else 0)  # a PDF's pages too
        assert data["EmbeddingsGenerated"] == doc["chunks"] + pages > 0
        assert data["status"] == "done" and data["content_hash"].startswith("sha256:")
        assert {"fetch", "extract", "chunk", "embed", "merge"} <= set(data["timings"])
    assert summary.run == "r1"


def test_unchanged_skipped_changed_replaced_force_reembeds(
    cv: Conveyor, corpus: Path, fake: FakeEmbedder
) -> None:
    cv.ingest([corpus])
    texts_first = fake.texts
    second = cv.ingest([corpus])
    assert (second.skipped, second.done) == (4, 0)
    assert fake.texts == texts_first  # nothing re-embedded

    alpha = corpus / "alpha.txt"
    before = cv.components.vectors.count("default")
    alpha.write_text("Only one short line about otters now.")
    third = cv.ingest([alpha])
    assert third.done == 1
    doc = next(d for d in cv.documents() if d["source"].endswith("alpha.txt"))
    assert doc["chunks"] == 1
    assert cv.components.vectors.count("default", document_id=doc["id"]) == 1
    assert cv.components.vectors.count("default") < before
    assert cv.search("otters", k=1)[0].document_id == doc["id"]

    calls = fake.texts
    forced = cv.ingest([alpha], force=True)
    assert forced.done == 1
    # the embedding cache answers: forcing re-chunks and re-merges without re-embedding
    assert fake.texts == calls
    assert cv.components.embedder.hits >= 1


def test_bad_inputs_fail_alone_with_reasons(cv: Conveyor, tmp_path: Path) -> None:
    root = tmp_path / "bad"
    root.mkdir()
    (root / "good.txt").write_text("Lighthouses guide ships along the rocky coast.")
    (root / "empty.txt").write_bytes(b"")
    (root / "blob.bin").write_bytes(bytes(range(256)) * 40)
    make_pdf(str(root / "whole.pdf"), ["Some text that will be cut off. " * 20])
    data = (root / "whole.pdf").read_bytes()
    (root / "truncated.pdf").write_bytes(data[: len(data) // 3])
    (root / "whole.pdf").unlink()
    make_pdf(str(root / "locked.pdf"), ["secret words"])
    writer = PdfWriter(clone_from=PdfReader(str(root / "locked.pdf")))
    writer.encrypt(user_password="hunter2", owner_password="owner", algorithm="RC4-128")
    with open(root / "locked.pdf", "wb") as out:
        writer.write(out)
    with open(root / "nopages.pdf", "wb") as out:
        PdfWriter().write(out)
    scan = Image.new("RGB", (200, 100), "white")
    scan.save(root / "scan.pdf", "PDF")  # an image, no text layer
    gone = root / "gone.txt"
    gone.write_text("soon gone")
    queued = cv.enqueue([root])
    gone.unlink()  # disappears after enqueue, before a worker reads it
    cv.work()
    summary = cv.summary(queued, 1.0)
    assert (summary.done, summary.failed) == (1, 7)
    reasons = {Path(f["source"]).name: f["error"] for f in summary.failures}
    assert "empty" in reasons["empty.txt"]
    assert "binary" in reasons["blob.bin"] or "not a supported" in reasons["blob.bin"]
    assert "PDF" in reasons["truncated.pdf"]
    assert "password" in reasons["locked.pdf"]
    assert "no pages" in reasons["nopages.pdf"]
    assert "no text layer" in reasons["scan.pdf"]  # blank: OCR, where installed, finds nothing
    assert "not found" in reasons["gone.txt"]
    assert all("\n" not in r for r in reasons.values())
    depth = cv.components.queue.depth()
    assert depth.dead == 7 and depth.visible == depth.in_flight == depth.delayed == 0
    assert cv.search("lighthouses guide ships", k=1)[0].source.endswith("good.txt")
    # permanent errors are dead-lettered at once: one delivery each
    assert all(d.receive_count == 1 for d in cv.dead_letters())


class Flaky(FakeEmbedder):
    """Fails with an unknown error the first ``n`` calls."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.left = n

    def embed(self, texts):
        if self.left > 0:
            self.left -= 1
            raise RuntimeError("model server hiccup password=hunter2")
        return super().embed(texts)


def test_unknown_errors_retry_with_backoff_then_succeed(home: Path, tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("Retry me until it works.")
    with Conveyor(_settings(home, embedding_cache=False), embedder=Flaky(2)) as cv:
        summary = cv.ingest([f])
        assert summary.done == 1
        doc = cv.documents()[0]
        assert doc["attempts"] == 3


def test_unknown_errors_dead_letter_after_max_receives(home: Path, tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("This one never works.")
    settings = _settings(home, embedding_cache=False, max_receives=3)
    with Conveyor(settings, embedder=Flaky(100)) as cv:
        summary = cv.ingest([f])
        assert summary.failed == 1
        dead = cv.dead_letters()
        assert len(dead) == 1 and dead[0].receive_count == 3
        assert "hiccup" in dead[0].error and "hunter2" not in dead[0].error
        assert "hunter2" not in cv.documents()[0]["error"]


class Slow(FakeEmbedder):
    def embed(self, texts):
        time.sleep(1.2)
        return super().embed(texts)


def test_heartbeat_keeps_a_long_job_leased(home: Path, tmp_path: Path) -> None:
    """A job longer than three visibility timeouts runs once, not three times."""
    f = tmp_path / "slow.txt"
    f.write_text("A slow document about tortoises.")
    settings = _settings(home, visibility_timeout=0.3, embedding_cache=False)
    slow = Slow()
    with Conveyor(settings, embedder=slow) as cv:
        summary = cv.ingest([f])
        assert summary.done == 1
        assert slow.calls == 1
        assert cv.documents()[0]["attempts"] == 1


def add_delta(
    cv: Conveyor,
    doc: dict,
    texts: list[str],
    *,
    read_at: float,
    vectors: bytes | None = None,
    fingerprint: str = "f",
) -> None:
    """A delta for ``doc`` as a worker writes it: one chunk per text, unit vectors
    unless ``vectors`` (raw bytes, possibly malformed) is given."""
    rows = [deltas.Chunk(chunk_id(doc["id"], i), i, t) for i, t in enumerate(texts)]
    header = deltas.Header(
        source=doc["source"],
        run="r",
        job_id="j",
        read_at=read_at,
        content_hash="sha256:x",
        fingerprint=fingerprint,
        kind="text",
        mime="text/plain",
        size=1,
        model="fake/bag-of-words",
        backend="fake",
        dim=32,
        timings={},
        metadata={},
        delivery=deltas.Delivery("d", {"default": len(texts)}, len(texts)),
        part=0,
    )
    catalog = cv.components.catalog
    if vectors is None:
        unit = np.ones((len(texts), 32), dtype=np.float32) / np.sqrt(32)
        deltas.write(catalog, "default", doc["id"], header, rows, unit)
        return
    catalog.add_delta(
        "default",
        doc["id"],
        header.to_json(),
        [r.to_json() for r in rows],
        vectors,
        read_at=read_at,
        delivery="d",
        part=0,
    )


def test_compactor_replay_is_idempotent(cv: Conveyor, corpus: Path) -> None:
    """Re-applying every delta (as after a crash before marking) changes nothing."""
    cv.ingest([corpus])
    store = cv.components.vectors
    before = sorted((r.id, r.text) for r in store.iter_chunks("default", vectors=False))
    catalog = cv.components.catalog
    conn = catalog._conn()
    # keep payloads: re-create the deltas as a crashed compactor would have left them
    doc = cv.documents()[0]
    texts = [f"t{i}" for i in range(doc["chunks"])]
    for _ in range(2):  # a newer read than the one applied, twice
        add_delta(cv, doc, texts, read_at=time.time() + 10)
    assert cv.components.compactor().run_once() == 2
    after = sorted((r.id, r.text) for r in store.iter_chunks("default", vectors=False))
    assert len(after) == len(before)
    assert [i for i, _ in after] == [i for i, _ in before]
    assert conn.execute("SELECT count(*) FROM deltas WHERE state='pending'").fetchone()[0] == 0


def test_collection_refuses_another_model(home: Path, tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("Collections remember their model.")
    with Conveyor(_settings(home), embedder=FakeEmbedder(dim=32)) as cv:
        assert cv.ingest([f]).done == 1
    f.write_text("A changed file, embedded by another model.")
    other = FakeEmbedder(dim=16, model_id="fake/other")
    with Conveyor(_settings(home), embedder=other) as cv:
        summary = cv.ingest([f])
        assert summary.failed == 1
        assert "refusing" in summary.failures[0]["error"]


def test_no_wait_only_enqueues(cv: Conveyor, corpus: Path) -> None:
    summary = cv.ingest([corpus], wait=False)
    assert summary.enqueued == 4 and summary.done == 0
    assert cv.status()["queue"]["visible"] == 4
    assert cv.status()["documents"]["queued"] == 4


def test_glob_and_several_paths(cv: Conveyor, corpus: Path) -> None:
    summary = cv.ingest([str(corpus / "**" / "*.md"), corpus / "alpha.txt"])
    assert summary.enqueued == 2 and summary.done == 2


def test_concurrent_pools_share_work(home: Path, corpus: Path) -> None:
    """Two pools on the same home each take jobs; every document is done once."""
    with Conveyor(_settings(home), embedder=FakeEmbedder()) as a:
        a.enqueue([corpus])
    pools = [Conveyor(_settings(home), embedder=FakeEmbedder()) for _ in range(2)]
    threads = [threading.Thread(target=c.work) for c in pools]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for c in pools:
        c.close()
    with Conveyor(_settings(home), embedder=FakeEmbedder()) as c:
        assert c.status()["documents"]["done"] == 4
        assert c.components.vectors.count("default") == sum(d["chunks"] for d in c.documents())


def test_job_dead_lettered_by_the_queue_fails_its_document(cv: Conveyor, corpus: Path) -> None:
    """When the queue itself dead-letters a job (its worker died on every delivery),
    the document does not stay `running` for ever."""
    queued = cv.enqueue([corpus / "alpha.txt"])
    queue = cv.components.queue
    lease = queue.receive(1, visibility_timeout=30)[0]
    cv.components.catalog.update(queued.document_ids[0], state="running", stage="embed")
    queue.dead_letter(lease, "lease expired 5 times without ack (worker died or hung?)")
    summary = cv.summary(queued, 1.0)
    assert (summary.failed, summary.unfinished) == (1, 0)
    assert "lease expired" in summary.failures[0]["error"]


def test_a_delta_that_cannot_be_merged_is_rejected_not_retried_forever(
    cv: Conveyor, corpus: Path
) -> None:
    cv.ingest([corpus / "alpha.txt"])
    doc = cv.documents()[0]
    add_delta(cv, doc, ["t"], read_at=time.time() + 10, vectors=b"\x00" * 7)
    compactor = cv.components.compactor()
    for _ in range(10):
        try:
            compactor.run_once()
            break
        except ValueError:
            continue
    assert cv.components.catalog.delta_counts()["pending"] == 0
    assert cv.components.catalog.delta_counts()["failed"] == 1
    failed = cv.components.catalog.get(doc["id"])
    assert failed["state"] == "failed" and "the delta is damaged" in failed["error"]


def test_worker_threads_survive_queue_errors(cv: Conveyor, corpus: Path, monkeypatch) -> None:
    queue = cv.components.queue
    real = queue.receive
    failures = iter([True, True])

    def flaky(*args, **kwargs):
        if next(failures, False):
            raise RuntimeError("database is locked")
        return real(*args, **kwargs)

    monkeypatch.setattr(queue, "receive", flaky)
    summary = cv.ingest([corpus])
    assert summary.done == 4
    assert {w["state"] for w in cv.status()["workers"]} == {"stopped"}


def test_a_worker_that_lost_its_lease_leaves_the_outcome_alone(cv: Conveyor, corpus: Path) -> None:
    from conveyor.jobs import Job

    queued = cv.enqueue([corpus / "alpha.txt"])
    queue = cv.components.queue
    stale = queue.receive(1, visibility_timeout=30)[0]
    queue.release(stale)
    queue.receive(1, visibility_timeout=30)  # another worker has it now
    cv.components.catalog.update(queued.document_ids[0], state="done", chunks=3)
    outcome = cv.components.processor()._fail(
        stale, Job.from_message(stale.body), queued.document_ids[0], RuntimeError("late")
    )
    assert outcome.status == "lost"
    assert cv.components.catalog.get(queued.document_ids[0])["state"] == "done"


def test_an_older_delta_finishing_last_does_not_win(cv: Conveyor, corpus: Path) -> None:
    cv.ingest([corpus / "alpha.txt"])
    doc = cv.documents()[0]
    store = cv.components.vectors
    before = sorted(r.text for r in store.iter_chunks("default", vectors=False))
    # read long before the delta already applied
    add_delta(cv, doc, ["stale text"], read_at=1.0, fingerprint="old")
    cv.components.compactor().run_once()
    assert sorted(r.text for r in store.iter_chunks("default", vectors=False)) == before
    assert cv.components.catalog.get(doc["id"])["fingerprint"] != "old"


def test_compaction_runs_are_records_with_a_state(cv: Conveyor, corpus: Path) -> None:
    cv.ingest([corpus])
    runs = cv.status()["compactions"]
    assert runs and all(r["state"] == "applied" and r["finished_at"] for r in runs)
    assert sum(r["deltas"] for r in runs) == 5  # four documents, and the PDF's pages
    doc = cv.documents()[0]
    add_delta(cv, doc, ["t"], read_at=time.time() + 9)
    outputs = cv.settings.blobs_path / "ingestion_output"  # an outage: no manifest fits
    shutil.rmtree(outputs)
    outputs.write_text("in the way")
    assert cv.components.compactor().run_once() == 0  # the delta stays pending
    latest = cv.status()["compactions"][0]
    assert latest["state"] == "failed" and "NotADirectoryError" in latest["error"]


def test_receipt_keys_cannot_leave_their_bucket(cv: Conveyor, tmp_path: Path) -> None:
    secret = tmp_path / "secret.ndjson"
    secret.write_text('{"text": "do not read me"}\n')
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    message = {
        "image_id": "i",
        "receipt_id": 1,
        "artifacts_bucket": str(bucket),
        "lines_key": "../secret.ndjson",
        "words_key": "../secret.ndjson",
    }
    cv.components.queue.send(message)
    cv.work()
    doc = cv.documents()[0]
    assert doc["state"] == "failed" and "must stay inside the bucket" in doc["error"]
    assert cv.dead_letters()[0].receive_count == 1  # permanent: no retries
