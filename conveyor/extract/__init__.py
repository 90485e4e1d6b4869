"""Turn the bytes of a file into text sections, one extractor per format.

The format is chosen by :func:`sniff` from the bytes (never the name), then
:func:`extract` calls the extractor registered for that kind. A new format
(images with OCR, audio, receipt NDJSON) is a new module that decorates its
function with :func:`register` and is imported at the bottom of this file::

    @register("image")
    def extract_image(data: bytes, options: dict[str, Any]) -> Extracted: ...

Callers hold an :class:`Extractor`: :class:`InProcessExtractor` here, or
:class:`~conveyor.isolation.IsolatedExtractor`, which runs the same
:func:`extract` in a child process with time and memory limits.

Every failure caused by the input is a :class:`~conveyor.exceptions.ConveyorError`
with a one-line message a person can act on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from conveyor.exceptions import (
    ConveyorError,
    CorruptFile,
    PermanentError,
    SourceNotFound,
    UnsupportedType,
    safe_summary,
)

from .sniff import sniff

if TYPE_CHECKING:
    from conveyor.chunking import Chunk, ChunkPlan

__all__ = [
    "EXTRACTORS",
    "ExtractFunction",
    "Extracted",
    "Extractor",
    "InProcessExtractor",
    "Input",
    "Section",
    "extract",
    "register",
    "report_progress",
    "sniff",
]


@dataclass
class Section:
    """A run of text from one place in a document (a page, a time span, or all of it)."""

    text: str
    page: int | None = None
    """1-based page number, for paged formats."""
    start_s: float | None = None
    """Start time in seconds, for audio."""
    end_s: float | None = None
    """End time in seconds, for audio."""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Extracted:
    """What an extractor found: the text sections and document-level metadata.

    ``sections`` only holds sections with non-empty text. ``metadata`` may carry
    ``title``, ``author``, ``created`` (ISO 8601), ``page_count``, ``links``
    (URLs as written, deduplicated, in order), ``pages_without_text``, ...
    """

    kind: str
    mime: str
    sections: list[Section]
    metadata: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, bytes] = field(default_factory=dict)
    """Files worth keeping beside the chunks (a transcript as JSON, text, WebVTT)."""
    units: dict[str, list[Section]] = field(default_factory=dict)
    """Small units embedded one each into their own collection, ``<collection>_<name>``
    (OCR ``lines`` and ``words``), beside the chunks of the text."""
    chunks: list[Chunk] | None = None
    """The text's chunks, when extraction was asked to chunk (``chunking=``)."""
    chunk_seconds: float = 0.0
    """How long chunking took, there."""

    @property
    def text(self) -> str:
        """All section texts joined by blank lines."""
        return "\n\n".join(section.text for section in self.sections)


ExtractFunction = Callable[[bytes, dict[str, Any]], Extracted]

#: kind → extractor function; filled by :func:`register`.
EXTRACTORS: dict[str, ExtractFunction] = {}

_LABELS = {
    "audio": "audio file",
    "pdf": "PDF",
    "html": "HTML file",
    "markdown": "Markdown file",
    "text": "text file",
}


def register(kind: str) -> Callable[[ExtractFunction], ExtractFunction]:
    """Decorator: make ``function`` the extractor for ``kind`` (replacing any before)."""

    def decorate(function: ExtractFunction) -> ExtractFunction:
        EXTRACTORS[kind] = function
        return function

    return decorate


_hooks = threading.local()


def report_progress(message: str) -> None:
    """Called by slow extractors (audio) to say where they are; shown as the stage."""
    hook = getattr(_hooks, "progress", None)
    if hook is not None:
        hook(message)


Input = bytes | Path
"""A file's bytes, or the path of a local file to read them from (read where the
extraction runs, so that a worker never holds a large file)."""


def extract(
    data: Input,
    name: str | None = None,
    kind: str | None = None,
    options: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    chunking: ChunkPlan | None = None,
) -> Extracted:
    """Extract text and metadata from ``data`` (bytes, or a local file's path).

    ``kind`` skips sniffing when given; ``name`` is only a hint between
    text-like kinds. ``options`` go to the extractor (PDF: ``max_pages``,
    ``password``). With ``chunking``, the text is chunked here too, within the
    plan's limits (``Extracted.chunks``). Raises only
    :class:`~conveyor.exceptions.ConveyorError` subclasses for bad input:
    ``EmptyDocument``, ``UnsupportedType``, ``CorruptFile``, ``EncryptedFile``,
    ``DocumentTooLarge`` or another ``PermanentError``.
    """
    if isinstance(data, Path):
        data = _read(data)
    extracted = _extract(data, name, kind, options, progress)
    if chunking is not None:
        from conveyor.chunking import chunk_document

        started = time.perf_counter()
        extracted.chunks = chunk_document(extracted.sections, chunking)
        extracted.chunk_seconds = time.perf_counter() - started
    return extracted


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SourceNotFound(
            f"file not found (moved or deleted before it was read): {path}"
        ) from None
    except OSError as exc:
        raise PermanentError(f"could not read {path}: {safe_summary(exc)}") from None


def _extract(
    data: bytes,
    name: str | None,
    kind: str | None,
    options: dict[str, Any] | None,
    progress: Callable[[str], None] | None,
) -> Extracted:
    if kind is None:
        kind = sniff(data, name)
    extractor = EXTRACTORS.get(kind)
    if extractor is None:
        known = ", ".join(sorted(EXTRACTORS))
        raise UnsupportedType(f"kind {kind!r} is not supported (known kinds: {known})")
    _hooks.progress = progress
    try:
        return extractor(data, dict(options or {}))
    except (ConveyorError, MemoryError):
        raise
    except Exception as exc:
        label = _LABELS.get(kind, f"{kind} file")
        reason = safe_summary(f"{type(exc).__name__}: {exc}", limit=120)
        raise CorruptFile(f"truncated or damaged {label}: {reason}") from exc
    finally:
        _hooks.progress = None


class Extractor(Protocol):
    """What the pipeline extracts with: :func:`extract`, here or elsewhere."""

    def extract(
        self,
        data: Input,
        name: str | None = None,
        kind: str | None = None,
        options: dict[str, Any] | None = None,
        progress: Callable[[str], None] | None = None,
        chunking: ChunkPlan | None = None,
    ) -> Extracted:
        """As :func:`extract`; may raise more :class:`~conveyor.exceptions.PermanentError`
        kinds for input that breaks its limits (time, memory)."""
        ...

    def close(self) -> None:
        """Release child processes; ``extract`` is not called after."""
        ...


class InProcessExtractor:
    """:func:`extract` in the calling thread, with no limits
    (``CONVEYOR_ISOLATE_EXTRACTION=false``)."""

    def extract(
        self,
        data: Input,
        name: str | None = None,
        kind: str | None = None,
        options: dict[str, Any] | None = None,
        progress: Callable[[str], None] | None = None,
        chunking: ChunkPlan | None = None,
    ) -> Extracted:
        return extract(data, name, kind, options, progress, chunking)

    def close(self) -> None:
        """Nothing to release."""


# Extractor modules register themselves on import; they need the types above.
from . import audio as audio  # noqa: E402
from . import html as html  # noqa: E402
from . import image as image  # noqa: E402
from . import pdf as pdf  # noqa: E402
from . import receipt as receipt  # noqa: E402
from . import text as text  # noqa: E402
