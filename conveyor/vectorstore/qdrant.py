"""Qdrant: local mode (``qdrant:///path``) or a server (``qdrant+http://host:6333``).

``qdrant:///path`` runs Qdrant's local mode in this process on a folder.
Local mode takes a file lock on the folder, so **one process at a time**: a
``conveyor search`` while a worker holds the folder is refused (the error says
so). Local mode searches exactly (brute force), keeps every collection in
memory and commits each point to SQLite on its own (~10 ms apiece where fsync
is honoured, so ~100 chunks/s): it is for trying things and up to some tens of
thousands of chunks; past that, or for several processes, run a Qdrant
server. ``qdrant+http://host:6333`` and ``qdrant+https://host[:port]`` talk to
one; the API key comes from ``?api_key=…`` or the ``QDRANT_API_KEY``
environment variable.

How conveyor's contract maps onto Qdrant:

- Point ids must be integers or UUIDs, so a point's id is a uuid5 of the
  chunk id (stable: a replay overwrites) and the chunk id is kept in the
  payload beside ``document_id``, ``source``, ``chunk_index``, ``page``,
  ``text`` and the ``metadata`` dict (payloads are JSON, so nested values
  round-trip as they are). For filters it also holds ``source_dirs`` (the
  folders above the source) and ``match`` (scalar metadata as text); chunks
  written before these existed are found by filters once re-indexed.
- Qdrant collections have no free-form metadata that every server version
  keeps, so the model and dimension of each collection live in a reserved
  collection, ``_conveyor_collections``: one point per collection (id =
  uuid5 of its name, a 1-dimensional placeholder vector, the name, model and
  dimension as payload). conveyor names cannot start with ``_``, so it never
  meets a user's collection. Collections use cosine distance, so scores are
  cosine similarity.
- ``replace_document`` is one ``batch_update_points`` request per 256
  points: the new points are upserted, then the document's points that are
  not among them are deleted. Qdrant applies the operations in order but not
  as a transaction; a crash in between is repaired by the compactor's replay.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import numpy as np

from ..exceptions import ConfigurationError, ConveyorError, ModelMismatch, safe_summary
from ..filters import Filter, ancestors, folder_forms, match_fields
from . import ChunkRecord, CollectionInfo, Hit, Where
from ._common import batched, check_model, filters, missing_extra, query_vector, require_vector

if TYPE_CHECKING:
    from qdrant_client import QdrantClient, models

SCHEMES = ("qdrant://", "qdrant+http://", "qdrant+https://")
REGISTRY = "_conveyor_collections"
BATCH = 256  # points per request
PAGE = 1000  # points per scroll page
_NAMESPACE = uuid.UUID("5b0e7a52-3c1d-4d7e-9a8e-6f3c2b1a0d94")  # conveyor's Qdrant ids


def point_id(chunk_id: str) -> str:
    """The Qdrant point id of a chunk (or of a collection in the registry)."""
    return str(uuid.uuid5(_NAMESPACE, chunk_id))


def server_args(url: str) -> dict[str, Any]:
    """``QdrantClient`` arguments for a ``qdrant+http(s)://`` URL (no connection made)."""
    parts = urlsplit(url)
    if parts.scheme not in ("qdrant+http", "qdrant+https") or not parts.hostname:
        raise ConfigurationError(
            f"bad Qdrant server URL {safe_summary(url)!r}; use qdrant+http://host:6333"
        )
    params = dict(parse_qsl(parts.query))
    unknown = set(params) - {"api_key"}
    if unknown:
        raise ConfigurationError(
            f"unknown parameter(s) {sorted(unknown)} in {safe_summary(url)!r}; "
            "Qdrant URLs take ?api_key=… (or set QDRANT_API_KEY)"
        )
    https = parts.scheme == "qdrant+https"
    try:
        port = parts.port or (443 if https else 6333)
    except ValueError as exc:
        raise ConfigurationError(f"bad port in {safe_summary(url)!r}") from exc
    host = parts.hostname
    netloc = f"[{host}]" if ":" in host else host
    base = urlunsplit(("https" if https else "http", f"{netloc}:{port}", parts.path, "", ""))
    return {
        "url": base.rstrip("/"),
        "port": port,
        "https": https,
        "api_key": params.get("api_key") or os.environ.get("QDRANT_API_KEY") or None,
    }


