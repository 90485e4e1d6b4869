"""PDF with pypdf: text per page, document metadata and link URLs.

Pages without a text layer are listed in ``metadata["pages_without_text"]``
(the place OCR will hook in later); a page whose text cannot be read is
treated the same and recorded in ``metadata["page_errors"]``. Options:
``max_pages`` (refuse longer documents, ``CONVEYOR_MAX_PDF_PAGES``) and
``password``. A page identical to an earlier one (same content stream,
resources and size: a page tree that repeats one page) is read and OCR'd once.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from io import BytesIO
from itertools import pairwise
from typing import Any

from pypdf import PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError, LimitReachedError, PyPdfError

from conveyor.exceptions import (
    CorruptFile,
    DocumentTooLarge,
    EmptyDocument,
    EncryptedFile,
    PermanentError,
    safe_summary,
)

from . import Extracted, Section, outline, register, report_progress
from . import links as pdf_links
from .pages import add_pages

NO_TEXT_LAYER = (
    "PDF has no text layer (a scanned document?) and OCR is not available; "
    "install tesseract-ocr to read it"
)
OCR_DPI = 200


def _ocr_pages(data: bytes, numbers: list[int], options: dict[str, Any]) -> list[tuple[int, str]]:
    """Render the pages without a text layer and OCR them (page number, text); the
    caller passes each distinct page once."""
    import pypdfium2

    from conveyor.ocr import ocr_page

    from .image import DEFAULT_MAX_PIXELS

    max_pixels = int(options.get("max_pixels") or DEFAULT_MAX_PIXELS)
    scale = float(options.get("ocr_dpi") or OCR_DPI) / 72.0
    out = []
    failures: list[str] = []
    document = pypdfium2.PdfDocument(data, password=options.get("password"))
    try:
        for done, number in enumerate(numbers, 1):
            report_progress(f"ocr page {number} ({done}/{len(numbers)})")
            page = document[number - 1]
            width, height = page.get_size()
            if width * height * scale * scale > max_pixels:
                raise PermanentError(
                    f"page {number} would render to more than {max_pixels:,} pixels for OCR"
                )
            image = page.render(scale=scale, grayscale=True).to_pil()
            try:
                text = ocr_page(image, options, f"page {number}").text
            except PermanentError as exc:  # one bad page does not sink the document
                if not failures:
                    failures.append(str(exc))
                continue
            out.append((number, text))
        if failures and not out:
            raise PermanentError(failures[0])
    finally:
        document.close()
    return out


_METADATA_FIELDS = ("title", "author", "subject", "creator", "producer")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufeff]")
_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANK_LINES = re.compile(r"\n[ \t]*\n\s*")
_BULLET = re.compile(r"^(?:[-•▪‣◦*·]|\d{1,3}[.)]|[a-z][.)])\s")
_HYPHENATED = re.compile(r"[^\W\d_]-$")
_SENTENCE_END = re.compile(r"[.!?:;…][\"'”’)\]]*$")
#: Lines at least this share of the page's longest line are taken as wrapped.
_FULL_LINE = 0.75
#: Pages whose lines are all shorter than this are kept line by line (tables, verse).
_MIN_WRAP_WIDTH = 40


def _reason(exc: BaseException) -> str:
    """A short, one-line, secret-free reason for a library error."""
    text = str(exc).strip()
    if not isinstance(exc, PyPdfError) or not text:
        text = f"{type(exc).__name__}: {text}".rstrip(": ")
    return safe_summary(text, limit=100)


def _join_lines(lines: list[str], width: int) -> str:
    """Join the lines of one paragraph: wrapped lines with a space, others kept."""
    out = lines[0]
    for previous, line in pairwise(lines):
        if previous.endswith("-") and _HYPHENATED.search(previous) and line[:1].islower():
            out = out[:-1] + line  # "exam-" + "ple" -> "example"
        elif _BULLET.match(line) or width < _MIN_WRAP_WIDTH:
            out += "\n" + line
        elif len(previous) >= _FULL_LINE * width:
            out += " " + line
        elif _SENTENCE_END.search(previous):
            out += "\n\n" + line  # a short line ending a sentence ends its paragraph
        else:
            out += "\n" + line  # a short line without a full stop: a heading or label
    return out


def normalise_page_text(text: str) -> str:
    """Clean pypdf's text for one page: spaces collapsed, hyphenation undone, lines joined."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00ad\n", "")
    text = _SPACES.sub(" ", _CONTROL.sub("", text.replace("\u00ad", "")))
    paragraphs = []
    for block in _BLANK_LINES.split(text):
        lines = [line.strip() for line in block.split("\n") if line.strip()]
        if lines:
            width = max(len(line) for line in lines)
            paragraphs.append(_join_lines(lines, width))
    return "\n\n".join(paragraphs)


