"""Plain text and Markdown: decode, clean up, and (for Markdown) strip the markup.

Markdown becomes plain prose suited for embedding: heading text stays as its
own paragraph without the ``#``, ``[text](url)`` becomes ``text`` (the URL
goes to ``metadata["links"]``), images become their alt text, emphasis and
backticks go, fenced code keeps its content, HTML tags are dropped. YAML
front matter (``---`` ... ``---`` at the top) is read as simple
``key: value`` lines into the metadata.
"""

from __future__ import annotations

import html as html_lib
import re
from typing import Any

from conveyor.exceptions import EmptyDocument

from . import Extracted, Section, register
from .sniff import decode_text

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f\ufeff]")
_MANY_BLANKS = re.compile(r"\n{3,}")

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]|$)")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_RULE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_QUOTE = re.compile(r"^[ \t]*(?:>[ \t]?)+")
_LIST_ITEM = re.compile(r"^[ \t]*(?:[-*+]|\d{1,9}[.)])[ \t]+(?:\[[ xX]\][ \t]+)?")
_TABLE_RULE = re.compile(r"^[ \t]*\|?[ \t]*:?-{3,}:?[ \t]*(?:\|[ \t]*:?-{3,}:?[ \t]*)*\|?[ \t]*$")
_LINK_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:[ \t]*<?([^\s>]+)>?")

_CODE_SPAN = re.compile(r"(`{1,8})([^\n]{1,1000}?)\1")
_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_IMAGE = re.compile(r"!\[([^\]]{0,500})\]\(\s*<?[^)\s>]{0,2000}>?(?:\s+[\"'(][^)]{0,500})?\s*\)")
_LINK = re.compile(r"\[([^\]]{0,500})\]\(\s*<?([^)\s>]{0,2000})>?(?:\s+[\"'(][^)]{0,500})?\s*\)")
_REF_LINK = re.compile(r"!?\[([^\]]{1,500})\]\[[^\]]{0,500}\]")
_AUTOLINK = re.compile(r"<((?:https?|ftp)://[^>\s]{1,2000})>")
_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_STRONG = re.compile(r"(\*\*|__)(?=\S)(.{1,1000}?)(?<=\S)\1")
_EM_STAR = re.compile(r"\*(?=\S)(.{1,1000}?)(?<=\S)\*")
_EM_UNDERSCORE = re.compile(r"(?<!\w)_(?=\S)(.{1,1000}?)(?<=\S)_(?!\w)")
_STRIKE = re.compile(r"~~(?=\S)(.{1,1000}?)(?<=\S)~~")
_ESCAPED_BASE = 0xE000  # private-use code points stand in for escaped characters


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


def _drop_comments(source: str) -> str:
    """Remove ``<!-- ... -->`` comments (an unclosed one is left alone)."""
    parts: list[str] = []
    pos = 0
    while (start := source.find("<!--", pos)) >= 0:
        end = source.find("-->", start + 4)
        if end < 0:
            break
        parts.append(source[pos:start])
        pos = end + 3
    parts.append(source[pos:])
    return "".join(parts)


def _heading_text(rest: str) -> str:
    """An ATX heading's text without its optional closing ``###``."""
    rest = rest.strip()
    stripped = rest.rstrip("#")
    if stripped != rest and (not stripped or stripped[-1] in " \t"):
        return stripped.rstrip()
    return rest


class _Inline:
    """Strips inline Markdown from one line, collecting link URLs."""

    def __init__(self, links: list[str]) -> None:
        self.links = links

    def _link(self, match: re.Match[str]) -> str:
        if match.group(2):
            self.links.append(match.group(2))
        return match.group(1)

    def _autolink(self, match: re.Match[str]) -> str:
        self.links.append(match.group(1))
        return match.group(1)

    def _plain(self, part: str) -> str:
        part = _ESCAPE.sub(lambda m: chr(_ESCAPED_BASE + ord(m.group(1))), part)
        part = _IMAGE.sub(r"\1", part)
        part = _LINK.sub(self._link, part)
        part = _REF_LINK.sub(r"\1", part)
        part = _AUTOLINK.sub(self._autolink, part)
        part = _TAG.sub("", part)
        for pattern in (_STRONG, _EM_STAR, _EM_UNDERSCORE, _STRIKE):
            part = pattern.sub(lambda m: m.group(m.lastindex or 0), part)
        part = re.sub("[\ue000-\ue07f]", lambda m: chr(ord(m.group(0)) - _ESCAPED_BASE), part)
        return html_lib.unescape(part)

    def __call__(self, line: str) -> str:
        """Plain text of ``line``; code spans keep their content verbatim."""
        out: list[str] = []
        pos = 0
        for match in _CODE_SPAN.finditer(line):
            out.append(self._plain(line[pos : match.start()]))
            out.append(match.group(2))
            pos = match.end()
        out.append(self._plain(line[pos:]))
        return "".join(out)


def markdown_to_text(source: str) -> tuple[str, str | None, list[str]]:
    """Plain text of a Markdown document, its first H1 (or None), and its link URLs."""
    links: list[str] = []
    inline = _Inline(links)
    title: str | None = None
    out: list[str] = []
    fence: str | None = None
    for raw in _drop_comments(source).split("\n"):
        fence_match = _FENCE.match(raw)
        if fence is not None:
            if fence_match and fence_match.group(1)[0] == fence[0]:
                if len(fence_match.group(1)) >= len(fence):
                    fence = None
                    continue
            out.append(raw.rstrip())
            continue
        if fence_match:
            fence = fence_match.group(1)
            continue
        previous = out[-1] if out else ""
        setext = _SETEXT.match(raw)
        if setext and previous.strip():
            # "Title\n=====": the line above is a heading; give it its own paragraph.
            if setext.group(1)[0] == "=" and title is None:
                title = previous.strip()
            if len(out) >= 2 and out[-2].strip():
                out.insert(len(out) - 1, "")
            out.append("")
            continue
        if _TABLE_RULE.match(raw) and "|" in raw:
            continue  # the |---|---| line under a table header
        if _RULE.match(raw):
            out.append("")
            continue
        link_def = _LINK_DEF.match(raw)
        if link_def:
            links.append(link_def.group(1))
            continue
        heading = _ATX.match(raw)
        if heading:
            text = inline(_heading_text(raw[heading.end() :])).strip()
            if len(heading.group(1)) == 1 and title is None and text:
                title = text
            out.extend(["", text, ""])
            continue
        line = _LIST_ITEM.sub("", _QUOTE.sub("", raw))
        if line.strip().startswith("|") or line.strip().endswith("|"):
            line = " | ".join(cell.strip() for cell in line.strip().strip("|").split("|"))
        out.append(inline(line).strip())
    return normalise_text("\n".join(out)), title, links


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
