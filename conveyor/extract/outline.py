"""A PDF's structure: its headings, and each section's place under them.

The headings come from the outline (bookmarks) when the PDF has one; else
they are found from the text's fonts (:class:`FontLines`, fed by pypdf's
text visitor while each page is read): lines set larger than the body text,
or bold at the body's size, short, not ending like a sentence, and not
repeated on many pages (running headers). Levels follow the sizes, largest
first.

:func:`split_sections` then cuts each page's text where a heading starts,
so that a chunk never runs across a heading, and gives every piece its
``section`` path: ``"3 Maintenance › 3.2 Brakes"``. A heading whose words are not
found on its page (an outline entry worded otherwise than the text) takes effect
at the page's start, or after the page when a heading before it was found.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import Section

SEPARATOR = " › "
MAX_HEADINGS = 2000
"""Headings kept at most (an outline or a heading-rich document past it is cut)."""
MAX_DEPTH = 16
_LARGER = 1.15
"""A line this much larger than the body text is a heading candidate."""
_MAX_HEADING_CHARS = 120
_MAX_HEADING_WORDS = 14
_SENTENCE_END = re.compile(r"[.,;:!?]\W*$")
_BOLD = re.compile(r"bold|black|heavy|semibold|demi", re.IGNORECASE)


@dataclass(frozen=True)
class Heading:
    title: str
    page: int
    """1-based page the heading is on."""
    level: int
    """0 for the top level."""

    def as_dict(self) -> dict[str, Any]:
        return {"title": self.title, "page": self.page, "level": self.level}


OUTLINE_KEPT = 500
"""Headings kept in the document's metadata."""


@dataclass
class Structure:
    headings: list[Heading]
    source: str
    """``"outline"``, ``"fonts"`` or ``"none"``."""

    def as_metadata(self) -> dict[str, Any]:
        """``outline`` (title, page, level of each heading, the first :data:`OUTLINE_KEPT`)
        and ``structure`` (where the headings came from)."""
        found: dict[str, Any] = {"structure": self.source}
        if self.headings:
            found["outline"] = [h.as_dict() for h in self.headings[:OUTLINE_KEPT]]
        return found


def _title(value: Any) -> str:
    return " ".join(str(value or "").split())[: _MAX_HEADING_CHARS * 2]


def read_outline(reader: Any) -> list[Heading]:
    """The outline's entries in order, each with its page and depth; entries that point
    nowhere are left out. Walked without recursion, bounded in count and depth."""
    try:
        top = reader.outline
    except Exception:  # a damaged outline is no outline
        return []
    found: list[Heading] = []
    stack: list[tuple[list[Any], int, int]] = [(list(top), 0, 0)]
    while stack and len(found) < MAX_HEADINGS:
        items, position, depth = stack.pop()
        if position >= len(items):
            continue
        stack.append((items, position + 1, depth))
        item = items[position]
        if isinstance(item, list):
            if depth + 1 < MAX_DEPTH:
                stack.append((item, 0, depth + 1))
            continue
        try:
            page = reader.get_destination_page_number(item)
        except Exception:
            continue
        title = _title(getattr(item, "title", ""))
        if title and page is not None and page >= 0:
            found.append(Heading(title, page + 1, depth))
    return found


class PageVisitor:
    """pypdf's ``visitor_text`` for one page: gathers its lines with their look."""

    def __init__(self, lines: list[tuple[str, float, bool]]) -> None:
        self.lines = lines
        self.chars: Counter[tuple[float, bool]] = Counter()
        self.text: list[str] = []

    def __call__(self, text: str, cm: Any, tm: Any, font: Any, size: Any) -> None:
        try:
            scale = math.hypot(float(tm[2]), float(tm[3])) * math.hypot(float(cm[2]), float(cm[3]))
            points = round(float(size or 0) * (scale or 1.0), 1)
            name = str(font.get("/BaseFont", "")) if font is not None else ""
        except Exception:  # an odd matrix or font: count the text, not its look
            points, name = 0.0, ""
        bold = bool(_BOLD.search(name))
        for n, piece in enumerate(text.split("\n")):
            if n:
                self.finish()
            if piece.strip():
                self.text.append(piece)
                self.chars[(points, bold)] += len(piece.strip())

    def finish(self) -> None:
        """End the line in hand (also the page's last line, which needs no newline)."""
        text = " ".join("".join(self.text).split())
        if text and self.chars:
            (size, bold), _ = self.chars.most_common(1)[0]
            self.lines.append((text, size, bold))
        self.chars.clear()
        self.text.clear()


@dataclass
class FontLines:
    """Lines of text with their font size and weight, page by page, from pypdf's
    ``visitor_text``: ``page.extract_text(visitor_text=fonts.visitor(n))``, then
    ``visitor.finish()``."""

    pages: dict[int, list[tuple[str, float, bool]]] = field(default_factory=dict)
    """page → (line text, size, bold) in reading order."""

    def visitor(self, number: int) -> PageVisitor:
        self.pages[number] = []
        return PageVisitor(self.pages[number])


