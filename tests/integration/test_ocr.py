"""OCR with real Tesseract on receipts, scans and TIFFs generated here."""

from __future__ import annotations

import io
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from pypdf import PdfReader, PdfWriter
from support import ndjson, receipt_rows

from conveyor.app import Conveyor
from conveyor.exceptions import PermanentError
from conveyor.extract import extract
from conveyor.settings import Settings
from conveyor.testing import make_pdf

pytestmark = pytest.mark.skipif(
    shutil.which("tesseract") is None, reason="tesseract is not installed (make test installs it)"
)

RECEIPTS = {
    "harbor.png": [
        "HARBOR FISH MARKET",
        "12 Quay Street",
        "SALMON FILLET 14.20",
        "FRESH OYSTERS 9.00",
        "LEMONS 1.10",
        "TOTAL 24.30",
    ],
    "green.jpg": [
        "GREEN LEAF GROCERY",
        "4 Elm Avenue",
        "ROAST CHICKEN 8.75",
        "BASMATI RICE 3.40",
        "TOTAL 12.15",
    ],
    "copper.png": [
        "COPPER KETTLE CAFE",
        "88 Mill Lane",
        "FLAT WHITE 3.60",
        "SCONE 2.90",
        "TOTAL 6.50",
    ],
}


def receipt(lines: list[str], *, seed: int, angle: float = 1.5) -> Image.Image:
    """A receipt photo: text in a receipt layout, speckle noise, a slight rotation."""
    font = ImageFont.load_default(size=30)
    image = Image.new("L", (760, 90 + 62 * len(lines)), 250)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        if line.split()[-1].replace(".", "").isdigit():  # price right-aligned
            *name, price = line.split()
            draw.text((40, 40 + 62 * i), " ".join(name), font=font, fill=20)
            draw.text((600, 40 + 62 * i), price, font=font, fill=20)
        else:
            draw.text((40, 40 + 62 * i), line, font=font, fill=20)
    pixels = np.array(image)
    rng = np.random.default_rng(seed)
    noise = rng.random(pixels.shape) < 0.01
    pixels[noise] = rng.integers(0, 255, noise.sum())
    return Image.fromarray(pixels).rotate(angle, expand=True, fillcolor=250)


def save(image: Image.Image, path: Path) -> None:
    image.convert("RGB").save(path, quality=92) if path.suffix == ".jpg" else image.save(path)


def _norm(word: str) -> str:
    return word.lower().strip(".,:;_-'\"|!")


def word_accuracy(expected: list[str], found: list[str]) -> float:
    """Share of the known words OCR found, after normalising case and edge punctuation."""
    want = Counter(_norm(w) for line in expected for w in line.split())
    got = Counter(n for w in found if (n := _norm(w)))
    return sum(min(n, got[w]) for w, n in want.items()) / sum(want.values())


@pytest.fixture(scope="module")
def receipts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("receipts")
    for seed, (name, lines) in enumerate(RECEIPTS.items()):
        save(receipt(lines, seed=seed, angle=(-1.5, 2.0, 1.0)[seed]), root / name)
    return root


def test_ocr_word_accuracy_on_receipts(receipts: Path) -> None:
    for name, lines in RECEIPTS.items():
        result = extract((receipts / name).read_bytes())
        words = [u.text for u in result.units["words"]]
        assert word_accuracy(lines, words) >= 0.9, (name, words)
        rows = [json.loads(r) for r in result.artifacts["lines.ndjson"].splitlines()]
        assert len(rows) == len(result.units["lines"]) >= len(lines) - 1
        for row in rows:
            assert {
                "image_id",
                "receipt_id",
                "line_id",
                "text",
                "bounding_box",
                "confidence",
            } <= set(row)
            assert row["bounding_box"]["width"] > 0 and 0 <= row["confidence"] <= 1


