"""Search latency on 100,000 chunks in the embedded default (sqlite-vec + FTS5).

Generates ``--chunks`` chunks of ~120 words drawn from a Zipf-distributed
vocabulary of 30,000 made-up words (so that, as in real text, a few words are
in most chunks and most words in few), with vectors near real embeddings of
some of them (the model embeds 256 texts; each chunk's vector is one of those
plus noise: the cost of a brute-force search does not depend on what the
vectors mean). They are written the way the compactor writes them — the
vector store's and the lexical index's ``replace_document``, 100 chunks a
document — into a fresh home, then, with the model loaded:

* single queries (4–8 words, drawn from the same vocabulary), one at a time,
  in each mode: p50, p95 and p99 of the whole ``Conveyor.search_results`` call
  (embedding the query included);
* ``search --batch``: ``--batch`` queries answered by one ``search_many``
  call, as ``conveyor search --batch`` does, in queries per second.

    python bench/search.py                         # 100,000 chunks
    python bench/search.py --chunks 20000 --queries 100 --json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from conveyor.app import Conveyor
from conveyor.evaluation import percentile
from conveyor.search import MODES
from conveyor.settings import Settings
from conveyor.vectorstore import ChunkRecord

SYLLABLES = "ka ri to mu se lo na vi pe du ga zo hi fa ne ru mo ta li be".split()


def vocabulary(rng: np.random.Generator, size: int = 30_000) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        n = int(rng.integers(2, 5))
        words.add("".join(rng.choice(SYLLABLES, n)))
    return sorted(words)


def zipf_words(rng: np.random.Generator, vocab: list[str], n: int) -> list[str]:
    ranks = rng.zipf(1.15, n) - 1
    return [vocab[r % len(vocab)] for r in ranks]


def build(cv: Conveyor, chunks: int, rng: np.random.Generator, vocab: list[str]) -> float:
    texts = [" ".join(zipf_words(rng, vocab, int(rng.integers(90, 150)))) for _ in range(chunks)]
    model = cv.components.local_embedder
    base = model.embed(texts[:256])
    vectors = base[np.arange(chunks) % len(base)] + rng.normal(0, 0.02, (chunks, base.shape[1]))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    c = cv.components
    c.vectors.ensure_collection("default", dim=base.shape[1], model_id=model.model_id)
    assert c.lexical is not None
    started = time.perf_counter()
    for start in range(0, chunks, 100):
        doc = f"doc{start // 100:05d}"
        records = [
            ChunkRecord(
                id=f"{doc}-{i - start}",
                document_id=doc,
                chunk_index=i - start,
                text=texts[i],
                source=f"file:///bench/{doc}.txt",
                metadata={"kind": "text"},
                vector=vectors[i],
            )
            for i in range(start, min(start + 100, chunks))
        ]
        c.vectors.replace_document("default", doc, records)
        c.lexical.replace_document("default", doc, records)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200, help="single queries per mode")
    parser.add_argument("--batch", type=int, default=1000, help="queries in the batch run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    vocab = vocabulary(rng)
    queries = [
        " ".join(zipf_words(rng, vocab, int(rng.integers(4, 9))))
        for _ in range(max(args.queries, args.batch))
    ]
    home = Path(tempfile.mkdtemp(prefix="conveyor-search-bench-"))
    out: dict[str, Any] = {"chunks": args.chunks}
    try:
        with Conveyor(Settings().with_home(home)) as cv:
            cv.components.local_embedder.embed(["load the model"])
            out["write_s"] = round(build(cv, args.chunks, rng, vocab), 1)
            for mode in MODES:  # warm: caches, the first query's plans
                cv.search_results(queries[:3], 10, mode=mode)
            model = cv.components.query_embedder
            embed_ms = []
            for q in queries[: args.queries]:
                started = time.perf_counter()
                model.embed([q])
                embed_ms.append((time.perf_counter() - started) * 1000)
            out["embed_query_ms"] = {"p50": round(percentile(embed_ms, 50), 1)}
            for mode in MODES:
                ms = []
                for q in queries[: args.queries]:
                    started = time.perf_counter()
                    cv.search_results([q], 10, mode=mode)
                    ms.append((time.perf_counter() - started) * 1000)
                out[mode] = {p: round(percentile(ms, int(p[1:])), 1) for p in ("p50", "p95", "p99")}
            for mode in MODES:
                started = time.perf_counter()
                cv.search_many(queries[: args.batch], 10, mode=mode)
                seconds = time.perf_counter() - started
                out[mode]["batch_qps"] = round(args.batch / seconds, 1)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    if args.json:
        print(json.dumps(out))
        return
    print(f"{out['chunks']:,} chunks written in {out['write_s']} s (vectors + lexical index)")
    print(f"embedding one query alone: p50 {out['embed_query_ms']['p50']} ms")
    print(f"{'mode':<8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'batch q/s':>10}")
    for mode in MODES:
        r = out[mode]
        print(f"{mode:<8} {r['p50']:>8} {r['p95']:>8} {r['p99']:>8} {r['batch_qps']:>10}")


if __name__ == "__main__":
    main()
