"""The catalog in Amazon DynamoDB: the serverless shape, with no database server.

``dynamodb://PREFIX?region=eu-west-1`` (``?endpoint_url=`` for a local one):
tables ``PREFIX-documents``, ``PREFIX-deltas``… (see
:mod:`conveyor.catalog._dynamodb`), pay-per-request, created on first use.
What differs from the SQL catalogs:

* Times are the host's clock (DynamoDB has none to lend): hosts on AWS keep
  theirs in step (NTP), which lock leases and heartbeats rely on.
* A delta whose chunks and vectors do not fit an item (400 KB) is written to the
  blob store (``deltas/<id>``) with only its key in the item, and deleted once
  applied: the catalog is opened with the blob store for that.
* Completing a part adds it to its delivery's set of merged parts in one
  ``UpdateItem``: DynamoDB applies updates of one item one at a time, so of two
  compactors finishing a document's last two parts exactly one sees the set
  complete. The delta is marked applied last, so a crash in between replays it.
* The writer lock is a conditional ``PutItem`` (free, ours, or lease run out).
* Queries by state, collection, run and pending delta go through indexes;
  listing every document or every worker (the status page) scans.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

from ..exceptions import ConfigurationError, safe_summary
from ._dynamodb import encode, ensure_tables, item, values_of
from ._dynamodb_events import DynamoEvents
from .measurements import DynamoMeasurements
from .parts import NewDelta, Part
from .sql import DELTA_STATES, STATES

ITEM_PAYLOAD = 300_000  # bytes of chunks and vectors kept in the item; more go to blobs
_DOC_COLUMNS = (
    "id",
    "collection",
    "source",
    "run",
    "state",
    "stage",
    "content_hash",
    "fingerprint",
    "kind",
    "mime",
    "size",
    "chunks",
    "model",
    "error",
    "error_kind",
    "attempts",
    "metadata",
    "timings",
    "created_at",
    "updated_at",
)
_JSON = ("metadata", "timings")


class DynamoCatalog(DynamoEvents, DynamoMeasurements):
    """See :class:`conveyor.catalog.Catalog` and this module's docstring."""

    def __init__(
        self, url: str, *, blobs: Any = None, clock: Callable[[], float] = time.time
    ) -> None:
        rest = url.split("://", 1)[1]
        prefix, _, query = rest.partition("?")
        params = dict(parse_qsl(query))
        if not prefix:
            raise ConfigurationError("catalog URL dynamodb:// names no table prefix")
        self.url, self.prefix, self.blobs, self.clock = url, prefix, blobs, clock
        try:
            import boto3
        except ImportError:
            raise ConfigurationError(
                "the DynamoDB catalog needs boto3: pip install 'conveyor[aws]'"
            ) from None
        self._client = boto3.session.Session().client(
            "dynamodb", region_name=params.get("region"), endpoint_url=params.get("endpoint_url")
        )
        try:
            self.tables = ensure_tables(self._client, prefix)
        except ConfigurationError:
            raise
        except Exception as exc:
            raise ConfigurationError(
                f"catalog {safe_summary(url)} cannot be opened: {safe_summary(exc)}"
            ) from None

    def __repr__(self) -> str:
        return f"DynamoCatalog({self.prefix!r})"

    # -- helpers ---------------------------------------------------------

    def enqueued(self, docs: Sequence[tuple[str, str, str]], run: str) -> None:
        for document_id, collection, source in sorted(docs):
            now = self.now()
            fields = {
                "collection": collection,
                "source": source,
                "run": run,
                "state": "queued",
                "stage": None,
                "error": None,
                "error_kind": None,
                "attempts": 0,
                "updated_at": now,
                "created_at": ("if_not_exists", now),
                "chunks": ("if_not_exists", 0),
                "metadata": ("if_not_exists", "{}"),
                "timings": ("if_not_exists", "{}"),
            }
            self._event_move(document_id, fields, "submitted", create=True)

    def update(self, document_id: str, **fields: Any) -> None:
        fields.pop("updated_at", None)
        for key in _JSON:
            if key in fields:
                fields[key] = json.dumps(fields[key], ensure_ascii=False, default=str)
        fields["updated_at"] = self.now()
        try:
            self._set(
                "documents",
                {"id": {"S": document_id}},
                fields,
                ConditionExpression="attribute_exists(#id)",
                names={"#id": "id"},
            )
        except Exception as exc:
            if not self._failed_condition(exc):  # no such document: nothing to update
                raise

    def _document(self, values: dict[str, Any]) -> dict[str, Any]:
        doc: dict[str, Any] = {column: values.get(column) for column in _DOC_COLUMNS}
        for key in _JSON:
            text = values.get(key)
            doc[key] = json.loads(text) if text else {}
        return doc

    def get(self, document_id: str) -> dict[str, Any] | None:
        found = self._client.get_item(
            TableName=self.tables["documents"], Key={"id": {"S": document_id}}, ConsistentRead=True
        ).get("Item")
        return self._document(values_of(found)) if found else None

    def documents(
        self,
        *,
        state: str | None = None,
        collection: str | None = None,
        run: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        filters = {"state": state, "collection": collection, "run": run}
        indexed = next(((k, v) for k, v in filters.items() if v is not None), None)
        if indexed is None:  # every document: the status page, not the hot path
            found = sorted(self._scan("documents"), key=lambda d: d["source"])
            found.sort(key=lambda d: -d["updated_at"])
        else:
            found = list(
                self._query("documents", indexed[0], indexed[0], indexed[1], ScanIndexForward=False)
            )
            found.sort(key=lambda d: (-d["updated_at"], d["source"]))
        found = [d for d in found if all(v is None or d.get(k) == v for k, v in filters.items())]
        return [self._document(d) for d in found[:limit]]

    def counts(self, *, run: str | None = None) -> dict[str, int]:
        if run is None:
            return {s: self._count("documents", "state", "state", s) for s in STATES}
        found = [d["state"] for d in self._query("documents", "run", "run", run)]
        return {s: found.count(s) for s in STATES}

    def chunk_total(self, *, run: str | None = None) -> int:
        done = self._query("documents", "state", "state", "done")
        return sum(int(d.get("chunks") or 0) for d in done if run is None or d.get("run") == run)

    # -- runs ------------------------------------------------------------

    def start_run(self, run: str, collection: str, enqueued: int) -> None:
        self._client.update_item(
            TableName=self.tables["runs"],
            Key={"id": {"S": run}},
            UpdateExpression="SET #c = if_not_exists(#c, :c), #s = if_not_exists(#s, :t) ADD #e :n",
            ExpressionAttributeNames={"#c": "collection", "#s": "started_at", "#e": "enqueued"},
            ExpressionAttributeValues={
                ":c": encode(collection),
                ":t": encode(self.now()),
                ":n": encode(enqueued),
            },
        )

    # -- deltas ----------------------------------------------------------

    def add_delta(
        self,
        collection: str,
        document_id: str,
        header: dict[str, Any],
        chunks: list[dict[str, Any]],
        vectors: bytes,
        *,
        read_at: float,
        delivery: str,
        part: int,
        document: Mapping[str, Any] | None = None,
    ) -> int:
        """A pending delta; with ``document``, the document's columns first (no
        transaction spans both here: written before the delta, they cannot land after
        the compactor has merged it; should the delta fail, the job's failure is
        written over them)."""
        delta_id = self._next_id("deltas")
        packed = zlib.compress(json.dumps(chunks, ensure_ascii=False, default=str).encode())
        values: dict[str, Any] = {
            "id": delta_id,
            "collection": collection,
            "document_id": document_id,
            "state": "pending",
            "pending_in": collection,
            "pending_all": "pending",
            "header": json.dumps(header, ensure_ascii=False, default=str),
            "created_at": self.now(),
            "read_at": read_at,
            "delivery": delivery,
            "part": part,
        }
        if len(packed) + len(vectors) > ITEM_PAYLOAD:
            if self.blobs is None:
                raise ConfigurationError(
                    "a delta is larger than a DynamoDB item and the catalog has no blob store "
                    "for it: set CONVEYOR_BLOBS_URL (s3://bucket/prefix)"
                )
            key = f"deltas/{collection}/{delta_id}"
            self.blobs.put(key, len(packed).to_bytes(8, "big") + packed + bytes(vectors))
            values["payload_key"] = key
        else:
            values.update(chunks_z=packed, vectors=bytes(vectors))
        if document:
            self.update(document_id, **document)
        self._client.put_item(TableName=self.tables["deltas"], Item=item(values))
        return delta_id

    def _payload(self, delta: dict[str, Any]) -> tuple[list[dict[str, Any]], bytes]:
        if "payload_key" in delta:
            data = self.blobs.get(delta["payload_key"])
            size = int.from_bytes(data[:8], "big")
            packed, vectors = data[8 : 8 + size], data[8 + size :]
        else:
            packed, vectors = delta.get("chunks_z", b""), delta.get("vectors", b"")
        return (json.loads(zlib.decompress(packed)) if packed else []), bytes(vectors)

    def pending_deltas(
        self, collection: str | None = None, limit: int = 64
    ) -> list[dict[str, Any]]:
        if collection is None:
            found = self._query("deltas", "pending_all", "pending_all", "pending", Limit=limit)
        else:
            found = self._query("deltas", "pending", "pending_in", collection, Limit=limit)
        out = []
        for delta in list(found)[:limit]:
            chunks, vectors = self._payload(delta)
            out.append(
                {
                    "id": delta["id"],
                    "collection": delta["collection"],
                    "document_id": delta["document_id"],
                    "state": delta["state"],
                    "header": json.loads(delta["header"]),
                    "chunks": chunks,
                    "vectors": vectors,
                    "created_at": delta["created_at"],
                    "applied_at": delta.get("applied_at"),
                    "error": delta.get("error"),
                    "read_at": delta.get("read_at"),
                    "delivery": delta.get("delivery"),
                    "part": delta.get("part"),
                }
            )
        return out

    def _mark(self, delta_id: int, state: str, error: str | None) -> None:
        fields: dict[str, Any] = {
            "state": state,
            "applied_at": self.now(),
            "error": error,
            "pending_in": None,
            "pending_all": None,
        }
        key = None
        if state == "applied":  # the payload is dropped once applied
            found = self._client.get_item(
                TableName=self.tables["deltas"],
                Key={"id": encode(delta_id)},
                ProjectionExpression="#p",
                ExpressionAttributeNames={"#p": "payload_key"},
            ).get("Item", {})
            key = found.get("payload_key", {}).get("S")
            fields.update(chunks_z=None, vectors=None, payload_key=None)
        self._set("deltas", {"id": encode(delta_id)}, fields)
        if key and self.blobs is not None:
            self.blobs.delete(key)

    def add_deltas(self, deltas: Sequence[NewDelta]) -> list[int]:
        """See :meth:`conveyor.catalog.Catalog.add_deltas`: one after another here."""
        return [delta.add(self) for delta in deltas]

    def complete_parts(self, parts: Sequence[Part]) -> list[bool]:
        """See :meth:`conveyor.catalog.Catalog.complete_parts`: one after another here."""
        return [self.complete_part(*part) for part in parts]

    def complete_part(
        self,
        delta_id: int,
        document_id: str,
        delivery: str,
        parts: int,
        done: dict[str, Any] | None,
    ) -> bool:
        part = self._client.get_item(
            TableName=self.tables["deltas"],
            Key={"id": encode(delta_id)},
            ProjectionExpression="#p",
            ExpressionAttributeNames={"#p": "part"},
            ConsistentRead=True,
        )["Item"]["part"]["N"]
        answer = self._client.update_item(
            TableName=self.tables["meta"],
            Key={"key": {"S": f"delivery#{document_id}#{delivery}"}},
            UpdateExpression="ADD #p :p",
            ExpressionAttributeNames={"#p": "parts"},
            ExpressionAttributeValues={":p": {"SS": [part]}},
            ReturnValues="ALL_NEW",
        )
        complete = len(answer["Attributes"]["parts"]["SS"]) >= parts
        if complete and done is None:  # a deletion: the document and its history leave
            self._client.delete_item(
                TableName=self.tables["documents"], Key={"id": {"S": document_id}}
            )
            self._forget_events(document_id)
        elif complete and done is not None:
            self.move(document_id, "merged", **done)
        self._mark(delta_id, "applied", None)  # last: a crash before this replays the part
        return complete

    def newest_applied_read(self, document_id: str, collection: str) -> float:
        reads = [
            float(d.get("read_at") or 0.0)
            for d in self._query("deltas", "document", "document_id", document_id)
            if d["collection"] == collection and d["state"] == "applied" and not d.get("error")
        ]
        return max(reads, default=0.0)

    def pending_collections(self) -> list[str]:
        found = self._query(
            "deltas",
            "pending_all",
            "pending_all",
            "pending",
            ProjectionExpression="#c",
            names={"#c": "collection"},
        )
        return sorted({d["collection"] for d in found})

    def delta_counts(self) -> dict[str, int]:
        return {s: self._count("deltas", "state", "state", s) for s in DELTA_STATES}

    def finish_delta(self, delta_id: int, state: str, error: str | None = None) -> None:
        self._mark(delta_id, state, error)

    def start_compaction(self, collection: str) -> int:
        run = self._next_id("compactions")
        self._client.put_item(
            TableName=self.tables["compactions"],
            Item=item(
                {
                    "id": run,
                    "all": "all",
                    "collection": collection,
                    "state": "pending",
                    "deltas": 0,
                    "chunks": 0,
                    "started_at": self.now(),
                }
            ),
        )
        return run

    def finish_compaction(
        self, run: int, state: str, deltas: int, chunks: int, error: str | None = None
    ) -> None:
        key = {"id": encode(run)}
        if state == "applied" and deltas == 0:
            self._client.delete_item(TableName=self.tables["compactions"], Key=key)
            return
        self._set(
            "compactions",
            key,
            {
                "state": state,
                "deltas": deltas,
                "chunks": chunks,
                "finished_at": self.now(),
                "error": error,
            },
        )

    def compactions(self, limit: int = 10) -> list[dict[str, Any]]:
        found = self._query(
            "compactions", "newest", "all", "all", ScanIndexForward=False, Limit=limit
        )
        columns = (
            "id",
            "collection",
            "state",
            "deltas",
            "chunks",
            "started_at",
            "finished_at",
            "error",
        )
        return [{c: r.get(c) for c in columns} for r in list(found)[:limit]]

    def close(self) -> None:
        self._client.close()
