"""Result manifests: one JSON file per document and run, the one writer of them.

``ingestion_output/{run}/results/{document_id}.json`` holds
``{"FileURI": …, "EmbeddingsGenerated": …}`` — those two keys exactly so
named, as downstream tools read them — and more keys beside. The worker
writes one for a skipped or failed document, the compactor for a merged
one, and ``conveyor run-job`` a copy with the execution's name at
``ingestion_output/{execution}/sf-results/{document_id}.json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .blobstore import BlobStore
from .deltas import Header
from .documents import State
from .exceptions import SourceNotFound

MANIFEST_KEY = "ingestion_output/{run}/results/{document_id}.json"
RESULT_KEY = "ingestion_output/{execution}/sf-results/{document_id}.json"


def manifest(
    *,
    source: str,
    document_id: str,
    collection: str,
    run: str,
    status: str,
    embeddings: int,
    **extra: Any,
) -> dict[str, Any]:
    """The result manifest of one document: ``FileURI`` and ``EmbeddingsGenerated``
    exactly so named (what downstream tools read), more keys beside them."""
    return {
        "FileURI": source,
        "EmbeddingsGenerated": embeddings,
        "document_id": document_id,
        "collection": collection,
        "run": run,
        "status": status,
        **extra,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def encode(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str).encode("utf-8")


class Manifests:
    """Reads and writes result manifests in a blob store."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs

    def write(self, data: Mapping[str, Any]) -> str:
        """Store ``data`` (a :func:`manifest`) under its run; returns the key."""
        key = MANIFEST_KEY.format(run=data["run"], document_id=data["document_id"])
        self.blobs.put(key, encode(data))
        return key

    def read(self, run: str, document_id: str) -> dict[str, Any] | None:
        """The manifest of ``document_id`` in ``run``, or None."""
        try:
            data = json.loads(self.blobs.get(MANIFEST_KEY.format(run=run, document_id=document_id)))
        except (SourceNotFound, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def skipped(
        self,
        *,
        source: str,
        document_id: str,
        collection: str,
        run: str,
        content_hash: str,
        model: str,
    ) -> None:
        self.write(
            manifest(
                source=source,
                document_id=document_id,
                collection=collection,
                run=run,
                status=State.SKIPPED.value,
                embeddings=0,
                content_hash=content_hash,
                model=model,
            )
        )

    def failed(
        self, *, source: str, document_id: str, collection: str, run: str, error: str, kind: str
    ) -> None:
        self.write(
            manifest(
                source=source,
                document_id=document_id,
                collection=collection,
                run=run,
                status=State.FAILED.value,
                embeddings=0,
                error=error,
                error_kind=kind,
            )
        )

    def done(self, document_id: str, header: Header, timings: Mapping[str, float]) -> str:
        """The manifest of a merged document (every part of its delivery); returns the key."""
        delivery = header.delivery
        return self.write(
            manifest(
                source=header.source,
                document_id=document_id,
                collection=next(iter(delivery.collections)),
                run=header.run,
                status=State.DONE.value,
                embeddings=delivery.embeddings,
                chunks=delivery.chunks,
                collections=dict(delivery.collections),
                content_hash=header.content_hash,
                model=header.model,
                backend=header.backend,
                dim=header.dim,
                kind=header.kind,
                mime=header.mime,
                size_bytes=header.size,
                timings={k: round(v, 4) for k, v in timings.items()},
                metadata=dict(header.metadata),
            )
        )

    def write_result(self, execution: str, data: Mapping[str, Any]) -> str:
        """``run-job``'s copy for a Step Functions execution; returns the key."""
        key = RESULT_KEY.format(execution=execution, document_id=data["document_id"])
        self.blobs.put(key, encode(data))
        return key
