"""Retrieval quality on the CISI test collection: nDCG@10 and recall@10 of conveyor search.

Each CISI document (title + abstract) becomes ``<id>.txt`` in a temporary
folder, which is ingested into a fresh home with the library API (workers,
extraction children, compactor: the whole path); then every query that has
relevance judgments is searched with ``search_many``. Hits are chunks, so a
document's rank is that of its best chunk: ``--chunks`` nearest chunks are
fetched and the first ``--k`` distinct documents are scored (binary
relevance, see ``bench/_metrics.py``). The model is loaded before the clock
for ingest starts.

    python bench/cisi.py
    python bench/cisi.py --backend onnx-int8 --json
    python bench/cisi.py --data /elsewhere/cisi
    CONVEYOR_CONTEXTUAL_HEADERS=true python bench/cisi.py --markdown

all-MiniLM-L6-v2 (torch), 1,460 documents in 1,823 chunks, 76 judged queries:
nDCG@10 0.4299, recall@10 0.1464, MRR@10 0.6218, the same with the
hand-written extractors and with the libraries.
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

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _metrics import first_occurrences, mean, mrr_at_k, ndcg_at_k, recall_at_k

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "cisi"


def read_records(path: Path) -> dict[str, dict[str, str]]:
    """SMART-format records: ``.I id`` starts one, a ``.T``/``.W``/... line starts a field."""
    records: dict[str, dict[str, list[str]]] = {}
    fields: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in path.read_text(encoding="ascii", errors="replace").splitlines():
        if line.startswith(".I "):
            fields = records[line[3:].strip()] = {}
            current = None
        elif len(line) == 2 and line[0] == "." and line[1].isalpha():
            current = fields.setdefault(line[1], [])
        elif current is not None:
            current.append(line.strip())
    return {
        rid: {key: " ".join(lines).strip() for key, lines in record.items()}
        for rid, record in records.items()
    }


def read_judgments(path: Path) -> dict[str, set[str]]:
    """``query doc 0 0.0`` lines → query id → relevant document ids."""
    relevant: dict[str, set[str]] = {}
    for line in path.read_text(encoding="ascii").splitlines():
        parts = line.split()
        if len(parts) >= 2:
            relevant.setdefault(parts[0], set()).add(parts[1])
    return relevant


def evaluate(
    data: Path, home: Path, corpus: Path, k: int, chunks: int, markdown: bool = False
) -> dict[str, Any]:
    import conveyor

    documents = read_records(data / "CISI.ALL")
    queries = read_records(data / "CISI.QRY")
    judgments = read_judgments(data / "CISI.REL")
    corpus.mkdir(parents=True)
    for doc_id, doc in documents.items():
        if markdown:  # the title as a heading: extraction knows it (contextual headers)
            text = f"# {doc.get('T', '')}\n\n{doc.get('W', '')}\n"
            (corpus / f"{doc_id}.md").write_text(text, encoding="utf-8")
        else:
            text = f"{doc.get('T', '')}\n\n{doc.get('W', '')}\n"
            (corpus / f"{doc_id}.txt").write_text(text, encoding="utf-8")
    judged = [q for q in queries if judgments.get(q)]

    with conveyor.open(home) as cv:
        started = time.perf_counter()
        model = cv.components.local_embedder
        model.load()
        model.embed(["warm up the model"])
        load_s = time.perf_counter() - started
        summary = cv.ingest([corpus])
        if summary.failed:
            raise SystemExit(f"{summary.failed} documents failed: {summary.failures[:3]}")
        started = time.perf_counter()
        hits = cv.search_many([queries[q]["W"] for q in judged], k=chunks)
        search_s = time.perf_counter() - started

    ndcg, recall, mrr = [], [], []
    for query_id, query_hits in zip(judged, hits, strict=True):
        ranked = first_occurrences(Path(hit.source).stem for hit in query_hits)
        relevant = judgments[query_id]
        ndcg.append(ndcg_at_k(ranked, relevant, k))
        recall.append(recall_at_k(ranked, relevant, k))
        mrr.append(mrr_at_k(ranked, relevant, k))
    return {
        "backend": cv.settings.embedding_backend,
        "model": cv.settings.model,
        "documents": len(documents),
        "chunks": summary.chunks,
        "format": "markdown" if markdown else "text",
        "contextual_headers": cv.settings.contextual_headers,
        "queries": len(judged),
        f"ndcg@{k}": round(mean(ndcg), 4),
        f"recall@{k}": round(mean(recall), 4),
        f"mrr@{k}": round(mean(mrr), 4),
        "model_load_s": round(load_s, 2),
        "ingest_s": round(summary.seconds, 2),
        "search_s": round(search_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the CISI folder")
    parser.add_argument(
        "--backend",
        choices=("torch", "onnx", "onnx-int8", "openvino-int8"),
        help="sets CONVEYOR_EMBEDDING_BACKEND (default: as configured)",
    )
    parser.add_argument("--k", type=int, default=10, help="cut-off (default 10)")
    parser.add_argument(
        "--chunks", type=int, default=30, help="nearest chunks fetched per query (default 30)"
    )
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="write each document as Markdown with its title as a heading (so extraction "
        "knows the title; compare CONVEYOR_CONTEXTUAL_HEADERS=true and false)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.backend:
        os.environ["CONVEYOR_EMBEDDING_BACKEND"] = args.backend
    if not (args.data / "CISI.ALL").is_file():
        raise SystemExit(f"no CISI.ALL in {args.data}; pass --data FOLDER")

    with tempfile.TemporaryDirectory(prefix="conveyor-cisi-") as tmp:
        result = evaluate(
            args.data,
            Path(tmp) / "home",
            Path(tmp) / "corpus",
            args.k,
            max(args.chunks, args.k),
            args.markdown,
        )
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:<13} {value}")


if __name__ == "__main__":
    main()
