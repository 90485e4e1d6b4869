"""CONVEYOR_MAX_IN_FLIGHT across processes: three `conveyor worker -j 4` on one SQLite
home never run more than 3 jobs at once, sampled from the catalog while they work, and
every job is done — by every one of the three."""

from __future__ import annotations

import threading
from pathlib import Path

from support import stop_processes, wait_for

from conveyor.catalog import SqliteCatalog
from conveyor.settings import Settings

from .helpers import run, start, status

# 20,000 nested elements: about a second or two of parsing each (the tree builder is
# quadratic in the depth), so jobs overlap long enough to be seen
SLOW = b"<html><body>" + b"<div>" * 20_000 + b"whales and krill"
JOBS = 24
CAP = 3


def test_three_workers_of_four_never_run_more_than_three(tmp_path: Path) -> None:
    home, docs = tmp_path / "home", tmp_path / "docs"
    docs.mkdir()
    for i in range(JOBS):
        (docs / f"{i:02d}.html").write_bytes(SLOW + str(i).encode())
    env = {"CONVEYOR_MAX_IN_FLIGHT": str(CAP), "CONVEYOR_VISIBILITY_TIMEOUT": "20"}
    run("ingest", str(docs), "--no-wait", home=home, **env)
    catalog = SqliteCatalog(Settings(home=home).database_path)
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:  # jobs running = documents past the lease, not yet handed over
        while not stop.is_set():
            running = catalog.documents(state="running")
            samples.append(sum(1 for d in running if d["stage"] != "merge"))
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    workers = [
        start("worker", "-j", "4", "--exit-when-idle", home=home, log=tmp_path / f"w{n}.log", **env)
        for n in range(3)
    ]
    try:
        wait_for(lambda: all(w.poll() is not None for w in workers), 240, "the workers to finish")
    finally:
        stop.set()
        sampler.join(5)
        stop_processes(workers)
    logs = "".join((tmp_path / f"w{n}.log").read_text() for n in range(3))
    assert all(w.returncode == 0 for w in workers), logs
    after = status(home)
    assert after["documents"]["done"] == JOBS, (after, logs)  # nothing starved
    assert after["queue"]["visible"] == after["queue"]["in_flight"] == 0
    assert max(samples) <= CAP, samples
    assert max(samples) == CAP  # the cap was reached, not merely never tested
    measured = catalog.measurements()
    assert len(measured) == JOBS
    # the jobs' own start and finish times agree: never more than 3 overlapping
    edges = sorted(
        [(m["started_at"], 1) for m in measured] + [(m["finished_at"], -1) for m in measured]
    )
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak <= CAP
    assert len({m["worker"] for m in measured}) == 3, logs  # every process got work
    catalog.close()
