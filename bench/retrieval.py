"""Retrieval quality of dense, lexical and hybrid search, on two judged sets.

* ``cisi`` — the CISI test collection (``../shared/data/cisi``): 1,460
  library-science abstracts, the 76 queries that have relevance judgments.
* ``debian`` — a known-item set built from this machine's package database
  (``/var/lib/dpkg/status``): each package's long description is a document,
  its one-line synopsis the query, and the package itself the one relevant
  answer. Packages whose long description (or synopsis) another package
  shares are left out, so every query has exactly one right answer. It is the
  second set the settings chosen on CISI are checked on, not tuned on.

Each set is written as ``<id>.txt`` files plus ``queries.txt`` and
``qrels.trec``, ingested into a fresh home with the library API (workers,
extraction, compactor: the whole path, the model loaded before the clock
starts), then evaluated by ``conveyor.evaluation`` — what ``conveyor eval``
runs — in each mode. ``--fusion dbsf`` fuses hybrid's two rankings by
their scaled scores instead of their ranks (``CONVEYOR_FUSION``; see
``conveyor.search``). ``--grid`` also scores hybrid under other fusion
constants and weights, to show how flat the choice is; ``--keep DIR`` keeps
the homes and files, so that ``conveyor eval`` can be run on them by hand.
``--dump DIR`` writes each judged query's dense and lexical rankings, with
their scores, to ``DIR/<set>.jsonl``: ``bench/fusion.py`` scores other ways of
fusing them from there, in seconds, without searching again.

    python bench/retrieval.py                      # both sets, the three modes
    python bench/retrieval.py --set cisi --grid --json
    python bench/retrieval.py --fusion dbsf
    python bench/retrieval.py --dump /tmp/rankings && python bench/fusion.py /tmp/rankings
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cisi import read_judgments, read_records  # noqa: E402  (bench/ is on the path)

from conveyor import evaluation  # noqa: E402
from conveyor.search import MODES, Fusion, Method  # noqa: E402

CISI = REPO / ".." / "shared" / "data" / "cisi"
DPKG = Path("/var/lib/dpkg/status")
DEBIAN_QUERIES = 300  # a fixed sample (by hash of the name): every document stays in
GRID = [(c, w) for c in (10.0, 30.0, 60.0, 100.0) for w in (0.5, 1.0, 2.0)]
DUMP_DEPTH = 200  # chunks of each ranking written by --dump: the depth evaluation reads


def cisi(folder: Path) -> tuple[dict[str, str], list[tuple[str, str]], dict[str, dict[str, float]]]:
    """Documents (title + abstract), queries, judgments (CISI.REL: ``query doc 0 0.0``)."""
    docs = read_records(folder / "CISI.ALL")
    queries = read_records(folder / "CISI.QRY")
    judged = {
        q: dict.fromkeys(relevant, 1.0)
        for q, relevant in read_judgments(folder / "CISI.REL").items()
    }
    texts = {d: f"{f.get('T', '')}\n\n{f.get('W', '')}\n" for d, f in docs.items()}
    return texts, [(q, f["W"]) for q, f in queries.items()], judged


def debian(
    status: Path,
) -> tuple[dict[str, str], list[tuple[str, str]], dict[str, dict[str, float]]]:
    """Known items from the package database: long description ← synopsis."""
    found: dict[str, tuple[str, str]] = {}
    for block in status.read_text(encoding="utf-8", errors="replace").split("\n\n"):
        name = re.search(r"^Package: (.+)$", block, re.M)
        desc = re.search(r"^Description: (.*)\n((?: .*\n?)*)", block, re.M)
        if not (name and desc):
            continue
        body = "\n".join(
            "" if line.strip() == "." else line.strip() for line in desc.group(2).splitlines()
        ).strip()
        if len(body.split()) >= 12:
            found[name.group(1)] = (desc.group(1).strip(), body)
    synopses = [s for s, _ in found.values()]
    bodies = [b for _, b in found.values()]
    unique = {
        name: pair
        for name, pair in found.items()
        if synopses.count(pair[0]) == 1 and bodies.count(pair[1]) == 1
    }
    texts = {name: body + "\n" for name, (_, body) in unique.items()}
    asked = sorted(unique, key=lambda n: hashlib.sha256(n.encode()).hexdigest())[:DEBIAN_QUERIES]
    queries = [(name, unique[name][0]) for name in sorted(asked)]
    return texts, queries, {name: {name: 1.0} for name in asked}


def write_set(
    root: Path, texts: dict[str, str], queries: list[tuple[str, str]], judged: dict[str, Any]
) -> None:
    (root / "docs").mkdir(parents=True)
    for doc_id, text in texts.items():
        (root / "docs" / f"{doc_id}.txt").write_text(text, encoding="utf-8")
    (root / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries)
    )
    (root / "qrels.trec").write_text(
        "".join(f"{q} 0 {d} {int(g)}\n" for q, docs in judged.items() for d, g in docs.items())
    )


class Memo:
    """An embedder that remembers the vector of each text it was asked for."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.model_id, self.seen = inner, inner.model_id, {}

    def embed(self, texts: list[str]) -> Any:
        import numpy as np

        missing = [t for t in dict.fromkeys(texts) if t not in self.seen]
        if missing:
            self.seen.update(zip(missing, self.inner.embed(missing), strict=True))
        return np.stack([self.seen[t] for t in texts])


