"""Search filters, as every backend must apply them: one corpus, and for each
:class:`~conveyor.filters.Filter` the chunks it lets through.

Vector stores (``tests/integration/test_vectorstore_conformance.py``) and
lexical indexes (SQLite FTS5 in ``tests/unit/test_search.py``, PostgreSQL in
``tests/integration/test_lexical_postgres.py``) are loaded with
:func:`records` and must answer every case of :data:`CASES` with exactly its
chunk ids: filters are applied inside the backend, so asking for more hits
than match returns all that match and nothing else.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from conveyor.filters import Filter
from conveyor.vectorstore import ChunkRecord

DIM = 4
QUERY = np.array([1.0, 0.2, 0.1, 0.0], dtype=np.float32)
RECORDED = 1_765_360_800.0  # 2025-12-10T10:00:00Z
WORD = "budget"  # in every chunk's text: a lexical search for it matches them all


def _chunk(doc: str, i: int, source: str, metadata: dict[str, Any], page: int | None = None):
    vector = np.array([1.0, 0.1 * (i + 1), 0.05 * len(doc), 0.01], dtype=np.float32)
    return ChunkRecord(
        id=f"{doc}-{i}",
        document_id=doc,
        chunk_index=i,
        text=f"{WORD} notes {doc} part {i}",
        source=source,
        page=page,
        metadata=metadata,
        vector=vector / np.linalg.norm(vector),
    )


def records() -> list[ChunkRecord]:
    """Four documents: two texts and a PDF under one folder tree, a recording in a bucket."""
    out = [
        _chunk(
            "d1",
            i,
            "file:///docs/a/one.txt",
            {"kind": "text", "team": "finance", "year": 2024, "draft": True},
        )
        for i in range(2)
    ]
    out += [
        _chunk(
            "d2",
            i,
            "file:///docs/a/sub/two.pdf",
            {"kind": "pdf", "team": "legal", "year": "2024"},
            page=i + 1,
        )
        for i in range(3)
    ]
    out.append(
        _chunk("d3", 0, "file:///docs/ab.txt", {"kind": "text", "team": "finance", "score": 2.5})
    )
    out += [
        _chunk(
            "d4",
            i,
            "s3://bucket/rec.wav",
            {
                "kind": "audio",
                "start_s": 30.0 * i,
                "end_s": 30.0 * (i + 1),
                "tags": ["x"],
                "device_id": "esp32-test",  # a recorder's upload (conveyor.recordings)
                "started_at": "2025-12-10T10:00:00+00:00",
                "recorded_at": RECORDED,
            },
        )
        for i in range(3)
    ]
    return out


CASES: list[tuple[Filter, set[str]]] = [
    (Filter(), {r.id for r in records()}),
    (Filter(source_prefix="file:///docs/a"), {"d1-0", "d1-1", "d2-0", "d2-1", "d2-2"}),
    (Filter(source_prefix="file:///docs/a/"), {"d1-0", "d1-1", "d2-0", "d2-1", "d2-2"}),
    (Filter(source_prefix="file:///docs/a/one.txt"), {"d1-0", "d1-1"}),
    (Filter(source_prefix="file:///docs"), {"d1-0", "d1-1", "d2-0", "d2-1", "d2-2", "d3-0"}),
    (Filter(source_prefix="s3://bucket"), {"d4-0", "d4-1", "d4-2"}),
    (Filter(source_prefix="file:///doc"), set()),  # whole path segments only
    (Filter(kind="pdf"), {"d2-0", "d2-1", "d2-2"}),
    (Filter(pages=(2, None)), {"d2-1", "d2-2"}),
    (Filter(pages=(1, 2), kind="pdf"), {"d2-0", "d2-1"}),
    (Filter(pages=(3, 3), document_id="d2"), {"d2-2"}),
    (Filter(seconds=(40.0, 70.0)), {"d4-1", "d4-2"}),
    (Filter(seconds=(None, 10.0)), {"d4-0"}),
    (Filter(where=(("team", "finance"),)), {"d1-0", "d1-1", "d3-0"}),
    (Filter(where=(("year", "2024"),)), {"d1-0", "d1-1", "d2-0", "d2-1", "d2-2"}),
    (Filter(where=(("draft", "true"),)), {"d1-0", "d1-1"}),
    (Filter(where=(("score", "2.5"),)), {"d3-0"}),
    (Filter(where=(("team", "finance"), ("kind", "text"))), {"d1-0", "d1-1", "d3-0"}),
    (Filter(where=(("team", "finance"),), source_prefix="file:///docs/a"), {"d1-0", "d1-1"}),
    (Filter(where=(("tags", "x"),)), set()),  # lists are not matched
    (Filter(where=(("missing", "x"),)), set()),
    (Filter(source="s3://bucket/rec.wav", seconds=(0.0, 0.0)), {"d4-0"}),
    (Filter(recorded=(RECORDED - 86_400, None)), {"d4-0", "d4-1", "d4-2"}),
    (Filter(recorded=(RECORDED, RECORDED)), {"d4-0", "d4-1", "d4-2"}),
    (Filter(recorded=(None, RECORDED - 1)), set()),
    (Filter(recorded=(RECORDED + 1, None)), set()),
    (
        Filter(where=(("device_id", "esp32-test"),), recorded=(None, RECORDED + 60)),
        {"d4-0", "d4-1", "d4-2"},
    ),
    (Filter(where=(("device_id", "other"),)), set()),
]


def case_id(case: tuple[Filter, set[str]]) -> str:
    f = case[0]
    return ",".join(f"{k}={v}" for k, v in vars(f).items() if v) or "none"
