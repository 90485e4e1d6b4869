"""A PDF's pages, made in the extraction child: the units of the pages collection
and, on request, an image of every page.

:func:`add_pages` runs at the end of the PDF extractor. It gives each page that has
text (a text layer or OCR) one unit in ``units["pages"]`` (the pipeline files them
into ``<collection>_pages``, their vectors the mean of their chunks'), and, when
the options name a folder (``page_images_dir``), renders every page with pdfium
into it, one page at a time, so memory stays that of one page however long the
PDF. The worker uploads the images to the blob store (:mod:`conveyor.pages`);
the child needs no blob store, and no credentials.

Options: ``pdf_pages`` (default on), ``page_images_dir``, ``page_image_key`` (the
key each image will have, ``{n}`` the page number), ``page_dpi`` (110),
``page_image_format`` (``png`` or ``webp``), ``page_max_pixels`` (a page that would
render larger is rendered smaller, to fit), ``password``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from conveyor.exceptions import safe_summary

from . import Extracted, Section, report_progress

DEFAULT_DPI = 110
DEFAULT_MAX_PIXELS = 10_000_000
FORMATS = {"png": "PNG", "webp": "WEBP"}


def add_pages(data: bytes, extracted: Extracted, options: dict[str, Any]) -> None:
    """Render the pages when asked, record each image's key on the sections of its page
    (their chunks carry it to search hits), and add the pages units."""
    images: dict[int, str] = {}
    if options.get("page_images_dir"):
        images, errors = render_pages(data, int(extracted.metadata.get("page_count") or 0), options)
        for section in extracted.sections:
            if section.page in images:
                section.metadata["page_image"] = images[section.page]
        extracted.metadata.update(_summary(images, options))
        if errors:
            extracted.metadata["page_image_errors"] = errors
    if options.get("pdf_pages", True) not in (False, "false", "0", 0):
        extracted.units["pages"] = page_units(extracted.sections, images)


def page_units(sections: list[Section], images: dict[int, str]) -> list[Section]:
    """One unit per page with text: the page's text whole, its number, its image's key."""
    texts: dict[int, list[str]] = {}
    for section in sections:
        if section.page is not None and section.text.strip():
            texts.setdefault(section.page, []).append(section.text)
    return [
        Section(
            "\n\n".join(parts),
            page=number,
            metadata={"page_image": images[number]} if number in images else {},
        )
        for number, parts in sorted(texts.items())
    ]


def _summary(images: dict[int, str], options: dict[str, Any]) -> dict[str, Any]:
    fmt = _format(options)
    return {
        "page_images": {
            "key": str(options.get("page_image_key") or f"pages/{{n}}.{fmt}"),
            "pages": len(images),
            "dpi": _dpi(options),
            "format": fmt,
        }
    }


def _format(options: dict[str, Any]) -> str:
    fmt = str(options.get("page_image_format") or "png").lower()
    return fmt if fmt in FORMATS else "png"


def _dpi(options: dict[str, Any]) -> int:
    return int(options.get("page_dpi") or DEFAULT_DPI)


def page_scale(width: float, height: float, dpi: int, max_pixels: int) -> float:
    """Points to pixels at ``dpi``, made smaller if the image would pass ``max_pixels``."""
    scale = dpi / 72.0
    area = max(width, 1.0) * max(height, 1.0)
    if area * scale * scale > max_pixels:
        scale = math.sqrt(max_pixels / area)
    return scale


def render_pages(
    data: bytes, page_count: int, options: dict[str, Any]
) -> tuple[dict[int, str], list[dict[str, Any]]]:
    """Render pages 1 to ``page_count`` into ``page_images_dir`` as ``<n>.<format>``;
    returns page → key, and the pages that failed to render with why (they get no
    image; they do not fail the document, whose text is still there)."""
    import pypdfium2

    folder = Path(options["page_images_dir"])
    fmt = _format(options)
    dpi = _dpi(options)
    cap = int(options.get("page_max_pixels") or DEFAULT_MAX_PIXELS)
    template = str(options.get("page_image_key") or f"pages/{{n}}.{fmt}")
    keys: dict[int, str] = {}
    errors: list[dict[str, Any]] = []
    document = pypdfium2.PdfDocument(data, password=options.get("password") or None)
    try:
        total = min(len(document), page_count) if page_count else len(document)
        for number in range(1, total + 1):
            if number % 10 == 1:  # a sign of life for the time limit, not a write a page
                report_progress(f"page images {number}-{min(number + 9, total)}/{total}")
            try:
                _render_one(document, number, folder / f"{number}.{fmt}", fmt, dpi, cap)
            except MemoryError:
                raise  # the child's memory limit: the document fails with its reason
            except Exception as exc:
                errors.append({"page": number, "error": safe_summary(exc, limit=100)})
                continue
            keys[number] = template.format(n=number)
    finally:
        document.close()
    return keys, errors


def _render_one(document: Any, number: int, path: Path, fmt: str, dpi: int, cap: int) -> None:
    page = document[number - 1]
    try:
        width, height = page.get_size()
        bitmap = page.render(scale=page_scale(width, height, dpi, cap), may_draw_forms=True)
        try:
            image = bitmap.to_pil()
            if fmt == "webp":
                image.save(path, format="WEBP", quality=80, method=2)
            else:
                image.save(path, format="PNG", compress_level=3)
            image.close()
        finally:
            bitmap.close()
    finally:
        page.close()
