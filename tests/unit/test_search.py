"""Hybrid, dense and lexical search over a real SQLite home, with the fake model:
the lexical index follows the vectors through every merge, filters are the
same in both, and bad queries fail alone with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from conformance import search_filters

from conveyor import evaluation
from conveyor._sqlite import connect
from conveyor.app import Conveyor
from conveyor.exceptions import ConveyorError
from conveyor.filters import BadFilter, Filter, parse_range, parse_where
from conveyor.lexical import terms
from conveyor.lexical.sqlite import FtsIndex, match_expression
from conveyor.search import EmptyQuery, Fusion, Searcher, fuse, fuse_scores
from conveyor.settings import Settings
from conveyor.testing import FakeEmbedder
from conveyor.vectorstore import Hit


@pytest.fixture
def cv(home: Path):
    settings = Settings(home=home, chunk_size=60, chunk_overlap=10, retry_base_seconds=0.05)
    with Conveyor(settings, embedder=FakeEmbedder()) as c:
        yield c


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    root = tmp_path / "notes"
    (root / "archive").mkdir(parents=True)
    for n in (123, 132, 213, 321):
        (root / f"note_{n}.txt").write_text(
            f"The code word for note {n} is secret{n}. Notes about the weather in spring."
        )
    (root / "archive" / "errors.md").write_text("Error E4412 means the disk is full.\n")
    return root


def ids(hits: list[Hit]) -> list[str]:
    return [Path(h.source).name for h in hits]


def test_lexical_finds_the_exact_term_and_hybrid_fuses_by_rank(home: Path, notes: Path) -> None:
    settings = Settings(home=home, chunk_size=60, chunk_overlap=10, fusion="rrf")
    with Conveyor(settings, embedder=FakeEmbedder()) as cv:
        _fuses_by_rank(cv, notes)


def _fuses_by_rank(cv: Conveyor, notes: Path) -> None:
    cv.ingest([notes])
    query = "what is the code word for note 123?"
    assert ids(cv.search(query, k=1, mode="lexical")) == ["note_123.txt"]
    assert "note_123.txt" in ids(cv.search(query, k=2, mode="hybrid"))  # the fake model ties
    assert ids(cv.search("secret321", k=1, mode="lexical")) == ["note_321.txt"]
    dense = cv.search(query, k=5, mode="dense")
    assert len(dense) == 5 and dense[0].score <= 1.0  # cosine
    hybrid = cv.search(query, k=5)  # the default mode
    assert [h.score for h in hybrid] == sorted((h.score for h in hybrid), reverse=True)
    dense_rank = {h.id: r for r, h in enumerate(cv.search(query, k=50, mode="dense"), 1)}
    lexical_rank = {h.id: r for r, h in enumerate(cv.search(query, k=50, mode="lexical"), 1)}
    for hit in hybrid:  # reciprocal rank fusion, constant 60, weights 1
        expected = sum(
            1 / (60 + ranks[hit.id]) for ranks in (dense_rank, lexical_rank) if hit.id in ranks
        )
        assert hit.score == pytest.approx(expected)


def test_lexical_index_follows_replacements(cv: Conveyor, notes: Path) -> None:
    cv.ingest([notes])
    index = cv.components.lexical
    assert index is not None and index.indexed("default") == 5
    (notes / "note_123.txt").write_text("Only otters now.")
    cv.ingest([notes / "note_123.txt"])
    assert cv.search("secret123", k=5, mode="lexical") == []
    assert ids(cv.search("otters", k=5, mode="lexical")) == ["note_123.txt"]
    assert index.indexed("default") == cv.components.vectors.count("default") == 5


def test_syntax_characters_are_searched_as_text(cv: Conveyor, notes: Path) -> None:
    cv.ingest([notes])
    for query in ['"E4412', "E4412*", "NEAR(E4412 disk)", "-E4412", "disk:full", "E4412 OR AND"]:
        assert ids(cv.search(query, k=1, mode="lexical")) == ["errors.md"], query
    for query in ['"', "*", "-", ":", "NEAR", "()"]:
        assert isinstance(cv.search(query, k=3, mode="lexical"), list)  # no error
    assert match_expression('a"b NEAR c') == '"b" OR "near" OR "c"'  # "a" is a stop word


def test_empty_and_overlong_queries(cv: Conveyor, notes: Path) -> None:
    cv.ingest([notes])
    for query in ("", "   ", "\n\t"):
        with pytest.raises(EmptyQuery, match="empty"):
            cv.search(query)
    long = "weather " * 2000
    [found] = cv.search_results([long], 3)
    window = cv.components.tokenizer.max_tokens
    assert len(found.query.split()) == window
    assert found.notes and f"window of {window} tokens" in found.notes[0]
    assert found.hits


def test_filters_are_applied_in_both_rankings(cv: Conveyor, notes: Path) -> None:
    cv.ingest([notes])
    archive = Filter(source_prefix=(notes / "archive").as_uri())
    for mode in ("hybrid", "dense", "lexical"):
        hits = cv.search("disk note code word", k=5, mode=mode, where=archive)
        assert ids(hits) == ["errors.md"], mode
    texts = Filter(kind="text")
    assert len(cv.search("weather", k=10, where=texts)) == 4  # markdown is kind 'markdown'
    nothing = Filter(where=(("team", "none"),))
    assert cv.search("weather", k=10, where=nothing) == []


def test_uploaded_metadata_is_filterable(cv: Conveyor, notes: Path) -> None:
    cv.submit((notes / "note_213.txt").as_uri(), metadata={"team": "finance", "year": 2024})
    cv.ingest([notes / "note_132.txt"])
    cv.work()
    where = Filter(where=(("team", "finance"), ("year", "2024")))
    for mode in ("hybrid", "dense", "lexical"):
        assert ids(cv.search("code word", k=5, mode=mode, where=where)) == ["note_213.txt"]


def test_an_older_home_is_indexed_by_the_compactor(home: Path, notes: Path) -> None:
    settings = Settings(home=home, chunk_size=60, chunk_overlap=10)
    with Conveyor(settings, embedder=FakeEmbedder()) as cv:
        cv.ingest([notes])
    conn = connect(settings.database_path, vec=False)  # as a home from before the index
    for table in ("lexical_fts_1", "lexical_chunks", "lexical_collections"):
        conn.execute(f"DROP TABLE {table}")
    conn.close()
    with Conveyor(settings, embedder=FakeEmbedder()) as cv:  # opening upgrades the schema
        [found] = cv.search_results(["secret213"], 3, mode="hybrid")
        assert found.mode == "dense" and "no lexical index yet" in found.notes[0]
        with pytest.raises(ConveyorError, match="lexical search is not available"):
            cv.search("secret213", mode="lexical")
        cv.components.compactor().run_once()
        assert cv.components.lexical is not None
        assert cv.components.lexical.indexed("default") == 5
        assert ids(cv.search("secret213", k=1, mode="lexical")) == ["note_213.txt"]
        assert ids(cv.search("secret213", k=1)) == ["note_213.txt"]


@pytest.mark.parametrize("case", search_filters.CASES, ids=search_filters.case_id)
def test_fts_index_filters(tmp_path: Path, case: tuple[Filter, set[str]]) -> None:
    index = FtsIndex(tmp_path / "c.db")
    by_doc: dict[str, list] = {}
    for rec in search_filters.records():
        by_doc.setdefault(rec.document_id, []).append(rec)
    for doc, recs in by_doc.items():
        index.replace_document("f", doc, recs)
    where, expected = case
    hits = index.search("f", search_filters.WORD, 50, where)
    assert {h.id for h in hits} == expected
    index.close()


def test_fuse_is_reciprocal_rank_fusion() -> None:
    def hit(i: str) -> Hit:
        return Hit(0.0, i, "d", "s", 0, None, "", {}, "c")

    dense = [hit("a"), hit("b"), hit("c")]
    lexical = [hit("c"), hit("a")]
    fused = fuse([(1.0, dense), (1.0, lexical)], k=3, constant=60)
    assert [h.id for h in fused] == ["a", "c", "b"]
    assert fused[0].score == pytest.approx(1 / 61 + 1 / 62)
    assert fused[2].score == pytest.approx(1 / 62)
    weighted = fuse([(1.0, dense), (3.0, lexical)], k=1, constant=60)
    assert [h.id for h in weighted] == ["c"]


def test_fuse_scores_scales_each_ranking_by_its_own_spread() -> None:
    def hit(i: str, score: float) -> Hit:
        return Hit(score, i, "d", "s", 0, None, "", {}, "c")

    # cosines close together; BM25 on another scale, one hit standing far out
    dense = [hit("a", 0.62), hit("b", 0.60), hit("c", 0.58)]
    lexical = [hit("c", 30.0), hit("d", 6.0), hit("e", 5.0), hit("a", 4.0)]
    fused = fuse_scores([(1.0, dense), (1.0, lexical)], k=5)
    # dense: mean 0.60, sd 0.01633 → a 0.5 + 0.02 / 0.09798 = 0.7041, b 0.5, c 0.2959;
    # lexical: mean 11.25, sd 10.8484 → c 0.7881, d 0.4193, e 0.4040, a 0.3886
    assert [h.id for h in fused] == ["a", "c", "b", "d", "e"]
    assert fused[0].score == pytest.approx(0.7041 + 0.3886, abs=1e-4)
    assert fused[1].score == pytest.approx(0.2959 + 0.7881, abs=1e-4)
    assert fused[2].score == pytest.approx(0.5)  # the dense mean; no lexical share
    # reciprocal ranks would put c (ranks 3 and 1) before a (ranks 1 and 4)
    assert [h.id for h in fuse([(1.0, dense), (1.0, lexical)], k=2, constant=60)] == ["c", "a"]
    # the scales do not matter, only the spread within each ranking
    scaled = [hit(h.id, 1000 * h.score - 7) for h in lexical]
    again = fuse_scores([(1.0, dense), (1.0, scaled)], k=5)
    assert [h.id for h in again] == ["a", "c", "b", "d", "e"]
    # a weight multiplies its ranking's share
    heavy = fuse_scores([(1.0, dense), (3.0, lexical)], k=2)
    assert [h.id for h in heavy] == ["c", "a"]
    # equal scores (or a single hit) sit at the middle; an empty ranking adds nothing
    lone = fuse_scores([(1.0, [hit("x", 0.4)]), (1.0, [])], k=3)
    assert [(h.id, h.score) for h in lone] == [("x", 0.5)]


def test_hybrid_fuses_by_scores_by_default(home: Path, notes: Path) -> None:
    settings = Settings(home=home, chunk_size=60, chunk_overlap=10)
    with Conveyor(settings, embedder=FakeEmbedder()) as cv:
        assert cv.components.searcher.fusion.method == "dbsf"
        cv.ingest([notes])
        query = "what is the code word for note 123?"
        dense = cv.search(query, k=50, mode="dense")
        lexical = cv.search(query, k=50, mode="lexical")
        hybrid = cv.search(query, k=5)
        expected = fuse_scores([(1.0, dense), (1.0, lexical)], k=5)
        assert [(h.id, h.score) for h in hybrid] == [(h.id, h.score) for h in expected]
        assert "note_123.txt" in ids(hybrid)


def test_terms_and_filter_parsing() -> None:
    assert terms("What is the code for note-123?") == ["code", "note", "123"]
    assert terms("the and of") == ["the", "and", "of"]  # only stop words: kept
    assert parse_range("2-5", "page") == (2, 5)
    assert parse_range("4-", "page") == (4, None)
    assert parse_range("7", "page") == (7, 7)
    assert parse_range("1:30-2:45", "time") == (90.0, 165.0)
    assert parse_where(["team=finance", "note=a=b"]) == (("team", "finance"), ("note", "a=b"))
    for bad in ("x", "5-2"):
        with pytest.raises(BadFilter):
            Filter(pages=parse_range(bad, "page"))
    with pytest.raises(BadFilter, match="key=value"):
        parse_where(["team"])
    with pytest.raises(BadFilter, match="metadata key"):
        Filter(where=(("a b", "x"),))


def test_eval_reads_trec_beir_and_jsonl(tmp_path: Path) -> None:
    (tmp_path / "q.txt").write_text("first question\n\nsecond question\n")
    assert evaluation.read_queries(tmp_path / "q.txt") == [
        ("1", "first question"),
        ("3", "second question"),
    ]
    (tmp_path / "q.jsonl").write_text('{"_id": "q7", "text": "seven"}\n{"id": 8, "query": "8"}\n')
    assert evaluation.read_queries(tmp_path / "q.jsonl") == [("q7", "seven"), ("8", "8")]
    (tmp_path / "r.trec").write_text("1 0 0042 1\n1 0 0043 0\n3 Q0 7 2\n")
    assert evaluation.read_qrels(tmp_path / "r.trec") == {"1": {"0042": 1.0}, "3": {"7": 2.0}}
    (tmp_path / "r.tsv").write_text("query-id\tcorpus-id\tscore\nq7\td1\t1\n")
    assert evaluation.read_qrels(tmp_path / "r.tsv") == {"q7": {"d1": 1.0}}
    (tmp_path / "bad.trec").write_text("1 0042\n")
    with pytest.raises(evaluation.BadJudgments, match=r"bad\.trec:1"):
        evaluation.read_qrels(tmp_path / "bad.trec")


def test_metrics() -> None:
    gains = {"a": 1.0, "b": 1.0}
    assert evaluation.ndcg(["a", "b", "x"], gains, 10) == pytest.approx(1.0)
    assert evaluation.ndcg(["x", "a"], gains, 10) == pytest.approx(
        (1 / 1.584962500721156) / (1 + 1 / 1.584962500721156)
    )
    assert evaluation.recall(["x", "a"], gains, 1) == 0.0
    assert evaluation.recall(["x", "a"], gains, 2) == 0.5
    assert evaluation.mrr(["x", "y", "b"], gains, 10) == pytest.approx(1 / 3)
    assert evaluation.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5


def test_eval_scores_a_home(cv: Conveyor, notes: Path, tmp_path: Path) -> None:
    cv.ingest([notes])
    queries = [("q1", "secret123"), ("q2", "disk full error"), ("q3", "unjudged")]
    judged = {"q1": {"note_123": 1.0}, "q2": {"errors": 1.0}}
    report = evaluation.evaluate(
        lambda text, n: cv.search(text, n, mode="lexical"), queries, judged, mode="lexical"
    )
    assert (report.queries, report.unjudged) == (2, 1)
    assert report.ndcg == report.mrr == report.recall == 1.0
    assert set(report.latency_ms) == {"p50", "p95", "p99"}
    by_field = evaluation.evaluate(
        lambda text, n: cv.search(text, n, mode="lexical"),
        queries,
        {"q1": {"text": 1.0}},
        mode="lexical",
        id_field="kind",
    )
    assert by_field.mrr == 1.0


def test_deleting_a_document_takes_it_out_of_the_lexical_index(cv: Conveyor, notes: Path) -> None:
    cv.ingest([notes])
    [doc] = [d for d in cv.documents() if d["source"].endswith("note_213.txt")]
    cv.delete([doc["id"]])
    cv.work()
    assert cv.search("secret213", k=3, mode="lexical") == []
    index = cv.components.lexical
    assert index is not None and index.indexed("default") == 4


def test_a_catalog_without_a_lexical_index_searches_dense_and_says_so(
    cv: Conveyor, notes: Path
) -> None:
    cv.ingest([notes])
    c = cv.components
    searcher = Searcher(c.vectors, None, c.query_embedder, c.tokenizer, Fusion())
    [found] = searcher.search(["code word"], 3, collection="default", mode="hybrid")
    assert found.mode == "dense" and len(found.hits) == 3
    assert "no lexical index" in found.notes[0] and "dense only" in found.notes[0]
    with pytest.raises(ConveyorError, match="lexical search is not available"):
        searcher.search(["code word"], 3, collection="default", mode="lexical")
