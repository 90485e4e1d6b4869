"""Scale-out: throughput with 1, 2 and 4 worker processes against PostgreSQL + a Chroma
server, against the embedded default (one SQLite file) on the same corpus, and the
queue's own operations per second on both.

Each shape drains the same generated corpus: `conveyor ingest --no-wait`, then N
`conveyor worker --exit-when-idle` processes (each with its own scratch home, as
on separate hosts; every one runs the compactor, so the catalog's writer lock is
exercised). Wall time includes each process's start and model load, as in
production. PostgreSQL is a throwaway Debian server and Chroma a throwaway
`chroma run`, both started here on 127.0.0.1.

    python bench/scale.py                        # 60 documents x ~800 words, 1 2 4 processes
    python bench/scale.py --docs 30 --processes 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from conveyor.testing import prose

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

CONVEYOR = str(Path(sys.executable).parent / "conveyor")


@contextmanager
def postgres() -> Any:
    from servers.postgres import PostgresServer, _bin_dir

    bin_dir = _bin_dir()
    if bin_dir is None:
        raise SystemExit("PostgreSQL binaries not found (apt-get install postgresql)")
    server = PostgresServer(bin_dir)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def new_database(server_url: str) -> str:
    """A fresh database on the server, so each measurement starts empty."""
    import psycopg
    from servers.postgres import database_url

    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return database_url(server_url, name)


def conveyor_cli(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [CONVEYOR, *args], env=env, check=True, capture_output=True, text=True, timeout=1800
    )
    return done.stdout


def drain(corpus: Path, root: Path, processes: int, concurrency: int, urls: dict[str, str]) -> Any:
    base = {**os.environ, "HF_HUB_OFFLINE": "1", **urls}
    homes = [root / f"host-{n}" for n in range(processes)]
    if not urls:  # the embedded default: every process shares one home, as on one laptop
        homes = [root / "home"] * processes
    env0 = {**base, "CONVEYOR_HOME": str(homes[0])}
    conveyor_cli("ingest", str(corpus), "--no-wait", env=env0)
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [CONVEYOR, "worker", "--exit-when-idle", "-j", str(concurrency)],
            env={**base, "CONVEYOR_HOME": str(home)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for home in homes
    ]
    for p in procs:
        p.wait()
    status = json.loads(conveyor_cli("status", "--json", env=env0))
    while status["deltas"]["pending"]:  # a worker that exited first may leave its delta
        conveyor_cli("worker", "--exit-when-idle", env=env0)
        status = json.loads(conveyor_cli("status", "--json", env=env0))
    return time.perf_counter() - started, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=60)
    parser.add_argument("--words", type=int, default=800)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--concurrency", type=int, default=2, help="jobs in flight per process")
    parser.add_argument("--queue-jobs", type=int, default=2000)
    args = parser.parse_args()
    from servers.chroma import running_chroma  # tests/servers: the fixtures' own launcher

    with tempfile.TemporaryDirectory(prefix="conveyor-scale-") as tmp:
        root = Path(tmp)
        corpus = root / "corpus"
        corpus.mkdir()
        for i in range(args.docs):
            (corpus / f"doc-{i:04d}.txt").write_text(prose(i, args.words))
        print(
            f"corpus: {args.docs} documents x ~{args.words} words; {os.cpu_count()} CPUs; "
            f"-j {args.concurrency} per process"
        )
        print(f"{'shape':<28} {'procs':>5} {'seconds':>8} {'docs/s':>7} {'chunks/s':>9}")
        rows: dict[tuple[str, int], float] = {}
        with postgres() as pg, running_chroma(root / "chroma") as chroma_url:
            for n in args.processes:
                for shape in ("embedded (SQLite)", "PostgreSQL + Chroma server"):
                    urls: dict[str, str] = {}
                    if shape.startswith("PostgreSQL"):
                        db = new_database(pg)
                        urls = {
                            "CONVEYOR_QUEUE_URL": db,
                            "CONVEYOR_CATALOG_URL": db,
                            "CONVEYOR_VECTORS_URL": chroma_url,
                            "CONVEYOR_COLLECTION": f"bench-{n}",
                            # manifests on a folder all "hosts" share, as S3 would be
                            "CONVEYOR_BLOBS_URL": (root / f"blobs-{n}").as_uri(),
                        }
                    work = root / f"{shape.split()[0].lower()}-{n}"
                    seconds, status = drain(corpus, work, n, args.concurrency, urls)
                    chunks = sum(
                        c["chunks"]
                        for c in status["collections"]
                        if not urls or c["name"] == f"bench-{n}"
                    )
                    done = status["documents"]["done"]
                    assert done == args.docs, status["documents"]
                    rows[(shape, n)] = chunks / seconds
                    print(
                        f"{shape:<28} {n:>5} {seconds:8.2f} {args.docs / seconds:7.2f} "
                        f"{chunks / seconds:9.2f}"
                    )
        for n in args.processes:
            ratio = rows[("PostgreSQL + Chroma server", n)] / rows[("embedded (SQLite)", n)]
            print(f"{n} process(es): PostgreSQL + Chroma / embedded = {ratio:.2f}")

    print("\nqueue operations (bench/queue_ops.py):", flush=True)
    subprocess.run(
        [
            sys.executable,
            str(Path(__file__).with_name("queue_ops.py")),
            "--jobs",
            str(args.queue_jobs),
        ],
        check=True,
    )


if __name__ == "__main__":
    main()
