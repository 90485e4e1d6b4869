"""The library API: ``conveyor.open(home)`` → :class:`Conveyor`.

It wires the backends named by :class:`~conveyor.settings.Settings` and offers
what the CLI offers: ingest, search, status, documents, export.
"""

from __future__ import annotations

import glob
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from .blobstore import BlobStore, open_blobstore, source_path
from .catalog import Catalog, open_catalog
from .compactor import Compactor
from .embedding import Embedder, Tokenizer
from .exceptions import ConveyorError, safe_summary
from .ids import document_id
from .jobs import Job, check_name, document_of
from .queue import JobQueue, open_queue
from .settings import Settings
from .vectorstore import Hit, VectorStore, open_vectorstore
from .worker import WorkerPool, stale_after

log = logging.getLogger(__name__)

RECONCILE_RESCAN_SECONDS = 60.0


def onnx_folder(settings: Settings) -> Path:
    """Where the ONNX export of the configured model lives."""
    name = settings.model.strip("/").replace("/", "--")
    return settings.models_path / name


class Components:
    """The backends of one home, opened on first use."""

    def __init__(self, settings: Settings, *, local_embedder: Any = None) -> None:
        self.settings = settings
        if local_embedder is not None:  # a fake in unit tests, a shared model in a server
            self.__dict__["local_embedder"] = local_embedder

    @cached_property
    def queue(self) -> JobQueue:
        s = self.settings
        url = s.queue_url or f"sqlite://{s.database_path.resolve()}"
        return open_queue(url, max_receives=s.max_receives)

    @cached_property
    def catalog(self) -> Catalog:
        s = self.settings
        return open_catalog(s.catalog_url or s.database_path)

    @cached_property
    def blobs(self) -> BlobStore:
        return open_blobstore(self.settings.blobs_url or self.settings.blobs_path)

    @cached_property
    def vectors(self) -> VectorStore:
        s = self.settings
        return open_vectorstore(s.vectors_url or str(s.database_path))

    @cached_property
    def extractor(self) -> Any:
        """``extract`` in child processes with limits, or in this process."""
        s = self.settings
        if not s.isolate_extraction:
            from . import extract

            return extract
        from .isolation import IsolatedExtractor

        return IsolatedExtractor(
            timeout=s.extract_timeout or None, memory_mb=s.extract_memory_mb or None
        )

    @cached_property
    def local_embedder(self) -> Any:
        """The model in this process, with the configured backend."""
        s = self.settings
        if s.embedding_backend.startswith("onnx"):
            from .embedding.onnx import OnnxEmbedder

            return OnnxEmbedder(s.model, onnx_folder(s), int8=s.embedding_backend == "onnx-int8")
        from .embedding.local import LocalEmbedder

        return LocalEmbedder(s.model, device=s.device, batch_size=s.embed_batch_size)

    @cached_property
    def tokenizer(self) -> Tokenizer:
        return self.local_embedder.tokenizer  # type: ignore[no-any-return,unused-ignore]

    @cached_property
    def query_embedder(self) -> Embedder:
        """The embedding service when one is configured (local model as fallback),
        else the local model."""
        if self.settings.embedding_url:
            from .embedding.http import HttpEmbedder

            return HttpEmbedder(self.settings.embedding_url, fallback=lambda: self.local_embedder)
        return self.local_embedder  # type: ignore[no-any-return,unused-ignore]

    @cached_property
    def embedder(self) -> Embedder:
        """Batching across workers in front of the model, the cache in front of that."""
        from .embedding.batching import BatchingEmbedder
        from .embedding.cache import CachedEmbedder

        s = self.settings
        inner: Embedder = self.query_embedder
        if not s.embedding_url:  # the service batches across clients itself
            inner = BatchingEmbedder(self.local_embedder, max_batch=s.embed_batch_size * 2)
        if s.embedding_cache:
            inner = CachedEmbedder(inner, self.catalog)
        return inner

    def open_all(self) -> None:
        """Open queue, catalog, blobs and vector store now, so that a wrong or unreachable
        URL stops a long-running process at start-up with a message naming it (password
        masked), instead of a worker that idles or retries with nothing to show."""
        for name in ("catalog", "queue", "blobs", "vectors"):
            getattr(self, name)

    def close(self) -> None:
        for name in ("queue", "catalog", "vectors", "blobs", "extractor", "query_embedder"):
            closer = getattr(self.__dict__.get(name), "close", None)
            if closer is not None:
                closer()
        if "embedder" in self.__dict__:
            inner = self.__dict__["embedder"]
            while inner is not None:
                if hasattr(inner, "close"):
                    inner.close()
                inner = getattr(inner, "inner", None)


