"""Ranking metrics with binary relevance, as the IR literature defines them.

``ranked`` is a list of document ids, best first (duplicates are the caller's
to remove, see :func:`first_occurrences`); ``relevant`` is the set judged
relevant. A query without judgments has no defined score: callers skip it.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence, Set
from typing import TypeVar

T = TypeVar("T", bound=Hashable)


def first_occurrences(items: Iterable[T]) -> list[T]:
    """``items`` in order, each kept only where it first appears (chunks → documents)."""
    return list(dict.fromkeys(items))


def dcg_at_k(ranked: Sequence[T], relevant: Set[T], k: int) -> float:
    """Discounted cumulative gain: the sum over the top ``k`` of rel_i / log2(i + 1)."""
    return sum(1.0 / math.log2(i + 2) for i, doc in enumerate(ranked[:k]) if doc in relevant)


def ndcg_at_k(ranked: Sequence[T], relevant: Set[T], k: int = 10) -> float:
    """DCG@k over the DCG@k of an ideal ranking (every relevant document first)."""
    if not relevant:
        raise ValueError("nDCG is undefined for a query without relevant documents")
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return dcg_at_k(ranked, relevant, k) / ideal


def recall_at_k(ranked: Sequence[T], relevant: Set[T], k: int = 10) -> float:
    """Share of the relevant documents found in the top ``k``."""
    if not relevant:
        raise ValueError("recall is undefined for a query without relevant documents")
    return len(set(ranked[:k]) & relevant) / len(relevant)


def mrr_at_k(ranked: Sequence[T], relevant: Set[T], k: int = 10) -> float:
    """1 / rank of the first relevant document in the top ``k``, or 0."""
    for i, doc in enumerate(ranked[:k]):
        if doc in relevant:
            return 1.0 / (i + 1)
    return 0.0


def mean(values: Iterable[float]) -> float:
    """Arithmetic mean (0.0 for no values)."""
    numbers = list(values)
    return sum(numbers) / len(numbers) if numbers else 0.0
