"""Other ways to fuse dense and lexical rankings, scored offline on the rankings that
``bench/retrieval.py --dump DIR`` wrote: seconds for both sets, no model, no search.

Each fusion reads the two rankings of a query as hybrid search does — the best
``depth`` chunks of each, with their scores (cosine; negated FTS5 BM25) — and
ranks the union of their chunks; a document ranks where its best chunk does,
as in ``conveyor.evaluation``. The fusions, all with fixed textbook settings:

* ``rrf`` — reciprocal rank fusion (Cormack et al. 2009), ``Σ 1 / (k + rank)``.
* ``minmax`` — convex combination (½ · ½) of the scores min-max normalised over
  each ranking; a chunk one ranking lacks takes that ranking's lowest.
* ``tm2c2`` — the same with theoretical lower bounds (cosine −1, BM25 0) and the
  dense weight α (Bruch et al. 2022, "An Analysis of Fusion Functions for
  Hybrid Retrieval").
* ``zscore`` — sum of the scores standardised over each ranking (mean 0, sd 1);
  a chunk one ranking lacks takes that ranking's lowest.
* ``combmnz`` — min-max scores summed, times the number of rankings holding the
  chunk (Fox & Shaw 1994); a missing score counts 0.
* ``dbsf`` — distribution-based score fusion: each ranking's scores mapped to
  [0, 1] by mean ± 3 sd, then summed; a missing score counts 0.

For each it prints nDCG@10 and recall@10, the ratio to dense nDCG@10, and the
mean difference from ``rrf`` k=60 (today's hybrid) with a 95% paired bootstrap
interval, at each depth read (200: ``conveyor eval``; 50: ``search -k 10``).

    python bench/retrieval.py --dump /tmp/rankings
    python bench/fusion.py /tmp/rankings
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from conveyor.evaluation import ndcg, recall  # noqa: E402

Ranking = list[tuple[str, float]]  # (chunk id, score), best first
Fuse = Callable[[Ranking, Ranking], list[str]]
DEPTHS = (200, 50)
BOOTSTRAP = 2000


def by_score(scores: dict[str, float]) -> list[str]:
    return sorted(scores, key=lambda c: (-scores[c], c))


def rrf(k: float) -> Fuse:
    def fuse(dense: Ranking, lexical: Ranking) -> list[str]:
        scores: dict[str, float] = {}
        for ranking in (dense, lexical):
            for rank, (chunk, _) in enumerate(ranking, 1):
                scores[chunk] = scores.get(chunk, 0.0) + 1.0 / (k + rank)
        return by_score(scores)

    return fuse


def _scaled(ranking: Ranking, low: float, high: float) -> dict[str, float]:
    span = high - low if high > low else 1.0
    return {c: (s - low) / span for c, s in ranking}


def minmax(ranking: Ranking) -> dict[str, float]:
    values = [s for _, s in ranking]
    return _scaled(ranking, min(values), max(values)) if ranking else {}


def zscore(ranking: Ranking) -> dict[str, float]:
    values = [s for _, s in ranking]
    if not values:
        return {}
    mean, sd = statistics.fmean(values), statistics.pstdev(values) or 1.0
    return {c: (s - mean) / sd for c, s in ranking}


def dbsf_scale(ranking: Ranking) -> dict[str, float]:
    """Mean − 3 sd ↦ 0, mean ↦ ½, mean + 3 sd ↦ 1; every score ↦ ½ when they are equal."""
    values = [s for _, s in ranking]
    mean, sd = (statistics.fmean(values), statistics.pstdev(values)) if values else (0.0, 0.0)
    if not sd:
        return dict.fromkeys((c for c, _ in ranking), 0.5)
    return _scaled(ranking, mean - 3 * sd, mean + 3 * sd)


def combined(
    normalise: Callable[[Ranking], dict[str, float]],
    *,
    dense_weight: float = 0.5,
    absent: str = "lowest",
    mnz: bool = False,
) -> Fuse:
    """Weighted sum of normalised scores; ``absent`` is ``lowest`` (the ranking's
    lowest normalised score) or ``zero``."""

    def fuse(dense: Ranking, lexical: Ranking) -> list[str]:
        sides = [(dense_weight, normalise(dense)), (1 - dense_weight, normalise(lexical))]
        scores: dict[str, float] = {}
        for chunk in dict.fromkeys(c for ranking in (dense, lexical) for c, _ in ranking):
            total = 0.0
            for weight, side in sides:
                missing = min(side.values(), default=0.0) if absent == "lowest" else 0.0
                total += weight * side.get(chunk, missing)
            if mnz:
                total *= sum(chunk in side for _, side in sides)
            scores[chunk] = total
        return by_score(scores)

    return fuse


def tm2c2(alpha: float) -> Fuse:
    def fuse(dense: Ranking, lexical: Ranking) -> list[str]:
        top_dense = max((s for _, s in dense), default=0.0)
        top_lexical = max((s for _, s in lexical), default=0.0)
        d, lx = _scaled(dense, -1.0, top_dense), _scaled(lexical, 0.0, top_lexical)
        scores = {
            c: alpha * d.get(c, 0.0) + (1 - alpha) * lx.get(c, 0.0)
            for c in dict.fromkeys([*d, *lx])
        }
        return by_score(scores)

    return fuse


def dense_only(dense: Ranking, lexical: Ranking) -> list[str]:
    return [c for c, _ in dense]


def lexical_only(dense: Ranking, lexical: Ranking) -> list[str]:
    return [c for c, _ in lexical]


FUSIONS: dict[str, Fuse] = {
    "dense": dense_only,
    "lexical": lexical_only,
    "rrf k=60": rrf(60.0),
    "rrf k=20": rrf(20.0),
    "minmax ½·½": combined(minmax),
    "tm2c2 α=0.8": tm2c2(0.8),
    "zscore": combined(zscore),
    "combmnz": combined(minmax, absent="zero", mnz=True),
    "dbsf": combined(dbsf_scale, absent="zero"),
}


def per_query(rows: list[dict], fuse: Fuse, depth: int) -> tuple[list[float], list[float]]:
    """nDCG@10 and recall@10 of each query."""
    ndcgs, recalls = [], []
    for row in rows:
        doc_of = {chunk: doc for mode in ("dense", "lexical") for doc, chunk, _ in row[mode]}
        dense = [(chunk, score) for _, chunk, score in row["dense"][:depth]]
        lexical = [(chunk, score) for _, chunk, score in row["lexical"][:depth]]
        ranked = list(dict.fromkeys(doc_of[c] for c in fuse(dense, lexical)))
        ndcgs.append(ndcg(ranked, row["relevant"], 10))
        recalls.append(recall(ranked, row["relevant"], 10))
    return ndcgs, recalls


def interval(diffs: list[float], rng: random.Random) -> tuple[float, float]:
    """95% paired bootstrap interval of the mean difference."""
    means = sorted(statistics.fmean(rng.choices(diffs, k=len(diffs))) for _ in range(BOOTSTRAP))
    return means[int(0.025 * BOOTSTRAP)], means[int(0.975 * BOOTSTRAP) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="what bench/retrieval.py --dump wrote")
    args = parser.parse_args()
    files = sorted(args.folder.glob("*.jsonl"))
    if not files:
        raise SystemExit(f"no <set>.jsonl in {args.folder}: run bench/retrieval.py --dump first")
    for path in files:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        for depth in DEPTHS:
            print(f"\n{path.stem}: {len(rows)} queries, each ranking read {depth} deep")
            print(f"{'fusion':<13} {'nDCG@10':>8} {'R@10':>7} {'×dense':>7}  vs rrf k=60 (95% CI)")
            dense = statistics.fmean(per_query(rows, dense_only, depth)[0])
            base = per_query(rows, FUSIONS["rrf k=60"], depth)[0]
            rng = random.Random(0)
            for name, fuse in FUSIONS.items():
                ndcgs, recalls = per_query(rows, fuse, depth)
                diffs = [a - b for a, b in zip(ndcgs, base, strict=True)]
                low, high = interval(diffs, rng)
                mean = statistics.fmean(ndcgs)
                print(
                    f"{name:<13} {mean:>8.4f} {statistics.fmean(recalls):>7.4f} "
                    f"{mean / dense:>7.3f}  {statistics.fmean(diffs):+.4f} "
                    f"[{low:+.4f}, {high:+.4f}]"
                )


if __name__ == "__main__":
    main()