def _open(data: bytes, options: dict[str, Any]) -> PdfReader:
    try:
        reader = PdfReader(BytesIO(data), strict=False)
    except Exception as exc:
        raise CorruptFile(f"truncated or damaged PDF: {_reason(exc)}") from exc
    if not reader.is_encrypted:
        return reader
    passwords = [options["password"]] if options.get("password") else []
    try:
        for password in [*passwords, ""]:
            if reader.decrypt(password):
                return reader
    except DependencyError as exc:
        raise EncryptedFile(
            "PDF is encrypted with AES, which needs the 'cryptography' package; "
            "install it or remove the encryption"
        ) from exc
    except Exception as exc:
        raise CorruptFile(f"truncated or damaged PDF: {_reason(exc)}") from exc
    if passwords:
        raise EncryptedFile("PDF is password-protected and the password given is wrong")
    raise EncryptedFile("PDF is password-protected; remove the password or supply it")


def _metadata(reader: PdfReader) -> dict[str, Any]:
    found: dict[str, Any] = {}
    try:
        info = reader.metadata
        if info is None:
            return found
        for key in _METADATA_FIELDS:
            value = getattr(info, key, None)
            if value is not None and str(value).strip():
                found[key] = " ".join(str(value).split())
        for key, attribute in (("created", "creation_date"), ("modified", "modification_date")):
            try:
                moment = getattr(info, attribute, None)
            except Exception:  # a malformed date string: leave it out
                continue
            if moment is not None:
                found[key] = moment.isoformat()
    except Exception:  # metadata is a bonus; a damaged info dictionary is not fatal
        pass
    return found


def _inflate_limit() -> int:
    try:
        from pypdf.filters import ZLIB_MAX_OUTPUT_LENGTH

        return int(ZLIB_MAX_OUTPUT_LENGTH)
    except ImportError:  # pragma: no cover - a later pypdf
        return 75_000_000


def _page_key(page: Any) -> tuple[str, ...]:
    """What makes a page look as it does: its content stream, resources, size, turn."""
    contents = page.get_contents()
    data = contents.get_data() if contents is not None else b""
    return (
        hashlib.sha256(data).hexdigest(),
        repr(page.get("/Resources")),
        repr(page.get("/MediaBox")),
        repr(page.get("/Rotate")),
    )


def _max_pages(options: dict[str, Any]) -> int | None:
    value = options.get("max_pages")
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise PermanentError(
            f"option max_pages must be a whole number, not {value!r:.40}"
        ) from None


