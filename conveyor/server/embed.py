"""``conveyor embed-server``: one embedding model in memory for every worker and app.

``create_app(settings)`` builds the FastAPI app; its lifespan loads the model in
the background (``/health`` answers 503 until it is ready). Concurrent requests
are merged into model batches (bounded by texts, tokens and a few milliseconds
of waiting) by :class:`~conveyor.embedding.batching.BatchingEmbedder` and split
back; when too many texts are waiting the server answers 429 rather than
queueing without end. Every error has one JSON shape:
``{"error": {"message": ..., "type": ...}}``.

Endpoints: ``GET /health``, ``POST /embed {"texts": [...]}``, the OpenAI-compatible
``POST /v1/embeddings`` (string or list input, ``encoding_format`` float or
base64, ``usage``), and Prometheus ``GET /metrics``.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from pydantic import BaseModel

from ..embedding.batching import BatchingEmbedder, Overloaded
from ..settings import Settings

MAX_TEXTS = 512
MAX_CHARS = 32_000
MAX_PENDING = 4096
MAX_BATCH_TOKENS = 8192  # tokens in one model batch (32 texts of 256 tokens)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class EmbedRequest(BaseModel):
    texts: list[str]


class OpenAIRequest(BaseModel):
    input: str | list[str]
    model: str | None = None
    encoding_format: str = "float"


class Metrics:
    """Counters and a latency histogram, rendered in Prometheus' text format."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}
        self.texts = 0
        self.latency = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self._lock = threading.Lock()

    def observe(self, path: str, status: int, seconds: float, texts: int = 0) -> None:
        with self._lock:
            self.requests[(path, status)] = self.requests.get((path, status), 0) + 1
            self.texts += texts
            index = next((i for i, b in enumerate(LATENCY_BUCKETS) if seconds <= b), -1)
            self.latency[index] += 1
            self.latency_sum += seconds

    def render(self, batcher: BatchingEmbedder | None, started: float) -> str:
        lines = [
            "# HELP conveyor_embed_requests_total Requests by path and status.",
            "# TYPE conveyor_embed_requests_total counter",
        ]
        with self._lock:
            for (path, status), n in sorted(self.requests.items()):
                lines.append(
                    f'conveyor_embed_requests_total{{path="{path}",status="{status}"}} {n}'
                )
            lines += [
                "# TYPE conveyor_embed_texts_total counter",
                f"conveyor_embed_texts_total {self.texts}",
                "# HELP conveyor_embed_latency_seconds Request latency.",
                "# TYPE conveyor_embed_latency_seconds histogram",
            ]
            cumulative = 0
            for bound, n in zip(LATENCY_BUCKETS, self.latency, strict=False):
                cumulative += n
                lines.append(f'conveyor_embed_latency_seconds_bucket{{le="{bound}"}} {cumulative}')
            total = sum(self.latency)
            lines += [
                f'conveyor_embed_latency_seconds_bucket{{le="+Inf"}} {total}',
                f"conveyor_embed_latency_seconds_sum {self.latency_sum:.6f}",
                f"conveyor_embed_latency_seconds_count {total}",
            ]
        if batcher is not None:
            batches = batcher.batches or 1
            lines += [
                "# TYPE conveyor_embed_batches_total counter",
                f"conveyor_embed_batches_total {batcher.batches}",
                "# TYPE conveyor_embed_batch_size_mean gauge",
                f"conveyor_embed_batch_size_mean {batcher.batched_texts / batches:.3f}",
                "# TYPE conveyor_embed_batch_tokens_mean gauge",
                f"conveyor_embed_batch_tokens_mean {batcher.batched_tokens / batches:.1f}",
                "# HELP conveyor_embed_queue_wait_seconds Time requests waited for a batch.",
                "# TYPE conveyor_embed_queue_wait_seconds summary",
                f"conveyor_embed_queue_wait_seconds_sum {batcher.waited:.6f}",
                f"conveyor_embed_queue_wait_seconds_count {batcher.waits}",
                "# TYPE conveyor_embed_queue_texts gauge",
                f"conveyor_embed_queue_texts {batcher.pending}",
            ]
        lines += [
            "# TYPE conveyor_embed_uptime_seconds gauge",
            f"conveyor_embed_uptime_seconds {time.time() - started:.1f}",
        ]
        return "\n".join(lines) + "\n"


