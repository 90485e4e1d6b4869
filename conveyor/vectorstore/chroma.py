"""Chroma: embedded (``chroma:///path``) or a server (``chroma+http://host:8000``).

``chroma:///path`` opens a ``PersistentClient`` on a folder (one process at a
time is safest: Chroma's embedded store is not meant to be shared);
``chroma+http://host:port`` and ``chroma+https://host[:port]`` talk to a
``chroma run`` server, which any number of hosts can share. Query parameters
``tenant`` and ``database`` pick Chroma's tenant and database (they must
exist); token auth is Chroma's own: ``CHROMA_CLIENT_AUTH_PROVIDER`` and
``CHROMA_CLIENT_AUTH_CREDENTIALS`` in the environment. Telemetry is off.

How conveyor's contract maps onto Chroma:

- A collection is created in cosine space and records the model and
  dimension in its metadata (``conveyor_model``, ``conveyor_dim``, plus
  ``conveyor_name``); Chroma collections without them are not conveyor's and
  are neither listed nor written to. Chroma names need 3–512 characters that
  start and end alphanumeric, so a conveyor name Chroma would refuse ("c",
  "notes-") is stored under ``cv-<hash>`` and found by the same rule.
- Chroma metadata values must be scalars (or lists of them), so each chunk
  carries the fields that are filtered on (``document_id``, ``source``,
  ``chunk_index``, ``page``, a recording's ``start_s``/``end_s``) as scalars,
  the folders above its source as ``source_dirs`` (for a source-prefix
  filter), its scalar metadata as text under ``match:<key>`` (for ``where``
  filters), and conveyor's whole metadata dict as one JSON string. Chunks
  written before conveyor stored these are found by filters once re-indexed.
- Chroma has no transactions: ``replace_document`` upserts the new chunks
  first (their ids are stable, so they overwrite), then deletes the
  document's chunks that are not among them. A reader never sees the
  document missing; a crash in between is repaired by the compactor's replay.
- Scores are ``1 - cosine distance``. Chroma's index is HNSW (approximate);
  small collections are searched exactly.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypedDict
from urllib.parse import SplitResult, parse_qsl, urlsplit

import numpy as np

from ..exceptions import ConfigurationError, ConveyorError, ModelMismatch, safe_summary
from ..filters import Filter, ancestors, folder_forms, match_fields
from . import ChunkRecord, CollectionInfo, Hit, Where
from ._common import batched, check_model, filters, missing_extra, query_vector, require_vector

if TYPE_CHECKING:
    import httpx
    from chromadb.api.models.Collection import Collection
    from chromadb.api.types import Embedding, Include

SCHEMES = ("chroma://", "chroma+http://", "chroma+https://")
MATCH = "match:"  # metadata keys of the text values ``where`` filters compare
PAGE = 1000  # rows per get() when paging through a collection
_CHROMA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]")
_IPV4 = re.compile(r"\d{1,3}(\.\d{1,3}){3}")


def chroma_name(name: str) -> str:
    """The Chroma collection name for conveyor collection ``name``."""
    if _CHROMA_NAME.fullmatch(name) and ".." not in name and not _IPV4.fullmatch(name):
        return name
    return "cv-" + hashlib.sha256(name.encode()).hexdigest()[:24]


class _Scope(TypedDict, total=False):
    """Chroma's tenant and database, where the URL names them."""

    tenant: str
    database: str


def _scalar_metadata(rec: ChunkRecord) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "document_id": rec.document_id,
        "source": rec.source,
        "chunk_index": int(rec.chunk_index),
        "metadata_json": json.dumps(rec.metadata, ensure_ascii=False),
    }
    if rec.page is not None:
        meta["page"] = int(rec.page)
    # what filters match: the folders above the source, a recording's span, metadata as text
    meta["source_dirs"] = ancestors(rec.source)
    for key in ("start_s", "end_s"):
        if isinstance(rec.metadata.get(key), int | float):
            meta[key] = float(rec.metadata[key])
    meta.update({MATCH + key: text for key, text in match_fields(rec.metadata).items()})
    return meta


