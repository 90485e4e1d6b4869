"""Queue operations per second on SQLite and PostgreSQL.

* send_many: jobs per second enqueued in batches (one transaction each);
* receive + ack: jobs per second through one-job receive → ack round trips,
  from 1 and from 3 processes draining the same queue at once (each process
  its own connections, as workers on different hosts would have).

PostgreSQL is a throwaway Debian server started here (as the tests' fixture
does; fsync off), unless ``--postgres-url`` names one (its ``conveyor``
schema's ``queue_jobs`` table gets a queue of its own, emptied afterwards).

    python bench/queue_ops.py
    python bench/queue_ops.py --jobs 5000 --postgres-url postgresql://u:p@db/conveyor
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conveyor.exceptions import safe_summary
from conveyor.queue import JobQueue
from conveyor.queue.postgres import PostgresQueue
from conveyor.queue.sqlite import SqliteQueue

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def _body(i: int) -> dict[str, Any]:
    return {"source": f"file:///corpus/doc-{i:06d}.pdf", "collection": "bench", "run": "r"}


def open_backend(backend: str, where: str, name: str) -> JobQueue:
    if backend == "sqlite":
        return SqliteQueue(where, name=name)
    return PostgresQueue(where, name=name, pool_size=2)


def send_rate(backend: str, where: str, jobs: int, batch: int) -> float:
    queue = open_backend(backend, where, f"send-{uuid.uuid4().hex[:8]}")
    started = time.perf_counter()
    for i in range(0, jobs, batch):
        queue.send_many([_body(j) for j in range(i, min(jobs, i + batch))])
    elapsed = time.perf_counter() - started
    _empty(queue)
    queue.close()
    return jobs / elapsed


def _empty(queue: JobQueue) -> None:
    while leases := queue.receive(500, visibility_timeout=60):
        for lease in leases:
            queue.ack(lease)


def _drain(backend: str, where: str, name: str, barrier: Any, results: Any) -> None:
    queue = open_backend(backend, where, name)
    done = 0
    barrier.wait(timeout=120)
    while leases := queue.receive(1, visibility_timeout=60):
        queue.ack(leases[0])
        done += 1
    results.put((done, time.perf_counter()))
    queue.close()


def receive_ack_rate(backend: str, where: str, jobs: int, processes: int) -> float:
    name = f"drain-{uuid.uuid4().hex[:8]}"
    queue = open_backend(backend, where, name)
    queue.send_many([_body(i) for i in range(jobs)])
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes + 1)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_drain, args=(backend, where, name, barrier, results))
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    barrier.wait(timeout=120)  # every process is connected: start the clock
    started = time.perf_counter()
    outs = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    total = sum(done for done, _ in outs)
    assert total == jobs, (total, jobs)
    assert queue.depth().as_dict() == {"visible": 0, "in_flight": 0, "delayed": 0, "dead": 0}
    queue.close()
    return jobs / (max(end for _, end in outs) - started)


def measure(backend: str, where: str, args: argparse.Namespace) -> list[float]:
    row = [send_rate(backend, where, args.send_jobs, args.batch)]
    for n in (1, 3):
        row.append(receive_ack_rate(backend, where, args.jobs, n))
    return row


def with_postgres(url: str | None, run: Callable[[str], list[float]]) -> list[float]:
    if url:
        return run(url)
    from servers.postgres import PostgresServer, _bin_dir

    bin_dir = _bin_dir()
    if bin_dir is None:
        raise SystemExit("no PostgreSQL server binaries; install postgresql or pass --postgres-url")
    server = PostgresServer(bin_dir)
    try:
        server.start()
        return run(server.url)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=3000, help="jobs drained per measurement")
    parser.add_argument("--send-jobs", type=int, default=20_000, help="jobs sent by send_many")
    parser.add_argument("--batch", type=int, default=500, help="jobs per send_many call")
    parser.add_argument("--postgres-url", help="use this PostgreSQL instead of a throwaway one")
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgres"])
    args = parser.parse_args()

    rows: dict[str, list[float]] = {}
    if "sqlite" in args.backends:
        with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as tmp:
            rows["sqlite"] = measure("sqlite", str(Path(tmp) / "queue.db"), args)
    if "postgres" in args.backends:
        rows["postgres"] = with_postgres(
            args.postgres_url, lambda url: measure("postgres", url, args)
        )
    where = safe_summary(args.postgres_url) if args.postgres_url else "throwaway, local, fsync off"
    print(
        f"{os.cpu_count()} CPUs; PostgreSQL: {where}; send_many batches of {args.batch}; "
        f"{args.jobs} jobs drained per receive+ack run"
    )
    print(f"{'backend':<10} {'send_many':>12} {'receive+ack x1':>16} {'receive+ack x3':>16}")
    for backend, (send, one, three) in rows.items():
        print(f"{backend:<10} {send:>8.0f} j/s {one:>12.0f} j/s {three:>12.0f} j/s")


if __name__ == "__main__":
    main()
