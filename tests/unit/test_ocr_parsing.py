"""Parsing Tesseract's TSV and producers' receipt NDJSON (no Tesseract needed)."""

from __future__ import annotations

import pytest

from conveyor.exceptions import CorruptFile
from conveyor.extract.receipt import extract_receipt, parse_ndjson
from conveyor.ocr import parse_tsv

HEADER = (
    "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext"
)


def _row(level, line, word, left, text, conf=95.0):
    return f"{level}\t1\t1\t1\t{line}\t{word}\t{left}\t{10 * line}\t40\t12\t{conf}\t{text}"


def test_tsv_words_grouped_into_lines_with_boxes() -> None:
    tsv = "\n".join(
        [
            HEADER,
            _row(4, 1, 0, 10, "", -1),
            _row(5, 1, 1, 10, "TOTAL"),
            _row(5, 1, 2, 60, "9.60", 80.0),
            _row(5, 2, 1, 10, " ", 50.0),  # blank words are dropped
            _row(5, 2, 2, 10, "THANKS"),
        ]
    )
    page = parse_tsv(tsv)
    assert [line.text for line in page.lines] == ["TOTAL 9.60", "THANKS"]
    assert page.lines[0].box == {"x": 10, "y": 10, "width": 90, "height": 12}
    assert page.lines[0].confidence == pytest.approx(0.875)
    assert [(w.text, w.line, w.word) for w in page.words] == [
        ("TOTAL", 0, 0),
        ("9.60", 0, 1),
        ("THANKS", 1, 0),
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"text": "a"}\nnot json\n', "line 2: not JSON"),
        (b'{"text": "a"}\n[1, 2]\n', "line 2: not a JSON object"),
        (b'{"line_id": 3}\n', "line 1: missing 'text'"),
        (b'{"text": "a", "bounding_box": [1, 2]}\n', "line 1: 'bounding_box' must be an object"),
        (b'{"text": "a", "confidence": "high"}\n', "line 1: 'confidence' must be a number"),
    ],
)
def test_ndjson_errors_name_the_line(data: bytes, message: str) -> None:
    with pytest.raises(CorruptFile, match=message):
        parse_ndjson(data, "lines NDJSON", "line_id")


def test_receipt_units_keep_ids_and_boxes() -> None:
    lines = (
        b'{"line_id": 0, "text": "CAFE", '
        b'"bounding_box": {"x": 1, "y": 2, "width": 3, "height": 4}}\n'
    )
    words = b'{"line_id": 0, "word_id": 0, "text": "CAFE"}\n\n'
    result = extract_receipt(lines, words, image_id="img", receipt_id=3)
    line = result.units["lines"][0]
    assert line.text == "CAFE" and line.metadata["bounding_box"]["width"] == 3
    assert line.metadata["image_id"] == "img" and line.metadata["receipt_id"] == 3
    assert [w.text for w in result.units["words"]] == ["CAFE"]
    assert result.sections[0].text == "CAFE"
