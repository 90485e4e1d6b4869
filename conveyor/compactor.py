"""The single writer: applies deltas to the vector store, one collection at a time.

A delta is one document's new chunks and vectors, written by a worker. For
each, in order: replace the document's chunks in the store (delete what it
had, upsert the new ones) and in the lexical index beside it, mark the
document done with its chunk count, write its result manifest, mark the
delta applied. Every step is
idempotent — chunk ids come from document id + chunk index — so a compactor
killed anywhere in between resumes by applying the same delta again, and
the store ends the same: no chunk lost, none doubled.

One compactor per collection at a time, enforced by a lease lock in the
catalog, so several processes may run one safely.

A delta that cannot be merged is failed only for its own input: damaged vectors,
or a :class:`~conveyor.exceptions.PermanentError` of the vector store about its
rows (another model's dimension). Anything else (an unwritable or full blob
store, a database or vector server away) is an outage: the delta stays pending
and is tried again after a pause that doubles from :data:`BACKOFF_BASE` up to
:data:`BACKOFF_MAX` seconds, for as long as it takes; its document stays
``running`` at stage ``merge``.
"""

from __future__ import annotations

import contextvars
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any

from . import deltas, recordings, tracing
from .blobstore import BlobStore
from .catalog import Catalog, Part
from .deltas import Delta
from .documents import Documents
from .exceptions import ConveyorError, NoSpace, PermanentError, no_space, safe_summary
from .filters import text_value
from .generations import Generations
from .lexical import LexicalIndex
from .manifests import Manifests
from .pages import remove_page_images
from .vectorstore import ChunkRecord, VectorStore

log = logging.getLogger(__name__)

LOCK_TTL = 60.0
BACKOFF_BASE = 1.0
BACKOFF_MAX = 60.0
SETTLE_EVERY = 5.0  # seconds between looks for a rebuilt generation to switch to
GATHER_SECONDS = 0.1
"""After a pass that merged less than a batch, how long the compactor lets deltas gather
before the next: each pass costs a lock taken and given back, and a batch is merged in
one transaction, so a stream of small documents is merged some at a time, not one by
one, for at most this much later."""
MAX_ATTEMPTS = 5  # failures of one delta after which each further one is logged as an error


DESCRIBED = ("type", "language")
"""What a document's description (:mod:`conveyor.describe`) adds to its chunks' filters."""


def _filterable(header: deltas.Header) -> dict[str, Any]:
    """What every chunk of a document carries for search filters: the document's kind,
    its described type and language, and the uploader's scalar metadata (``--where
    key=value``); a chunk's own fields win."""
    user = header.metadata.get("user")
    shared = {
        key: value
        for key, value in (user.items() if isinstance(user, dict) else ())
        if text_value(value) is not None
    }
    for key in DESCRIBED:
        value = header.metadata.get(key)
        if isinstance(value, str) and value:
            shared[key] = value
    shared.update(recordings.chunk_fields(user))  # a recorder's start, for --since/--until
    if header.kind:
        shared["kind"] = header.kind
    return shared


@dataclass(frozen=True)
class _Write:
    """What a delta writes: its document's rows in each target collection."""

    document_id: str
    dim: int
    model: str
    rows: list[tuple[str, list[ChunkRecord]]]


Steps = Generator["_Write | Part", bool | None, int]
"""A delta's merge as :meth:`Compactor._apply_steps` runs it: it yields its chunks to
write, then the :class:`~conveyor.catalog.Part` to mark (and is sent whether that
completed the document), and returns the chunks merged."""


@dataclass
class _Merging:
    """A delta of a batch between its checks and its marking (see ``_attempt_batch``):
    its steps run in a context of their own (the trace's span is a context variable)."""

    delta: Delta
    context: contextvars.Context
    steps: Steps
    write: _Write
    mark: Part | None = None


def _batches(pending: list[Delta]) -> Iterator[list[Delta]]:
    """``pending`` in runs without a document twice (its deltas apply in order, one
    after the other's marking)."""
    batch: list[Delta] = []
    seen: set[str] = set()
    for delta in pending:
        if delta.document_id in seen:
            yield batch
            batch, seen = [], set()
        batch.append(delta)
        seen.add(delta.document_id)
    if batch:
        yield batch


