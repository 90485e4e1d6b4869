"""The worker → compactor hand-off: a delta, typed and versioned, serialised here only.

A worker's delivery of one document is one delta per collection it fills
(the chunks, and each unit collection such as ``<collection>_lines``); the
document is done when every part of the delivery is merged. A delta is a
:class:`Header` (what the document is and where its vectors come from), its
:class:`Chunk` rows and a float32 matrix of their vectors. The catalog
stores the header and chunks as JSON and the vectors as bytes; this module
is the only one that reads or writes that JSON.

A delta whose header says ``deleted`` carries no chunks: it removes the
document from its collection (``conveyor delete``, ``ingest --sync``), and
the document leaves the catalog once every part is merged.

``FORMAT`` is written into every header. Headers of older formats (0, before
formats existed, and 1) are still read, so deltas pending across an upgrade
merge.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np

from .catalog import Catalog, NewDelta
from .exceptions import ConveyorError

FORMAT = 2
"""1: typed headers with a delivery; 2: adds ``deleted`` (a tombstone)."""


class UnknownFormat(ConveyorError):
    """A delta written by a newer conveyor: upgrade the compactor."""


@dataclass(frozen=True)
class Chunk:
    """One row to upsert: a chunk of text (or a unit: a line, a word) with its place."""

    id: str
    index: int
    text: str
    page: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "chunk_index": self.index,
            "text": self.text,
            "page": self.page,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> Chunk:
        return cls(
            id=row["id"],
            index=int(row["chunk_index"]),
            text=row["text"],
            page=row.get("page"),
            metadata=row.get("metadata") or {},
        )


@dataclass(frozen=True)
class Delivery:
    """What the parts of one worker's delivery share."""

    id: str
    """This attempt's id: parts of an earlier attempt never count towards it."""
    collections: Mapping[str, int]
    """Rows per collection, the document's own collection first."""
    chunks: int
    """Chunks of the text (the document's chunk count)."""

    @property
    def parts(self) -> int:
        return len(self.collections)

    @property
    def embeddings(self) -> int:
        """Vectors of every part together (the manifest's ``EmbeddingsGenerated``)."""
        return sum(self.collections.values())


@dataclass(frozen=True)
class Header:
    """A document as a worker read it, and the part of its delivery this delta is."""

    source: str
    run: str
    job_id: str
    read_at: float
    """When the source was read, by the catalog's clock: the newer read wins."""
    content_hash: str
    fingerprint: str
    """What makes the chunks what they are (content, model, chunking): same, skip."""
    kind: str
    mime: str
    size: int
    model: str
    backend: str | None
    dim: int
    timings: Mapping[str, float]
    metadata: Mapping[str, Any]
    delivery: Delivery
    part: int
    deleted: bool = False
    """A tombstone: remove the document (no chunks)."""
    trace: str | None = None
    """The job's span as a W3C ``traceparent`` when tracing is on: the merge joins it."""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["delivery"] = {
            "id": self.delivery.id,
            "collections": dict(self.delivery.collections),
            "chunks": self.delivery.chunks,
        }
        return {"format": FORMAT, **data}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Header:
        version = data.get("format", 0)
        if version == 0:
            data = _from_format_0(data)
        elif version not in (1, FORMAT):
            raise UnknownFormat(
                f"delta format {version} is newer than this conveyor's ({FORMAT}): "
                "upgrade the compactor"
            )
        delivery = data["delivery"]
        return cls(
            source=data["source"],
            run=data["run"],
            job_id=data["job_id"],
            read_at=float(data["read_at"]),
            content_hash=data["content_hash"],
            fingerprint=data["fingerprint"],
            kind=data["kind"],
            mime=data["mime"],
            size=int(data["size"]),
            model=data["model"],
            backend=data["backend"],
            dim=int(data["dim"]),
            timings=MappingProxyType(dict(data["timings"])),
            metadata=MappingProxyType(dict(data["metadata"])),
            delivery=Delivery(
                id=delivery["id"],
                collections=MappingProxyType(dict(delivery["collections"])),
                chunks=int(delivery["chunks"]),
            ),
            part=int(data["part"]),
            deleted=bool(data.get("deleted", False)),
            trace=data.get("trace"),
        )


