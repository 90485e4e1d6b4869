"""The Lambda handler on SQS batches of small documents: records grouped through the
model (the default) against one record at a time (``CONVEYOR_JOB_GROUP=1``).

Generates one-chunk plain-text documents, loads the default model once (a warm
container), then hands the handler SQS batches of job messages, as an event source
mapping would, each batch's records merged before it returns; prints documents/s
and CPU seconds for each way, in one run, and their ratio.

    python bench/lambda_batch.py                      # 20 batches of 10 records
    python bench/lambda_batch.py --batches 10 --size 50 --words 200
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from conveyor.aws import lambda_handler
from conveyor.components import Components
from conveyor.settings import Settings
from conveyor.testing import prose


class Context:
    """A Lambda context with the function's whole 15 minutes left."""

    def __init__(self) -> None:
        self.deadline = time.monotonic() + 900

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.monotonic()) * 1000)


def record(path: Path) -> dict[str, Any]:
    body = {"source": path.as_uri(), "collection": "default", "run": "bench"}
    return {
        "messageId": str(uuid.uuid4()),
        "body": json.dumps(body),
        "attributes": {"ApproximateReceiveCount": "1"},
    }


def run(files: list[Path], size: int, home: Path, group: int, model: Any) -> dict[str, float]:
    """The files through the handler in batches of ``size``; seconds, CPU, documents."""
    lambda_handler.reset()
    state = lambda_handler.warm(Settings(home=home, job_group=group), embedder=model)
    started, cpu, retried = time.perf_counter(), time.process_time(), 0
    for at in range(0, len(files), size):
        event = {"Records": [record(f) for f in files[at : at + size]]}
        retried += len(lambda_handler.handler(event, Context())["batchItemFailures"])
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    done = state.components.catalog.counts().get("done", 0)
    lambda_handler.reset()
    return {"seconds": seconds, "cpu": cpu, "done": done, "retried": retried}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=20, help="SQS batches")
    parser.add_argument("--size", type=int, default=10, help="records a batch")
    parser.add_argument("--words", type=int, default=60, help="words a document")
    args = parser.parse_args()
    n = args.batches * args.size
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        files = []
        for i in range(n):
            files.append(corpus / f"doc-{i:05d}.txt")
            files[-1].write_text(prose(i, args.words), encoding="utf-8")
        model = Components(Settings()).local_embedder  # one warm container's model
        model.embed(["warm up"])
        print(f"{args.batches} batches of {args.size} records, ~{args.words} words each")
        print(f"backend: {model.backend}")
        results = {}
        for name, group in (("one at a time", 1), ("grouped", Settings().job_group)):
            r = run(files, args.size, Path(tmp) / f"home-{group}", group, model)
            results[name] = r
            if r["done"] != n or r["retried"]:
                sys.exit(f"{name}: {r['done']:.0f} of {n} done, {r['retried']:.0f} retried")
            print(
                f"{name:<14} {r['seconds']:7.2f} s  {n / r['seconds']:7.1f} documents/s"
                f"  CPU {r['cpu']:6.2f} s"
            )
        ratio = results["one at a time"]["seconds"] / results["grouped"]["seconds"]
        print(f"grouped is {ratio:.2f}x one at a time")


if __name__ == "__main__":
    main()
