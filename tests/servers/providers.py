"""A local server speaking the request and response bodies of remote embedding
providers, with the session's real model behind it.

* OpenAI: ``POST /v1/embeddings`` (``input``, ``dimensions``, ``usage``; errors in
  OpenAI's ``{"error": {"message", "type"}}`` shape);
* Amazon Bedrock ``InvokeModel``: ``POST /model/{modelId}/invoke`` with Titan
  Text Embeddings v2 (``inputText``, ``dimensions``, ``normalize`` →
  ``embedding``, ``inputTextTokenCount``) and Cohere Embed v3 (``texts``,
  ``input_type`` → ``embeddings``) bodies, the input token count header, and
  errors as botocore reads them (``x-amzn-ErrorType``);
* SageMaker ``InvokeEndpoint``: ``POST /endpoints/{name}/invocations`` with a
  Text Embeddings Inference body (``inputs`` → a list of vectors).

The model's 384-dimensional vectors are padded with zeros (or cut) to the
dimension a provider answers with, which keeps every cosine as it was.
:meth:`ProviderStub.fail_next` makes the next requests fail (429 with
``Retry-After``, 401, 400, 503…); ``requests`` records each request's arrival
time, path and size, so tests see retries and batching.

``provider_stub`` serves it from a thread for a test module, with fake AWS
credentials in the environment (boto3 signs requests; the stub ignores them).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

try:  # the routes' annotations name them (FastAPI resolves them from this module)
    from fastapi import Request
    from fastapi.responses import Response
except ImportError:  # the server extra is missing: the fixture below skips
    pass

KEY = "sk-test-SECRET0123456789"
"""The API key the stub accepts; its 401 body echoes part of a wrong one, as OpenAI's does."""


@dataclass
class Failure:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class ProviderStub:
    embedder: Any
    url: str = ""
    requests: list[tuple[float, str, int]] = field(default_factory=list)
    _failures: list[Failure] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(
        self,
        status: int,
        message: str = "",
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
        error_type: str = "",
    ) -> None:
        body = {"error": {"message": message, "type": error_type}, "message": message}
        with self._lock:
            self._failures += [Failure(status, body, headers or {}) for _ in range(times)]

    def reset(self) -> None:
        with self._lock:
            self._failures.clear()
            self.requests.clear()

    def _next_failure(self, path: str, n: int) -> Failure | None:
        with self._lock:
            self.requests.append((time.monotonic(), path, n))
            return self._failures.pop(0) if self._failures else None

    def vectors(self, texts: list[str], dim: int) -> np.ndarray:
        vectors = self.embedder.embed(texts)
        if dim <= vectors.shape[1]:
            return vectors[:, :dim]
        return np.hstack([vectors, np.zeros((len(texts), dim - vectors.shape[1]), np.float32)])


def create_stub_app(stub: ProviderStub) -> Any:
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI()

    def failure(f: Failure, aws_code: str | None = None) -> Response:
        headers = dict(f.headers)
        if aws_code:
            headers["x-amzn-ErrorType"] = aws_code
        return JSONResponse(f.body, status_code=f.status, headers=headers)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/embeddings")
    async def openai(request: Request) -> Response:
        body = await request.json()
        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        f = stub._next_failure("/v1/embeddings", len(texts))
        if f:
            return failure(f)
        if request.headers.get("authorization") != f"Bearer {KEY}":
            given = request.headers.get("authorization", "")[-8:]
            return JSONResponse(
                {
                    "error": {
                        "message": f"Incorrect API key provided: sk-...{given}",
                        "type": "invalid_request_error",
                    }
                },
                status_code=401,
            )
        vectors = stub.vectors(texts, int(body.get("dimensions") or 384))
        tokens = sum(len(t.split()) for t in texts)
        return JSONResponse(
            {
                "object": "list",
                "model": body["model"],
                "data": [
                    {"object": "embedding", "index": i, "embedding": v.tolist()}
                    for i, v in enumerate(vectors)
                ][::-1],  # any order: index says which
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    @app.post("/model/{model_id}/invoke")
    async def bedrock(model_id: str, request: Request) -> Response:
        body = json.loads(await request.body())
        texts = body["texts"] if model_id.startswith("cohere.") else [body["inputText"]]
        f = stub._next_failure(f"/model/{model_id}/invoke", len(texts))
        if f:
            code = {
                429: "ThrottlingException",
                400: "ValidationException",
                403: "AccessDeniedException",
                404: "ResourceNotFoundException",
                503: "ServiceUnavailableException",
            }.get(f.status, "InternalServerException")
            return failure(Failure(f.status, {"message": f.body["message"]}, f.headers), code)
        tokens = sum(len(t.split()) for t in texts)
        headers = {"X-Amzn-Bedrock-Input-Token-Count": str(tokens)}
        if model_id.startswith("cohere."):
            vectors = stub.vectors(texts, 1024)
            out: dict[str, Any] = {
                "id": "x",
                "response_type": "embeddings_floats",
                "texts": texts,
                "embeddings": vectors.tolist(),
            }
        else:
            [vector] = stub.vectors(texts, int(body.get("dimensions") or 1024))
            out = {"embedding": vector.tolist(), "inputTextTokenCount": tokens}
        return JSONResponse(out, headers=headers)

    @app.post("/endpoints/{name}/invocations")
    async def sagemaker(name: str, request: Request) -> Response:
        body = json.loads(await request.body())
        texts = [body["inputs"]] if isinstance(body["inputs"], str) else body["inputs"]
        f = stub._next_failure(f"/endpoints/{name}/invocations", len(texts))
        if f:
            if f.status == 429 or f.status >= 500:
                code = "ThrottlingException" if f.status == 429 else "ServiceUnavailable"
                return failure(Failure(f.status, {"message": f.body["message"]}), code)
            # the container's own error, as SageMaker wraps it
            wrapped = {
                "message": "Received client error",
                "OriginalStatusCode": f.status,
                "OriginalMessage": f.body["message"],
            }
            return failure(Failure(424, wrapped), "ModelError")
        return JSONResponse(stub.vectors(texts, 384).tolist())

    return app


@pytest.fixture(scope="module")
def provider_stub(real_embedder: Any) -> Iterator[ProviderStub]:
    """The stub, serving the session's torch model, for a test module."""
    from support import serving

    stub = ProviderStub(real_embedder)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ):
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        with serving(create_stub_app(stub)) as url:
            stub.url = url
            yield stub


@pytest.fixture
def stub(provider_stub: ProviderStub) -> Iterator[ProviderStub]:
    """The module's stub with no failures queued and no requests recorded."""
    provider_stub.reset()
    yield provider_stub
    provider_stub.reset()
