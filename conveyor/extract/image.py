"""Images (PNG, JPEG, TIFF with several pages, GIF, WebP): OCR into text, lines and words.

Each page is turned upright (Tesseract's orientation detection) and OCR'd;
its text becomes a section with its page number, and its lines and words
become *units*, embedded one each into ``<collection>_lines`` and
``<collection>_words`` with their boxes and confidences, so a search hit can
be highlighted on the image. The lines and words are also returned as NDJSON
artifacts in the receipt format (image id, receipt id, line id, word id,
text, bounding box, confidence).

Guards: ``max_pixels`` per page (decompression bombs fail before decoding)
and ``ocr_timeout`` seconds per page.
"""

from __future__ import annotations

import io
import json
import re
import warnings
from collections.abc import Iterator
from typing import Any

from conveyor.exceptions import CorruptFile, EmptyDocument, PermanentError

from . import Extracted, Section, register, report_progress
from .sniff import binary_type

DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_MAX_PAGES = 1000


def open_image(data: bytes, max_pixels: int) -> Any:
    """A PIL image, refused before decoding when it is larger than ``max_pixels``."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = max_pixels  # PIL refuses at twice this, before our own check
    try:
        with warnings.catch_warnings():  # our own limit below says it better
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise PermanentError(
            f"image is {size}, over the limit of {max_pixels:,} (a decompression bomb?); "
            "raise CONVEYOR_MAX_IMAGE_PIXELS"
        ) from None
    except Exception as exc:
        raise CorruptFile(f"image could not be read: {type(exc).__name__}: {exc}") from None
    width, height = image.size
    if width * height > max_pixels:
        raise PermanentError(
            f"image is {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{max_pixels:,} (a decompression bomb?); raise CONVEYOR_MAX_IMAGE_PIXELS"
        )
    return image


def pages(image: Any, max_pixels: int, max_pages: int) -> Iterator[Any]:
    """Each frame of a (multi-page) image, decoded one at a time and checked against
    ``max_pixels``; more than ``max_pages`` frames is an error."""
    count = getattr(image, "n_frames", 1)
    if count > max_pages:
        raise PermanentError(
            f"image has {count} pages, more than the limit of {max_pages} (CONVEYOR_MAX_PDF_PAGES)"
        )
    for number in range(count):
        try:
            image.seek(number)
            width, height = image.size
            if width * height > max_pixels:
                raise PermanentError(
                    f"page {number + 1} is {width}x{height} pixels, over the limit of "
                    f"{max_pixels:,}"
                )
            image.load()
            frame = image.copy()
        except PermanentError:
            raise
        except Exception as exc:
            if number == 0:
                raise CorruptFile(f"image could not be decoded: {type(exc).__name__}") from None
            return  # damaged after the first pages: keep what was read
        yield frame


def ndjson(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows)


@register("image")
def extract_image(data: bytes, options: dict[str, Any]) -> Extracted:
    from conveyor.ocr import ocr_page

    max_pixels = int(options.get("max_pixels") or DEFAULT_MAX_PIXELS)
    image = open_image(data, max_pixels)
    image_id = str(options.get("image_id") or "image")
    max_pages = int(options.get("max_pages") or DEFAULT_MAX_PAGES)
    count = getattr(image, "n_frames", 1)
    sections: list[Section] = []
    lines: list[Section] = []
    words: list[Section] = []
    line_rows: list[dict[str, Any]] = []
    word_rows: list[dict[str, Any]] = []
    rotations = []
    for number, frame in enumerate(pages(image, max_pixels, max_pages), 1):
        report_progress(f"ocr page {number}/{count}")
        page = ocr_page(frame, options, f"page {number}")
        rotations.append(page.rotation)
        if page.text.strip():
            sections.append(Section(page.text, page=number))
        for line in page.lines:
            row = {
                "image_id": image_id,
                "receipt_id": number,
                "line_id": line.line,
                "text": line.text,
                "bounding_box": line.box,
                "confidence": line.confidence,
            }
            line_rows.append(row)
            lines.append(Section(line.text, page=number, metadata=_unit_metadata(row)))
        for word in page.words:
            row = {
                "image_id": image_id,
                "receipt_id": number,
                "line_id": word.line,
                "word_id": word.word,
                "text": word.text,
                "bounding_box": word.box,
                "confidence": word.confidence,
            }
            word_rows.append(row)
            words.append(Section(word.text, page=number, metadata=_unit_metadata(row)))
    if not sections:
        raise EmptyDocument("OCR found no text in the image")
    return Extracted(
        kind="image",
        mime=binary_type(data) or "image/unknown",
        sections=sections,
        metadata={
            "pages": len(rotations),
            "ocr_pages": list(range(1, len(rotations) + 1)),
            "rotation": rotations,
            "width": image.size[0],
            "height": image.size[1],
        },
        artifacts={"lines.ndjson": ndjson(line_rows), "words.ndjson": ndjson(word_rows)},
        units={"lines": lines, "words": words},
    )


def _unit_metadata(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "text"}
