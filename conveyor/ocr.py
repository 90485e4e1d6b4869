"""OCR with Tesseract: an image in, lines and words with boxes and confidences out.

Tesseract runs as a subprocess (``tesseract - - tsv``), so a page that takes
too long is killed at its time limit, and the language is any installed
traineddata (``CONVEYOR_OCR_LANG``, e.g. ``eng+deu``). Orientation: when
asked, Tesseract's OSD says whether the page is turned by 90, 180 or 270
degrees and the image is turned back first; small skew Tesseract handles
itself.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

from .exceptions import MissingDependency, PermanentError

if TYPE_CHECKING:
    from PIL import Image


@dataclass
class Word:
    text: str
    box: dict[str, int]  # x, y, width, height in pixels of the (turned) page
    confidence: float  # 0..1
    line: int  # index of its line on the page
    word: int  # index within the line


@dataclass
class Line:
    text: str
    box: dict[str, int]
    confidence: float
    line: int


@dataclass
class PageText:
    lines: list[Line] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)
    rotation: int = 0  # degrees the page was turned back before OCR

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)


def tesseract_path() -> str:
    found = shutil.which("tesseract")
    if found is None:
        raise MissingDependency(
            "OCR needs Tesseract, which is not installed: apt-get install tesseract-ocr "
            "tesseract-ocr-eng tesseract-ocr-osd, then `conveyor dlq redrive --all`"
        )
    return found


def _run(args: list[str], image: bytes, timeout: float | None, what: str) -> str:
    try:
        done = subprocess.run(
            [tesseract_path(), "-", "-", *args],
            input=image,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise PermanentError(
            f"OCR of {what} took longer than {timeout:g} s (CONVEYOR_OCR_TIMEOUT)"
        ) from None
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise PermanentError(f"OCR of {what} failed: {(message or ['no output'])[-1][:200]}")
    return done.stdout.decode("utf-8", errors="replace")


_ROTATE = re.compile(r"Rotate:\s*(\d+)")


def orientation(image: bytes, timeout: float | None = 30.0) -> int:
    """Degrees (0, 90, 180, 270) to turn the image clockwise to make it upright;
    0 when Tesseract cannot tell (too little text)."""
    try:
        out = _run(["--psm", "0"], image, timeout, "orientation")
    except PermanentError:
        return 0
    found = _ROTATE.search(out)
    return int(found.group(1)) if found else 0


class _TsvWord(TypedDict):
    text: str
    conf: float  # 0..1
    box: dict[str, int]  # left, top, width, height


def parse_tsv(tsv: str, *, min_confidence: float = 0.0) -> PageText:
    """Lines and words from Tesseract's TSV (levels: 4 line, 5 word)."""
    page = PageText()
    lines: dict[tuple[str, str, str], list[_TsvWord]] = {}
    for row in csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE):
        if row.get("level") != "5":
            continue
        text = (row.get("text") or "").strip()
        conf = float(row.get("conf") or -1)
        if not text or conf < 0:
            continue
        lines.setdefault((row["block_num"], row["par_num"], row["line_num"]), []).append(
            {
                "text": text,
                "conf": conf / 100.0,
                "box": {k: int(row[k]) for k in ("left", "top", "width", "height")},
            }
        )
    for words in lines.values():
        kept = [w for w in words if w["conf"] >= min_confidence]
        if not kept:
            continue
        left = min(w["box"]["left"] for w in kept)
        top = min(w["box"]["top"] for w in kept)
        right = max(w["box"]["left"] + w["box"]["width"] for w in kept)
        bottom = max(w["box"]["top"] + w["box"]["height"] for w in kept)
        box = {"x": left, "y": top, "width": right - left, "height": bottom - top}
        line_no = len(page.lines)
        page.lines.append(
            Line(
                text=" ".join(w["text"] for w in kept),
                box=box,
                confidence=round(sum(w["conf"] for w in kept) / len(kept), 3),
                line=line_no,
            )
        )
        for index, w in enumerate(kept):
            b = w["box"]
            page.words.append(
                Word(
                    text=w["text"],
                    box={"x": b["left"], "y": b["top"], "width": b["width"], "height": b["height"]},
                    confidence=round(w["conf"], 3),
                    line=line_no,
                    word=index,
                )
            )
    return page


def ocr_image(
    image: Image.Image,
    *,
    lang: str = "eng",
    timeout: float | None = 60.0,
    detect_orientation: bool = True,
    what: str = "the image",
) -> PageText:
    """OCR a PIL image: turned upright first (when ``detect_orientation``)."""
    rgb = flatten(image)
    rotation = orientation(_png(rgb), timeout) if detect_orientation else 0
    page = _read(rgb, rotation, lang, timeout, what)
    if rotation and _confidence(page) < 0.7:
        # OSD can be 180 degrees off on noisy pages: read the other way too, keep the better
        other = _read(rgb, (rotation + 180) % 360, lang, timeout, what)
        if _confidence(other) > _confidence(page):
            page = other
    return page


def flatten(image: Image.Image) -> Image.Image:
    """Greyscale on white: transparent pixels become background, not black."""
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("L")
    return image if image.mode in ("L", "RGB") else image.convert("L")


def unturn(box: dict[str, int], rotation: int, width: int, height: int) -> dict[str, int]:
    """A box found on the page turned ``rotation`` degrees clockwise, in the coordinates
    of the image as given (``width`` x ``height``), so highlights land on the photo."""
    x, y, w, h = box["x"], box["y"], box["width"], box["height"]
    if rotation == 90:
        return {"x": y, "y": height - (x + w), "width": h, "height": w}
    if rotation == 180:
        return {"x": width - (x + w), "y": height - (y + h), "width": w, "height": h}
    if rotation == 270:
        return {"x": width - (y + h), "y": x, "width": h, "height": w}
    return box


def ocr_page(image: Image.Image, options: dict[str, Any], what: str) -> PageText:
    """:func:`ocr_image` with the extractor options (``ocr_lang``, ``ocr_timeout``,
    ``detect_orientation``) that images and scanned PDF pages share."""
    return ocr_image(
        image,
        lang=str(options.get("ocr_lang") or "eng"),
        timeout=options.get("ocr_timeout") or None,
        detect_orientation=bool(options.get("detect_orientation", True)),
        what=what,
    )


def _read(
    image: Image.Image, rotation: int, lang: str, timeout: float | None, what: str
) -> PageText:
    turned = image.rotate(-rotation, expand=True) if rotation else image
    page = parse_tsv(_run(["-l", lang, "--psm", "3", "tsv"], _png(turned), timeout, what))
    page.rotation = rotation
    if rotation:
        width, height = image.size
        for line in page.lines:
            line.box = unturn(line.box, rotation, width, height)
        for word in page.words:
            word.box = unturn(word.box, rotation, width, height)
    return page


def _confidence(page: PageText) -> float:
    if not page.words:
        return 0.0
    return sum(w.confidence for w in page.words) / len(page.words)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
