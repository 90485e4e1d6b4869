"""The servers' Prometheus metrics through prometheus-client: a registry per app, gauges
read from a real SQLite catalog at scrape time, counters as the work is seen, and label
values escaped so an odd worker id or host name cannot break the text format."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import prometheus_client
import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from conveyor.app import Conveyor
from conveyor.server.api import create_api
from conveyor.server.embed import create_app
from conveyor.server.metrics import ApiMetrics
from conveyor.settings import Settings
from conveyor.testing import FakeEmbedder


@pytest.fixture
def cv(tmp_path: Path) -> Iterator[Conveyor]:
    with Conveyor(Settings(home=tmp_path / "home"), embedder=FakeEmbedder()) as c:
        yield c


def parsed(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_label_values_with_quotes_backslashes_and_newlines_are_escaped(cv: Conveyor) -> None:
    odd_id = 'worker "one" \\ of\ntwo'
    odd_host = 'C:\\hosts\\"b"\n'
    cv.components.catalog.worker_beat(odd_id, host=odd_host, pid=7, concurrency=2)
    text = generate_latest(ApiMetrics(cv).registry).decode()

    ages = [ln for ln in text.splitlines() if ln.startswith("conveyor_worker_heartbeat_age")]
    assert len(ages) == 1  # one line: the newlines inside the labels are escaped
    assert 'worker="worker \\"one\\" \\\\ of\\ntwo"' in ages[0]
    assert 'host="C:\\\\hosts\\\\\\"b\\"\\n"' in ages[0]
    labels = {"worker": odd_id, "host": odd_host, "state": "running"}
    age = parsed(text)[("conveyor_worker_heartbeat_age_seconds", frozenset(labels.items()))]
    assert 0 <= age < 5  # and a parser reads the values back exactly


def test_catalog_gauges_are_read_when_scraped(cv: Conveyor, tmp_path: Path) -> None:
    metrics = ApiMetrics(cv)
    value = metrics.registry.get_sample_value
    assert value("conveyor_documents", {"state": "queued"}) == 0
    assert value("conveyor_workers", {"state": "running"}) == 0
    (tmp_path / "a.txt").write_text("Some words.\n")
    doc = cv.enqueue([tmp_path / "a.txt"], run="r").document_ids[0]
    assert value("conveyor_documents", {"state": "queued"}) == 1
    assert value("conveyor_queue_depth", {"state": "visible"}) == 1
    cv.components.catalog.update(doc, state="failed", error="bad", error_kind="corrupt")
    assert value("conveyor_documents", {"state": "queued"}) == 0
    assert value("conveyor_documents", {"state": "failed"}) == 1
    cv.components.catalog.worker_beat("w1", host="h", pid=1, concurrency=1)
    cv.components.catalog.worker_beat("w2", host="h", pid=2, concurrency=1, state="stopped")
    assert value("conveyor_workers", {"state": "running"}) == 1
    assert value("conveyor_workers", {"state": "stopped"}) == 1
    assert value("conveyor_workers", {"state": "stale"}) == 0


def test_counters_count_outcomes_stages_errors_and_uploads() -> None:
    metrics = ApiMetrics()  # no catalog: the counters alone
    value = metrics.registry.get_sample_value
    for outcome in ("done", "skipped", "failed", "retried"):
        assert value("conveyor_jobs_total", {"outcome": outcome}) == 0
    metrics.finished("done", chunks=4, timings={"embed": 0.3, "extract": 2.0, "note": "x"})
    metrics.finished("done", chunks=1, timings={"embed": 0.02})
    metrics.finished("failed", error_kind="corrupt")
    metrics.retried(None)
    metrics.uploaded("accepted", 100)
    metrics.uploaded("rejected_413")
    assert value("conveyor_jobs_total", {"outcome": "done"}) == 2
    assert value("conveyor_jobs_total", {"outcome": "retried"}) == 1
    assert value("conveyor_embeddings_generated_total") == 5
    assert value("conveyor_stage_duration_seconds_count", {"stage": "embed"}) == 2
    assert value("conveyor_stage_duration_seconds_bucket", {"stage": "embed", "le": "0.05"}) == 1
    assert value("conveyor_stage_duration_seconds_count", {"stage": "note"}) is None
    assert value("conveyor_errors_total", {"kind": "corrupt"}) == 1
    assert value("conveyor_errors_total", {"kind": "unknown"}) == 1
    assert value("conveyor_uploads_total", {"result": "rejected_413"}) == 1
    assert value("conveyor_upload_bytes_total") == 100


def test_every_app_has_a_registry_of_its_own(cv: Conveyor) -> None:
    first, second = create_api(conveyor=cv), create_api(conveyor=cv)
    one, two = first.state.api.metrics, second.state.api.metrics
    assert one.registry is not two.registry
    one.uploaded("accepted", 10)
    assert one.registry.get_sample_value("conveyor_uploads_total", {"result": "accepted"}) == 1
    assert two.registry.get_sample_value("conveyor_uploads_total", {"result": "accepted"}) is None
    embed = create_app(Settings(), embedder=FakeEmbedder()).state.service.metrics
    assert embed.registry not in (one.registry, two.registry)
    global_names = {
        s.name for family in prometheus_client.REGISTRY.collect() for s in family.samples
    }
    assert not [n for n in global_names if n.startswith("conveyor_")]