def create_app(
    settings: Settings | None = None, *, embedder: Any = None, max_pending: int = MAX_PENDING
) -> Any:
    """The embed-server app. ``embedder``: an already loaded model (tests, benchmarks);
    ``max_pending``: texts allowed to wait for the model before requests get 429."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, PlainTextResponse

    settings = settings or Settings()
    state: dict[str, Any] = {"ready": False, "error": None, "started": time.time()}
    metrics = Metrics()

    def load() -> None:
        try:
            model = embedder
            if model is None:  # the configured model and backend (torch, onnx, onnx-int8)
                from ..app import Components

                model = Components(settings).local_embedder
            model.embed(["warm up"])
            state["model"] = model
            state["dim"] = int(model.dim)
            state["batcher"] = BatchingEmbedder(
                model,
                max_batch=settings.embed_batch_size * 2,
                max_tokens=MAX_BATCH_TOKENS,
                max_pending=max_pending,
            )
            state["ready"] = True
        except Exception as exc:  # /health says so
            state["error"] = f"{type(exc).__name__}: {exc}"

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        loader = threading.Thread(target=load, name="conveyor-model-load", daemon=True)
        loader.start()
        yield
        batcher = state.get("batcher")
        if batcher is not None:  # requests in flight finish; the batch thread ends
            await asyncio.to_thread(batcher.close)

    app = FastAPI(title="conveyor embed-server", lifespan=lifespan)

    def error(status: int, message: str, kind: str) -> Any:
        return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Any:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error(
            422,
            f"invalid request: {where}: {first.get('msg', 'bad value')}",
            "invalid_request_error",
        )

    async def run(texts: list[str], path: str) -> tuple[np.ndarray | None, Any]:
        started = time.perf_counter()
        if not state["ready"]:
            return None, error(503, "the model is still loading; retry shortly", "unavailable")
        if not texts:
            return None, error(422, "no texts to embed", "invalid_request_error")
        if len(texts) > MAX_TEXTS:
            metrics.observe(path, 413, 0.0)
            return None, error(
                413,
                f"{len(texts)} texts in one request; the limit is {MAX_TEXTS}",
                "request_too_large",
            )
        longest = max(len(t) for t in texts)
        if longest > MAX_CHARS:
            metrics.observe(path, 422, 0.0)
            return None, error(
                422,
                f"a text has {longest} characters; the limit is {MAX_CHARS}",
                "invalid_request_error",
            )
        try:
            vectors = await asyncio.to_thread(state["batcher"].embed, texts)
        except Overloaded as exc:
            metrics.observe(path, 429, time.perf_counter() - started)
            return None, error(429, str(exc), "overloaded")
        except Exception as exc:
            metrics.observe(path, 500, time.perf_counter() - started)
            return None, error(500, f"embedding failed: {type(exc).__name__}", "server_error")
        metrics.observe(path, 200, time.perf_counter() - started, len(texts))
        return vectors, None

    @app.get("/health")
    async def health() -> Any:
        if state["error"]:
            return error(503, f"the model failed to load: {state['error']}", "unavailable")
        if not state["ready"]:
            return JSONResponse({"status": "loading"}, status_code=503)
        model = state["model"]
        return {
            "status": "ok",
            "model": model.model_id,
            "dim": state["dim"],
            "backend": getattr(model, "backend", type(model).__name__),
            "uptime_s": round(time.time() - state["started"], 1),
        }

    @app.post("/embed")
    async def embed(body: EmbedRequest) -> Any:
        vectors, failure = await run(body.texts, "/embed")
        if failure is not None:
            return failure
        assert vectors is not None
        return JSONResponse(  # as is: FastAPI's encoder would walk every float again
            {"embeddings": vectors.tolist(), "model": state["model"].model_id, "dim": state["dim"]}
        )

    @app.post("/v1/embeddings")
    async def openai_embeddings(body: OpenAIRequest) -> Any:
        texts = [body.input] if isinstance(body.input, str) else body.input
        if body.encoding_format not in ("float", "base64"):
            return error(
                422, "encoding_format must be 'float' or 'base64'", "invalid_request_error"
            )
        vectors, failure = await run(texts, "/v1/embeddings")
        if failure is not None:
            return failure
        assert vectors is not None
        tokenizer = getattr(state["model"], "tokenizer", None)
        tokens = sum(tokenizer.count(texts)) if tokenizer else sum(len(t.split()) for t in texts)
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
                "model": state["model"].model_id,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    @app.get("/metrics")
    async def prometheus() -> Any:
        return PlainTextResponse(
            metrics.render(state.get("batcher"), state["started"]),
            media_type="text/plain; version=0.0.4",
        )

    return app
