"""Vector stores hold chunks with their vectors, one collection at a time.

Only the compactor writes (``replace_document``/``upsert``/``delete``);
everything else reads. Backends, chosen by URL in :func:`open_vectorstore`:
``sqlite_vec`` (default, in the same SQLite file as queue and catalog),
``chroma`` (embedded or server), ``qdrant`` (local mode or server) and
``pgvector`` (PostgreSQL). All of them score by cosine similarity and keep
chunk ids stable, so the same conformance tests run against each.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..filters import Filter

Where = Filter | Mapping[str, Any] | None


@dataclass
class ChunkRecord:
    id: str
    document_id: str
    chunk_index: int
    text: str
    source: str
    page: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    vector: np.ndarray | None = None


@dataclass
class Hit:
    score: float
    """Higher is closer: cosine similarity (dense), BM25 (lexical) or the fused
    reciprocal-rank score (hybrid)."""
    id: str
    document_id: str
    source: str
    chunk_index: int
    page: int | None
    text: str
    metadata: dict[str, Any]
    collection: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "score": round(float(self.score), 6),
            "id": self.id,
            "document_id": self.document_id,
            "source": self.source,
            "chunk_index": self.chunk_index,
            "page": self.page,
            "start_s": self.metadata.get("start_s"),
            "end_s": self.metadata.get("end_s"),
            "speakers": self.metadata.get("speakers"),
            "text": self.text,
            "box": self.metadata.get("bounding_box"),
            "collection": self.collection,
            "metadata": self.metadata,
        }


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    dim: int
    model_id: str
    count: int


class VectorStore(Protocol):
    """Chunks and vectors by collection. A collection is bound to one model and dimension."""

    def ensure_collection(self, name: str, *, dim: int, model_id: str) -> None:
        """Create ``name`` for vectors of ``dim`` from ``model_id``; if it exists with a
        different model or dimension, raise :class:`~conveyor.exceptions.ModelMismatch`."""
        ...

    def collection(self, name: str) -> CollectionInfo | None:
        """What ``name`` holds, or None when it does not exist."""
        ...

    def collections(self) -> list[CollectionInfo]: ...

    def upsert(self, collection: str, records: Sequence[ChunkRecord]) -> None:
        """Insert or overwrite by record id (idempotent)."""
        ...

    def delete(self, collection: str, *, document_id: str) -> int:
        """Remove every chunk of a document; returns how many went."""
        ...

    def replace_document(
        self, collection: str, document_id: str, records: Sequence[ChunkRecord]
    ) -> None:
        """The document's chunks become exactly ``records`` (atomic where the backend can)."""
        ...

    def query(self, collection: str, vector: np.ndarray, k: int, where: Where = None) -> list[Hit]:
        """The ``k`` nearest chunks that meet ``where`` (a :class:`~conveyor.filters.Filter`,
        or a ``document_id`` / ``source`` equality dict), closest first. The filter is
        applied by the backend itself, so a filtered query finds ``k`` hits whenever
        ``k`` chunks match."""
        ...

    def count(self, collection: str, *, document_id: str | None = None) -> int: ...

    def drop_collection(self, name: str) -> bool:
        """Remove ``name`` and all it holds (a retired generation); False when it did
        not exist."""
        ...

    def iter_chunks(self, collection: str, *, vectors: bool = True) -> Iterator[ChunkRecord]:
        """Every chunk, ordered by document and chunk index (for export)."""
        ...

    def close(self) -> None: ...


def open_vectorstore(url: str, *, candidates: int | None = None) -> VectorStore:
    """The vector store a URL names; it connects at once, so a wrong or unreachable
    URL raises :class:`~conveyor.exceptions.ConfigurationError` here, naming it.

    - ``sqlite-vec:///path.db`` (or a plain path): sqlite-vec
    - ``chroma:///path``: Chroma embedded; ``chroma+http://host:8000`` (or
      ``chroma+https://``): a Chroma server
    - ``qdrant:///path``: Qdrant local mode (one process at a time);
      ``qdrant+http://host:6333`` (or ``qdrant+https://``, ``?api_key=``): a Qdrant server
    - ``pgvector+postgresql://user:pass@host/db``: PostgreSQL with pgvector

    ``candidates``: sqlite-vec's bit scan hands this many to the exact re-rank (0: an
    exact scan of every vector); None keeps its default.
    """
    from .._sqlite import file_path
    from ..exceptions import ConfigurationError, safe_summary
    from .sqlite_vec import SqliteVecStore

    tuning = {} if candidates is None else {"candidates": candidates}
    for prefix in ("sqlite-vec://", "sqlite://"):
        if url.startswith(prefix):
            path = file_path(url[len(prefix) :], "vector store URL")
            return SqliteVecStore(str(path), **tuning)
    if "://" not in url:
        return SqliteVecStore(str(file_path(url, "vector store URL")), **tuning)
    if url.startswith(("chroma://", "chroma+http://", "chroma+https://")):
        from .chroma import ChromaStore

        return ChromaStore(url)
    if url.startswith(("qdrant://", "qdrant+http://", "qdrant+https://")):
        from .qdrant import QdrantStore

        return QdrantStore(url)
    if url.startswith(("pgvector+postgresql://", "pgvector+postgres://")):
        from .pgvector import PgvectorStore

        return PgvectorStore(url)
    raise ConfigurationError(
        f"unsupported vector store URL {safe_summary(url)!r}: use sqlite-vec:///path.db, "
        "chroma:///path, chroma+http://host:8000, qdrant:///path, qdrant+http://host:6333 "
        "or pgvector+postgresql://user@host/db"
    )
