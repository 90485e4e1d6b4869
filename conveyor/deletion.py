"""Deleting documents: tombstone deltas the compactor, the single writer, merges.

A deletion is one tombstone per collection the document fills (its own, and
``<collection>_lines``… for units); merging one removes the document's rows
there, and merging the last removes the document from the catalog, in the same
transaction. ``conveyor delete``, ``DELETE /documents/{id}`` and ``ingest
--sync`` all come here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import deltas
from .catalog import Catalog
from .documents import Documents
from .exceptions import ConveyorError
from .ids import document_id


def delete(catalog: Catalog, document_ids: Sequence[str]) -> list[str]:
    """Write the tombstones of ``document_ids``; unknown ids are a :class:`ConveyorError`
    naming them, and then nothing is written. Returns the ids."""
    docs = {doc_id: catalog.get(doc_id) for doc_id in dict.fromkeys(document_ids)}
    unknown = [doc_id for doc_id, doc in docs.items() if doc is None]
    if unknown:
        raise ConveyorError("no such document: " + ", ".join(unknown))
    documents = Documents(catalog)
    for doc_id, doc in docs.items():
        assert doc is not None
        collection = doc["collection"]
        units = (doc.get("metadata") or {}).get("unit_collections") or []
        names = [collection, *(f"{collection}_{unit}" for unit in units)]
        parts = deltas.tombstone(doc["source"], doc["run"] or "adhoc", catalog.now(), names)
        for name, header in parts:
            deltas.write(catalog, name, doc_id, header, [], np.zeros((0, 0), np.float32))
        documents.deleting(doc_id)
    return list(docs)


def ids_of_sources(catalog: Catalog, sources: Sequence[str], collection: str) -> list[str]:
    """The document ids of ``sources`` (paths as ingested, or URIs) in ``collection``;
    a source never ingested there is a :class:`ConveyorError` naming it."""
    ids = {
        s: document_id(collection, s if "://" in s else Path(s).absolute().as_uri())
        for s in sources
    }
    unknown = [s for s, doc_id in ids.items() if catalog.get(doc_id) is None]
    if unknown:
        raise ConveyorError(f"not ingested in collection {collection!r}: " + ", ".join(unknown))
    return list(ids.values())


def gone(catalog: Catalog, paths: Sequence[str], files: set[str], collection: str) -> list[str]:
    """Documents of ``collection`` under the folders or ``s3://`` prefixes ``paths``
    whose source is not among ``files`` any more (deleted, renamed)."""
    prefixes = []
    for path in paths:
        if path.startswith("s3://"):
            prefixes.append(path.rstrip("/") + "/")
        elif Path(path).is_dir():
            prefixes.append(Path(path).resolve().as_uri() + "/")
    if not prefixes:
        return []
    return [
        d["id"]
        for d in catalog.documents(collection=collection)
        if d["source"] not in files and d["source"].startswith(tuple(prefixes))
    ]
