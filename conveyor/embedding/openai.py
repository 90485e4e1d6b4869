"""OpenAI's embeddings API, and every server that speaks it (TEI, Infinity, vLLM,
Ollama, ``conveyor embed-server``).

``openai://text-embedding-3-small`` with ``OPENAI_API_KEY``; the base URL is
``?base_url=``, else ``OPENAI_BASE_URL``, else ``https://api.openai.com/v1``.
``?dimensions=N`` asks a model that can shorten its vectors (the v3 models) for
``N`` dimensions. Statuses: 429 is throttling (``Retry-After`` and
``retry-after-ms`` honoured), 408/409/5xx and connection failures are retried,
401/403 (the key), 404 (the model) and other 4xx (the input) fail the document
with a reason that never holds the key or the response body's echo of it.
"""

from __future__ import annotations

import base64
import email.utils
import os
import time
from typing import Any

import numpy as np

from .remote import (
    Estimate,
    Limits,
    ProviderRefused,
    RemoteEmbedder,
    RetryPolicy,
    Throttled,
    Unavailable,
    redact,
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
KNOWN_DIMS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
LIMITS = Limits(max_inputs=2048, max_request_tokens=300_000, max_input_tokens=8191)
"""OpenAI's: 2048 inputs and 300k tokens a request, 8191 tokens an input. Servers
that take fewer say so with ``?max_inputs=``/``?max_tokens=``."""
TRANSIENT = {408, 409, 500, 502, 503, 504, 520, 522, 524}


def retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms``, or ``Retry-After`` (seconds or a date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time()) if when else None


class OpenAIEmbedder(RemoteEmbedder):
    backend = "openai"

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        dimensions: int | None = None,
        limits: Limits | None = None,
        estimate: Estimate | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 60.0,
    ) -> None:
        import httpx

        self.model = model
        self.dimensions = dimensions
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip(
            "/"
        )
        self._key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        self._client = httpx.Client(timeout=timeout, headers=headers)
        model_id = f"{model}?dimensions={dimensions}" if dimensions else model
        super().__init__(
            model_id,
            dim=dimensions or KNOWN_DIMS.get(model),
            estimate=estimate,
            retry=retry,
            limits=limits or LIMITS,
        )

    def __repr__(self) -> str:  # never the key
        return f"OpenAIEmbedder({self.model!r}, base_url={self.base_url!r})"

    def _request(self, texts: list[str]) -> tuple[np.ndarray, int | None]:
        import httpx

        body: dict[str, Any] = {"model": self.model, "input": texts, "encoding_format": "float"}
        if self.dimensions:
            body["dimensions"] = self.dimensions
        try:
            response = self._client.post(self.base_url + "/embeddings", json=body)
        except httpx.TransportError as exc:
            raise Unavailable(f"{type(exc).__name__} reaching {self.base_url}") from None
        status = response.status_code
        if status == 200:
            return self._parse(response.json(), len(texts))
        if status == 429:
            raise Throttled("HTTP 429", retry_after(response.headers))
        if status in TRANSIENT:
            raise Unavailable(f"HTTP {status}")
        raise ProviderRefused(self._refusal(status, response))

    def _refusal(self, status: int, response: Any) -> str:
        where = f"{self.base_url} ({self.model})"
        if status in (401, 403):  # the body echoes part of the key: never shown
            return (
                f"the embedding provider at {where} refused the API key (HTTP {status}); "
                "check OPENAI_API_KEY"
            )
        try:
            message = str(response.json().get("error", {}).get("message", ""))
        except Exception:
            message = ""
        if status == 404:
            return f"the embedding provider at {where} does not know the model (HTTP 404)"
        return f"the embedding provider at {where} refused the input (HTTP {status})" + (
            f": {redact(message, self._key)}" if message else ""
        )

    @staticmethod
    def _parse(data: dict[str, Any], n: int) -> tuple[np.ndarray, int | None]:
        rows = sorted(data.get("data") or [], key=lambda item: int(item.get("index", 0)))
        vectors = []
        for item in rows:
            value = item["embedding"]
            if isinstance(value, str):  # base64 float32, little-endian
                vectors.append(np.frombuffer(base64.b64decode(value), dtype="<f4"))
            else:
                vectors.append(np.asarray(value, dtype=np.float32))
        usage = data.get("usage") or {}
        tokens = usage.get("total_tokens", usage.get("prompt_tokens"))
        array = np.vstack(vectors) if vectors else np.zeros((0, 0), np.float32)
        return array, int(tokens) if tokens is not None else None

    def close(self) -> None:
        self._client.close()
