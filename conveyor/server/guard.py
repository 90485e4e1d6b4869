"""What a browser may do to ``conveyor serve``: :class:`Guard`, an ASGI middleware.

Every answer carries ``Content-Security-Policy`` (this origin's scripts, styles and
streams only; no framing), ``X-Frame-Options: DENY`` and
``X-Content-Type-Options: nosniff``.

With no API keys the API is open to this machine, and a web page the user visits
is on this machine too. So in open mode a request must name a local host
(``localhost``, ``127.0.0.1``, ``[::1]`` or the address served, any port) in its
``Host`` header, which defeats DNS rebinding; and a write (``POST``, ``PUT``,
``PATCH``, ``DELETE``) that a browser marks as coming from another origin
(``Origin`` or ``Sec-Fetch-Site``) is refused, which defeats a hostile page's
form posts. Clients that are not browsers (curl, scripts) send neither and pass.
Both refusals are 403 in the one error shape. With keys, a key is what counts.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any
from urllib.parse import urlsplit

from .errors import error_response

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


def _hostname(authority: str) -> str:
    """``host`` of ``host[:port]`` or ``[v6][:port]``, lower-case."""
    return (urlsplit(f"//{authority}").hostname or "").lower()


class Guard:
    def __init__(self, app: Any, *, open_mode: bool, hosts: frozenset[str] = frozenset()):
        self.app, self.open_mode = app, open_mode
        self.hosts = LOCAL_HOSTS | {h.lower().strip("[]") for h in hosts}

    def _refusal(self, scope: dict[str, Any]) -> str | None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if _hostname(host) not in self.hosts:
            return (
                f"host {host[:100]!r} is not this machine: an API without keys answers only "
                "localhost, 127.0.0.1 and the address it serves (set CONVEYOR_API_KEYS to "
                "serve others)"
            )
        if scope["method"] in WRITES:
            origin = headers.get("origin")
            cross = headers.get("sec-fetch-site") == "cross-site"
            if cross or (origin is not None and urlsplit(origin).netloc.lower() != host.lower()):
                return (
                    f"a write from another origin ({(origin or 'cross-site')[:100]}) is refused: "
                    "an API without keys takes writes from its own page and from clients "
                    "that are not browsers only"
                )
        return None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def secured(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        refusal = self._refusal(scope) if self.open_mode else None
        if refusal is not None:
            await error_response(403, refusal, "forbidden")(scope, receive, secured)
            return
        await self.app(scope, receive, secured)
