"""What the status page shows of one document, and of where the time goes:
``GET /documents/{id}/detail``, ``GET /documents/{id}/artifacts/{name}`` and
``GET /timings``.

The detail gathers what is known of a document from each place that knows it: the
catalog's row (state, stage, attempts, error, timings), the result manifest of its
last run, the chunks the vector store holds, the artifacts extraction wrote (keys in
``metadata["artifacts"]``) and its dead letter. The catalog keeps a document's
current state, not each move: the history is what those places recorded, with times.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from ...documents import State
from ...exceptions import SourceNotFound, safe_summary
from ...manifests import Manifests
from ...vectorstore import ChunkRecord, VectorStore
from .. import schemas
from ..errors import HttpError, responses
from ..live import display_name
from ..state import Api, ApiState

router = APIRouter()

STAGES = ("fetch", "extract", "chunk", "embed", "merge")
"""The stages every document goes through, in order; a format's own stages
(``embed_lines``, ``summarise``…) come between embed and merge."""

FIRST_CHUNKS = 5
STREAM_PIECE = 64 * 1024
TYPES = {
    ".ndjson": "application/x-ndjson",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".vtt": "text/vtt; charset=utf-8",
    ".srt": "text/plain; charset=utf-8",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
}
"""What an artifact is served as, by its name's ending; anything else is bytes (never
HTML: an artifact is extracted from an uploaded file and must not run in the page)."""


def _document(api: ApiState, document_id: str) -> dict[str, Any]:
    doc = api.cv.components.catalog.get(document_id) if len(document_id) <= 200 else None
    if doc is None:
        raise HttpError(404, f"no document {document_id[:80]!r}")
    return doc


@router.get(
    "/documents/{document_id}/detail",
    response_model=schemas.DocumentDetail,
    responses=responses(404),
)
def detail(
    api: Api,
    document_id: str,
    chunks: int = Query(FIRST_CHUNKS, ge=0, le=50, description="how many first chunks"),
) -> Any:
    """Everything known of one document: its status, a history, its first chunks,
    the result manifest, artifacts, and the dead letter to redrive when it failed."""
    doc = _document(api, document_id)
    c = api.cv.components
    manifest_key = None
    manifest = None
    if doc["run"]:
        manifest = Manifests(c.blobs).read(doc["run"], doc["id"])
        if manifest is not None:
            manifest_key = f"ingestion_output/{doc['run']}/results/{doc['id']}.json"
    answering = c.generations.resolve(doc["collection"])  # the generation search reads
    stored = c.vectors.count(answering, document_id=doc["id"])
    letter = _dead_letter(api, doc)
    return {
        "document": schemas.status(doc),
        "history": _history(doc, manifest, letter),
        "stored_chunks": stored,
        "first_chunks": [
            _preview(r) for r in first_chunks(c.vectors, answering, doc, stored, chunks)
        ],
        "manifest": manifest,
        "manifest_key": manifest_key,
        "artifacts": [
            {
                "name": name,
                "url": f"/documents/{quote(doc['id'])}/artifacts/{quote(name)}",
                "size": info.size if (info := c.blobs.stat(key)) else None,
            }
            for name, key in _artifacts(doc).items()
        ],
        "dead_letter": letter.job_id if letter is not None else None,
    }


def first_chunks(
    store: VectorStore, collection: str, doc: dict[str, Any], stored: int, n: int
) -> list[ChunkRecord]:
    """The document's first ``n`` chunks by index. The store lists a collection ordered
    by document and index, so the walk stops once it has passed this document."""
    if not stored or not n:
        return []
    found: list[ChunkRecord] = []
    for record in store.iter_chunks(collection, vectors=False):
        if record.document_id == doc["id"]:
            found.append(record)
            if len(found) >= n:
                break
        elif found or record.document_id > doc["id"]:
            break
    return found


def _preview(record: ChunkRecord) -> dict[str, Any]:
    meta = record.metadata or {}
    return {
        "index": record.chunk_index,
        "text": record.text,
        "page": record.page,
        "start_s": meta.get("start_s"),
        "end_s": meta.get("end_s"),
    }


def _dead_letter(api: ApiState, doc: dict[str, Any]) -> Any:
    """The document's dead letter, if it failed for good and one is waiting."""
    if doc["state"] != State.FAILED:
        return None
    try:
        letters = api.cv.dead_letters(1000)
    except Exception as exc:  # the page still shows the rest
        raise HttpError(503, f"the dead-letter queue is unavailable: {safe_summary(exc)}") from None
    default = api.settings.collection
    for letter in letters:
        if schemas.dead_letter(letter, default)["document_id"] == doc["id"]:
            return letter
    return None


