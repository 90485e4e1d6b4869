"""``conveyor serve``: the HTTP API, the live status page and Prometheus metrics.

``create_api(settings)`` builds the FastAPI app over a :class:`~conveyor.app.Conveyor`:
one :class:`~conveyor.server.state.ApiState` on ``app.state.api``, the routers of
:mod:`conveyor.server.routes`, and the error handlers of :mod:`conveyor.server.errors`.
Its lifespan starts :class:`~conveyor.server.live.Live` (the catalog watched for
``/events`` and ``/metrics``) and, with ``workers=N``, a worker pool of N slots and
the compactor in a background thread (:func:`run_workers`), stopped gracefully on
shutdown; without workers the API only enqueues and reads, and workers run elsewhere.

Endpoints (OpenAPI at ``/docs``): ``POST /documents`` (multipart upload, 202),
``GET /documents``, ``GET /documents/{id}``, ``GET /search``, ``GET /dead-letters``,
``POST /dead-letters/redrive``, ``POST /dead-letters/{job_id}/redrive``,
``GET /queue``, ``GET /status`` (everything the status page shows),
``GET /documents/{id}/detail``, ``GET /documents/{id}/artifacts/{name}``,
``GET /timings`` (seconds per stage of the last documents done), ``GET /events``
(server-sent events), ``POST /events/token``, ``GET /health``, ``GET /metrics``, and
the status page itself at ``/``. Every error has one JSON shape:
``{"error": {"message": ..., "type": ...}}``; bad input is a 4xx, never a 500.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from ..exceptions import safe_summary
from ..settings import Settings
from . import errors
from .auth import Keys, parse_keys
from .guard import Guard
from .live import Live
from .metrics import ApiMetrics
from .routes import detail, documents, events, health, page, pages, queue, search
from .state import PROTECTED, ApiState, RecentFailures

if TYPE_CHECKING:
    from ..app import Conveyor

log = logging.getLogger(__name__)

WORKER_GRACE = 30


class NoQueryStrings(logging.Filter):
    """Access log lines without their query strings: the event token travels in one
    (``GET /events?token=…``), and a log is no place for a credential."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], args[2].split("?", 1)[0], *args[3:])
        return True


NO_QUERY_STRINGS = NoQueryStrings()


def create_api(
    settings: Settings | None = None,
    *,
    conveyor: Any = None,
    workers: int = 0,
    poll_interval: float | None = None,
    host: str | None = None,
) -> FastAPI:
    """The API app. ``conveyor``: an open :class:`~conveyor.app.Conveyor` to serve (tests
    pass one with an already loaded model); ``workers``: worker slots to run beside the
    API (0: none, the API only enqueues and reads); ``host``: the address served, which
    an API without keys answers besides localhost (:mod:`conveyor.server.guard`)."""
    from ..app import Conveyor

    settings = settings or (conveyor.settings if conveyor is not None else Settings())
    owned = conveyor is None
    cv: Conveyor = conveyor if conveyor is not None else Conveyor(settings)
    if owned:
        cv.components.open_all()  # a wrong URL stops `conveyor serve` now, naming it
    metrics = ApiMetrics(cv)
    live = Live(cv, metrics=metrics, **({"interval": poll_interval} if poll_interval else {}))
    api = ApiState(
        settings=settings,
        cv=cv,
        keys=Keys(parse_keys(settings.api_keys)),
        live=live,
        metrics=metrics,
        failures=RecentFailures(cv, settings.collection),
        workers=workers,
        owns_conveyor=owned,
    )
    app = FastAPI(
        title="conveyor",
        version=health.package_version(),
        summary="Upload files, follow them until searchable, search them.",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI loads its assets from a CDN: /openapi.json instead
        redoc_url=None,
    )
    app.state.api = api
    errors.install(app)
    app.add_middleware(Guard, open_mode=api.keys.open, hosts=frozenset({host} if host else ()))
    app.include_router(page.router)
    app.include_router(health.router)
    app.include_router(health.metrics_router, **(PROTECTED if settings.metrics_need_key else {}))
    app.include_router(documents.router, **PROTECTED)
    app.include_router(detail.router, **PROTECTED)
    app.include_router(pages.router, **PROTECTED)
    app.include_router(search.router, **PROTECTED)
    app.include_router(queue.router, **PROTECTED)
    app.include_router(events.router)  # the token needs a key; the stream a key or a token
    return app


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Watch the catalog and run the in-process workers (if any) while the app serves;
    on shutdown, end the event streams, let the workers finish, close what it opened."""
    api: ApiState = app.state.api
    poller = asyncio.create_task(api.live.run())
    thread = None
    if api.workers:
        thread = threading.Thread(
            target=run_workers, args=(api,), name="conveyor-serve-workers", daemon=True
        )
        thread.start()
    try:
        yield
    finally:
        api.live.stopping.set()
        api.stop.set()
        if thread is not None:
            await asyncio.to_thread(thread.join, WORKER_GRACE + 10)
        await poller
        if api.owns_conveyor:
            api.cv.close()


def run_workers(api: ApiState) -> None:
    """``--workers N``: N worker slots and the compactor, in this thread until
    ``api.stop`` (``api.hurry`` cuts the grace short). A failure is kept for ``/health``."""
    try:
        api.cv.serve_worker(
            concurrency=api.workers, stop=api.stop, hurry=api.hurry, grace=WORKER_GRACE
        )
    except BaseException as exc:  # /health says so
        api.worker_error = safe_summary(exc)
        log.error("in-process workers stopped: %s", api.worker_error, exc_info=True)


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
    app = create_api(settings, workers=workers, host=host)
    logging.getLogger("uvicorn.access").addFilter(NO_QUERY_STRINGS)
    api: ApiState = app.state.api
    config = uvicorn.Config(
        app, host=host, port=port, log_level="info", timeout_graceful_shutdown=WORKER_GRACE
    )
    server = uvicorn.Server(config)
    default_exit = server.handle_exit

    def handle_exit(sig: int, frame: Any) -> None:
        if api.stop.is_set() or server.should_exit:
            api.hurry.set()
        api.live.stopping.set()  # ends the event streams, so shutdown need not wait
        default_exit(sig, frame)

    server.handle_exit = handle_exit  # type: ignore[method-assign]
    # uvicorn raises the signal that stopped it again once it has shut down, for the
    # handler it found: make that one a no-op, so a clean shutdown exits 0
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: None)
    server.run()