def dump_rankings(
    cv: Any, queries: list[tuple[str, str]], judged: dict[str, dict[str, float]], path: Path
) -> None:
    """Each judged query's dense and lexical rankings (``[document, chunk id, score]``,
    best first), searched one query at a time as the evaluation searches them."""
    key = evaluation.document_key(None)
    with path.open("w", encoding="utf-8") as out:
        for qid, text in queries:
            if not judged.get(qid):
                continue
            row: dict[str, Any] = {"query": qid, "relevant": judged[qid]}
            for mode in ("dense", "lexical"):
                hits = cv.search(text, DUMP_DEPTH, mode=mode)
                row[mode] = [[key(h), h.id, h.score] for h in hits]
            out.write(json.dumps(row) + "\n")


def run_set(
    name: str,
    root: Path,
    model: Any,
    grid: bool,
    dump: Path | None = None,
    fusion: Method | None = None,
) -> dict[str, Any]:
    from conveyor.app import Conveyor
    from conveyor.settings import Settings

    queries = evaluation.read_queries(root / "queries.jsonl")
    judged = evaluation.read_qrels(root / "qrels.trec")
    out: dict[str, Any] = {"set": name, "runs": []}
    with Conveyor(Settings().with_home(root / "home"), embedder=model) as cv:
        started = time.perf_counter()
        summary = cv.ingest([root / "docs"])
        out.update(
            documents=summary.enqueued,
            chunks=cv.components.vectors.count("default"),
            ingest_s=round(time.perf_counter() - started, 1),
        )
        if summary.failed:
            raise SystemExit(f"{summary.failed} documents failed: {summary.failures[:3]}")
        searcher = cv.components.searcher
        if fusion:
            searcher.fusion = replace(searcher.fusion, method=fusion)
        default = searcher.fusion
        out["fusion"] = default.method
        for mode in MODES:
            report = evaluation.evaluate(
                lambda text, n, mode=mode: cv.search(text, n, mode=mode), queries, judged, mode=mode
            )
            out["runs"].append(report.as_dict())
        if dump:
            dump.mkdir(parents=True, exist_ok=True)
            dump_rankings(cv, queries, judged, dump / f"{name}.jsonl")
        if grid:  # the same queries again and again: their vectors are computed once
            searcher.embedder = Memo(searcher.embedder)
            out["grid"] = []
            for constant, weight in GRID:
                searcher.fusion = Fusion(
                    constant=constant, lexical_weight=weight, method=default.method
                )
                report = evaluation.evaluate(
                    lambda text, n: cv.search(text, n, mode="hybrid"),
                    queries,
                    judged,
                    mode="hybrid",
                )
                out["grid"].append(
                    {"constant": constant, "lexical_weight": weight, **report.as_dict()}
                )
            searcher.fusion, searcher.embedder = default, searcher.embedder.inner
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", choices=("cisi", "debian", "both"), default="both")
    parser.add_argument("--data", type=Path, default=CISI, help="the CISI folder")
    parser.add_argument("--grid", action="store_true", help="also other fusion settings")
    parser.add_argument(
        "--fusion", choices=("rrf", "dbsf"), help="how hybrid fuses (default: the settings')"
    )
    parser.add_argument("--keep", type=Path, help="keep the homes and files in this folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--dump", type=Path, help="write each set's rankings to DIR/<set>.jsonl (bench/fusion.py)"
    )
    args = parser.parse_args()
    if args.set != "debian" and not (args.data / "CISI.ALL").is_file():
        raise SystemExit(f"no CISI.ALL in {args.data}; pass --data FOLDER")

    from conveyor.components import Components
    from conveyor.settings import Settings

    model = Components(Settings()).local_embedder
    model.embed(["warm up the model"])
    base = Path(tempfile.mkdtemp(prefix="conveyor-retrieval-"))
    results = []
    try:
        for name in ("cisi", "debian") if args.set == "both" else (args.set,):
            texts, queries, judged = cisi(args.data) if name == "cisi" else debian(DPKG)
            root = (args.keep or base) / name
            if (root / "docs").exists():  # kept from an earlier run: ingest skips what is there
                shutil.rmtree(root / "docs")
                (root / "queries.jsonl").unlink()
                (root / "qrels.trec").unlink()
            write_set(root, texts, queries, judged)
            results.append(run_set(name, root, model, args.grid, args.dump, args.fusion))
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    if args.json:
        print(json.dumps({"sets": results}, indent=2))
        return
    for r in results:
        print(
            f"\n{r['set']}: {r['documents']} documents, {r['chunks']} chunks, "
            f"ingested in {r['ingest_s']} s; {r['runs'][0]['queries']} judged queries; "
            f"hybrid fused by {r['fusion']}"
        )
        print(f"{'mode':<8} {'nDCG@10':>8} {'R@10':>7} {'R@100':>7} {'MRR@10':>7} {'p50 ms':>7}")
        dense = next(x for x in r["runs"] if x["mode"] == "dense")["ndcg@10"]
        for x in r["runs"]:
            print(
                f"{x['mode']:<8} {x['ndcg@10']:>8.4f} {x['recall@10']:>7.4f} "
                f"{x['recall@100']:>7.4f} {x['mrr@10']:>7.4f} {x['latency_ms']['p50']:>7.1f}"
                f"   ({x['ndcg@10'] / dense:.3f}x dense nDCG@10)"
            )
        for g in r.get("grid", []):
            print(
                f"  hybrid constant {g['constant']:>5.0f} lexical weight {g['lexical_weight']:.1f}:"
                f" nDCG@10 {g['ndcg@10']:.4f}  R@10 {g['recall@10']:.4f}"
                f"  ({g['ndcg@10'] / dense:.3f}x dense)"
            )


if __name__ == "__main__":
    main()
