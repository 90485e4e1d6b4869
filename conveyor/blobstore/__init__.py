"""Blob storage: sources to read, and the artifacts conveyor writes (result manifests).

Keys are ``/``-separated relative paths. Backends: ``local`` (a folder, default)
and ``s3`` (:mod:`conveyor.blobstore.s3`, ``s3://bucket/prefix/``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import unquote, urlparse

from ..exceptions import ConfigurationError, PermanentError, SourceNotFound, safe_summary


@dataclass(frozen=True)
class BlobInfo:
    key: str
    size: int
    modified: float  # unix time


class BlobStore(Protocol):
    """Bytes by key. Writes are atomic: a reader sees the old object or the new one."""

    def get(self, key: str) -> bytes:
        """The whole object; :class:`SourceNotFound` if it does not exist."""
        ...

    def open(self, key: str) -> BinaryIO:
        """A readable binary stream; :class:`SourceNotFound` if it does not exist."""
        ...

    def put(self, key: str, data: bytes | BinaryIO) -> None:
        """Create or replace ``key``."""
        ...

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Objects whose key starts with ``prefix``, in key order."""
        ...

    def stat(self, key: str) -> BlobInfo | None:
        """Size and modification time, or None when missing."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; no error when it is already gone."""
        ...

    def uri(self, key: str) -> str:
        """A URI naming ``key`` (``file:///…``, ``s3://…``)."""
        ...


def open_blobstore(url: str | Path) -> BlobStore:
    """A blob store from a URL: ``file:///path``, a plain folder path, or
    ``s3://bucket/prefix/``."""
    from .local import LocalBlobStore

    text = str(url)
    if text.startswith("s3://"):
        from .s3 import S3BlobStore

        return S3BlobStore(text)
    parsed = urlparse(text)
    if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and text[1:3] == ":\\"):
        path = unquote(parsed.path) if parsed.scheme == "file" else text
        return LocalBlobStore(Path(path))
    raise ConfigurationError(
        f"unsupported blob store URL {safe_summary(text)!r}: use file:///path "
        "or s3://bucket/prefix/"
    )


def source_path(source: str) -> Path | None:
    """The local path a ``file://`` URI or plain path names, else None."""
    parsed = urlparse(source)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "":
        return Path(source)
    return None


def read_source(source: str, *, max_bytes: int | None = None) -> bytes:
    """The bytes of a job's source URI.

    Missing sources raise :class:`SourceNotFound`; unreadable or oversized ones a
    :class:`PermanentError` — in both cases the reason names the source.
    ``s3://bucket/key`` is read from S3 (:func:`conveyor.blobstore.s3.read_s3_source`).
    """
    if source.startswith("s3://"):
        from .s3 import read_s3_source

        return read_s3_source(source, max_bytes=max_bytes)
    path = source_path(source)
    if path is None:
        raise PermanentError(f"unsupported source URI scheme: {safe_summary(source)}")
    with _reading(path):
        _check_size(path, max_bytes)
        return path.read_bytes()


def hash_local_source(path: Path, *, max_bytes: int | None = None) -> tuple[str, int]:
    """``("sha256:…", size)`` of a local file, read as a stream (a worker never holds a
    large file: the extraction child reads it again, under its limits). Errors as
    :func:`read_source`'s."""
    import hashlib

    with _reading(path):
        _check_size(path, max_bytes)
        digest, size = hashlib.sha256(), 0
        with path.open("rb") as stream:
            while block := stream.read(1 << 20):
                digest.update(block)
                size += len(block)
        return "sha256:" + digest.hexdigest(), size


def _check_size(path: Path, max_bytes: int | None) -> None:
    size = path.stat().st_size
    if path.is_dir():
        raise PermanentError(f"{path} is a directory, not a file")
    if max_bytes is not None and size > max_bytes:
        raise PermanentError(
            f"file is {size:,} bytes, over the limit of {max_bytes:,} "
            "(raise CONVEYOR_MAX_FILE_BYTES to accept it)"
        )


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """A local source's OS errors as conveyor errors that name it."""
    try:
        yield
    except FileNotFoundError:
        raise SourceNotFound(
            f"file not found (moved or deleted before it was read): {path}"
        ) from None
    except PermissionError:
        raise PermanentError(f"permission denied reading {path}") from None
    except IsADirectoryError:
        raise PermanentError(f"{path} is a directory, not a file") from None
