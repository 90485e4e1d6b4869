"""What every remote embedding provider shares: batching to its limits, a bound on
requests in flight, retries, and the tokens it bills.

A provider module (:mod:`.openai`, :mod:`.aws`) supplies one method,
``_request(texts) -> (vectors, tokens)``, that makes one call and raises

* :class:`Throttled` for 429 / a throttling error (``retry_after`` when the
  provider said how long to wait),
* :class:`Unavailable` for what may pass (5xx, timeouts, connection refused),
* :class:`ProviderRefused` for what will not (a bad key, an unknown model, an
  input too long) — the document fails at once, with a reason that never holds
  the key.

:class:`RemoteEmbedder` splits ``embed(texts)`` into requests of at most
``limits.max_inputs`` texts and ``limits.max_request_tokens`` estimated tokens,
holds at most ``limits.in_flight`` requests at once across every thread of the
process, retries throttled and unavailable requests with exponential backoff
(honouring ``Retry-After``), normalises the rows and checks their dimension.

Usage: the tokens each request billed (the provider's count, else the estimate)
are added to the :class:`Usage` of the caller's :func:`metered` block — the
pipeline opens one per document, so the catalog and the manifest carry what a
document cost.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import numpy as np

from ..exceptions import PermanentError, TransientError, safe_summary
from . import Tokenizer, l2_normalise

log = logging.getLogger(__name__)

Estimate = Callable[[Sequence[str]], list[int]]
"""Tokens of each text, as near to the provider's count as can be had offline."""


class ProviderRefused(PermanentError):
    """The provider refused the request for good: a bad key, an unknown model, an
    input it will not take. The message is safe to store (no key, no body)."""


class ProviderBusy(TransientError):
    """The provider kept throttling or failing after every retry."""


class Throttled(Exception):
    """429 or a throttling error; ``retry_after`` in seconds when the provider said."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Unavailable(Exception):
    """A failure that may pass: 5xx, a timeout, a refused connection."""


@dataclass(frozen=True)
class Limits:
    """A provider's limits: texts and (estimated) tokens per request, tokens per
    text, and how many requests this process keeps in flight."""

    max_inputs: int
    max_request_tokens: int
    max_input_tokens: int
    in_flight: int = 4


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries per request; waits grow from ``base`` by doubling up to
    ``cap`` (with jitter); a ``Retry-After`` longer than ``cap`` is still honoured up
    to ``longest``."""

    attempts: int = 6
    base: float = 0.5
    cap: float = 20.0
    longest: float = 120.0

    def wait(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.longest)
        return float(min(self.cap, self.base * 2**attempt) * (0.5 + random.random() / 2))


@dataclass
class Usage:
    """What a document (or any :func:`metered` block) sent to providers."""

    tokens: int = 0
    requests: int = 0
    texts: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, tokens: int, texts: int) -> None:
        with self._lock:
            self.tokens += tokens
            self.requests += 1
            self.texts += texts

    def as_dict(self) -> dict[str, int]:
        return {"tokens": self.tokens, "requests": self.requests, "texts": self.texts}


_usage: ContextVar[Usage | None] = ContextVar("conveyor_embedding_usage", default=None)


@contextmanager
def metered() -> Iterator[Usage]:
    """Count what remote embedders send from this thread (and context) inside the block."""
    usage = Usage()
    token = _usage.set(usage)
    try:
        yield usage
    finally:
        _usage.reset(token)


