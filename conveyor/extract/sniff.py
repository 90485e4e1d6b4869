"""Decide what a file is from its bytes, never from its name.

The name is used only as a *hint* between text-like kinds (``.md`` makes
plain text Markdown, ``.html`` makes a tag soup fragment HTML); it can never
turn bytes of one family into another (a PDF named ``notes.txt`` is a PDF).
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from collections.abc import Callable

import charset_normalizer

from conveyor.exceptions import EmptyDocument, UnsupportedType

#: How many leading bytes may precede ``%PDF-`` (readers accept junk before it).
PDF_HEADER_WINDOW = 1024
#: How much of the decoded text the printable-ratio test looks at.
_SAMPLE_CHARS = 65536
#: Largest share of control / unassigned characters plain text may have.
_MAX_BAD_RATIO = 0.05

#: How much of a file that is not UTF-8 charset-normalizer looks at.
DETECT_BYTES = 256 * 1024
#: How much more "chaos" (charset-normalizer's measure of implausible text) a
#: preferred code page may read with than the best guess and still be chosen.
_PREFERRED_MARGIN = 0.05
#: Single-byte code pages in the order they are preferred among near-equals:
#: windows-1252 (the commonest, and the web's default), then the other Windows ones.
_PREFERRED = ("cp1252", "cp1250", "cp1251", "cp1253", "cp1254", "cp1257", "cp1255", "cp1256")

_ALLOWED_CONTROLS = frozenset("\t\n\r\f\v")
#: Byte order marks, longest first (a UTF-32-LE mark starts like UTF-16-LE's).
BOMS: list[tuple[bytes, str]] = [
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
]


def _zip_type(data: bytes) -> str:
    if b"word/document" in data:
        return "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    if b"xl/workbook" in data:
        return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    if b"ppt/presentation" in data:
        return "application/vnd.openxmlformats-officedocument.presentationml.presentation"
    if data[30:58] == b"mimetypeapplication/epub+zip":
        return "application/epub+zip"
    return "application/zip"


def _riff_type(data: bytes) -> str:
    return {b"WAVE": "audio/wav", b"WEBP": "image/webp", b"AVI ": "video/x-msvideo"}.get(
        data[8:12], "application/x-riff"
    )


def _ftyp_type(data: bytes) -> str:
    brand = data[8:12]
    if brand in (b"heic", b"heix", b"mif1", b"msf1", b"hevc"):
        return "image/heic"
    if brand in (b"avif", b"avis"):
        return "image/avif"
    if brand in (b"M4A ", b"M4B "):
        return "audio/mp4"
    if brand == b"qt  ":
        return "video/quicktime"
    return "video/mp4"


# (magic prefix, offset, MIME type or a function of the whole data giving it)
_MAGIC: list[tuple[bytes, int, str | Callable[[bytes], str]]] = [
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"II*\x00", 0, "image/tiff"),
    (b"MM\x00*", 0, "image/tiff"),
    (b"PK\x03\x04", 0, _zip_type),
    (b"PK\x05\x06", 0, "application/zip"),
    (b"PK\x07\x08", 0, "application/zip"),
    (b"\x1f\x8b", 0, "application/gzip"),
    (b"\xfd7zXZ\x00", 0, "application/x-xz"),
    (b"7z\xbc\xaf\x27\x1c", 0, "application/x-7z-compressed"),
    (b"\x7fELF", 0, "application/x-executable"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", 0, "application/x-ole-storage"),
    (b"SQLite format 3\x00", 0, "application/vnd.sqlite3"),
    (b"RIFF", 0, _riff_type),
    (b"ID3", 0, "audio/mpeg"),
    (b"\xff\xfb", 0, "audio/mpeg"),
    (b"\xff\xf3", 0, "audio/mpeg"),
    (b"\xff\xf2", 0, "audio/mpeg"),
    (b"OggS", 0, "audio/ogg"),
    (b"fLaC", 0, "audio/flac"),
    (b"ftyp", 4, _ftyp_type),
    (b"\x1a\x45\xdf\xa3", 0, "video/webm"),
]

#: Image formats read for OCR.
OCR_IMAGES = frozenset({"image/png", "image/jpeg", "image/tiff", "image/gif", "image/webp"})

#: Video containers whose sound track is transcribed like an audio file.
AUDIO_CONTAINERS = frozenset({"video/mp4", "video/quicktime", "video/webm", "video/x-msvideo"})

_MARKDOWN_NAMES = (".md", ".markdown", ".mdown", ".mkd")
_HTML_NAMES = (".html", ".htm", ".xhtml")

_LEADING_JUNK = re.compile(r"\A(?:\s+|<!--.*?-->|<\?xml[^>]*\?>)*", re.DOTALL)
_HTML_START = re.compile(r"<!doctype\s+html|<html[\s>]", re.IGNORECASE)
_HTML_TAG = re.compile(r"<(?:html|head|body)[\s>/]", re.IGNORECASE)
_ANY_TAG = re.compile(r"<[a-zA-Z][a-zA-Z0-9]*[\s>/]")

_MD_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+\S", re.MULTILINE)
_MD_FENCE = re.compile(r"^ {0,3}(?:```|~~~)", re.MULTILINE)
_MD_LINK = re.compile(r"\[[^\]\n]{1,300}\]\([^)\s]{1,2000}(?:[ \t]+\"[^\"\n]{0,300}\")?\)")
_MD_SETEXT = re.compile(r"(?<=\S)\n {0,3}={3,}[ \t]*$", re.MULTILINE)
_MD_LIST = re.compile(r"^[ \t]*(?:[-*+]|\d+[.)])[ \t]+\S", re.MULTILINE)
_MD_EMPHASIS = re.compile(r"(\*\*|__)\S[^\n]{0,300}?\S\1|`[^`\n]{1,300}`")


def binary_type(data: bytes) -> str | None:
    """The MIME type of a known binary format, from its magic bytes, or None."""
    for magic, offset, mime in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return mime(data) if callable(mime) else mime
    return None


def is_pdf(data: bytes) -> bool:
    """``%PDF-`` at the start, or within the first KiB when the file has objects."""
    if data.startswith(b"%PDF-"):
        return True
    return b"%PDF-" in data[:PDF_HEADER_WINDOW] and b"obj" in data


_ASCII_BAD = re.compile(
    "["
    + "".join(re.escape(chr(c)) for c in [*range(32), 127] if chr(c) not in _ALLOWED_CONTROLS)
    + "]"
)
"""ASCII characters :func:`_bad_ratio` counts: the controls not allowed in text."""


def _bad_ratio(text: str) -> float:
    sample = text[:_SAMPLE_CHARS]
    if not sample:
        return 0.0
    if sample.isascii():  # the common case, at C speed: ASCII's only bad ones are controls
        return len(_ASCII_BAD.findall(sample)) / len(sample)
    bad = sum(
        1
        for ch in sample
        if ch == "\ufffd"
        or (ch not in _ALLOWED_CONTROLS and unicodedata.category(ch) in ("Cc", "Cn", "Co", "Cs"))
    )
    return bad / len(sample)


def _mostly_utf8(data: bytes) -> bool:
    """True when undecodable bytes are rare next to real multi-byte UTF-8 characters."""
    decoded = data.decode("utf-8", errors="replace")
    invalid = decoded.count("\ufffd")
    valid = sum(1 for ch in decoded if ord(ch) > 127 and ch != "\ufffd")
    return valid > 4 * invalid


def utf16_without_bom(data: bytes) -> tuple[str, str] | None:
    """``(text, encoding)`` when ``data`` reads as UTF-16 written without a byte order
    mark (Windows tools do): mostly Latin text has a zero byte in every other place."""
    sample = data[:4096]
    sample = sample[: len(sample) - len(sample) % 2]
    if len(sample) < 8:
        return None
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    half = len(sample) // 2
    if odd >= 0.4 * half and even <= 0.05 * half:
        encoding = "utf-16-le"
    elif even >= 0.4 * half and odd <= 0.05 * half:
        encoding = "utf-16-be"
    else:
        return None
    text = data[: len(data) - len(data) % 2].decode(encoding, errors="replace")
    return (text, encoding) if _bad_ratio(text) <= _MAX_BAD_RATIO else None


def guess_encoding(data: bytes) -> str | None:
    """The encoding charset-normalizer finds for ``data``, or None when nothing fits.

    Single-byte code pages are often told apart by a few letters only, and
    charset-normalizer then picks among equals by small margins (German as
    cp1250, Spanish "ñ" as "ń", Russian as Mac Cyrillic); a Windows code
    page, windows-1252 first, wins whenever it reads about as well as the
    best. A large file is judged by its first :data:`DETECT_BYTES`, cut at a
    line end.
    """
    sample = data
    if len(data) > DETECT_BYTES:
        sample = data[:DETECT_BYTES]
        sample = sample[: sample.rfind(b"\n") + 1] or sample
    matches = charset_normalizer.from_bytes(sample)
    best = matches.best()
    if best is None:
        return None
    close = [match for match in matches if match.chaos <= best.chaos + _PREFERRED_MARGIN]
    for preferred in _PREFERRED:
        if any(preferred in match.could_be_from_charset for match in close):
            return preferred
    return codecs.lookup(best.encoding).name


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode bytes believed to be text; returns ``(text, encoding)``.

    A BOM wins; then UTF-16 without one (:func:`utf16_without_bom`); then strict
    UTF-8; then UTF-8 with replacement when the file is mostly UTF-8 with a few
    damaged bytes; then what :func:`guess_encoding` finds (replacing what that
    cannot decode); latin-1 when nothing fits.
    """
    for bom, encoding in BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, errors="replace"), encoding
    if b"\x00" in data[:4096] and (utf16 := utf16_without_bom(data)) is not None:
        return utf16
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    if b"\x00" not in data and _mostly_utf8(data):
        return data.decode("utf-8", errors="replace"), "utf-8"
    guessed = guess_encoding(data)
    if guessed is not None:
        return data.decode(guessed, errors="replace"), guessed
    return data.decode("latin-1"), "latin-1"


