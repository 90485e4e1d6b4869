"""Workers: take a job, turn its file into chunks and vectors, hand them to the compactor.

``process`` is one job from lease to ack; :class:`WorkerPool` runs a bounded
number of them at once in threads, with one heartbeat thread extending every
lease in flight, so a job has no time cap. Errors are classified: permanent
ones dead-letter at once, the rest are retried with backoff until the queue's
``max_receives``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np

from .blobstore import read_source, source_path
from .chunking import chunk_sections
from .exceptions import EmptyDocument, PermanentError, classify, safe_summary
from .extract.receipt import extract_receipt
from .ids import chunk_id, content_hash, document_id
from .jobs import MANIFEST_KEY, Job, document_of, manifest, manifest_bytes, s3_event_jobs
from .queue import Lease, LeaseLost
from .retry import RetryPolicy
from .summary import summarise

if TYPE_CHECKING:
    from .app import Components

log = logging.getLogger(__name__)


def fingerprint(content: str, model_id: str, size: int, overlap: int) -> str:
    """What makes a document's chunks what they are: same fingerprint, nothing to redo."""
    return f"{content}|{model_id}|{size}|{overlap}"


@dataclass
class Outcome:
    document_id: str | None
    status: str  # merge (delta written), skipped, retry, failed, lost (lease gone)
    error: str | None = None
    chunks: int = 0
    timings: dict[str, float] = field(default_factory=dict)


