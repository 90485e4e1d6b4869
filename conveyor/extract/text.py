"""Plain text and Markdown: decode, clean up, and (for Markdown) strip the markup.

Markdown is parsed by markdown-it-py (CommonMark, plus GitHub's tables and
strikethrough) and becomes plain prose suited for embedding: heading text
stays as its own paragraph without the ``#``, ``[text](url)`` becomes
``text`` (the URL goes to ``metadata["links"]``), images become their alt
text, emphasis and backticks go, code keeps its content, HTML keeps only its
visible text, task-list boxes go, table rows become ``a | b`` lines. Blocks
written on adjacent lines stay on adjacent lines; a blank line between them
in the source is a paragraph break. YAML front matter (``---`` ... ``---`` at
the top) is read as simple ``key: value`` lines into the metadata.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token

from conveyor.exceptions import EmptyDocument

from . import Extracted, Section, register
from .html import html_to_text
from .sniff import decode_text

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f\ufeff]")
_MANY_BLANKS = re.compile(r"\n{3,}")
_TASK_BOX = re.compile(r"\[[ xX]\][ \t]+")
#: How deep markdown-it follows blocks (a list level is two: list and item) and
#: inline markup (brackets, emphasis); what is nested deeper is skipped.
#: CommonMark's preset stops both at 20, which loses a tenth list level; inline
#: markup keeps 20, as its cost grows with the limit on every ``[`` or ``![``.
_BLOCK_NESTING, _INLINE_NESTING = 100, 20


def _markdown_parser(nesting: int) -> MarkdownIt:
    parser = MarkdownIt("commonmark", {"maxNesting": nesting})
    parser.enable(["table", "strikethrough"])
    # Links are metadata, not markup to render: keep every URL as it was written.
    parser.validateLink = lambda url: True  # type: ignore[method-assign]
    parser.normalizeLink = lambda url: url  # type: ignore[method-assign]
    return parser


_BLOCKS = _markdown_parser(_BLOCK_NESTING).disable("inline")
_INLINE = _markdown_parser(_INLINE_NESTING)


def _parse(source: str, env: dict[str, Any]) -> list[Token]:
    """markdown-it's tokens: blocks with the deep limit, then each block's inline content."""
    tokens = _BLOCKS.parse(source, env)
    for token in tokens:
        if token.type == "inline":
            token.children = []
            _INLINE.inline.parse(token.content, _INLINE, env, token.children)
    return tokens


def normalise_text(text: str) -> str:
    """Unix newlines, no control characters but ``\\n``/``\\t``, at most one blank line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n\n")
    text = _CONTROL.sub("", text)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _MANY_BLANKS.sub("\n\n", text).strip("\n")


@register("text")
def extract_text(data: bytes, options: dict[str, Any]) -> Extracted:
    """Plain text: one section, paragraphs (blank lines) kept, no title."""
    decoded, encoding = decode_text(data)
    cleaned = normalise_text(decoded)
    if not cleaned.strip():
        raise EmptyDocument("file holds no text")
    return Extracted("text", "text/plain", [Section(cleaned)], {"encoding": encoding})


def _split_front_matter(text: str) -> tuple[dict[str, str], str]:
    """Pull ``key: value`` pairs out of a leading ``---`` block."""
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        return {}, text
    for end in range(1, len(lines)):
        if lines[end].strip() in ("---", "..."):
            break
    else:
        return {}, text
    fields: dict[str, str] = {}
    for line in lines[1:end]:
        key, sep, value = line.partition(":")
        if sep and key.strip() and not line[:1].isspace():
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            fields[key.strip().lower()] = value
    return fields, "\n".join(lines[end + 1 :])


@dataclass
class _Block:
    """A leaf block's plain text and the source lines it came from."""

    text: str
    first: int
    last: int
    """One past its last line."""
    apart: bool = False
    """Starts a paragraph whatever the spacing (a heading, after a heading or a rule)."""


