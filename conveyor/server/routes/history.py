"""``GET /documents/{id}/history``: every move of a document between states, and its
versions — what each run that settled it made of it (:mod:`conveyor.history`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from ...history import describe, versions
from .. import schemas
from ..errors import HttpError, responses
from ..state import Api

router = APIRouter()


class Event(BaseModel):
    at: datetime
    from_state: str | None = Field(description="null: the document was new")
    to_state: str
    reason: str | None = Field(description="submitted, attempt 2, merged, a failure's reason…")
    run: str | None
    attempt: int | None
    content_hash: str | None = Field(description="the content the document held then")
    chunks: int | None = Field(description="a settled (done, skipped) document's chunks")
    pages: int | None
    what: str = Field(description="the move in words")


class Version(BaseModel):
    version: int = Field(description="1 for the first run that settled it, and so on")
    run: str | None
    at: datetime = Field(description="when that run settled it")
    outcome: str = Field(description="done, unchanged (skipped) or failed")
    content_hash: str | None = Field(description="sha256 of the bytes that run read")
    chunks: int | None
    pages: int | None
    attempt: int | None
    reason: str | None = Field(description="why it failed")


class DocumentHistory(BaseModel):
    id: str
    versions: list[Version]
    events: list[Event] = Field(description="every move between states, oldest first")


def version_rows(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**v, "at": schemas.timestamp(v["at"])} for v in versions(found)]


@router.get(
    "/documents/{document_id}/history",
    response_model=DocumentHistory,
    responses=responses(404),
)
def history(api: Api, document_id: str) -> Any:
    """A document's processing history: its versions (content hash, when, chunks, pages,
    outcome — one per run that settled it) and each move between states with its reason,
    run and attempt."""
    catalog = api.cv.components.catalog
    doc = catalog.get(document_id) if len(document_id) <= 200 else None
    if doc is None:
        raise HttpError(404, f"no document {document_id[:80]!r}")
    found = catalog.events(document_id)
    return {
        "id": document_id,
        "versions": version_rows(found),
        "events": [{**e, "at": schemas.timestamp(e["at"]), "what": describe(e)} for e in found],
    }
