"""The composition root: the backends, model and stages of one home, built from settings.

Only entry points import this module — the library API (:mod:`conveyor.app`),
the CLI, the HTTP servers and the AWS entry points. The parts it builds
(:class:`~conveyor.pipeline.Pipeline`, :class:`~conveyor.worker.Processor`,
:class:`~conveyor.compactor.Compactor`) receive what they need, typed, and
never import it. Backends open on first use; :meth:`Components.open_all`
opens them all at once, so a long-running process fails at start-up on a
wrong URL.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from .blobstore import BlobStore, open_blobstore
from .catalog import Catalog, open_catalog
from .embedding import Embedder, LocalModel, Tokenizer
from .embedding.remote import RemoteEmbedder
from .exceptions import ConfigurationError
from .lexical import LexicalIndex, open_lexical
from .queue import JobQueue, open_queue
from .search import Fusion, Searcher
from .settings import Settings
from .vectorstore import VectorStore, open_vectorstore

if TYPE_CHECKING:  # imported where built: a search never loads the parsers (pypdf, audio)
    from .compactor import Compactor
    from .extract import Extractor
    from .generations import Generations
    from .pipeline import Pipeline
    from .worker import Processor, WorkerPool

log = logging.getLogger(__name__)


def onnx_folder(settings: Settings) -> Path:
    """Where the ONNX export of the configured model lives (and its OpenVINO int8)."""
    name = settings.model.strip("/").replace("/", "--")
    return settings.models_path / name


class Components:
    """The backends of one home, opened on first use."""

    def __init__(
        self,
        settings: Settings,
        *,
        local_embedder: LocalModel | None = None,
        queue: JobQueue | None = None,
    ) -> None:
        """``local_embedder``: a model already loaded (a fake in unit tests, a server's
        shared one); ``queue``: the entry point's own (the Lambda's batch, run-job's one
        job) instead of the one the settings name."""
        self.settings = settings
        self._given_model = local_embedder
        if local_embedder is not None:
            self.__dict__["local_embedder"] = local_embedder
        if queue is not None:
            self.__dict__["queue"] = queue

    @cached_property
    def queue(self) -> JobQueue:
        s = self.settings
        url = s.queue_url or f"sqlite://{s.database_path.resolve()}"
        from .scaling import queue_options

        return open_queue(url, **queue_options(url, s))

    @cached_property
    def long_queue(self) -> JobQueue:
        """The queue for jobs predicted to run long (``CONVEYOR_LONG_QUEUE_URL``)."""
        s = self.settings
        if not s.long_queue_url:
            raise ConfigurationError("no long queue: set CONVEYOR_LONG_QUEUE_URL")
        from .scaling import queue_options

        return open_queue(s.long_queue_url, **queue_options(s.long_queue_url, s))

    @cached_property
    def catalog(self) -> Catalog:
        s = self.settings
        url = s.catalog_url or s.database_path
        if str(url).startswith("dynamodb://"):  # large deltas go to the blob store
            return open_catalog(url, blobs=self.blobs)
        return open_catalog(url)

    @cached_property
    def blobs(self) -> BlobStore:
        return open_blobstore(self.settings.blobs_url or self.settings.blobs_path)

    @cached_property
    def vectors(self) -> VectorStore:
        s = self.settings
        return open_vectorstore(
            s.vectors_url or str(s.database_path), candidates=s.search_candidates
        )

    @cached_property
    def lexical(self) -> LexicalIndex | None:
        """The lexical index in the catalog's database; None where it cannot hold one."""
        return open_lexical(self.catalog)

    @cached_property
    def searcher(self) -> Searcher:
        """Dense, lexical and hybrid search over this home's stores and query model."""
        s = self.settings
        fusion = Fusion(
            constant=s.rrf_constant,
            dense_weight=s.rrf_dense_weight,
            lexical_weight=s.rrf_lexical_weight,
            candidates=s.hybrid_candidates,
            method=s.fusion,
        )
        return Searcher(self.vectors, self.lexical, self.query_embedder, self.tokenizer, fusion)

    @cached_property
    def extractor(self) -> Extractor:
        """``extract`` in child processes with limits, or in this process."""
        s = self.settings
        if not s.isolate_extraction:
            from .extract import InProcessExtractor

            return InProcessExtractor()
        from .isolation import IsolatedExtractor

        return IsolatedExtractor(
            timeout=s.extract_timeout or None,
            total_timeout=s.extract_total_timeout or None,
            memory_mb=s.extract_memory_mb or None,
        )

    @cached_property
    def local_embedder(self) -> LocalModel:
        """The model in this process, with the configured backend."""
        s = self.settings
        if s.embedding_backend == "openvino-int8":
            from .embedding.openvino import OpenVinoEmbedder

            return OpenVinoEmbedder(s.model, onnx_folder(s))
        if s.embedding_backend.startswith("onnx"):
            from .embedding.onnx import OnnxEmbedder

            return OnnxEmbedder(s.model, onnx_folder(s), int8=s.embedding_backend == "onnx-int8")
        from .embedding.local import LocalEmbedder

        return LocalEmbedder(s.model, device=s.device, batch_size=s.embed_batch_size)

    def query_embedder_for(self, model_id: str) -> Embedder | None:
        """A local model making ``model_id``'s vectors, for a collection that answers
        from a generation built under other settings (a rebuild is under way); None when
        no local model makes them (a remote provider's)."""
        from .embedding import base_model, precision

        others: dict[str, Embedder | None] = self.__dict__.setdefault("_other_models", {})
        if model_id not in others:
            s = self.settings
            backend = precision(model_id)[1]
            if backend == "onnx" and s.embedding_backend == "torch":
                backend = "torch"
            update = {"model": base_model(model_id), "embedding_backend": backend}
            try:
                model: Embedder | None = Components(s.model_copy(update=update)).local_embedder
            except Exception as exc:
                log.warning("no local model makes %s's vectors: %s", model_id, exc)
                model = None
            if model is not None and model.model_id != model_id:
                model.close()
                model = None
            others[model_id] = model
        return others[model_id]

    @cached_property
    def generations(self) -> Generations:
        """Which generation of each collection answers, and which is being built."""
        from .generations import Generations

        return Generations(self.blobs)

    @cached_property
    def tokenizer(self) -> Tokenizer:
        """The model's tokenizer, for chunking (local even with an embedding service).
        With a remote provider: the local model's tokenizer as an estimate, up to the
        provider's tokens per text."""
        if self.settings.remote_embedder:
            from .embedding.remote import EstimatingTokenizer

            return EstimatingTokenizer(
                self.local_embedder.tokenizer, self.remote.limits.max_input_tokens
            )
        return self.local_embedder.tokenizer

    @cached_property
    def remote(self) -> RemoteEmbedder:
        """The provider ``CONVEYOR_EMBEDDER`` names; token estimates by the local tokenizer."""
        from .embedding.providers import open_remote

        url = self.settings.remote_embedder
        assert url is not None
        return open_remote(url, estimate=self.local_embedder.tokenizer.count)

    @cached_property
    def model(self) -> Embedder:
        """The model the settings name, without wrappers: a remote provider or the
        local model (what ``embed-server`` serves)."""
        return self.remote if self.settings.remote_embedder else self.local_embedder

    @cached_property
    def query_embedder(self) -> Embedder:
        """A remote provider, or the embedding service when one is configured (local
        model as fallback), else the local model."""
        s = self.settings
        if s.remote_embedder:
            if s.embedding_url:
                raise ConfigurationError(
                    "both CONVEYOR_EMBEDDER and EMBEDDING_SERVICE_URL/CONVEYOR_EMBEDDING_URL are "
                    "set: keep one (an embed-server can itself front the provider)"
                )
            return self.remote
        if s.embedding_url:
            from .embedding.http import HttpEmbedder

            return HttpEmbedder(s.embedding_url, fallback=lambda: self.local_embedder)
        return self.local_embedder

    @cached_property
    def embedder(self) -> Embedder:
        """Batching across workers in front of the model, the cache in front of that
        (a service or a provider batches itself)."""
        from .embedding.batching import BatchingEmbedder
        from .embedding.cache import CachedEmbedder

        s = self.settings
        inner: Embedder = self.query_embedder
        if not s.embedding_url and not s.remote_embedder:
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

    def pipeline(self, *, on_delta: Callable[[], None] | None = None) -> Pipeline:
        """A document's stages over this home's backends and model."""
        from .pipeline import Pipeline

        return Pipeline(
            settings=self.settings,
            catalog=self.catalog,
            blobs=self.blobs,
            extractor=self.extractor,
            embedder=self.embedder,
            tokenizer=self.tokenizer,
            on_delta=on_delta or (lambda: None),
        )

    def processor(self, *, on_delta: Callable[[], None] | None = None) -> Processor:
        """One job at a time from this home's queue."""
        from . import routing
        from .worker import Processor

        return Processor(
            self.pipeline(on_delta=on_delta),
            self.queue,
            send=lambda messages: routing.send(self, messages),
        )

    def worker_pool(
        self, *, concurrency: int, on_delta: Callable[[], None] | None = None
    ) -> WorkerPool:
        from .worker import WorkerPool

        s = self.settings
        # a remote provider's usage is metered per job, so its calls are not shared
        group = 1 if s.remote_embedder else s.job_group
        return WorkerPool(
            self.processor(on_delta=on_delta), concurrency=concurrency, max_group=group
        )

    def compactor(self, *, batch: int = 64) -> Compactor:
        from .compactor import Compactor

        return Compactor(self.catalog, self.vectors, self.blobs, lexical=self.lexical, batch=batch)

    def close(self) -> None:
        """Close what was opened: wrappers (batching, cache) first, then the models and
        backends under them."""
        closed = {id(self._given_model)}  # a model handed in belongs to its owner
        for name in ("embedder", "query_embedder", "remote", "local_embedder"):
            embedder = self.__dict__.get(name)
            while embedder is not None and id(embedder) not in closed:
                closed.add(id(embedder))
                embedder.close()
                embedder = getattr(embedder, "inner", None)
        for other in self.__dict__.get("_other_models", {}).values():
            if other is not None:
                other.close()
        if "extractor" in self.__dict__:
            self.__dict__["extractor"].close()
        for name in ("lexical", "queue", "long_queue", "catalog", "vectors", "blobs"):
            closer = getattr(self.__dict__.get(name), "close", None)
            if closer is not None:
                closer()
