"""Merge concurrent ``embed`` calls into model-sized batches.

Several workers (or HTTP clients of the embed-server) each embed a few texts;
the model is far more efficient on one batch of 64 than on sixteen of 4. A
single thread owns the model: callers count their texts' tokens, queue them
and wait; the thread gathers queued texts into one batch until it holds
``max_batch`` texts or ``max_tokens`` tokens, or ``max_wait`` has passed since
the batch began, embeds it in one call, and hands each caller its rows back.

Why tokens and not only texts: the model's cost (and, for attention, its
memory) follows tokens — 128 one-line queries cost less than 16 pages, so a
text count alone either starves short requests or lets long ones build huge
batches. A request larger than the budget is split over several batches, in
order; nobody overtakes it. Inside a batch the texts are sorted by length
before the model sees them (the results are put back in order), so texts of
alike length share a padded width.

Admission: ``max_pending`` bounds the texts waiting anywhere, counted at the
door. An async server calls :meth:`BatchingEmbedder.aembed`, which counts a
request's texts before anything else (no thread pool in front where requests
could wait uncounted) and answers :class:`Overloaded` at once past the limit.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from ..exceptions import TransientError
from . import Embedder

SPECIAL_TOKENS = 2  # [CLS] and [SEP]: what the model adds to each text

TokenCounter = Callable[[Sequence[str]], list[int]]


class Overloaded(TransientError):
    """More texts are waiting for the model than the batcher accepts."""


@dataclass(eq=False)
class _Request:
    texts: list[str]
    tokens: list[int]
    future: Future[np.ndarray]
    queued: float
    vectors: np.ndarray | None = None
    taken: int = 0  # texts already given to a batch
    filled: int = 0  # rows embedded so far
    failed: bool = False


@dataclass
class _Batch:
    parts: list[tuple[_Request, int, int]] = field(default_factory=list)  # request, start, end
    texts: int = 0
    tokens: int = 0


def token_counter(inner: Embedder) -> TokenCounter:
    """Tokens each text costs ``inner``: its tokenizer's count plus the special tokens,
    capped at what the model sees; about 4 characters a token without a tokenizer."""
    tokenizer = getattr(inner, "tokenizer", None)
    if tokenizer is None:
        return lambda texts: [len(t) // 4 + SPECIAL_TOKENS for t in texts]
    cap = int(tokenizer.max_tokens)
    return lambda texts: [min(n, cap) + SPECIAL_TOKENS for n in tokenizer.count(texts)]


class BatchingEmbedder:
    """An :class:`Embedder` that batches across threads in front of ``inner``.

    ``max_batch`` texts and ``max_tokens`` tokens bound one model call (a single
    text longer than ``max_tokens`` still goes, alone). ``max_wait`` is how long
    the first text of a batch waits for company. ``max_pending`` bounds the
    texts waiting for the model: past it, ``embed`` raises :class:`Overloaded` at
    once instead of queueing without end. ``count_tokens`` defaults to
    ``inner``'s tokenizer (see :func:`token_counter`).
    """

    def __init__(
        self,
        inner: Embedder,
        *,
        max_batch: int = 128,
        max_tokens: int = 8192,
        max_wait: float = 0.005,
        max_pending: int | None = None,
        count_tokens: TokenCounter | None = None,
    ) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.max_batch = max_batch
        self.max_tokens = max_tokens
        self.max_wait = max_wait
        self.max_pending = max_pending
        self.count_tokens = count_tokens or token_counter(inner)
        # read by /metrics: written by the batch thread only, or under _count
        self.pending = 0
        self.batches = 0
        self.batched_texts = 0
        self.batched_tokens = 0
        self.waited = 0.0  # seconds requests spent queued before their first batch
        self.waits = 0
        self._count = threading.Lock()
        self._requests: queue.Queue[_Request | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    @property
    def backend(self) -> str:
        return self.inner.backend

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

    def _admit(self, n: int) -> None:
        """Count ``n`` more texts waiting, or raise :class:`Overloaded` past the limit."""
        with self._count:
            if self.max_pending is not None and self.pending + n > self.max_pending:
                raise Overloaded(
                    f"{self.pending} texts are already waiting for the model (limit "
                    f"{self.max_pending}); retry shortly"
                )
            self.pending += n

    def _leave(self, n: int) -> None:
        with self._count:
            self.pending -= n

    def _queue(self, texts: list[str]) -> _Request:
        request = _Request(texts, self.count_tokens(texts), Future(), time.monotonic())
        self._requests.put(request)
        return request

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return self.inner.embed([])
        self._ensure_thread()
        self._admit(len(texts))
        try:
            return self._queue(list(texts)).future.result()
        finally:
            self._leave(len(texts))

    async def aembed(self, texts: Sequence[str]) -> np.ndarray:
        """:meth:`embed` for an event loop: admitted (or refused) at once, on the loop;
        the tokens are counted in a thread; the answer is awaited, not waited for in
        a thread."""
        if not texts:
            return await asyncio.to_thread(self.inner.embed, [])
        self._ensure_thread()
        self._admit(len(texts))
        try:
            request = await asyncio.to_thread(self._queue, list(texts))
            return await asyncio.wrap_future(request.future)
        finally:
            self._leave(len(texts))

    def close(self) -> None:
        """Finish what is queued, then stop the batch thread."""
        if self._thread is not None and self._thread.is_alive():
            self._requests.put(None)
            self._thread.join(timeout=30)

    def _run(self) -> None:
        carry: _Request | None = None  # a request only partly batched so far
        stopping = False
        while True:
            if carry is None:
                if stopping:
                    return
                first = self._requests.get()
                if first is None:
                    return
                carry = first
            batch = _Batch()
            deadline = time.monotonic() + self.max_wait
            request: _Request | None = carry
            carry = None
            while request is not None:
                if not self._take(batch, request):
                    carry = request  # the batch is full before this request's end
                    break
                if stopping or batch.texts >= self.max_batch or batch.tokens >= self.max_tokens:
                    break
                try:
                    request = self._requests.get(timeout=max(deadline - time.monotonic(), 0))
                except queue.Empty:
                    break
                if request is None:
                    stopping = True
            self._embed_batch(batch)
            if carry is not None and carry.failed:
                carry = None

    def _take(self, batch: _Batch, request: _Request) -> bool:
        """Move ``request``'s texts into ``batch`` while they fit; True if all did."""
        start = end = request.taken
        while end < len(request.texts):
            tokens = request.tokens[end]
            if batch.texts and (
                batch.texts + 1 > self.max_batch or batch.tokens + tokens > self.max_tokens
            ):
                break
            batch.texts += 1
            batch.tokens += tokens
            end += 1
        if end > start:
            batch.parts.append((request, start, end))
            request.taken = end
            if start == 0:
                self.waited += time.monotonic() - request.queued
                self.waits += 1
        return end == len(request.texts)

    def _embed_batch(self, batch: _Batch) -> None:
        texts = [t for request, start, end in batch.parts for t in request.texts[start:end]]
        tokens = [n for request, start, end in batch.parts for n in request.tokens[start:end]]
        order = np.argsort(np.asarray(tokens), kind="stable")  # alike lengths pad alike
        self.batches += 1
        self.batched_texts += batch.texts
        self.batched_tokens += batch.tokens
        try:
            embedded = self.inner.embed([texts[i] for i in order])
        except BaseException as exc:
            for request, _, _ in batch.parts:
                if not request.failed:
                    request.failed = True
                    request.future.set_exception(exc)
            return
        vectors = np.empty_like(embedded)
        vectors[order] = embedded
        offset = 0
        for request, start, end in batch.parts:
            if request.vectors is None:
                request.vectors = np.empty((len(request.texts), vectors.shape[1]), vectors.dtype)
            request.vectors[start:end] = vectors[offset : offset + end - start]
            offset += end - start
            request.filled += end - start
            if request.filled == len(request.texts):
                request.future.set_result(request.vectors)
