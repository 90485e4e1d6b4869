"""What a search can be narrowed to, and how each kind of backend says it.

A :class:`Filter` is applied inside the backend that answers — SQL ``WHERE``
(sqlite-vec, pgvector and both lexical indexes), a Chroma ``where``, a Qdrant
``Filter`` — never by fetching more hits and dropping some. Every backend
gives the same answer to the same filter; ``tests/integration/
test_vectorstore_conformance.py`` checks that. Their meanings:

- ``source_prefix``: sources under a folder or URI prefix, in whole path
  segments: ``file:///docs/a`` matches ``file:///docs/a`` itself and
  ``file:///docs/a/…``, not ``file:///docs/ab.txt``. Chroma and Qdrant match it
  against the list of a chunk's :func:`ancestors`, which they store.
- ``kind``: the document's kind (``text``, ``pdf``, ``audio``…), as ``where``
  on the chunk's ``kind`` metadata.
- ``pages``: chunks whose page is in the inclusive range (chunks without a
  page never match).
- ``seconds``: chunks of a recording that overlap the range (inclusive).
- ``recorded``: chunks of recordings whose start (``recorded_at``, Unix seconds,
  from the recorder's ``startedAt``: :mod:`conveyor.recordings`) is in the
  inclusive range; chunks of documents with no known start never match.
- ``where``: metadata ``key = value``, all of them, compared as text: a number
  or a boolean in its JSON spelling (``3``, ``2.5``, ``true``), a string as it
  is. Stores that index strings only keep :func:`match_fields`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .exceptions import ConveyorError

KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
Range = tuple[float | None, float | None]


class BadFilter(ConveyorError):
    """A filter that cannot mean anything (an unknown key, an empty range)."""


@dataclass(frozen=True)
class Filter:
    """Conditions a hit must meet, all of them; an empty filter lets everything through."""

    document_id: str | None = None
    source: str | None = None
    """The exact source URI."""
    source_prefix: str | None = None
    kind: str | None = None
    pages: Range | None = None
    seconds: Range | None = None
    where: tuple[tuple[str, str], ...] = field(default=())
    recorded: Range | None = None
    """A recording's start, Unix seconds (``--since``/``--until``)."""

    def __post_init__(self) -> None:
        for key, _ in self.where:
            if not KEY.fullmatch(key):
                raise BadFilter(
                    f"metadata key {key!r}: use letters, digits, '_' or '-' (at most 64)"
                )
        spans = (("page", self.pages), ("time", self.seconds), ("recording", self.recorded))
        for name, span in spans:
            if span is not None and None not in span and span[0] > span[1]:  # type: ignore[operator]
                raise BadFilter(f"{name} range {span[0]}–{span[1]} is empty (start after end)")

    def __bool__(self) -> bool:
        return any(
            (
                self.document_id,
                self.source,
                self.source_prefix,
                self.kind,
                self.pages,
                self.seconds,
                self.where,
                self.recorded,
            )
        )

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Every metadata equality: ``where`` and the kind."""
        return ((("kind", self.kind),) if self.kind else ()) + self.where

    @classmethod
    def of(cls, where: Filter | Mapping[str, Any] | None) -> Filter:
        """A filter from what callers pass: a :class:`Filter`, None, or the older
        ``{"document_id": …, "source": …}`` equality dict."""
        if isinstance(where, Filter):
            return where
        found = {key: v for key, v in (where or {}).items() if v is not None}
        unknown = set(found) - {"document_id", "source"}
        if unknown:
            raise BadFilter(f"cannot filter on {sorted(unknown)}; use document_id or source")
        return cls(
            document_id=str(found["document_id"]) if "document_id" in found else None,
            source=str(found["source"]) if "source" in found else None,
        )


def folder_forms(prefix: str) -> tuple[str, str]:
    """``(exact, folder)``: a source equal to ``exact`` or starting with ``folder`` is
    under ``prefix``."""
    exact = prefix.rstrip("/") if not prefix.endswith(":///") else prefix
    return exact, exact if exact.endswith("/") else exact + "/"


def ancestors(source: str) -> list[str]:
    """The source itself and every prefix of it that ends with ``/``: what a
    ``source_prefix`` filter can name, for stores that match list elements."""
    return [source[: i + 1] for i, ch in enumerate(source) if ch == "/"] + [source]


def text_value(value: Any) -> str | None:
    """A scalar metadata value as ``where`` compares it; None for lists, objects, null."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    return None


def match_fields(metadata: Mapping[str, Any]) -> dict[str, str]:
    """The metadata that ``where`` can match, as text (for Chroma and Qdrant)."""
    return {
        key: text
        for key, value in metadata.items()
        if KEY.fullmatch(key) and (text := text_value(value)) is not None
    }


