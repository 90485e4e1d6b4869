"""One error shape for every HTTP app: ``{"error": {"message": ..., "type": ...}}``.

Both ``conveyor serve`` and ``conveyor embed-server`` call :func:`install`, so an
unknown path (404), a wrong method (405), invalid parameters or a malformed body
(422), an :class:`HttpError` raised by a route (413, 415, 429, 503, …), a backend
that is unreachable (:class:`~conveyor.exceptions.BackendUnavailable`: 503 with
``Retry-After``) and an unexpected exception (500, logged with its traceback) all
answer the same way.
Bad input is a 4xx, never a 500. :func:`responses` documents the same shape in
the OpenAPI schema.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from ..exceptions import BackendUnavailable, safe_summary

log = logging.getLogger(__name__)

KINDS = {
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "overloaded",
    503: "unavailable",
}
"""The error ``type`` for a status when the code that raised it named none."""

DESCRIPTIONS = {
    401: "no API key, or a wrong one",
    404: "no such document, collection or dead letter",
    409: "the collection was embedded with another model",
    413: "the request is over the size limit",
    415: "not multipart, or a file type conveyor cannot index",
    422: "invalid parameters",
    429: "too much is waiting already; retry shortly",
    503: "a backend (or the model) is unavailable; retry shortly",
}
"""What each status means, for the OpenAPI schema."""


RETRY_AFTER = "2"
"""Seconds a client is asked to wait when a backend (the database) is unreachable."""


class ErrorDetail(BaseModel):
    message: str
    type: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class HttpError(Exception):
    """A request that gets an error answer: ``status``, a message for the client, and the
    error ``kind`` (its ``type`` in the body; from :data:`KINDS` when not given)."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.kind = kind or KINDS.get(status, "http_error")
        self.headers = dict(headers or {})


def error_response(
    status: int, message: str, kind: str | None = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The error shape as a response."""
    body = {"error": {"message": message, "type": kind or KINDS.get(status, "http_error")}}
    return JSONResponse(body, status_code=status, headers=dict(headers) if headers else None)


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, described by :data:`DESCRIPTIONS`."""
    return {code: {"model": ErrorResponse, "description": DESCRIPTIONS[code]} for code in codes}


def install(app: FastAPI, *, invalid_kind: str = "invalid_request") -> None:
    """Answer every error of ``app`` in the one shape. ``invalid_kind``: the ``type`` of a
    422 for invalid input (the embed server says ``invalid_request_error``, as OpenAI's
    API does)."""

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HttpError)
        headers = dict(exc.headers)
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="conveyor"'
        return error_response(exc.status, exc.message, exc.kind, headers)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = f"invalid request: {where}: {first.get('msg', 'bad value')}"
        return error_response(422, message, invalid_kind)

    async def starlette_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return error_response(exc.status_code, str(exc.detail), headers=exc.headers)

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        return error_response(503, safe_summary(exc), headers={"Retry-After": RETRY_AFTER})

    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.error("request failed: %s", safe_summary(exc), exc_info=exc)
        return error_response(500, f"internal error: {type(exc).__name__}", "server_error")

    app.add_exception_handler(HttpError, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, starlette_error)
    app.add_exception_handler(BackendUnavailable, unavailable)
    app.add_exception_handler(Exception, crashed)
