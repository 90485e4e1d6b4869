"""HTML: the visible text of a page, with its title, description and links.

Built on the standard library's :class:`html.parser.HTMLParser`, which is
tolerant of malformed markup. Script, style, ``<head>`` and hidden elements
are skipped; block elements become paragraph breaks, ``<br>`` a line break;
whitespace collapses except inside ``<pre>``.
"""

from __future__ import annotations

import codecs
import re
from html.parser import HTMLParser
from typing import Any

from conveyor.exceptions import EmptyDocument

from . import Extracted, Section, register

SKIPPED = frozenset({"script", "style", "noscript", "template", "svg", "head", "math"})
BLOCKS = frozenset(
    """address article aside blockquote body caption center dd details dialog div dl dt
    fieldset figcaption figure footer form h1 h2 h3 h4 h5 h6 header hgroup hr html legend li
    main menu nav ol p pre section summary table tbody tfoot thead tr ul""".split()
)
VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())
_CELLS = frozenset({"td", "th"})
_SELF_CLOSING = frozenset({"p", "li", "dt", "dd", "tr", "td", "th", "option"})
_SPACES = re.compile(r"\s+")
_DISPLAY_NONE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_MARKUP_START = re.compile(r"<[a-zA-Z/!?]")
_NOT_LINKS = ("javascript:", "mailto:", "tel:", "data:", "#")
_PARA, _LINE = "\n\n", "\n"
_BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))


def decode_html(data: bytes) -> tuple[str, str]:
    """Decode by BOM, else ``<meta charset>`` in the first 4 KiB, else UTF-8 (replacing)."""
    for bom, encoding in _BOMS:
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
    return data.decode("utf-8", errors="replace"), "utf-8"


def drop_unterminated_tail(markup: str) -> str:
    """Cut markup left open at the end (``<a href=...`` with no ``>``).

    Browsers drop a tag cut off by the end of the file; the standard parser
    instead re-scans it once per character, which is quadratic.
    """
    comment = markup.find("<!--", markup.rfind("-->") + 1)
    if comment >= 0:
        markup = markup[:comment]  # an unclosed comment hides the rest of the file
    match = _MARKUP_START.search(markup, markup.rfind(">") + 1)
    return markup[: match.start()] if match else markup


def _is_hidden(attrs: dict[str, str | None]) -> bool:
    if "hidden" in attrs or (attrs.get("aria-hidden") or "").strip().lower() == "true":
        return True
    return bool(_DISPLAY_NONE.search(attrs.get("style") or ""))


class _VisibleText(HTMLParser):
    """Collects visible text as a stream of strings and break markers."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool, bool]] = []  # (tag, hides, shown)
        self.open_counts: dict[str, int] = {}
        self.hiding = 0
        self.pre = 0
        self.svg = 0
        self.in_title = False
        self.title: list[str] = []
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
        if not any("\x00pre" in line for line in lines):
            lines = [line.strip() for line in lines]
        joined = "\n".join(line.replace("\x00pre", "") for line in lines).strip("\n")
        if joined.strip():
            self.paragraphs.append(joined)

    def _text(self, data: str) -> None:
        if self.pre:
            self.current.append("\x00pre" + data)
            return
        data = _SPACES.sub(" ", data)
        if data.startswith(" ") and (not self.current or self.current[-1][-1:] in " \n"):
            data = data[1:]
        if data:
            self.current.append(data)

    # -- parser callbacks ---------------------------------------------------
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.in_title = False  # a tag ends an unclosed <title> (its content has none)
        if tag == "title" and not self.svg and not self.title:
            self.in_title = True
        elif tag == "meta":
            key = (attributes.get("name") or attributes.get("property") or "").lower()
            content = (attributes.get("content") or "").strip()
            if key in ("description", "author", "keywords", "og:title") and content:
                self.meta.setdefault(key, content)
        elif tag == "html" and attributes.get("lang"):
            self.meta.setdefault("language", (attributes.get("lang") or "").strip())
        if tag in VOID:
            if tag == "br" and not self.hiding:
                self._break(_LINE)
            elif tag == "hr" and not self.hiding:
                self._break(_PARA)
            return
        if tag == "body":
            self.handle_endtag("head")  # browsers close an unclosed <head> here
        if tag in _SELF_CLOSING and self.stack and self.stack[-1][0] == tag:
            self.handle_endtag(tag)  # <li>a<li>b: the second closes the first
        hides = tag in SKIPPED or _is_hidden(attributes)
        self.hiding += hides
        self.svg += tag == "svg"
        shown = not self.hiding
        self.stack.append((tag, hides, shown))
        self.open_counts[tag] = self.open_counts.get(tag, 0) + 1
        if not shown:
            return
        if tag == "a":
            href = (attributes.get("href") or "").strip()
            if href and not href.lower().startswith(_NOT_LINKS):
                self.links.append(href)
        self.pre += tag == "pre"
        if tag in BLOCKS:
            self._break(_PARA)
        elif tag in _CELLS:
            self._text(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        if not self.open_counts.get(tag):
            return  # a stray end tag: ignore it, as browsers do
        while self.stack:
            open_tag, hides, shown = self.stack.pop()
            self.open_counts[open_tag] -= 1
            self.hiding -= hides
            self.svg -= open_tag == "svg"
            if shown:
                self.pre -= open_tag == "pre"
                if open_tag in BLOCKS:
                    self._break(_PARA)
                elif open_tag in _CELLS:
                    self._text(" ")
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
        elif not self.hiding:
            self._text(data)

    def result(self) -> list[str]:
        """The paragraphs collected so far (call after :meth:`close`)."""
        self._flush()
        return self.paragraphs


@register("html")
def extract_html(data: bytes, options: dict[str, Any]) -> Extracted:
    """HTML: one section of visible text; title, description, author and links as metadata."""
    decoded, encoding = decode_html(data)
    parser = _VisibleText()
    parser.feed(drop_unterminated_tail(decoded.replace("\x00", "")))
    parser.close()
    text = "\n\n".join(parser.result())
    if not text.strip():
        raise EmptyDocument("HTML page has no visible text")
    metadata: dict[str, Any] = {"encoding": encoding}
    title = _SPACES.sub(" ", "".join(parser.title)).strip() or parser.meta.get("og:title")
    if title:
        metadata["title"] = title
    for key in ("description", "author", "keywords", "language"):
        if parser.meta.get(key):
            metadata[key] = parser.meta[key]
    metadata["links"] = list(dict.fromkeys(parser.links))
    return Extracted("html", "text/html", [Section(text)], metadata)