class Processor:
    """Runs one job: fetch → sniff/extract → chunk → embed → delta → ack."""

    def __init__(self, components: Components, *, on_delta: Callable[[], None] | None = None):
        self.c = components
        self.retry = RetryPolicy(base=components.settings.retry_base_seconds)
        self.on_delta = on_delta or (lambda: None)

    def process(self, lease: Lease) -> Outcome:
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
            job = Job.from_message(lease.body, default_collection=self.c.settings.collection)
            doc_id = document_id(job.collection, job.source)
            return self._run(lease, job, doc_id)
        except Exception as exc:
            return self._fail(lease, job, doc_id, exc)

    def _ours(self, source: str) -> bool:
        """Whether ``source`` lies in the blob store conveyor writes to: indexing our own
        result manifests would write a manifest for each, which fires another event…"""
        root = self.c.blobs.uri("x")[:-1]  # the store's root URI, ending in "/"
        return source.startswith(root)

    def _fan_out(self, lease: Lease, messages: list[dict[str, Any]]) -> Outcome:
        """An S3 event naming several objects (or none): one job per object, then the
        event is acked. Dying in between redelivers the event, which sends the same
        jobs again; they are idempotent (same document ids), so nothing is lost."""
        extra = {"job": lease.job_id}
        if messages:
            self.c.queue.send_many(messages)
            log.info("S3 event with %d objects: one job each", len(messages), extra=extra)
        else:
            log.info("S3 event with no object to ingest; acknowledged", extra=extra)
        self._ack(lease, extra)
        return Outcome(None, "skipped")

    def _run(self, lease: Lease, job: Job, doc_id: str) -> Outcome:
        s, catalog = self.c.settings, self.c.catalog
        timings: dict[str, float] = {}
        log_extra = {"job": lease.job_id, "document": doc_id}
        previous = catalog.get(doc_id) or {}  # the last version's fingerprint and units
        if not previous:  # a job sent by someone else than `ingest`
            catalog.enqueued([(doc_id, job.collection, job.source)], job.run)
        catalog.update(doc_id, state="running", stage="fetch", attempts=lease.receive_count)

        t = time.perf_counter()
        read_at = catalog.now()  # deltas of one document are ordered by it, across hosts
        receipt: tuple[bytes, bytes] | None = None
        if job.kind == "receipt":
            receipt = self._receipt_artifacts(job)
            data = receipt[0] + b"\n\0\n" + receipt[1]
        else:
            data = read_source(job.source, max_bytes=s.max_file_bytes)
        digest = content_hash(data)
        timings["fetch"] = time.perf_counter() - t
        tokenizer = self.c.tokenizer
        model_id = self.c.embedder.model_id
        fp = fingerprint(digest, model_id, s.chunk_size, s.chunk_overlap)
        if previous.get("fingerprint") == fp and not job.options.get("force"):
            catalog.update(doc_id, state="skipped", stage=None, error=None, error_kind=None)
            self._manifest(job, doc_id, "skipped", 0, content_hash=digest, model=model_id)
            self._ack(lease, log_extra)
            log.info("unchanged, skipped", extra=log_extra)
            return Outcome(doc_id, "skipped", chunks=int(previous.get("chunks") or 0))

        catalog.update(doc_id, stage="extract", content_hash=digest, size=len(data))
        t = time.perf_counter()
        options = {**self._extract_options(), **job.options}
        name = PurePosixPath(urlparse(job.source).path).name or None
        if receipt is not None:  # JSON already: nothing hostile to isolate
            extracted = extract_receipt(
                *receipt,
                image_id=str(job.options["image_id"]),
                receipt_id=job.options["receipt_id"],
            )
        else:
            extracted = self.c.extractor.extract(
                data,
                name=name,
                kind=job.kind,
                options={**options, "image_id": doc_id},
                progress=lambda message: catalog.update(doc_id, stage=message),
            )
        timings["extract"] = time.perf_counter() - t
        if isinstance(job.options.get("metadata"), dict):  # the uploader's, kept as given
            extracted.metadata["user"] = job.options["metadata"]
        if extracted.artifacts:
            keys = {}
            for artifact, content in extracted.artifacts.items():
                keys[artifact] = f"artifacts/{doc_id}/{artifact}"
                self.c.blobs.put(keys[artifact], content)
            extracted.metadata["artifacts"] = keys

        catalog.update(doc_id, stage="chunk", kind=extracted.kind, mime=extracted.mime)
        t = time.perf_counter()
        chunks = chunk_sections(extracted.sections, tokenizer, s.chunk_size, s.chunk_overlap)
        timings["chunk"] = time.perf_counter() - t
        if not chunks:
            raise EmptyDocument("no text to index after extraction")

        catalog.update(doc_id, stage="embed")
        t = time.perf_counter()
        vectors = self.c.embedder.embed([c.text for c in chunks])
        timings["embed"] = time.perf_counter() - t
        if extracted.kind == "audio":
            catalog.update(doc_id, stage="summarise")
            t = time.perf_counter()
            extracted.metadata.update(
                summarise(
                    [sec.text for sec in extracted.sections],
                    self.c.embedder,
                    llm_base_url=s.llm_base_url,
                    llm_model=s.llm_model,
                    llm_api_key=s.llm_api_key,
                    llm_timeout=s.llm_timeout,
                ).as_dict()
            )
            timings["summarise"] = time.perf_counter() - t

        header = {
            "source": job.source,
            "run": job.run,
            "job_id": lease.job_id,
            "read_at": read_at,
            "content_hash": digest,
            "fingerprint": fp,
            "kind": extracted.kind,
            "mime": extracted.mime,
            "size": len(data),
            "model": model_id,
            "backend": getattr(self.c.query_embedder, "backend", None),
            "dim": int(vectors.shape[1]),
            "timings": timings,
            "metadata": extracted.metadata,
        }
        records = [
            {
                "id": chunk_id(doc_id, c.index),
                "chunk_index": c.index,
                "text": c.text,
                "page": c.page,
                "metadata": {
                    **c.metadata,
                    "start": c.start,
                    "end": c.end,
                    "tokens": c.tokens,
                    "start_s": c.start_s,
                    "end_s": c.end_s,
                    "kind": extracted.kind,
                    **(
                        {"title": extracted.metadata["title"]}
                        if extracted.metadata.get("title")
                        else {}
                    ),
                },
            }
            for c in chunks
        ]
        parts = [(job.collection, records, vectors)]
        # unit collections this version fills, and those an earlier version filled:
        # an empty part clears what the document no longer has (a photo become text)
        earlier = (previous.get("metadata") or {}).get("unit_collections") or []
        names = sorted(set(extracted.units) | set(earlier))
        extracted.metadata["unit_collections"] = sorted(
            n for n in extracted.units if extracted.units[n]
        )
        for name in names:
            units = extracted.units.get(name, [])
            t = time.perf_counter()
            unit_vectors = (
                self.c.embedder.embed([u.text for u in units])
                if units
                else np.zeros((0, vectors.shape[1]), dtype=np.float32)
            )
            timings[f"embed_{name}"] = time.perf_counter() - t
            unit_records = [
                {
                    "id": chunk_id(f"{doc_id}/{name}", i),
                    "chunk_index": i,
                    "text": u.text,
                    "page": u.page,
                    "metadata": {**u.metadata, "unit": name},
                }
                for i, u in enumerate(units)
            ]
            parts.append((f"{job.collection}_{name}", unit_records, unit_vectors))
        # one delta per collection (each has its own single writer); the document is
        # done when every part of this delivery is merged
        delivery = uuid.uuid4().hex  # this attempt: parts of an earlier one never count
        total = sum(len(recs) for _, recs, _ in parts)
        for number, (collection, recs, vecs) in enumerate(parts):
            part_header = {
                **header,
                "delivery": delivery,
                "part": number,
                "parts": len(parts),
                "main_chunks": len(records),
                "embeddings_total": total,
                "collections": {c: len(r) for c, r, _ in parts},
            }
            blob = np.ascontiguousarray(vecs, dtype=np.float32).tobytes()
            self.c.catalog.add_delta(collection, doc_id, part_header, recs, blob)
        catalog.update(
            doc_id,
            stage="merge",
            model=model_id,
            metadata=extracted.metadata,
            timings=timings,
            error=None,
            error_kind=None,
        )
        self.on_delta()
        self._ack(lease, log_extra)
        log.info("embedded %d chunks; waiting for the compactor", len(chunks), extra=log_extra)
        return Outcome(doc_id, "merge", chunks=len(chunks), timings=timings)

    def _receipt_artifacts(self, job: Job) -> tuple[bytes, bytes]:
        """The lines and words NDJSON a receipt message names. The bucket is a folder
        (path or file:// URI), an ``s3://bucket`` URI, or a bare name: an S3 bucket
        when the blob store is on S3, else a top-level folder of the blob store."""
        from .blobstore.s3 import S3BlobStore

        bucket = str(job.options["artifacts_bucket"])
        if "://" not in bucket and isinstance(self.c.blobs, S3BlobStore):
            bucket = f"s3://{bucket}"
        limit = self.c.settings.max_file_bytes
        out = []
        for key in ("lines_key", "words_key"):
            name = str(job.options[key])
            parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
            if not parts or ".." in parts:
                raise PermanentError(f"receipt {key} {name[:100]!r} must stay inside the bucket")
            if bucket.startswith(("file://", "/")):
                root = source_path(bucket)
                assert root is not None
                out.append(read_source(root.joinpath(*parts).as_uri(), max_bytes=limit))
            elif bucket.startswith("s3://"):
                where = bucket[len("s3://") :].strip("/")
                if not where or ".." in where.split("/"):
                    raise PermanentError(f"invalid artifacts bucket {bucket[:100]!r}")
                out.append(read_source(f"s3://{where}/{'/'.join(parts)}", max_bytes=limit))
            elif "://" in bucket:
                raise PermanentError(
                    f"artifacts bucket {safe_summary(bucket)!r} is not reachable: use "
                    "s3://bucket, a folder path or a file:// URI"
                )
            else:
                if not bucket.strip("/") or ".." in bucket.split("/"):
                    raise PermanentError(f"invalid artifacts bucket {bucket[:100]!r}")
                blob_key = "/".join([bucket.strip("/"), *parts])
                info = self.c.blobs.stat(blob_key)
                if info is not None and info.size > limit:
                    raise PermanentError(
                        f"{key} is {info.size:,} bytes, over the limit of {limit:,}"
                    )
                out.append(self.c.blobs.get(blob_key))
        return out[0], out[1]

    def _extract_options(self) -> dict[str, Any]:
        """What the extractors need from the settings (they run in a child process)."""
        s = self.c.settings
        options: dict[str, Any] = {
            "whisper_model": s.whisper_model,
            "compute_type": s.whisper_compute_type,
            "language": s.whisper_language,
            "threads": s.whisper_threads,
        }
        if s.max_pdf_pages:
            options["max_pages"] = s.max_pdf_pages
        options.update(
            ocr_lang=s.ocr_lang,
            ocr_timeout=s.ocr_timeout or None,
            max_pixels=s.max_image_pixels,
            detect_orientation=s.ocr_orientation,
        )
        return options

    def _ack(self, lease: Lease, extra: dict[str, Any]) -> None:
        try:
            self.c.queue.ack(lease)
        except LeaseLost:
            # the lease expired and the job went to someone else; our work is
            # written and idempotent, so the redelivery only repeats it
            log.warning("lease lost before ack; the job will be redelivered", extra=extra)

    def _fail(self, lease: Lease, job: Job | None, doc_id: str | None, exc: Exception) -> Outcome:
        kind = classify(exc)
        summary = safe_summary(exc)
        extra = {"job": lease.job_id, "document": doc_id, "error_kind": kind}
        if kind == "unknown":
            log.exception("job failed: %s", summary, extra=extra)
        else:
            log.info("job failed (%s): %s", kind, summary, extra=extra)
        decision = self.retry.decide(kind, lease.receive_count, self.c.queue.max_receives)
        try:
            # still ours? A worker paused past its lease must not overwrite the outcome
            # of the worker that took the job over
            lease = self.c.queue.extend(lease, self.c.settings.visibility_timeout)
        except LeaseLost:
            log.warning("lease lost before failing the job; another worker has it", extra=extra)
            return Outcome(doc_id, "lost", error=summary)
        if doc_id is not None and job is not None:
            if decision.delay is None:
                self.c.catalog.update(
                    doc_id, state="failed", stage=None, error=summary, error_kind=kind
                )
                self._manifest(job, doc_id, "failed", 0, error=summary, error_kind=kind)
            else:
                self.c.catalog.update(
                    doc_id, state="queued", stage="retry", error=summary, error_kind=kind
                )
        try:
            if decision.delay is None:
                self.c.queue.dead_letter(lease, summary)
            else:
                self.c.queue.release(lease, delay=decision.delay, error=summary)
        except LeaseLost:
            log.warning("lease lost while failing the job", extra=extra)
        status = "failed" if decision.delay is None else "retry"
        return Outcome(doc_id, status, error=summary)

    def _manifest(self, job: Job, doc_id: str, status: str, n: int, **extra: Any) -> None:
        data = manifest(
            source=job.source,
            document_id=doc_id,
            collection=job.collection,
            run=job.run,
            status=status,
            embeddings=n,
            **extra,
        )
        self.c.blobs.put(MANIFEST_KEY.format(run=job.run, document_id=doc_id), manifest_bytes(data))