@register("pdf")
def extract_pdf(data: bytes, options: dict[str, Any]) -> Extracted:
    """PDF: one section per page that has text, ``page`` 1-based."""
    reader = _open(data, options)
    try:
        page_count = len(reader.pages)
    except FileNotDecryptedError as exc:
        raise EncryptedFile("PDF is password-protected; remove the password or supply it") from exc
    except Exception as exc:
        raise CorruptFile(f"truncated or damaged PDF: {_reason(exc)}") from exc
    if page_count == 0:
        raise EmptyDocument("PDF has no pages")
    max_pages = _max_pages(options)
    if max_pages is not None and page_count > max_pages:
        raise DocumentTooLarge(
            f"PDF has {page_count:,} pages, more than the limit of {max_pages:,} "
            "(CONVEYOR_MAX_PDF_PAGES); split it or raise the limit"
        )

    sections: list[Section] = []
    without_text: list[int] = []
    page_errors: list[dict[str, Any]] = []
    links: list[str] = []
    found_links: list[dict[str, Any]] = []
    numbers = pdf_links.PageNumbers(reader)
    headings = outline.read_outline(reader)
    fonts = None if headings else outline.FontLines()  # headings from the fonts, then
    first: dict[tuple[str, ...], int] = {}  # a page's key → the first page like it
    same_as: dict[int, int] = {}  # a repeated page → the first page like it
    texts: dict[int, str] = {}
    for number in range(1, page_count + 1):
        try:
            page = reader.pages[number - 1]
            key = _page_key(page)
            if key in first:
                same_as[number] = first[key]
                text = texts.get(first[key], "")
            else:
                first[key] = number
                visitor = fonts.visitor(number) if fonts is not None else None
                raw = page.extract_text(visitor_text=visitor)
                if visitor is not None:
                    visitor.finish()
                text = texts[number] = normalise_page_text(raw or "")
        except MemoryError:
            raise  # a decompression bomb: the memory limit's business, not a page error
        except LimitReachedError as exc:  # pypdf's own bomb guard: too large, not damaged
            page_errors.append({"page": number, "error": _reason(exc), "too_large": True})
            without_text.append(number)
            continue
        except Exception as exc:
            page_errors.append({"page": number, "error": _reason(exc)})
            without_text.append(number)
            continue
        try:
            on_page = pdf_links.page_links(page, number, numbers)
        except Exception:  # broken annotations lose their links, not the page
            on_page = []
        found_links.extend(on_page[: pdf_links.MAX_LINKS - len(found_links)])
        links.extend(link["uri"] for link in on_page if "uri" in link)
        if text.strip():
            sections.append(Section(text, page=number))
        else:
            without_text.append(number)

    if len(page_errors) == page_count:
        if all(e.get("too_large") for e in page_errors):
            raise DocumentTooLarge(
                "PDF page content is too large to decompress (over pypdf's bound of "
                f"{_inflate_limit():,} bytes a stream): {page_errors[0]['error']}"
            )
        raise CorruptFile(
            f"truncated or damaged PDF: no page could be read ({page_errors[0]['error']})"
        )
    ocr_pages: list[int] = []
    unreadable = {e["page"] for e in page_errors}
    scans = [n for n in without_text if n not in unreadable]
    if scans and options.get("ocr", True) and shutil.which("tesseract"):
        distinct = [n for n in scans if n not in same_as]
        found = dict(_ocr_pages(data, distinct, options))
        for number in scans:
            ocr_text = found.get(same_as.get(number, number))
            if ocr_text is None:
                continue
            ocr_pages.append(number)
            if ocr_text.strip():
                sections.append(Section(ocr_text, page=number, metadata={"ocr": True}))
        sections.sort(key=lambda s: s.page or 0)
    if not sections:
        if ocr_pages:
            raise EmptyDocument("PDF has no text layer and OCR found no text on its pages")
        raise EmptyDocument(NO_TEXT_LAYER)
    structure = outline.Structure(headings, "outline") if headings else outline.found(fonts)
    sections = outline.split_sections(sections, structure.headings)
    metadata = _metadata(reader)
    metadata.update(structure.as_metadata())
    if found_links:
        metadata["links_with_pages"] = found_links[: pdf_links.KEPT]
        if len(found_links) > pdf_links.KEPT:
            metadata["links_truncated"] = True
    metadata.update(
        page_count=page_count,
        links=list(dict.fromkeys(link for link in links if link)),
        pages_without_text=without_text,
        ocr_pages=ocr_pages,
    )
    if page_errors:
        metadata["page_errors"] = page_errors
    if reader.is_encrypted:
        metadata["encrypted"] = True
    artifacts = {"links.json": pdf_links.encode(found_links)} if found_links else {}
    extracted = Extracted("pdf", "application/pdf", sections, metadata, artifacts)
    add_pages(data, extracted, options)  # the pages collection's units, page images
    return extracted
