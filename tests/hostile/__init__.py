"""Hostile inputs, made on demand: files that once cost a worker too much (memory,
time) or drew a wrong answer. :data:`CORPUS` names each with what must happen to it;
``python tests/hostile/run.py`` ingests them one worker process each and reports
outcome, reason, wall time and the worker's peak memory (see its ``--help``)."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field


def one_line_markdown(size: int) -> bytes:
    """A Markdown file of ``size`` bytes on one line (115,228 chunks at 50 MB)."""
    head = b"# One line\n\n"
    unit = b"lorem ipsum dolor sit amet consectetur "
    return head + unit * ((size - len(head)) // len(unit))


def _pdf(objects: list[bytes]) -> bytes:
    """A PDF from numbered object bodies (1 is the catalog), with a correct xref."""
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    )
    return out.getvalue()


def repeated_page_pdf(levels: int = 11) -> bytes:
    """About 1 KB: a page tree of ``levels`` levels, each node naming the one below
    twice, so one blank page is 2**levels pages (2,048 at 11)."""
    page = len([1, 2, 3]) + levels  # objects: catalog, contents, page tree nodes, page
    objects = [b"<< /Type /Catalog /Pages 3 0 R >>", b"<< /Length 0 >>\nstream\n\nendstream"]
    for level in range(levels):  # node 3 is the root, 3 + levels - 1 the lowest
        number = 3 + level
        kid = number + 1
        parent = b" /Parent %d 0 R" % (number - 1) if level else b""
        objects.append(
            b"<< /Type /Pages /Kids [%d 0 R %d 0 R] /Count %d%s >>"
            % (kid, kid, 2 ** (levels - level), parent)
        )
    objects.append(
        b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 200 200] /Contents 2 0 R "
        b"/Resources << >> >>" % (page - 1)
    )
    return _pdf(objects)


def distinct_blank_pages_pdf(pages: int) -> bytes:
    """``pages`` blank pages, each with its own (empty but different) content stream:
    nothing to read, so each is OCR'd, and each OCR reports progress."""
    count = 2 + 2 * pages
    kids = b" ".join(b"%d 0 R" % (3 + 2 * i) for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages),
    ]
    for i in range(pages):
        stream = b"%% page %d\n" % i
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 300] /Contents %d 0 R "
            b"/Resources << >> >>" % (4 + 2 * i)
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    assert len(objects) == count
    return _pdf(objects)


def inflating_pdf(size: int = 100_000_000) -> bytes:
    """A page whose content stream inflates past pypdf's bound (75 MB)."""
    raw = zlib.compress(b" " * size, 9)
    return _pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R "
            b"/Resources << >> >>",
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(raw), raw),
        ]
    )


def looping_page_tree_pdf() -> bytes:
    """A page tree whose node names itself among its kids (and one real page)."""
    return _pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 300] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>",
            b"<< /Length 44 >>\nstream\nBT /F1 12 Tf 20 150 Td (Otters sleep.) Tj ET\nendstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ]
    )


def huge_image_pdf(side: int = 20_000) -> bytes:
    """One page with a line of text and a ``side`` × ``side`` grey image (400 MB
    decoded at 20,000; a few hundred KB compressed)."""
    text = b"BT /F1 12 Tf 20 20 Td (A page with a very large picture.) Tj ET\n"
    draw = b"q 500 0 0 700 50 60 cm /Im1 Do Q\n"
    content = text + draw
    pixels = zlib.compress(b"\x80" * side * side, 9)
    return _pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 600 800] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> /XObject << /Im1 6 0 R >> >> >>",
            b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
            b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray "
            b"/BitsPerComponent 8 /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream"
            % (side, side, len(pixels), pixels),
        ]
    )


def png_header(width: int, height: int) -> bytes:
    """A few dozen bytes claiming a ``width`` × ``height`` PNG (a pixel bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def utf16_without_bom(text: str = "Otters hold hands while they sleep.\n" * 20) -> bytes:
    return text.encode("utf-16-le")


@dataclass(frozen=True)
class Hostile:
    name: str
    make: Callable[[], bytes]
    outcome: str
    """``done`` or ``failed``."""
    reason: str = ""
    """A part of the failure reason."""
    env: dict[str, str] = field(default_factory=dict)
    """Settings for this file's worker (a limit lowered so the file meets it soon)."""


CORPUS = [
    Hostile(
        "one-line-50mb.md",
        lambda: one_line_markdown(50_000_000),
        "failed",
        "CONVEYOR_MAX_TEXT_CHARS",
    ),
    Hostile("one-line-6mb.md", lambda: one_line_markdown(6_000_000), "done"),
    Hostile("zeros-200mb.bin", lambda: b"\0" * 200_000_000, "failed", "binary"),
    Hostile("repeated-page-2048.pdf", repeated_page_pdf, "failed", "CONVEYOR_MAX_PDF_PAGES"),
    Hostile("repeated-page-1024.pdf", lambda: repeated_page_pdf(10), "failed", "OCR found no"),
    Hostile("inflates-100mb.pdf", inflating_pdf, "failed", "too large to decompress"),
    Hostile(
        "blank-pages-60.pdf",
        lambda: distinct_blank_pages_pdf(60),
        "failed",
        "longer than 3 s in all",
        {"CONVEYOR_EXTRACT_TOTAL_TIMEOUT": "3"},
    ),
    Hostile(
        "pixels-400m.png", lambda: png_header(20_000, 20_000), "failed", "CONVEYOR_MAX_IMAGE_PIXELS"
    ),
    Hostile(
        "pages-10000.pdf",
        lambda: distinct_blank_pages_pdf(10_000),
        "failed",
        "CONVEYOR_MAX_PDF_PAGES",
        {"CONVEYOR_PAGE_IMAGES": "true"},
    ),
    Hostile(
        "page-tree-loop.pdf",
        looping_page_tree_pdf,
        "failed",
        "cyclic page references",
        {"CONVEYOR_PAGE_IMAGES": "true"},
    ),
    Hostile("image-20000px.pdf", huge_image_pdf, "done", "", {"CONVEYOR_PAGE_IMAGES": "true"}),
    Hostile("utf16-no-bom.txt", utf16_without_bom, "done"),
    Hostile("normal.txt", lambda: b"Otters hold hands while they sleep.\n", "done"),
]
