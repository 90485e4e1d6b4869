"""``conveyor serve``: the HTTP API, the live status page and Prometheus metrics.

``create_api(settings)`` builds the FastAPI app over a :class:`~conveyor.app.Conveyor`.
Its lifespan starts :class:`~conveyor.server.live.Live` (the catalog watched for
``/events`` and ``/metrics``) and, with ``workers=N``, a worker pool of N slots and
the compactor in a background thread, stopped gracefully on shutdown; without
workers the API only enqueues and reads, and workers run elsewhere.

Endpoints (OpenAPI at ``/docs``): ``POST /documents`` (multipart upload, 202),
``GET /documents``, ``GET /documents/{id}``, ``GET /search``, ``GET /dead-letters``,
``POST /dead-letters/redrive``, ``POST /dead-letters/{job_id}/redrive``,
``GET /queue``, ``GET /status`` (everything the status page shows), ``GET /events``
(server-sent events), ``POST /events/token``, ``GET /health``, ``GET /metrics``, and
the status page itself at ``/``. Every error has one JSON shape:
``{"error": {"message": ..., "type": ...}}``; bad input is a 4xx, never a 500.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from ..exceptions import ConveyorError, safe_summary
from ..ids import document_id
from ..jobs import check_name, document_of
from ..settings import Settings
from . import uploads
from .auth import Keys, parse_keys
from .live import Live, display_name

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
WORKER_GRACE = 30
FAILURES_TTL = 15.0  # seconds a listing of dead letters serves the status page
SSE_KEEPALIVE = 15.0

API_KEY_HEADER = APIKeyHeader(name="x-api-key", auto_error=False, scheme_name="ApiKey")
BEARER = HTTPBearer(auto_error=False, scheme_name="Bearer")


# -- response models (the OpenAPI schema is built from these) --------------------


class ErrorDetail(BaseModel):
    message: str
    type: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    auth: bool = Field(description="whether requests need an API key")
    workers: int = Field(description="worker slots running in this process (--workers)")
    uptime_s: float


class QueueDepth(BaseModel):
    visible: int
    in_flight: int
    delayed: int
    dead: int


class DocumentSummary(BaseModel):
    id: str
    name: str = Field(description="the source's file name")
    collection: str
    source: str
    run: str | None
    state: Literal["queued", "running", "done", "skipped", "failed"]
    stage: str | None = Field(description="where a running document is: fetch, extract, …")
    kind: str | None
    chunks: int
    error: str | None
    error_kind: str | None
    attempts: int
    created_at: datetime
    updated_at: datetime


class DocumentStatus(DocumentSummary):
    mime: str | None
    size: int | None
    content_hash: str | None
    model: str | None
    timings: dict[str, float] = Field(description="seconds per stage of the last run")
    metadata: dict[str, Any] = Field(description="the uploader's metadata, as given")
    details: dict[str, Any] = Field(description="what extraction found: title, pages, …")


class UploadAccepted(BaseModel):
    id: str = Field(description="the document id")
    status_url: str
    state: str
    duplicate: bool = Field(description="the same bytes were already a document here")
    name: str
    collection: str
    run: str | None
    size: int
    sha256: str
    kind: str = Field(description="the type sniffed from the bytes")
    source: str


class Hit(BaseModel):
    score: float
    id: str
    document_id: str
    name: str
    source: str
    chunk_index: int
    page: int | None
    text: str
    metadata: dict[str, Any]
    collection: str


class SearchResults(BaseModel):
    query: str
    collection: str
    hits: list[Hit]


class DeadLetter(BaseModel):
    job_id: str
    document_id: str | None
    name: str | None
    source: str | None
    collection: str | None
    error: str | None
    attempts: int
    first_seen: datetime
    last_seen: datetime


class RedriveRequest(BaseModel):
    job_ids: list[str] | None = Field(
        None, max_length=1000, description="dead letters to redrive; null: all of them"
    )


class Redriven(BaseModel):
    redriven: int


class Worker(BaseModel):
    id: str
    host: str
    pid: int
    concurrency: int
    state: str
    stale: bool
    in_flight: int
    jobs_done: int
    jobs_failed: int
    heartbeat_age: float = Field(description="seconds since its last heartbeat")
    started_at: datetime


class ThroughputPoint(BaseModel):
    minute: datetime
    done: int
    failed: int
    chunks: int


class Overview(BaseModel):
    queue: QueueDepth
    documents: dict[str, int]
    workers: list[Worker]
    throughput: list[ThroughputPoint]
    recent: list[DocumentSummary]
    failures: list[DeadLetter]
    in_process_workers: int


class EventToken(BaseModel):
    token: str
    expires_in: int = Field(description="seconds the token may be used to connect")


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str) -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "no API key, or a wrong one"},
    422: {"model": ErrorResponse, "description": "invalid parameters"},
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    found: dict[int | str, dict[str, Any]] = dict(ERRORS)
    for code in codes:
        found[code] = {"model": ErrorResponse, "description": _DESCRIPTIONS[code]}
    return found


_DESCRIPTIONS = {
    404: "no such document, collection or dead letter",
    409: "the collection was embedded with another model",
    413: "the file is over the size limit",
    415: "not multipart, or a file type conveyor cannot index",
    503: "a backend is unavailable",
}

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


def _time(ts: float | None) -> datetime:
    return datetime.fromtimestamp(ts or 0.0, UTC)


def _summary(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": doc["id"],
        "name": display_name(doc["source"]),
        "collection": doc["collection"],
        "source": doc["source"],
        "run": doc["run"],
        "state": doc["state"],
        "stage": doc["stage"],
        "kind": doc["kind"],
        "chunks": doc["chunks"] or 0,
        "error": doc["error"],
        "error_kind": doc["error_kind"],
        "attempts": doc["attempts"] or 0,
        "created_at": _time(doc["created_at"]),
        "updated_at": _time(doc["updated_at"]),
    }


def _status(doc: dict[str, Any]) -> dict[str, Any]:
    details = dict(doc.get("metadata") or {})
    user = details.pop("user", None)
    return {
        **_summary(doc),
        "mime": doc["mime"],
        "size": doc["size"],
        "content_hash": doc["content_hash"],
        "model": doc["model"],
        "timings": {
            k: round(float(v), 4)
            for k, v in (doc.get("timings") or {}).items()
            if isinstance(v, int | float)
        },
        "metadata": user if isinstance(user, dict) else {},
        "details": details,
    }


def _dead_letter(letter: Any, default_collection: str) -> dict[str, Any]:
    body = letter.body if isinstance(letter.body, dict) else {}
    source = body.get("source") if isinstance(body.get("source"), str) else None
    return {
        "job_id": letter.job_id,
        "document_id": document_of(body, default_collection),
        "name": display_name(source) if source else None,
        "source": source,
        "collection": body.get("collection") or (default_collection if source else None),
        "error": letter.error,
        "attempts": letter.receive_count,
        "first_seen": _time(letter.first_seen),
        "last_seen": _time(letter.last_seen),
    }


def _version() -> str:
    try:
        return version("conveyor")
    except PackageNotFoundError:  # pragma: no cover - a source checkout
        return "0+unknown"


def create_api(
    settings: Settings | None = None,
    *,
    conveyor: Any = None,
    workers: int = 0,
    poll_interval: float | None = None,
) -> Any:
    """The API app. ``conveyor``: an open :class:`~conveyor.app.Conveyor` to serve (tests
    pass one with an already loaded model); ``workers``: worker slots to run beside the
    API (0: none, the API only enqueues and reads)."""
    from ..app import Conveyor

    settings = settings or (conveyor.settings if conveyor is not None else Settings())
    owned = conveyor is None
    cv: Conveyor = conveyor if conveyor is not None else Conveyor(settings)
    if owned:
        cv.components.open_all()  # a wrong URL stops `conveyor serve` now, naming it
    keys = Keys(parse_keys(settings.api_keys))
    live = Live(cv, **({"interval": poll_interval} if poll_interval else {}))
    upload_limit = settings.max_upload_bytes or settings.max_file_bytes
    running: dict[str, Any] = {"worker_error": None}
    stop, hurry = threading.Event(), threading.Event()

    def run_workers() -> None:
        try:
            cv.serve_worker(concurrency=workers, stop=stop, hurry=hurry, grace=WORKER_GRACE)
        except BaseException as exc:  # /health says so
            running["worker_error"] = safe_summary(exc)
            log.error("in-process workers stopped: %s", running["worker_error"], exc_info=True)

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        poller = asyncio.create_task(live.run())
        thread = None
        if workers:
            thread = threading.Thread(
                target=run_workers, name="conveyor-serve-workers", daemon=True
            )
            thread.start()
        try:
            yield
        finally:
            live.stopping.set()
            stop.set()
            if thread is not None:
                await asyncio.to_thread(thread.join, WORKER_GRACE + 10)
            await poller
            if owned:
                cv.close()

    app = FastAPI(
        title="conveyor",
        version=_version(),
        summary="Upload files, follow them until searchable, search them.",
        lifespan=lifespan,
    )
    app.state.live = live
    app.state.stop = stop
    app.state.hurry = hurry

    def error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> Any:
        return JSONResponse(
            {"error": {"message": message, "type": kind}}, status_code=status, headers=headers
        )

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Any:
        headers = {"WWW-Authenticate": 'Bearer realm="conveyor"'} if exc.status == 401 else None
        return error(exc.status, exc.message, exc.kind, headers)

    @app.exception_handler(uploads.UploadError)
    async def upload_error(request: Request, exc: uploads.UploadError) -> Any:
        live.uploaded(f"rejected_{exc.status}")
        return error(exc.status, exc.message, exc.kind)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Any:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = f"invalid request: {where}: {first.get('msg', 'bad value')}"
        return error(422, message, "invalid_request")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Any:
        kinds = {404: "not_found", 405: "method_not_allowed"}
        return error(exc.status_code, str(exc.detail), kinds.get(exc.status_code, "http_error"))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> Any:
        log.error("request failed: %s", safe_summary(exc), exc_info=exc)
        return error(500, f"internal error: {type(exc).__name__}", "server_error")

    def presented(
        api_key: str | None, credentials: HTTPAuthorizationCredentials | None
    ) -> str | None:
        return keys.from_headers(
            api_key, f"Bearer {credentials.credentials}" if credentials else None
        )

    def authorize(
        api_key: Annotated[str | None, Security(API_KEY_HEADER)],
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
    ) -> None:
        if keys.open:
            return
        key = presented(api_key, credentials)
        if key is None:
            raise ApiError(
                401,
                "an API key is needed: send it in x-api-key or Authorization: Bearer",
                "unauthorized",
            )
        if not keys.check(key):
            raise ApiError(401, "the API key is not valid", "unauthorized")

    protected = [Depends(authorize)]

    # -- open endpoints --------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def page() -> Any:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/health", response_model=Health, responses={503: {"model": ErrorResponse}})
    def health() -> Any:
        """Liveness and readiness: the queue answers, in-process workers (if any) run."""
        try:
            cv.components.queue.depth()
        except Exception as exc:  # /health needs no key: the details go to the log only
            log.warning("health check: the queue is unavailable: %s", safe_summary(exc))
            return error(503, "the queue is unavailable (see the server's log)", "unavailable")
        if running["worker_error"]:
            log.warning("health check: the in-process workers stopped: %s", running["worker_error"])
            return error(
                503, "the in-process workers stopped (see the server's log)", "unavailable"
            )
        return {
            "status": "ok",
            "version": _version(),
            "auth": not keys.open,
            "workers": workers,
            "uptime_s": round(time.time() - live.started, 1),
        }

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        dependencies=protected if settings.metrics_need_key else [],
        responses={200: {"content": {"text/plain": {}}}, **ERRORS},
    )
    async def metrics() -> Any:
        """Prometheus text: queue depth, documents, jobs by outcome, stage durations,
        embeddings, errors by kind, worker heartbeat ages."""
        text = await run_in_threadpool(live.metrics)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    # -- documents -------------------------------------------------------------------

    @app.post(
        "/documents",
        status_code=202,
        response_model=UploadAccepted,
        dependencies=protected,
        responses=_errors(413, 415, 503),
        openapi_extra=UPLOAD_BODY,
    )
    async def upload(request: Request) -> Any:
        """Upload a file (multipart field ``file``; optional ``collection``, ``run`` and
        ``metadata``, a JSON object). Answers 202 with the document id and its status URL;
        the same bytes uploaded again to the same collection are the same document."""
        received = await uploads.receive(
            request.headers.get("content-type", ""),
            request.headers.get("content-length"),
            request.stream(),
            limit=upload_limit,
            tmp_dir=uploads.scratch_folder(settings.home),
        )
        try:
            metadata = received.metadata()
            try:
                collection = check_name(
                    "collection", received.fields.get("collection") or settings.collection
                )
                run = received.fields.get("run") or datetime.now(UTC).strftime("api-%Y%m%d")
                check_name("run", run)
            except ConveyorError as exc:
                raise ApiError(422, str(exc), "invalid_request") from None
            result = await run_in_threadpool(_accept, received, collection, run, metadata)
        finally:
            received.close()
        live.uploaded("duplicate" if result["duplicate"] else "accepted", received.size)
        return JSONResponse(result, status_code=202, headers={"Location": result["status_url"]})

    def _accept(
        received: uploads.Upload, collection: str, run: str, metadata: dict[str, Any] | None
    ) -> dict[str, Any]:
        c = cv.components
        with uploads.one_at_a_time(received.sha256):
            key, _stored = uploads.store(c.blobs, received)
            source = c.blobs.uri(key)
            doc_id = document_id(collection, source)
            known = c.catalog.get(doc_id)
            duplicate = known is not None and known["state"] != "failed"
            if not duplicate:
                try:
                    cv.submit(source, collection=collection, run=run, metadata=metadata)
                except Exception as exc:  # the queue is down or throttling: try again later
                    raise ApiError(
                        503,
                        f"stored, but could not be enqueued ({safe_summary(exc)}); retry",
                        "unavailable",
                    ) from None
        doc = c.catalog.get(doc_id) or {}
        return {
            "id": doc_id,
            "status_url": f"/documents/{doc_id}",
            "state": doc.get("state", "queued"),
            "duplicate": duplicate,
            "name": display_name(source),
            "collection": collection,
            "run": doc.get("run", run),
            "size": received.size,
            "sha256": received.sha256,
            "kind": received.kind,
            "source": source,
        }

    @app.get(
        "/documents",
        response_model=list[DocumentSummary],
        dependencies=protected,
        responses=ERRORS,
    )
    def list_documents(
        state: Literal["queued", "running", "done", "skipped", "failed"] | None = None,
        collection: str | None = Query(None, max_length=128),
        run: str | None = Query(None, max_length=128),
        limit: int = Query(100, ge=1, le=1000),
    ) -> Any:
        """Documents, most recently changed first; filter by state, collection, run."""
        docs = cv.components.catalog.documents(
            state=state, collection=collection, run=run, limit=limit
        )
        return [_summary(d) for d in docs]

    @app.get(
        "/documents/{document_id}",
        response_model=DocumentStatus,
        dependencies=protected,
        responses=_errors(404),
    )
    def get_document(document_id: str) -> Any:
        """One document: state, stage, chunks, error, timings per stage, metadata."""
        doc = cv.components.catalog.get(document_id) if len(document_id) <= 200 else None
        if doc is None:
            raise ApiError(404, f"no document {document_id[:80]!r}", "not_found")
        return _status(doc)

    # -- search ----------------------------------------------------------------------

    @app.get(
        "/search",
        response_model=SearchResults,
        dependencies=protected,
        responses=_errors(404, 409),
    )
    def search(
        q: str = Query(min_length=1, max_length=4000, description="what to look for"),
        k: int = Query(5, ge=1, le=100, description="how many chunks"),
        collection: str | None = Query(None, max_length=128),
    ) -> Any:
        """The ``k`` chunks closest in meaning to ``q``, closest first."""
        name = collection or settings.collection
        try:
            check_name("collection", name)
        except ConveyorError as exc:
            raise ApiError(422, str(exc), "invalid_request") from None
        try:
            if cv.components.vectors.collection(name) is None:
                raise ApiError(
                    404, f"collection {name!r} does not exist (ingest something first)", "not_found"
                )
            hits = cv.search(q, k, collection=name)
        except ConveyorError as exc:
            raise ApiError(409, str(exc), "conflict") from None
        return {
            "query": q,
            "collection": name,
            "hits": [{**h.as_dict(), "name": display_name(h.source)} for h in hits],
        }

    # -- queue and dead letters ------------------------------------------------------

    @app.get("/queue", response_model=QueueDepth, dependencies=protected, responses=ERRORS)
    def queue_depth() -> Any:
        """Jobs visible, in flight, delayed, and dead-lettered."""
        return cv.components.queue.depth().as_dict()

    @app.get(
        "/dead-letters", response_model=list[DeadLetter], dependencies=protected, responses=ERRORS
    )
    def dead_letters(limit: int = Query(100, ge=1, le=1000)) -> Any:
        """Jobs that failed for good, most recent first, with their reasons."""
        return [_dead_letter(d, settings.collection) for d in cv.dead_letters(limit)]

    @app.post(
        "/dead-letters/redrive",
        response_model=Redriven,
        dependencies=protected,
        responses=_errors(404),
    )
    def redrive(body: RedriveRequest) -> Any:
        """Put dead letters back on the queue (``job_ids``; null for all of them)."""
        try:
            failures["dead"] = -1
            return {"redriven": cv.redrive(body.job_ids)}
        except ConveyorError as exc:
            raise ApiError(404, str(exc), "not_found") from None

    @app.post(
        "/dead-letters/{job_id}/redrive",
        response_model=Redriven,
        dependencies=protected,
        responses=_errors(404),
    )
    def redrive_one(job_id: str) -> Any:
        """Put one dead letter back on the queue."""
        try:
            failures["dead"] = -1
            return {"redriven": cv.redrive([job_id])}
        except ConveyorError:
            raise ApiError(404, f"no dead letter {job_id[:80]!r}", "not_found") from None

    # -- the status page's data ------------------------------------------------------

    # Listing dead letters can be a scan (on SQS: reading the whole DLQ), and every open
    # page asks every few seconds: list again only when their number changes, or now and
    # then; a redrive through this API forgets the listing at once.
    failures: dict[str, Any] = {"dead": -1, "at": 0.0, "items": []}

    def recent_failures(dead: int) -> list[dict[str, Any]]:
        now = time.monotonic()
        if dead == 0:
            failures.update(dead=0, at=now, items=[])
        elif dead != failures["dead"] or now - failures["at"] > FAILURES_TTL:
            items = [_dead_letter(d, settings.collection) for d in cv.dead_letters(20)]
            failures.update(dead=dead, at=now, items=items)
        return list(failures["items"])

    @app.get("/status", response_model=Overview, dependencies=protected, responses=ERRORS)
    def overview() -> Any:
        """Everything the status page shows, in one request."""
        c = cv.components
        depth = c.queue.depth()
        return {
            "queue": depth.as_dict(),
            "documents": c.catalog.counts(),
            "workers": [{**w, "started_at": _time(w["started_at"])} for w in live.workers()],
            "throughput": [{**p, "minute": _time(p["minute"])} for p in live.throughput()],
            "recent": [_summary(d) for d in c.catalog.documents(limit=25)],
            "failures": recent_failures(depth.dead),
            "in_process_workers": workers,
        }

    @app.post("/events/token", response_model=EventToken, dependencies=protected, responses=ERRORS)
    def event_token() -> Any:
        """A short-lived token for ``GET /events?token=…`` (a browser's EventSource
        cannot send the key in a header, and a key in a URL would end up in logs)."""
        token, seconds = keys.event_token()
        return {"token": token, "expires_in": seconds}

    @app.get(
        "/events",
        response_class=StreamingResponse,
        responses={
            200: {"content": {"text/event-stream": {}}, "description": "server-sent events"},
            **ERRORS,
        },
    )
    async def events(
        request: Request,
        api_key: Annotated[str | None, Security(API_KEY_HEADER)],
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
        token: str | None = Query(None, max_length=200, description="from POST /events/token"),
        limit: int | None = Query(
            None, ge=1, le=10_000, description="close the stream after this many events"
        ),
    ) -> Any:
        """Server-sent events: ``document`` (a document changed state or stage) and
        ``queue`` (depth or counts changed). Authenticate with the key in a header
        (curl) or an event token in the query (a browser)."""
        key = presented(api_key, credentials)
        if not (keys.check(key) if key else keys.check_event_token(token)):
            raise ApiError(
                401,
                "send an API key in a header, or ?token= from POST /events/token",
                "unauthorized",
            )
        last_id = request.headers.get("last-event-id", "")
        queue = live.subscribe()
        replay = [e for e in list(live.recent_events) if last_id.isdigit() and e.id > int(last_id)]

        async def stream() -> AsyncIterator[str]:
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

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return app


def listen_address(host: str, keys: list[str]) -> tuple[str, str | None]:
    """Where ``conveyor serve`` may listen, and a note saying why when it differs or
    when the API is open. Without keys nobody outside this machine may reach it."""
    if keys:
        return host, None
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return host, (
            "no API keys (CONVEYOR_API_KEYS): the API is open to anyone on this machine, "
            f"so it listens on {host} only"
        )
    return "127.0.0.1", (
        f"no API keys (CONVEYOR_API_KEYS): the API would be open, so it listens on "
        f"127.0.0.1 only, not on {host}; set CONVEYOR_API_KEYS to serve other hosts"
    )


def serve(settings: Settings, *, host: str, port: int, workers: int, echo: Any = print) -> None:
    """Run the API with uvicorn until SIGTERM / Ctrl-C (a second one hurries the workers)."""
    import uvicorn

    host, note = listen_address(host, parse_keys(settings.api_keys))
    if note:
        echo(note)
    app = create_api(settings, workers=workers)
    config = uvicorn.Config(
        app, host=host, port=port, log_level="info", timeout_graceful_shutdown=WORKER_GRACE
    )
    server = uvicorn.Server(config)
    default_exit = server.handle_exit

    def handle_exit(sig: int, frame: Any) -> None:
        if app.state.stop.is_set() or server.should_exit:
            app.state.hurry.set()
        app.state.live.stopping.set()  # ends the event streams, so shutdown need not wait
        default_exit(sig, frame)

    server.handle_exit = handle_exit  # type: ignore[method-assign]
    # uvicorn raises the signal that stopped it again once it has shut down, for the
    # handler it found: make that one a no-op, so a clean shutdown exits 0
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: None)
    server.run()
