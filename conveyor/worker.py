"""Workers: take a job, turn its file into chunks and vectors, hand them to the compactor.

:class:`Processor` is one job from lease to ack around the document's
:class:`~conveyor.pipeline.Pipeline`; :class:`WorkerPool` runs a bounded
number of them at once in threads, with one heartbeat thread extending every
lease in flight, so a job has no time cap. Errors are classified: permanent
ones dead-letter at once, the rest are retried with backoff until the queue's
``max_receives``.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import measure, tracing
from .exceptions import NoSpace, classify, no_space, safe_summary
from .ids import document_id
from .jobs import Job, document_of, s3_event_jobs
from .pipeline import Embedded, Outcome, Pipeline, Steps, Write, drive
from .queue import JobQueue, Lease, LeaseLost, ack_all
from .retry import RetryPolicy

__all__ = ["Outcome", "Processor", "WorkerPool", "beat_interval", "stale_after"]

log = logging.getLogger(__name__)


Settle = Callable[[Lease, "Outcome | Exception"], None]
"""Told how each job of :meth:`Processor.process_many` ended."""


@dataclass
class _Settling:
    """The acks and measurements of a group's jobs (:meth:`Processor.process_many`),
    written together after each wave: one transaction each, not one per job. A job's
    ack still follows its delivery; it waits only for the rest of its wave."""

    settle: Settle
    acks: list[tuple[Lease, dict[str, Any]]] = field(default_factory=list)
    measured: list[measure.Measurement] = field(default_factory=list)
    settled: list[tuple[Lease, Outcome]] = field(default_factory=list)
    """Jobs ended whose ack is still to be written: settled once it is (until then the
    worker's heartbeat keeps their leases, however long the rest of the wave runs)."""

    def ended(self, lease: Lease, ended: Outcome | Exception) -> None:
        """``settle``, held back for a job whose ack waits with the group's."""
        if isinstance(ended, Outcome) and any(a.receipt == lease.receipt for a, _ in self.acks):
            self.settled.append((lease, ended))
        else:
            self.settle(lease, ended)


_SETTLING: contextvars.ContextVar[_Settling | None] = contextvars.ContextVar(
    "conveyor_settling", default=None
)


@dataclass
class _Suspended:
    """A job of :meth:`Processor.process_many`: its steps, run in a context of its own
    (its measurement and trace are context variables), and what it waits on: texts to
    embed, or its delivery to be written."""

    lease: Lease
    context: contextvars.Context
    steps: Steps
    request: list[str] | Write = field(default_factory=list)
    ended: bool = False

    @property
    def texts(self) -> list[str]:
        return self.request if isinstance(self.request, list) else []

    def go(self, resume: Callable[[], list[str] | Write], settle: Settle) -> bool:
        """Run the job on to its next wait (True) or its end (settled; False)."""
        try:
            self.request = self.context.run(resume)
        except StopIteration as stop:
            self.ended = True
            settle(self.lease, stop.value)
            return False
        except Exception as exc:  # failing the job failed too (or a disk is full)
            self.ended = True
            settle(self.lease, exc)
            return False
        return True


class Processor:
    """Runs one job from lease to ack: the document's :class:`~conveyor.pipeline.Pipeline`,
    and what concerns the job around it — S3 events fanned out, the ack, a failure
    classified and retried or dead-lettered."""

    def __init__(
        self,
        pipeline: Pipeline,
        queue: JobQueue,
        *,
        send: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.queue = queue
        self.send = send or queue.send_many
        """How an S3 event's jobs are sent (routed: the long ones to the long queue)."""
        self.settings = pipeline.settings
        self.retry = RetryPolicy(base=pipeline.settings.retry_base_seconds)
        self.runtime = measure.runtime()
        """Where jobs run, as their measurements say: worker, lambda or run-job."""
        self.text_seconds = 0.0
        """The model's recent pace, seconds a text (a moving average)."""

    def process(self, lease: Lease) -> Outcome:
        """One job, traced and measured (:mod:`conveyor.measure`): its record goes to
        the catalog whatever became of it."""
        return drive(self.steps(lease), self.pipeline.embedder.embed, self.pipeline.catalog)

    def process_many(
        self,
        leases: list[Lease],
        settle: Settle,
        *,
        stop: threading.Event | None = None,
        begin: Callable[[Lease], bool] | None = None,
    ) -> int:
        """Several jobs side by side: each runs its stages up to its embedding, then their
        chunks go to the model together (a call whenever they wait on :data:`WAVE_TEXTS`
        texts, or on about a quarter second of the model's time at its pace so far), then
        each goes on to its delivery and ack. ``settle(lease, outcome)`` is called as each
        ends (with the exception, if handling it failed). Each job keeps its own lease,
        measurement, trace, delta and failure: one that fails fails alone, and a failed
        model call fails each job of the call as its own failure would. Once ``stop`` is
        set, the jobs not yet begun go back to the queue, visible at once; a job for
        which ``begin(lease)`` says False was handed back meanwhile (by the worker's
        heartbeat: its group ran long) and is not begun. Returns how many jobs had
        chunks to embed."""
        settling = _Settling(settle=settle)
        settle = settling.ended
        token = _SETTLING.set(settling)
        try:  # each job's context sees both: its ack, measurement and start are gathered
            with self.pipeline.documents.gather() as gathered:
                jobs = [_Suspended(x, contextvars.copy_context(), self.steps(x)) for x in leases]
        finally:
            _SETTLING.reset(token)
        waiting: list[_Suspended] = []
        embedded = 0
        try:
            for n, job in enumerate(jobs, 1):
                if stop is not None and stop.is_set() and n > 1:
                    job.ended = True
                    self.hand_back(job.lease, "released: the worker is stopping")
                    settle(job.lease, Outcome(None, "lost", error="released before it began"))
                elif begin is not None and not begin(job.lease):
                    job.ended = True
                    settle(job.lease, Outcome(None, "lost", error="handed back before it began"))
                elif job.go(job.steps.__next__, settle):
                    waiting.append(job)
                texts = sum(len(j.texts) for j in waiting)
                if waiting and (
                    n == len(jobs)
                    or texts >= WAVE_TEXTS
                    or texts * self.text_seconds >= GROUP_SECONDS / 2
                ):
                    embedded += len(waiting)
                    self.pipeline.documents.flush(gathered)  # their moves to running
                    self._embed_wave(waiting, settle)
                    waiting = []
                    self._settle_together(settling)
        finally:
            for job in jobs:  # unfinished only when something raised past the jobs
                if not job.ended:
                    job.context.run(job.steps.close)
            self.pipeline.documents.flush(gathered)
            self._settle_together(settling)
        return embedded

    def _settle_together(self, settling: _Settling) -> None:
        """The acks, then the measurements, of the jobs ended since the last time; then
        the jobs are settled."""
        acks, settling.acks = settling.acks, []
        measured, settling.measured = settling.measured, []
        settled, settling.settled = settling.settled, []
        if acks:
            try:
                lost = ack_all(self.queue, [lease for lease, _ in acks])
            except Exception as exc:
                log.info(
                    "acking %d jobs together failed, each alone now: %s",
                    len(acks),
                    safe_summary(exc),
                )
                lost = []
                for lease, extra in acks:
                    try:
                        self.queue.ack(lease)
                    except LeaseLost:
                        lost.append(lease)
                    except Exception as alone:  # its lease runs out: it is done again
                        log.warning("ack failed: %s", safe_summary(alone), extra=extra)
            extras = {lease.receipt: extra for lease, extra in acks}
            for lease in lost:
                log.warning(LEASE_LOST, extra=extras[lease.receipt])
        if measured:
            measure.record_many(self.pipeline.catalog, measured)
        for lease, outcome in settled:
            settling.settle(lease, outcome)

    def _embed_wave(self, waiting: list[_Suspended], settle: Settle) -> None:
        """Embed what ``waiting`` jobs wait on, together, and run each on to its end:
        their deliveries are written together too."""
        while waiting:
            called = [job for job in waiting if not isinstance(job.request, Write)]
            writing = [job for job in waiting if isinstance(job.request, Write)]
            waiting = []
            ended: list[tuple[_Suspended, Embedded | Exception | None]] = []
            if called:
                ended += self._embed_together(called)
            if writing:
                ended += self._write_together(writing)
            for job, result in ended:
                if isinstance(result, Exception):
                    resume = functools.partial(job.steps.throw, result)
                else:
                    resume = functools.partial(job.steps.send, result)
                if job.go(resume, settle):
                    waiting.append(job)

    def _write_together(self, jobs: list[_Suspended]) -> list[tuple[_Suspended, Exception | None]]:
        """The jobs' deliveries in one transaction (:meth:`Catalog.add_deltas
        <conveyor.catalog.Catalog.add_deltas>`); if that fails, each alone, so that a
        delivery the catalog refuses fails its own job and no other."""
        catalog = self.pipeline.catalog
        requests = [job.request for job in jobs if isinstance(job.request, Write)]
        if len(requests) > 1:
            try:
                catalog.add_deltas([request.delta for request in requests])
                return [(job, None) for job in jobs]
            except Exception as exc:
                log.info(
                    "writing %d deliveries together failed, each alone now: %s",
                    len(jobs),
                    safe_summary(exc),
                )
        alone: list[tuple[_Suspended, Exception | None]] = []
        for job, request in zip(jobs, requests, strict=True):
            try:
                job.context.run(request.delta.add, catalog)
            except Exception as exc:
                alone.append((job, exc))
            else:
                alone.append((job, None))
        return alone

    def _embed_together(
        self, jobs: list[_Suspended]
    ) -> list[tuple[_Suspended, Embedded | Exception]]:
        """The jobs' texts in one model call, each job's share of the vectors and time.
        If that call fails, each job's texts are embedded alone, so that a text the
        model cannot take fails its own document and no other."""
        texts = [t for job in jobs for t in job.texts]
        embed = self.pipeline.embedder.embed
        started = time.perf_counter()
        try:
            # one job's call runs in its context: a remote provider meters it there
            vectors = jobs[0].context.run(embed, texts) if len(jobs) == 1 else embed(texts)
        except Exception as exc:
            if len(jobs) == 1:
                return [(jobs[0], exc)]
            log.info(
                "embedding %d jobs together failed, each alone now: %s",
                len(jobs),
                safe_summary(exc),
            )
            alone: list[tuple[_Suspended, Embedded | Exception]] = []
            for job in jobs:
                alone += self._embed_together([job])
            return alone
        seconds, offset = time.perf_counter() - started, 0
        pace = seconds / len(texts)
        self.text_seconds = 0.8 * self.text_seconds + 0.2 * pace if self.text_seconds else pace
        shares: list[tuple[_Suspended, Embedded | Exception]] = []
        for job in jobs:
            n = len(job.texts)
            share = Embedded(vectors[offset : offset + n], seconds * n / len(texts), len(jobs) - 1)
            shares.append((job, share))
            offset += n
        return shares

    def steps(self, lease: Lease) -> Steps:
        """:meth:`process` as steps (:meth:`Pipeline.steps <conveyor.pipeline.Pipeline.steps>`)."""
        outcome: Outcome | None = None
        with measure.measuring(self.runtime) as measured:
            measured.job_id = lease.job_id
            try:
                with tracing.span("job", job=lease.job_id, attempt=lease.receive_count):
                    outcome = yield from self._process(lease)
                    tracing.annotate(
                        status=outcome.status,
                        document=outcome.document_id,
                        chunks=outcome.chunks,
                        error=outcome.error,
                    )
            finally:
                measured.outcome = outcome.status if outcome is not None else "failed"
        if measured.document_id is not None:
            settling = _SETTLING.get()
            if settling is not None:  # written with the group's (process_many)
                settling.measured.append(measured)
            else:
                measure.record(self.pipeline.catalog, measured)
        return outcome

    def _process(self, lease: Lease) -> Steps:
        doc_id: str | None = None
        job: Job | None = None
        try:
            fanned = s3_event_jobs(lease.body)
            if fanned is not None:
                ours = [m for m in fanned if self._ours(m["source"])]
                if ours:  # a notification on the whole bucket also fires for our own writes
                    log.info(
                        "ignoring S3 events for %d object(s) in conveyor's own blob store "
                        "(manifests, artifacts, uploads), e.g. %s; filter the bucket's "
                        "notification by the sources' prefix",
                        len(ours),
                        ours[0]["source"],
                        extra={"job": lease.job_id},
                    )
                    fanned = [m for m in fanned if m not in ours]
                if len(fanned) != 1 or ours:
                    return self._fan_out(lease, fanned)
            job = Job.from_message(lease.body, default_collection=self.settings.collection)
            doc_id = document_id(job.collection, job.source)
            outcome = yield from self.pipeline.steps(
                job, job_id=lease.job_id, document_id=doc_id, attempts=lease.receive_count
            )
        except Exception as exc:
            full = no_space(exc, self.database)
            if full is not None:  # not the job's fault, and failing it would write too
                self.hand_back(lease)
                raise full from exc
            return self._fail(lease, job, doc_id, exc)
        finally:
            if doc_id is not None:  # a stage held back and not written with the outcome:
                self.pipeline.documents.forget(doc_id)  # the job's lease went elsewhere
        extra = {"job": lease.job_id, "document": doc_id}
        measure.settled()
        self._ack(lease, extra)
        if outcome.status == "skipped":
            log.info("unchanged, skipped", extra=extra)
        else:
            log.info("embedded %d chunks; waiting for the compactor", outcome.chunks, extra=extra)
        return outcome

    @property
    def database(self) -> str:
        """What a full database is named by in the error."""
        s = self.settings
        return safe_summary(s.catalog_url or str(s.database_path.resolve()))

    def hand_back(self, lease: Lease, why: str = "released: no space left") -> None:
        """Back to the queue, visible at once, the delivery not counted (best effort:
        else its lease expires)."""
        try:
            self.queue.release(lease, error=why, refund=True)
        except Exception as exc:
            log.warning("release failed: %s", safe_summary(exc), extra={"job": lease.job_id})

    def _ours(self, source: str) -> bool:
        """Whether ``source`` lies in the blob store conveyor writes to: indexing our own
        result manifests would write a manifest for each, which fires another event…"""
        root = self.pipeline.blobs.uri("x")[:-1]  # the store's root URI, ending in "/"
        return source.startswith(root)

    def _fan_out(self, lease: Lease, messages: list[dict[str, Any]]) -> Outcome:
        """An S3 event naming several objects (or none): one job per object, then the
        event is acked. Dying in between redelivers the event, which sends the same
        jobs again; they are idempotent (same document ids), so nothing is lost."""
        extra = {"job": lease.job_id}
        if messages:
            self.send(messages)
            log.info("S3 event with %d objects: one job each", len(messages), extra=extra)
        else:
            log.info("S3 event with no object to ingest; acknowledged", extra=extra)
        self._ack(lease, extra)
        return Outcome(None, "skipped")

    def _ack(self, lease: Lease, extra: dict[str, Any]) -> None:
        settling = _SETTLING.get()
        if settling is not None:  # acked with the group's (process_many)
            settling.acks.append((lease, extra))
            return
        try:
            self.queue.ack(lease)
        except LeaseLost:
            log.warning(LEASE_LOST, extra=extra)

    def _fail(self, lease: Lease, job: Job | None, doc_id: str | None, exc: Exception) -> Outcome:
        kind = classify(exc)
        summary = safe_summary(exc)
        extra = {"job": lease.job_id, "document": doc_id, "error_kind": kind}
        if kind == "unknown":
            log.exception("job failed: %s", summary, extra=extra)
        else:
            log.info("job failed (%s): %s", kind, summary, extra=extra)
        decision = self.retry.decide(kind, lease.receive_count, self.queue.max_receives)
        try:
            # still ours? A worker paused past its lease must not overwrite the outcome
            # of the worker that took the job over
            lease = self.queue.extend(lease, self.settings.visibility_timeout)
        except LeaseLost:
            log.warning("lease lost before failing the job; another worker has it", extra=extra)
            return Outcome(doc_id, "lost", error=summary)
        if doc_id is not None and job is not None:
            documents = self.pipeline.documents
            if decision.delay is None:
                documents.failed(doc_id, summary, kind)
                self.pipeline.manifests.failed(
                    source=job.source,
                    document_id=doc_id,
                    collection=job.collection,
                    run=job.run,
                    error=summary,
                    kind=kind,
                )
            else:
                documents.retrying(doc_id, summary, kind)
        measure.settled()
        try:
            if decision.delay is None:
                self.queue.dead_letter(lease, summary)
            else:
                self.queue.release(lease, delay=decision.delay, error=summary)
        except LeaseLost:
            log.warning("lease lost while failing the job", extra=extra)
        return Outcome(doc_id, "failed" if decision.delay is None else "retry", error=summary)


LEASE_LOST = "lease lost before ack; the job will be redelivered"
"""The lease expired and the job went to someone else; our work is written and
idempotent, so the redelivery only repeats it."""

WORKER_BEAT_SECONDS = 5.0
GROUP_SECONDS = 0.5
"""About how long the jobs a worker thread takes at once should run together."""
GROUP_HOLD_SECONDS = 2.0
"""How long jobs of a group may wait behind a slow one before they are handed back."""
WAVE_TEXTS = 256
"""Texts a group's jobs gather before they are embedded (and delivered and acked)."""


def beat_interval(visibility_timeout: float) -> float:
    """How often a worker extends its leases and reports itself."""
    return max(0.05, min(visibility_timeout / 3, WORKER_BEAT_SECONDS))


def stale_after(visibility_timeout: float) -> float:
    """A running worker silent this long is marked stale (killed, hung, host gone)."""
    return 4 * beat_interval(visibility_timeout)


class WorkerPool:
    """``concurrency`` threads taking jobs, plus a heartbeat thread that extends their
    leases (so a job has no time cap) and records this worker in the catalog."""

    def __init__(
        self,
        processor: Processor,
        *,
        concurrency: int,
        poll_interval: float = 0.2,
        max_group: int = 1,
    ) -> None:
        self.processor = processor
        self.max_group = max_group
        """Most jobs one thread takes at once (their chunks embedded in one model call)."""
        self.group = 1
        """How many it takes next (:meth:`_size_group`)."""
        self.queue = processor.queue
        self.catalog = processor.pipeline.catalog
        self.settings = processor.settings
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.worker_id = f"{self.host}:{self.pid}:{uuid.uuid4().hex[:6]}"
        self.stopping = threading.Event()
        self.full: NoSpace | None = None
        """Set when a disk filled up: the pool stopped taking work (see :meth:`_out_of_space`)."""
        self.jobs_done = self.jobs_failed = 0
        self._in_flight: dict[str, Lease] = {}
        self._waiting: dict[str, float] = {}
        """Jobs of a group in hand not begun yet (receipt → when the group began)."""
        self._handed: set[str] = set()
        """Of those, the ones the heartbeat handed back (their group ran long)."""
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._beat_stop = threading.Event()

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def start(self, *, until_idle: bool = False) -> None:
        self._beat("running")
        for n in range(self.concurrency):
            thread = threading.Thread(
                target=self._loop, args=(until_idle,), name=f"conveyor-worker-{n}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        beat = threading.Thread(target=self._heartbeat, name="conveyor-heartbeat", daemon=True)
        beat.start()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the job threads; True when all have ended."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(left)
        return not any(t.is_alive() for t in self._threads)

    def stop(self) -> None:
        """Take no more work; jobs in flight finish."""
        self.stopping.set()

    def shutdown(self, grace: float, *, hurry: threading.Event | None = None) -> int:
        """Stop taking work, give jobs in flight ``grace`` seconds to finish (cut short
        when ``hurry`` is set), then release the rest back to the queue, visible at once.
        Returns how many were released."""
        self.stop()
        deadline = time.monotonic() + grace
        while not self.join(timeout=0.2) and time.monotonic() < deadline:
            if hurry is not None and hurry.is_set():
                break
        with self._lock:
            leftover = list(self._in_flight.values())
            self._in_flight.clear()
        for lease in leftover:
            try:
                self.queue.release(
                    lease, error="released: the worker stopped before it finished", refund=True
                )
            except Exception as exc:  # the lease expires by itself anyway
                log.warning("release failed: %s", safe_summary(exc), extra={"job": lease.job_id})
                continue
            doc = document_of(lease.body, self.settings.collection)
            if doc:
                self.processor.pipeline.documents.released(doc)
        self.close()
        return len(leftover)

    def close(self) -> None:
        """Record this worker as stopped (its threads have ended)."""
        if not self._beat_stop.is_set():
            self._beat_stop.set()
            self._beat("stopped")

    def _beat(self, state: str) -> None:
        try:
            self.catalog.worker_beat(
                self.worker_id,
                host=self.host,
                pid=self.pid,
                concurrency=self.concurrency,
                state=state,
                in_flight=self.in_flight,
                jobs_done=self.jobs_done,
                jobs_failed=self.jobs_failed,
            )
        except Exception as exc:  # status is best effort; the work goes on
            log.warning("worker heartbeat failed: %s", safe_summary(exc))

    def _idle(self) -> bool:
        depth = self.queue.depth()
        return depth.visible == 0 and depth.in_flight == 0 and depth.delayed == 0

    def _loop(self, until_idle: bool) -> None:
        vt = self.settings.visibility_timeout
        while not self.stopping.is_set():
            try:
                leases = self.queue.receive(self.group, visibility_timeout=vt)
                if not leases:
                    if until_idle and self._idle():
                        return
                    self.stopping.wait(self.poll_interval)
                    continue
            except Exception as exc:  # a busy database, a network blip: wait, go on
                if self._out_of_space(exc):
                    return
                log.warning(
                    "receiving failed, retrying: %s",
                    safe_summary(exc),
                    extra={"worker": self.worker_id},
                )
                self.stopping.wait(max(1.0, self.poll_interval))
                continue
            started, embedded = time.monotonic(), 0
            with self._lock:
                for lease in leases:
                    self._in_flight[lease.receipt] = lease  # SQS may deliver a job twice
                for lease in leases[1:]:
                    self._waiting[lease.receipt] = started
            try:
                embedded = self.processor.process_many(
                    leases, self._settle, stop=self.stopping, begin=self._begin
                )
            finally:
                with self._lock:  # jobs left unsettled by an error: their leases expire
                    for lease in leases:
                        self._in_flight.pop(lease.receipt, None)
                        self._waiting.pop(lease.receipt, None)
                        self._handed.discard(lease.receipt)
            self._size_group(len(leases), embedded, time.monotonic() - started)
            if self.full is not None:
                return
            if getattr(self.queue, "max_in_flight", None):
                # a capped queue (CONVEYOR_MAX_IN_FLIGHT): a place just freed goes to any
                # receiver in the fleet, not straight back to this thread (no starving)
                self.stopping.wait(random.uniform(0, self.poll_interval))

    def _begin(self, lease: Lease) -> bool:
        """A job of the group in hand is about to begin: False if it was handed back."""
        with self._lock:
            self._waiting.pop(lease.receipt, None)
            return lease.receipt not in self._handed

    def _hand_back_waiting(self) -> None:
        """Jobs of a group still not begun :data:`GROUP_HOLD_SECONDS` after it began (a
        slow job ahead of them: a long recording among short notes) go back to the
        queue, visible at once and their delivery refunded, for a free thread or
        worker to take."""
        now = time.monotonic()
        late: list[Lease] = []
        with self._lock:
            for receipt, began in list(self._waiting.items()):
                if now - began > GROUP_HOLD_SECONDS:
                    del self._waiting[receipt]
                    self._handed.add(receipt)
                    lease = self._in_flight.pop(receipt, None)
                    if lease is not None:
                        late.append(lease)
        for lease in late:
            self.processor.hand_back(lease, "handed back: a slow job of its group ran first")
        if late:
            log.info("handed back %d jobs waiting behind a slow one", len(late))

    def _settle(self, lease: Lease, ended: Outcome | Exception) -> None:
        """A job of the group in hand ended (or handling it failed: ``ended`` is the error)."""
        with self._lock:
            self._in_flight.pop(lease.receipt, None)
        if isinstance(ended, Exception):
            if self._out_of_space(ended):
                return
            log.error(  # failing the job failed too; its lease will expire
                "job handling failed: %s",
                safe_summary(ended),
                exc_info=ended,
                extra={"job": lease.job_id, "worker": self.worker_id},
            )
            ended = Outcome(None, "failed", error=safe_summary(ended))
        if ended.status == "failed":
            self.jobs_failed += 1
        elif ended.status in ("merge", "skipped"):
            self.jobs_done += 1

    def _size_group(self, jobs: int, embedded: int, seconds: float) -> None:
        """How many jobs a thread takes next: as many as fill about :data:`GROUP_SECONDS`
        at the pace of the last ones that had chunks to embed (jobs that fail or are
        skipped early cost next to nothing, and must not make a group of slow ones: a
        group without any leaves the size as it was), growing at most twofold, at most
        ``max_group``. Small documents go through the model together; slow ones one at a
        time, so that a worker that dies holds few leases."""
        if not embedded:
            return
        each = seconds / embedded
        fit = int(GROUP_SECONDS / each) if each > 0 else self.max_group
        self.group = max(1, min(self.max_group, fit, 2 * max(jobs, self.group)))

    def _out_of_space(self, exc: Exception) -> bool:
        """On a full disk: stop taking work (once, logged once); True if it was that."""
        full = no_space(exc, self.processor.database)
        if full is None:
            return False
        with self._lock:
            first = self.full is None
            self.full = self.full or full
        if first:
            log.error("stopping: %s", full, extra={"worker": self.worker_id})
        self.stopping.set()
        return True

    def _heartbeat(self) -> None:
        vt = self.settings.visibility_timeout
        interval = beat_interval(vt)
        last_beat = 0.0
        while not self._beat_stop.wait(interval):
            if not any(t.is_alive() for t in self._threads):
                break
            self._hand_back_waiting()
            with self._lock:
                leases = list(self._in_flight.items())
            for receipt, lease in leases:
                try:
                    fresh = self.queue.extend(lease, vt)
                except LeaseLost:
                    # acked a moment ago (the snapshot above raced the ack), or truly lost:
                    # then the processor says so when it acks or fails the job
                    log.debug("heartbeat: lease no longer ours", extra={"job": lease.job_id})
                    continue
                except Exception as exc:  # keep beating for the others
                    log.warning(
                        "heartbeat failed: %s", safe_summary(exc), extra={"job": lease.job_id}
                    )
                    continue
                with self._lock:
                    if receipt in self._in_flight:
                        self._in_flight[receipt] = fresh
            if time.monotonic() - last_beat >= interval:
                self._beat("running")
                last_beat = time.monotonic()
        if not self._beat_stop.is_set():
            self._beat("stopped")
