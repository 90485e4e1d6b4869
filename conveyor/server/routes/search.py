"""``GET /search``: the chunks closest in meaning to a query."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from ...exceptions import ConveyorError
from ...jobs import check_name
from .. import schemas
from ..errors import HttpError, responses
from ..live import display_name
from ..state import Api

router = APIRouter()


@router.get("/search", response_model=schemas.SearchResults, responses=responses(404, 409))
def search(
    api: Api,
    q: str = Query(min_length=1, max_length=4000, description="what to look for"),
    k: int = Query(5, ge=1, le=100, description="how many chunks"),
    collection: str | None = Query(None, max_length=128),
) -> Any:
    """The ``k`` chunks closest in meaning to ``q``, closest first."""
    name = collection or api.settings.collection
    try:
        check_name("collection", name)
    except ConveyorError as exc:
        raise HttpError(422, str(exc)) from None
    try:
        vectors = api.cv.components.vectors
        if vectors.collection(name) is None:
            known = ", ".join(sorted(i.name for i in vectors.collections())) or "none yet"
            raise HttpError(
                404, f"collection {name!r} does not exist (collections: {known}); ingest first"
            )
        hits = api.cv.search(q, k, collection=name)
    except ConveyorError as exc:
        raise HttpError(409, str(exc)) from None
    return {
        "query": q,
        "collection": name,
        "hits": [{**h.as_dict(), "name": display_name(h.source)} for h in hits],
    }
