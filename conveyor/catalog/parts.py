"""A delta's part merged: what :meth:`~conveyor.catalog.Catalog.complete_parts` marks."""

from __future__ import annotations

from typing import Any, NamedTuple


class Part(NamedTuple):
    """One delta applied: its delivery's ``parts`` and, when it completes the delivery,
    the document's ``done`` fields (None: a deletion, whose document leaves)."""

    delta_id: int
    document_id: str
    delivery: str
    parts: int
    done: dict[str, Any] | None
