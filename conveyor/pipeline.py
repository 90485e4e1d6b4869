"""A document's path, one stage at a time: fetch → extract → chunk → embed →
its format's steps → unit collections → deliver.

:meth:`Pipeline.run` reads top to bottom; each stage is a small function
over typed values, timed, and named in the catalog while it runs (the
document's ``stage``: written with the document's next write, or once it has
run :data:`~conveyor.documents.STAGE_DELAY` seconds). The worker
(:mod:`conveyor.worker`) wraps it with what concerns the job rather than the
document: leases, acks, retries.

To add a stage, write a function ``def stage(doc: InFlight, …) -> …`` that
runs inside ``with doc.stage("name"):`` and call it from :meth:`Pipeline.run`.
A format adds steps of its own with :func:`after_embed` (a recording's
summary below); units it extracts (OCR lines and words) are embedded into
their own collections by :func:`unit_parts` without further code.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal
from urllib.parse import urlparse

import numpy as np

from . import deltas, tracing
from .blobstore import BlobStore
from .catalog import Catalog, NewDelta
from .chunking import Chunk, ChunkPlan, chunk_document
from .describe import LlmConfig, describe
from .documents import SEARCHABLE, Documents, State
from .embedding import Embedder, Tokenizer
from .embedding.remote import metered
from .exceptions import EmptyDocument
from .extract import Extracted, Extractor, Input, Section
from .headers import contextual_texts
from .ids import chunk_id
from .jobs import Job
from .manifests import Manifests
from .measure import note
from .pages import page_fingerprint, page_vectors, rendering, store_page_images
from .settings import Settings
from .sources import fetch_job
from .summary import summarise

log = logging.getLogger(__name__)


def fingerprint(content: str, model_id: str, size: int, overlap: int) -> str:
    """What makes a document's chunks what they are: same fingerprint, nothing to redo."""
    return f"{content}|{model_id}|{size}|{overlap}"


@dataclass(frozen=True)
class Embedded:
    """What a document's texts came back as: their vectors, and the seconds of the model
    call that made them (shared with ``shared`` other documents' texts)."""

    vectors: np.ndarray
    seconds: float
    shared: int = 0


JobStatus = Literal["merge", "skipped", "retry", "failed", "lost"]
"""What became of a job: its delta written (``merge``), unchanged (``skipped``), failed
for now (``retry``) or for good (``failed``), or its lease gone to another worker."""


@dataclass
class Outcome:
    document_id: str | None
    status: JobStatus
    error: str | None = None
    chunks: int = 0
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Write:
    """A delivery's last delta, with its document's columns, handed out to be written
    (:func:`drive` writes it alone; a worker writes a wave's together)."""

    delta: NewDelta


Steps = Generator["list[str] | Write", "Embedded | None", Outcome]
"""A job's stages as :meth:`Pipeline.steps` runs them: they yield the texts to embed
once (or not at all: a skipped document), sent back as :class:`Embedded`, then their
delivery's :class:`Write` (sent back None once written), and return the job's
:class:`Outcome`."""


def drive(steps: Steps, embed: Callable[[list[str]], np.ndarray], catalog: Catalog) -> Outcome:
    """Run ``steps`` to the end, embedding what they yield with ``embed`` and writing
    their delivery to ``catalog``; a failure of either is raised inside them, where
    their own failure would be."""
    try:
        request = next(steps)
        while True:
            started = time.perf_counter()
            try:
                if isinstance(request, Write):
                    request.delta.add(catalog)
                    request = steps.send(None)
                    continue
                vectors = embed(request)
            except Exception as exc:
                request = steps.throw(exc)
                continue
            request = steps.send(Embedded(vectors, time.perf_counter() - started))
    except StopIteration as stop:
        outcome: Outcome = stop.value
        return outcome


