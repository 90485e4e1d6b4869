"""Diarization's parts that need no model: clustering, segment labels, the error rate,
talk time, and speakers carried into chunks and the WebVTT."""

from __future__ import annotations

import numpy as np
import pytest

from conveyor.chunking import chunk_sections
from conveyor.extract import Section
from conveyor.extract.audio import webvtt
from conveyor.extract.speakers import (
    Turn,
    average_linkage,
    cluster,
    error_rate,
    label_segments,
    talk_time,
)
from conveyor.testing import WhitespaceTokenizer


def voices(counts: list[int], spread: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around one random centre per speaker, and who each belongs to."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(counts), 64))
    truth = np.repeat(np.arange(len(counts)), counts)
    vectors = centres[truth] + rng.normal(scale=spread, size=(len(truth), 64))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), truth


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return all(len(set(b[a == label])) == 1 for label in set(a)) and len(set(a)) == len(set(b))


@pytest.mark.parametrize(("clusters", "threshold"), [(None, 0.5), (None, 0.9), (3, 0.0), (5, 0)])
def test_average_linkage_is_scipys(clusters: int | None, threshold: float) -> None:
    from scipy.cluster.hierarchy import fcluster, linkage

    vectors, _ = voices([30, 20, 25, 6], spread=0.12)
    tree = linkage(vectors.astype(np.float64), method="average", metric="cosine")
    if clusters:
        theirs = fcluster(tree, t=clusters, criterion="maxclust")
    else:
        theirs = fcluster(tree, t=threshold, criterion="distance")
    assert same_partition(average_linkage(vectors, clusters, threshold), theirs)


def test_cluster_finds_the_speakers_or_the_number_asked_for() -> None:
    vectors, truth = voices([40, 30, 25], spread=0.1)
    assert same_partition(cluster(vectors, None, 0.3), truth)
    assert len(set(cluster(vectors, 2, 0.3))) == 2
    assert set(cluster(vectors, 1, 0.3)) == {0}
    one, _ = voices([50], spread=0.1)
    assert set(cluster(one, None, 0.3)) == {0}


def test_error_rate() -> None:
    truth = [(0.0, 10.0, "a"), (10.0, 20.0, "b")]
    assert error_rate(truth, [(0.0, 10.0, "S2"), (10.0, 20.0, "S1")]) == 0.0  # names matched
    # the second half called the first speaker: 10 s of 20 wrong, less the collars
    assert error_rate(truth, [(0.0, 20.0, "S1")], collar=0) == pytest.approx(0.5, abs=0.01)
    assert error_rate(truth, [(0.0, 10.0, "S1")], collar=0) == pytest.approx(0.5, abs=0.01)
    assert error_rate(truth, [*truth, (25.0, 30.0, "c")], collar=0) == pytest.approx(0.25, abs=0.01)
    # a boundary a little late costs nothing within the collar
    assert error_rate(truth, [(0.0, 10.2, "a"), (10.2, 20.0, "b")]) == 0.0
    assert error_rate([], []) == 0.0


def test_segments_take_their_speaker_and_split_where_it_changes() -> None:
    turns = [Turn(0.0, 4.0, "SPEAKER_1"), Turn(4.2, 10.0, "SPEAKER_2")]
    segments = [
        {"start": 0.0, "end": 3.0, "text": "first part", "confidence": 0.9},
        {"start": 3.0, "end": 7.0, "text": "one two three four five six", "confidence": 0.8},
        {"start": 7.0, "end": 9.5, "text": "last", "confidence": 0.7},
        {"start": 12.0, "end": 13.0, "text": "after", "confidence": 0.7},
    ]
    out = label_segments(segments, turns)
    assert [(s["text"], s["speaker"]) for s in out] == [
        ("first part", "SPEAKER_1"),
        ("one two", "SPEAKER_1"),  # 1.2 s of 4: 1.8 words of 6
        ("three four five six", "SPEAKER_2"),
        ("last", "SPEAKER_2"),
        ("after", "SPEAKER_2"),  # outside every turn: the nearest
    ]
    assert out[1]["end"] == out[2]["start"] == 4.2 and out[2]["end"] == 7.0
    assert all(s["confidence"] for s in out)
    # a speaker's sliver under 0.6 s does not split a segment
    sliver = [Turn(0.0, 0.3, "SPEAKER_2"), Turn(0.3, 5.0, "SPEAKER_1")]
    [whole] = label_segments([{"start": 0.0, "end": 5.0, "text": "a b c"}], sliver)
    assert whole["speaker"] == "SPEAKER_1" and whole["text"] == "a b c"
    assert label_segments([{"start": 0.0, "end": 1.0, "text": "x"}], []) == [
        {"start": 0.0, "end": 1.0, "text": "x"}
    ]


def test_talk_time_in_speaker_order() -> None:
    turns = [Turn(0, 2, "SPEAKER_1"), Turn(2, 7, "SPEAKER_10"), Turn(7, 8, "SPEAKER_1")]
    assert talk_time(turns) == [
        {"speaker": "SPEAKER_1", "seconds": 3.0, "turns": 2},
        {"speaker": "SPEAKER_10", "seconds": 5.0, "turns": 1},
    ]


def test_chunks_and_vtt_carry_speakers() -> None:
    sections = [
        Section(f"words of segment {n} here", start_s=n, end_s=n + 1, metadata={"speaker": who})
        for n, who in enumerate(["SPEAKER_2", "SPEAKER_1", "SPEAKER_2", "SPEAKER_1"])
    ]
    chunks = chunk_sections(sections, WhitespaceTokenizer(), size=10, overlap=0)
    assert [c.metadata["speakers"] for c in chunks] == [["SPEAKER_2", "SPEAKER_1"]] * 2
    unlabelled = [Section("no speaker here", start_s=0, end_s=1)]
    assert "speakers" not in chunk_sections(unlabelled, WhitespaceTokenizer(), 10, 0)[0].metadata
    vtt = webvtt([{"start": 0.0, "end": 1.5, "text": "Hello.", "speaker": "SPEAKER_1"}])
    assert "00:00:00.000 --> 00:00:01.500\n<v SPEAKER_1>Hello." in vtt
    assert "<v" not in webvtt([{"start": 0.0, "end": 1.0, "text": "Hi."}])


def test_turning_speakers_off_or_forcing_their_number_redoes_documents(tmp_path) -> None:
    from conveyor.app import Conveyor
    from conveyor.settings import Settings
    from conveyor.testing import FakeEmbedder

    f = tmp_path / "a.txt"
    f.write_text("A note that is ingested under three settings.")
    base = Settings(home=tmp_path / "home", isolate_extraction=False)
    outcomes = []
    for settings in (
        base,
        base,  # unchanged: skipped
        base.model_copy(update={"diarize": False}),
        base.model_copy(update={"diarize": False}),
        base.model_copy(update={"speakers": 2}),
    ):
        with Conveyor(settings, embedder=FakeEmbedder()) as cv:
            s = cv.ingest([f])
            outcomes.append("done" if s.done else "skipped" if s.skipped else "?")
    assert outcomes == ["done", "skipped", "done", "skipped", "done"]
