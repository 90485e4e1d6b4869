"""Intake: the files a run names, and what a run comes to.

:func:`expand_paths` turns paths, globs and ``s3://`` prefixes into the
sources of one job each; :class:`Enqueued` is what was submitted and
:class:`IngestSummary` what became of it.
"""

from __future__ import annotations

import glob
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass
class Enqueued:
    run: str
    collection: str
    jobs: int
    document_ids: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    """Paths that named nothing (recorded as failed documents)."""
    empty: list[str] = field(default_factory=list)
    """Folders, globs and prefixes that named no file."""
    deleted: list[str] = field(default_factory=list)
    """Documents whose file is gone from the folders synced (``sync``)."""


@dataclass
class IngestSummary:
    run: str
    collection: str
    enqueued: int
    done: int
    skipped: int
    failed: int
    chunks: int
    seconds: float
    failures: list[dict[str, Any]] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    """Folders, globs and prefixes that named no file."""
    interrupted: bool = False
    """Stopped (Ctrl-C, SIGTERM) before every document was finished."""
    released: int = 0
    """Jobs handed back to the queue unfinished when it was interrupted."""
    deleted: int = 0
    """Documents removed because their file is gone (``--sync``)."""
    tokens: int = 0
    """Tokens the run's documents sent to a remote embedding provider (0: none used)."""

    @property
    def unfinished(self) -> int:
        """Documents of the run not (yet) done, unchanged or failed."""
        return self.enqueued - self.done - self.skipped - self.failed

    @property
    def searchable(self) -> int:
        """Documents of the run whose chunks are in the store: done or unchanged."""
        return self.done + self.skipped

    @property
    def chunks_per_second(self) -> float:
        return self.chunks / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "collection": self.collection,
            "enqueued": self.enqueued,
            "done": self.done,
            "skipped": self.skipped,
            "unchanged": self.skipped,
            "searchable": self.searchable,
            "failed": self.failed,
            "unfinished": self.unfinished,
            "interrupted": self.interrupted,
            "released": self.released,
            "empty": self.empty,
            "deleted": self.deleted,
            "chunks": self.chunks,
            "seconds": round(self.seconds, 3),
            "chunks_per_second": round(self.chunks_per_second, 2),
            "tokens": self.tokens,
            "failures": self.failures,
        }


def new_run_name() -> str:
    return datetime.now(UTC).strftime("run-%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:4]


@dataclass
class Expanded:
    """What a run's paths name."""

    files: list[Path | str] = field(default_factory=list)
    """Files (resolved paths) and object URIs, each once, in order."""
    missing: list[str] = field(default_factory=list)
    """Paths that name nothing: each becomes a failed document, ``file not found``."""
    empty: list[str] = field(default_factory=list)
    """Folders with no file in them, globs that match none, prefixes with no object."""


def expand_paths(
    paths: str | Path | Iterable[str | Path],
    *,
    exclude: Sequence[Path] = (),
    listed: Callable[[str, int], None] | None = None,
) -> Expanded:
    """Files named by ``paths`` (one path, or several): files as given, folders
    recursively, globs expanded; ``s3://bucket/prefix/`` becomes the URIs of the
    objects under it (``listed`` is told the running count every 1,000 objects).

    Hidden files and folders (``.git``, ``.DS_Store``) inside folders are left
    out. A path that names nothing is reported in ``missing`` (typos are not
    silent, and do not stop the good paths).
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    out = Expanded()
    found: dict[Path | str, None] = {}
    skip = [p.resolve() for p in exclude]
    for raw in paths:
        text = str(raw)
        before = len(found)
        if text.startswith("s3://"):
            from .blobstore.s3 import list_sources

            tell = (lambda n, url=text: listed(url, n)) if listed else None
            found.update(dict.fromkeys(list_sources(text, progress=tell)))
        elif Path(text).exists():
            _add(found, Path(text), skip)
        elif glob.has_magic(text):
            for match in sorted(glob.glob(text, recursive=True)):
                _add(found, Path(match), skip)
        else:
            out.missing.append(text)
            continue
        if len(found) == before:
            out.empty.append(text)
    out.files = list(found)
    return out


def _add(found: dict[Path | str, None], match: Path, skip: Sequence[Path]) -> None:
    if match.is_dir():
        for f in sorted(match.rglob("*")):
            rel = f.relative_to(match).parts
            resolved = f.resolve()
            if any(p.startswith(".") for p in rel) or not f.is_file():
                continue
            if any(resolved == s or s in resolved.parents for s in skip):
                continue
            found[resolved] = None
    elif match.is_file():
        found[match.resolve()] = None
