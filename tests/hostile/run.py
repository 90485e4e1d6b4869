"""Ingest the hostile corpus, one fresh worker process per file, and report for each
file its outcome, reason, wall time and the worker's peak memory (its own RSS: the
extraction child is counted apart, under its limit).

    PYTHONPATH=. python tests/hostile/run.py                 # every file
    PYTHONPATH=. python tests/hostile/run.py one-line-50mb.md --json report.json

The worker uses the real model's tokenizer (chunking is what costs) and a fake
embedder (the model's memory is the same for every file). ``CONVEYOR_*`` variables
apply, so ``CONVEYOR_EXTRACT_MEMORY_MB=512`` runs the corpus under another limit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for `hostile`

from hostile import CORPUS, Hostile


@dataclass
class Row:
    name: str
    size: int
    outcome: str
    reason: str
    wall_s: float
    peak_rss_mb: float
    """The worker's peak resident memory."""
    growth_mb: float
    """How far the peak rose above the worker's memory before the file."""
    expected: str
    ok: bool


def _status_mb(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (its peak) of this process, in MB. Not
    ``ru_maxrss``: Linux carries that across fork and exec, so a worker would report
    the runner's size."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return 0.0  # pragma: no cover - not Linux


def worker(path: Path, home: Path) -> dict[str, object]:
    """In the worker process: ingest one file, measure."""
    from conveyor.app import Conveyor
    from conveyor.embedding.local import LocalEmbedder
    from conveyor.settings import Settings
    from conveyor.testing import FakeEmbedder

    settings = Settings(home=home)
    fake = FakeEmbedder()
    fake.tokenizer = LocalEmbedder(settings.model).tokenizer  # type: ignore[assignment]
    with Conveyor(settings, embedder=fake) as cv:
        cv.components.extractor.extract(b"warm up", name="w.txt")  # start the child
        before = _status_mb("VmRSS")
        started = time.perf_counter()
        summary = cv.ingest([path])
        wall = time.perf_counter() - started
        peak = _status_mb("VmHWM")
    reason = summary.failures[0]["error"] if summary.failures else ""
    outcome = "done" if summary.done else "failed" if summary.failed else "other"
    return {
        "outcome": outcome,
        "reason": reason,
        "wall_s": wall,
        "peak": peak,
        "growth": max(0.0, peak - before),
    }


def run(hostile: Hostile, folder: Path, env: dict[str, str] | None = None) -> Row:
    """Make the file, ingest it in a fresh worker process, report."""
    path = folder / hostile.name
    path.write_bytes(hostile.make())
    home = folder / f"home-{hostile.name}"
    answer = subprocess.run(
        [sys.executable, __file__, "--worker", str(path), str(home)],
        capture_output=True,
        text=True,
        env={**os.environ, **hostile.env, **(env or {})},
        check=False,
    )
    size = path.stat().st_size
    path.unlink()
    if answer.returncode != 0:
        tail = (answer.stderr.strip().splitlines() or ["?"])[-1]
        return Row(hostile.name, size, "crashed", tail, 0.0, 0.0, 0.0, hostile.outcome, False)
    got = json.loads(answer.stdout.strip().splitlines()[-1])
    ok = got["outcome"] == hostile.outcome and hostile.reason in got["reason"]
    return Row(
        hostile.name,
        size,
        got["outcome"],
        got["reason"],
        round(got["wall_s"], 2),
        round(got["peak"], 1),
        round(got["growth"], 1),
        hostile.outcome,
        ok,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="files of the corpus (default: all)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(Path(args.worker[0]), Path(args.worker[1]))))
        return 0
    chosen = [h for h in CORPUS if not args.names or h.name in args.names]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for hostile in chosen:
            row = run(hostile, Path(folder))
            rows.append(row)
            print(
                f"{'ok ' if row.ok else 'BAD'} {row.name:24} {row.outcome:7} "
                f"{row.wall_s:7.2f} s  peak {row.peak_rss_mb:7.1f} MB "
                f"(+{row.growth_mb:.1f})  {row.reason[:110]}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
