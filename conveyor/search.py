"""Search: dense (vectors), lexical (BM25) or hybrid (both, fused).

Dense search finds chunks close in meaning; lexical search finds the exact
words — part numbers, names, error codes — where meaning alone is weakest.
Hybrid asks both for their best ``candidates`` chunks and fuses the two
rankings. By default (``method="dbsf"``) by distribution-based score fusion:
each ranking's scores are put on one scale by their own spread in this query
— mean − 3 sd ↦ 0, mean ↦ ½, mean + 3 sd ↦ 1 — and a chunk scores
``Σ weight × scaled score`` over the rankings that hold it (0 where one does
not), so raw scores on different scales (cosine, BM25) are never added. It
keeps what ranks throw away: how far the best hit stands out, as when one
document alone holds a rare name. Or (``method="rrf"``) by reciprocal rank
fusion: a chunk scores ``Σ weight / (constant + rank)``, so a chunk near the
top of both wins. Filters are applied inside both backends
(:mod:`conveyor.filters`).

A query is checked once for every mode: an empty or blank one is refused,
and one longer than the model reads is cut to the model's window (with a
note), so that dense and lexical search look for the same text.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Literal, cast

from .embedding import Embedder, Tokenizer
from .exceptions import ConveyorError
from .filters import Filter
from .lexical import LexicalIndex
from .vectorstore import Hit, VectorStore

Mode = Literal["hybrid", "dense", "lexical"]
MODES: tuple[Mode, ...] = ("hybrid", "dense", "lexical")
Method = Literal["rrf", "dbsf"]
SPREAD = 3.0
"""DBSF: the standard deviations either side of the mean that span [0, 1]."""


class EmptyQuery(ConveyorError):
    """A query with nothing to search for."""


@dataclass(frozen=True)
class Fusion:
    """How hybrid search fuses the two rankings (``CONVEYOR_FUSION``, ``CONVEYOR_RRF_*``)."""

    constant: float = 60.0
    """RRF's k: larger flattens the gap between the top ranks and the rest."""
    dense_weight: float = 1.0
    lexical_weight: float = 1.0
    """The weights multiply each ranking's share, by either method."""
    method: Method = "dbsf"
    """``dbsf`` (by score, scaled per ranking) or ``rrf`` (by rank); see the module."""
    candidates: int = 50
    """How deep each ranking is read (at least the ``k`` asked for)."""


@dataclass
class Results:
    """The hits of one query, and what the reader should know about them."""

    query: str
    """The text searched (cut to the model's window when it was longer)."""
    mode: Mode
    """The mode that answered (dense when hybrid had no lexical index to ask)."""
    hits: list[Hit]
    notes: list[str] = field(default_factory=list)


def fuse(rankings: Sequence[tuple[float, Sequence[Hit]]], k: int, constant: float) -> list[Hit]:
    """Reciprocal rank fusion of ``(weight, hits best first)`` rankings: the ``k``
    chunks with the highest ``Σ weight / (constant + rank)``, ties broken by id."""
    shares = (
        (hit, weight / (constant + rank))
        for weight, hits in rankings
        for rank, hit in enumerate(hits, 1)
    )
    return _best(shares, k)


def fuse_scores(rankings: Sequence[tuple[float, Sequence[Hit]]], k: int) -> list[Hit]:
    """Distribution-based score fusion of ``(weight, hits best first)`` rankings: the
    ``k`` chunks with the highest ``Σ weight × scaled score``, each ranking's scores
    scaled by its own mean and standard deviation (see the module; all ½ when they
    are equal), ties broken by id."""
    return _best((share for weight, hits in rankings for share in _scaled(weight, hits)), k)


def _scaled(weight: float, hits: Sequence[Hit]) -> Iterator[tuple[Hit, float]]:
    """Each hit with ``weight`` × its score scaled as DBSF scales a ranking."""
    if not hits:
        return
    mean = sum(h.score for h in hits) / len(hits)  # floats: statistics' exact sums cost
    spread = SPREAD * math.sqrt(sum((h.score - mean) ** 2 for h in hits) / len(hits))
    for hit in hits:
        yield hit, weight * (0.5 + (hit.score - mean) / (2 * spread) if spread else 0.5)


