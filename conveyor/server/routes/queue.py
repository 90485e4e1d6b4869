"""``GET /queue``, the dead letters (``GET /dead-letters`` and their redrive), and
``GET /status``: everything the status page shows, in one request."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from ...documents import State
from ...exceptions import ConveyorError
from .. import schemas
from ..errors import HttpError, responses
from ..state import Api

router = APIRouter()


@router.get("/queue", response_model=schemas.QueueDepth)
def queue_depth(api: Api) -> Any:
    """Jobs visible, in flight, delayed, and dead-lettered."""
    return api.cv.components.queue.depth().as_dict()


@router.get("/dead-letters", response_model=list[schemas.DeadLetter])
def dead_letters(api: Api, limit: int = Query(100, ge=1, le=1000)) -> Any:
    """Jobs that failed for good, most recent first, with their reasons."""
    default = api.settings.collection
    return [schemas.dead_letter(d, default) for d in api.cv.dead_letters(limit)]


@router.post("/dead-letters/redrive", response_model=schemas.Redriven, responses=responses(404))
def redrive(api: Api, body: schemas.RedriveRequest) -> Any:
    """Put dead letters back on the queue (``job_ids``; null for all of them)."""
    api.failures.forget()
    try:
        return {"redriven": api.cv.redrive(body.job_ids)}
    except ConveyorError as exc:
        raise HttpError(404, str(exc)) from None


@router.post(
    "/dead-letters/{job_id}/redrive", response_model=schemas.Redriven, responses=responses(404)
)
def redrive_one(api: Api, job_id: str) -> Any:
    """Put one dead letter back on the queue."""
    api.failures.forget()
    try:
        return {"redriven": api.cv.redrive([job_id])}
    except ConveyorError:
        raise HttpError(404, f"no dead letter {job_id[:80]!r}") from None


@router.get("/status", response_model=schemas.Overview)
def overview(api: Api) -> Any:
    """Everything the status page shows, in one request."""
    c = api.cv.components
    depth = c.queue.depth()
    return {
        "queue": depth.as_dict(),
        "states": list(State),
        "documents": c.catalog.counts(),
        "workers": [
            {**w, "started_at": schemas.timestamp(w["started_at"])} for w in api.live.workers()
        ],
        "throughput": [
            {**p, "minute": schemas.timestamp(p["minute"])} for p in api.live.throughput()
        ],
        "recent": [schemas.summary(d) for d in c.catalog.documents(limit=25)],
        "failures": api.failures.get(depth.dead),
        "in_process_workers": api.workers,
        "rebuilds": [
            {
                "collection": g["collection"],
                "generation": g["building"]["number"],
                "model": g["building"]["model"],
                "answering": g["active"],
                "settled": g["settled"],
                "failed": g["failed"],
                "of": g["of"],
            }
            for g in c.generations.report(c.catalog)
        ],
    }