def rough_estimate(texts: Sequence[str]) -> list[int]:
    """Tokens when no tokenizer is at hand: about one per three characters (more than
    English BPE gives, so requests stay under the limit)."""
    return [len(t) // 3 + 1 for t in texts]


def batches(
    texts: Sequence[str], tokens: Sequence[int], limits: Limits
) -> Iterator[tuple[int, int]]:
    """``(start, end)`` slices of at most ``max_inputs`` texts and ``max_request_tokens``
    tokens (a single text over the budget goes alone; the provider judges it)."""
    start, total = 0, 0
    for i, n in enumerate(tokens):
        if i > start and (i - start >= limits.max_inputs or total + n > limits.max_request_tokens):
            yield start, i
            start, total = i, 0
        total += n
    if start < len(texts):
        yield start, len(texts)


class RemoteEmbedder:
    """The shared half of a remote provider; see the module's docstring."""

    backend = "remote"
    limits = Limits(max_inputs=64, max_request_tokens=8000, max_input_tokens=512)

    def __init__(
        self,
        model_id: str,
        *,
        dim: int | None = None,
        estimate: Estimate | None = None,
        retry: RetryPolicy | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.model_id = model_id
        self._dim = dim or 0
        self.estimate: Estimate = estimate or rough_estimate
        self.retry = retry or RetryPolicy()
        if limits is not None:
            self.limits = limits
        self._slots = threading.BoundedSemaphore(self.limits.in_flight)
        self.tokens_sent = 0  # every request's, for metrics and tests

    # -- what a provider supplies --------------------------------------------

    def _request(self, texts: list[str]) -> tuple[np.ndarray, int | None]:
        """One call: the rows of ``texts`` and the tokens billed (None: not reported)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the provider's client."""

    # -- the contract ----------------------------------------------------------

    @property
    def dim(self) -> int:
        """The dimension: configured, known for the model, or asked with one request."""
        if not self._dim:
            self._dim = int(self.embed(["dimension probe"]).shape[1])
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        texts = [t if t.strip() else " " for t in texts]  # providers refuse empty input
        parts = [
            self._call(texts[start:end])
            for start, end in batches(texts, self.estimate(texts), self.limits)
        ]
        vectors = np.vstack(parts)
        if self._dim and vectors.shape[1] != self._dim:
            raise ProviderRefused(
                f"{self.model_id} answered {vectors.shape[1]}-dimensional vectors, "
                f"not the {self._dim} expected; check the model and dimensions"
            )
        self._dim = int(vectors.shape[1])
        return l2_normalise(vectors)

    def _call(self, texts: list[str]) -> np.ndarray:
        last = "no attempt"
        for attempt in range(self.retry.attempts):
            retry_after: float | None = None
            with self._slots:
                try:
                    vectors, billed = self._request(texts)
                except Throttled as exc:
                    last, retry_after = f"throttled ({exc})", exc.retry_after
                except Unavailable as exc:
                    last = str(exc)
                else:
                    if vectors.shape[0] != len(texts):
                        raise ProviderRefused(
                            f"{self.model_id} answered {vectors.shape[0]} vectors "
                            f"for {len(texts)} texts"
                        )
                    tokens = billed if billed is not None else sum(self.estimate(texts))
                    self.tokens_sent += tokens
                    usage = _usage.get()
                    if usage is not None:
                        usage.add(tokens, len(texts))
                    return np.asarray(vectors, dtype=np.float32)
            if attempt + 1 < self.retry.attempts:
                wait = self.retry.wait(attempt, retry_after)
                log.info(
                    "embedding provider busy; retrying",
                    extra={"model": self.model_id, "reason": last, "wait_s": round(wait, 2)},
                )
                time.sleep(wait)
        raise ProviderBusy(
            f"{self.model_id}: gave up after {self.retry.attempts} attempts; "
            f"last: {safe_summary(last, 200)}"
        )


def redact(text: str, *secrets: str | None) -> str:
    """``text`` one line, bounded, with every secret given and anything key-like masked."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    text = re.sub(r"\b(sk|pk|key|hf)[-_][A-Za-z0-9_*.-]{6,}", r"\1-***", text)
    return safe_summary(text, 200)


class EstimatingTokenizer:
    """Chunking's tokenizer for a remote provider whose own is not available offline:
    the local model's tokenizer counts (an estimate of the provider's), the provider's
    limit bounds a chunk."""

    def __init__(self, local: Tokenizer, max_tokens: int) -> None:
        self.local = local
        self.max_tokens = max_tokens

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return self.local.offsets(text)

    def count(self, texts: Sequence[str]) -> list[int]:
        return self.local.count(texts)
