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
from dataclasses import dataclass, field, replace
from typing import Any

from .embedding import Tokenizer
from .exceptions import DocumentTooLarge
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


@dataclass(frozen=True)
class ChunkPlan:
    """How to chunk a document, and what one document may hold at most. Picklable:
    the extraction child chunks with it, inside its memory and time limits."""

    tokenizer: Tokenizer | None
    """None once the child has it (sent once per child; see :mod:`conveyor.isolation`)."""
    size: int
    overlap: int
    max_chunks: int = 20_000
    max_text_chars: int = 20_000_000


def chunk_document(sections: Sequence[Section], plan: ChunkPlan) -> list[Chunk]:
    """:func:`chunk_sections` within the plan's limits: a document with more text than
    ``max_text_chars`` fails before it is tokenized, one with more chunks than
    ``max_chunks`` after."""
    assert plan.tokenizer is not None
    chars = sum(len(section.text) for section in sections)
    if chars > plan.max_text_chars:
        raise DocumentTooLarge(
            f"the document's text is {chars:,} characters, over the limit of "
            f"{plan.max_text_chars:,} per document (CONVEYOR_MAX_TEXT_CHARS); split the "
            "file or raise the limit"
        )
    chunks = chunk_sections(sections, plan.tokenizer, plan.size, plan.overlap)
    if len(chunks) > plan.max_chunks:
        raise DocumentTooLarge(
            f"the document makes {len(chunks):,} chunks, over the limit of "
            f"{plan.max_chunks:,} per document (CONVEYOR_MAX_CHUNKS); split the file or "
            "raise the limit"
        )
    return chunks


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
    timed = [n for n, section in enumerate(sections) if section.start_s is not None]
    if timed:
        chunks.extend(_pack_timed(sections, timed, tokenizer, size, overlap))
    for number, section in enumerate(sections):
        if section.start_s is not None:
            continue
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
                    metadata=dict(section.metadata),
                )
            )
    chunks.sort(key=lambda c: (c.section, c.start))
    for index, chunk in enumerate(chunks):
        chunk.index = index
    return _enforce_limit(chunks, tokenizer)


def _pack_timed(
    sections: Sequence[Section], numbers: list[int], tokenizer: Tokenizer, size: int, overlap: int
) -> list[Chunk]:
    """Timed sections (transcript segments) packed whole into chunks of up to ``size``
    tokens; a chunk runs from its first segment's start to its last one's end, and
    the next starts up to ``overlap`` tokens of segments back. Character offsets
    are in the transcript with segments joined by spaces."""
    segs = [sections[n] for n in numbers]
    counts = tokenizer.count([s.text for s in segs])
    offsets, position = [], 0
    for seg in segs:
        offsets.append(position)
        position += len(seg.text) + 1
    chunks: list[Chunk] = []
    i = 0
    while i < len(segs):
        if counts[i] > size:  # one long segment: split its text, keep its times
            for start, end, tokens in _split_section(segs[i].text, tokenizer, size, overlap):
                chunks.append(
                    _timed(
                        segs[i : i + 1],
                        numbers[i],
                        segs[i].text[start:end],
                        offsets[i] + start,
                        offsets[i] + end,
                        tokens,
                    )
                )
            i += 1
            continue
        j, total = i, 0
        while j < len(segs) and counts[j] <= size - total:
            total += counts[j]
            j += 1
        text = " ".join(s.text for s in segs[i:j])
        chunks.append(
            _timed(segs[i:j], numbers[i], text, offsets[i], offsets[i] + len(text), total)
        )
        if j >= len(segs):
            break
        k, back = j, 0
        while k - 1 > i and back + counts[k - 1] <= overlap:
            back += counts[k - 1]
            k -= 1
        i = k
    return chunks


def _timed(
    segs: Sequence[Section], number: int, text: str, start: int, end: int, tokens: int
) -> Chunk:
    return Chunk(
        index=0,
        text=text,
        start=start,
        end=end,
        tokens=tokens,
        section=number,
        start_s=segs[0].start_s,
        end_s=segs[-1].end_s,
        metadata={"segments": len(segs), **_speakers(segs)},
    )


def _speakers(segs: Sequence[Section]) -> dict[str, Any]:
    """A transcript chunk's speakers, in the order they first speak (none: no key)."""
    found = dict.fromkeys(s.metadata["speaker"] for s in segs if s.metadata.get("speaker"))
    return {"speakers": list(found)} if found else {}


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
    return replace(
        chunk, text=text, start=start, end=end, tokens=tokens, metadata=dict(chunk.metadata)
    )
