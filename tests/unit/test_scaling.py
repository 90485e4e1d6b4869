"""Autoscaling signals from a real SQLite queue and catalog, the fleet-wide cap on a
SQLite queue, and `conveyor scale-hint`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner
from support import T0, FakeClock

from conveyor.app import Conveyor
from conveyor.catalog import SqliteCatalog
from conveyor.cli import main
from conveyor.queue.memory import MemoryQueue
from conveyor.queue.sqlite import SqliteQueue
from conveyor.scaling import queue_options, signals
from conveyor.server.metrics import ApiMetrics
from conveyor.settings import Settings
from conveyor.testing import FakeEmbedder


def test_the_cap_bounds_leases_across_queue_objects(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "q.db"
    # two "processes" on one file, each would take 4
    a = SqliteQueue(path, clock=clock, max_in_flight=3)
    b = SqliteQueue(path, clock=clock, max_in_flight=3)
    a.send_many([{"n": i} for i in range(8)])
    first = a.receive(4, visibility_timeout=10)
    assert len(first) == 3 and b.receive(4, visibility_timeout=10) == []
    a.ack(first[0])
    b_gets = b.receive(4, visibility_timeout=10)
    assert len(b_gets) == 1 and b_gets[0].body == {"n": 3}  # FIFO: the next in line
    a.release(first[1], delay=100)  # released (delayed) work holds no place
    assert len(b.receive(4, visibility_timeout=10)) == 1
    clock.advance(11)  # every lease ran out: a dead worker's places come back
    assert len(a.receive(4, visibility_timeout=10)) == 3
    uncapped = SqliteQueue(path, clock=clock)
    assert len(uncapped.receive(8, visibility_timeout=10)) >= 1  # no cap: takes what is visible


def test_signals_and_the_metrics_they_feed(tmp_path: Path) -> None:
    clock = FakeClock()
    queue = SqliteQueue(tmp_path / "q.db", clock=clock)
    catalog = SqliteCatalog(tmp_path / "c.db", clock=clock)
    assert queue.oldest_visible_age() is None
    queue.send_many([{"n": i} for i in range(6)])
    clock.advance(30)
    queue.send_many([{"n": i} for i in range(6, 10)])
    queue.send({"n": 10}, delay=600)
    clock.advance(5)
    queue.receive(2, visibility_timeout=60)
    catalog.worker_beat("w1", host="h", pid=1, concurrency=4)
    catalog.worker_beat("w2", host="h", pid=2, concurrency=2)
    catalog.worker_beat("w3", host="h", pid=3, concurrency=2, state="stopped")
    for tokens in (100, 300):
        catalog.record_measurement({"document_id": "d", "tokens": tokens, "finished_at": T0})
    now = signals(queue, catalog, stale_after=20)
    assert (now.visible, now.in_flight, now.delayed) == (8, 2, 1)
    assert now.oldest_visible_age == pytest.approx(35)  # the oldest of the first batch
    assert (now.live_workers, now.live_slots, now.backlog_per_worker) == (2, 6, 4.0)
    assert now.pending_tokens == 9 * 200
    assert now.desired(per_worker=4) == 3  # (8 visible + 2 running) / 4
    assert now.desired(per_worker=4, maximum=2) == 2 and now.desired(100, minimum=1) == 1
    clock.advance(30)  # the workers fall silent: stale, not live
    assert signals(queue, catalog, stale_after=20).live_workers == 0
    assert MemoryQueue().oldest_visible_age() is None


def test_metrics_and_scale_hint_read_the_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(5):
        (docs / f"{i}.txt").write_text(f"document {i}\n")
    with Conveyor(Settings(home=home), embedder=FakeEmbedder()) as cv:
        cv.enqueue([docs], run="r")
        cv.components.catalog.worker_beat("w1", host="h", pid=1, concurrency=2)
        value = ApiMetrics(cv).registry.get_sample_value
        assert value("conveyor_backlog_per_worker") == 5.0
        assert value("conveyor_queue_oldest_visible_age_seconds") >= 0
        assert value("conveyor_pending_tokens") == 0  # nothing measured yet
        assert value("conveyor_live_workers") == 1
    out = CliRunner().invoke(main, ["scale-hint", "--home", str(home), "--per-worker", "2"])
    assert out.exit_code == 0 and out.output.strip() == "3"
    js = CliRunner().invoke(
        main, ["scale-hint", "--home", str(home), "--per-worker", "2", "--max", "2", "--json"]
    )
    data = json.loads(js.output)
    assert (data["desired_workers"], data["visible"], data["per_worker"]) == (2, 5, 2.0)
    bad = CliRunner().invoke(main, ["scale-hint", "--home", str(home), "--per-worker", "0"])
    assert bad.exit_code == 2


def test_the_cap_is_kept_only_where_a_queue_can_keep_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = Settings(max_in_flight=3)
    assert queue_options("sqlite:///x.db", s)["max_in_flight"] == 3
    assert queue_options("postgresql://h/db", s)["max_in_flight"] == 3
    with caplog.at_level(logging.WARNING):
        assert "max_in_flight" not in queue_options("sqs://jobs?region=eu-west-1", s)
    assert "MaximumConcurrency" in caplog.text
    assert "max_in_flight" not in queue_options("sqlite:///x.db", Settings())
