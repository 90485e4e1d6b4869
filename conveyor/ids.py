"""Stable identifiers: a replay derives the same ids, so it overwrites instead of duplicating."""

from __future__ import annotations

import hashlib
import uuid

NAMESPACE = uuid.UUID("6f1c2a4e-0b7d-5c3e-9a61-2f8d4b7e9c10")


def document_id(collection: str, source: str) -> str:
    """The id of the document that ``source`` becomes in ``collection``."""
    return str(uuid.uuid5(NAMESPACE, f"doc\n{collection}\n{source}"))


def chunk_id(document_id: str, index: int) -> str:
    """The id of chunk ``index`` of a document."""
    return str(uuid.uuid5(NAMESPACE, f"chunk\n{document_id}\n{index}"))


def content_hash(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