@dataclass
class InFlight:
    """One document on its way through the stages."""

    job: Job
    id: str
    job_id: str
    previous: Mapping[str, Any]
    """The catalog's row of the version before (empty for a new document)."""
    documents: Documents
    timings: dict[str, float] = field(default_factory=dict)
    learnt: dict[str, Any] = field(default_factory=dict)
    """Fields for the catalog written with the next stage (one write, not two)."""

    @contextmanager
    def stage(self, name: str, **fields: Any) -> Iterator[None]:
        """Run a stage: named in the catalog while it runs (with ``fields``), timed. The
        name is written with the document's next write, or after
        :data:`~conveyor.documents.STAGE_DELAY` seconds if the stage is still running."""
        self.documents.stage(self.id, name, **fields)
        with self.timed(name):
            yield

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        with tracing.span(name, document=self.id):
            yield
        self.timings[name] = time.perf_counter() - started


@dataclass(frozen=True)
class Fetched:
    data: Input
    """The bytes, or a local file's path (read by the extraction child)."""
    size: int
    digest: str
    read_at: float
    """When the source was read, by the catalog's clock (deltas are ordered by it)."""
    fingerprint: str


@dataclass(frozen=True)
class Part:
    """What one collection gets from a document: rows and their vectors."""

    collection: str
    rows: list[deltas.Chunk]
    vectors: np.ndarray


UnitVectors = Callable[[list[Section], list[Chunk], np.ndarray], tuple[list[Section], np.ndarray]]
UNIT_VECTORS: dict[str, UnitVectors] = {"pages": page_vectors}
"""Unit collections whose vectors come from the text's chunks (no model call): a
page's is the mean of its chunks' (:mod:`conveyor.pages`)."""

FormatStep = Callable[["Pipeline", InFlight, Extracted], None]
FORMAT_STEPS: dict[str, list[FormatStep]] = {}


def after_embed(*kinds: str) -> Callable[[FormatStep], FormatStep]:
    """Decorator: run the step for documents of ``kinds`` once their text is embedded."""

    def decorate(step: FormatStep) -> FormatStep:
        for kind in kinds:
            FORMAT_STEPS.setdefault(kind, []).append(step)
        return step

    return decorate


