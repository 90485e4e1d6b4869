"""What changes, as it changes: the catalog watched for the status page and ``/metrics``.

Workers may run anywhere (this process with ``--workers``, other processes, other
hosts); what they all share is the catalog. :class:`Live` polls it every
:data:`POLL_SECONDS` for documents updated since the last look — the catalog
lists documents newest first, so a poll reads only the head of that list, more
when more changed — and turns each change into an event for the ``/events``
subscribers. The same observations feed the counters of
:class:`~conveyor.server.metrics.ApiMetrics` (jobs by outcome, errors by kind,
embeddings, a histogram of stage durations), so they count the work of every
worker, not only this process's.

Timestamps come from the workers' clocks: a change is looked for within
:data:`LOOKBACK_SECONDS` behind the newest one seen, which absorbs that much clock
skew between hosts. Counters start at zero when the server starts, as Prometheus
counters do.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from ..documents import FINISHED, RETRY, State
from ..exceptions import safe_summary
from ..worker import stale_after
from .metrics import ApiMetrics

if TYPE_CHECKING:
    from ..app import Conveyor

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
LOOKBACK_SECONDS = 5.0
RECONCILE_SECONDS = 5.0
MAX_SCAN = 8192
SUBSCRIBER_BACKLOG = 1000
FINISHED_ORDER = (State.DONE, State.SKIPPED, State.FAILED)


def display_name(source: str) -> str:
    """The file name of a source URI (``report.pdf``), or the URI when it has none."""
    path = unquote(urlparse(source).path)
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return name or source


def document_event(doc: dict[str, Any]) -> dict[str, Any]:
    """What the status page needs to show a document's row."""
    return {
        "id": doc["id"],
        "collection": doc["collection"],
        "name": display_name(doc["source"]),
        "source": doc["source"],
        "state": doc["state"],
        "stage": doc["stage"],
        "chunks": doc["chunks"],
        "error": doc["error"],
        "error_kind": doc["error_kind"],
        "attempts": doc["attempts"] or 0,
        "updated_at": datetime.fromtimestamp(float(doc["updated_at"]), UTC).isoformat(),
    }


@dataclass
class Event:
    id: int
    kind: str  # "document" | "queue"
    data: dict[str, Any]