@pytest.mark.parametrize("turn", [90, 180, 270])
def test_turned_page_is_read_upright(turn: int) -> None:
    upright = receipt(RECEIPTS["green.jpg"], seed=1, angle=0)
    results = []
    for image in (upright, upright.rotate(turn, expand=True)):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        results.append(extract(buffer.getvalue()))
    assert results[1].metadata["rotation"] == [turn]
    words = [[u.text for u in r.units["words"]] for r in results]
    assert words[1] == words[0]  # read exactly as the upright photo
    assert "grocery" in [_norm(w) for w in words[1]]
    # boxes are in the turned photo's own coordinates: they fit it, and map back
    # onto the upright boxes
    turned = upright.rotate(turn, expand=True)
    for mine, straight in zip(results[1].units["lines"], results[0].units["lines"], strict=True):
        box = mine.metadata["bounding_box"]
        assert 0 <= box["x"] and box["x"] + box["width"] <= turned.size[0]
        assert 0 <= box["y"] and box["y"] + box["height"] <= turned.size[1]
        ref = straight.metadata["bounding_box"]
        assert sorted((box["width"], box["height"])) == pytest.approx(
            sorted((ref["width"], ref["height"])), abs=6
        )


def test_transparent_png_reads_as_on_white() -> None:
    image = receipt(RECEIPTS["copper.png"], seed=4, angle=0).convert("RGBA")
    pixels = np.array(image)
    pixels[..., 3] = np.where(pixels[..., 0] > 200, 0, 255)  # background see-through
    pixels[pixels[..., 3] == 0, :3] = 0  # and black under the transparency
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(buffer, format="PNG")
    words = [u.text for u in extract(buffer.getvalue()).units["words"]]
    assert word_accuracy(RECEIPTS["copper.png"], words) >= 0.8


def test_multipage_tiff_gives_pages() -> None:
    first = receipt(RECEIPTS["green.jpg"], seed=1, angle=0)
    second = receipt(RECEIPTS["copper.png"], seed=2, angle=0)
    buffer = io.BytesIO()
    first.save(buffer, format="TIFF", save_all=True, append_images=[second])
    result = extract(buffer.getvalue())
    assert [s.page for s in result.sections] == [1, 2]
    assert "GROCERY" in result.sections[0].text and "KETTLE" in result.sections[1].text


def test_guard_rails(tmp_path: Path) -> None:
    big = Image.new("1", (10_000, 10_000), 1)
    buffer = io.BytesIO()
    big.save(buffer, format="PNG")
    with pytest.raises(PermanentError, match="over the limit"):
        extract(buffer.getvalue())
    small = io.BytesIO()
    receipt(RECEIPTS["copper.png"], seed=3).save(small, format="PNG")
    with pytest.raises(PermanentError, match="took longer than"):
        extract(small.getvalue(), options={"ocr_timeout": 0.01})


def test_receipts_into_lines_and_words_collections(
    real_embedder, home: Path, receipts: Path
) -> None:
    with Conveyor(Settings(home=home), embedder=real_embedder) as cv:
        summary = cv.ingest([receipts], collection="receipts")
        assert (summary.done, summary.failed) == (3, 0), summary.failures
        for name, lines in RECEIPTS.items():
            hit = cv.search(lines[0].title(), k=1, collection="receipts_lines")[0]
            assert hit.source.endswith(name), (name, hit.text)
            assert hit.text.split()[0] == lines[0].split()[0]
            assert hit.as_dict()["box"]["width"] > 100
        word = cv.search("CHICKEN", k=1, collection="receipts_words")[0]
        assert word.text == "CHICKEN" and word.source.endswith("green.jpg")
        assert cv.search("oysters and salmon", k=1, collection="receipts")[0].source.endswith(
            "harbor.png"
        )
        doc = next(d for d in cv.documents() if d["source"].endswith("harbor.png"))
        key = doc["metadata"]["artifacts"]["words.ndjson"]
        assert b"OYSTERS" in cv.components.blobs.get(key)
        runs = {r["collection"] for r in cv.status()["compactions"]}
        assert {"receipts", "receipts_lines", "receipts_words"} <= runs


