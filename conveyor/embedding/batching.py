"""Merge concurrent ``embed`` calls into model-sized batches.

Several workers each embed one document's chunks; the model is far more
efficient on one batch of 64 than on four of 16. A single thread owns the
model: callers queue their texts and wait; the thread takes what is queued
(waiting at most ``max_wait`` for more), embeds it in one call, and hands
each caller its rows back.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future

import numpy as np

from ..exceptions import TransientError
from . import Embedder


class Overloaded(TransientError):
    """More texts are waiting for the model than the batcher accepts."""


class BatchingEmbedder:
    """An :class:`Embedder` that batches across threads in front of ``inner``.

    ``max_pending`` bounds the texts waiting for the model: past it, ``embed``
    raises :class:`Overloaded` at once instead of queueing without end.
    """

    def __init__(
        self,
        inner: Embedder,
        *,
        max_batch: int = 128,
        max_wait: float = 0.005,
        max_pending: int | None = None,
    ) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.max_pending = max_pending
        self.pending = 0
        self.batches = 0
        self.batched_texts = 0
        self._count = threading.Lock()
        self._requests: queue.Queue[tuple[list[str], Future[np.ndarray]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    @property
    def dim(self) -> int:
        return self.inner.dim

    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="conveyor-embed", daemon=True
                )
                self._thread.start()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return self.inner.embed([])
        self._ensure_thread()
        with self._count:
            if self.max_pending is not None and self.pending + len(texts) > self.max_pending:
                raise Overloaded(
                    f"{self.pending} texts are already waiting for the model (limit "
                    f"{self.max_pending}); retry shortly"
                )
            self.pending += len(texts)
        future: Future[np.ndarray] = Future()
        self._requests.put((list(texts), future))
        try:
            return future.result()
        finally:
            with self._count:
                self.pending -= len(texts)

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._requests.put(None)
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            first = self._requests.get()
            if first is None:
                return
            batch = [first]
            size = len(first[0])
            stop = False
            while size < self.max_batch:
                try:
                    item = self._requests.get(timeout=self.max_wait)
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
                size += len(item[0])
            self._embed_batch(batch)
            if stop:
                return

    def _embed_batch(self, batch: list[tuple[list[str], Future[np.ndarray]]]) -> None:
        texts = [t for texts, _ in batch for t in texts]
        self.batches += 1
        self.batched_texts += len(texts)
        try:
            vectors = self.inner.embed(texts)
        except BaseException as exc:
            for _, future in batch:
                future.set_exception(exc)
            return
        start = 0
        for request_texts, future in batch:
            end = start + len(request_texts)
            future.set_result(vectors[start:end])
            start = end
