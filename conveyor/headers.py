"""Contextual headers: a chunk embedded with its document's title and section path
before its text (``CONVEYOR_CONTEXTUAL_HEADERS``).

A chunk from the middle of "Bike Manual", section "2 Maintenance › 2.1 Brakes",
is embedded as ``"Bike Manual › 2 Maintenance › 2.1 Brakes\\n\\n<its text>"``, so a
query that names the document or the section finds it although its own words
do not. Only the embedded text changes: the stored text, the lexical index and
the hits stay the chunk's own. The title is the document's own (a PDF's, a
Markdown file's first heading, an HTML title) or its first top heading; a
chunk that already starts with the title gets no title again.
"""

from __future__ import annotations

from collections.abc import Sequence

from .chunking import Chunk
from .describe import document_title
from .extract import Extracted
from .extract.outline import SEPARATOR

MAX_TITLE = 120
MAX_SECTION = 160
"""Characters of the title and of the section path kept in a header: a header is
context, and must leave the model's window to the chunk."""


def header(title: str | None, section: str | None, text: str) -> str:
    """The header for one chunk's text ('' when there is nothing to add)."""
    parts = []
    if title and not text.lstrip().lower().startswith(title.lower()):
        parts.append(title[:MAX_TITLE])
    if section:
        parts.append(section[:MAX_SECTION])
    return SEPARATOR.join(parts)


def contextual_texts(chunks: Sequence[Chunk], extracted: Extracted) -> list[str]:
    """What to embed for each chunk: its header, a blank line, its text."""
    title = document_title(extracted.metadata)
    out = []
    for chunk in chunks:
        section = chunk.metadata.get("section")
        found = header(title, section if isinstance(section, str) else None, chunk.text)
        out.append(f"{found}\n\n{chunk.text}" if found else chunk.text)
    return out
