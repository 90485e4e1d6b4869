"""``POST /ingest``: the recorder's upload — a recording with the device that made it
and when (:mod:`conveyor.recordings`).

::

    curl -X POST localhost:8000/ingest -H "x-api-key: $KEY" \\
      -F deviceId=esp32-test -F startedAt=2025-12-10T10:00:00Z \\
      -F endedAt=2025-12-10T10:05:00Z -F audio=@test.wav

The same as ``POST /documents`` (streamed to disk, sniffed, stored once by content,
202 with the document id and status URL), with the file in ``audio`` (or ``file``)
and the recorder's fields kept on the document as ``device_id``, ``started_at`` and
``ended_at``. A bad time, or an end before the start, is a 422 naming the field; an
upload that stops before its end stores nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from ... import recordings
from .. import schemas, uploads
from ..errors import error_response, responses
from ..state import Api, ApiState
from .documents import _accept, _names

router = APIRouter()
log = logging.getLogger(__name__)

FILES = ("audio", "file")
FIELDS = (*uploads.FIELDS, *recordings.FORM_FIELDS)

RECORDER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["audio", "deviceId", "startedAt"],
                    "properties": {
                        "audio": {
                            "type": "string",
                            "format": "binary",
                            "description": "the recording (or send it as 'file')",
                        },
                        "deviceId": {"type": "string", "description": "the recorder's id"},
                        "startedAt": {
                            "type": "string",
                            "format": "date-time",
                            "description": "ISO 8601 with a zone: 2025-12-10T10:00:00Z",
                        },
                        "endedAt": {
                            "type": "string",
                            "format": "date-time",
                            "description": "ISO 8601 with a zone, not before startedAt",
                        },
                        "collection": {"type": "string"},
                        "run": {"type": "string"},
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


@router.post(
    "/ingest",
    status_code=202,
    response_model=schemas.UploadAccepted,
    responses=responses(413, 415, 422, 503),
    openapi_extra=RECORDER_BODY,
)
async def ingest(request: Request, api: Api) -> JSONResponse:
    """A recorder's upload: multipart ``audio`` (or ``file``), ``deviceId``,
    ``startedAt`` and ``endedAt`` (ISO 8601). 202 with the document id and its status
    URL; the same bytes uploaded again are the same document."""
    length = request.headers.get("content-length")
    try:
        received = await uploads.receive(
            request.headers.get("content-type", ""),
            length,
            _counted(request, counter := [0]),
            limit=api.upload_limit,
            tmp_dir=uploads.scratch_folder(api.settings.home),
            files=FILES,
            fields=FIELDS,
        )
    except ClientDisconnect:
        return _cut_short(api, counter[0], length)
    except uploads.UploadError as exc:
        api.metrics.uploaded(f"rejected_{exc.status}")
        raise
    try:
        try:
            recording = recordings.from_form(received.fields)
            metadata = {**(received.metadata() or {}), **recording}
            collection, run = _names(api, received.fields)
            result = await run_in_threadpool(_accept, api, received, collection, run, metadata)
        finally:
            received.close()
    except recordings.BadRecording as exc:
        api.metrics.uploaded("rejected_422")
        raise uploads.UploadError(422, str(exc), "invalid_request") from None
    except uploads.UploadError as exc:
        api.metrics.uploaded(f"rejected_{exc.status}")
        raise
    api.metrics.uploaded("duplicate" if result["duplicate"] else "accepted", received.size)
    return JSONResponse(result, status_code=202, headers={"Location": result["status_url"]})


async def _counted(request: Request, counter: list[int]) -> Any:
    """The body's pieces, counting the bytes that arrived."""
    async for piece in request.stream():
        counter[0] += len(piece)
        yield piece


def _cut_short(api: ApiState, got: int, length: str | None) -> JSONResponse:
    """The client went away before the body ended: nothing was stored (the part received
    was in a temporary file, removed). Said in the log, and to the client if it still
    listens."""
    expected = (
        f" of the {int(length):,} its Content-Length announced"
        if length and length.isdigit()
        else ""
    )
    reason = (
        f"the upload ended after {got:,} bytes{expected}: the connection closed before the"
        " body was complete; nothing was stored, send it again"
    )
    log.warning("recorder upload cut short: %s", reason, extra={"received": got})
    api.metrics.uploaded("abandoned")
    return error_response(400, reason, "upload_incomplete")
