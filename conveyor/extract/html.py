"""HTML: the visible text of a page, with its title, description and links.

Parsed by lexbor (through selectolax) into the tree a browser would build,
following the HTML Standard: implied and stray tags, unclosed elements,
entities, a tag or comment cut off by the end of the file. One walk over the
tree, without recursion, collects the text: script, style, ``<head>`` and
hidden elements are skipped; block elements become paragraph breaks, ``<br>``
a line break; whitespace collapses except inside ``<pre>``.

A tree builder has to look through the open elements for many tags, so
absurd nesting costs time: 100,000 nested ``<div>`` take lexbor about 30 s
(20,000 take 0.4 s, ordinary pages a few dozen levels). The extraction
child's wall-clock limit (:mod:`conveyor.isolation`) is what bounds a
hostile file.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from typing import Any

from selectolax.lexbor import LexborHTMLParser, LexborNode

from conveyor.exceptions import EmptyDocument

from . import Extracted, Section, register
from .sniff import BOMS, decode_text

#: Elements whose content is not shown (``iframe``, ``noembed`` and ``noframes``
#: hold raw markup that browsers do not render).
SKIPPED = frozenset(
    """script style noscript template svg head math title iframe noembed noframes""".split()
)
BLOCKS = frozenset(
    """address article aside blockquote body caption center dd details dialog div dl dt
    fieldset figcaption figure footer form h1 h2 h3 h4 h5 h6 header hgroup hr html legend li
    main menu nav ol p pre section summary table tbody tfoot thead tr ul""".split()
)
_CELLS = frozenset({"td", "th"})
_META_KEYS = ("description", "author", "keywords", "og:title")
_SPACES = re.compile(r"\s+")
_DISPLAY_NONE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_TITLE_START = re.compile(r"<title[\s>/]", re.IGNORECASE)
_TITLE_END = re.compile(r"</title", re.IGNORECASE)
_NOT_LINKS = ("javascript:", "mailto:", "tel:", "data:", "#")
_PARA, _LINE = "\n\n", "\n"
_PRE = "\x00pre"  # marks text from inside <pre>, which keeps its spaces


def decode_html(data: bytes) -> tuple[str, str]:
    """Decode by BOM, else ``<meta charset>`` in the first 4 KiB, else as text is decoded.

    Undeclared pages go through :func:`~conveyor.extract.sniff.decode_text`:
    UTF-8 when they are (even with a few damaged bytes), else what
    charset-normalizer finds.
    """
    for bom, encoding in BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, errors="replace"), encoding
    declared = _META_CHARSET.search(data[:4096])
    if declared:
        name = declared.group(1).decode("ascii").lower()
        if not name.startswith(("utf-16", "utf-32", "utf16", "utf32")):
            # (a page that can declare its charset in ASCII is not UTF-16)
            try:
                return data.decode(name, errors="replace"), codecs.lookup(name).name
            except LookupError:
                pass
    return decode_text(data)


def close_open_title(markup: str) -> str:
    """End a ``<title>`` that is never closed at the next tag.

    The HTML Standard reads everything after an unclosed ``<title>`` as its
    text, so a page that forgot ``</title>`` would have no body at all.
    """
    start = _TITLE_START.search(markup)
    if start is None or _TITLE_END.search(markup, start.end()):
        return markup
    content = markup.find(">", start.start())
    tag = markup.find("<", content + 1) if content >= 0 else -1
    if tag < 0:
        return markup
    return f"{markup[:tag]}</title>{markup[tag:]}"


def _walk(root: LexborNode) -> Iterator[tuple[LexborNode, bool]]:
    """Every node below ``root`` in document order, as ``(node, entering)``; no recursion."""
    node: LexborNode | None = root
    while node is not None:
        yield node, True
        child = node.first_child
        if child is not None:
            node = child
            continue
        while node is not None:
            yield node, False
            if node.mem_id == root.mem_id:
                return
            following = node.next
            if following is not None:
                node = following
                break
            node = node.parent


def _is_hidden(attributes: dict[str, str | None]) -> bool:
    if "hidden" in attributes or (attributes.get("aria-hidden") or "").strip().lower() == "true":
        return True
    return bool(_DISPLAY_NONE.search(attributes.get("style") or ""))


class _VisibleText:
    """Lays out the text of a walk as paragraphs, and keeps the page's metadata."""

    def __init__(self) -> None:
        self.hidden: list[bool] = []  # per open element: does it hide its content
        self.hiding = 0
        self.pre = 0
        self.svg = 0
        self.title: str | None = None
        self.meta: dict[str, str] = {}
        self.links: list[str] = []
        self.paragraphs: list[str] = []
        self.current: list[str] = []

    # -- output ---------------------------------------------------------------
    def _break(self, kind: str) -> None:
        if kind == _PARA:
            self._flush()
        elif self.current and not self.current[-1].endswith("\n"):
            self.current.append("\n")

    def _flush(self) -> None:
        text = "".join(self.current)
        self.current = []
        lines = [line.rstrip() for line in text.split("\n")]
        if not any(line.strip() for line in lines):
            return
        if not any(_PRE in line for line in lines):
            lines = [line.strip() for line in lines]
        joined = "\n".join(line.replace(_PRE, "") for line in lines).strip("\n")
        if joined.strip():
            self.paragraphs.append(joined)

    def _text(self, data: str) -> None:
        if self.pre:
            self.current.append(_PRE + data)
            return
        data = _SPACES.sub(" ", data)
        if data.startswith(" ") and (not self.current or self.current[-1][-1:] in " \n"):
            data = data[1:]
        if data:
            self.current.append(data)

    # -- the walk -------------------------------------------------------------
    def enter(self, node: LexborNode) -> None:
        tag = node.tag or ""
        if node.is_text_node:
            if not self.hiding:
                self._text(node.text_content or "")
            return
        if not node.is_element_node:
            return
        attributes = node.attributes
        if tag == "title" and not self.svg and self.title is None:
            self.title = node.text(deep=True)
        elif tag == "meta":
            key = (attributes.get("name") or attributes.get("property") or "").lower()
            content = (attributes.get("content") or "").strip()
            if key in _META_KEYS and content:
                self.meta.setdefault(key, content)
        elif tag == "html" and attributes.get("lang"):
            self.meta.setdefault("language", (attributes.get("lang") or "").strip())
        hides = tag in SKIPPED or _is_hidden(attributes)
        self.hidden.append(hides)
        self.hiding += hides
        self.svg += tag == "svg"
        if self.hiding:
            return
        if tag == "br":
            self._break(_LINE)
        elif tag == "a":
            href = (attributes.get("href") or "").strip()
            if href and not href.lower().startswith(_NOT_LINKS):
                self.links.append(href)
        self.pre += tag == "pre"
        if tag in BLOCKS:
            self._break(_PARA)
        elif tag in _CELLS:
            self._text(" ")

    def leave(self, node: LexborNode) -> None:
        if not node.is_element_node:
            return
        tag = node.tag or ""
        shown = not self.hiding
        self.hiding -= self.hidden.pop()
        self.svg -= tag == "svg"
        if not shown:
            return
        self.pre -= tag == "pre"
        if tag in BLOCKS:
            self._break(_PARA)
        elif tag in _CELLS:
            self._text(" ")

    def result(self) -> list[str]:
        """The paragraphs collected (call after the walk)."""
        self._flush()
        return self.paragraphs


def _read(markup: str) -> _VisibleText:
    tree = LexborHTMLParser(close_open_title(markup.replace("\x00", "")))
    page = _VisibleText()
    if tree.root is not None:
        for node, entering in _walk(tree.root):
            if entering:
                page.enter(node)
            else:
                page.leave(node)
    return page


def html_to_text(markup: str) -> str:
    """The visible text of a page or fragment, paragraphs apart by blank lines."""
    return "\n\n".join(_read(markup).result())


@register("html")
def extract_html(data: bytes, options: dict[str, Any]) -> Extracted:
    """HTML: one section of visible text; title, description, author and links as metadata."""
    decoded, encoding = decode_html(data)
    page = _read(decoded)
    text = "\n\n".join(page.result())
    if not text.strip():
        raise EmptyDocument("HTML page has no visible text")
    metadata: dict[str, Any] = {"encoding": encoding}
    title = _SPACES.sub(" ", page.title or "").strip() or page.meta.get("og:title")
    if title:
        metadata["title"] = title
    for key in ("description", "author", "keywords", "language"):
        if page.meta.get(key):
            metadata[key] = page.meta[key]
    metadata["links"] = list(dict.fromkeys(page.links))
    return Extracted("html", "text/html", [Section(text)], metadata)