def _chunk_fields(chunk_id: str, text: str | None, meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": chunk_id,
        "document_id": meta["document_id"],
        "chunk_index": int(meta["chunk_index"]),
        "text": text or "",
        "source": meta["source"],
        "page": meta.get("page"),
        "metadata": json.loads(meta.get("metadata_json") or "{}"),
    }


def _where(found: Filter) -> dict[str, Any] | None:
    """A :class:`~conveyor.filters.Filter` as a Chroma ``where``."""
    terms: list[dict[str, Any]] = []
    if found.document_id is not None:
        terms.append({"document_id": found.document_id})
    if found.source is not None:
        terms.append({"source": found.source})
    if found.source_prefix is not None:
        exact, folder = folder_forms(found.source_prefix)
        terms.append({"$or": [{"source_dirs": {"$contains": p}} for p in (exact, folder)]})
    for key, span in (("page", found.pages), ("seconds", found.seconds)):
        if span is None:
            continue
        low, high = span
        if key == "page":
            terms.append({"page": {"$gte": int(low) if low is not None else -(2**31)}})
            if high is not None:
                terms.append({"page": {"$lte": int(high)}})
        else:
            terms.append({"end_s": {"$gte": float(low) if low is not None else 0.0}})
            if high is not None:
                terms.append({"start_s": {"$lte": float(high)}})
    terms.extend({MATCH + key: value} for key, value in found.metadata)
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else {"$and": terms}


