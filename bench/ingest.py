"""Ingest throughput, and what the pipeline costs on top of the model.

Generates a corpus of plain-text documents of varied English prose, ingests it
with conveyor (workers + compactor in-process, the model already loaded), then
encodes the very same chunks with the same model in one call, and prints:

  documents/s, chunks/s, peak memory, and
  ratio = ingest wall time / raw model encode time   (goal: <= 1.10)

With --cli it also times `conveyor ingest` as a user runs it, against the raw
model in a process of its own (both with Python start-up and model load): the
ratio the goal is set on.

    python bench/ingest.py                 # 300 documents of ~2,000 words
    python bench/ingest.py --docs 50 --words 1000 --concurrency 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from conveyor.app import Conveyor
from conveyor.components import Components
from conveyor.settings import Settings
from conveyor.testing import prose

RAW_PROCESS = """
import json, sys
from conveyor.components import Components
from conveyor.settings import Settings
model = Components(Settings()).local_embedder
model.embed(json.load(open(sys.argv[1])))
"""
"""The raw model in a process of its own: the same backend, loaded and run on the chunks."""


def cpu_seconds() -> float:
    """CPU time of this process (all threads) and its children, living or reaped (the
    extraction children live as long as the ingest): less swayed by other jobs on a
    shared machine than wall time."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    gone = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = me.ru_utime + me.ru_stime + gone.ru_utime + gone.ru_stime
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path("/proc/self/task").iterdir():
        try:
            pids = (task / "children").read_text().split()
        except OSError:
            continue
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=300, help="documents (default 300)")
    parser.add_argument("--words", type=int, default=2000, help="words per document")
    parser.add_argument("--concurrency", type=int, default=2, help="in-process workers")
    parser.add_argument("--cli", action="store_true", help="also time the CLI end to end")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        for i in range(args.docs):
            (corpus / f"doc-{i:05d}.txt").write_text(prose(i, args.words))
        print(f"corpus: {args.docs} documents x ~{args.words} words", flush=True)

        settings = Settings(home=Path(tmp) / "home", concurrency=args.concurrency)
        model = Components(settings).local_embedder  # CONVEYOR_EMBEDDING_BACKEND's
        print(f"backend: {model.backend}", flush=True)
        t = time.perf_counter()
        model.load()
        model.embed(["warm up the model"] * 8)
        load_s = time.perf_counter() - t

        with Conveyor(settings, embedder=model) as cv:
            t, cpu = time.perf_counter(), cpu_seconds()
            summary = cv.ingest([corpus])
            ingest_s = time.perf_counter() - t
            ingest_cpu = cpu_seconds() - cpu
            ingest_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            texts = [r.text for r in cv.components.vectors.iter_chunks("default", vectors=False)]
        assert summary.failed == 0, summary.failures

        t, cpu = time.perf_counter(), cpu_seconds()
        model.embed(texts)
        raw_s = time.perf_counter() - t
        raw_cpu = cpu_seconds() - cpu
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        print(f"model load:        {load_s:8.2f} s (not in either figure below)")
        print(
            f"ingest:            {ingest_s:8.2f} s  {summary.done} documents, {len(texts)} chunks"
        )
        print(f"raw model encode:  {raw_s:8.2f} s  same {len(texts)} chunks, one call")
        print(f"documents/s:       {summary.done / ingest_s:8.2f}")
        rate, raw_rate = len(texts) / ingest_s, len(texts) / raw_s
        print(f"chunks/s:          {rate:8.2f}  (raw model: {raw_rate:.2f})")
        print(f"ratio ingest/raw:  {ingest_s / raw_s:8.3f}  (goal <= 1.10)")
        print(
            f"CPU seconds:       {ingest_cpu:8.2f} ingest, {raw_cpu:.2f} raw model"
            f" (ratio {ingest_cpu / raw_cpu:.3f})"
        )
        print(f"peak RSS, ingest:  {ingest_peak:8.0f} MiB  (model loaded; before the raw encode)")
        print(f"peak RSS, overall: {peak_mb:8.0f} MiB  (the raw encode of every chunk at once)")

        if args.cli:
            exe = Path(sys.executable).parent / "conveyor"
            t = time.perf_counter()
            subprocess.run(
                [
                    str(exe),
                    "ingest",
                    str(corpus),
                    "--home",
                    str(Path(tmp) / "cli-home"),
                    "--concurrency",
                    str(args.concurrency),
                ],
                check=True,
                capture_output=True,
            )
            cli_s = time.perf_counter() - t
            # the raw side as the CLI's: a fresh process that loads the same backend and
            # encodes the same chunks, and nothing else
            chunks = Path(tmp) / "chunks.json"
            chunks.write_text(json.dumps(texts))
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", RAW_PROCESS, str(chunks)], check=True)
            fresh_s = time.perf_counter() - t
            print(f"CLI end to end:    {cli_s:8.2f} s  (process start + model load included)")
            print(f"raw, own process:  {fresh_s:8.2f} s  (process start + model load included)")
            print(f"ratio CLI/raw:     {cli_s / fresh_s:8.3f}  (goal <= 1.10)")


if __name__ == "__main__":
    main()
