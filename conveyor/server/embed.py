"""``conveyor embed-server``: one embedding model in memory for every worker and app.

``create_app(settings)`` builds the FastAPI app over an :class:`EmbedService`; its
lifespan loads the model in the background (``/health`` answers 503 until it is
ready). Concurrent requests are merged into model batches (bounded by texts, tokens
and a few milliseconds of waiting) by
:class:`~conveyor.embedding.batching.BatchingEmbedder` and split back; when too many
texts are waiting the server answers 429 rather than queueing without end. Errors
have the one shape of :mod:`conveyor.server.errors`.

Endpoints: ``GET /health`` (the model, its dimension and the backend as
``CONVEYOR_EMBEDDING_BACKEND`` names it), ``POST /embed {"texts": [...]}``, the
OpenAI-compatible ``POST /v1/embeddings`` (string or list input, ``encoding_format``
float or base64, ``usage``; an unknown ``model`` is a 404 ``model_not_found``), and
Prometheus ``GET /metrics``, which counts every answer of the two embedding paths by
status (:class:`Counted`).
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from ..embedding.batching import BatchingEmbedder, Overloaded
from ..settings import Settings
from . import errors, schemas
from .errors import HttpError, error_response
from .limits import BodyLimit
from .metrics import EmbedMetrics, exposition

MAX_TEXTS = 512
MAX_CHARS = 32_000
MAX_PENDING = 4096
MAX_BODY_BYTES = 32 * 1024 * 1024  # a full request (512 × 32,000 characters) with room
MAX_BATCH_TOKENS = 8192  # tokens in one model batch (32 texts of 256 tokens)
INVALID = "invalid_request_error"  # the error type OpenAI's API gives bad input


class EmbedService:
    """The model behind the app: loaded in a thread (:meth:`load`), then shared by every
    request through one batcher; the app's metrics."""

    def __init__(self, settings: Settings, embedder: Any = None, max_pending: int = MAX_PENDING):
        self.settings, self.embedder, self.max_pending = settings, embedder, max_pending
        self.started = time.time()
        self.ready = False
        self.error: str | None = None
        self.model: Any = None
        self.dim = 0
        self.batcher: BatchingEmbedder | None = None
        self.metrics = EmbedMetrics(lambda: self.batcher)

    def load(self) -> None:
        """Load and warm the model (the configured one unless one was given)."""
        try:
            model = self.embedder
            if model is None:  # the configured model and backend
                from ..components import Components

                model = Components(self.settings).model
            model.embed(["warm up"])
            self.model, self.dim = model, int(model.dim)
            self.batcher = BatchingEmbedder(
                model,
                max_batch=self.settings.embed_batch_size * 2,
                max_tokens=MAX_BATCH_TOKENS,
                max_pending=self.max_pending,
            )
            self.ready = True
        except Exception as exc:  # /health says so
            self.error = f"{type(exc).__name__}: {exc}"

    async def embed(self, texts: list[str]) -> np.ndarray:
        """The vectors of ``texts``, batched with other requests' texts; an
        :class:`~conveyor.server.errors.HttpError` when the request cannot be served
        (:class:`Counted` counts every answer, errors too)."""
        if not self.ready or self.batcher is None:
            raise HttpError(503, "the model is still loading; retry shortly")
        if not texts:
            raise HttpError(422, "no texts to embed", INVALID)
        if len(texts) > MAX_TEXTS:
            raise HttpError(413, f"{len(texts)} texts in one request; the limit is {MAX_TEXTS}")
        longest = max(len(t) for t in texts)
        if longest > MAX_CHARS:
            raise HttpError(
                422, f"a text has {longest} characters; the limit is {MAX_CHARS}", INVALID
            )
        try:
            vectors = await self.batcher.aembed(texts)
        except Overloaded as exc:
            raise HttpError(429, str(exc), headers={"Retry-After": "1"}) from None
        except Exception as exc:
            raise HttpError(
                500, f"embedding failed: {type(exc).__name__}", "server_error"
            ) from None
        self.metrics.embedded(len(texts))
        return vectors

    def check_model(self, name: str | None) -> None:
        """404 ``model_not_found`` (as OpenAI's API answers) unless ``name`` is the
        served model: its id (``sentence-transformers/all-MiniLM-L6-v2``) or the id's
        last part (``all-MiniLM-L6-v2``); no name means the served one."""
        if name is None or not self.ready:
            return
        served = str(self.model.model_id)
        if name not in (served, served.rsplit("/", 1)[-1]):
            raise HttpError(
                404,
                f"the model {name[:200]!r} is not served here; this server has {served!r}",
                "model_not_found",
            )

    def tokens(self, texts: list[str]) -> int:
        """What ``usage`` reports: the model's tokens, else words."""
        tokenizer = getattr(self.model, "tokenizer", None)
        return sum(tokenizer.count(texts)) if tokenizer else sum(len(t.split()) for t in texts)


