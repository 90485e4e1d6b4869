"""``POST /documents`` (an upload, streamed to disk), ``GET /documents`` and
``GET /documents/{id}``."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from ...documents import State
from ...exceptions import ConveyorError, safe_summary
from ...ids import document_id
from ...jobs import check_name
from ...sources import upload_source
from .. import schemas, uploads
from ..errors import HttpError, responses
from ..live import display_name
from ..state import Api, ApiState

router = APIRouter()
log = logging.getLogger(__name__)

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "collection": {
                            "type": "string",
                            "description": "collection to index into (default: the setting)",
                        },
                        "run": {"type": "string", "description": "run name (groups manifests)"},
                        "metadata": {
                            "type": "string",
                            "description": "a JSON object kept on the document",
                        },
                    },
                }
            }
        },
    }
}

DocumentState = State


@router.post(
    "/documents",
    status_code=202,
    response_model=schemas.UploadAccepted,
    responses=responses(413, 415, 503),
    openapi_extra=UPLOAD_BODY,
)
async def upload(request: Request, api: Api) -> JSONResponse:
    """Upload a file (multipart field ``file``; optional ``collection``, ``run`` and
    ``metadata``, a JSON object). Answers 202 with the document id and its status URL;
    the same bytes uploaded again to the same collection are the same document."""
    try:
        received = await _receive(request, api)
    except ClientDisconnect:  # nobody is left to answer: one line, no traceback
        log.info("upload abandoned: the client disconnected before the body ended")
        api.metrics.uploaded("abandoned")
        return JSONResponse({}, status_code=400)
    try:
        try:
            metadata = received.metadata()
            collection, run = _names(api, received.fields)
            result = await run_in_threadpool(_accept, api, received, collection, run, metadata)
        finally:
            received.close()
    except uploads.UploadError as exc:
        api.metrics.uploaded(f"rejected_{exc.status}")
        raise
    api.metrics.uploaded("duplicate" if result["duplicate"] else "accepted", received.size)
    return JSONResponse(result, status_code=202, headers={"Location": result["status_url"]})


async def _receive(request: Request, api: ApiState) -> uploads.Upload:
    try:
        return await uploads.receive(
            request.headers.get("content-type", ""),
            request.headers.get("content-length"),
            request.stream(),
            limit=api.upload_limit,
            tmp_dir=uploads.scratch_folder(api.settings.home),
        )
    except uploads.UploadError as exc:
        api.metrics.uploaded(f"rejected_{exc.status}")
        raise


def _names(api: ApiState, fields: dict[str, str]) -> tuple[str, str]:
    """The upload's collection and run: given, or the defaults; 422 when not valid."""
    try:
        collection = check_name("collection", fields.get("collection") or api.settings.collection)
        run = fields.get("run") or datetime.now(UTC).strftime("api-%Y%m%d")
        check_name("run", run)
    except ConveyorError as exc:
        raise HttpError(422, str(exc)) from None
    return collection, run


def _accept(
    api: ApiState,
    received: uploads.Upload,
    collection: str,
    run: str,
    metadata: dict[str, Any] | None,
) -> dict[str, Any]:
    """Store the bytes (once) and enqueue the document unless it is already known."""
    cv = api.cv
    c = cv.components
    with uploads.one_at_a_time(received.sha256):
        key, _stored = uploads.store(c.blobs, received)
        source = upload_source(key)  # not the server's path
        doc_id = document_id(collection, source)
        known = c.catalog.get(doc_id)
        duplicate = known is not None and known["state"] != State.FAILED
        # a queued duplicate sends its job again: a document whose job was lost (a crash
        # between the catalog and the queue) is never stuck; a second job finds it
        # unchanged and costs a read
        if known is None or not duplicate or known["state"] == State.QUEUED:
            if known is not None and duplicate:
                run = known["run"] or run
                metadata = ((known.get("metadata") or {}).get("user")) or metadata
            try:
                cv.submit(source, collection=collection, run=run, metadata=metadata)
            except Exception as exc:  # the queue is down or throttling: try again later
                raise HttpError(
                    503, f"stored, but could not be enqueued ({safe_summary(exc)}); retry"
                ) from None
    doc = c.catalog.get(doc_id) or {}
    return {
        "id": doc_id,
        "status_url": f"/documents/{doc_id}",
        "state": doc.get("state", State.QUEUED.value),
        "duplicate": duplicate,
        "name": display_name(source),
        "collection": collection,
        "run": doc.get("run", run),
        "size": received.size,
        "sha256": received.sha256,
        "kind": received.kind,
        "source": source,
    }


@router.get("/documents", response_model=list[schemas.DocumentSummary])
def list_documents(
    api: Api,
    state: DocumentState | None = None,
    collection: str | None = Query(None, max_length=128),
    run: str | None = Query(None, max_length=128),
    limit: int = Query(100, ge=1, le=1000),
) -> Any:
    """Documents, most recently changed first; filter by state, collection, run."""
    docs = api.cv.components.catalog.documents(
        state=state, collection=collection, run=run, limit=limit
    )
    return [schemas.summary(d) for d in docs]


@router.get(
    "/documents/{document_id}", response_model=schemas.DocumentStatus, responses=responses(404)
)
def get_document(api: Api, document_id: str) -> Any:
    """One document: state, stage, chunks, error, timings per stage, metadata."""
    doc = api.cv.components.catalog.get(document_id) if len(document_id) <= 200 else None
    if doc is None:
        raise HttpError(404, f"no document {document_id[:80]!r}")
    return schemas.status(doc)


class DeletionAccepted(BaseModel):
    id: str
    status_url: str = Field(description="404 once the compactor has removed the document")


@router.delete(
    "/documents/{document_id}",
    status_code=202,
    response_model=DeletionAccepted,
    responses=responses(404),
)
def delete_document(api: Api, document_id: str) -> Any:
    """Remove a document: its chunks from every collection it fills, then the document,
    through the compactor (the single writer). 202 at once; its status URL answers 404
    when it is gone."""
    if len(document_id) > 200 or api.cv.components.catalog.get(document_id) is None:
        raise HttpError(404, f"no document {document_id[:80]!r}")
    api.cv.delete([document_id])
    return DeletionAccepted(id=document_id, status_url=f"/documents/{document_id}")