def _check_lock(path: Path, url: str) -> None:
    """Refuse a folder another process holds, before qdrant-client opens it (it
    would load every collection first, then fail and leave files open)."""
    lock = path / ".lock"
    if not lock.exists():
        return
    import portalocker

    with open(lock, "r+") as f:
        try:
            portalocker.lock(
                f, portalocker.LockFlags.EXCLUSIVE | portalocker.LockFlags.NON_BLOCKING
            )
        except portalocker.exceptions.LockException:
            raise ConfigurationError(
                f"the Qdrant folder of {safe_summary(url)!r} is in use by another process: "
                "Qdrant's local mode allows one process at a time (stop the other one, "
                "or run a Qdrant server and use qdrant+http://host:6333)"
            ) from None
        portalocker.unlock(f)


class _Serialised:
    """A local-mode client with one lock around every call: local mode is plain Python
    over numpy arrays and SQLite, not made for the compactor writing while server
    threads search (a Qdrant server needs no such lock)."""

    def __init__(self, client: QdrantClient) -> None:
        self._client = client
        self._lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return locked


def _serialised(client: QdrantClient) -> QdrantClient:
    """``client`` behind a :class:`_Serialised` lock, which it stands in for."""
    return cast("QdrantClient", _Serialised(client))


def _chunk_fields(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": payload["chunk_id"],
        "document_id": payload["document_id"],
        "chunk_index": int(payload["chunk_index"]),
        "text": payload.get("text") or "",
        "source": payload["source"],
        "page": payload.get("page"),
        "metadata": payload.get("metadata") or {},
    }