def _replace_many(
    store: Any, collection: str, documents: list[tuple[str, list[ChunkRecord]]]
) -> None:
    """``store.replace_documents`` where the store has it (one transaction), else one
    ``replace_document`` each."""
    many = getattr(store, "replace_documents", None)
    if many is not None:
        many(collection, documents)
        return
    for document_id, records in documents:
        store.replace_document(collection, document_id, records)


class _LockKeeper:
    """Renews a writer lock from a thread while a merge runs, so that one slow write (a
    big document into a remote vector store) cannot outlast the lease and let a second
    writer in. ``lost`` is set if renewing fails: the merge then stops before it marks
    anything, and the other writer redoes the delta in hand (applying is idempotent)."""

    def __init__(self, catalog: Catalog, lock: str, owner: str) -> None:
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
    """Merges pending deltas from the catalog into the vector store; see the module."""

    def __init__(
        self,
        catalog: Catalog,
        vectors: VectorStore,
        blobs: BlobStore,
        *,
        lexical: LexicalIndex | None = None,
        batch: int = 64,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.generations = Generations(blobs)
        self._settled_at = -math.inf
        self.catalog = catalog
        self.vectors = vectors
        self.lexical = lexical
        self._lexical_ready: set[str] = set()
        self.documents = Documents(catalog)
        self.manifests = Manifests(blobs)
        self.blobs = blobs
        self.batch = batch
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.wake = threading.Event()
        self._stop: threading.Event | None = None
        self.clock = clock
        self._attempts: dict[int, int] = {}
        self._retry_at: dict[int, float] = {}  # delta id → when to try it again
        self._failure: str | None = None  # this compaction run's last outage, if any
        self.full: NoSpace | None = None
        """Set when a disk filled up: :meth:`run` returns, the deltas stay pending."""
        self._keeper: _LockKeeper | None = None

    def run_once(self, stop: threading.Event | None = None) -> int:
        """Apply what is pending now, in every collection; returns deltas applied.
        With ``stop`` set, returns after the batch in hand (the rest stays pending)."""
        self._stop = stop
        applied = 0
        if self.lexical is not None and not self._lexical_ready:
            self._index_collections()
        for collection in self.catalog.pending_collections():
            lock = f"compactor:{collection}"
            if not self.catalog.acquire_lock(lock, self.owner, LOCK_TTL):
                continue  # another compactor has this collection
            try:
                applied += self._collection(collection, lock)
            finally:
                self.catalog.release_lock(lock, self.owner)
        if self.clock() - self._settled_at > SETTLE_EVERY:  # a rebuilt generation to switch to
            self._settled_at = self.clock()
            self.generations.settle(self.catalog, self.vectors, self.lexical)
        return applied

    def _index_collections(self) -> None:
        """Collections with vectors but no lexical index (a home from before it existed)
        are indexed from the vector store, each under its writer lock."""
        for info in self.vectors.collections():
            lock = f"compactor:{info.name}"
            if not self.catalog.acquire_lock(lock, self.owner, LOCK_TTL):
                continue  # its writer will index it
            try:
                self._ensure_lexical(info.name)
            finally:
                self.catalog.release_lock(lock, self.owner)

    def _ensure_lexical(self, collection: str) -> None:
        if self.lexical is None or collection in self._lexical_ready:
            return
        if self.lexical.indexed(collection) is None and self.vectors.count(collection):
            n = self.lexical.rebuild(
                collection, self.vectors.iter_chunks(collection, vectors=False)
            )
            log.info("indexed %d chunks for lexical search", n, extra={"collection": collection})
        self._lexical_ready.add(collection)

    def _collection(self, collection: str, lock: str) -> int:
        """One compaction run: a record that is ``pending`` while it merges, then
        ``applied`` or ``failed`` (with the error)."""
        run = self.catalog.start_compaction(collection)
        counts = [0, 0]
        self._failure = None
        try:
            self._merge(collection, lock, counts)
        except Exception as exc:
            self.catalog.finish_compaction(
                run, "failed", counts[0], counts[1], error=safe_summary(exc)
            )
            raise
        if self._failure is not None:  # a delta kept pending for an outage: say so
            self.catalog.finish_compaction(run, "failed", counts[0], counts[1], error=self._failure)
        else:
            self.catalog.finish_compaction(run, "applied", counts[0], counts[1])
        return counts[0]

    def _merge(self, collection: str, lock: str, counts: list[int]) -> None:
        with _LockKeeper(self.catalog, lock, self.owner) as keeper:
            self._keeper = keeper
            try:
                while not keeper.lost.is_set():
                    pending = deltas.pending(self.catalog, collection, limit=self.batch)
                    merged = 0
                    for batch in _batches(pending):
                        if keeper.lost.is_set():
                            return
                        for chunks in self._attempt_batch(collection, batch):
                            if chunks is not None:
                                counts[1] += chunks
                                merged += 1
                    counts[0] += merged
                    if not merged:  # nothing pending, or all of it waiting to be tried again
                        break
                    if self._stop is not None and self._stop.is_set():
                        return
            finally:
                self._keeper = None

    def _attempt_batch(self, collection: str, batch: list[Delta]) -> list[int | None]:
        """Apply several deltas, their chunks written to the vector store and the lexical
        index in one transaction each, then each marked on its own; if the shared write
        fails, each is applied alone (so a failure stays with the delta that caused it).
        Returns what :meth:`_attempt` returns, for each."""
        ready = [d for d in batch if self.clock() >= self._retry_at.get(d.id, -math.inf)]
        if len(ready) < 2:
            return [self._attempt(collection, d) for d in ready]
        results: dict[int, int | None] = {}
        merging: list[_Merging] = []
        for delta in ready:
            context, steps = contextvars.copy_context(), self._apply_steps(collection, delta)
            try:
                write = context.run(next, steps)
            except StopIteration as stop:
                results[delta.id] = self._applied(delta, stop.value)
                continue
            except Exception as exc:
                results[delta.id] = self._backoff(collection, delta, exc)
                continue
            assert isinstance(write, _Write)  # _apply_steps writes before it marks
            merging.append(_Merging(delta, context, steps, write))
        try:
            self._write([step.write for step in merging])
        except Exception:
            for step in merging:
                step.context.run(step.steps.close)
            for step in merging:  # one at a time: the failure stays with its own delta
                results[step.delta.id] = self._attempt(collection, step.delta)
            return [results[d.id] for d in ready]
        marking: list[_Merging] = []
        for step in merging:
            try:
                mark = step.context.run(step.steps.send, None)
            except StopIteration as stop:
                results[step.delta.id] = self._applied(step.delta, stop.value)
            except Exception as exc:
                results[step.delta.id] = self._backoff(collection, step.delta, exc)
            else:
                if not isinstance(mark, Part):  # pragma: no cover - _apply_steps writes once
                    raise RuntimeError("a merge asked to write twice")
                step.mark = mark
                marking.append(step)
        self._mark(marking, collection, results)
        return [results[d.id] for d in ready]

    def _mark(
        self, marking: list[_Merging], collection: str, results: dict[int, int | None]
    ) -> None:
        """Mark the batch's deltas merged (and their documents done) in one transaction;
        if that fails, each on its own, so a failure stays with its delta."""
        marks = [step.mark for step in marking if step.mark is not None]
        completes: list[bool] | None = None
        if len(marks) > 1:
            try:
                completes = self.catalog.complete_parts(marks)
            except Exception as exc:
                log.info(
                    "marking %d merges together failed, each alone now: %s",
                    len(marks),
                    safe_summary(exc),
                )
        for n, (step, mark) in enumerate(zip(marking, marks, strict=True)):
            try:
                complete = self.catalog.complete_part(*mark) if completes is None else completes[n]
                step.context.run(step.steps.send, complete)
            except StopIteration as stop:
                results[step.delta.id] = self._applied(step.delta, stop.value)
            except Exception as exc:
                step.context.run(step.steps.close)
                results[step.delta.id] = self._backoff(collection, step.delta, exc)
            else:  # pragma: no cover - _apply_steps marks once
                raise RuntimeError("a merge asked to mark twice")

    def _attempt(self, collection: str, delta: Delta) -> int | None:
        """Apply (returns the chunks merged), or keep the delta pending and back off
        (returns None): a failure here is an outage, not the document's fault."""
        if self.clock() < self._retry_at.get(delta.id, -math.inf):
            return None
        try:
            chunks = self._apply(collection, delta)
        except Exception as exc:
            return self._backoff(collection, delta, exc)
        return self._applied(delta, chunks)

    def _applied(self, delta: Delta, chunks: int) -> int:
        self._attempts.pop(delta.id, None)
        self._retry_at.pop(delta.id, None)
        return chunks

    def _backoff(self, collection: str, delta: Delta, exc: Exception) -> int | None:
        """Keep ``delta`` pending after ``exc`` and try it again later (None: not merged)."""
        self.full = self.full or no_space(exc, "the catalog or the vector store")
        self._failure = safe_summary(exc)
        n = self._attempts[delta.id] = self._attempts.get(delta.id, 0) + 1
        pause = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (n - 1))
        self._retry_at[delta.id] = self.clock() + pause
        log.log(
            logging.ERROR if n >= MAX_ATTEMPTS else logging.WARNING,
            "could not merge (failure %d), kept pending and tried again in %g s: %s",
            n,
            pause,
            safe_summary(exc),
            extra={"document": delta.document_id, "collection": collection},
        )
        return None

    def _reject(self, delta: Delta, reason: str) -> None:
        log.error("delta rejected: %s", reason, extra={"document": delta.document_id})
        self.documents.failed(delta.document_id, reason, "permanent")
        self.catalog.finish_delta(delta.id, "failed", reason)

    def _apply(self, collection: str, delta: Delta) -> int:
        """One delta from start to end (see :meth:`_apply_steps`)."""
        steps = self._apply_steps(collection, delta)
        try:
            write = next(steps)
        except StopIteration as stop:
            chunks: int = stop.value
            return chunks
        assert isinstance(write, _Write)
        try:
            self._write([write])
        except PermanentError as exc:  # the store refuses these rows: no retry mends them
            steps.close()
            self._reject(delta, safe_summary(exc))
            return 0
        except BaseException:
            steps.close()
            raise
        try:
            mark = steps.send(None)
            if not isinstance(mark, Part):  # pragma: no cover - _apply_steps writes once
                raise RuntimeError("a merge asked to write twice")
            steps.send(self.catalog.complete_part(*mark))
        except StopIteration as stop:
            chunks = stop.value
            return chunks
        finally:
            steps.close()
        raise RuntimeError("a merge asked to mark twice")  # pragma: no cover

    def _apply_steps(self, collection: str, delta: Delta) -> Steps:
        """Apply ``delta``: it yields the chunks to write (once, or not at all when there
        is nothing to write), then, once they are written, the part to mark merged (its
        document done when it completes the delivery), and is told whether it did.
        Returns the chunks merged."""
        header = delta.header
        with tracing.span(
            "merge",
            parent=header.trace,
            document=delta.document_id,
            collection=collection,
            chunks=len(delta.chunks),
            deleted=header.deleted,
        ):
            return (yield from self._apply_traced(collection, delta))

    def _write(self, writes: list[_Write]) -> None:
        """The writes' chunks into the vector store, then the lexical index: per target
        collection, every document in one transaction of each (in order)."""
        by_target: dict[str, list[tuple[str, list[ChunkRecord]]]] = {}
        checked: set[tuple[str, int, str]] = set()
        for write in writes:
            for target, rows in write.rows:
                if (target, write.dim, write.model) not in checked:
                    self.vectors.ensure_collection(target, dim=write.dim, model_id=write.model)
                    checked.add((target, write.dim, write.model))
                by_target.setdefault(target, []).append((write.document_id, rows))
        for target, documents in by_target.items():
            _replace_many(self.vectors, target, documents)
            if self.lexical is not None:  # the same chunks, before the deltas count
                self._ensure_lexical(target)
                _replace_many(self.lexical, target, documents)

    def _apply_traced(self, collection: str, delta: Delta) -> Steps:
        header, doc_id = delta.header, delta.document_id
        t = time.perf_counter()
        newest = self.catalog.newest_applied_read(doc_id, collection)
        if newest > header.read_at:
            # two jobs for one document finished out of order: this collection already
            # holds what a later read of the source produced; the older one must not win
            self.catalog.finish_delta(delta.id, "applied", "superseded by a newer read")
            return 0
        try:
            targets = self.generations.targets(collection, header)
        except ConveyorError as exc:  # a worker still on the settings being replaced
            self._reject(delta, safe_summary(exc))
            return 0
        if header.deleted:
            return self._delete(collection, delta, targets)
        shared = _filterable(header)
        try:
            vectors = delta.matrix()
            records = [
                ChunkRecord(
                    id=c.id,
                    document_id=doc_id,
                    chunk_index=c.index,
                    text=c.text,
                    source=header.source,
                    page=c.page,
                    metadata={**shared, **c.metadata},
                    vector=vectors[i],
                )
                for i, c in enumerate(delta.chunks)
            ]
        except Exception as exc:  # the delta's own bytes: no retry can mend them
            self._reject(delta, f"could not merge: the delta is damaged ({safe_summary(exc)})")
            return 0
        # the generation answering, or the one being built (both during a rebuild)
        rows = [(to, self.generations.records_in(records, to, collection)) for to in targets]
        yield _Write(doc_id, header.dim, header.model, rows)
        delivery = header.delivery
        timings = {**header.timings, "merge": time.perf_counter() - t}
        if delivery.parts == 1:  # written before the commit: a replay rewrites it, never loses it
            self.manifests.done(doc_id, header, timings)
        if self._keeper is not None and self._keeper.lost.is_set():
            return 0  # another writer has the collection now and will redo this delta
        done = Documents.done_fields(
            chunks=delivery.chunks,
            content_hash=header.content_hash,
            fingerprint=header.fingerprint,
            model=header.model,
            timings=timings,
        )
        complete = yield Part(delta.id, doc_id, delivery.id, delivery.parts, done)
        if complete and delivery.parts > 1:
            self.manifests.done(doc_id, header, timings)
        log.info(
            "merged %d chunks", len(records), extra={"document": doc_id, "collection": collection}
        )
        return len(records)

    def _delete(self, collection: str, delta: Delta, targets: list[str]) -> int:
        """A tombstone: the document's rows leave the collection (each generation of
        it), and once every part of the deletion is merged, the document leaves the
        catalog."""
        doc_id = delta.document_id
        removed = 0
        for target in targets:
            if self.vectors.collection(target) is not None:
                removed += self.vectors.delete(target, document_id=doc_id)
            if self.lexical is not None:  # gone from both, before the tombstone counts
                self.lexical.replace_document(target, doc_id, [])
        if delta.header.part == 0:  # the document's own collection: its page images go too
            remove_page_images(self.blobs, doc_id)
        if self._keeper is not None and self._keeper.lost.is_set():
            return 0
        delivery = delta.header.delivery
        self.catalog.complete_part(delta.id, doc_id, delivery.id, delivery.parts, None)
        log.info("deleted %d chunks", removed, extra={"document": doc_id, "collection": collection})
        return removed

    def run(self, stop: threading.Event, *, idle: float = 0.5, drain: bool = True) -> None:
        """Apply deltas until ``stop`` is set — and, with ``drain``, nothing is pending —
        or a disk is full (``full``)."""
        while True:
            self.wake.clear()
            try:
                applied = self.run_once(None if drain else stop)
            except Exception as exc:  # keep the writer alive; the delta stays pending
                self.full = self.full or no_space(exc, "the catalog or the vector store")
                if self.full is None:
                    log.error("compaction failed: %s", safe_summary(exc), exc_info=True)
                applied = 0
                stop.wait(1.0)
            if self.full is not None:  # what is pending stays pending for the next run
                log.error("compactor stopping: %s", self.full)
                return
            if stop.is_set() and (not drain or not self.catalog.pending_collections()):
                return
            if applied >= self.batch:
                continue
            if applied:
                stop.wait(GATHER_SECONDS)
                continue
            self.wake.wait(idle)

    def drain(
        self,
        stop: threading.Event,
        *,
        deadline: float = math.inf,
        wait_locked: float = 3.0,
        until: Callable[[], bool] | None = None,
    ) -> int:
        """Merge what is pending now, then return: when nothing is pending, ``until()``
        holds, ``stop`` is set, ``deadline`` (``time.monotonic()``) passes, or the only
        pending collections have been locked by another compactor for ``wait_locked``
        seconds (that one merges them). For the Lambda handler and ``run-job``: the
        deltas left pending are merged by the next compactor to run. Returns how many
        deltas were applied."""
        applied, idle_since = 0, time.monotonic()
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                n = self.run_once(stop)
                pending = self.catalog.pending_collections()
            except Exception as exc:  # the deltas stay pending for the next one
                log.warning("compaction failed, left pending: %s", safe_summary(exc))
                break
            applied += n
            if not pending or (until is not None and until()):
                break
            if n:
                idle_since = time.monotonic()
                continue
            if time.monotonic() - idle_since > wait_locked:
                log.info(
                    "deltas left pending in %s (another compactor has the lock)",
                    ", ".join(pending),
                )
                break
            stop.wait(min(0.2, max(0.0, deadline - time.monotonic())))
        return applied