def _history(
    doc: dict[str, Any], manifest: dict[str, Any] | None, letter: Any
) -> list[dict[str, Any]]:
    """What was recorded, with when: first submitted, the manifest's outcome, the dead
    letter's job (sent, dead-lettered), and the state it is in now (after how many
    attempts). Each attempt and each move between states is not kept anywhere."""
    events = [(doc["created_at"], "first submitted")]
    if manifest is not None and isinstance(manifest.get("finished_at"), str):
        outcome = f"result manifest written: {manifest.get('status')}"
        if manifest.get("EmbeddingsGenerated"):
            outcome += f", {manifest['EmbeddingsGenerated']} embeddings"
        events.append((manifest["finished_at"], outcome))
    if letter is not None:
        events.append((letter.first_seen, "job sent to the queue"))
        tries = f"{letter.receive_count} deliver{'ies' if letter.receive_count != 1 else 'y'}"
        events.append((letter.last_seen, f"dead-lettered after {tries}"))
    now = f"now {doc['state']}"
    if doc["stage"]:
        now += f" (stage {doc['stage']})"
    if doc["attempts"]:
        now += f" after {doc['attempts']} attempt{'s' if doc['attempts'] != 1 else ''}"
    if doc["error_kind"]:
        now += f"; {doc['error_kind']} error"
    # first submitted stays first: a manifest's time is to the second, so it can read
    # a moment earlier than the submission it followed; the state now comes last
    timed = sorted((schemas.timestamp(_seconds(at)), what) for at, what in events[1:])
    ordered = [(schemas.timestamp(_seconds(events[0][0])), events[0][1]), *timed]
    ordered.append((schemas.timestamp(_seconds(doc["updated_at"])), now))
    return [{"at": at, "what": what} for at, what in ordered]


def _seconds(at: Any) -> float:
    if isinstance(at, int | float):
        return float(at)
    return datetime.fromisoformat(str(at)).timestamp()


def _artifacts(doc: dict[str, Any]) -> dict[str, str]:
    """The document's artifacts by name, keeping only keys under its own folder
    (``artifacts/<document id>/``): a key from the catalog cannot reach another blob."""
    found = (doc.get("metadata") or {}).get("artifacts")
    if not isinstance(found, dict):
        return {}
    folder = f"artifacts/{doc['id']}/"
    return {
        str(name): key
        for name, key in found.items()
        if isinstance(key, str)
        and key.startswith(folder)
        and ".." not in key.split("/")
        and "\\" not in key
    }


@router.get(
    "/documents/{document_id}/artifacts/{name}",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}, **responses(404)},
)
def artifact(api: Api, document_id: str, name: str) -> StreamingResponse:
    """One artifact of a document (OCR lines and words, a transcript…), streamed; ``name``
    as the detail lists it."""
    doc = _document(api, document_id)
    key = _artifacts(doc).get(name)
    if key is None:
        raise HttpError(404, f"document {document_id[:80]!r} has no artifact {name[:80]!r}")
    try:
        stream = api.cv.components.blobs.open(key)
    except SourceNotFound:
        raise HttpError(404, f"artifact {name[:80]!r} is gone from the blob store") from None
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    media = TYPES.get(suffix, "application/octet-stream")

    def pieces() -> Iterator[bytes]:
        with stream:
            while piece := stream.read(STREAM_PIECE):
                yield piece

    return StreamingResponse(
        pieces(),
        media_type=media,
        headers={
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(name)}",
            "Content-Security-Policy": "sandbox",
        },
    )


@router.get("/timings", response_model=schemas.Timings)
def timings(
    api: Api,
    limit: int = Query(50, ge=1, le=1000, description="the last N documents done"),
    collection: str | None = Query(None, max_length=128),
) -> Any:
    """Where the time went for the last ``limit`` documents done: seconds per stage
    (fetch, extract, chunk, embed, merge, and a format's own stages)."""
    docs = api.cv.components.catalog.documents(state=State.DONE, collection=collection, limit=limit)
    rows = []
    seen: set[str] = set()
    for doc in reversed(docs):
        times = schemas.status(doc)["timings"]
        if not times:
            continue
        seen.update(times)
        rows.append(
            {
                "id": doc["id"],
                "name": display_name(doc["source"]),
                "finished_at": schemas.timestamp(doc["updated_at"]),
                "timings": times,
                "total": round(sum(times.values()), 4),
            }
        )
    stages = stage_order(seen)
    return {
        "stages": stages,
        "documents": rows,
        "seconds": {s: round(sum(r["timings"].get(s, 0.0) for r in rows), 4) for s in stages},
    }


def stage_order(seen: set[str]) -> list[str]:
    """The pipeline's stages in order (all five, even when a document had none of one),
    a format's own stages between embed and merge."""
    own = sorted(seen - set(STAGES))
    return [*STAGES[:4], *own, STAGES[4]]
