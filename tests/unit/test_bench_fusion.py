"""The fusion functions of bench/fusion.py, on rankings worked out by hand."""

from __future__ import annotations

import pytest
from support import bench_module

f = bench_module("fusion.py")

DENSE = [("a", 0.9), ("b", 0.5), ("c", 0.1)]
LEXICAL = [("c", 14.0), ("d", 6.0), ("b", 2.0)]


def test_rrf_sums_reciprocal_ranks() -> None:
    # a 1/61; b 1/62 + 1/63; c 1/63 + 1/61; d 1/62
    assert f.rrf(60.0)(DENSE, LEXICAL) == ["c", "b", "a", "d"]
    # with k = 1 the tops weigh more: a 1/2, c 1/4 + 1/2, b 1/3 + 1/4, d 1/3
    assert f.rrf(1.0)(DENSE, LEXICAL) == ["c", "b", "a", "d"]
    assert f.rrf(60.0)(DENSE, []) == ["a", "b", "c"]


def test_dbsf_maps_mean_plus_minus_three_sd_to_the_unit_interval() -> None:
    scaled = f.dbsf_scale(DENSE)  # mean 0.5, sd 0.3266
    assert scaled["b"] == pytest.approx(0.5)
    assert scaled["a"] == pytest.approx(0.5 + 0.4 / (6 * 0.326599), rel=1e-4)
    assert f.dbsf_scale([]) == {}
    assert f.dbsf_scale([("x", 3.0)]) == {"x": 0.5}  # sd 0: the mean's place


@pytest.mark.parametrize("normalise", ["minmax", "zscore", "dbsf_scale"])
def test_normalised_fusions_ignore_each_side_s_scale_and_offset(normalise: str) -> None:
    fuse = f.combined(getattr(f, normalise))
    rescaled = [(c, 1000 * s - 7) for c, s in LEXICAL]  # BM25 on another scale
    assert fuse(DENSE, LEXICAL) == fuse(DENSE, rescaled) == ["a", "c", "b", "d"]
    raw = f.by_score({c: s for c, s in LEXICAL} | {"a": 0.9})  # raw BM25 would swamp cosine
    assert raw[:2] == ["c", "d"]


def test_minmax_gives_a_missing_chunk_the_side_s_lowest() -> None:
    # a: 0.5·1 + 0.5·0 (lowest lexical); c: 0.5·0 + 0.5·1 (a tie, broken by id);
    # b: 0.5·0.5 + 0.5·0; d: 0.5·0 (lowest dense) + 0.5·(4/12)
    assert f.combined(f.minmax)(DENSE, LEXICAL) == ["a", "c", "b", "d"]
    # counted as 0 instead, a missing lexical score is the same here (the lowest is 0)
    assert f.combined(f.minmax, absent="zero")(DENSE, LEXICAL) == ["a", "c", "b", "d"]


def test_combmnz_rewards_chunks_both_rankings_hold() -> None:
    dense = [("a", 1.0), ("b", 0.6), ("z", 0.0)]
    lexical = [("b", 10.0), ("y", 9.0), ("x", 0.0)]
    # b: (0.5·0.6 + 0.5·1) · 2 = 1.6 beats a: 0.5 · 1 and y: 0.5 · 0.9
    assert f.combined(f.minmax, absent="zero", mnz=True)(dense, lexical)[0] == "b"
    assert f.combined(f.minmax, absent="zero")(dense, lexical)[0] == "b"  # 0.8 > 0.5
    assert f.combined(f.minmax, absent="zero", mnz=True)(dense, lexical)[1:3] == ["a", "y"]


def test_tm2c2_bounds_cosine_at_minus_one_and_bm25_at_zero() -> None:
    dense = [("a", 0.6), ("b", 0.2)]
    lexical = [("b", 8.0), ("c", 8.0)]
    # α = 0.8: a 0.8·1; b 0.8·(1.2 / 1.6) + 0.2·1 = 0.8; c 0.2·1
    order = f.tm2c2(0.8)(dense, lexical)
    assert order[-1] == "c"
    # α = 0.5: b (0.375 + 0.5) passes a (0.5)
    assert f.tm2c2(0.5)(dense, lexical)[0] == "b"