def embed_service(request: Request) -> EmbedService:
    service: EmbedService = request.app.state.service
    return service


Service = Annotated[EmbedService, Depends(embed_service)]

router = APIRouter()


@router.get("/health", response_model=schemas.EmbedHealth, responses=errors.responses(503))
async def health(service: Service) -> Any:
    """Ready once the model is loaded; 503 while it loads or when it failed to."""
    if service.error:
        return error_response(503, f"the model failed to load: {service.error}")
    if not service.ready:
        return JSONResponse({"status": "loading"}, status_code=503)
    return {
        "status": "ok",
        "model": service.model.model_id,
        "dim": service.dim,
        "backend": getattr(service.model, "backend", type(service.model).__name__),
        "uptime_s": round(time.time() - service.started, 1),
    }


LIMITS = errors.responses(413, 422, 429, 503)
COUNTED = ("/embed", "/v1/embeddings")
"""The paths ``conveyor_embed_requests_total`` counts, by the status of every answer."""


class Counted:
    """ASGI middleware: every answer on :data:`COUNTED` paths goes into the metrics with
    its status and latency, whatever produced it (the route, a 413/429 it raised, or a
    422 for a body that did not validate, which never reaches the route)."""

    def __init__(self, app: Any, metrics: EmbedMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path") if scope["type"] == "http" else None
        if path not in COUNTED:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.observe(str(path), status, time.perf_counter() - started)


@router.post("/embed", response_model=schemas.Embeddings, responses=LIMITS)
async def embed(service: Service, body: schemas.EmbedRequest) -> JSONResponse:
    """The vectors of ``texts``, in order."""
    vectors = await service.embed(body.texts)
    return JSONResponse(  # as is: FastAPI's encoder would walk every float again
        {"embeddings": vectors.tolist(), "model": service.model.model_id, "dim": service.dim}
    )


@router.post("/v1/embeddings", response_model=schemas.OpenAIEmbeddings, responses=LIMITS)
async def openai_embeddings(service: Service, body: schemas.OpenAIRequest) -> JSONResponse:
    """OpenAI's embeddings API: ``input`` a string or a list, ``encoding_format``
    ``float`` or ``base64`` (little-endian float32), ``model`` the served model's name
    (or its last part, or none); another name is a 404 ``model_not_found``."""
    texts = [body.input] if isinstance(body.input, str) else body.input
    if body.encoding_format not in ("float", "base64"):
        raise HttpError(422, "encoding_format must be 'float' or 'base64'", INVALID)
    service.check_model(body.model)
    vectors = await service.embed(texts)
    tokens = service.tokens(texts)
    data = []
    for i, v in enumerate(vectors):
        value: Any = (
            base64.b64encode(v.astype("<f4").tobytes()).decode()
            if body.encoding_format == "base64"
            else v.tolist()
        )
        data.append({"object": "embedding", "index": i, "embedding": value})
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "model": service.model.model_id,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(service: Service) -> PlainTextResponse:
    """Prometheus text: requests by path and status, texts, latency, batches."""
    return exposition(service.metrics.registry)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the model in the background; on shutdown, let requests in flight finish."""
    service: EmbedService = app.state.service
    loader = threading.Thread(target=service.load, name="conveyor-model-load", daemon=True)
    loader.start()
    yield
    if service.batcher is not None:  # requests in flight finish; the batch thread ends
        await asyncio.to_thread(service.batcher.close)
    if service.embedder is None and service.model is not None:  # the one it built
        service.model.close()  # a provider's connections


def create_app(
    settings: Settings | None = None, *, embedder: Any = None, max_pending: int = MAX_PENDING
) -> FastAPI:
    """The embed-server app. ``embedder``: an already loaded model (tests, benchmarks);
    ``max_pending``: texts allowed to wait for the model before requests get 429."""
    app = FastAPI(title="conveyor embed-server", lifespan=lifespan)
    service = EmbedService(settings or Settings(), embedder, max_pending)
    app.state.service = service
    errors.install(app, invalid_kind=INVALID)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)  # inside: its 413s are counted
    app.add_middleware(Counted, metrics=service.metrics)
    app.include_router(router)
    return app
