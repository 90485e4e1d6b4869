"""Token-aware chunking in the embedding model's own tokens.

A chunk holds at most ``size`` tokens and never more than the model reads
(``tokenizer.max_tokens``), so nothing is silently truncated. Breaks are
placed at the strongest boundary in the second half of the window —
paragraph, then sentence or line, then word — and the next chunk starts
``overlap`` tokens back, snapped forward to a sentence or word start.
Each chunk keeps its character offsets in its section, its page, and for
audio its start and end seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .embedding import Tokenizer
from .extract import Section

log = logging.getLogger(__name__)

_PARAGRAPH, _SENTENCE, _WORD, _INSIDE = 3, 2, 1, 0
_SENTENCE_END = frozenset(".!?;:。！？")


@dataclass
class Chunk:
    index: int
    text: str
    start: int  # character offset in its section's text
    end: int
    tokens: int
    section: int = 0
    page: int | None = None
    start_s: float | None = None
    end_s: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def effective_size(size: int, overlap: int, tokenizer: Tokenizer) -> tuple[int, int]:
    """``size`` capped at what the model reads; ``overlap`` capped at half of it."""
    if size > tokenizer.max_tokens:
        log.warning(
            "chunk size %d is over the model's %d tokens; using %d",
            size,
            tokenizer.max_tokens,
            tokenizer.max_tokens,
        )
        size = tokenizer.max_tokens
    return size, max(0, min(overlap, size // 2))


def _boundaries(text: str, spans: Sequence[tuple[int, int]]) -> list[int]:
    """``score[i]``: how good a break before token ``i`` is."""
    scores = [_PARAGRAPH] + [_INSIDE] * (len(spans) - 1)
    for i in range(1, len(spans)):
        prev_end, start = spans[i - 1][1], spans[i][0]
        gap = text[prev_end:start]
        if not gap:
            continue
        if gap.count("\n") >= 2:
            scores[i] = _PARAGRAPH
        elif "\n" in gap or text[prev_end - 1 : prev_end] in _SENTENCE_END:
            scores[i] = _SENTENCE
        else:
            scores[i] = _WORD
    return scores


def _split_section(
    text: str, tokenizer: Tokenizer, size: int, overlap: int
) -> list[tuple[int, int, int]]:
    """(char start, char end, tokens) of each chunk of one section."""
    spans = [s for s in tokenizer.offsets(text) if s[1] > s[0]]
    n = len(spans)
    if n == 0:
        return []
    scores = _boundaries(text, spans)
    pieces = []
    start = 0
    while start < n:
        end = min(n, start + size)
        if end < n:
            # strongest boundary in the back half of the window, latest on ties
            low = start + max(1, size // 2)
            best = max(range(low, end + 1), key=lambda i: (scores[i] if i < n else 4, i))
            if scores[best] > _INSIDE:
                end = best
        pieces.append((spans[start][0], spans[end - 1][1], end - start))
        if end >= n:
            break
        nxt = end
        if overlap:
            window = range(max(start + 1, end - overlap), end)
            for wanted in (_SENTENCE, _WORD):
                good = [i for i in window if scores[i] >= wanted]
                if good:
                    nxt = good[0]
                    break
        start = nxt
    return pieces


def chunk_sections(
    sections: Sequence[Section], tokenizer: Tokenizer, size: int, overlap: int
) -> list[Chunk]:
    """Chunks of every section, numbered across the document."""
    size, overlap = effective_size(size, overlap, tokenizer)
    chunks: list[Chunk] = []
    for number, section in enumerate(sections):
        for start, end, tokens in _split_section(section.text, tokenizer, size, overlap):
            chunks.append(
                Chunk(
                    index=len(chunks),
                    text=section.text[start:end],
                    start=start,
                    end=end,
                    tokens=tokens,
                    section=number,
                    page=section.page,
                    start_s=section.start_s,
                    end_s=section.end_s,
                    metadata=dict(section.metadata),
                )
            )
    return _enforce_limit(chunks, tokenizer)


def _enforce_limit(chunks: list[Chunk], tokenizer: Tokenizer) -> list[Chunk]:
    """Re-count each chunk on its own; split any that the model would truncate.

    Breaking inside a very long word can make a piece tokenize longer alone
    than it did in context; this is the guarantee, not the common path.
    """
    limit = tokenizer.max_tokens
    counts = tokenizer.count([c.text for c in chunks])
    if all(c <= limit for c in counts):
        for chunk, count in zip(chunks, counts, strict=True):
            chunk.tokens = count
        return chunks
    out: list[Chunk] = []
    for chunk, count in zip(chunks, counts, strict=True):
        stack = [(chunk.start, chunk.end, count)]
        while stack:
            start, end, tokens = stack.pop()
            if tokens <= limit or end - start <= 1:
                text = chunk.text[start - chunk.start : end - chunk.start]
                out.append(_piece(chunk, start, end, text, tokens))
                continue
            middle = (start + end) // 2
            left, right = (
                chunk.text[start - chunk.start : middle - chunk.start],
                chunk.text[middle - chunk.start : end - chunk.start],
            )
            left_n, right_n = tokenizer.count([left, right])
            stack.append((middle, end, right_n))
            stack.append((start, middle, left_n))
    for index, piece in enumerate(out):
        piece.index = index
    return out


def _piece(chunk: Chunk, start: int, end: int, text: str, tokens: int) -> Chunk:
    return Chunk(
        index=0,
        text=text,
        start=start,
        end=end,
        tokens=tokens,
        section=chunk.section,
        page=chunk.page,
        start_s=chunk.start_s,
        end_s=chunk.end_s,
        metadata=dict(chunk.metadata),
    )
