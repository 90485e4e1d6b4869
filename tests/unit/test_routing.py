"""Per-job routing with two real SQLite queues: intake predicts each job from its input
(PDF pages, minutes of audio, size) and the rates measured on earlier jobs, and the Lambda
handler — under a scripted clock — moves a job it cannot finish in time to the long queue."""

from __future__ import annotations

import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
from lambda_events import ScriptedContext, ids, sqs_event, sqs_record

from conveyor.app import Conveyor
from conveyor.aws import lambda_handler
from conveyor.ids import document_id
from conveyor.queue.sqlite import SqliteQueue
from conveyor.routing import DEFAULT_RATES, PREDICTED, Probe, Rates, probe
from conveyor.settings import Settings
from conveyor.testing import FakeEmbedder, make_pdf


def _wav(path: Path, seconds: float) -> Path:
    with wave.open(str(path), "wb") as w:  # 8 kHz, 8-bit mono: small files
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(b"\x80" * int(8000 * seconds))
    return path


def _measured(cv: Conveyor, kind: str, seconds: float, **work: float) -> None:
    cv.components.catalog.record_measurement(
        {
            "document_id": f"old-{kind}",
            "kind": kind,
            "outcome": "merge",
            "seconds": seconds,
            "finished_at": 1.0,
            **work,
        }
    )


def _bodies(queue: SqliteQueue) -> dict[str, dict]:
    leases = queue.receive(100, visibility_timeout=60)
    return {lease.body["source"].rsplit("/", 1)[1]: lease.body for lease in leases}


def test_probe_reads_pages_minutes_and_sizes(tmp_path: Path) -> None:
    make_pdf(str(tmp_path / "a.pdf"), ["one", "two", "three"])
    (tmp_path / "b.txt").write_text("x" * 3 * 2**20)
    pdf = probe((tmp_path / "a.pdf").as_uri())
    audio = probe(_wav(tmp_path / "c.wav", 90).as_uri())
    text = probe((tmp_path / "b.txt").as_uri())
    assert (pdf.kind, pdf.pages) == ("pdf", 3)
    assert audio.kind == "audio" and audio.audio_seconds == pytest.approx(90, abs=0.1)
    assert (text.kind, text.units()) == ("text", 3.0)
    remote = probe("s3://bucket/calls/x.mp3", size=1_920_000)  # named, not read: 128 kbit/s
    assert (remote.kind, remote.units()) == ("audio", pytest.approx(2.0))


def test_rates_come_from_measured_jobs_of_the_kind() -> None:
    rows = [
        {"kind": "audio", "outcome": "merge", "seconds": 100, "audio_seconds": 600},
        {"kind": "audio", "outcome": "merge", "seconds": 300, "audio_seconds": 1200},
        {"kind": "audio", "outcome": "failed", "seconds": 9999, "audio_seconds": 60},  # no
        {"kind": "pdf", "outcome": "merge", "seconds": 50, "pages": 10},
    ]
    rates = Rates.from_measurements(rows)
    assert rates.per_unit["audio"] == pytest.approx(400 / 30)  # seconds per audio minute
    assert rates.per_unit["pdf"] == 5.0 and rates.measured == {"audio": 2, "pdf": 1}
    assert rates.predict(Probe("pdf", 0, pages=200)) == 1000.0
    assert rates.predict(Probe("text", 4 * 2**20)) == 4 * DEFAULT_RATES["*"]