Dialect = Literal["sqlite", "postgres"]


def sql(f: Filter, dialect: Dialect, *, prefix: str = "") -> tuple[str, dict[str, Any]]:
    """``(condition, parameters)`` for a table with the chunk columns ``document_id``,
    ``source``, ``page`` and ``metadata`` (JSON text on SQLite, jsonb on PostgreSQL),
    for :mod:`sqlite3`'s ``:name`` or psycopg's ``%(name)s`` parameters. ``prefix``
    qualifies the columns (``"c."``). The condition is ``1 = 1`` for an empty filter."""
    parts: list[str] = []
    params: dict[str, Any] = {}

    def param(value: Any) -> str:
        name = f"f{len(params)}"
        params[name] = value
        return f":{name}" if dialect == "sqlite" else f"%({name})s"

    def number(key: str) -> str:
        if dialect == "sqlite":
            return f"CAST(json_extract({prefix}metadata, '$.{key}') AS REAL)"
        return f"({prefix}metadata->>'{key}')::float8"

    def text(key: str) -> str:
        """A scalar's text as :func:`text_value` writes it (NULL for anything else)."""
        if dialect == "postgres":
            return (
                f"(CASE WHEN jsonb_typeof({prefix}metadata->'{key}') IN ('string', 'number',"
                f" 'boolean') THEN {prefix}metadata->>'{key}' END)"
            )
        path = f"'$.\"{key}\"'"
        kind = f"json_type({prefix}metadata, {path})"
        return (
            f"(CASE WHEN {kind} = 'text' THEN json_extract({prefix}metadata, {path})"
            f" WHEN {kind} IN ('integer', 'real', 'true', 'false')"
            f" THEN {prefix}metadata -> {path} END)"
        )

    if f.document_id is not None:
        parts.append(f"{prefix}document_id = {param(f.document_id)}")
    if f.source is not None:
        parts.append(f"{prefix}source = {param(f.source)}")
    if f.source_prefix is not None:
        exact, folder = folder_forms(f.source_prefix)
        parts.append(
            f"({prefix}source = {param(exact)} OR substr({prefix}source, 1, "
            f"{param(len(folder))}) = {param(folder)})"
        )
    if f.pages is not None:
        low, high = f.pages
        if low is not None:
            parts.append(f"{prefix}page >= {param(int(low))}")
        if high is not None:
            parts.append(f"{prefix}page <= {param(int(high))}")
        if low is None and high is None:
            parts.append(f"{prefix}page IS NOT NULL")
    if f.seconds is not None:
        low, high = f.seconds
        parts.append(f"{number('end_s')} >= {param(float(low if low is not None else 0.0))}")
        if high is not None:
            parts.append(f"{number('start_s')} <= {param(float(high))}")
    if f.recorded is not None:
        low, high = f.recorded
        parts.append(f"{number('recorded_at')} IS NOT NULL")
        if low is not None:
            parts.append(f"{number('recorded_at')} >= {param(float(low))}")
        if high is not None:
            parts.append(f"{number('recorded_at')} <= {param(float(high))}")
    for key, value in f.metadata:
        parts.append(f"{text(key)} = {param(value)}")
    return (" AND ".join(parts) or "1 = 1"), params


# -- what people type: the CLI's options and the API's parameters --------------


def parse_range(text: str, what: Literal["page", "time"]) -> Range:
    """``"3"``, ``"2-5"``, ``"4-"``, ``"-7"``; times also as ``m:ss`` or ``h:mm:ss``."""

    def one(part: str) -> float | None:
        part = part.strip()
        if not part:
            return None
        try:
            if what == "page":
                return int(part)
            seconds = 0.0
            for piece in part.split(":"):
                seconds = seconds * 60 + float(piece)
            return seconds
        except ValueError:
            example = "3, 2-5 or 4-" if what == "page" else "90, 1:30-2:45 or 600-"
            raise BadFilter(f"bad {what} range {text!r}; use e.g. {example}") from None

    low, sep, high = text.partition("-")
    span = (one(low), one(high)) if sep else (one(low), one(low))
    if span == (None, None):
        raise BadFilter(f"empty {what} range {text!r}")
    return span


def parse_where(items: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """``key=value`` items (``--where`` repeated)."""
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BadFilter(f"bad metadata filter {item!r}; use key=value")
        out.append((key.strip(), value))
    return tuple(out)


def source_prefix(text: str) -> str:
    """A folder or URI prefix as sources are written: a local path becomes a
    ``file://`` URI (resolved), a URI stays as it is."""
    if "://" in text:
        return text
    return Path(text).expanduser().resolve().as_uri()