def _from_format_0(data: Mapping[str, Any]) -> dict[str, Any]:
    """A header as conveyor wrote it before deltas had a format: delivery fields
    flat, some missing in single-part deliveries of the oldest versions."""
    collections = data.get("collections")
    if not collections:  # one part: the collection is the delta's own, filled in below
        collections = {"": -1}
    return {
        **data,
        "job_id": data.get("job_id", ""),
        "kind": data.get("kind") or "",
        "mime": data.get("mime") or "",
        "size": data.get("size") or 0,
        "read_at": data.get("read_at") or 0.0,
        "backend": data.get("backend"),
        "timings": data.get("timings") or {},
        "metadata": data.get("metadata") or {},
        "delivery": {
            "id": data.get("delivery") or "",
            "collections": collections,
            "chunks": data.get("main_chunks", next(iter(collections.values()))),
        },
        "part": data.get("part") or 0,
    }


@dataclass(frozen=True)
class Delta:
    """A pending delta as the compactor reads it."""

    id: int
    collection: str
    document_id: str
    header: Header
    chunks: tuple[Chunk, ...]
    vectors: bytes
    """float32, one row per chunk: see :meth:`matrix`."""

    def matrix(self) -> np.ndarray:
        """The vectors as a (chunks, dim) float32 array; ``ValueError`` if the bytes
        do not make one (the compactor then retries, and in the end rejects it)."""
        if self.header.deleted:
            return np.zeros((0, 0), dtype=np.float32)
        matrix = np.frombuffer(self.vectors, dtype=np.float32).reshape(-1, self.header.dim)
        if len(matrix) != len(self.chunks):
            raise ValueError(f"{len(self.chunks)} chunks but {len(matrix)} vectors")
        return matrix


def write(
    catalog: Catalog,
    collection: str,
    document_id: str,
    header: Header,
    chunks: list[Chunk],
    vectors: np.ndarray,
) -> int:
    """Add a pending delta now; returns its id (ids increase)."""
    return prepare(collection, document_id, header, chunks, vectors).add(catalog)


def prepare(
    collection: str,
    document_id: str,
    header: Header,
    chunks: list[Chunk],
    vectors: np.ndarray,
    *,
    document: Mapping[str, Any] | None = None,
) -> NewDelta:
    """What :func:`write` hands the catalog, for writing it later with other documents'
    (:meth:`~conveyor.catalog.Catalog.add_deltas`); ``document``: columns of the
    document written with it (a delivery's last part: the stage ``merge``)."""
    if len(chunks) != len(vectors):
        raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
    return NewDelta(
        collection,
        document_id,
        header.to_json(),
        [c.to_json() for c in chunks],
        np.ascontiguousarray(vectors, dtype=np.float32).tobytes(),
        header.read_at,
        header.delivery.id,
        header.part,
        document,
    )


def tombstone(
    source: str, run: str, read_at: float, collections: list[str]
) -> list[tuple[str, Header]]:
    """The parts of a deletion: one per collection the document has rows in."""
    delivery = Delivery(uuid.uuid4().hex, dict.fromkeys(collections, 0), 0)
    return [
        (
            collection,
            Header(
                source=source,
                run=run,
                job_id="delete",
                read_at=read_at,
                content_hash="",
                fingerprint="",
                kind="",
                mime="",
                size=0,
                model="",
                backend=None,
                dim=0,
                timings={},
                metadata={},
                delivery=delivery,
                part=number,
                deleted=True,
            ),
        )
        for number, collection in enumerate(collections)
    ]


def pending(catalog: Catalog, collection: str, *, limit: int = 64) -> list[Delta]:
    """Pending deltas of ``collection``, oldest first."""
    out = []
    for row in catalog.pending_deltas(collection, limit=limit):
        header = Header.from_json(row["header"])
        chunks = tuple(Chunk.from_json(c) for c in row["chunks"])
        if "" in header.delivery.collections:  # format 0, one part: it is all there is
            header = _single_part(header, collection, len(chunks))
        out.append(Delta(row["id"], collection, row["document_id"], header, chunks, row["vectors"]))
    return out


def _single_part(header: Header, collection: str, rows: int) -> Header:
    delivery = Delivery(header.delivery.id, MappingProxyType({collection: rows}), rows)
    return replace(header, delivery=delivery)
