"""Chunking: sizes in tokens, boundaries, offsets, overlap, and the hard limit."""

from __future__ import annotations

import itertools

from conveyor.chunking import chunk_sections
from conveyor.extract import Section
from conveyor.testing import WhitespaceTokenizer, prose


def _tok(max_tokens: int = 254) -> WhitespaceTokenizer:
    return WhitespaceTokenizer(max_tokens)


def test_every_chunk_within_size_and_offsets_exact() -> None:
    text = prose(7, 1500)
    tok = _tok()
    chunks = chunk_sections([Section(text)], tok, size=80, overlap=15)
    assert len(chunks) > 10
    for c in chunks:
        assert c.tokens <= 80
        assert text[c.start : c.end] == c.text
        assert tok.count([c.text])[0] == c.tokens
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_covers_all_text_in_order_with_overlap() -> None:
    text = prose(3, 800)
    chunks = chunk_sections([Section(text)], _tok(), size=60, overlap=12)
    assert chunks[0].start == 0
    assert chunks[-1].end == len(text.rstrip())
    for a, b in itertools.pairwise(chunks):
        assert b.start <= a.end  # no gap: every word is in some chunk
        assert b.start > a.start  # always moves forward
    overlapped = sum(1 for a, b in itertools.pairwise(chunks) if b.start < a.end)
    assert overlapped >= len(chunks) // 2


def test_no_overlap_means_disjoint() -> None:
    chunks = chunk_sections([Section(prose(5, 600))], _tok(), size=50, overlap=0)
    for a, b in itertools.pairwise(chunks):
        assert b.start >= a.end


def test_prefers_paragraph_then_sentence_boundaries() -> None:
    para = "Short sentence number one. Another short sentence here. And a third one."
    text = "\n\n".join([para] * 6)
    chunks = chunk_sections([Section(text)], _tok(), size=40, overlap=0)
    for c in chunks:
        assert c.text.endswith(".")
        assert c.text[0].isupper()


def test_size_capped_at_model_limit() -> None:
    tok = _tok(max_tokens=30)
    chunks = chunk_sections([Section(prose(1, 400))], tok, size=500, overlap=10)
    assert max(c.tokens for c in chunks) <= 30


def test_one_giant_word_is_split_not_truncated() -> None:
    class CharTokenizer(WhitespaceTokenizer):
        """Every character a token: a word with no boundary inside."""

        def offsets(self, text):
            return [(i, i + 1) for i, ch in enumerate(text) if not ch.isspace()]

        def count(self, texts):
            return [sum(1 for ch in t if not ch.isspace()) for t in texts]

    text = "x" * 1000
    chunks = chunk_sections([Section(text)], CharTokenizer(100), size=100, overlap=0)
    assert "".join(c.text for c in chunks) == text
    assert all(c.tokens <= 100 for c in chunks)


def test_pages_and_times_kept_and_numbering_spans_sections() -> None:
    sections = [
        Section("First page text about owls.", page=1),
        Section("Second page text about bats.", page=2),
        Section("Spoken words at the start.", start_s=0.0, end_s=4.5),
    ]
    chunks = chunk_sections(sections, _tok(), size=50, overlap=5)
    assert [c.page for c in chunks] == [1, 2, None]
    assert [c.index for c in chunks] == [0, 1, 2]
    assert (chunks[2].start_s, chunks[2].end_s) == (0.0, 4.5)


def test_empty_sections_give_no_chunks() -> None:
    assert chunk_sections([Section("   \n\n ")], _tok(), size=50, overlap=5) == []


def test_transcript_segments_packed_with_their_times() -> None:
    segments = [
        Section(f"Sentence number {i} spoken aloud here.", start_s=i * 2.0, end_s=i * 2.0 + 1.8)
        for i in range(30)
    ]
    chunks = chunk_sections(segments, _tok(), size=30, overlap=8)
    assert len(chunks) > 3
    for c in chunks:
        assert c.tokens <= 30
        first, last = c.text.split("Sentence number ")[1], c.text.rsplit("number ", 1)[1]
        assert c.start_s == int(first.split()[0]) * 2.0
        assert c.end_s == int(last.split()[0]) * 2.0 + 1.8
    assert chunks[0].start_s == 0.0 and chunks[-1].end_s == 29 * 2.0 + 1.8
    # consecutive chunks overlap by whole segments, and always move forward
    for a, b in itertools.pairwise(chunks):
        assert a.start_s < b.start_s <= a.end_s
