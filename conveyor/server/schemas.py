"""The API's and the embed server's JSON, as pydantic models: ``/openapi.json`` is built
from them, and FastAPI checks every answer against them.

:func:`summary`, :func:`status` and :func:`dead_letter` turn catalog rows and queue
letters into the fields of :class:`DocumentSummary`, :class:`DocumentStatus` and
:class:`DeadLetter`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field

from ..documents import State
from ..jobs import document_of
from .live import display_name

# -- conveyor serve ----------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    auth: bool = Field(description="whether requests need an API key")
    workers: int = Field(description="worker slots running in this process (--workers)")
    uptime_s: float


class QueueDepth(BaseModel):
    visible: int
    in_flight: int
    delayed: int
    dead: int


class DocumentSummary(BaseModel):
    id: str
    name: str = Field(description="the source's file name")
    collection: str
    source: str
    run: str | None
    state: State
    stage: str | None = Field(description="where a running document is: fetch, extract, …")
    kind: str | None
    chunks: int
    error: str | None
    error_kind: str | None
    attempts: int
    created_at: datetime
    updated_at: datetime


class DocumentStatus(DocumentSummary):
    mime: str | None
    size: int | None
    content_hash: str | None
    model: str | None
    timings: dict[str, float] = Field(description="seconds per stage of the last run")
    metadata: dict[str, Any] = Field(description="the uploader's metadata, as given")
    details: dict[str, Any] = Field(description="what extraction found: title, pages, …")


class UploadAccepted(BaseModel):
    id: str = Field(description="the document id")
    status_url: str
    state: str
    duplicate: bool = Field(description="the same bytes were already a document here")
    name: str
    collection: str
    run: str | None
    size: int
    sha256: str
    kind: str = Field(description="the type sniffed from the bytes")
    source: str


class Hit(BaseModel):
    score: float
    id: str
    document_id: str
    name: str
    source: str
    chunk_index: int
    page: int | None
    text: str
    speakers: list[str] | None = Field(
        None, description="a recording's chunk: who speaks in it (SPEAKER_1…), first first"
    )
    metadata: dict[str, Any]
    collection: str
    wall_clock: str | None = Field(
        None, description="a recording's span as the time of day, when its start is known"
    )


class SearchResults(BaseModel):
    query: str
    collection: str
    mode: str = Field(description="the mode that answered: hybrid, dense or lexical")
    hits: list[Hit]
    notes: list[str] = Field(
        default_factory=list, description="what to know: a query cut to the model's window…"
    )


class DeadLetter(BaseModel):
    job_id: str
    document_id: str | None
    name: str | None
    source: str | None
    collection: str | None
    error: str | None
    attempts: int
    first_seen: datetime
    last_seen: datetime


class RedriveRequest(BaseModel):
    job_ids: list[str] | None = Field(
        None, max_length=1000, description="dead letters to redrive; null: all of them"
    )


class Redriven(BaseModel):
    redriven: int


class Worker(BaseModel):
    id: str
    host: str
    pid: int
    concurrency: int
    state: str
    stale: bool
    in_flight: int
    jobs_done: int
    jobs_failed: int
    heartbeat_age: float = Field(description="seconds since its last heartbeat")
    started_at: datetime


class ThroughputPoint(BaseModel):
    minute: datetime
    done: int
    failed: int
    skipped: int = Field(description="unchanged since last merged: still searchable")
    chunks: int


class Rebuild(BaseModel):
    collection: str
    generation: int = Field(description="the generation being built")
    model: str = Field(description="the model it is built with")
    answering: int = Field(description="the generation search answers from meanwhile")
    settled: int = Field(description="documents of the rebuild done, unchanged or failed")
    failed: int
    of: int = Field(description="documents in the rebuild")


class Overview(BaseModel):
    queue: QueueDepth
    states: list[State] = Field(description="every state a document can be in, in order")
    documents: dict[str, int]
    workers: list[Worker]
    throughput: list[ThroughputPoint]
    recent: list[DocumentSummary]
    failures: list[DeadLetter]
    in_process_workers: int
    rebuilds: list[Rebuild] = Field(description="collections being re-indexed (`reindex`)")


class HistoryEntry(BaseModel):
    at: datetime
    what: str = Field(description="what happened then, in words")
    from_state: str | None = Field(None, description="the move's state before (null: new)")
    to_state: str | None = Field(None, description="the move's state after")
    reason: str | None = None
    run: str | None = None
    attempt: int | None = None


class ChunkPreview(BaseModel):
    index: int
    text: str
    page: int | None
    start_s: float | None = Field(description="a recording's chunk: where it starts, seconds")
    end_s: float | None
    wall_clock: str | None = Field(None, description="its span as the time of day it was said")


class Artifact(BaseModel):
    name: str = Field(description="lines.ndjson, words.ndjson, transcript.txt, …")
    url: str = Field(description="GET it for the bytes (with the API key)")
    size: int | None


class DocumentDetail(BaseModel):
    document: DocumentStatus
    history: list[HistoryEntry] = Field(
        description="first submitted, every move between states, the state now: oldest first"
    )
    versions: list[dict[str, Any]] = Field(
        description="one per run that settled it, as GET /documents/{id}/history gives them"
    )
    stored_chunks: int = Field(description="chunks of the document in the vector store now")
    first_chunks: list[ChunkPreview]
    manifest: dict[str, Any] | None = Field(description="the result manifest of its last run")
    manifest_key: str | None
    artifacts: list[Artifact]
    dead_letter: str | None = Field(description="the job id to redrive, when dead-lettered")


class StageTimes(BaseModel):
    id: str
    name: str
    finished_at: datetime
    timings: dict[str, float] = Field(description="seconds per stage")
    total: float


class Timings(BaseModel):
    stages: list[str] = Field(description="fetch, extract, chunk, embed, …, merge: in order")
    documents: list[StageTimes] = Field(description="the last documents done, oldest first")
    seconds: dict[str, float] = Field(description="seconds per stage over these documents")


class EventToken(BaseModel):
    token: str
    expires_in: int = Field(description="seconds the token may be used to connect")


# -- from catalog rows and queue letters -------------------------------------------


def timestamp(ts: float | None) -> datetime:
    return datetime.fromtimestamp(ts or 0.0, UTC)


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": doc["id"],
        "name": display_name(doc["source"]),
        "collection": doc["collection"],
        "source": doc["source"],
        "run": doc["run"],
        "state": doc["state"],
        "stage": doc["stage"],
        "kind": doc["kind"],
        "chunks": doc["chunks"] or 0,
        "error": doc["error"],
        "error_kind": doc["error_kind"],
        "attempts": doc["attempts"] or 0,
        "created_at": timestamp(doc["created_at"]),
        "updated_at": timestamp(doc["updated_at"]),
    }


def status(doc: dict[str, Any]) -> dict[str, Any]:
    details = dict(doc.get("metadata") or {})
    user = details.pop("user", None)
    return {
        **summary(doc),
        "mime": doc["mime"],
        "size": doc["size"],
        "content_hash": doc["content_hash"],
        "model": doc["model"],
        "timings": {
            k: round(float(v), 4)
            for k, v in (doc.get("timings") or {}).items()
            if isinstance(v, int | float)
        },
        "metadata": user if isinstance(user, dict) else {},
        "details": details,
    }


def dead_letter(letter: Any, default_collection: str) -> dict[str, Any]:
    body = letter.body if isinstance(letter.body, dict) else {}
    source = body.get("source") if isinstance(body.get("source"), str) else None
    return {
        "job_id": letter.job_id,
        "document_id": document_of(body, default_collection),
        "name": display_name(source) if source else None,
        "source": source,
        "collection": body.get("collection") or (default_collection if source else None),
        "error": letter.error,
        "attempts": letter.receive_count,
        "first_seen": timestamp(letter.first_seen),
        "last_seen": timestamp(letter.last_seen),
    }


# -- conveyor embed-server ---------------------------------------------------------


def _valid_unicode(text: str) -> str:
    """A text the tokenizer can take: no lone surrogates (``"\\ud800"`` in JSON)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text is not valid Unicode (a lone surrogate such as \\ud800)") from None
    return text


Text = Annotated[str, AfterValidator(_valid_unicode)]


class EmbedRequest(BaseModel):
    texts: list[Text]


class OpenAIRequest(BaseModel):
    input: Text | list[Text]
    model: str | None = None
    encoding_format: str = "float"


class EmbedHealth(BaseModel):
    status: Literal["ok"]
    model: str
    dim: int
    backend: str
    uptime_s: float


class Embeddings(BaseModel):
    embeddings: list[list[float]]
    model: str
    dim: int


class OpenAIEmbedding(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str = Field(description="floats, or base64 of float32 (<f4)")


class OpenAIUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddings(BaseModel):
    object: Literal["list"]
    data: list[OpenAIEmbedding]
    model: str
    usage: OpenAIUsage
