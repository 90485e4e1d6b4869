"""A PDF's pages: units of the pages collection, page images rendered one at a time
under a pixel cap, their upload and removal, and a page's vector from its chunks."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pypdf import PdfReader, PdfWriter
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from conveyor.blobstore.local import LocalBlobStore
from conveyor.chunking import Chunk
from conveyor.extract import Extracted, Section, extract
from conveyor.extract.pages import page_scale
from conveyor.pages import (
    page_fingerprint,
    page_vectors,
    remove_page_images,
    rendering,
    store_page_images,
)
from conveyor.settings import Settings


def pdf(pages: list[str], size: tuple[float, float] = A4) -> bytes:
    buffer = io.BytesIO()
    c = canvas.Canvas(buffer, pagesize=size)
    for text in pages:
        if text:
            c.drawString(40, size[1] - 60, text)
        c.showPage()
    c.save()
    return buffer.getvalue()


def options(folder: Path, **more: object) -> dict[str, object]:
    return {"page_images_dir": str(folder), "page_image_key": "a/doc/pages/{n}.png", **more}


def test_pages_are_units_with_their_text_and_blank_pages_are_none() -> None:
    result = extract(pdf(["first page words", "", "third page words"]), options={"ocr": False})
    units = result.units["pages"]
    assert [(u.page, u.text) for u in units] == [(1, "first page words"), (3, "third page words")]
    assert "page_images" not in result.metadata  # not asked for
    off = extract(pdf(["words"]), options={"pdf_pages": False})
    assert "pages" not in off.units


def test_every_page_rendered_at_the_dpi_and_keyed(tmp_path: Path) -> None:
    result = extract(pdf(["one", "", "three"]), options=options(tmp_path, ocr=False))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1.png", "2.png", "3.png"]
    with Image.open(tmp_path / "2.png") as image:  # a page without text has its image too
        assert abs(image.size[0] - A4[0] * 110 / 72) < 1.5
    assert result.metadata["page_images"] == {
        "key": "a/doc/pages/{n}.png",
        "pages": 3,
        "dpi": 110,
        "format": "png",
    }
    assert result.sections[1].metadata["page_image"] == "a/doc/pages/3.png"
    assert [u.metadata["page_image"] for u in result.units["pages"]] == [
        "a/doc/pages/1.png",
        "a/doc/pages/3.png",
    ]


def test_webp_and_a_lower_dpi(tmp_path: Path) -> None:
    extract(
        pdf(["words"]),
        options=options(tmp_path, page_image_format="webp", page_dpi=36, page_image_key="{n}"),
    )
    with Image.open(tmp_path / "1.webp") as image:
        assert image.format == "WEBP" and abs(image.size[0] - A4[0] / 2) < 1.5


def test_a_huge_page_is_rendered_smaller_to_fit_the_cap(tmp_path: Path) -> None:
    assert page_scale(20_000, 20_000, 110, 10_000_000) == pytest.approx(10_000_000**0.5 / 20_000)
    assert page_scale(595, 842, 110, 10_000_000) == pytest.approx(110 / 72)
    extract(
        pdf(["poster"], size=(14_000, 14_000)), options=options(tmp_path, page_max_pixels=10**6)
    )
    with Image.open(tmp_path / "1.png") as image:
        assert image.size[0] * image.size[1] <= 1_000_000 * 1.01


def test_encrypted_with_an_empty_user_password_renders(tmp_path: Path) -> None:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf(["open words"]))))
    writer.encrypt(user_password="", owner_password="owner", algorithm="AES-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    result = extract(buffer.getvalue(), options=options(tmp_path))
    assert result.metadata["encrypted"] is True and result.metadata["page_images"]["pages"] == 1
    with Image.open(tmp_path / "1.png") as image:
        assert image.getextrema() != ((255, 255), (255, 255), (255, 255))  # the text is drawn


def test_a_job_cannot_name_the_folder_when_page_images_are_off(tmp_path: Path) -> None:
    with rendering(Settings(home=tmp_path), "doc") as off:
        assert off == {"page_images_dir": None, "page_image_key": None}
    with rendering(Settings(home=tmp_path, page_images=True, page_dpi=72), "doc") as on:
        assert Path(str(on["page_images_dir"])).is_dir() and on["page_dpi"] == 72
        assert on["page_image_key"] == "artifacts/doc/pages/{n}.png"
    assert not Path(str(on["page_images_dir"])).exists()


def test_images_uploaded_and_those_of_a_longer_version_removed(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    for n in (1, 2, 3):
        blobs.put(f"artifacts/doc/pages/{n}.png", b"old")
    blobs.put("artifacts/doc/transcript.json", b"{}")
    folder = tmp_path / "rendered"
    folder.mkdir()
    (folder / "1.png").write_bytes(b"new")
    opts = {"page_images_dir": str(folder), "page_image_key": "artifacts/doc/pages/{n}.png"}
    done = Extracted("pdf", "application/pdf", [])
    assert store_page_images(blobs, "doc", opts, done) == 1
    assert [b.key for b in blobs.list("artifacts/doc/")] == [
        "artifacts/doc/pages/1.png",
        "artifacts/doc/transcript.json",
    ]
    assert blobs.get("artifacts/doc/pages/1.png") == b"new" and not list(folder.iterdir())
    text = Extracted("text", "text/plain", [])  # the PDF replaced by a text file
    assert store_page_images(blobs, "doc", opts, text) == 0  # nothing had images: no listing
    assert store_page_images(blobs, "doc", opts, text, earlier=True) == 0
    assert [b.key for b in blobs.list("artifacts/doc/")] == ["artifacts/doc/transcript.json"]
    blobs.put("artifacts/doc/pages/1.png", b"again")
    remove_page_images(blobs, "doc")
    assert [b.key for b in blobs.list("artifacts/doc/")] == ["artifacts/doc/transcript.json"]


def test_a_page_vector_is_the_normalised_mean_of_its_chunks() -> None:
    chunks = [Chunk(i, "t", 0, 1, 1, page=p) for i, p in enumerate([1, 1, 3])]
    vectors = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 2]], dtype=np.float32)
    units = [Section("a", page=1), Section("b", page=2), Section("c", page=3)]
    kept, matrix = page_vectors(units, chunks, vectors)
    assert [u.page for u in kept] == [1, 3] and kept[0].metadata["chunks"] == 2
    np.testing.assert_allclose(matrix, [[0.70710677, 0.70710677, 0], [0, 0, 1]], rtol=1e-6)
    none, empty = page_vectors([Section("x", page=9)], chunks, vectors)
    assert none == [] and empty.shape == (0, 3)


def test_page_settings_change_the_fingerprint_only_when_not_the_default(tmp_path: Path) -> None:
    assert page_fingerprint(Settings(home=tmp_path)) == ""  # earlier documents stay unchanged
    assert page_fingerprint(Settings(home=tmp_path, pdf_pages=False)) == "|pages:off"
    on = page_fingerprint(Settings(home=tmp_path, page_images=True))
    assert on == "|images:110:png:10000000"
    assert page_fingerprint(Settings(home=tmp_path, page_images=True, page_dpi=150)) != on
