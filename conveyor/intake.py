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

from .exceptions import ConveyorError


@dataclass
class Enqueued:
    run: str
    collection: str
    jobs: int
    document_ids: list[str] = field(default_factory=list)


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
    tokens: int = 0
    """Tokens the run's documents sent to a remote embedding provider (0: none used)."""

    @property
    def unfinished(self) -> int:
        """Documents of the run not (yet) done, skipped or failed."""
        return self.enqueued - self.done - self.skipped - self.failed

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
            "failed": self.failed,
            "unfinished": self.unfinished,
            "chunks": self.chunks,
            "seconds": round(self.seconds, 3),
            "chunks_per_second": round(self.chunks_per_second, 2),
            "tokens": self.tokens,
            "failures": self.failures,
        }


def new_run_name() -> str:
    return datetime.now(UTC).strftime("run-%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:4]


def expand_paths(
    paths: Iterable[str | Path],
    *,
    exclude: Sequence[Path] = (),
    listed: Callable[[str, int], None] | None = None,
) -> list[Path | str]:
    """Files named by ``paths``: files as given, folders recursively, globs expanded;
    ``s3://bucket/prefix/`` becomes the URIs of the objects under it (``listed`` is
    told the running count every 1,000 objects).

    Hidden files and folders (``.git``, ``.DS_Store``) inside folders are left
    out. A path that names nothing is an error, so typos are not silent.
    """
    found: dict[Path | str, None] = {}
    missing = []
    skip = [p.resolve() for p in exclude]
    for raw in paths:
        text = str(raw)
        if text.startswith("s3://"):
            from .blobstore.s3 import list_sources

            tell = (lambda n, url=text: listed(url, n)) if listed else None
            found.update(dict.fromkeys(list_sources(text, progress=tell)))
            continue
        if Path(text).exists():
            matches = [Path(text)]
        elif glob.has_magic(text):
            matches = [Path(m) for m in sorted(glob.glob(text, recursive=True))]
        else:
            matches = []
        if not matches:
            missing.append(text)
        for match in matches:
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
    if missing:
        raise ConveyorError("no such file or directory: " + ", ".join(missing))
    return list(found)
