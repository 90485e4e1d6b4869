"""The catalog: what happened to every document, run and delta.

Documents (source, content hash, state, stage, chunk count, collection,
model, last error), runs, deltas waiting for the compactor, compaction runs,
the embedding cache, workers and writer locks. Backends:
:class:`~conveyor.catalog.sqlite.SqliteCatalog` (default; in the same SQLite
file as the queue) and :class:`~conveyor.catalog.postgres.PostgresCatalog`
(many hosts) run the same SQL, in :mod:`conveyor.catalog.sql`;
:class:`~conveyor.catalog.dynamodb.DynamoCatalog` is the serverless one.

Document states and their moves are :mod:`conveyor.documents`'; the
catalog stores them.

Times are Unix seconds (floats). On PostgreSQL they come from the database
server's clock, so lock leases and worker heartbeats written by different
hosts compare fairly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .._sqlite import file_path
from ..exceptions import ConfigurationError, safe_summary
from .parts import NewDelta, Part
from .sql import STATES
from .sqlite import SqliteCatalog

__all__ = ["STATES", "Catalog", "NewDelta", "Part", "SqliteCatalog", "open_catalog"]


@runtime_checkable
class Catalog(Protocol):
    """What the worker, the compactor, the CLI and the HTTP API read and write."""

    # -- documents -------------------------------------------------------

    def now(self) -> float:
        """The catalog's clock, shared by every host (the server's on PostgreSQL)."""
        ...

    def enqueued(self, docs: Sequence[tuple[str, str, str]], run: str) -> None:
        """Record ``(document_id, collection, source)`` as queued in ``run``; a known
        document goes back to ``queued`` with its error and attempts cleared."""
        ...

    def update(self, document_id: str, **fields: Any) -> None:
        """Set columns of a document (``metadata``/``timings`` as dicts); ``updated_at`` too."""
        ...

    def move(self, document_id: str, reason: str | None = None, **fields: Any) -> None:
        """Set columns of a document, ``state`` among them, and add the move (from
        which state, to which, when, ``reason``, run, attempt, content hash, chunks,
        pages) to its history, atomically. A document that is not there is left alone."""
        ...

    def move_many(self, moves: Sequence[tuple[str, str | None, dict[str, Any]]]) -> None:
        """Several documents' :meth:`move` (``(document_id, reason, fields)``): in one
        transaction where the backend has them (a worker's group of jobs begun at once)."""
        ...

    def events(self, document_id: str) -> list[dict[str, Any]]:
        """The document's history, oldest first: dicts of
        :data:`~conveyor.catalog.events.EVENT_COLUMNS` (``at`` in Unix seconds). Every
        state move is there, including ``enqueued``'s (reason ``submitted``) and
        ``complete_part``'s (``merged``); a merged deletion removes it."""
        ...

    def get(self, document_id: str) -> dict[str, Any] | None:
        """One document as a dict of its columns, or None."""
        ...

    def documents(
        self,
        *,
        state: str | None = None,
        collection: str | None = None,
        run: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Documents matching every filter given, most recently updated first."""
        ...

    def counts(self, *, run: str | None = None) -> dict[str, int]:
        """Documents per state (every state present, 0 when none)."""
        ...

    def chunk_total(self, *, run: str | None = None) -> int:
        """Chunks of the documents that are done."""
        ...

    # -- runs ------------------------------------------------------------

    def start_run(self, run: str, collection: str, enqueued: int) -> None:
        """Record a run; starting it again adds to its ``enqueued``."""
        ...

    # -- deltas and compaction -------------------------------------------

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
        """A pending delta (float32 vectors as bytes); returns its id, increasing.
        ``header`` and ``chunks`` are stored as given (:mod:`conveyor.deltas` makes
        and reads them); ``read_at``, ``delivery`` and ``part`` are what the catalog
        itself orders and counts deltas by. ``document``: columns of the document set
        with the delta, as :meth:`update` sets them — in the same transaction on SQL,
        just before it on DynamoDB (a delivery's last part: the stage ``merge``)."""
        ...

    def add_deltas(self, deltas: Sequence[NewDelta]) -> list[int]:
        """:meth:`add_delta` for each of ``deltas`` (a worker's wave), in one transaction
        where the backend has them; their ids, in order."""
        ...

    def pending_deltas(
        self, collection: str | None = None, limit: int = 64
    ) -> list[dict[str, Any]]:
        """Pending deltas, oldest first, ``header`` and ``chunks`` decoded."""
        ...

    def complete_part(
        self,
        delta_id: int,
        document_id: str,
        delivery: str,
        parts: int,
        done: dict[str, Any] | None,
    ) -> bool:
        """Mark a delta applied and, when it was the last missing part of its
        delivery, set the document's ``done`` fields — or, with ``done`` None (a
        deletion), remove the document — atomically. True when the document is
        complete."""
        ...

    def complete_parts(self, parts: Sequence[Part]) -> list[bool]:
        """:meth:`complete_part` for each of ``parts`` (a compactor's batch), in one
        transaction where the backend has them; what each returns, in order."""
        ...

    def newest_applied_read(self, document_id: str, collection: str) -> float:
        """``read_at`` of the newest delta merged into ``collection`` (0.0 if none)."""
        ...

    def pending_collections(self) -> list[str]: ...

    def delta_counts(self) -> dict[str, int]:
        """Deltas per state: pending, applied, failed."""
        ...

    def finish_delta(self, delta_id: int, state: str, error: str | None = None) -> None:
        """Mark a delta applied or failed; its payload is dropped once applied."""
        ...

    def start_compaction(self, collection: str) -> int:
        """A compaction run record in state ``pending``; returns its id."""
        ...

    def finish_compaction(
        self, run: int, state: str, deltas: int, chunks: int, error: str | None = None
    ) -> None:
        """``applied`` or ``failed``; a run that merged nothing is not kept."""
        ...

    def compactions(self, limit: int = 10) -> list[dict[str, Any]]:
        """The latest compaction runs, newest first."""
        ...

    # -- embedding cache -------------------------------------------------

    def cache_get(self, model_id: str, hashes: Sequence[str]) -> dict[str, bytes]:
        """Cached vectors (float32 bytes) of the text hashes found."""
        ...

    def cache_put(self, model_id: str, items: Sequence[tuple[str, bytes]]) -> None:
        """Cache ``(text_hash, vector bytes)``; an entry already there is kept."""
        ...

    # -- workers ---------------------------------------------------------

    def worker_beat(
        self,
        worker_id: str,
        *,
        host: str,
        pid: int,
        concurrency: int,
        state: str = "running",
        in_flight: int = 0,
        jobs_done: int = 0,
        jobs_failed: int = 0,
    ) -> None:
        """Register or refresh a worker process (its heartbeat)."""
        ...

    def workers(self, *, stale_after: float, keep: float = 3600.0) -> list[dict[str, Any]]:
        """Workers seen in the last ``keep`` seconds, with ``heartbeat_age`` and ``stale``."""
        ...

    # -- locks -----------------------------------------------------------

    def acquire_lock(self, name: str, owner: str, ttl: float) -> bool:
        """Take or renew ``name`` for ``owner`` for ``ttl`` seconds; False if another
        owner holds it and its lease has not run out."""
        ...

    def release_lock(self, name: str, owner: str) -> None: ...

    # -- measurements (conveyor.catalog.measurements) ----------------------

    def record_measurement(self, record: dict[str, Any]) -> None:
        """Store one job's measurements (the fields of
        :class:`conveyor.measure.Measurement`; ``stages`` as a dict)."""
        ...

    def record_measurements(self, records: list[dict[str, Any]]) -> None:
        """Several jobs' :meth:`record_measurement`, in one transaction where the backend
        has them (a worker's group)."""
        ...

    def measurements(
        self,
        *,
        run: str | None = None,
        collection: str | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Jobs' measurements matching every filter given (``since``: finished at or
        after), oldest first; ``limit`` keeps the newest."""
        ...

    def close(self) -> None: ...


SUPPORTED_SCHEMES = (
    "sqlite:///path/to/file.db (or a plain file path), "
    "postgresql://user:password@host/database (or postgres://), "
    "dynamodb://table-prefix?region=REGION"
)


def open_catalog(url: str | Path, **kw: Any) -> Catalog:
    """Open the catalog named by ``url``; ``kw`` go to the backend's constructor.

    * ``sqlite:///abs/path.db`` (``sqlite://rel/path.db`` is relative) or a plain
      file path → :class:`~conveyor.catalog.sqlite.SqliteCatalog`;
    * ``postgresql://…`` or ``postgres://…`` (``?schema=`` picks the PostgreSQL
      schema, default ``conveyor``) → :class:`~conveyor.catalog.postgres.PostgresCatalog`;
    * ``dynamodb://PREFIX?region=…`` → :class:`~conveyor.catalog.dynamodb.DynamoCatalog`
      (``blobs=``: the blob store for deltas too large for an item).

    A wrong or unreachable URL raises :class:`~conveyor.exceptions.ConfigurationError`
    naming it, password masked.
    """
    text = str(url)
    if text.startswith("dynamodb://"):
        from .dynamodb import DynamoCatalog

        return DynamoCatalog(text, **kw)
    if text.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresCatalog

        return PostgresCatalog(text, **kw)
    if text.startswith("sqlite://"):
        text = text[len("sqlite://") :]
        if not text:
            raise ConfigurationError(
                f"catalog URL {safe_summary(str(url))!r} names no file; "
                "use sqlite:///path/to/file.db"
            )
        return SqliteCatalog(file_path(text, "catalog URL"), **kw)
    if "://" not in text and text.strip():
        return SqliteCatalog(file_path(text, "catalog URL"), **kw)
    raise ConfigurationError(
        f"unsupported catalog URL {safe_summary(text)!r}: supported are {SUPPORTED_SCHEMES}"
    )
