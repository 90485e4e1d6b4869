"""The job message, as users integrate with it, and the result manifest."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .exceptions import PermanentError

MANIFEST_KEY = "ingestion_output/{run}/results/{document_id}.json"
RECEIPT_KEYS = ("image_id", "receipt_id", "artifacts_bucket", "lines_key", "words_key")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_name(what: str, value: str) -> str:
    """Run and collection names become storage keys: letters, digits, ``.``, ``_``, ``-``."""
    if not _NAME.fullmatch(value):
        raise PermanentError(
            f"invalid {what} name {value[:80]!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


@dataclass(frozen=True)
class Job:
    """``{"source": uri, "collection": ..., "run": ..., "kind": null|"pdf"|..., "options": {}}``"""

    source: str
    collection: str
    run: str
    kind: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_message(cls, body: Any, *, default_collection: str = "default") -> Job:
        if not isinstance(body, dict):
            raise PermanentError("job message is not a JSON object")
        if all(k in body for k in RECEIPT_KEYS) and "source" not in body:
            return cls._receipt(body, default_collection)
        source = body.get("source")
        if not isinstance(source, str) or not source:
            raise PermanentError("job message has no 'source'")
        options = body.get("options") or {}
        if not isinstance(options, dict):
            raise PermanentError("job message 'options' must be an object")
        return cls(
            source=source,
            collection=check_name("collection", str(body.get("collection") or default_collection)),
            run=check_name("run", str(body.get("run") or "adhoc")),
            kind=body.get("kind"),
            options=options,
        )

    @classmethod
    def _receipt(cls, body: dict[str, Any], default_collection: str) -> Job:
        """The receipt message a producer's OCR step writes, as a job of kind ``receipt``."""
        for key in RECEIPT_KEYS:
            if body.get(key) in (None, ""):
                raise PermanentError(f"receipt message has no '{key}'")
        return cls(
            source=f"receipt://{body['image_id']}/{body['receipt_id']}",
            collection=check_name("collection", str(body.get("collection") or default_collection)),
            run=check_name("run", str(body.get("run") or "adhoc")),
            kind="receipt",
            options={k: body[k] for k in RECEIPT_KEYS},
        )

    def message(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "collection": self.collection,
            "run": self.run,
            "kind": self.kind,
            "options": self.options,
        }


def document_of(body: Any, default_collection: str) -> str | None:
    """The document id a job message is about, or None for a malformed message."""
    from .ids import document_id

    try:
        job = Job.from_message(body, default_collection=default_collection)
    except PermanentError:
        return None
    return document_id(job.collection, job.source)


def manifest(
    *,
    source: str,
    document_id: str,
    collection: str,
    run: str,
    status: str,
    embeddings: int,
    **extra: Any,
) -> dict[str, Any]:
    """The result manifest of one document: ``FileURI`` and ``EmbeddingsGenerated``
    exactly so named (what downstream tools read), more keys beside them."""
    return {
        "FileURI": source,
        "EmbeddingsGenerated": embeddings,
        "document_id": document_id,
        "collection": collection,
        "run": run,
        "status": status,
        **extra,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def manifest_bytes(data: dict[str, Any]) -> bytes:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str).encode("utf-8")