@dataclass(frozen=True)
class Pipeline:
    """What the stages need, and the stages in order."""

    settings: Settings
    catalog: Catalog
    blobs: BlobStore
    extractor: Extractor
    embedder: Embedder
    """Batching and the cache in front of the model (or of the embedding service)."""
    tokenizer: Tokenizer
    on_delta: Callable[[], None] = lambda: None
    """Called when a delta is written (wakes the compactor of this process)."""
    documents: Documents = field(init=False, repr=False, compare=False)
    """Every write of a document's state; one for all jobs, as it holds their stages
    back until each document's next write (:meth:`Documents.stage`)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "documents", Documents(self.catalog))

    @property
    def manifests(self) -> Manifests:
        return Manifests(self.blobs)

    def run(self, job: Job, *, job_id: str, document_id: str, attempts: int) -> Outcome:
        """The document of ``job`` from its source to a delta the compactor merges."""
        return drive(
            self.steps(job, job_id=job_id, document_id=document_id, attempts=attempts),
            self.embedder.embed,
            self.catalog,
        )

    def steps(self, job: Job, *, job_id: str, document_id: str, attempts: int) -> Steps:
        """:meth:`run` as a generator that hands its chunks' texts out to be embedded
        (``yield``) and goes on with their vectors: a worker runs several small jobs'
        steps side by side and embeds all their chunks in one model call."""
        previous = self.catalog.get(document_id) or {}
        if not previous:  # a job someone else sent straight to the queue
            self.documents.queued([(document_id, job.collection, job.source)], job.run)
        self.documents.started(document_id, previous.get("state"), attempts=attempts)
        doc = InFlight(job, document_id, job_id, previous, self.documents)
        note(document_id=document_id, collection=job.collection, run=job.run, kind=job.kind)
        note(stages=doc.timings)  # filled in as the stages run (conveyor.measure)
        tracing.annotate(document=document_id, collection=job.collection, source=job.source)

        fetched = self.fetch(doc)
        if self.unchanged(doc, fetched):
            if previous.get("state") in SEARCHABLE and previous.get("run") == job.run:
                return self.again(doc, State(previous["state"]))
            return self.skip(doc, fetched)
        extracted = self.extract(doc, fetched)
        chunks = self.chunk(doc, extracted)
        tracing.annotate(
            kind=extracted.kind,
            bytes=fetched.size,
            chunks=len(chunks),
            tokens=sum(c.tokens for c in chunks),
        )
        with metered() as usage:  # what a remote provider bills for this document
            vectors = yield from self.embed(doc, chunks, extracted)
            for step in FORMAT_STEPS.get(extracted.kind, []):
                step(self, doc, extracted)
            parts = [self.text_part(doc, extracted, chunks, vectors)]
            parts += self.unit_parts(
                doc, extracted, dim=int(vectors.shape[1]), text=(chunks, vectors)
            )
        if usage.requests:
            extracted.metadata["usage"] = usage.as_dict()
        yield from self.deliver(doc, fetched, extracted, parts)
        return Outcome(document_id, "merge", chunks=len(chunks), timings=doc.timings)

    # -- the stages, in order ----------------------------------------------

    def fetch(self, doc: InFlight) -> Fetched:
        with doc.timed("fetch"):
            read_at = self.catalog.now()
            data, digest, size = fetch_job(doc.job, self.blobs, self.settings.max_file_bytes)
        note(input_bytes=size)
        s = self.settings
        model = self.embedder.model_id + ("#headers" if s.contextual_headers else "")
        fp = fingerprint(digest, model, s.chunk_size, s.chunk_overlap)
        fp += page_fingerprint(s)  # page images on, or the pages collection off: redo
        if not s.diarize or s.speakers:  # speakers off, or their number forced: redo
            fp += f"|speakers:{(s.speakers or 'auto') if s.diarize else 'off'}"
        return Fetched(data, size, digest, read_at, fp)

    def unchanged(self, doc: InFlight, fetched: Fetched) -> bool:
        return doc.previous.get("fingerprint") == fetched.fingerprint and not doc.job.options.get(
            "force"
        )

    def skip(self, doc: InFlight, fetched: Fetched) -> Outcome:
        self.documents.skipped(doc.id)
        job = doc.job
        self.manifests.skipped(
            source=job.source,
            document_id=doc.id,
            collection=job.collection,
            run=job.run,
            content_hash=fetched.digest,
            model=self.embedder.model_id,
        )
        return Outcome(doc.id, "skipped", chunks=int(doc.previous.get("chunks") or 0))

    def again(self, doc: InFlight, state: State) -> Outcome:
        """A second job of the same run for a document that run already settled (a job
        released by a stopped ingest and sent again by the next one, an S3 event
        delivered twice), and nothing changed: the document keeps its state, and the job
        that settled it keeps the credit."""
        self.documents.settled_again(doc.id, state)
        return Outcome(doc.id, "skipped", chunks=int(doc.previous.get("chunks") or 0))

    def extract(self, doc: InFlight, fetched: Fetched) -> Extracted:
        job = doc.job
        with (
            doc.stage("extract", content_hash=fetched.digest, size=fetched.size),
            rendering(self.settings, doc.id) as pages,  # page images: where, at what size
        ):
            extracted = self.extractor.extract(
                fetched.data,
                name=PurePosixPath(urlparse(job.source).path).name or None,
                kind=job.kind,
                options={"image_id": doc.id, **self.extract_options(), **job.options, **pages},
                progress=lambda message: self.documents.stage(doc.id, message),
                chunking=self.chunk_plan(),
            )
            earlier = "page_images" in (doc.previous.get("metadata") or {})
            store_page_images(self.blobs, doc.id, pages, extracted, earlier=earlier)
        found = extracted.metadata
        note(kind=extracted.kind, pages=found.get("page_count"))
        note(audio_seconds=found.get("duration") if extracted.kind == "audio" else None)
        if isinstance(job.options.get("metadata"), dict):  # the uploader's, kept as given
            extracted.metadata["user"] = job.options["metadata"]
        if extracted.artifacts:
            keys = {}
            for artifact, content in extracted.artifacts.items():
                keys[artifact] = f"artifacts/{doc.id}/{artifact}"
                self.blobs.put(keys[artifact], content)
            extracted.metadata["artifacts"] = keys
        return extracted

    def chunk_plan(self) -> ChunkPlan:
        s = self.settings
        return ChunkPlan(
            self.tokenizer, s.chunk_size, s.chunk_overlap, s.max_chunks, s.max_text_chars
        )

    def chunk(self, doc: InFlight, extracted: Extracted) -> list[Chunk]:
        """The chunks extraction made (in its child, within its limits), else here."""
        chunks = extracted.chunks
        if chunks is not None:  # what was learnt is recorded with the next stage
            doc.learnt.update(kind=extracted.kind, mime=extracted.mime)
            doc.timings["chunk"] = extracted.chunk_seconds
            tracing.past("chunk", extracted.chunk_seconds, document=doc.id, where="extraction")
        else:
            with doc.stage("chunk", kind=extracted.kind, mime=extracted.mime):
                chunks = chunk_document(extracted.sections, self.chunk_plan())
        if not chunks:
            if doc.learnt:  # what it is, for the failure's listing
                self.documents.stage(doc.id, "chunk", **doc.learnt)
            raise EmptyDocument("no text to index after extraction")
        note(chunks=len(chunks), tokens=sum(c.tokens for c in chunks))
        return chunks

    def embed(
        self, doc: InFlight, chunks: list[Chunk], extracted: Extracted | None = None
    ) -> Generator[list[str], Embedded, np.ndarray]:
        """The chunks' vectors; with ``contextual_headers``, of each chunk's text after
        its document's title and section path (the stored text stays as it is). The
        texts are yielded to whoever embeds them (:func:`drive`, or a worker embedding
        several documents' chunks in one call), which sends back an :class:`Embedded`."""
        texts = [c.text for c in chunks]
        if self.settings.contextual_headers and extracted is not None:
            texts = contextual_texts(chunks, extracted)
        self.documents.stage(doc.id, "embed", **doc.learnt)
        embedded = yield texts
        doc.timings["embed"] = embedded.seconds
        tracing.past("embed", embedded.seconds, document=doc.id, shared=embedded.shared)
        return embedded.vectors

    def text_part(
        self, doc: InFlight, extracted: Extracted, chunks: list[Chunk], vectors: np.ndarray
    ) -> Part:
        title = extracted.metadata.get("title")
        rows = [
            deltas.Chunk(
                id=chunk_id(doc.id, c.index),
                index=c.index,
                text=c.text,
                page=c.page,
                metadata={
                    **c.metadata,
                    "start": c.start,
                    "end": c.end,
                    "tokens": c.tokens,
                    "start_s": c.start_s,
                    "end_s": c.end_s,
                    "kind": extracted.kind,
                    **({"title": title} if title else {}),
                },
            )
            for c in chunks
        ]
        return Part(doc.job.collection, rows, vectors)

    def unit_parts(
        self,
        doc: InFlight,
        extracted: Extracted,
        *,
        dim: int,
        text: tuple[list[Chunk], np.ndarray] | None = None,
    ) -> list[Part]:
        """One part per unit collection (``<collection>_lines``…) this version fills or an
        earlier one filled: an empty part clears what the document no longer has. Units
        named in :data:`UNIT_VECTORS` take their vectors from the ``text``'s chunks."""
        earlier = (doc.previous.get("metadata") or {}).get("unit_collections") or []
        names = sorted(set(extracted.units) | set(earlier))
        extracted.metadata["unit_collections"] = sorted(
            n for n in extracted.units if extracted.units[n]
        )
        parts = []
        for name in names:
            units = extracted.units.get(name, [])
            derive = UNIT_VECTORS.get(name)
            with doc.timed(f"embed_{name}"):
                if units and derive is not None and text is not None:
                    units, vectors = derive(units, *text)
                elif units:
                    vectors = self.embedder.embed([u.text for u in units])
                else:
                    vectors = np.zeros((0, dim), dtype=np.float32)
            rows = [
                deltas.Chunk(
                    id=chunk_id(f"{doc.id}/{name}", i),
                    index=i,
                    text=u.text,
                    page=u.page,
                    metadata={**u.metadata, "unit": name},
                )
                for i, u in enumerate(units)
            ]
            parts.append(Part(f"{doc.job.collection}_{name}", rows, vectors))
        return parts

    def deliver(
        self, doc: InFlight, fetched: Fetched, extracted: Extracted, parts: list[Part]
    ) -> Generator[Write, None, None]:
        """One delta per collection (each has its own single writer); the document is
        done when every part of this delivery is merged. The last part is written with
        the document's stage ``merge``, in one transaction (the compactor cannot make the
        document ``done`` before it says ``merge``), by whoever runs the steps: it is
        yielded (a worker writes its wave's together)."""
        job, model = doc.job, self.embedder.model_id
        delivery = deltas.Delivery(
            id=uuid.uuid4().hex,
            collections={p.collection: len(p.rows) for p in parts},
            chunks=len(parts[0].rows),
        )

        def delta(number: int, document: dict[str, Any] | None = None) -> NewDelta:
            part = parts[number]
            header = deltas.Header(
                source=job.source,
                run=job.run,
                job_id=doc.job_id,
                read_at=fetched.read_at,
                content_hash=fetched.digest,
                fingerprint=fetched.fingerprint,
                kind=extracted.kind,
                mime=extracted.mime,
                size=fetched.size,
                model=model,
                backend=self.embedder.backend,
                dim=int(parts[0].vectors.shape[1]),
                timings=dict(doc.timings),
                metadata=extracted.metadata,
                delivery=delivery,
                part=number,
                trace=tracing.traceparent(),
            )
            return deltas.prepare(
                part.collection, doc.id, header, part.rows, part.vectors, document=document
            )

        for number in range(len(parts) - 1):
            delta(number).add(self.catalog)
        columns, held = self.documents.merging_columns(
            doc.id, model=model, metadata=extracted.metadata, timings=doc.timings
        )
        try:
            yield Write(delta(len(parts) - 1, columns))
        except BaseException:
            self.documents.hold_again(doc.id, held)
            raise
        self.on_delta()

    def extract_options(self) -> dict[str, Any]:
        """What the extractors need from the settings (they run in a child process)."""
        s = self.settings
        options: dict[str, Any] = {
            "whisper_model": s.whisper_model,
            "compute_type": s.whisper_compute_type,
            "language": s.whisper_language,
            "threads": s.whisper_threads,
            "diarize": s.diarize,
            "speakers": s.speakers,
            "ocr_lang": s.ocr_lang,
            "ocr_timeout": s.ocr_timeout or None,
            "max_pixels": s.max_image_pixels,
            "detect_orientation": s.ocr_orientation,
        }
        if s.max_pdf_pages:
            options["max_pages"] = s.max_pdf_pages
        options["pdf_pages"] = s.pdf_pages
        return options


# -- steps formats register ------------------------------------------------


@after_embed("audio")
def summarise_recording(pipeline: Pipeline, doc: InFlight, extracted: Extracted) -> None:
    """A recording's summary and topics: an LLM's when one is configured, else extractive."""
    s = pipeline.settings
    with doc.stage("summarise"):
        summary = summarise(
            [section.text for section in extracted.sections],
            pipeline.embedder,
            llm_base_url=s.llm_base_url,
            llm_model=s.llm_model,
            llm_api_key=s.llm_api_key,
            llm_timeout=s.llm_timeout,
        )
    extracted.metadata.update(summary.as_dict())


@after_embed("pdf")
def describe_document(pipeline: Pipeline, doc: InFlight, extracted: Extracted) -> None:
    """A PDF's title, summary, keywords, type and language (:mod:`conveyor.describe`):
    an LLM's when one is configured, else offline; never fails the document."""
    s = pipeline.settings
    if not s.describe_documents:
        return
    llm = None
    if s.llm_base_url and s.llm_model:
        llm = LlmConfig(
            s.llm_base_url, s.llm_model, s.llm_api_key, s.llm_timeout, s.llm_max_input_tokens
        )
    with doc.stage("describe"):
        sections = [(section.page, section.text) for section in extracted.sections]
        found = describe(extracted.metadata, sections, pipeline.embedder, llm)
    own = extracted.metadata.get("title")
    if own and found.title and own != found.title:
        extracted.metadata["pdf_title"] = own  # the file's own, kept beside the described
    extracted.metadata.update(found.as_metadata())
