"""Receipt messages: lines and words a producer's own OCR step already wrote as NDJSON.

The message ``{"image_id", "receipt_id", "artifacts_bucket", "lines_key",
"words_key"}`` names two NDJSON objects; each line of them is one JSON
object with at least ``text`` (and ``line_id`` / ``word_id``, a
``bounding_box``, a ``confidence``). They are validated — a bad line is an
error naming its number — and become the same lines and words units as
conveyor's own OCR.
"""

from __future__ import annotations

import json
from typing import Any

from conveyor.exceptions import CorruptFile, EmptyDocument

from . import Extracted, Section, register

SEPARATOR = b"\n\0\n"
"""Between the lines and the words NDJSON in one receipt job's bytes (JSON holds no NUL)."""


def receipt_bytes(lines: bytes, words: bytes) -> bytes:
    """The bytes a receipt job is extracted from: both artifacts, in order."""
    return lines + SEPARATOR + words


@register("receipt")
def extract_receipt_job(data: bytes, options: dict[str, Any]) -> Extracted:
    """A receipt message's artifacts (:func:`receipt_bytes`); ``options`` carry the
    message's ``image_id`` and ``receipt_id``."""
    lines, _, words = data.partition(SEPARATOR)
    return extract_receipt(
        lines, words, image_id=str(options["image_id"]), receipt_id=options["receipt_id"]
    )


def parse_ndjson(data: bytes, name: str, id_field: str) -> list[dict[str, Any]]:
    """Rows of one NDJSON artifact; :class:`CorruptFile` naming the first bad line."""
    rows = []
    for number, raw in enumerate(data.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise CorruptFile(f"{name} line {number}: not JSON ({exc.msg})") from None
        except UnicodeDecodeError:
            raise CorruptFile(f"{name} line {number}: not UTF-8") from None
        if not isinstance(row, dict):
            raise CorruptFile(f"{name} line {number}: not a JSON object")
        if not isinstance(row.get("text"), str) or not row["text"].strip():
            raise CorruptFile(f"{name} line {number}: missing 'text'")
        if id_field in row and not isinstance(row[id_field], int | str):
            raise CorruptFile(f"{name} line {number}: '{id_field}' must be a number or string")
        box = row.get("bounding_box")
        if box is not None and not isinstance(box, dict):
            raise CorruptFile(f"{name} line {number}: 'bounding_box' must be an object")
        conf = row.get("confidence")
        if conf is not None and not isinstance(conf, int | float):
            raise CorruptFile(f"{name} line {number}: 'confidence' must be a number")
        rows.append(row)
    return rows


def extract_receipt(lines: bytes, words: bytes, *, image_id: str, receipt_id: Any) -> Extracted:
    line_rows = parse_ndjson(lines, "lines NDJSON", "line_id")
    word_rows = parse_ndjson(words, "words NDJSON", "word_id")
    if not line_rows:
        raise EmptyDocument("the receipt's lines NDJSON holds no lines")

    def unit(row: dict[str, Any]) -> Section:
        meta = {k: v for k, v in row.items() if k != "text"}
        meta.setdefault("image_id", image_id)
        meta.setdefault("receipt_id", receipt_id)
        return Section(row["text"].strip(), metadata=meta)

    return Extracted(
        kind="receipt",
        mime="application/x-ndjson",
        sections=[Section("\n".join(r["text"].strip() for r in line_rows))],
        metadata={
            "image_id": image_id,
            "receipt_id": receipt_id,
            "lines": len(line_rows),
            "words": len(word_rows),
        },
        units={"lines": [unit(r) for r in line_rows], "words": [unit(r) for r in word_rows]},
    )
