"""A document's state, the moves between states, and the one place that makes them.

::

    queued ──► running ──► done        (merged by the compactor: searchable)
      ▲          │   ╲──► skipped     (unchanged since it was last merged: searchable)
      │          ╰────► failed        (with a reason and its kind)
      ╰──────────────── (retry, release, re-ingest, redrive)

A running document's ``stage`` says where it is: fetch, extract, chunk,
embed, a format's own steps (summarise, embed_lines…), merge (waiting for
the compactor), or a slow extractor's progress. Every write of a state goes
through :class:`Documents`, which knows the allowed moves; the CLI, the HTTP
API, the live view and the status page read the same :class:`State`.

A stage is written late: held back and folded into the document's next
write, or written on its own once it has waited :data:`STAGE_DELAY` seconds.
A small document's stages last a millisecond each and its delivery follows at
once; a recording's extraction shows within the delay. Inside
:meth:`Documents.gather` (a worker's group of jobs) the move to ``running`` is
held back too, and the group's moves are written together by
:meth:`Documents.flush` before their chunks go to the model: one transaction
for the group, not one per document.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from .exceptions import safe_summary

if TYPE_CHECKING:
    from .catalog import Catalog

log = logging.getLogger(__name__)


class State(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


FINISHED = frozenset({State.DONE, State.SKIPPED, State.FAILED})
"""States a document rests in until it is submitted again."""

SEARCHABLE = frozenset({State.DONE, State.SKIPPED})
"""States whose chunks are in the vector store."""

MERGE = "merge"
"""The stage of a running document whose delta waits for the compactor."""

RETRY = "retry"
"""The stage of a queued document whose job waits out a backoff."""

DELETE = "delete"
"""The stage of a document whose deletion waits for the compactor."""

STAGE_DELAY = 0.5
"""Seconds a stage write is held back at most (:meth:`Documents.stage`)."""

REASON = "\0reason"
"""In held fields: a move held back (:meth:`Documents.started` in a group), with the
reason for its history; never a column."""

_MERGING: Mapping[str, Any] = {"stage": MERGE, "error": None, "error_kind": None}
"""The columns of a document whose delta is written (:meth:`Documents.merging`)."""


def _move(fields: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Held fields holding a move (:data:`REASON`): its reason, and its columns."""
    return str(fields[REASON]), {k: v for k, v in fields.items() if k != REASON}


_GATHERED: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "conveyor_documents_gathered", default=None
)

TRANSITIONS: Mapping[State, frozenset[State]] = {
    # submitted (again), or a job someone else sent straight to the queue
    State.QUEUED: frozenset({State.QUEUED, State.RUNNING, State.FAILED}),
    # a redelivered job runs again; retried or released jobs go back to the queue
    State.RUNNING: frozenset(State),
    State.DONE: frozenset({State.QUEUED, State.RUNNING}),
    State.SKIPPED: frozenset({State.QUEUED, State.RUNNING}),
    # a dead-letter redriven, a bad message recorded again by the Lambda handler
    State.FAILED: frozenset({State.QUEUED, State.RUNNING, State.FAILED}),
}


class InvalidTransition(RuntimeError):
    """A move the state machine does not allow: a bug in conveyor, not in the input."""


def check(current: str | None, target: State) -> None:
    """Raise :class:`InvalidTransition` unless a document in ``current`` (None: a new
    one) may move to ``target``."""
    if current is None:
        if target not in (State.QUEUED, State.RUNNING, State.FAILED):
            raise InvalidTransition(f"a new document cannot start {target}")
        return
    if target not in TRANSITIONS[State(current)]:
        raise InvalidTransition(f"a document cannot go from {current} to {target}")