def test_intake_sends_predicted_long_jobs_to_the_long_queue(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    make_pdf(str(docs / "short.pdf"), ["a", "b"])
    make_pdf(str(docs / "long.pdf"), [f"page {i}" for i in range(10)])
    _wav(docs / "short.wav", 60)
    _wav(docs / "long.wav", 180)
    (docs / "note.txt").write_text("a short note\n")
    long_db = tmp_path / "long.db"
    settings = Settings(home=tmp_path / "home", long_queue_url=f"sqlite://{long_db}")
    with Conveyor(settings, embedder=FakeEmbedder()) as cv:
        # earlier jobs measured: 100 s a page, 300 s an audio minute (a slow CPU)
        _measured(cv, "pdf", 400, pages=4)
        _measured(cv, "audio", 600, audio_seconds=120)
        cv.enqueue([docs], run="r1")
        short = _bodies(cv.components.queue)
    long = _bodies(SqliteQueue(long_db))
    assert sorted(short) == ["note.txt", "short.pdf", "short.wav"]
    assert sorted(long) == ["long.pdf", "long.wav"]
    assert long["long.pdf"]["options"][PREDICTED] == 1000.0  # 10 pages × 100 s
    assert long["long.wav"]["options"][PREDICTED] == pytest.approx(900, abs=1)
    assert short["short.wav"]["options"][PREDICTED] == pytest.approx(300, abs=1)
    assert short["short.pdf"]["options"][PREDICTED] == 200.0


@pytest.fixture
def warm(tmp_path: Path) -> Iterator[lambda_handler.Warm]:
    lambda_handler.reset()
    settings = Settings(
        home=tmp_path / "home",
        long_queue_url=f"sqlite://{tmp_path / 'long.db'}",
        isolate_extraction=False,
        lambda_reserve_seconds=5.0,
        chunk_size=60,
        chunk_overlap=10,
    )
    state = lambda_handler.warm(settings, embedder=FakeEmbedder())
    yield state
    lambda_handler.reset()


def test_lambda_moves_a_job_it_cannot_finish_in_time(
    warm: lambda_handler.Warm, tmp_path: Path
) -> None:
    files = {}
    for name in ("quick", "slow", "unpredicted"):
        files[name] = tmp_path / f"{name}.txt"
        files[name].write_text(f"The {name} brown fox jumps over the lazy dog.\n")

    def job(name: str, **options: float) -> dict:
        return {
            "source": files[name].as_uri(),
            "collection": "default",
            "run": "r1",
            "options": options,
        }

    quick = sqs_record(job("quick", predicted_seconds=20))
    slow = sqs_record(job("slow", predicted_seconds=700))  # 700 s > 300 s left − 5 s
    unpredicted = sqs_record(job("unpredicted"))  # predicted here: a tiny text file
    clock = ScriptedContext([300_000])  # 300 s left, every time it is asked
    response = lambda_handler.handler(sqs_event(quick, slow, unpredicted), clock)
    assert ids(response) == []  # nothing for SQS to deliver again: the slow one moved
    catalog = warm.components.catalog

    def state(name: str) -> str:
        return catalog.get(document_id("default", files[name].as_uri()))["state"]

    assert state("quick") == state("unpredicted") == "done"
    moved = SqliteQueue(tmp_path / "long.db").receive(10, visibility_timeout=60)
    assert [lease.body["source"] for lease in moved] == [files["slow"].as_uri()]
    assert moved[0].body["options"][PREDICTED] == 700
    assert catalog.get(document_id("default", files["slow"].as_uri())) is None  # not failed
    # with more time left, the same job runs here
    again = sqs_record(job("slow", predicted_seconds=700))
    assert ids(lambda_handler.handler(sqs_event(again), ScriptedContext([900_000]))) == []
    assert state("slow") == "done"


def test_an_s3_event_is_predicted_from_the_size_it_gives(tmp_path: Path) -> None:
    from conveyor.jobs import s3_event_jobs
    from conveyor.routing import predicted, route

    def event(key: str, size: int) -> dict:
        s3 = {"bucket": {"name": "in"}, "object": {"key": key, "size": size}}
        return {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": s3}

    [big] = s3_event_jobs({"Records": [event("calls/all-day.mp3", 480_000_000)]}) or []
    [small] = s3_event_jobs({"Records": [event("calls/hello.mp3", 160_000)]}) or []
    assert big["options"]["object_size"] == 480_000_000
    with Conveyor(Settings(home=tmp_path / "home"), embedder=FakeEmbedder()) as cv:
        _measured(cv, "audio", 60, audio_seconds=600)  # 6 s of work an audio minute
        catalog = cv.components.catalog
        # unknown length: as if 128 kbit/s, so 480 MB is 500 minutes, 3000 s of work
        assert predicted(big, catalog) == pytest.approx(3000, rel=0.01)
        assert predicted(small, catalog) == pytest.approx(1, rel=0.01)
        short, long = route([big, small], Rates.of(catalog), 600)
    assert [m["source"] for m in long] == ["s3://in/calls/all-day.mp3"]
    assert [m["source"] for m in short] == ["s3://in/calls/hello.mp3"]