class Live:
    """The poller, its subscribers, and the counters it feeds (``metrics``: by default
    a registry of its own)."""

    def __init__(
        self,
        conveyor: Conveyor,
        *,
        metrics: ApiMetrics | None = None,
        interval: float = POLL_SECONDS,
    ) -> None:
        self.cv = conveyor
        self.metrics = metrics if metrics is not None else ApiMetrics(conveyor)
        self.interval = interval
        self.stopping = threading.Event()
        self.subscribers: set[asyncio.Queue[Event]] = set()
        self.started = time.time()
        self._seen: dict[str, tuple[float, str, str | None]] = {}
        self._newest: float | None = None
        self._baselined = False
        self._next_id = 0
        self._last_queue: dict[str, Any] | None = None
        self._last_reconcile = 0.0
        self._throughput: tuple[float, list[dict[str, Any]]] | None = None
        self.recent_events: deque[Event] = deque(maxlen=200)

    # -- polling ---------------------------------------------------------

    def poll(self) -> list[Event]:
        """One look at the catalog (blocking: run it in a thread). Returns new events."""
        c = self.cv.components
        if time.time() - self._last_reconcile > RECONCILE_SECONDS:
            self._last_reconcile = time.time()
            self.cv.reconcile()  # documents whose job the queue dead-lettered by itself
        events = []
        for doc in self._changed(c.catalog):
            events.append(self._event("document", document_event(doc)))
        snapshot = {"queue": c.queue.depth().as_dict(), "documents": c.catalog.counts()}
        if snapshot != self._last_queue:
            self._last_queue = snapshot
            events.append(self._event("queue", snapshot))
        return events

    def _changed(self, catalog: Any) -> Iterator[dict[str, Any]]:
        first = not self._baselined  # what exists at start-up is not news
        self._baselined = True
        floor = (self._newest or 0.0) - LOOKBACK_SECONDS
        limit = 64
        while True:
            docs = catalog.documents(limit=limit)
            if first or len(docs) < limit or docs[-1]["updated_at"] < floor or limit >= MAX_SCAN:
                break
            limit *= 4
        if docs:
            self._newest = max(self._newest or 0.0, float(docs[0]["updated_at"]))
        for doc in docs:
            if doc["updated_at"] < floor:
                break
            key = (float(doc["updated_at"]), doc["state"], doc["stage"])
            previous = self._seen.get(doc["id"])
            if previous == key:
                continue
            self._seen[doc["id"]] = key
            if not first:
                self._observe(doc, previous)
                yield doc
        cutoff = (self._newest or 0.0) - 2 * LOOKBACK_SECONDS
        for doc_id in [d for d, k in self._seen.items() if k[0] < cutoff]:
            del self._seen[doc_id]

    def _observe(self, doc: dict[str, Any], previous: tuple[float, str, str | None] | None) -> None:
        state, stage = doc["state"], doc["stage"]
        if state in FINISHED and (previous is None or previous[1] != state):
            self._throughput = None  # the chart changes with it
            self.metrics.finished(
                state,
                chunks=int(doc["chunks"] or 0),
                timings=doc.get("timings"),
                error_kind=doc["error_kind"],
            )
        elif state == State.QUEUED and stage == RETRY and (previous or (0, "", ""))[2] != RETRY:
            self.metrics.retried(doc["error_kind"])

    def _event(self, kind: str, data: dict[str, Any]) -> Event:
        self._next_id += 1
        event = Event(self._next_id, kind, data)
        self.recent_events.append(event)
        return event

    async def run(self) -> None:
        """Poll until stopped, handing events to subscribers; errors are logged, not fatal."""
        while not self.stopping.is_set():
            try:
                events = await asyncio.to_thread(self.poll)
            except Exception as exc:  # a busy database: the next poll tries again
                log.warning("status poll failed: %s", safe_summary(exc))
                events = []
            for event in events:
                for queue in list(self.subscribers):
                    try:
                        queue.put_nowait(event)
                    except asyncio.QueueFull:  # a stalled client; it reconnects and reloads
                        self.subscribers.discard(queue)
            await asyncio.sleep(self.interval)

    def subscribe(self) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=SUBSCRIBER_BACKLOG)
        self.subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        self.subscribers.discard(queue)

    # -- summaries -------------------------------------------------------

    def throughput(self, minutes: int = 15) -> list[dict[str, Any]]:
        """Documents done, skipped and failed per minute over the last ``minutes``
        (cached for 5 s)."""
        now = time.time()
        if self._throughput is not None and now - self._throughput[0] < 5.0:
            return self._throughput[1]
        catalog = self.cv.components.catalog
        start = (int(now // 60) - minutes + 1) * 60
        points = {
            start + 60 * i: {s.value: 0 for s in FINISHED_ORDER} | {"chunks": 0}
            for i in range(minutes)
        }
        for state, limit in ((State.DONE, 5000), (State.SKIPPED, 5000), (State.FAILED, 1000)):
            for doc in catalog.documents(state=state, limit=limit):
                if doc["updated_at"] < start:
                    break
                minute = int(doc["updated_at"] // 60) * 60
                if minute in points:
                    points[minute][state] += 1
                    if state == State.DONE:
                        points[minute]["chunks"] += int(doc["chunks"] or 0)
        out = [{"minute": m, **v} for m, v in sorted(points.items())]
        self._throughput = (now, out)
        return out

    def workers(self) -> list[dict[str, Any]]:
        catalog = self.cv.components.catalog
        return list(catalog.workers(stale_after=stale_after(self.cv.settings.visibility_timeout)))