WORKER_BEAT_SECONDS = 5.0


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
        components: Components,
        *,
        concurrency: int,
        on_delta: Callable[[], None] | None = None,
        poll_interval: float = 0.2,
    ) -> None:
        self.c = components
        self.concurrency = concurrency
        self.processor = Processor(components, on_delta=on_delta)
        self.poll_interval = poll_interval
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.worker_id = f"{self.host}:{self.pid}:{uuid.uuid4().hex[:6]}"
        self.stopping = threading.Event()
        self.jobs_done = self.jobs_failed = 0
        self._in_flight: dict[str, Lease] = {}
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
                self.c.queue.release(
                    lease, error="released: the worker stopped before it finished", refund=True
                )
            except Exception as exc:  # the lease expires by itself anyway
                log.warning("release failed: %s", safe_summary(exc), extra={"job": lease.job_id})
                continue
            doc = document_of(lease.body, self.c.settings.collection)
            if doc:
                self.c.catalog.update(doc, state="queued", stage=None)
        self.close()
        return len(leftover)

    def close(self) -> None:
        """Record this worker as stopped (its threads have ended)."""
        if not self._beat_stop.is_set():
            self._beat_stop.set()
            self._beat("stopped")

    def _beat(self, state: str) -> None:
        try:
            self.c.catalog.worker_beat(
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
        depth = self.c.queue.depth()
        return depth.visible == 0 and depth.in_flight == 0 and depth.delayed == 0

    def _loop(self, until_idle: bool) -> None:
        vt = self.c.settings.visibility_timeout
        while not self.stopping.is_set():
            try:
                leases = self.c.queue.receive(1, visibility_timeout=vt)
                if not leases:
                    if until_idle and self._idle():
                        return
                    self.stopping.wait(self.poll_interval)
                    continue
            except Exception as exc:  # a busy database, a network blip: wait, go on
                log.warning(
                    "receiving failed, retrying: %s",
                    safe_summary(exc),
                    extra={"worker": self.worker_id},
                )
                self.stopping.wait(max(1.0, self.poll_interval))
                continue
            for lease in leases:
                with self._lock:
                    self._in_flight[lease.receipt] = lease  # SQS may deliver a job twice
                try:
                    outcome = self.processor.process(lease)
                except Exception as exc:  # failing the job failed too; its lease will expire
                    log.error(
                        "job handling failed: %s",
                        safe_summary(exc),
                        exc_info=True,
                        extra={"job": lease.job_id, "worker": self.worker_id},
                    )
                    outcome = Outcome(None, "failed", error=safe_summary(exc))
                finally:
                    with self._lock:
                        self._in_flight.pop(lease.receipt, None)
                if outcome.status == "failed":
                    self.jobs_failed += 1
                elif outcome.status in ("merge", "skipped"):
                    self.jobs_done += 1

    def _heartbeat(self) -> None:
        vt = self.c.settings.visibility_timeout
        interval = beat_interval(vt)
        last_beat = 0.0
        while not self._beat_stop.wait(interval):
            if not any(t.is_alive() for t in self._threads):
                break
            with self._lock:
                leases = list(self._in_flight.items())
            for receipt, lease in leases:
                try:
                    fresh = self.c.queue.extend(lease, vt)
                except LeaseLost:
                    log.warning("heartbeat: lease lost", extra={"job": lease.job_id})
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