def _best(shares: Iterable[tuple[Hit, float]], k: int) -> list[Hit]:
    """The ``k`` chunks with the highest sum of their shares, each as the first ranking
    holding it found it, scored by that sum; ties broken by id."""
    scores: dict[str, float] = {}
    first: dict[str, Hit] = {}
    for hit, share in shares:
        scores[hit.id] = scores.get(hit.id, 0.0) + share
        first.setdefault(hit.id, hit)
    best = sorted(scores, key=lambda i: (-scores[i], i))[:k]
    return [replace(first[i], score=scores[i]) for i in best]


class Searcher:
    """Answers queries over one home's vector store and lexical index."""

    def __init__(
        self,
        vectors: VectorStore,
        lexical: LexicalIndex | None,
        embedder: Embedder,
        tokenizer: Tokenizer | None,
        fusion: Fusion,
    ) -> None:
        self.vectors = vectors
        self.lexical = lexical
        self.embedder = embedder
        self.tokenizer = tokenizer
        self.fusion = fusion
        self._threads: ThreadPoolExecutor | None = None

    def _pool(self) -> ThreadPoolExecutor:
        if self._threads is None:
            self._threads = ThreadPoolExecutor(1, thread_name_prefix="conveyor-lexical")
        return self._threads

    def prepare(self, query: str) -> tuple[str, list[str]]:
        """``query`` as it will be searched, and a note when it had to be cut."""
        text = " ".join(query.split())
        if not text:
            raise EmptyQuery("the query is empty: give some words to search for")
        if self.tokenizer is None:
            return text, []
        window = self.tokenizer.max_tokens
        [count] = self.tokenizer.count([text])
        if count <= window:
            return text, []
        cut = text[: self.tokenizer.offsets(text)[window - 1][1]]
        return cut, [
            f"the query was cut to the model's window of {window} tokens "
            f"({len(text):,} characters → {len(cut):,})"
        ]

    def lexical_missing(self, collection: str) -> str | None:
        """Why lexical search cannot answer in ``collection``, or None when it can."""
        if self.lexical is None:
            return (
                "this catalog holds no lexical index (it needs a SQLite or PostgreSQL "
                "catalog): search here is dense only"
            )
        if self.lexical.indexed(collection) is None and self.vectors.count(collection):
            return (
                f"collection {collection!r} has no lexical index yet: the compactor builds "
                "it on its next run (conveyor compactor, or any ingest)"
            )
        return None

    def search(
        self,
        queries: Sequence[str],
        k: int,
        *,
        collection: str,
        mode: Mode,
        where: Filter | None = None,
        embedder: Embedder | None = None,
    ) -> list[Results]:
        """The ``k`` best hits of each query in ``collection`` that meet ``where``;
        the queries are embedded by ``embedder`` (default: the configured query model)."""
        if mode not in MODES:
            raise ConveyorError(f"unknown search mode {mode!r}: use one of {', '.join(MODES)}")
        prepared = [self.prepare(q) for q in queries]
        notes: list[str] = []
        if mode != "dense" and (missing := self.lexical_missing(collection)):
            if mode == "lexical":
                raise ConveyorError(f"lexical search is not available: {missing}")
            mode, notes = "dense", [missing]
        depth = max(k, self.fusion.candidates) if mode == "hybrid" else k
        lexical_hits: list[Future[list[Hit]]] = []
        if mode != "dense":  # in a thread, while the queries are embedded and searched dense
            index = cast(LexicalIndex, self.lexical)
            lexical_hits = [
                self._pool().submit(index.search, collection, text, depth, where)
                for text, _ in prepared
            ]
        vectors = (
            (embedder or self.embedder).embed([text for text, _ in prepared])
            if mode != "lexical" and prepared
            else None
        )
        out = []
        for i, (text, cut) in enumerate(prepared):
            dense = (
                self.vectors.query(collection, vectors[i], depth, where)
                if vectors is not None
                else []
            )
            lexical = lexical_hits[i].result() if lexical_hits else []
            if mode == "hybrid":
                f = self.fusion
                rankings = [(f.dense_weight, dense), (f.lexical_weight, lexical)]
                if f.method == "dbsf":
                    hits = fuse_scores(rankings, k)
                else:
                    hits = fuse(rankings, k, f.constant)
            else:
                hits = dense or lexical
            out.append(Results(text, mode, hits, [*cut, *notes]))
        return out
