"""Worker processes: throughput with 1, 2 and 3 of them, and the queue's own cost.

1. The same generated corpus is enqueued (`conveyor ingest --no-wait`) and
   drained by N `conveyor worker --exit-when-idle` processes (one of them runs
   the compactor), for N = 1, 2, 3. Wall time includes each process's start
   and model load, as in production.
2. The queue alone: jobs per second through send → receive → ack with a
   no-op pipeline, from 1 and 3 processes on one SQLite file.

    python bench/workers.py                     # 60 documents x ~1,000 words
    python bench/workers.py --docs 30 --processes 1 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conveyor.queue.sqlite import SqliteQueue
from conveyor.testing import prose

CONVEYOR = str(Path(sys.executable).parent / "conveyor")


def drain(corpus: Path, home: Path, processes: int, concurrency: int) -> tuple[float, dict]:
    env = {**os.environ, "CONVEYOR_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    subprocess.run(
        [CONVEYOR, "ingest", str(corpus), "--no-wait"], env=env, check=True, capture_output=True
    )
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                CONVEYOR,
                "worker",
                "--exit-when-idle",
                "-j",
                str(concurrency),
                *([] if n == 0 else ["--no-compactor"]),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for n in range(processes)
    ]
    for p in procs:
        p.wait()
    # the compactor runs in worker 0; make sure everything is merged
    status = json.loads(
        subprocess.run(
            [CONVEYOR, "status", "--json"], env=env, check=True, capture_output=True, text=True
        ).stdout
    )
    while status["deltas"]["pending"]:
        subprocess.run(
            [CONVEYOR, "worker", "--exit-when-idle"], env=env, check=True, capture_output=True
        )
        status = json.loads(
            subprocess.run(
                [CONVEYOR, "status", "--json"], env=env, check=True, capture_output=True, text=True
            ).stdout
        )
    return time.perf_counter() - started, status


def _queue_worker(path: str, results: multiprocessing.Queue) -> None:
    queue = SqliteQueue(path)
    done = 0
    while True:
        leases = queue.receive(1, visibility_timeout=30)
        if not leases:
            break
        queue.extend(leases[0], 30)
        queue.ack(leases[0])
        done += 1
    results.put(done)


def queue_rate(jobs: int, processes: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "q.db")
        queue = SqliteQueue(path)
        queue.send_many([{"source": f"file:///x/{i}", "collection": "c"} for i in range(jobs)])
        ctx = multiprocessing.get_context("spawn")
        results = ctx.Queue()
        started = time.perf_counter()
        procs = [ctx.Process(target=_queue_worker, args=(path, results)) for _ in range(processes)]
        for p in procs:
            p.start()
        total = sum(results.get() for _ in procs)
        elapsed = time.perf_counter() - started
        for p in procs:
            p.join()
        assert total == jobs, (total, jobs)
        return jobs / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=60)
    parser.add_argument("--words", type=int, default=1000)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--concurrency", type=int, default=2, help="jobs in flight per process")
    parser.add_argument("--queue-jobs", type=int, default=3000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        for i in range(args.docs):
            (corpus / f"doc-{i:04d}.txt").write_text(prose(i, args.words))
        print(
            f"corpus: {args.docs} documents x ~{args.words} words; "
            f"{os.cpu_count()} CPUs; -j {args.concurrency} per process"
        )
        for n in args.processes:
            seconds, status = drain(corpus, Path(tmp) / f"home-{n}", n, args.concurrency)
            chunks = sum(c["chunks"] for c in status["collections"])
            print(
                f"{n} worker process(es): {seconds:7.2f} s  "
                f"{status['documents']['done']} documents  {chunks} chunks  "
                f"{args.docs / seconds:6.2f} docs/s  {chunks / seconds:6.2f} chunks/s"
            )

    for n in (1, 3):
        rate = queue_rate(args.queue_jobs, n)
        print(
            f"queue only (send/receive/extend/ack, no-op pipeline), {n} process(es): "
            f"{rate:8.0f} jobs/s"
        )


if __name__ == "__main__":
    main()