def detect_headings(fonts: FontLines) -> list[Heading]:
    """Headings by font: larger than the body, or bold at its size; levels by size."""
    weight: Counter[tuple[float, bool]] = Counter()
    for lines in fonts.pages.values():
        for text, size, bold in lines:
            weight[(size, bold)] += len(text)
    if not weight:
        return []
    (body, body_bold), _ = weight.most_common(1)[0]
    if body <= 0:
        return []
    seen_on: Counter[str] = Counter()
    for lines in fonts.pages.values():
        for text in {t for t, _, _ in lines}:
            seen_on[text] += 1
    many = max(3, len(fonts.pages) // 3)
    candidates: list[tuple[int, str, float]] = []
    for page in sorted(fonts.pages):
        for text, size, bold in fonts.pages[page]:
            larger = size >= body * _LARGER
            bolder = bold and not body_bold and size >= body * 0.95
            if not (larger or bolder) or (seen_on[text] >= many and len(fonts.pages) > 3):
                continue
            if len(text) > _MAX_HEADING_CHARS or len(text.split()) > _MAX_HEADING_WORDS:
                continue
            if _SENTENCE_END.search(text) or not any(ch.isalpha() for ch in text):
                continue
            # bold at the body's size ranks below every larger size
            candidates.append((page, text, size if larger else body - 0.01))
            if len(candidates) >= MAX_HEADINGS:
                break
    sizes = sorted({size for _, _, size in candidates}, reverse=True)[:MAX_DEPTH]
    rank = {size: n for n, size in enumerate(sizes)}
    return [Heading(text, page, rank[size]) for page, text, size in candidates if size in rank]


def found(fonts: FontLines | None) -> Structure:
    """The structure of a PDF without an outline: headings by their fonts, if any."""
    headings = detect_headings(fonts) if fonts is not None else []
    return Structure(headings, "fonts" if headings else "none")


def _pattern(title: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in title.split()]
    return re.compile(r"\s+".join(words), re.IGNORECASE)


def split_sections(sections: Sequence[Section], headings: Sequence[Heading]) -> list[Section]:
    """Each section (a page's text) cut where a heading starts, every piece carrying its
    ``section`` path in its metadata. A heading not found in its page's text takes effect
    at the page's start, or after the page if one before it was found. A piece that is
    only a heading joins the next piece, so that a heading is never a chunk of its own."""
    if not headings:
        return list(sections)
    by_page: dict[int, list[Heading]] = {}
    for heading in headings:
        by_page.setdefault(heading.page, []).append(heading)
    path: list[tuple[int, str]] = []
    pending_pages = sorted(by_page)
    out: list[Section] = []
    carried = ""  # a heading's own text waiting for the text under it

    def enter(heading: Heading) -> None:
        while path and path[-1][0] >= heading.level:
            path.pop()
        path.append((heading.level, heading.title))

    def emit(section: Section, text: str) -> None:
        nonlocal carried
        piece = text.strip()
        if not piece:
            return
        if carried:
            piece = carried + "\n\n" + piece
            carried = ""
        label = SEPARATOR.join(title for _, title in path)
        metadata = dict(section.metadata)
        if label:
            metadata["section"] = label
        out.append(Section(piece, page=section.page, metadata=metadata))

    for section in sections:
        page = section.page or 0
        while pending_pages and pending_pages[0] < page:  # pages without text in between
            for heading in by_page[pending_pages.pop(0)]:
                enter(heading)
        if not pending_pages or pending_pages[0] != page:
            emit(section, section.text)
            continue
        text, position = section.text, 0
        deferred: list[Heading] = []
        found_any = False
        for heading in by_page[pending_pages.pop(0)]:
            match = _pattern(heading.title).search(text, position)
            if match is None:  # from the page's start if none was found yet, else after it
                (deferred.append if found_any else enter)(heading)
                continue
            found_any = True
            emit(section, text[position : match.start()])
            enter(heading)
            position = match.start()
            rest = text[match.end() :]
            if not rest.strip() or _pattern_at_next(rest, by_page.get(page, []), heading):
                carried = (carried + "\n\n" if carried else "") + text[position : match.end()]
                position = match.end()
        emit(section, text[position:])
        for heading in deferred:
            enter(heading)
    if carried and out:  # a heading at the very end: keep its words with the last piece
        last = out[-1]
        out[-1] = Section(last.text + "\n\n" + carried, page=last.page, metadata=last.metadata)
    return out


def _pattern_at_next(rest: str, headings: list[Heading], current: Heading) -> bool:
    """Whether the next heading on the page follows ``current`` with nothing between."""
    later = headings[headings.index(current) + 1 :] if current in headings else []
    return bool(later) and _pattern(later[0].title).match(rest.lstrip()) is not None
