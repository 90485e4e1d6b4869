"""What the API's routers share, and the dependencies that hand it to them.

:func:`~conveyor.server.api.create_api` builds one :class:`ApiState` and keeps it on
``app.state.api``; a route asks for it with the :data:`Api` annotation, and
protected routers carry :func:`require_key`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from ..settings import Settings
from . import schemas
from .auth import Keys
from .errors import HttpError, responses
from .live import Live
from .metrics import ApiMetrics

if TYPE_CHECKING:
    from ..app import Conveyor

FAILURES_TTL = 15.0  # seconds a listing of dead letters serves the status page

API_KEY_HEADER = APIKeyHeader(name="x-api-key", auto_error=False, scheme_name="ApiKey")
BEARER = HTTPBearer(auto_error=False, scheme_name="Bearer")


class RecentFailures:
    """The dead letters the status page shows. Listing them can be a scan (on SQS:
    reading the whole DLQ) and every open page asks every few seconds, so they are
    listed again only when their number changes, or after :data:`FAILURES_TTL`; a
    redrive through this API forgets the listing at once."""

    def __init__(self, conveyor: Conveyor, default_collection: str) -> None:
        self.cv, self.default_collection = conveyor, default_collection
        self._dead, self._at = -1, 0.0
        self._items: list[dict[str, Any]] = []

    def get(self, dead: int) -> list[dict[str, Any]]:
        """The latest 20, given the number of dead letters the queue holds now."""
        now = time.monotonic()
        if dead == 0:
            self._dead, self._at, self._items = 0, now, []
        elif dead != self._dead or now - self._at > FAILURES_TTL:
            letters = self.cv.dead_letters(20)
            self._items = [schemas.dead_letter(d, self.default_collection) for d in letters]
            self._dead, self._at = dead, now
        return list(self._items)

    def forget(self) -> None:
        self._dead = -1


@dataclass
class ApiState:
    """One API app's parts: the library it serves, its keys, the catalog watcher and
    metrics, the in-process workers' count and stop signals."""

    settings: Settings
    cv: Conveyor
    keys: Keys
    live: Live
    metrics: ApiMetrics
    failures: RecentFailures
    workers: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    hurry: threading.Event = field(default_factory=threading.Event)
    worker_error: str | None = None
    owns_conveyor: bool = False  # opened by create_api: closed when the app stops

    @property
    def upload_limit(self) -> int:
        return self.settings.max_upload_bytes or self.settings.max_file_bytes


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


Api = Annotated[ApiState, Depends(api_state)]
"""A route parameter annotated ``Api`` receives the app's :class:`ApiState`."""


def presented_key(
    state: Api,
    api_key: Annotated[str | None, Security(API_KEY_HEADER)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
) -> str | None:
    """The key a request presents: ``x-api-key``, else ``Authorization: Bearer``."""
    bearer = f"Bearer {credentials.credentials}" if credentials else None
    return state.keys.from_headers(api_key, bearer)


def require_key(state: Api, key: Annotated[str | None, Depends(presented_key)]) -> None:
    """401 unless the request carries one of the keys (or the API has none)."""
    if state.keys.open:
        return
    if key is None:
        raise HttpError(401, "an API key is needed: send it in x-api-key or Authorization: Bearer")
    if not state.keys.check(key):
        raise HttpError(401, "the API key is not valid")


PROTECTED: dict[str, Any] = {
    "dependencies": [Depends(require_key)],
    "responses": responses(401, 422),
}
"""``include_router`` arguments for a router whose every route needs a key."""
