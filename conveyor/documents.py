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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .catalog import Catalog


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


class Documents:
    """Every change of a document's state, by name, over the catalog.

    The compactor's move to ``done`` happens inside the catalog, in the same
    transaction that marks a delivery's last part merged
    (:meth:`~conveyor.catalog.Catalog.complete_part`), with :meth:`done_fields`.
    Each move is kept in the document's history (``Catalog.events``), written with it.
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

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

    def started(self, document_id: str, current: str | None, *, attempts: int) -> None:
        """A worker took the document's job (``current``: its state before)."""
        check(current, State.RUNNING)
        self.catalog.move(
            document_id,
            f"attempt {attempts}" if attempts > 1 else "a worker took it",
            state=State.RUNNING.value,
            stage="fetch",
            attempts=attempts,
        )

    def stage(self, document_id: str, stage: str, **fields: Any) -> None:
        """Where a running document is now (and what was learnt on the way)."""
        self.catalog.update(document_id, stage=stage, **fields)

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
        self.catalog.update(document_id, stage=DELETE)

    def merging(self, document_id: str, **fields: Any) -> None:
        """Its delta is written; the compactor makes it ``done``."""
        self.catalog.update(document_id, stage=MERGE, error=None, error_kind=None, **fields)

    def retrying(self, document_id: str, error: str, kind: str) -> None:
        """Failed for now: queued again after a backoff."""
        self.catalog.move(
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
        self.catalog.move(document_id, reason, state=target.value, stage=None, **fields)
