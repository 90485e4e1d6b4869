"""The library API: ``conveyor.open(home)`` → :class:`Conveyor`.

It wires the backends named by :class:`~conveyor.settings.Settings` and offers
what the CLI offers: ingest, search, status, documents, export.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from . import deletion, routing, runner
from .blobstore import source_path
from .components import Components, onnx_folder
from .deadletters import DeadLetters
from .documents import Documents, State
from .embedding import LocalModel, base_model, precision
from .exceptions import ConveyorError, safe_summary
from .filters import Filter
from .ids import document_id
from .intake import Enqueued, IngestSummary, expand_paths, new_run_name
from .jobs import Job, check_name
from .manifests import Manifests
from .metadata import check_metadata
from .queue import DeadLetter
from .search import Mode, Results
from .settings import Settings
from .vectorstore import CollectionInfo, Hit

__all__ = ["Components", "Conveyor", "Enqueued", "IngestSummary", "onnx_folder", "open_home"]

log = logging.getLogger(__name__)


DESCRIBED = ("title", "keywords", "type", "outline")
"""Metadata a document listing shows beside the recordings' (``conveyor documents``)."""


class Conveyor:
    """One conveyor home: its queue, catalog, blobs, vectors and model."""

    def __init__(self, settings: Settings, *, embedder: LocalModel | None = None) -> None:
        self.settings = settings
        self.components = Components(settings, local_embedder=embedder)

    @property
    def _documents(self) -> Documents:
        return Documents(self.components.catalog)

    @cached_property
    def _dead_letters(self) -> DeadLetters:
        c = self.components
        return DeadLetters(c.queue, c.catalog, self.settings.collection)

    def __enter__(self) -> Conveyor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.components.close()

    # -- intake ----------------------------------------------------------

    def enqueue(
        self,
        paths: str | Path | Iterable[str | Path],
        *,
        collection: str | None = None,
        run: str | None = None,
        force: bool = False,
        listed: Callable[[str, int], None] | None = None,
        sync: bool = False,
    ) -> Enqueued:
        """One job per file under ``paths`` (one path or several; objects under an
        ``s3://`` prefix too); nothing runs yet. A path that names nothing becomes a
        failed document, ``file not found``, and the others go on. With ``sync``, the
        collection's documents under those folders whose file is gone are deleted."""
        collection = check_name("collection", collection or self.settings.collection)
        run = check_name("run", run or new_run_name())
        expanded = expand_paths(paths, exclude=[self.settings.home], listed=listed)
        jobs = [
            Job(
                source=f if isinstance(f, str) else f.as_uri(),
                collection=collection,
                run=run,
                options={"force": True} if force else {},
            )
            for f in expanded.files
        ]
        docs = [(document_id(collection, j.source), collection, j.source) for j in jobs]
        c = self.components
        c.catalog.start_run(run, collection, len(jobs) + len(expanded.missing))
        self._documents.queued(docs, run)
        routing.send(c, [j.message() for j in jobs])  # the long ones to the long queue
        for path in expanded.missing:
            self._not_found(path, collection, run)
        deleted: list[str] = []
        if sync:
            listed_paths = [str(p) for p in ([paths] if isinstance(paths, str | Path) else paths)]
            gone = deletion.gone(c.catalog, listed_paths, {j.source for j in jobs}, collection)
            deleted = self.delete(gone) if gone else []
        return Enqueued(
            run,
            collection,
            len(jobs),
            [d[0] for d in docs],
            missing=expanded.missing,
            empty=expanded.empty,
            deleted=deleted,
        )

    def delete(self, document_ids: Sequence[str]) -> list[str]:
        """Remove documents: their chunks from every collection they fill, then the
        documents themselves, through the compactor (the single writer) — at its next
        pass, or :meth:`merge` now. Unknown ids are a :class:`ConveyorError` naming
        them, and nothing is deleted. Returns the ids."""
        return deletion.delete(self.components.catalog, document_ids)

    def delete_sources(self, sources: Sequence[str], *, collection: str | None = None) -> list[str]:
        """:meth:`delete` by source: a path (as ingested) or a URI."""
        collection = collection or self.settings.collection
        return self.delete(deletion.ids_of_sources(self.components.catalog, sources, collection))

    def merge(self, *, timeout: float = 300.0) -> int:
        """Run the compactor here until nothing is pending (or ``timeout`` seconds pass,
        or another compactor holds the lock that long); returns the deltas applied."""
        self.components.open_all()
        return self.components.compactor().drain(
            threading.Event(), deadline=time.monotonic() + timeout, wait_locked=timeout
        )

    def _not_found(self, path: str, collection: str, run: str) -> None:
        """A path the run named that does not exist: a failed document, like any other."""
        source = Path(path).absolute().as_uri()
        doc = document_id(collection, source)
        reason = f"file not found: {path}"
        self._documents.queued([(doc, collection, source)], run)
        self._documents.failed(doc, reason, "permanent")
        Manifests(self.components.blobs).failed(
            source=source,
            document_id=doc,
            collection=collection,
            run=run,
            error=reason,
            kind="permanent",
        )

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
        kept on the document under ``metadata["user"]``; it is checked first
        (:func:`~conveyor.metadata.check_metadata`). Nothing is left ``queued`` without a
        job: a document whose job cannot be sent is marked failed (transient)."""
        collection = check_name("collection", collection or self.settings.collection)
        run = check_name("run", run or new_run_name())
        if metadata is not None:
            check_metadata(metadata)
        job = Job(
            source=source,
            collection=collection,
            run=run,
            options={"metadata": metadata} if metadata else {},
        )
        doc = document_id(collection, source)
        c = self.components
        c.catalog.start_run(run, collection, 1)
        self._documents.queued([(doc, collection, source)], run)
        try:
            if metadata:
                known = (c.catalog.get(doc) or {}).get("metadata") or {}
                c.catalog.update(doc, metadata={**known, "user": metadata})
            routing.send(c, [job.message()])  # a long one to the long queue
        except Exception as exc:
            # not left "queued" with no job: a failed document is submitted again next time
            self._documents.failed(doc, f"could not be enqueued: {safe_summary(exc)}", "transient")
            raise
        return doc

    def work(
        self,
        *,
        concurrency: int | None = None,
        until_idle: bool = True,
        progress: Callable[[], None] | None = None,
        stop: threading.Event | None = None,
        hurry: threading.Event | None = None,
    ) -> runner.RunResult:
        """Run workers and the compactor in this process until the queue is drained (or
        ``stop`` is set: jobs in flight finish, and what is merged is merged)."""
        return runner.run(
            self.components,
            concurrency=concurrency or self.settings.concurrency,
            stop=stop or threading.Event(),
            hurry=hurry,
            grace=10.0,
            until_idle=until_idle,
            drain=True,
            progress=progress,
        )

    def ingest(
        self,
        paths: str | Path | Iterable[str | Path],
        *,
        collection: str | None = None,
        run: str | None = None,
        force: bool = False,
        sync: bool = False,
        wait: bool = True,
        progress: Callable[[Enqueued], Callable[[], None]] | None = None,
        listed: Callable[[str, int], None] | None = None,
        stop: threading.Event | None = None,
        hurry: threading.Event | None = None,
    ) -> IngestSummary:
        """Enqueue ``paths``; unless ``wait`` is False, process them and summarise.
        ``stop`` set while it runs (Ctrl-C, with :func:`conveyor.runner.stop_on_signals`)
        lets the jobs in flight finish, hands the rest back to the queue and summarises
        what this run did."""
        started = time.perf_counter()
        s = self.settings
        if wait and not (s.embedding_url or s.remote_embedder):  # int8 into fp32: fail now
            generations = self.components.generations
            info = self.components.vectors.collection(
                generations.target(collection or s.collection)
            )
            ours = self.components.local_embedder.model_id
            if info is not None and base_model(info.model_id) == base_model(ours):
                _check_model(info.name, info.model_id, ours)
        queued = self.enqueue(
            paths, collection=collection, run=run, force=force, listed=listed, sync=sync
        )
        released = 0
        if wait and (queued.jobs or queued.deleted):
            tick = progress(queued) if progress else None
            released = self.work(progress=tick, stop=stop, hurry=hurry).released
        summary = self.summary(queued, time.perf_counter() - started)
        summary.interrupted = stop is not None and stop.is_set()
        summary.released = released
        return summary

    def summary(self, queued: Enqueued, seconds: float) -> IngestSummary:
        catalog = self.components.catalog
        self.reconcile()
        counts = catalog.counts(run=queued.run)
        failures = [
            {"id": d["id"], "source": d["source"], "error": d["error"]}
            for d in catalog.documents(run=queued.run, state=State.FAILED)
        ]
        return IngestSummary(
            run=queued.run,
            collection=queued.collection,
            enqueued=queued.jobs + len(queued.missing),
            done=counts[State.DONE],
            skipped=counts[State.SKIPPED],
            failed=counts[State.FAILED],
            chunks=catalog.chunk_total(run=queued.run),
            seconds=seconds,
            failures=sorted(failures, key=lambda f: f["source"]),
            empty=queued.empty,
            deleted=len(queued.deleted),
            tokens=(
                self._documents.usage(queued.run)["tokens"] if self.settings.remote_embedder else 0
            ),
        )

    # -- reading ---------------------------------------------------------

    def search(
        self,
        query: str,
        k: int = 5,
        *,
        collection: str | None = None,
        mode: Mode | None = None,
        where: Filter | None = None,
    ) -> list[Hit]:
        """The ``k`` best chunks for ``query``: ``mode`` is ``hybrid``, ``dense`` or
        ``lexical`` (default ``CONVEYOR_SEARCH_MODE``); ``where`` narrows them."""
        return self.search_many([query], k, collection=collection, mode=mode, where=where)[0]

    def search_many(
        self,
        queries: Sequence[str],
        k: int = 5,
        *,
        collection: str | None = None,
        mode: Mode | None = None,
        where: Filter | None = None,
    ) -> list[list[Hit]]:
        """The best chunks for each query, best first; the model is loaded once."""
        found = self.search_results(queries, k, collection=collection, mode=mode, where=where)
        return [r.hits for r in found]

    def search_results(
        self,
        queries: Sequence[str],
        k: int = 5,
        *,
        collection: str | None = None,
        mode: Mode | None = None,
        where: Filter | None = None,
    ) -> list[Results]:
        """As :meth:`search_many`, each query's hits with the mode that answered and
        notes for the reader (a query cut to the model's window, a missing index)."""
        collection = collection or self.settings.collection
        mode = mode or self.settings.search_mode
        c = self.components
        name = c.generations.resolve(collection)  # the generation that answers now
        info = c.vectors.collection(name)
        if info is None:  # perhaps switched since this process looked
            name = c.generations.resolve(collection, fresh=True)
            info = self._require_collection(collection, name)
        embedder = c.query_embedder
        if mode != "lexical" and info.model_id != embedder.model_id:
            # a rebuild under new settings is under way: the old generation's own model
            embedder = c.query_embedder_for(info.model_id) or embedder
            _check_model(collection, info.model_id, embedder.model_id)
        return c.searcher.search(
            queries, k, collection=name, mode=mode, where=where, embedder=embedder
        )

    def _require_collection(self, collection: str, name: str | None = None) -> CollectionInfo:
        info = self.components.vectors.collection(name or collection)
        if info is None:
            known = ", ".join(i.name for i in self.components.vectors.collections()) or "none yet"
            raise ConveyorError(
                f"collection {collection!r} does not exist (collections: {known}); "
                "ingest something first"
            )
        return info

    def reconcile(self) -> int:
        """Documents whose job the queue dead-lettered by itself become ``failed`` with
        that reason (see :meth:`DeadLetters.reconcile`); returns how many changed."""
        return self._dead_letters.reconcile()

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
            "generations": c.generations.report(c.catalog),
            "compactions": c.catalog.compactions(limit=5),
            "running": [
                {"id": d["id"], "source": d["source"], "stage": d["stage"]}
                for d in c.catalog.documents(state=State.RUNNING, limit=20)
            ],
            "workers": c.catalog.workers(
                stale_after=_stale_after(self.settings.visibility_timeout)
            ),
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
            for key in DESCRIBED:  # PDFs: their description and structure
                if key in d["metadata"]:
                    d[key] = d["metadata"][key]
            if "links_with_pages" in d["metadata"]:
                d["links"] = d["metadata"]["links_with_pages"]
        return docs

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return self.components.queue.dead_letters(limit)

    def redrive(self, job_ids: Sequence[str] | None = None) -> int:
        """Dead letters back onto the queue (all when ``job_ids`` is None); their
        documents go back to ``queued``. Returns how many moved."""
        return self._dead_letters.redrive(job_ids)

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
        jobs in flight get ``grace`` seconds, the rest go back to the queue. With
        ``until_idle``, until the queue is empty; then its compactor merges what is
        pending before this returns, as :meth:`ingest`'s does."""
        return runner.run(
            self.components,
            concurrency=concurrency or self.settings.concurrency,
            stop=stop,
            hurry=hurry,
            grace=grace,
            until_idle=until_idle,
            compactor=compactor,
            drain=until_idle,
        ).as_dict()

    def serve_compactor(self, *, stop: threading.Event) -> None:
        """The single writer alone, until ``stop`` is set."""
        self.components.open_all()
        self.components.compactor().run(stop, drain=False)

    def export(self, collection: str | None = None) -> Iterator[dict[str, Any]]:
        """Every chunk with its vector, for moving to another store or checking."""
        collection = collection or self.settings.collection
        name = self.components.generations.resolve(collection)
        self._require_collection(collection, name)
        for rec in self.components.vectors.iter_chunks(name, vectors=True):
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


def open_home(home: str | Path | None = None, **overrides: Any) -> Conveyor:
    """``conveyor.open(home)``: the :class:`Conveyor` of ``home`` (default ``$CONVEYOR_HOME``)."""
    settings = Settings(**overrides) if overrides else Settings()
    return Conveyor(settings.with_home(home))


def _stale_after(visibility_timeout: float) -> float:
    from .worker import stale_after  # the worker (and the parsers it drives) only when asked

    return stale_after(visibility_timeout)


def _check_model(collection: str, have: str, configured: str) -> None:
    """Refuse to search or fill a collection with vectors of another model or precision."""
    if have == configured:
        return
    if base_model(have) == base_model(configured):
        (held, backend), (made, _) = precision(have), precision(configured)
        if backend == "onnx":
            backend = "onnx (or torch)"
        raise ConveyorError(
            f"collection {collection!r} holds {held} vectors of {base_model(have)}, the "
            f"configured backend makes {made} ones; set "
            f"CONVEYOR_EMBEDDING_BACKEND={backend}, use another collection, or rebuild "
            f"it with `conveyor reindex -c {collection}`"
        )
    raise ConveyorError(
        f"collection {collection!r} was embedded with {have}, but the configured model "
        f"is {configured}; set CONVEYOR_MODEL to match, or rebuild it with "
        f"`conveyor reindex -c {collection}`"
    )