class ChromaStore:
    """conveyor's vector store contract on a Chroma client (embedded or HTTP)."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            import chromadb
        except ImportError as exc:
            raise missing_extra("the chromadb package", "chroma", url) from exc
        from chromadb.config import Settings as ChromaSettings

        parts = urlsplit(url)
        params = dict(parse_qsl(parts.query))
        unknown = set(params) - {"tenant", "database"}
        if unknown:
            raise ConfigurationError(
                f"unknown parameter(s) {sorted(unknown)} in {safe_summary(url)!r}; "
                "Chroma URLs take ?tenant=…&database=…"
            )
        scope: _Scope = {}
        if params.get("tenant"):
            scope["tenant"] = params["tenant"]
        if params.get("database"):
            scope["database"] = params["database"]
        settings = ChromaSettings(anonymized_telemetry=False)
        self._sessions: list[httpx.Client] = []
        try:
            if url.startswith("chroma://"):
                path = url[len("chroma://") :].split("?", 1)[0]
                if not path:
                    raise ConfigurationError(
                        f"no folder in {safe_summary(url)!r}; use chroma:///path/to/folder"
                    )
                self._client = chromadb.PersistentClient(path=path, settings=settings, **scope)
            else:
                host, port, ssl = self._server(parts)
                self._client = chromadb.HttpClient(
                    host=host, port=port, ssl=ssl, settings=settings, **scope
                )
                # chromadb never closes the HTTP sessions of its client (and of the admin
                # client inside it); close() does
                self._sessions = [
                    session
                    for owner in (self._client, getattr(self._client, "_admin_client", None))
                    if (session := getattr(getattr(owner, "_server", None), "_session", None))
                ]
            self._batch = int(self._client.get_max_batch_size())
        except ConfigurationError:
            raise
        except Exception as exc:
            raise ConfigurationError(
                f"cannot open the Chroma store {safe_summary(url)!r}: {safe_summary(exc)}"
            ) from exc

    def _server(self, parts: SplitResult) -> tuple[str, int, bool]:
        """Host, port and TLS of a server URL, after checking its heartbeat, so a
        server that is down fails here with the URL named, not on first use."""
        import httpx

        ssl = parts.scheme == "chroma+https"
        try:
            port = parts.port or (443 if ssl else 8000)
        except ValueError as exc:
            raise ConfigurationError(f"bad port in {safe_summary(self.url)!r}") from exc
        host = parts.hostname
        if not host or parts.path not in ("", "/"):
            raise ConfigurationError(
                f"bad Chroma server URL {safe_summary(self.url)!r}; use "
                "chroma+http://host:port (database and tenant as ?database=…&tenant=…)"
            )
        netloc = f"[{host}]" if ":" in host else host
        base = f"{'https' if ssl else 'http'}://{netloc}:{port}"
        try:
            with httpx.Client(timeout=10) as http:
                http.get(f"{base}/api/v2/heartbeat").raise_for_status()
        except httpx.HTTPError as exc:
            raise ConfigurationError(
                f"cannot reach the Chroma server at {safe_summary(self.url)!r} "
                f"({safe_summary(exc)}); is `chroma run` up?"
            ) from exc
        return host, port, ssl

    # -- collections ---------------------------------------------------------

    def _get(self, name: str) -> Collection | None:
        """The Chroma collection of conveyor collection ``name``, or None."""
        from chromadb.errors import NotFoundError

        try:
            col = self._client.get_collection(chroma_name(name))
        except NotFoundError:
            return None
        except ValueError as exc:  # older clients say "does not exist" this way
            if "does not exist" in str(exc):
                return None
            raise
        self._own(name, col)
        return col

    @staticmethod
    def _own(name: str, col: Collection) -> tuple[int, str]:
        meta = col.metadata or {}
        if "conveyor_model" not in meta or "conveyor_dim" not in meta:
            raise ModelMismatch(
                f"Chroma collection {col.name!r} was not made by conveyor (it has no "
                f"model or dimension recorded); use another collection name than {name!r}"
            )
        if meta.get("conveyor_name", name) != name:  # "cv-<hash>" named literally
            raise ModelMismatch(
                f"Chroma collection {col.name!r} holds conveyor collection "
                f"{meta['conveyor_name']!r}; use another collection name than {name!r}"
            )
        return int(meta["conveyor_dim"]), str(meta["conveyor_model"])

    def _require(self, name: str) -> Collection:
        col = self._get(name)
        if col is None:
            raise ConveyorError(f"collection {name!r} does not exist")
        return col

    def ensure_collection(self, name: str, *, dim: int, model_id: str) -> None:
        col = self._client.get_or_create_collection(
            chroma_name(name),
            metadata={"conveyor_name": name, "conveyor_model": model_id, "conveyor_dim": dim},
            configuration={"hnsw": {"space": "cosine"}},
        )
        have_dim, have_model = self._own(name, col)
        check_model(name, have_dim, have_model, dim, model_id)

    def drop_collection(self, name: str) -> bool:
        if self._get(name) is None:
            return False
        self._client.delete_collection(chroma_name(name))
        return True

    def _info(self, col: Collection, name: str) -> CollectionInfo:
        dim, model_id = self._own(name, col)
        return CollectionInfo(name, dim, model_id, int(col.count()))

    def collection(self, name: str) -> CollectionInfo | None:
        col = self._get(name)
        return None if col is None else self._info(col, name)

    def collections(self) -> list[CollectionInfo]:
        found = []
        for col in self._client.list_collections():
            name = (col.metadata or {}).get("conveyor_name")
            if name and chroma_name(str(name)) == col.name:
                found.append(self._info(col, str(name)))
        return sorted(found, key=lambda i: i.name)

    # -- writes --------------------------------------------------------------

    def _upsert(self, col: Collection, records: Sequence[ChunkRecord]) -> None:
        for part in batched(records, self._batch):
            col.upsert(
                ids=[r.id for r in part],
                embeddings=np.stack([require_vector(r) for r in part]),
                documents=[r.text for r in part],
                metadatas=[_scalar_metadata(r) for r in part],
            )

    def _ids(self, col: Collection, where: dict[str, Any] | None) -> list[str]:
        ids: list[str] = []
        while True:
            got = col.get(where=where, include=[], limit=PAGE, offset=len(ids))
            ids.extend(got["ids"])
            if len(got["ids"]) < PAGE:
                return ids

    def _delete_ids(self, col: Collection, ids: Sequence[str]) -> None:
        for part in batched(ids, self._batch):
            col.delete(ids=list(part))

    def upsert(self, collection: str, records: Sequence[ChunkRecord]) -> None:
        self._upsert(self._require(collection), records)

    def delete(self, collection: str, *, document_id: str) -> int:
        col = self._get(collection)
        if col is None:
            return 0
        ids = self._ids(col, {"document_id": document_id})
        self._delete_ids(col, ids)
        return len(ids)

    def replace_document(
        self, collection: str, document_id: str, records: Sequence[ChunkRecord]
    ) -> None:
        col = self._require(collection)
        old = self._ids(col, {"document_id": document_id})
        self._upsert(col, records)
        keep = {r.id for r in records}
        self._delete_ids(col, [i for i in old if i not in keep])

    # -- reads ---------------------------------------------------------------

    def query(self, collection: str, vector: np.ndarray, k: int, where: Where = None) -> list[Hit]:
        col = self._get(collection)
        if col is None or k <= 0:
            return []
        dim, model_id = self._own(collection, col)
        query = query_vector(collection, vector, dim, model_id)
        embeddings: list[Embedding] = [query]
        found = col.query(
            query_embeddings=embeddings,
            n_results=k,
            where=_where(filters(where)),
            include=["documents", "metadatas", "distances"],
        )
        hits = [
            Hit(
                score=1.0 - float(distance),
                collection=collection,
                **_chunk_fields(chunk_id, text, dict(meta or {})),
            )
            for chunk_id, text, meta, distance in zip(
                found["ids"][0],
                (found["documents"] or [[]])[0],
                (found["metadatas"] or [[]])[0],
                (found["distances"] or [[]])[0],
                strict=True,
            )
        ]
        hits.sort(key=lambda h: -h.score)
        return hits

    def count(self, collection: str, *, document_id: str | None = None) -> int:
        col = self._get(collection)
        if col is None:
            return 0
        if document_id is None:
            return int(col.count())
        return len(self._ids(col, {"document_id": document_id}))

    def iter_chunks(self, collection: str, *, vectors: bool = True) -> Iterator[ChunkRecord]:
        """Two passes, so a large collection is never held in memory with its
        vectors: the (document, index) keys of every chunk, sorted; then the
        chunks themselves in that order, a page at a time."""
        col = self._get(collection)
        if col is None:
            return
        keys: list[tuple[str, int, str]] = []
        while True:
            got = col.get(include=["metadatas"], limit=PAGE, offset=len(keys))
            for chunk_id, meta in zip(got["ids"], got["metadatas"] or [], strict=True):
                ours: dict[str, Any] = dict(meta)  # the scalars _scalar_metadata wrote
                keys.append((str(ours["document_id"]), int(ours["chunk_index"]), chunk_id))
            if len(got["ids"]) < PAGE:
                break
        keys.sort()
        include: Include = ["documents", "metadatas"]
        if vectors:
            include.append("embeddings")
        for part in batched(keys, PAGE):
            got = col.get(ids=[key[2] for key in part], include=include)
            embeddings = got.get("embeddings")
            rows = {
                chunk_id: (
                    text,
                    meta,
                    embeddings[i] if vectors and embeddings is not None else None,
                )
                for i, (chunk_id, text, meta) in enumerate(
                    zip(got["ids"], got["documents"] or [], got["metadatas"] or [], strict=True)
                )
            }
            for _, _, chunk_id in part:
                if chunk_id not in rows:  # deleted between the two passes
                    continue
                text, meta, embedding = rows[chunk_id]
                yield ChunkRecord(
                    **_chunk_fields(chunk_id, text, dict(meta)),
                    vector=None if embedding is None else np.asarray(embedding, np.float32),
                )

    def close(self) -> None:
        client = self.__dict__.pop("_client", None)
        if client is not None:
            client.close()
        while self._sessions:
            self._sessions.pop().close()
