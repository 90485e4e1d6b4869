"""``GET /health`` (no key needed) and ``GET /metrics`` (a key only with
``CONVEYOR_METRICS_NEED_KEY``: ``create_api`` includes :data:`metrics_router`
accordingly)."""

from __future__ import annotations

import logging
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from ...exceptions import safe_summary
from .. import schemas
from ..errors import error_response, responses
from ..metrics import exposition
from ..state import Api

log = logging.getLogger(__name__)

router = APIRouter()
metrics_router = APIRouter()


def package_version() -> str:
    try:
        return version("conveyor")
    except PackageNotFoundError:  # pragma: no cover - a source checkout
        return "0+unknown"


@router.get("/health", response_model=schemas.Health, responses=responses(503))
def health(api: Api) -> Any:
    """Liveness and readiness: the queue answers, in-process workers (if any) run."""
    try:
        api.cv.components.queue.depth()
    except Exception as exc:  # /health needs no key: the details go to the log only
        log.warning("health check: the queue is unavailable: %s", safe_summary(exc))
        return error_response(503, "the queue is unavailable (see the server's log)")
    if api.worker_error:
        log.warning("health check: the in-process workers stopped: %s", api.worker_error)
        return error_response(503, "the in-process workers stopped (see the server's log)")
    return {
        "status": "ok",
        "version": package_version(),
        "auth": not api.keys.open,
        "workers": api.workers,
        "uptime_s": round(time.time() - api.live.started, 1),
    }


@metrics_router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}}, **responses(401, 422)},
)
async def metrics(api: Api) -> PlainTextResponse:
    """Prometheus text: queue depth, documents, jobs by outcome, stage durations,
    embeddings, errors by kind, worker heartbeat ages."""
    return await run_in_threadpool(exposition, api.metrics.registry)
