"""Dead letters and their documents: reconciling what the queue dead-lettered by
itself, and redriving letters back onto the queue."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from .catalog import Catalog
from .documents import Documents, State
from .exceptions import ConveyorError
from .jobs import document_of
from .queue import DeadLetter, JobQueue

RECONCILE_RESCAN_SECONDS = 60.0


class DeadLetters:
    """The dead-letter side of one home, for the library API."""

    def __init__(self, queue: JobQueue, catalog: Catalog, default_collection: str) -> None:
        self.queue, self.catalog = queue, catalog
        self.documents = Documents(catalog)
        self.default_collection = default_collection
        self._seen: tuple[int, float] | None = None  # (dead letters, when listed)

    def reconcile(self) -> int:
        """Documents whose job the queue dead-lettered by itself (its leases kept
        expiring: the worker died on it every time) become ``failed`` with that reason.
        Returns how many changed.

        Listing dead letters costs a scan (on SQS, reads of the whole DLQ), so it is
        skipped while the queue holds none, and, in a long-lived process (the API
        polls this), while their number has not changed for less than a minute."""
        dead, now = self.queue.depth().dead, time.monotonic()
        seen = self._seen
        if dead == 0 or (seen and seen[0] == dead and now - seen[1] < RECONCILE_RESCAN_SECONDS):
            self._seen = (dead, seen[1] if seen and seen[0] == dead else now)
            return 0
        self._seen = (dead, now)
        changed = 0
        for letter in self.queue.dead_letters(limit=10_000):
            doc_id = document_of(letter.body, self.default_collection)
            doc = self.catalog.get(doc_id) if doc_id else None
            if doc_id and doc is not None and doc["state"] in (State.QUEUED, State.RUNNING):
                if not letter_is_current(letter, doc):
                    continue  # an old job's letter; the document was submitted again since
                self.documents.failed(
                    doc_id,
                    # SQS moves a job by its receive count without a reason: the
                    # document then keeps the last error the worker recorded
                    letter.error or doc.get("error") or "dead-lettered by the queue",
                    "unknown",
                )
                changed += 1
        return changed

    def redrive(self, job_ids: Sequence[str] | None = None) -> int:
        """Dead letters back onto the queue (all when ``job_ids`` is None); their
        documents go back to ``queued``. Returns how many moved."""
        wanted = None if job_ids is None else set(job_ids)
        letters = [
            d
            for d in self.queue.dead_letters(limit=1_000_000)
            if wanted is None or d.job_id in wanted
        ]
        if wanted is not None:
            unknown = wanted - {d.job_id for d in letters}
            if unknown:
                raise ConveyorError("not in the dead-letter queue: " + ", ".join(sorted(unknown)))
        moved = self.queue.redrive(None if job_ids is None else list(job_ids))
        for letter in letters:
            doc_id = document_of(letter.body, self.default_collection)
            if doc_id:
                self.documents.redriven(doc_id)
        return moved


def letter_is_current(letter: DeadLetter, doc: dict[str, Any]) -> bool:
    """Whether a dead letter is about the document's latest submission, not one from
    before it was submitted again (re-ingested, re-uploaded, redriven by hand).

    Where the queue knows when it moved the job (SQLite, PostgreSQL: the same clock as
    the catalog's), the document must not have changed since. SQS keeps no move time;
    there the letter must belong to the document's current run."""
    if letter.last_seen > letter.first_seen:
        return float(doc["updated_at"]) <= letter.last_seen
    body = letter.body if isinstance(letter.body, dict) else {}
    return body.get("run") is None or body.get("run") == doc.get("run")