class _Plain:
    """Turns markdown-it's token stream into blocks of plain text."""

    def __init__(self) -> None:
        self.blocks: list[_Block] = []
        self.links: list[str] = []
        self.title: str | None = None
        self.pending_break = False
        self.row: list[str] | None = None
        self.row_lines = (0, 0)
        self.table_end: int | None = None

    def inline(self, children: Sequence[Token]) -> str:
        out: list[str] = []
        for child in children:
            if child.type in ("text", "code_inline", "text_special"):
                out.append(child.content)
            elif child.type in ("softbreak", "hardbreak"):
                out.append("\n")
            elif child.type == "image":
                out.append(self.inline(child.children or []))
            elif child.type == "link_open":
                self.links.append(str(child.attrs.get("href", "")))
        return "".join(out)

    def add(self, text: str, lines: list[int] | None, apart: bool = False) -> None:
        first, last = lines or (0, 0)
        self.blocks.append(_Block(text, first, last, apart or self.pending_break))
        self.pending_break = False

    def feed(self, tokens: Sequence[Token]) -> None:
        heading: str | None = None
        in_item = False
        for token in tokens:
            kind = token.type
            if kind == "heading_open":
                heading = token.tag
            elif kind == "heading_close":
                heading = None
            elif kind == "list_item_open":
                in_item = True
            elif kind == "paragraph_close":
                in_item = False
            elif kind == "hr":
                self.pending_break = True
            elif kind in ("fence", "code_block"):
                self.add(token.content.rstrip("\n"), token.map)
            elif kind == "html_block":
                self.add(html_to_text(token.content), token.map)
            elif kind == "tr_open":
                first, last = token.map or (0, 0)
                self.row, self.row_lines = [], (first, last)
            elif kind == "tr_close" and self.row is not None:
                first, last = self.row_lines
                if self.table_end is not None:
                    first = self.table_end  # the |---| line under the header is no break
                self.add(" | ".join(self.row), [first, last])
                self.row, self.table_end = None, last
            elif kind == "table_close":
                self.table_end = None
            elif kind == "inline":
                text = self.inline(token.children or []).strip()
                if self.row is not None:
                    self.row.append(text)
                    continue
                if in_item and _TASK_BOX.match(text):
                    text = _TASK_BOX.sub("", text, count=1)
                if heading == "h1" and self.title is None and text:
                    self.title = text
                self.add(text, token.map, apart=heading is not None)
                self.pending_break = heading is not None  # and so does what follows it

    def text(self) -> str:
        out: list[str] = []
        previous: _Block | None = None
        carried = False  # a break owed by a block without text
        for block in self.blocks:
            if not block.text.strip():
                carried = carried or block.apart
                continue
            if previous is not None:
                apart = carried or block.apart or block.first > previous.last
                out.append("\n\n" if apart else "\n")
            carried = False
            out.append(block.text)
            previous = block
        return "".join(out)


def markdown_to_text(source: str) -> tuple[str, str | None, list[str]]:
    """Plain text of a Markdown document, its first H1 (or None), and its link URLs."""
    env: dict[str, Any] = {}
    plain = _Plain()
    plain.feed(_parse(source, env))
    references = [str(ref.get("href", "")) for ref in env.get("references", {}).values()]
    return normalise_text(plain.text()), plain.title, plain.links + references


@register("markdown")
def extract_markdown(data: bytes, options: dict[str, Any]) -> Extracted:
    """Markdown: one section of plain text; title = first H1 (or front matter ``title``)."""
    decoded, encoding = decode_text(data)
    front_matter, body = _split_front_matter(normalise_text(decoded))
    plain, title, links = markdown_to_text(body)
    if not plain.strip():
        raise EmptyDocument("Markdown file holds no text")
    metadata: dict[str, Any] = dict(front_matter)
    metadata["encoding"] = encoding
    if title:
        metadata["title"] = title
    metadata["links"] = list(dict.fromkeys(links))
    return Extracted("markdown", "text/markdown", [Section(plain)], metadata)
