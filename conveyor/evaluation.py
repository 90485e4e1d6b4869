"""``conveyor eval``: how good search is, on judgments someone made.

Queries come one a line (ids are line numbers, from 1) or as JSON lines
(``{"_id": "q1", "text": "…"}``; ``id``/``query_id`` and ``query`` are read
too, as BEIR and others write them). Judgments come as TREC qrels
(``query 0 document relevance``) or BEIR's TSV (``query-id corpus-id score``,
with or without its header line); relevance > 0 is relevant, and its value is
the gain nDCG counts.

A judged document id names a document by its source's file name without
the extension (``0042`` is ``…/0042.txt``), or by a metadata field
(``id_field``). Hits are chunks: a document ranks where its best chunk does.
Each query is searched on its own, so the latency percentiles are those a
user would see.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

from .exceptions import ConveyorError
from .vectorstore import Hit


class BadJudgments(ConveyorError):
    """A queries or judgments file that cannot be read."""


def read_queries(path: Path) -> list[tuple[str, str]]:
    """``(id, text)`` of every query in ``path``."""
    lines = _lines(path)
    out = []
    json_lines = any(line.lstrip().startswith("{") for _, line in lines[:1])
    for number, line in lines:
        if not line.strip():
            continue
        if not json_lines:
            out.append((str(number), line.strip()))
            continue
        try:
            row = json.loads(line)
            qid = next(str(row[k]) for k in ("_id", "id", "query_id") if k in row)
            text = next(str(row[k]) for k in ("text", "query") if k in row)
        except (ValueError, StopIteration, TypeError):
            raise BadJudgments(
                f"{path}:{number}: not a query as JSON ({{'_id': …, 'text': …}})"
            ) from None
        out.append((qid, text))
    if not out:
        raise BadJudgments(f"{path} holds no queries")
    return out


def read_qrels(path: Path) -> dict[str, dict[str, float]]:
    """query id → judged document id → relevance (only > 0 kept)."""
    judged: dict[str, dict[str, float]] = {}
    for number, line in _lines(path):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) == 4:  # TREC: query, iteration (ignored), document, relevance
            qid, doc, grade = parts[0], parts[2], parts[3]
        elif len(parts) == 3:  # BEIR: query-id, corpus-id, score
            qid, doc, grade = parts
        else:
            raise BadJudgments(
                f"{path}:{number}: expected 'query 0 document relevance' (TREC) or "
                f"'query document score' (BEIR TSV), got {len(parts)} fields"
            )
        try:
            relevance = float(grade)
        except ValueError:
            if number == 1:
                continue  # BEIR's header line
            raise BadJudgments(f"{path}:{number}: relevance {grade!r} is not a number") from None
        if relevance > 0:
            judged.setdefault(qid, {})[doc] = relevance
    if not judged:
        raise BadJudgments(f"{path} judges no document relevant to any query")
    return judged


def _lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadJudgments(f"cannot read {path}: {exc}") from None
    return list(enumerate(text.splitlines(), 1))


# -- metrics ------------------------------------------------------------------


def ndcg(ranked: Sequence[str], gains: Mapping[str, float], k: int) -> float:
    """Normalised discounted cumulative gain at ``k`` (linear gain, log2 discount)."""
    dcg = sum(gains.get(d, 0.0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(gains.values(), reverse=True)[:k]
    best = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / best if best else 0.0


def recall(ranked: Sequence[str], gains: Mapping[str, float], k: int) -> float:
    """Share of the relevant documents in the top ``k``."""
    return len(set(ranked[:k]) & set(gains)) / len(gains) if gains else 0.0


def mrr(ranked: Sequence[str], gains: Mapping[str, float], k: int) -> float:
    """1 / rank of the first relevant document in the top ``k``; 0 if none."""
    return next((1.0 / (i + 1) for i, d in enumerate(ranked[:k]) if d in gains), 0.0)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100), linear between the closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    at = (len(ordered) - 1) * q / 100
    low, high = math.floor(at), math.ceil(at)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


# -- a run ----------------------------------------------------------------------


def document_key(id_field: str | None) -> Callable[[Hit], str | None]:
    """What names a hit's document in the judgments: its source's file name without
    the extension, or the metadata field ``id_field`` (as text)."""
    if id_field:

        def by_field(hit: Hit) -> str | None:
            value = hit.metadata.get(id_field)
            return None if value is None else str(value)

        return by_field

    def by_name(hit: Hit) -> str | None:
        path = unquote(urlparse(hit.source).path) if "://" in hit.source else hit.source
        return PurePosixPath(path).stem or None

    return by_name


def ranked_documents(hits: Iterable[Hit], key: Callable[[Hit], str | None]) -> list[str]:
    """Document ids in the order of their best chunk."""
    return list(dict.fromkeys(d for h in hits if (d := key(h)) is not None))


@dataclass
class Report:
    mode: str
    queries: int
    unjudged: int
    k: int
    ndcg: float
    recall: float
    recall_100: float
    mrr: float
    latency_ms: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        k = self.k
        return {
            "mode": self.mode,
            "queries": self.queries,
            "skipped_unjudged": self.unjudged,
            f"ndcg@{k}": round(self.ndcg, 4),
            f"recall@{k}": round(self.recall, 4),
            "recall@100": round(self.recall_100, 4),
            f"mrr@{k}": round(self.mrr, 4),
            "latency_ms": {name: round(v, 2) for name, v in self.latency_ms.items()},
        }


def evaluate(
    search: Callable[[str, int], list[Hit]],
    queries: Sequence[tuple[str, str]],
    judged: Mapping[str, Mapping[str, float]],
    *,
    mode: str,
    k: int = 10,
    depth: int = 200,
    id_field: str | None = None,
) -> Report:
    """Search every judged query (one at a time, timed) and score the rankings.
    ``search(text, n)`` returns ``n`` hits; ``depth`` chunks are read per query so
    that recall@100 counts 100 documents when chunks of a document repeat."""
    key = document_key(id_field)
    asked = [(qid, text) for qid, text in queries if judged.get(qid)]
    if not asked:
        raise BadJudgments(
            "no query has judgments: do the query ids match the judgments' "
            f"(queries: {', '.join(q for q, _ in queries[:3])}…; judged: "
            f"{', '.join(list(judged)[:3])}…)?"
        )
    search(asked[0][1], depth)  # warm: the model loaded, caches filled
    scores: dict[str, list[float]] = {"ndcg": [], "recall": [], "recall_100": [], "mrr": []}
    seconds = []
    for qid, text in asked:
        started = time.perf_counter()
        hits = search(text, max(depth, k, 100))
        seconds.append(time.perf_counter() - started)
        ranked = ranked_documents(hits, key)
        gains = judged[qid]
        scores["ndcg"].append(ndcg(ranked, gains, k))
        scores["recall"].append(recall(ranked, gains, k))
        scores["recall_100"].append(recall(ranked, gains, 100))
        scores["mrr"].append(mrr(ranked, gains, k))
    ms = [s * 1000 for s in seconds]
    return Report(
        mode=mode,
        queries=len(asked),
        unjudged=len(queries) - len(asked),
        k=k,
        **{name: sum(v) / len(v) for name, v in scores.items()},
        latency_ms={
            "p50": percentile(ms, 50),
            "p95": percentile(ms, 95),
            "p99": percentile(ms, 99),
        },
    )