class Held:
    """Stage writes held back, per document, until its next write takes them
    (:meth:`take`) or until they are ``delay`` seconds old: then a thread of its own,
    running while any are held, writes them. A stage held while an older one waits
    is merged into it (the newer stage and fields win) and keeps the older one's time,
    so a stage shows at most ``delay`` seconds late however often it changes."""

    def __init__(self, catalog: Catalog, delay: float) -> None:
        self.catalog = catalog
        self.delay = delay
        self._fields: dict[str, dict[str, Any]] = {}
        self._due: dict[str, float] = {}
        """When each held document's fields are written on their own; oldest first (the
        delay is one for all)."""
        self._writing: set[str] = set()
        """Documents whose fields the thread is writing now: :meth:`take` waits for it,
        so that the document's next write lands after, not before."""
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def hold(self, document_id: str, fields: dict[str, Any]) -> None:
        with self._changed:
            held = self._fields.get(document_id)
            if held is not None:
                held.update(fields)
                return
            self._fields[document_id] = dict(fields)
            self._due[document_id] = time.monotonic() + self.delay
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._write_due, name="conveyor-stages", daemon=True
                )
                self._thread.start()

    def take(self, document_id: str) -> dict[str, Any]:
        """The document's held fields, no longer held (empty if none)."""
        with self._changed:
            while document_id in self._writing:
                self._changed.wait()
            self._due.pop(document_id, None)
            return self._fields.pop(document_id, {})

    def take_moves(self, document_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The held fields of those of ``document_ids`` that hold a move, no longer held."""
        with self._changed:
            while self._writing.intersection(document_ids):
                self._changed.wait()
            moves = {}
            for document_id in document_ids:
                if REASON in self._fields.get(document_id, {}):
                    self._due.pop(document_id, None)
                    moves[document_id] = self._fields.pop(document_id)
            return moves

    def _write_due(self) -> None:
        """Write the fields that have waited ``delay`` seconds; end when none are held."""
        while True:
            with self._changed:
                if not self._due:
                    self._thread = None
                    return
                now = time.monotonic()
                due = [d for d, at in self._due.items() if at <= now]
                if not due:
                    self._changed.wait(next(iter(self._due.values())) - now)
                    continue
                batch = {d: self._fields.pop(d) for d in due}
                for d in due:
                    del self._due[d]
                self._writing.update(batch)
            failed: dict[str, dict[str, Any]] = {}
            for document_id, fields in batch.items():
                try:
                    if REASON in fields:  # a move held back: with its history event
                        reason, columns = _move(fields)
                        self.catalog.move(document_id, reason, **columns)
                    else:
                        self.catalog.update(document_id, **fields)
                except Exception as exc:  # held again: the next write or try takes them
                    log.warning(
                        "could not write a stage: %s",
                        safe_summary(exc),
                        extra={"document": document_id},
                    )
                    failed[document_id] = fields
            with self._changed:
                self._writing.difference_update(batch)
                for document_id, fields in failed.items():
                    newer = self._fields.get(document_id, {})
                    self._fields[document_id] = {**fields, **newer}
                    self._due.setdefault(document_id, time.monotonic() + self.delay)
                self._changed.notify_all()


class Documents:
    """Every change of a document's state, by name, over the catalog.

    The compactor's move to ``done`` happens inside the catalog, in the same
    transaction that marks a delivery's last part merged
    (:meth:`~conveyor.catalog.Catalog.complete_part`), with :meth:`done_fields`.
    Each move is kept in the document's history (``Catalog.events``), written with it.

    A :meth:`stage` is held back (:class:`Held`) and written with the document's next
    write through the same :class:`Documents` — every method but :meth:`queued` takes
    it — or on its own ``delay`` seconds later. A job that ends without writing its
    document (its lease lost) drops it with :meth:`forget`.
    """

    def __init__(self, catalog: Catalog, *, delay: float | None = None) -> None:
        self.catalog = catalog
        self.held = Held(catalog, STAGE_DELAY if delay is None else delay)

    def queued(self, docs: Sequence[tuple[str, str, str]], run: str) -> None:
        """``(document_id, collection, source)`` submitted in ``run``: back to ``queued``
        with their error and attempts cleared."""
        self.catalog.enqueued(docs, run)

    def usage(self, run: str) -> dict[str, int]:
        """What the documents of ``run`` sent to a remote embedding provider (the
        ``usage`` each delivery recorded: tokens, requests, texts) — the run's bill."""
        total = {"tokens": 0, "requests": 0, "texts": 0, "documents": 0}
        for doc in self.catalog.documents(run=run):
            usage = (doc.get("metadata") or {}).get("usage") or {}
            if usage:
                total["documents"] += 1
                for key in ("tokens", "requests", "texts"):
                    total[key] += int(usage.get(key, 0))
        return total

    @contextmanager
    def gather(self) -> Iterator[list[str]]:
        """Inside (and in contexts copied inside), :meth:`started` is held back like a
        stage, and the documents it names are listed in what this yields, for
        :meth:`flush` to write together — or each with its own next write, or on its own
        after :data:`STAGE_DELAY` seconds, whichever comes first."""
        gathered: list[str] = []
        token = _GATHERED.set(gathered)
        try:
            yield gathered
        finally:
            _GATHERED.reset(token)

    def flush(self, gathered: list[str]) -> None:
        """Write the moves held back for the ``gathered`` documents (see :meth:`gather`)
        in one transaction, and empty the list. If that fails, they are held again: each
        document's next write writes its move first (and fails the job if it fails)."""
        moves = self.held.take_moves(gathered)
        gathered.clear()
        if not moves:
            return
        try:
            self.catalog.move_many([(d, *_move(fields)) for d, fields in moves.items()])
        except Exception as exc:
            log.warning("could not write a group's moves to running: %s", safe_summary(exc))
            for document_id, fields in moves.items():
                self.hold_again(document_id, fields)

    def started(self, document_id: str, current: str | None, *, attempts: int) -> None:
        """A worker took the document's job (``current``: its state before)."""
        check(current, State.RUNNING)
        reason = f"attempt {attempts}" if attempts > 1 else "a worker took it"
        fields: dict[str, Any] = {
            "state": State.RUNNING.value,
            "stage": "fetch",
            "attempts": attempts,
        }
        gathered = _GATHERED.get()
        if gathered is not None:
            self.held.hold(document_id, {**fields, REASON: reason})
            gathered.append(document_id)
            return
        self._write(document_id, reason, **fields)

    def stage(self, document_id: str, stage: str, **fields: Any) -> None:
        """Where a running document is now (and what was learnt on the way): held back
        until the document's next write, or :data:`STAGE_DELAY` seconds at most."""
        self.held.hold(document_id, {"stage": stage, **fields})

    def forget(self, document_id: str) -> None:
        """Drop what is held back for the document: its job ended without writing it
        (its lease went to another worker, which writes its own)."""
        self.held.take(document_id)

    def skipped(self, document_id: str) -> None:
        """Unchanged since it was last merged: its chunks are still searchable."""
        self._move(document_id, State.SKIPPED, "unchanged", error=None, error_kind=None)

    def settled_again(self, document_id: str, state: State) -> None:
        """A duplicate job found it unchanged: back to the state it was settled in."""
        if state not in SEARCHABLE:
            raise InvalidTransition(f"a document is not settled again as {state}")
        self._move(document_id, state, "a second job found it unchanged")

    def deleting(self, document_id: str) -> None:
        """A deletion is written; the compactor removes the document's chunks, then the
        document itself."""
        self._write(document_id, None, stage=DELETE)

    def merging(self, document_id: str, **fields: Any) -> None:
        """Its delta is written; the compactor makes it ``done``. (A worker writes these
        columns with the delta itself: :meth:`merging_columns`.)"""
        self._write(document_id, None, **_MERGING, **fields)

    def merging_columns(
        self, document_id: str, **fields: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """:meth:`merging`'s columns, for a delivery written later with other documents'
        (:meth:`Catalog.add_deltas <conveyor.catalog.Catalog.add_deltas>`), and what
        was held back among them (a move held back is written first). Should that write
        fail, :meth:`hold_again` holds the latter for the document's next write."""
        held = self._take(document_id)
        return {**held, **_MERGING, **fields}, held

    def hold_again(self, document_id: str, held: dict[str, Any]) -> None:
        """What was taken for a write that failed (:meth:`merging_columns`'s, a group's
        moves), held again under anything held since, for the document's next write."""
        if held:
            self.held.hold(document_id, {**held, **self.held.take(document_id)})

    def retrying(self, document_id: str, error: str, kind: str) -> None:
        """Failed for now: queued again after a backoff."""
        self._write(
            document_id,
            f"to retry ({kind}): {error}",
            state=State.QUEUED.value,
            stage=RETRY,
            error=error,
            error_kind=kind,
        )

    def released(self, document_id: str) -> None:
        """Its worker stopped before finishing: queued again, nothing held against it."""
        self._move(document_id, State.QUEUED, "released", error=None, error_kind=None)

    def redriven(self, document_id: str) -> None:
        """Its dead letter went back onto the queue: queued afresh."""
        self._move(document_id, State.QUEUED, "redriven", error=None, error_kind=None)

    def failed(self, document_id: str, error: str, kind: str, **fields: Any) -> None:
        """Failed for good, with a one-line reason and its kind."""
        self._move(
            document_id, State.FAILED, f"{kind}: {error}", error=error, error_kind=kind, **fields
        )

    @staticmethod
    def done_fields(
        *,
        chunks: int,
        content_hash: str,
        fingerprint: str,
        model: str,
        timings: Mapping[str, float],
    ) -> dict[str, Any]:
        """The columns of a document the compactor has merged completely."""
        return {
            "state": State.DONE.value,
            "stage": None,
            "chunks": chunks,
            "content_hash": content_hash,
            "fingerprint": fingerprint,
            "model": model,
            "timings": dict(timings),
            "error": None,
            "error_kind": None,
        }

    def _move(self, document_id: str, target: State, reason: str, **fields: Any) -> None:
        """Every move is written with its event in the document's history
        (:mod:`conveyor.catalog.events`), in the same transaction."""
        self._write(document_id, reason, state=target.value, stage=None, **fields)

    def _write(self, document_id: str, reason: str | None, **fields: Any) -> None:
        """``fields`` after what was held back for the document (its stage replaced):
        a move (with ``state``, and ``reason`` for its history), else an update. Should
        the write fail, what was held is held again, for the write that follows."""
        held = self._take(document_id)
        try:
            if "state" in fields:
                self.catalog.move(document_id, reason, **{**held, **fields})
            else:
                self.catalog.update(document_id, **{**held, **fields})
        except BaseException:
            self.hold_again(document_id, held)
            raise

    def _take(self, document_id: str) -> dict[str, Any]:
        """What is held back for the document, no longer held; a move to running among
        it is written now, first, with its event (so the history keeps the order)."""
        held = self.held.take(document_id)
        if REASON in held:
            reason, columns = _move(held)
            try:
                self.catalog.move(document_id, reason, **columns)
            except BaseException:
                self.hold_again(document_id, held)
                raise
            held = {}
        return held
