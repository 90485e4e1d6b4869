"""A PDF's structure, links and description: generated PDFs (reportlab) with an outline
or only headings set in larger bold type, links on known pages; the pipeline on fakes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conveyor.app import Conveyor
from conveyor.describe import detect_language, document_title, document_type, offline
from conveyor.extract import Section, extract
from conveyor.extract.outline import Heading, split_sections
from conveyor.filters import Filter
from conveyor.headers import contextual_texts, header
from conveyor.settings import Settings
from conveyor.testing import (
    MANUAL,
    FakeEmbedder,
    WhitespaceTokenizer,
    make_pdf,
    make_structured_pdf,
)

PATHS = [
    "1 Introduction",
    "2 Maintenance",
    "2 Maintenance › 2.1 Brakes",
    "2 Maintenance › 2.2 Chain",
    "3 Warranty",
]


@pytest.fixture(params=[True, False], ids=["outline", "fonts"])
def manual(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, bool]:
    path = tmp_path / "manual.pdf"
    make_structured_pdf(str(path), outline=request.param)
    return path, request.param


def test_sections_from_the_outline_or_the_fonts(manual: tuple[Path, bool]) -> None:
    path, has_outline = manual
    found = extract(path)
    assert found.metadata["structure"] == ("outline" if has_outline else "fonts")
    assert [(h["title"], h["page"], h["level"]) for h in found.metadata["outline"]] == [
        ("1 Introduction", 1, 0),
        ("2 Maintenance", 1, 0),
        ("2.1 Brakes", 2, 1),
        ("2.2 Chain", 2, 1),
        ("3 Warranty", 3, 0),
    ]
    assert [s.metadata["section"] for s in found.sections] == PATHS
    assert [s.page for s in found.sections] == [1, 1, 2, 2, 3]
    for section, (heading, _, body) in zip(found.sections, MANUAL, strict=True):
        assert section.text.startswith(heading)
        assert body.split()[0] in section.text
    # the running footer repeated on every page is no heading
    assert all("Acme" not in h["title"] for h in found.metadata["outline"])


def test_chunks_never_straddle_a_heading(manual: tuple[Path, bool]) -> None:
    path, _ = manual
    from conveyor.chunking import ChunkPlan

    found = extract(path, chunking=ChunkPlan(WhitespaceTokenizer(), 200, 20))
    assert found.chunks is not None
    headings = [h for h, _, _ in MANUAL]
    for chunk in found.chunks:  # a chunk larger than a section still holds only one
        assert sum(h in chunk.text for h in headings) == 1, chunk.text
        assert chunk.text.startswith(chunk.metadata["section"].split(" › ")[-1])


def test_a_heading_alone_joins_the_text_under_it() -> None:
    sections = [
        Section("Intro text.\n\nPart A", page=1),
        Section("A.1 First\nBody of A.1.", page=2),
    ]
    headings = [Heading("Part A", 1, 0), Heading("A.1 First", 2, 1), Heading("Ghost", 2, 1)]
    out = split_sections(sections, headings)
    assert [(s.text, s.metadata.get("section")) for s in out] == [
        ("Intro text.", None),
        ("Part A\n\nA.1 First\nBody of A.1.", "Part A › A.1 First"),
    ]


def test_a_pdf_without_headings_keeps_its_pages(tmp_path: Path) -> None:
    make_pdf(str(tmp_path / "plain.pdf"), ["One page of text.", "Another page of text."])
    found = extract(tmp_path / "plain.pdf")
    assert found.metadata["structure"] == "none" and "outline" not in found.metadata
    assert [(s.page, s.metadata) for s in found.sections] == [(1, {}), (2, {})]


def test_links_with_their_pages(manual: tuple[Path, bool]) -> None:
    path, _ = manual
    found = extract(path)
    links = [
        {k: v for k, v in link.items() if k != "rect"}
        for link in found.metadata["links_with_pages"]
    ]
    assert links == [
        {"page": 2, "uri": "https://example.com/brakes"},
        {"page": 2, "to_page": 1, "text": "back to the introduction"},
        {"page": 3, "to_page": 2, "text": "see the brakes"},
    ]
    assert found.metadata["links"] == ["https://example.com/brakes"]  # as before: URLs
    assert json.loads(found.artifacts["links.json"]) == found.metadata["links_with_pages"]
    assert found.metadata["links_with_pages"][0]["rect"] == [50.0, 60.0, 300.0, 75.0]


def test_contextual_header() -> None:
    assert header("Bike Manual", "2 Maintenance › 2.1 Brakes", "Replace the pads.") == (
        "Bike Manual › 2 Maintenance › 2.1 Brakes"
    )
    assert header("Bike Manual", None, "bike manual\n\nThis manual…") == ""  # no title twice
    assert header(None, None, "text") == ""


def test_contextual_texts_use_the_first_heading_when_the_pdf_has_no_title(
    tmp_path: Path,
) -> None:
    from conveyor.chunking import ChunkPlan

    make_structured_pdf(str(tmp_path / "m.pdf"), title=None)
    found = extract(tmp_path / "m.pdf", chunking=ChunkPlan(WhitespaceTokenizer(), 200, 20))
    assert found.chunks is not None
    texts = contextual_texts(found.chunks, found)
    assert texts[2].startswith("1 Introduction › 2 Maintenance › 2.1 Brakes\n\n2.1 Brakes")
    assert texts[0].startswith("1 Introduction\n\n1 Introduction")  # the section path


def test_offline_description() -> None:
    embedder = FakeEmbedder()
    assert detect_language("The brake pads must be replaced when the groove is worn.") == "en"
    assert (
        detect_language("Die Bremsbeläge müssen gewechselt werden, wenn die Rille fehlt.") == "de"
    )
    assert detect_language("12 34") == "und"
    assert document_title({"title": "Microsoft Word - draft.docx", "outline": []}) is None
    assert document_title({"title": "untitled", "outline": [{"title": "Intro", "level": 0}]}) == (
        "Intro"
    )
    assert document_type("INVOICE\nInvoice number 42\nAmount due: 10 EUR", "", embedder) == (
        "invoice"
    )
    found = offline(
        {"title": "Bike Manual"},
        [body for _, _, body in MANUAL],
        embedder,
    )
    assert found.title == "Bike Manual" and found.language == "en" and found.method == "offline"
    assert found.summary and 1 <= len(found.keywords) <= 8
    assert found.type == "manual"  # "Bike Manual"
    # one telling word alone does not make a type: a manual may say "keep the receipt"
    untitled = offline({}, ["Keep the receipt. Check the brakes before every ride."], embedder)
    assert untitled.type != "receipt"


def test_pipeline_stores_structure_links_and_description(home: Path, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    make_structured_pdf(str(docs / "manual.pdf"))
    settings = Settings(home=home, chunk_size=60, chunk_overlap=10, contextual_headers=True)
    with Conveyor(settings, embedder=FakeEmbedder()) as cv:
        summary = cv.ingest([docs], run="r1")
        assert summary.done == 1, summary.failures
        (doc,) = cv.documents()
        assert doc["title"] == "Bike Manual" and doc["metadata"]["language"] == "en"
        assert doc["metadata"]["description_method"] == "offline" and doc["keywords"]
        assert [link["page"] for link in doc["links"]] == [2, 2, 3]
        assert [h["title"] for h in doc["outline"]][:2] == ["1 Introduction", "2 Maintenance"]
        key = doc["metadata"]["artifacts"]["links.json"]
        assert len(json.loads(cv.components.blobs.get(key))) == 3
        manifest = json.loads(
            cv.components.blobs.get(f"ingestion_output/r1/results/{doc['id']}.json")
        )
        assert manifest["metadata"]["type"] == doc["type"]
        hits = cv.search("brake pads groove caliper", k=1)
        assert hits[0].metadata["section"] == "2 Maintenance › 2.1 Brakes"
        assert "Bike Manual" not in hits[0].text  # the stored text has no header
        assert doc["type"] == "manual"
        assert cv.search("brake pads", k=3, where=Filter(where=(("type", "manual"),)))
        assert not cv.search("brake pads", k=3, where=Filter(where=(("type", "x-none"),)))
        assert cv.search("brake pads", k=3, where=Filter(where=(("language", "en"),)))


def test_description_can_be_turned_off(home: Path, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    make_structured_pdf(str(docs / "manual.pdf"))
    settings = Settings(home=home, chunk_size=60, chunk_overlap=10, describe_documents=False)
    with Conveyor(settings, embedder=FakeEmbedder()) as cv:
        assert cv.ingest([docs]).done == 1
        (doc,) = cv.documents()
        assert "summary" not in doc["metadata"] and doc["metadata"]["structure"] == "outline"