def test_scanned_pdf_pages_are_ocred_and_text_pages_are_not(
    real_embedder, home: Path, tmp_path: Path
) -> None:
    text_pdf = tmp_path / "text.pdf"
    make_pdf(str(text_pdf), ["This first page has a real text layer about meteorology."])
    scan = receipt(
        [
            "MINUTES OF THE ANNUAL MEETING",
            "The lighthouse keepers voted",
            "to repaint the tower in red",
        ],
        seed=5,
        angle=0.5,
    )
    scan_pdf = io.BytesIO()
    scan.convert("RGB").save(scan_pdf, format="PDF", resolution=150)
    writer = PdfWriter()
    for part in (PdfReader(text_pdf), PdfReader(io.BytesIO(scan_pdf.getvalue()))):
        for page in part.pages:
            writer.add_page(page)
    docs = tmp_path / "docs"
    docs.mkdir()
    with open(docs / "mixed.pdf", "wb") as out:
        writer.write(out)
    with Conveyor(Settings(home=home), embedder=real_embedder) as cv:
        assert cv.ingest([docs], run="scan").done == 1
        hit = cv.search("lighthouse keepers repaint the tower", k=1)[0]
        assert hit.source.endswith("mixed.pdf") and hit.page == 2
        doc = cv.documents()[0]
        manifest = json.loads(
            cv.components.blobs.get(f"ingestion_output/scan/results/{doc['id']}.json")
        )
        assert manifest["metadata"]["ocr_pages"] == [2]


def test_receipt_message_from_a_producer(real_embedder, home: Path) -> None:
    texts = ["NIGHT OWL BOOKSHOP", "Paperback novel 12.99", "TOTAL 12.99"]
    lines = receipt_rows("img-7", 1, texts)
    words = receipt_rows("img-7", 1, texts, words_of_line=0)
    good = {
        "image_id": "img-7",
        "receipt_id": 1,
        "artifacts_bucket": "ocr-artifacts",
        "lines_key": "img-7/1/lines.ndjson",
        "words_key": "img-7/1/words.ndjson",
        "collection": "receipts",
    }
    bad = {**good, "receipt_id": 2, "lines_key": "img-7/2/lines.ndjson"}
    with Conveyor(Settings(home=home), embedder=real_embedder) as cv:
        blobs = cv.components.blobs
        blobs.put("ocr-artifacts/img-7/1/lines.ndjson", ndjson(lines))
        blobs.put("ocr-artifacts/img-7/1/words.ndjson", ndjson(words))
        blobs.put("ocr-artifacts/img-7/2/lines.ndjson", b'{"text": "ok"}\n{"line_id": 1}\n')
        cv.components.queue.send_many([good, bad])
        cv.work()
        docs = {d["source"]: d for d in cv.documents()}
        assert docs["receipt://img-7/1"]["state"] == "done"
        failed = docs["receipt://img-7/2"]
        assert failed["state"] == "failed" and "line 2: missing 'text'" in failed["error"]
        hit = cv.search("owl bookshop", k=1, collection="receipts_lines")[0]
        assert hit.text == "NIGHT OWL BOOKSHOP" and hit.metadata["image_id"] == "img-7"
        assert cv.search("BOOKSHOP", k=1, collection="receipts_words")[0].text == "BOOKSHOP"


def test_a_photo_replaced_by_text_leaves_no_lines_or_words(
    real_embedder, home: Path, tmp_path: Path
) -> None:
    path = tmp_path / "note.png"
    receipt(RECEIPTS["copper.png"], seed=6, angle=0).save(path, format="PNG")
    with Conveyor(Settings(home=home), embedder=real_embedder) as cv:
        assert cv.ingest([path], collection="rc").done == 1
        doc = cv.documents()[0]
        vectors = cv.components.vectors
        assert vectors.count("rc_lines", document_id=doc["id"]) >= 4
        path.write_text("Now just a plain note about copper kettles.")
        assert cv.ingest([path], collection="rc").done == 1
        assert vectors.count("rc_lines", document_id=doc["id"]) == 0
        assert vectors.count("rc_words", document_id=doc["id"]) == 0
        assert vectors.count("rc", document_id=doc["id"]) == 1