def looks_like_markdown(text: str) -> bool:
    """Content signals of Markdown: headings, fences, links, or lists with emphasis.

    Only the first 64 KiB are looked at; every pattern runs in linear time.
    """
    text = text[:_SAMPLE_CHARS]
    if _MD_HEADING.search(text) or _MD_LINK.search(text) or _MD_SETEXT.search(text):
        return True
    if len(_MD_FENCE.findall(text)) >= 2:
        return True
    return bool(_MD_LIST.search(text) and _MD_EMPHASIS.search(text))


def looks_like_html(text: str, name_hint: bool = False) -> bool:
    """HTML when it starts like a document, or has html/head/body tags early on.

    Text that begins with something other than ``<`` and reads as Markdown is
    kept as Markdown even if a code sample in it holds ``<html>``.
    """
    start = _LEADING_JUNK.sub("", text[: PDF_HEADER_WINDOW * 8], count=1)
    if _HTML_START.match(start):
        return True
    head = text[:2048]
    if _HTML_TAG.search(head):
        return start.startswith("<") or not looks_like_markdown(head)
    return name_hint and start.startswith("<") and bool(_ANY_TAG.match(start))


def sniff(data: bytes, name: str | None = None) -> str:
    """The extractor kind for ``data``: ``pdf``, ``html``, ``markdown``, ``text`` or ``audio``.

    Raises :class:`EmptyDocument` for empty or whitespace-only input and
    :class:`UnsupportedType` for recognised or unrecognised binary data.
    """
    if not data:
        raise EmptyDocument("file is empty")
    mime = binary_type(data)
    if mime is not None:
        family = mime.split("/", 1)[0]
        if mime in OCR_IMAGES:
            return "image"
        if family == "image":
            raise UnsupportedType(f"{mime} is not supported (convert it to PNG, JPEG or TIFF)")
        if family == "audio" or mime in AUDIO_CONTAINERS:
            return "audio"
        raise UnsupportedType(f"binary data ({mime}) is not a supported format")
    if is_pdf(data):
        return "pdf"
    text, _encoding = decode_text(data)
    if "\x00" in text or _bad_ratio(text) > _MAX_BAD_RATIO:
        raise UnsupportedType("binary data is not a supported format")
    if not text.strip():
        raise EmptyDocument("file holds only whitespace")
    suffix = (name or "").lower()
    if looks_like_html(text, name_hint=suffix.endswith(_HTML_NAMES)):
        return "html"
    if suffix.endswith(_MARKDOWN_NAMES) or looks_like_markdown(text):
        return "markdown"
    return "text"
