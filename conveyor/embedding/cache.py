"""A content-hash cache in front of any embedder: unchanged text is never re-embedded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from ..ids import text_hash
from . import Embedder


class CacheStore(Protocol):
    """Where cached vectors live (the catalog implements this)."""

    def cache_get(self, model_id: str, hashes: Sequence[str]) -> dict[str, bytes]:
        """Stored float32 bytes for the hashes that are known."""
        ...

    def cache_put(self, model_id: str, items: Sequence[tuple[str, bytes]]) -> None:
        """Store (hash, float32 bytes) pairs; existing ones are kept."""
        ...


class CachedEmbedder:
    """Looks every text up by (model, sha256 of text) before asking ``inner``.

    ``hits`` and ``misses`` count texts, for the run summary and metrics.
    """

    def __init__(self, inner: Embedder, store: CacheStore) -> None:
        self.inner = inner
        self.store = store
        self.model_id = inner.model_id
        self.hits = 0
        self.misses = 0

    @property
    def backend(self) -> str:
        return self.inner.backend

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return self.inner.embed([])
        hashes = [text_hash(t) for t in texts]
        known = self.store.cache_get(self.model_id, sorted(set(hashes)))
        missing: dict[str, str] = {}
        for h, t in zip(hashes, texts, strict=True):
            if h not in known and h not in missing:
                missing[h] = t
        fresh: dict[str, np.ndarray] = {}
        if missing:
            vectors = self.inner.embed(list(missing.values()))
            fresh = dict(zip(missing.keys(), vectors, strict=True))
            self.store.cache_put(
                self.model_id, [(h, v.astype(np.float32).tobytes()) for h, v in fresh.items()]
            )
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        rows = [
            fresh[h] if h in fresh else np.frombuffer(known[h], dtype=np.float32) for h in hashes
        ]
        return np.vstack(rows).astype(np.float32, copy=False)

    def close(self) -> None:
        """Nothing of its own to release; ``inner`` is closed by whoever built it."""
