"""A request body's size, bounded before it is parsed: :class:`BodyLimit`, an ASGI
middleware. A ``Content-Length`` over the limit is answered 413 at once; a body sent
without one (chunked) is counted as it arrives and refused once past the limit, so
a server never holds (or parses) more than ``max_bytes`` of one request."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException

from .errors import error_response

Scope = dict[str, Any]
Message = dict[str, Any]


class BodyLimit:
    def __init__(self, app: Any, *, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    def _refusal(self) -> str:
        return f"the request body is over the limit of {self.max_bytes:,} bytes"

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    response = error_response(413, self._refusal(), headers={"Connection": "close"})
                    await response(scope, receive, send)
                    return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message: Message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # the app's error handlers answer in the one shape
                    raise HTTPException(413, self._refusal())
            return message

        await self.app(scope, counted, send)