@dataclass
class Enqueued:
    run: str
    collection: str
    jobs: int
    document_ids: list[str] = field(default_factory=list)


@dataclass
class IngestSummary:
    run: str
    collection: str
    enqueued: int
    done: int
    skipped: int
    failed: int
    chunks: int
    seconds: float
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def unfinished(self) -> int:
        """Documents of the run not (yet) done, skipped or failed."""
        return self.enqueued - self.done - self.skipped - self.failed

    @property
    def chunks_per_second(self) -> float:
        return self.chunks / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "collection": self.collection,
            "enqueued": self.enqueued,
            "done": self.done,
            "skipped": self.skipped,
            "failed": self.failed,
            "unfinished": self.unfinished,
            "chunks": self.chunks,
            "seconds": round(self.seconds, 3),
            "chunks_per_second": round(self.chunks_per_second, 2),
            "failures": self.failures,
        }


def new_run_name() -> str:
    return datetime.now(UTC).strftime("run-%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:4]


def expand_paths(
    paths: Iterable[str | Path],
    *,
    exclude: Sequence[Path] = (),
    listed: Callable[[str, int], None] | None = None,
) -> list[Path | str]:
    """Files named by ``paths``: files as given, folders recursively, globs expanded;
    ``s3://bucket/prefix/`` becomes the URIs of the objects under it (``listed`` is
    told the running count every 1,000 objects).

    Hidden files and folders (``.git``, ``.DS_Store``) inside folders are left
    out. A path that names nothing is an error, so typos are not silent.
    """
    found: dict[Path | str, None] = {}
    missing = []
    skip = [p.resolve() for p in exclude]
    for raw in paths:
        text = str(raw)
        if text.startswith("s3://"):
            from .blobstore.s3 import list_sources

            tell = (lambda n, url=text: listed(url, n)) if listed else None
            found.update(dict.fromkeys(list_sources(text, progress=tell)))
            continue
        if Path(text).exists():
            matches = [Path(text)]
        elif glob.has_magic(text):
            matches = [Path(m) for m in sorted(glob.glob(text, recursive=True))]
        else:
            matches = []
        if not matches:
            missing.append(text)
        for match in matches:
            if match.is_dir():
                for f in sorted(match.rglob("*")):
                    rel = f.relative_to(match).parts
                    resolved = f.resolve()
                    if any(p.startswith(".") for p in rel) or not f.is_file():
                        continue
                    if any(resolved == s or s in resolved.parents for s in skip):
                        continue
                    found[resolved] = None
            elif match.is_file():
                found[match.resolve()] = None
    if missing:
        raise ConveyorError("no such file or directory: " + ", ".join(missing))
    return list(found)


class Conveyor:
    """One conveyor home: its queue, catalog, blobs, vectors and model."""

    def __init__(self, settings: Settings, *, embedder: Any = None) -> None:
        self.settings = settings
        self.components = Components(settings, local_embedder=embedder)
        self._reconciled: tuple[int, float] | None = None  # (dead letters, when listed)

    def __enter__(self) -> Conveyor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.components.close()

    # -- intake ----------------------------------------------------------

    def enqueue(
        self,
        paths: Iterable[str | Path],
        *,
        collection: str | None = None,
        run: str | None = None,
        force: bool = False,
        listed: Callable[[str, int], None] | None = None,
    ) -> Enqueued:
        """One job per file under ``paths`` (or object under an ``s3://`` prefix);
        nothing runs yet."""
        collection = check_name("collection", collection or self.settings.collection)
        run = check_name("run", run or new_run_name())
        files = expand_paths(paths, exclude=[self.settings.home], listed=listed)
        jobs = [
            Job(
                source=f if isinstance(f, str) else f.as_uri(),
                collection=collection,
                run=run,
                options={"force": True} if force else {},
            )
            for f in files
        ]
        docs = [(document_id(collection, j.source), collection, j.source) for j in jobs]
        c = self.components
        c.catalog.start_run(run, collection, len(jobs))
        c.catalog.enqueued(docs, run)
        c.queue.send_many([j.message() for j in jobs])
        return Enqueued(run, collection, len(jobs), [d[0] for d in docs])

    def submit(
        self,
        source: str,
        *,
        collection: str | None = None,
        run: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """One job for a source URI (an uploaded blob, an object in a bucket); returns
        the document id. ``metadata`` travels in the job (``options.metadata``) and is
        kept on the document under ``metadata["user"]``."""
        collection = check_name("collection", collection or self.settings.collection)
        run = check_name("run", run or new_run_name())
        job = Job(
            source=source,
            collection=collection,
            run=run,
            options={"metadata": metadata} if metadata else {},
        )
        doc = document_id(collection, source)
        c = self.components
        c.catalog.start_run(run, collection, 1)
        c.catalog.enqueued([(doc, collection, source)], run)
        if metadata:
            known = (c.catalog.get(doc) or {}).get("metadata") or {}
            c.catalog.update(doc, metadata={**known, "user": metadata})
        try:
            c.queue.send(job.message())
        except Exception as exc:
            # not left "queued" with no job: a failed document is submitted again next time
            c.catalog.update(
                doc,
                state="failed",
                stage=None,
                error_kind="transient",
                error=f"could not be enqueued: {safe_summary(exc)}",
            )
            raise
        return doc

    def work(
        self,
        *,
        concurrency: int | None = None,
        until_idle: bool = True,
        progress: Callable[[], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        """Run workers and the compactor in this process until the queue is drained."""
        c = self.components
        c.open_all()
        c.tokenizer  # noqa: B018 - fail on a bad model before taking jobs
        compactor = Compactor(c)
        pool = WorkerPool(
            c, concurrency=concurrency or self.settings.concurrency, on_delta=compactor.wake.set
        )
        writer_stop = threading.Event()
        writer = threading.Thread(
            target=compactor.run, args=(writer_stop,), name="conveyor-compactor", daemon=True
        )
        writer.start()
        pool.start(until_idle=until_idle)
        try:
            while not pool.join(timeout=0.2):
                if progress:
                    progress()
                if stop is not None and stop.is_set():
                    pool.stop()
        except KeyboardInterrupt:
            # jobs in flight get a moment to finish; the rest go back to the queue
            pool.shutdown(grace=10.0)
            raise
        finally:
            pool.close()
            writer_stop.set()
            compactor.wake.set()
            while writer.is_alive():
                writer.join(0.2)
                if progress:
                    progress()
        if progress:
            progress()

    def ingest(
        self,
        paths: Iterable[str | Path],
        *,
        collection: str | None = None,
        run: str | None = None,
        force: bool = False,
        wait: bool = True,
        progress: Callable[[Enqueued], Callable[[], None]] | None = None,
        listed: Callable[[str, int], None] | None = None,
    ) -> IngestSummary:
        """Enqueue ``paths``; unless ``wait`` is False, process them and summarise."""
        started = time.perf_counter()
        queued = self.enqueue(paths, collection=collection, run=run, force=force, listed=listed)
        if wait and queued.jobs:
            tick = progress(queued) if progress else None
            self.work(progress=tick)
        return self.summary(queued, time.perf_counter() - started)

    def summary(self, queued: Enqueued, seconds: float) -> IngestSummary:
        catalog = self.components.catalog
        self.reconcile()
        counts = catalog.counts(run=queued.run)
        failures = [
            {"id": d["id"], "source": d["source"], "error": d["error"]}
            for d in catalog.documents(run=queued.run, state="failed")
        ]
        return IngestSummary(
            run=queued.run,
            collection=queued.collection,
            enqueued=queued.jobs,
            done=counts["done"],
            skipped=counts["skipped"],
            failed=counts["failed"],
            chunks=catalog.chunk_total(run=queued.run),
            seconds=seconds,
            failures=sorted(failures, key=lambda f: f["source"]),
        )

    # -- reading ---------------------------------------------------------

    def search(self, query: str, k: int = 5, *, collection: str | None = None) -> list[Hit]:
        return self.search_many([query], k, collection=collection)[0]

    def search_many(
        self, queries: Sequence[str], k: int = 5, *, collection: str | None = None
    ) -> list[list[Hit]]:
        """Nearest chunks for each query, closest first; the model is loaded once."""
        collection = collection or self.settings.collection
        c = self.components
        info = self._require_collection(collection)
        model = c.query_embedder
        if info.model_id != model.model_id:
            raise ConveyorError(
                f"collection {collection!r} was embedded with {info.model_id}, but the "
                f"configured model is {model.model_id}; set CONVEYOR_MODEL to match"
            )
        vectors: Any = model.embed(list(queries)) if queries else []
        return [c.vectors.query(collection, v, k) for v in vectors]

    def _require_collection(self, collection: str) -> Any:
        info = self.components.vectors.collection(collection)
        if info is None:
            known = ", ".join(i.name for i in self.components.vectors.collections()) or "none yet"
            raise ConveyorError(
                f"collection {collection!r} does not exist (collections: {known}); "
                "ingest something first"
            )
        return info

    def reconcile(self) -> int:
        """Documents whose job the queue dead-lettered by itself (its leases kept
        expiring: the worker died on it every time) become ``failed`` with that reason.
        Returns how many changed.

        Listing dead letters costs a scan (on SQS, reads of the whole DLQ), so it is
        skipped while the queue holds none, and, in a long-lived process (the API
        polls this), while their number has not changed for less than a minute."""
        c = self.components
        dead, now = c.queue.depth().dead, time.monotonic()
        seen = self._reconciled
        if dead == 0 or (seen and seen[0] == dead and now - seen[1] < RECONCILE_RESCAN_SECONDS):
            self._reconciled = (dead, seen[1] if seen and seen[0] == dead else now)
            return 0
        self._reconciled = (dead, now)
        changed = 0
        for letter in c.queue.dead_letters(limit=10_000):
            doc_id = document_of(letter.body, self.settings.collection)
            doc = c.catalog.get(doc_id) if doc_id else None
            if doc_id and doc is not None and doc["state"] in ("queued", "running"):
                if not _letter_is_current(letter, doc):
                    continue  # an old job's letter; the document was submitted again since
                c.catalog.update(
                    doc_id,
                    state="failed",
                    stage=None,
                    error_kind="unknown",
                    # SQS moves a job by its receive count without a reason: the
                    # document then keeps the last error the worker recorded
                    error=letter.error or doc.get("error") or "dead-lettered by the queue",
                )
                changed += 1
        return changed

    def status(self) -> dict[str, Any]:
        c = self.components
        self.reconcile()
        return {
            "home": str(self.settings.home.resolve()),
            "queue": c.queue.depth().as_dict(),
            "documents": c.catalog.counts(),
            "deltas": c.catalog.delta_counts(),
            "collections": [
                {"name": i.name, "chunks": i.count, "model": i.model_id, "dim": i.dim}
                for i in c.vectors.collections()
            ],
            "compactions": c.catalog.compactions(limit=5),
            "running": [
                {"id": d["id"], "source": d["source"], "stage": d["stage"]}
                for d in c.catalog.documents(state="running", limit=20)
            ],
            "workers": c.catalog.workers(stale_after=stale_after(self.settings.visibility_timeout)),
        }

    def documents(
        self, *, state: str | None = None, collection: str | None = None, run: str | None = None
    ) -> list[dict[str, Any]]:
        self.reconcile()
        docs = self.components.catalog.documents(state=state, collection=collection, run=run)
        for d in docs:
            path = source_path(d["source"])
            d["path"] = str(path) if path is not None else None
            for key in ("duration", "language", "summary", "topics"):  # recordings
                if key in d["metadata"]:
                    d[key] = d["metadata"][key]
        return docs

    def dead_letters(self, limit: int = 100) -> list[Any]:
        return self.components.queue.dead_letters(limit)

    def redrive(self, job_ids: Sequence[str] | None = None) -> int:
        """Dead letters back onto the queue (all when ``job_ids`` is None); their
        documents go back to ``queued``. Returns how many moved."""
        c = self.components
        wanted = None if job_ids is None else set(job_ids)
        letters = [
            d for d in c.queue.dead_letters(limit=1_000_000) if wanted is None or d.job_id in wanted
        ]
        if wanted is not None:
            unknown = wanted - {d.job_id for d in letters}
            if unknown:
                raise ConveyorError("not in the dead-letter queue: " + ", ".join(sorted(unknown)))
        moved = c.queue.redrive(None if job_ids is None else list(job_ids))
        for letter in letters:
            doc_id = document_of(letter.body, self.settings.collection)
            if doc_id:
                c.catalog.update(doc_id, state="queued", stage=None)
        return moved

    def serve_worker(
        self,
        *,
        concurrency: int | None = None,
        compactor: bool = True,
        grace: float = 30.0,
        stop: threading.Event,
        hurry: threading.Event | None = None,
        until_idle: bool = False,
    ) -> dict[str, int]:
        """A long-running worker: jobs until ``stop`` is set, then a graceful shutdown —
        jobs in flight get ``grace`` seconds, the rest go back to the queue."""
        c = self.components
        c.open_all()
        c.tokenizer  # noqa: B018 - fail on a bad model before taking jobs
        writer = Compactor(c) if compactor else None
        pool = WorkerPool(
            c,
            concurrency=concurrency or self.settings.concurrency,
            on_delta=writer.wake.set if writer else None,
        )
        writer_stop = threading.Event()
        writer_thread = None
        if writer is not None:
            writer_thread = threading.Thread(
                target=writer.run,
                args=(writer_stop,),
                kwargs={"drain": False},
                name="conveyor-compactor",
                daemon=True,
            )
            writer_thread.start()
        pool.start(until_idle=until_idle)
        log.info("worker started", extra={"worker": pool.worker_id})
        while not stop.is_set() and not pool.join(timeout=0.5):
            pass
        released = pool.shutdown(grace, hurry=hurry)
        if writer is not None and writer_thread is not None:
            writer_stop.set()
            writer.wake.set()
            writer_thread.join(grace)
        log.info("worker stopped", extra={"worker": pool.worker_id})
        return {"done": pool.jobs_done, "failed": pool.jobs_failed, "released": released}

    def serve_compactor(self, *, stop: threading.Event) -> None:
        """The single writer alone, until ``stop`` is set."""
        self.components.open_all()
        Compactor(self.components).run(stop, drain=False)

    def export(self, collection: str | None = None) -> Iterator[dict[str, Any]]:
        """Every chunk with its vector, for moving to another store or checking."""
        collection = collection or self.settings.collection
        self._require_collection(collection)
        for rec in self.components.vectors.iter_chunks(collection, vectors=True):
            yield {
                "id": rec.id,
                "document_id": rec.document_id,
                "source": rec.source,
                "chunk_index": rec.chunk_index,
                "page": rec.page,
                "text": rec.text,
                "vector": [round(float(x), 7) for x in rec.vector]
                if rec.vector is not None
                else None,
                "metadata": rec.metadata,
                "collection": collection,
            }


def _letter_is_current(letter: Any, doc: dict[str, Any]) -> bool:
    """Whether a dead letter is about the document's latest submission, not one from
    before it was submitted again (re-ingested, re-uploaded, redriven by hand).

    Where the queue knows when it moved the job (SQLite, PostgreSQL: the same clock as
    the catalog's), the document must not have changed since. SQS keeps no move time;
    there the letter must belong to the document's current run."""
    if letter.last_seen > letter.first_seen:
        return float(doc["updated_at"]) <= letter.last_seen
    body = letter.body if isinstance(letter.body, dict) else {}
    return body.get("run") is None or body.get("run") == doc.get("run")


def open_home(home: str | Path | None = None, **overrides: Any) -> Conveyor:
    """``conveyor.open(home)``: the :class:`Conveyor` of ``home`` (default ``$CONVEYOR_HOME``)."""
    settings = Settings(**overrides) if overrides else Settings()
    return Conveyor(settings.with_home(home))
