"""The backend quality gate: nDCG@10 on two judged sets, cosine to fp32, and speed.

For each embedding backend, the documents of CISI and of the Debian packages set
(``bench/_judged.py``) are chunked as the pipeline chunks them (the model's
tokens, ``CONVEYOR_CHUNK_SIZE``/``_OVERLAP``), embedded, and every judged query
ranks the documents by their best chunk among the 30 nearest (as ``conveyor
search`` hits do). Printed per backend: nDCG@10 on each set and its change against
ONNX fp32 (the gate: within 1%), the mean cosine of its vectors to fp32's (the
gate: at least 0.99), and chunks/s on 256-token chunks in this process.

    python bench/quality.py                        # onnx, onnx-int8, openvino-int8
    python bench/quality.py --backends torch,onnx,onnx-int8 --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _judged import cisi, debian, ndcg_at_k

from conveyor.chunking import chunk_sections
from conveyor.components import Components
from conveyor.embedding import LocalModel
from conveyor.extract import Section
from conveyor.settings import Settings

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "cisi"
REFERENCE = "onnx"


def rank_quality(
    model: LocalModel, judged: tuple[list[str], list[str], list[str], list[set[str]]]
) -> tuple[float, np.ndarray]:
    """nDCG@10 of ``model`` on one judged set, and every vector it made (chunks, queries)."""
    ids, texts, queries, relevant = judged
    s = Settings()
    owners, chunks = [], []
    for n, text in enumerate(texts):
        for chunk in chunk_sections(
            [Section(text)], model.tokenizer, s.chunk_size, s.chunk_overlap
        ):
            owners.append(n)
            chunks.append(chunk.text)
    chunk_vectors = model.embed(chunks)
    query_vectors = model.embed(queries)
    owner = np.array(owners)
    scores = []
    for row, rel in zip(query_vectors @ chunk_vectors.T, relevant, strict=True):
        nearest = np.argsort(-row)[:30]
        ranked = list(dict.fromkeys(ids[owner[j]] for j in nearest))
        scores.append(ndcg_at_k(ranked, rel, 10))
    return float(np.mean(scores)), np.vstack([chunk_vectors, query_vectors])


def chunks_256(model: LocalModel, texts: list[str], count: int) -> list[str]:
    """``count`` texts of 256 model tokens (with [CLS] and [SEP]), cut from ``texts``."""
    words = " ".join(texts).split()
    out, start = [], 0
    while len(out) < count and start < len(words):
        end = start + 200
        while model.tokenizer.count([" ".join(words[start:end])])[0] < 254:
            end += 5
        out.append(" ".join(words[start:end]))
        start = end
    return out


def speed(model: LocalModel, texts: list[str], rounds: int = 3) -> float:
    """Best chunks/s over ``rounds`` calls with all of ``texts`` (after a warm-up)."""
    model.embed(texts[:8])
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        model.embed(texts)
        best = min(best, time.perf_counter() - started)
    return len(texts) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the CISI folder")
    parser.add_argument(
        "--backends", default="onnx,onnx-int8,openvino-int8", help="comma-separated"
    )
    parser.add_argument("--models-dir", type=Path, help="exported ONNX models (default: a temp)")
    parser.add_argument("--speed-chunks", type=int, default=128, help="256-token chunks timed")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if REFERENCE not in backends:
        backends.insert(0, REFERENCE)
    sets = {"cisi": cisi(args.data), "debian": debian()}
    results: dict[str, dict[str, Any]] = {}
    vectors: dict[str, dict[str, np.ndarray]] = {}
    with tempfile.TemporaryDirectory(prefix="conveyor-quality-") as tmp:
        models = args.models_dir or Path(tmp) / "models"
        probe: list[str] = []
        for backend in backends:
            settings = Settings(home=Path(tmp), embedding_backend=backend, models_dir=models)
            components = Components(settings)
            model = components.local_embedder
            model.load()
            row: dict[str, Any] = {"backend": model.backend}
            vectors[backend] = {}
            for name, judged in sets.items():
                row[f"{name}_ndcg@10"], vectors[backend][name] = rank_quality(model, judged)
            probe = probe or chunks_256(model, sets["cisi"][1], args.speed_chunks)
            row["chunks_per_s_256"] = speed(model, probe)
            results[backend] = row
            components.close()
    ref = results[REFERENCE]
    for backend, row in results.items():
        for name in sets:
            row[f"{name}_change"] = row[f"{name}_ndcg@10"] / ref[f"{name}_ndcg@10"] - 1
            cos = np.sum(vectors[backend][name] * vectors[REFERENCE][name], axis=1)
            row[f"{name}_cosine"] = float(np.mean(cos))
        row["passes"] = all(
            row[f"{n}_change"] >= -0.01 and row[f"{n}_cosine"] >= 0.99 for n in sets
        )
    if args.json:
        print(json.dumps(results))
        return
    print(
        f"{'backend':<13} {'CISI nDCG@10':>18} {'Debian nDCG@10':>18} {'cosine':>13} "
        f"{'chunks/s':>9} gate"
    )
    for backend, r in results.items():
        print(
            f"{backend:<13} {r['cisi_ndcg@10']:>9.4f} ({r['cisi_change']:+.1%}) "
            f"{r['debian_ndcg@10']:>9.4f} ({r['debian_change']:+.1%}) "
            f"{r['cisi_cosine']:.4f}/{r['debian_cosine']:.4f} {r['chunks_per_s_256']:>9.1f} "
            f"{'pass' if r['passes'] else 'FAIL'}"
        )


if __name__ == "__main__":
    main()
