"""The client of ``conveyor embed-server``, with a local fallback.

Workers use it when ``EMBEDDING_SERVICE_URL`` (or ``CONVEYOR_EMBEDDING_URL``)
is set. Transient failures (connection refused, timeouts, 429, 502–504) are
retried with backoff; when the service stays unreachable the client loads
the model locally — after checking it is the same model with the same
dimension, so vectors never mix — logs that it did, and carries on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..exceptions import ConfigurationError, safe_summary
from . import Embedder

log = logging.getLogger(__name__)

REQUEST_TEXTS = 256  # texts per request, below the server's limit


class _Unavailable(Exception):
    pass


class HttpEmbedder:
    backend = "http"

    def __init__(
        self,
        url: str,
        *,
        fallback: Callable[[], Embedder],
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        import httpx

        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._fallback = fallback
        self._local: Embedder | None = None
        self._client = httpx.Client(timeout=timeout)
        self.model_id = ""
        self._dim = 0
        try:
            info = self._health()
        except _Unavailable as exc:
            self._use_local(f"the embedding service at {self.url} is unreachable ({exc})")
        else:
            self.model_id, self._dim = str(info["model"]), int(info["dim"])

    @property
    def dim(self) -> int:
        return self._local.dim if self._local is not None else self._dim

    @property
    def using_fallback(self) -> bool:
        return self._local is not None

    def _health(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                response = self._client.get(self.url + "/health")
            except Exception as exc:
                raise _Unavailable(safe_summary(exc)) from None
            if response.status_code == 200:
                return dict(response.json())
            if time.monotonic() > deadline:  # still loading, or failed to load
                raise _Unavailable(f"health answered {response.status_code}")
            time.sleep(0.5)

    def _post(self, texts: list[str]) -> np.ndarray:
        last = "no attempt"
        for attempt in range(self.retries):
            try:
                response = self._client.post(self.url + "/embed", json={"texts": texts})
            except Exception as exc:
                last = safe_summary(exc)
            else:
                if response.status_code == 200:
                    data = response.json()
                    return np.asarray(data["embeddings"], dtype=np.float32)
                if response.status_code not in (429, 500, 502, 503, 504):
                    raise ConfigurationError(
                        f"embedding service refused the request ({response.status_code}): "
                        f"{safe_summary(response.text, 200)}"
                    )
                last = f"HTTP {response.status_code}"
            time.sleep(self.backoff * (2**attempt))
        raise _Unavailable(last)

    def _use_local(self, reason: str) -> None:
        local = self._fallback()
        if self.model_id and (local.model_id != self.model_id or local.dim != self._dim):
            raise ConfigurationError(
                f"{reason}, and the local model ({local.model_id}, {local.dim}d) is not the "
                f"service's ({self.model_id}, {self._dim}d): refusing to mix vectors"
            )
        log.warning("%s; embedding with the local model %s instead", reason, local.model_id)
        self._local = local
        self.model_id = local.model_id

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self._local is None:
            try:
                parts = [
                    self._post(list(texts[i : i + REQUEST_TEXTS]))
                    for i in range(0, len(texts), REQUEST_TEXTS)
                ]
                return np.vstack(parts) if parts else np.zeros((0, self._dim), np.float32)
            except _Unavailable as exc:
                self._use_local(f"the embedding service at {self.url} stopped answering ({exc})")
        assert self._local is not None
        return self._local.embed(texts)

    def close(self) -> None:
        self._client.close()
