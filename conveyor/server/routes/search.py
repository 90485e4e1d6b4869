"""``GET /search``: hybrid, dense or lexical search, with filters."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from ...exceptions import ConveyorError
from ...filters import Filter, parse_range, parse_where, source_prefix
from ...jobs import check_name
from .. import schemas
from ..errors import HttpError, responses
from ..live import display_name
from ..state import Api

router = APIRouter()


@router.get("/search", response_model=schemas.SearchResults, responses=responses(404, 409))
def search(
    api: Api,
    q: str = Query(min_length=1, max_length=20_000, description="what to look for"),
    k: int = Query(5, ge=1, le=100, description="how many chunks"),
    collection: str | None = Query(None, max_length=128),
    mode: Literal["hybrid", "dense", "lexical"] | None = Query(
        None, description="hybrid (default), dense (meaning) or lexical (BM25)"
    ),
    source: str | None = Query(
        None, max_length=4096, description="only sources under this folder or URI prefix"
    ),
    kind: str | None = Query(None, max_length=64, description="only documents of this kind"),
    pages: str | None = Query(None, max_length=32, description="page range: 3, 2-5, 4-"),
    time: str | None = Query(None, max_length=32, description="recording span: 90-120, 1:30-2:45"),
    where: Annotated[
        list[str] | None,
        Query(max_length=32, description="metadata key=value, repeated: all must hold"),
    ] = None,
) -> Any:
    """The ``k`` chunks that best answer ``q``, best first."""
    name = collection or api.settings.collection
    try:
        check_name("collection", name)
        found = Filter(
            source_prefix=source_prefix(source) if source else None,
            kind=kind,
            pages=parse_range(pages, "page") if pages else None,
            seconds=parse_range(time, "time") if time else None,
            where=parse_where(where or []),
        )
    except ConveyorError as exc:
        raise HttpError(422, str(exc)) from None
    if not q.strip():
        raise HttpError(422, "the query is empty: give some words to search for")
    try:
        vectors = api.cv.components.vectors
        if vectors.collection(api.cv.components.generations.resolve(name)) is None:
            known = ", ".join(sorted(i.name for i in vectors.collections())) or "none yet"
            raise HttpError(
                404, f"collection {name!r} does not exist (collections: {known}); ingest first"
            )
        [results] = api.cv.search_results([q], k, collection=name, mode=mode, where=found or None)
    except ConveyorError as exc:
        raise HttpError(409, str(exc)) from None
    return {
        "query": results.query,
        "collection": name,
        "mode": results.mode,
        "hits": [{**h.as_dict(), "name": display_name(h.source)} for h in results.hits],
        "notes": results.notes,
    }
