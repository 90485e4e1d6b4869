"""``GET /documents/{id}/pages/{n}``: a PDF page's image (``CONVEYOR_PAGE_IMAGES``),
streamed from the blob store, for a frontend showing the page a hit is on.

The key is built here from the document's id, the page number and the format the
document's metadata names, never read from the catalog, so no page number reaches
another blob.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse

from ...exceptions import SourceNotFound
from ...pages import pages_prefix
from ..errors import HttpError, responses
from ..state import Api
from .detail import STREAM_PIECE, _document

router = APIRouter(tags=["documents"])
MEDIA = {"png": "image/png", "webp": "image/webp"}


@router.get(
    "/documents/{document_id}/pages/{number}",
    response_class=StreamingResponse,
    responses={200: {"content": {"image/png": {}, "image/webp": {}}}, **responses(404)},
)
def page_image(
    api: Api, document_id: str, number: int = PathParam(ge=1, le=1_000_000)
) -> StreamingResponse:
    """The image of page ``number`` (1-based) of a PDF ingested with page images on."""
    doc = _document(api, document_id)
    info = (doc.get("metadata") or {}).get("page_images")
    fmt = info.get("format") if isinstance(info, dict) else None
    if fmt not in MEDIA:
        raise HttpError(
            404,
            f"document {document_id[:80]!r} has no page images "
            "(ingest it with CONVEYOR_PAGE_IMAGES=true)",
        )
    try:
        stream = api.cv.components.blobs.open(f"{pages_prefix(doc['id'])}{number}.{fmt}")
    except SourceNotFound:
        raise HttpError(404, f"page {number} of {document_id[:80]!r} has no image") from None

    def pieces() -> Iterator[bytes]:
        with stream:
            while piece := stream.read(STREAM_PIECE):
                yield piece

    return StreamingResponse(pieces(), media_type=MEDIA[str(fmt)])
