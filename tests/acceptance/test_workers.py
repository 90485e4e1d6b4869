"""`conveyor worker` processes: signals, leases, dead letters, status."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from support import wait_for

from .helpers import run, start, status

# HTML 200,000 elements deep: the tree builder is quadratic in the depth, and the
# job stays in flight for minutes.
SLOW_HTML = b"<html><body>" + b"<div>" * 200_000
FAST = {"CONVEYOR_VISIBILITY_TIMEOUT": "2", "CONVEYOR_EXTRACT_TIMEOUT": "600"}


def test_sigterm_releases_the_job_in_flight_and_exits_0(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (tmp_path / "slow.html").write_bytes(SLOW_HTML)
    run("ingest", str(tmp_path / "slow.html"), "--no-wait", home=home)
    worker = start("worker", "-j", "1", "--grace-seconds", "1", home=home, **FAST)
    wait_for(lambda: status(home)["queue"]["in_flight"] == 1, 60, "the job to be leased")
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    assert time.monotonic() - started < 15
    after = status(home)
    assert after["queue"] == {"visible": 1, "in_flight": 0, "delayed": 0, "dead": 0}
    assert after["documents"]["queued"] == 1
    assert [w["state"] for w in after["workers"]] == ["stopped"]


def test_sigkill_lease_expires_and_worker_is_marked_stale(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (tmp_path / "slow.html").write_bytes(SLOW_HTML)
    run("ingest", str(tmp_path / "slow.html"), "--no-wait", home=home)
    worker = start("worker", "-j", "1", home=home, **FAST)
    wait_for(lambda: status(home, **FAST)["queue"]["in_flight"] == 1, 60, "the job to be leased")
    time.sleep(3)  # longer than the visibility timeout: heartbeats keep the lease
    assert status(home, **FAST)["queue"]["in_flight"] == 1
    worker.kill()
    worker.wait(10)
    wait_for(lambda: status(home, **FAST)["queue"]["visible"] == 1, 20, "the lease to expire")
    wait_for(lambda: status(home, **FAST)["workers"][0]["stale"], 20, "the worker to go stale")
    workers = status(home, **FAST)["workers"]
    assert len(workers) == 1 and workers[0]["state"] == "running"
    human = run("status", home=home, **FAST).stdout
    assert "STALE" in human


def test_dead_letters_list_and_redrive(tmp_path: Path) -> None:
    home = tmp_path / "home"
    broken = tmp_path / "notes.txt"
    broken.write_bytes(b"")
    run("ingest", str(broken), home=home, check=1)
    letters = json.loads(run("dlq", "list", "--json", home=home).stdout)
    assert len(letters) == 1
    assert letters[0]["source"] == broken.as_uri()
    assert "empty" in letters[0]["error"] and letters[0]["attempts"] == 1
    assert letters[0]["first_seen"] <= letters[0]["last_seen"]

    broken.write_text("The file was fixed: herons wait motionless in the shallows.")
    out = run("dlq", "redrive", "--all", home=home).stdout
    assert "moved 1 job back onto the queue" in out
    assert status(home)["documents"]["queued"] == 1
    run("worker", "--exit-when-idle", home=home)
    after = status(home)
    assert after["documents"]["done"] == 1 and after["queue"]["dead"] == 0
    hits = json.loads(run("search", "herons in shallow water", "--json", home=home).stdout)
    assert hits[0]["source"] == broken.as_uri()
    assert (
        "not in the dead-letter queue: nope"
        in run("dlq", "redrive", "nope", home=home, check=2).stderr
    )
