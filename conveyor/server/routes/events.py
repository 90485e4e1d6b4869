"""``GET /events`` (server-sent events: ``document`` and ``queue``) and
``POST /events/token``, the short-lived token a browser's EventSource connects with
(it cannot send the key in a header, and a key in a URL would end up in logs)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from .. import schemas
from ..errors import HttpError, responses
from ..live import Event, Live
from ..state import Api, presented_key, require_key

SSE_KEEPALIVE = 15.0

router = APIRouter()


@router.post(
    "/events/token",
    response_model=schemas.EventToken,
    dependencies=[Depends(require_key)],
    responses=responses(401, 422),
)
def event_token(api: Api) -> Any:
    """A short-lived token for ``GET /events?token=…`` (a browser's EventSource
    cannot send the key in a header, and a key in a URL would end up in logs)."""
    token, seconds = api.keys.event_token()
    return {"token": token, "expires_in": seconds}


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "server-sent events"},
        **responses(401, 422),
    },
)
async def events(
    request: Request,
    api: Api,
    key: Annotated[str | None, Depends(presented_key)],
    token: str | None = Query(None, max_length=200, description="from POST /events/token"),
    limit: int | None = Query(
        None, ge=1, le=10_000, description="close the stream after this many events"
    ),
) -> StreamingResponse:
    """Server-sent events: ``document`` (a document changed state or stage) and
    ``queue`` (depth or counts changed). Authenticate with the key in a header
    (curl) or an event token in the query (a browser)."""
    if not (api.keys.check(key) if key else api.keys.check_event_token(token)):
        raise HttpError(401, "send an API key in a header, or ?token= from POST /events/token")
    last_id = request.headers.get("last-event-id", "")
    queue = api.live.subscribe()
    replay = [e for e in list(api.live.recent_events) if last_id.isdigit() and e.id > int(last_id)]
    return StreamingResponse(
        _stream(api.live, queue, replay, limit),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(
    live: Live, queue: asyncio.Queue[Event], replay: list[Event], limit: int | None
) -> AsyncIterator[str]:
    """``replay`` (what a reconnecting client missed), then each event put on ``queue``,
    with a comment now and then so proxies keep the connection; ends when the server
    stops or after ``limit`` events, and unsubscribes ``queue``."""
    sent = 0
    try:
        yield "retry: 3000\n\n"
        pending = list(replay)
        quiet = time.monotonic()
        while not live.stopping.is_set():
            if pending:
                event = pending.pop(0)
            else:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=1.0)
                except TimeoutError:
                    if time.monotonic() - quiet > SSE_KEEPALIVE:
                        quiet = time.monotonic()
                        yield ": keep-alive\n\n"
                    continue
            quiet = time.monotonic()
            data = json.dumps(event.data, separators=(",", ":"), default=str)
            yield f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n"
            sent += 1
            if limit is not None and sent >= limit:
                return
    finally:
        live.unsubscribe(queue)
