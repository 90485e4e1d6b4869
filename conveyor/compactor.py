"""The single writer: applies deltas to the vector store, one collection at a time.

A delta is one document's new chunks and vectors, written by a worker. For
each, in order: replace the document's chunks in the store (delete what it
had, upsert the new ones), mark the document done with its chunk count,
write its result manifest, mark the delta applied. Every step is
idempotent — chunk ids come from document id + chunk index — so a compactor
killed anywhere in between resumes by applying the same delta again, and
the store ends the same: no chunk lost, none doubled.

One compactor per collection at a time, enforced by a lease lock in the
catalog, so several processes may run one safely.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np

from .exceptions import ConveyorError, PermanentError, TransientError, safe_summary
from .jobs import MANIFEST_KEY, manifest, manifest_bytes
from .vectorstore import ChunkRecord

if TYPE_CHECKING:
    from .app import Components

log = logging.getLogger(__name__)

LOCK_TTL = 60.0
MAX_ATTEMPTS = 5  # a delta that fails this often is rejected, not retried forever


def _deterministic(exc: Exception) -> bool:
    """Errors that will recur on every attempt (not a busy database or a timeout)."""
    return isinstance(exc, ConveyorError) and not isinstance(exc, TransientError)


class _LockKeeper:
    """Renews a writer lock from a thread while a merge runs, so that one slow write (a
    big document into a remote vector store) cannot outlast the lease and let a second
    writer in. ``lost`` is set if renewing fails: the merge then stops before it marks
    anything, and the other writer redoes the delta in hand (applying is idempotent)."""

    def __init__(self, catalog: Any, lock: str, owner: str) -> None:
        self.catalog, self.lock, self.owner = catalog, lock, owner
        self.lost = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="conveyor-lock", daemon=True)

    def __enter__(self) -> _LockKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _renew(self) -> None:
        while not self._done.wait(LOCK_TTL / 4):
            try:
                held = self.catalog.acquire_lock(self.lock, self.owner, LOCK_TTL)
            except Exception as exc:  # a blip: the lease still has 3/4 of its time
                log.warning("could not renew the writer lock: %s", safe_summary(exc))
                continue
            if not held:
                log.warning("lost the writer lock", extra={"lock": self.lock})
                self.lost.set()
                return


class Compactor:
    def __init__(self, components: Components, *, batch: int = 64) -> None:
        self.c = components
        self.batch = batch
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.wake = threading.Event()
        self._stop: threading.Event | None = None
        self._attempts: dict[int, int] = {}
        self._keeper: _LockKeeper | None = None

    def run_once(self, stop: threading.Event | None = None) -> int:
        """Apply what is pending now, in every collection; returns deltas applied.
        With ``stop`` set, returns after the batch in hand (the rest stays pending)."""
        self._stop = stop
        applied = 0
        for collection in self.c.catalog.pending_collections():
            lock = f"compactor:{collection}"
            if not self.c.catalog.acquire_lock(lock, self.owner, LOCK_TTL):
                continue  # another compactor has this collection
            try:
                applied += self._collection(collection, lock)
            finally:
                self.c.catalog.release_lock(lock, self.owner)
        return applied

    def _collection(self, collection: str, lock: str) -> int:
        """One compaction run: a record that is ``pending`` while it merges, then
        ``applied`` or ``failed`` (with the error)."""
        run = self.c.catalog.start_compaction(collection)
        counts = [0, 0]
        try:
            self._merge(collection, lock, counts)
        except Exception as exc:
            self.c.catalog.finish_compaction(
                run, "failed", counts[0], counts[1], error=safe_summary(exc)
            )
            raise
        self.c.catalog.finish_compaction(run, "applied", counts[0], counts[1])
        return counts[0]

    def _merge(self, collection: str, lock: str, counts: list[int]) -> None:
        with _LockKeeper(self.c.catalog, lock, self.owner) as keeper:
            self._keeper = keeper
            try:
                while not keeper.lost.is_set():
                    pending = self.c.catalog.pending_deltas(collection, limit=self.batch)
                    if not pending:
                        break
                    for delta in pending:
                        if keeper.lost.is_set():
                            return
                        counts[1] += self._attempt(collection, delta)
                        counts[0] += 1
                    if self._stop is not None and self._stop.is_set():
                        return
            finally:
                self._keeper = None

    def _attempt(self, collection: str, delta: dict[str, Any]) -> int:
        """Apply, counting failures: a transient one is retried on the next pass, and
        a delta that keeps failing (a full disk, an unwritable blob store) is rejected."""
        try:
            return self._apply(collection, delta)
        except Exception as exc:
            n = self._attempts[delta["id"]] = self._attempts.get(delta["id"], 0) + 1
            if n < MAX_ATTEMPTS and not _deterministic(exc):
                raise
            self._reject(delta, f"could not merge after {n} attempt(s): {safe_summary(exc)}")
            return 0

    def _reject(self, delta: dict[str, Any], reason: str) -> None:
        doc_id = delta["document_id"]
        log.error("delta rejected: %s", reason, extra={"document": doc_id})
        self.c.catalog.update(
            doc_id, state="failed", stage=None, error=reason, error_kind="permanent"
        )
        self.c.catalog.finish_delta(delta["id"], "failed", reason)

    def _apply(self, collection: str, delta: dict[str, Any]) -> int:
        header, doc_id = delta["header"], delta["document_id"]
        t = time.perf_counter()
        newest = self.c.catalog.newest_applied_read(doc_id, collection)
        if newest > (header.get("read_at") or 0):
            # two jobs for one document finished out of order: this collection already
            # holds what a later read of the source produced; the older one must not win
            self.c.catalog.finish_delta(delta["id"], "applied", "superseded by a newer read")
            return 0
        try:
            dim = int(header["dim"])
            vectors = np.frombuffer(delta["vectors"], dtype=np.float32).reshape(-1, dim)
            records = [
                ChunkRecord(
                    id=c["id"],
                    document_id=doc_id,
                    chunk_index=c["chunk_index"],
                    text=c["text"],
                    source=header["source"],
                    page=c.get("page"),
                    metadata=c.get("metadata") or {},
                    vector=vectors[i],
                )
                for i, c in enumerate(delta["chunks"])
            ]
            self.c.vectors.ensure_collection(collection, dim=dim, model_id=header["model"])
            self.c.vectors.replace_document(collection, doc_id, records)
        except PermanentError as exc:
            self._reject(delta, safe_summary(exc))
            return 0
        parts = int(header.get("parts") or 1)
        collections = header.get("collections") or {collection: len(records)}
        timings = dict(header.get("timings") or {})
        timings["merge"] = time.perf_counter() - t
        done = {
            "state": "done",
            "stage": None,
            "chunks": int(header.get("main_chunks", len(records))),
            "content_hash": header["content_hash"],
            "fingerprint": header["fingerprint"],
            "model": header["model"],
            "timings": timings,
            "error": None,
            "error_kind": None,
        }
        data = manifest(
            source=header["source"],
            document_id=doc_id,
            collection=next(iter(collections)),
            run=header["run"],
            status="done",
            embeddings=int(header.get("embeddings_total", len(records))),
            chunks=int(header.get("main_chunks", len(records))),
            collections=collections,
            content_hash=header["content_hash"],
            model=header["model"],
            backend=header.get("backend"),
            dim=dim,
            kind=header.get("kind"),
            mime=header.get("mime"),
            size_bytes=header.get("size"),
            timings={k: round(v, 4) for k, v in timings.items()},
            metadata=header.get("metadata") or {},
        )
        key = MANIFEST_KEY.format(run=header["run"], document_id=doc_id)
        if parts == 1:  # written before the commit: a replay rewrites it, never loses it
            self.c.blobs.put(key, manifest_bytes(data))
        if self._keeper is not None and self._keeper.lost.is_set():
            return 0  # another writer has the collection now and will redo this delta
        complete = self.c.catalog.complete_part(
            delta["id"], doc_id, header.get("delivery"), parts, done
        )
        if complete and parts > 1:
            self.c.blobs.put(key, manifest_bytes(data))
        log.info(
            "merged %d chunks", len(records), extra={"document": doc_id, "collection": collection}
        )
        return len(records)

    def run(self, stop: threading.Event, *, idle: float = 0.5, drain: bool = True) -> None:
        """Apply deltas until ``stop`` is set — and, with ``drain``, nothing is pending."""
        while True:
            self.wake.clear()
            try:
                applied = self.run_once(None if drain else stop)
            except Exception as exc:  # keep the writer alive; the delta stays pending
                log.error("compaction failed: %s", safe_summary(exc), exc_info=True)
                applied = 0
                stop.wait(1.0)
            if stop.is_set() and (not drain or not self.c.catalog.pending_collections()):
                return
            if applied:
                continue
            self.wake.wait(idle)
