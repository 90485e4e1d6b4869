"""What several documents' writes carry when the catalog takes them at once: the deltas a
worker's wave delivers (:meth:`~conveyor.catalog.Catalog.add_deltas`) and the parts the
compactor marks merged (:meth:`~conveyor.catalog.Catalog.complete_parts`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple


class NewDelta(NamedTuple):
    """:meth:`~conveyor.catalog.Catalog.add_delta`'s arguments, in its order."""

    collection: str
    document_id: str
    header: dict[str, Any]
    chunks: list[dict[str, Any]]
    vectors: bytes
    read_at: float
    delivery: str
    part: int
    document: Mapping[str, Any] | None = None

    def add(self, catalog: Any) -> int:
        """Written alone (``catalog.add_delta``); returns its id."""
        return int(
            catalog.add_delta(
                self.collection,
                self.document_id,
                self.header,
                self.chunks,
                self.vectors,
                read_at=self.read_at,
                delivery=self.delivery,
                part=self.part,
                document=self.document,
            )
        )


class Part(NamedTuple):
    """One delta applied: its delivery's ``parts`` and, when it completes the delivery,
    the document's ``done`` fields (None: a deletion, whose document leaves)."""

    delta_id: int
    document_id: str
    delivery: str
    parts: int
    done: dict[str, Any] | None
