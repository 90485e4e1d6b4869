"""Chaos: workers SIGKILLed and restarted, the compactor killed mid-merge; nothing lost,
nothing doubled.

~200 generated documents, 10% of them corrupt; 3 `conveyor worker` processes
(each with its own model) and one `conveyor compactor`. Every few seconds one
worker is SIGKILLed and started again; once, while deltas are being merged,
the compactor is SIGKILLed and started again. At the end every good document
is searchable with exactly its chunk count, every corrupt one is dead-lettered
with its reason, and the queue is empty with nothing in flight.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from support import stop_processes

from conveyor.app import Conveyor
from conveyor.settings import Settings
from conveyor.testing import make_pdf, prose

from .helpers import BUSY, run, start

ENV = {"CONVEYOR_VISIBILITY_TIMEOUT": "3", **BUSY}
GOOD, CORRUPT = 180, 20
DEADLINE = 240.0


def corpus(root: Path) -> tuple[set[str], set[str]]:
    rng = random.Random(42)
    good, bad = set(), set()
    for i in range(GOOD):
        path = root / f"doc-{i:03d}.txt"
        path.write_text(f"Document {i} is about topic {i}.\n\n" + prose(i, rng.randint(30, 160)))
        good.add(path.as_uri())
    for i in range(CORRUPT):
        path = root / f"bad-{i:02d}.pdf"
        if i % 2:
            make_pdf(str(path), [prose(1000 + i, 100)])
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 3])  # truncated PDF
        else:
            path.write_bytes(bytes(rng.randrange(256) for _ in range(2048)))  # binary blob
        bad.add(path.as_uri())
    return good, bad


@pytest.mark.slow
def test_chaos(tmp_path: Path) -> None:
    docs, home, logs = tmp_path / "docs", tmp_path / "home", tmp_path / "logs"
    docs.mkdir()
    logs.mkdir()
    good, bad = corpus(docs)
    run("ingest", str(docs), "--no-wait", home=home, **ENV)

    def worker(n: int) -> subprocess.Popen[bytes]:
        return start(
            "worker", "--no-compactor", "-j", "2", home=home, log=logs / f"worker-{n}.log", **ENV
        )

    workers = [worker(n) for n in range(3)]
    compactor = start("compactor", home=home, log=logs / "compactor.log", **ENV)
    kills, compactor_killed = 0, False
    started = time.monotonic()
    # A worker dies every few seconds, and sooner when work runs ahead of the clock:
    # each tenth of the corpus settled brings the next kill forward, so even a fast run
    # (jobs embedded in groups) sees its kills before it ends.
    next_kill, next_share = started + 8.0, (GOOD + CORRUPT) // 10
    observer = Conveyor(Settings(home=home))  # reads status in-process: polling stays cheap
    try:
        while True:
            s = observer.status()
            q, d, deltas = s["queue"], s["documents"], s["deltas"]
            finished = d["done"] + d["failed"] == GOOD + CORRUPT
            if (
                finished
                and q["visible"] == q["in_flight"] == q["delayed"] == 0
                and deltas["pending"] == 0
            ):
                break
            assert time.monotonic() - started < DEADLINE, f"not finished: {s}"
            if not compactor_killed and deltas["applied"] >= 20 and deltas["pending"] > 0:
                compactor.kill()
                compactor.wait()
                compactor_killed = True
                time.sleep(1.0)
                compactor = start("compactor", home=home, log=logs / "compactor.log", **ENV)
            settled = d["done"] + d["failed"]
            if (time.monotonic() >= next_kill or settled >= next_share) and not finished:
                victim = kills % 3
                workers[victim].kill()
                workers[victim].wait()
                workers[victim] = worker(victim)
                kills += 1
                next_kill = time.monotonic() + random.uniform(4.0, 7.0)
                next_share = settled + (GOOD + CORRUPT) // 10
            time.sleep(0.5)
    finally:
        observer.close()
        stop_processes([*workers, compactor])

    assert kills >= 3, "the run ended before the chaos began"
    assert compactor_killed, "the compactor was never caught merging"

    documents = json.loads(run("documents", "--json", home=home, **ENV).stdout)
    by_source = {d["source"]: d for d in documents}
    assert set(by_source) == good | bad
    assert all(by_source[s]["state"] == "done" and by_source[s]["chunks"] > 0 for s in good)
    assert all(by_source[s]["state"] == "failed" and by_source[s]["error"] for s in bad)

    chunks = [json.loads(line) for line in run("export", home=home, **ENV).stdout.splitlines()]
    ids = Counter(c["id"] for c in chunks)
    assert [i for i, n in ids.items() if n > 1] == [], "duplicated chunks"
    per_doc: dict[str, list[int]] = {}
    for c in chunks:
        per_doc.setdefault(c["source"], []).append(c["chunk_index"])
    for source in good:
        expected = by_source[source]["chunks"]
        assert sorted(per_doc.get(source, [])) == list(range(expected)), source
    assert set(per_doc) == good

    with Conveyor(Settings(home=home)) as observer:
        final = observer.status()
    assert final["queue"] == {"visible": 0, "in_flight": 0, "delayed": 0, "dead": CORRUPT}
    letters = json.loads(run("dlq", "list", "--json", home=home, **ENV).stdout)
    assert {entry["source"] for entry in letters} == bad
    assert all(entry["error"] for entry in letters)

    target = next(
        c for c in chunks if c["source"].endswith("doc-017.txt") and c["chunk_index"] == 0
    )
    hits = json.loads(run("search", target["text"], "-k", "1", "--json", home=home, **ENV).stdout)
    assert hits[0]["id"] == target["id"]
