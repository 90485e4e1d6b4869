"""A PDF's pages with the real model: page images in the blob store that decode, the
pages collection (``<collection>_pages``) finding the page a question is about — from
the CLI too —, and a changed or deleted PDF replacing or removing both collections'
rows and its images. Generated with reportlab, one page a scan (OCR'd when
Tesseract is installed)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw, ImageFont

from conveyor.app import Conveyor
from conveyor.server.api import create_api
from conveyor.settings import Settings

PAGES = {
    "brakes": (
        "Brake maintenance. The brake pads press against the rotor when the pedal is "
        "pushed. Worn pads squeal and lengthen the stopping distance. Check the pad "
        "thickness every service; replace pads thinner than three millimetres. Bleed "
        "the brake fluid every two years, because it absorbs water and boils sooner. "
        "The rear caliper bolts are tightened to 35 newton metres."
    ),
    "battery": (
        "The battery and charging. The starter battery is a twelve volt lead acid "
        "unit under the passenger seat. A healthy battery reads 12.6 volts at rest. "
        "The alternator charges it while the engine runs, at about fourteen volts. "
        "Disconnect the negative terminal first when you remove it, and clean "
        "corroded terminals with baking soda and water."
    ),
    "tyres": (
        "Tyres and wheels. Keep the tyres inflated to 2.4 bar at the front and 2.6 bar "
        "at the rear when cold. Rotate the tyres every ten thousand kilometres so they "
        "wear evenly. Replace a tyre when its tread depth falls below 1.6 millimetres. "
        "Wheel nuts are tightened in a star pattern with a torque wrench."
    ),
    "cooling": (
        "The cooling system. Coolant flows from the water pump through the engine "
        "block to the radiator, where the fan cools it. Never open the radiator cap "
        "while the engine is hot: the coolant is under pressure and scalds. Top up "
        "the expansion tank to the line marked MAX with a mix of antifreeze and water."
    ),
    "lights": (
        "Lights and bulbs. The headlamp bulbs are H7 halogen, fitted from behind the "
        "headlamp housing. Do not touch the glass of a halogen bulb with bare fingers. "
        "Indicator bulbs are amber, and a fast blinking indicator means a bulb has "
        "failed. Aim the headlamps against a wall five metres away."
    ),
    "wipers": (
        "Windscreen wipers and washers. Replace the wiper blades once a year, or when "
        "they leave streaks on the glass. Fill the washer reservoir with screen wash; "
        "in winter use a mix that will not freeze. The washer jets can be aimed with "
        "a pin so that they hit the middle of the windscreen."
    ),
}
QUERIES = {
    "how tight should the rear caliper bolts be": "brakes",
    "what voltage should a healthy car battery show": "battery",
    "correct tyre pressure front and rear": "tyres",
    "is it safe to open the radiator when the engine is hot": "cooling",
    "which bulb type do the headlamps use": "lights",
    "how often should wiper blades be changed": "wipers",
}
SCAN = ["MINUTES OF THE ANNUAL MEETING", "The lighthouse keepers voted", "to repaint the tower"]


def scanned_page(lines: list[str]) -> Image.Image:
    font = ImageFont.load_default(size=36)
    image = Image.new("L", (1240, 1754), 255)  # A4 at 150 dpi
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((120, 160 + 70 * i), line, font=font, fill=10)
    return image


def manual(path: Path, topics: list[str], *, scan: bool = True) -> None:
    """One page per topic, its text written three times over (two or three chunks a
    page, the fact asked about in each), then a scanned page without a text layer."""
    import textwrap

    from reportlab.lib.pagesizes import A4
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=A4)
    for topic in topics:
        y = 800.0
        for line in textwrap.wrap(" ".join([PAGES[topic]] * 3), 95):
            c.drawString(40, y, line)
            y -= 14
        c.showPage()
    if scan:
        c.drawImage(ImageReader(scanned_page(SCAN)), 0, 0, width=A4[0], height=A4[1])
        c.showPage()
    c.save()


@pytest.fixture
def pdf(tmp_path: Path) -> Path:
    folder = tmp_path / "manuals"
    folder.mkdir()
    path = folder / "manual.pdf"
    manual(path, list(PAGES))
    return path


def _page_rows(cv: Conveyor, collection: str, doc_id: str) -> list[Any]:
    return [
        r
        for r in cv.components.vectors.iter_chunks(collection, vectors=False)
        if r.document_id == doc_id
    ]


def test_page_images_and_the_pages_collection(
    real_embedder: Any, home: Path, pdf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ocr = shutil.which("tesseract") is not None
    settings = Settings(home=home, page_images=True, api_keys="k")
    with Conveyor(settings, embedder=real_embedder) as cv:
        assert cv.ingest([pdf], collection="manuals").done == 1
        doc = cv.documents()[0]
        assert doc["state"] == "done"
        meta = doc["metadata"]
        assert meta["page_images"]["pages"] == 7 and meta["page_images"]["dpi"] == 110
        assert "pages" in meta["unit_collections"]
        blobs = cv.components.blobs
        for n in range(1, 8):
            key = f"artifacts/{doc['id']}/pages/{n}.png"
            assert meta["page_images"]["key"].format(n=n) == key
            with Image.open(io.BytesIO(blobs.get(key))) as image:
                image.load()
                width, height = image.size  # A4 at 110 dpi, to a pixel
                assert (
                    abs(width - 595.28 * 110 / 72) < 1.5 and abs(height - 841.89 * 110 / 72) < 1.5
                )
        # one entry per page with text: its whole text, its number, its image
        rows = {r.page: r for r in _page_rows(cv, "manuals_pages", doc["id"])}
        assert sorted(rows) == ([1, 2, 3, 4, 5, 6, 7] if ocr else [1, 2, 3, 4, 5, 6])
        assert rows[3].text.count("2.4 bar") == 3
        assert rows[3].metadata["page_image"].endswith("/pages/3.png")
        assert rows[3].metadata["chunks"] >= 2
        # a question finds its page, and a chunk hit carries its page's image too
        topics = list(PAGES)
        for query, topic in QUERIES.items():
            hit = cv.search(query, k=1, collection="manuals_pages", mode="dense")[0]
            assert hit.page == topics.index(topic) + 1, (query, hit.page)
            assert hit.metadata["page_image"] == rows[hit.page].metadata["page_image"]
        chunk = cv.search("wiper blades streaks", k=1, collection="manuals")[0]
        assert chunk.page == 6 and chunk.metadata["page_image"].endswith("/pages/6.png")
        if ocr:
            hit = cv.search("lighthouse keepers repaint", k=1, collection="manuals_pages")[0]
            assert hit.page == 7 and "LIGHTHOUSE" in hit.text.upper()
        # the API: the document view names the images, and serves each page's
        with TestClient(create_api(conveyor=cv)) as client:
            key = {"x-api-key": "k"}
            view = client.get(f"/documents/{doc['id']}/detail", headers=key).json()
            assert view["document"]["details"]["page_images"]["pages"] == 7
            got = client.get(f"/documents/{doc['id']}/pages/2", headers=key)
            assert got.status_code == 200 and got.headers["content-type"] == "image/png"
            assert got.content == blobs.get(f"artifacts/{doc['id']}/pages/2.png")
            missing = client.get(f"/documents/{doc['id']}/pages/8", headers=key)
            assert missing.status_code == 404 and "page 8" in missing.json()["error"]["message"]
        # the document is done when both collections are merged
        runs = {r["collection"] for r in cv.status()["compactions"]}
        assert {"manuals", "manuals_pages"} <= runs

    # from the command line, in another process
    monkeypatch.setenv("CONVEYOR_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CONVEYOR_EMBEDDING_BACKEND", "torch")
    query = ["search", "tyre tread depth limit", "-k", "1", "--collection", "manuals_pages"]
    out = subprocess.run(
        [sys.executable, "-m", "conveyor.cli", *query, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    [hit] = json.loads(out.stdout)
    assert hit["page"] == 3 and hit["metadata"]["page_image"].endswith("/pages/3.png")


def test_a_changed_pdf_replaces_its_pages_and_a_deleted_one_removes_them(
    real_embedder: Any, home: Path, pdf: Path
) -> None:
    settings = Settings(home=home, page_images=True)
    with Conveyor(settings, embedder=real_embedder) as cv:
        assert cv.ingest([pdf], collection="m").done == 1
        doc_id = cv.documents()[0]["id"]
        blobs = cv.components.blobs
        assert len(list(blobs.list(f"artifacts/{doc_id}/pages/"))) == 7

        manual(pdf, ["cooling", "battery"], scan=False)  # shorter, other pages
        assert cv.ingest([pdf], collection="m").done == 1
        rows = _page_rows(cv, "m_pages", doc_id)
        assert sorted(r.page for r in rows) == [1, 2]
        assert "radiator" in rows[0].text and "alternator" in rows[1].text
        assert {r.page for r in _page_rows(cv, "m", doc_id)} == {1, 2}
        keys = sorted(b.key for b in blobs.list(f"artifacts/{doc_id}/pages/"))
        assert keys == [f"artifacts/{doc_id}/pages/{n}.png" for n in (1, 2)]
        hit = cv.search("radiator cap hot engine", k=1, collection="m_pages")[0]
        assert hit.page == 1

        cv.delete([doc_id])
        cv.merge()
        assert cv.documents() == []
        assert cv.components.vectors.count("m", document_id=doc_id) == 0
        assert cv.components.vectors.count("m_pages", document_id=doc_id) == 0
        assert not list(blobs.list(f"artifacts/{doc_id}/pages/"))


def test_pdf_pages_off_and_page_images_turned_on_later(
    real_embedder: Any, home: Path, pdf: Path
) -> None:
    settings = Settings(home=home, pdf_pages=False)
    with Conveyor(settings, embedder=real_embedder) as cv:
        assert cv.ingest([pdf], collection="plain").done == 1
        doc = cv.documents()[0]
        assert "pages" not in doc["metadata"]["unit_collections"]
        assert "page_images" not in doc["metadata"]
        assert cv.components.vectors.collection("plain_pages") is None
        assert not list(cv.components.blobs.list(f"artifacts/{doc['id']}/"))
    # the same PDF again with page images on is redone, not skipped as unchanged
    with Conveyor(Settings(home=home, page_images=True), embedder=real_embedder) as cv:
        assert cv.ingest([pdf], collection="plain").done == 1
        assert len(list(cv.components.blobs.list(f"artifacts/{doc['id']}/pages/"))) == 7
        assert cv.components.vectors.count("plain_pages", document_id=doc["id"]) >= 6


def test_a_reindex_rebuilds_the_pages_collection_with_the_chunks(
    real_embedder: Any, home: Path, pdf: Path
) -> None:
    from conveyor import rebuild

    with Conveyor(Settings(home=home), embedder=real_embedder) as cv:
        assert cv.ingest([pdf], collection="r").done == 1
        rebuild.begin(cv.components, "r")
        cv.work()
        lineage = rebuild.finish(cv.components, "r")
        assert lineage is not None and lineage.name == "r__g1"
        hit = cv.search("correct tyre pressure front and rear", k=1, collection="r_pages")[0]
        assert hit.collection == "r__g1_pages" and hit.page == 3
        names = {i.name for i in cv.components.vectors.collections()}
        assert {"r__g1", "r__g1_pages"} <= names and "r_pages" not in names
