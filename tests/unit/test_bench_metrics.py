"""The ranking metrics of bench/_metrics.py, on rankings worked out by hand."""

from __future__ import annotations

import math

import pytest
from support import bench_module

m = bench_module("_metrics.py")


def test_perfect_ranking_scores_one() -> None:
    assert m.ndcg_at_k(["a", "b", "x"], {"a", "b"}, 10) == pytest.approx(1.0)
    assert m.recall_at_k(["a", "b", "x"], {"a", "b"}, 10) == 1.0
    assert m.mrr_at_k(["a", "b", "x"], {"a", "b"}, 10) == 1.0


def test_ndcg_by_hand() -> None:
    # relevant at ranks 2 and 4 of 3 relevant: DCG = 1/log2(3) + 1/log2(5),
    # ideal = 1/log2(2) + 1/log2(3) + 1/log2(4)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    ideal = 1 + 1 / math.log2(3) + 0.5
    ranked = ["x", "a", "y", "b", "z"]
    assert m.dcg_at_k(ranked, {"a", "b", "c"}, 10) == pytest.approx(dcg)
    assert m.ndcg_at_k(ranked, {"a", "b", "c"}, 10) == pytest.approx(dcg / ideal)
    assert m.ndcg_at_k(ranked, {"a", "b", "c"}, 10) == pytest.approx(0.4982, abs=1e-4)


def test_cut_off_at_k() -> None:
    ranked = ["x", "y", "a"]
    assert m.ndcg_at_k(ranked, {"a"}, 2) == 0.0
    assert m.recall_at_k(ranked, {"a"}, 2) == 0.0
    assert m.mrr_at_k(ranked, {"a"}, 2) == 0.0
    assert m.ndcg_at_k(ranked, {"a"}, 3) == pytest.approx(0.5)
    assert m.mrr_at_k(ranked, {"a"}, 3) == pytest.approx(1 / 3)


def test_ideal_is_capped_at_k_and_recall_counts_all_relevant() -> None:
    relevant = {f"r{i}" for i in range(20)}
    ranked = sorted(relevant)[:10]
    assert m.ndcg_at_k(ranked, relevant, 10) == pytest.approx(1.0)
    assert m.recall_at_k(ranked, relevant, 10) == pytest.approx(0.5)


def test_chunks_to_documents_and_undefined_queries() -> None:
    assert m.first_occurrences(["3", "1", "3", "2", "1"]) == ["3", "1", "2"]
    assert m.mean([1.0, 0.0, 0.5]) == pytest.approx(0.5) and m.mean([]) == 0.0
    with pytest.raises(ValueError, match="undefined"):
        m.ndcg_at_k(["a"], set(), 10)
    with pytest.raises(ValueError, match="undefined"):
        m.recall_at_k(["a"], set(), 10)