class QdrantStore:
    """conveyor's vector store contract on a Qdrant client (local mode or server)."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            from qdrant_client import QdrantClient, models
        except ImportError as exc:
            raise missing_extra("the qdrant-client package", "qdrant", url) from exc
        self._m = models
        self._client: QdrantClient
        self.local = url.startswith("qdrant://")
        try:
            if self.local:
                path = url[len("qdrant://") :].split("?", 1)[0]
                if not path:
                    raise ConfigurationError(
                        f"no folder in {safe_summary(url)!r}; use qdrant:///path/to/folder"
                    )
                _check_lock(Path(path), url)
                self._client = _serialised(QdrantClient(path=path))
            else:
                self._client = QdrantClient(
                    **server_args(url), timeout=30, check_compatibility=False
                )
            if not self._client.collection_exists(REGISTRY):
                self._client.create_collection(
                    REGISTRY,
                    vectors_config=self._m.VectorParams(size=1, distance=self._m.Distance.DOT),
                )
        except ConfigurationError:
            raise
        except Exception as exc:
            if "already accessed by another instance" in str(exc):  # a race with _check_lock
                raise ConfigurationError(
                    f"the Qdrant folder of {safe_summary(url)!r} is in use by another "
                    "process: Qdrant's local mode allows one process at a time"
                ) from exc
            raise ConfigurationError(
                f"cannot open the Qdrant store {safe_summary(url)!r}: {safe_summary(exc)}"
            ) from exc

    # -- collections ---------------------------------------------------------

    def _registered(self, name: str) -> tuple[int, str] | None:
        found = self._client.retrieve(REGISTRY, ids=[point_id(name)], with_payload=True)
        if not found:
            return None
        payload = found[0].payload or {}
        return int(payload["dim"]), str(payload["model_id"])

    def _register(self, name: str, dim: int, model_id: str) -> None:
        self._client.upsert(
            REGISTRY,
            points=[
                self._m.PointStruct(
                    id=point_id(name),
                    vector=[1.0],
                    payload={"name": name, "dim": dim, "model_id": model_id},
                )
            ],
            wait=True,
        )

    def ensure_collection(self, name: str, *, dim: int, model_id: str) -> None:
        known = self._registered(name)
        if known is None:
            from qdrant_client import models as m

            if not self._client.collection_exists(name):
                self._client.create_collection(
                    name, vectors_config=m.VectorParams(size=dim, distance=m.Distance.COSINE)
                )
                if not self.local:  # local mode has no payload indexes (it warns)
                    for key in ("document_id", "source"):
                        self._client.create_payload_index(
                            name, key, field_schema=m.PayloadSchemaType.KEYWORD
                        )
            elif self._client.count(name, exact=True).count:
                raise ModelMismatch(
                    f"Qdrant collection {name!r} was not made by conveyor (it is not in "
                    f"{REGISTRY}); use another collection name"
                )
            # an empty collection without a record: a crash between the two steps
            self._register(name, dim, model_id)
            known = (dim, model_id)
        check_model(name, known[0], known[1], dim, model_id)

    def drop_collection(self, name: str) -> bool:
        if self._registered(name) is None:
            return False
        if self._client.collection_exists(name):
            self._client.delete_collection(name)
        self._client.delete(
            REGISTRY, points_selector=self._m.PointIdsList(points=[point_id(name)]), wait=True
        )
        return True

    def _require(self, name: str) -> tuple[int, str]:
        known = self._registered(name)
        if known is None:
            raise ConveyorError(f"collection {name!r} does not exist")
        return known

    def collection(self, name: str) -> CollectionInfo | None:
        known = self._registered(name)
        if known is None:
            return None
        return CollectionInfo(name, known[0], known[1], self.count(name))

    def collections(self) -> list[CollectionInfo]:
        found = []
        for point in self._scroll(REGISTRY):
            p = point.payload or {}
            found.append(
                CollectionInfo(p["name"], int(p["dim"]), p["model_id"], self.count(p["name"]))
            )
        return sorted(found, key=lambda i: i.name)

    # -- writes --------------------------------------------------------------

    def _filter(self, found: Filter) -> models.Filter | None:
        """A :class:`~conveyor.filters.Filter` as Qdrant's (payload fields, no over-fetching)."""
        from qdrant_client import models as m

        must: list[m.Condition] = []
        for key, value in (("document_id", found.document_id), ("source", found.source)):
            if value is not None:
                must.append(m.FieldCondition(key=key, match=m.MatchValue(value=value)))
        if found.source_prefix is not None:
            prefixes = list(dict.fromkeys(folder_forms(found.source_prefix)))
            must.append(m.FieldCondition(key="source_dirs", match=m.MatchAny(any=prefixes)))
        if found.pages is not None:
            low, high = found.pages
            must.append(m.FieldCondition(key="page", range=m.Range(gte=low, lte=high)))
        if found.seconds is not None:
            low, high = found.seconds
            must.append(
                m.FieldCondition(key="metadata.end_s", range=m.Range(gte=low if low else 0.0))
            )
            if high is not None:
                must.append(m.FieldCondition(key="metadata.start_s", range=m.Range(lte=high)))
        for key, value in found.metadata:
            must.append(m.FieldCondition(key=f"match.{key}", match=m.MatchValue(value=value)))
        return m.Filter(must=must) if must else None

    def _point(self, rec: ChunkRecord) -> models.PointStruct:
        return self._m.PointStruct(
            id=point_id(rec.id),
            vector=require_vector(rec).tolist(),
            payload={
                "chunk_id": rec.id,
                "document_id": rec.document_id,
                "chunk_index": int(rec.chunk_index),
                "source": rec.source,
                "page": rec.page,
                "text": rec.text,
                "metadata": rec.metadata,
                # what filters match: the folders above the source, metadata as text
                "source_dirs": ancestors(rec.source),
                "match": match_fields(rec.metadata),
            },
        )

    def upsert(self, collection: str, records: Sequence[ChunkRecord]) -> None:
        self._require(collection)
        for part in batched(records, BATCH):
            self._client.upsert(collection, points=[self._point(r) for r in part], wait=True)

    def delete(self, collection: str, *, document_id: str) -> int:
        if self._registered(collection) is None:
            return 0
        n = self.count(collection, document_id=document_id)
        if n:
            self._client.delete(
                collection,
                points_selector=self._m.FilterSelector(
                    filter=self._filter(Filter(document_id=document_id))
                ),
                wait=True,
            )
        return n

    def replace_document(
        self, collection: str, document_id: str, records: Sequence[ChunkRecord]
    ) -> None:
        self._require(collection)
        from qdrant_client import models as m

        prune = m.DeleteOperation(
            delete=m.FilterSelector(
                filter=m.Filter(
                    must=[
                        m.FieldCondition(key="document_id", match=m.MatchValue(value=document_id))
                    ],
                    must_not=[m.HasIdCondition(has_id=[point_id(r.id) for r in records])],
                )
            )
        )
        parts = list(batched(records, BATCH))
        operations: list[list[models.UpdateOperation]] = [
            [m.UpsertOperation(upsert=m.PointsList(points=[self._point(r) for r in part]))]
            for part in parts
        ] or [[]]
        operations[-1].append(prune)
        for ops in operations:
            self._client.batch_update_points(collection, update_operations=ops, wait=True)

    # -- reads ---------------------------------------------------------------

    def query(self, collection: str, vector: np.ndarray, k: int, where: Where = None) -> list[Hit]:
        known = self._registered(collection)
        if known is None or k <= 0:
            return []
        query = query_vector(collection, vector, *known)
        found = self._client.query_points(
            collection,
            query=query.tolist(),
            limit=k,
            query_filter=self._filter(filters(where)),
            with_payload=True,
        )
        return [
            Hit(score=float(p.score), collection=collection, **_chunk_fields(p.payload or {}))
            for p in found.points
        ]

    def count(self, collection: str, *, document_id: str | None = None) -> int:
        if not self._client.collection_exists(collection):
            return 0
        where = self._filter(Filter(document_id=document_id))
        return int(self._client.count(collection, count_filter=where, exact=True).count)

    def _scroll(self, collection: str, payload: bool | list[str] = True) -> Iterator[models.Record]:
        offset = None
        while True:
            points, offset = self._client.scroll(
                collection, limit=PAGE, offset=offset, with_payload=payload, with_vectors=False
            )
            yield from points
            if offset is None:
                return

    def iter_chunks(self, collection: str, *, vectors: bool = True) -> Iterator[ChunkRecord]:
        """Two passes, so a large collection is never held in memory with its
        vectors: the (document, index) keys of every point, sorted; then the
        points themselves in that order, a page at a time."""
        if self._registered(collection) is None:
            return
        keys = sorted(
            ((p.payload or {})["document_id"], int((p.payload or {})["chunk_index"]), str(p.id))
            for p in self._scroll(collection, ["document_id", "chunk_index"])
        )
        for part in batched(keys, PAGE):
            got = self._client.retrieve(
                collection, ids=[key[2] for key in part], with_payload=True, with_vectors=vectors
            )
            by_id = {str(p.id): p for p in got}
            for _, _, pid in part:
                p = by_id.get(pid)
                if p is None:  # deleted between the two passes
                    continue
                yield ChunkRecord(
                    **_chunk_fields(p.payload or {}),
                    vector=np.asarray(p.vector, dtype=np.float32) if vectors else None,
                )

    def close(self) -> None:
        client = self.__dict__.pop("_client", None)
        if client is not None:
            client.close()
