"""Reading a job's bytes: its source URI, or what a kind of job names instead.

Most jobs name one file (``file://``, ``s3://``, an upload in the blob
store) and :func:`~conveyor.blobstore.read_source` reads it. A kind whose
job names its input otherwise registers a reader with :func:`reader`: the
receipt message names two NDJSON artifacts in a bucket, read here and handed
to its extractor as one byte string.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote, unquote

from .blobstore import BlobStore, hash_local_source, read_source, source_path
from .exceptions import PermanentError, SourceNotFound, safe_summary
from .extract import Input
from .extract.receipt import receipt_bytes
from .ids import content_hash
from .jobs import Job

Reader = Callable[[Job, BlobStore, int], bytes]
"""``(job, blob store, byte limit)`` → the bytes to extract."""

READERS: dict[str, Reader] = {}


def reader(kind: str) -> Callable[[Reader], Reader]:
    """Decorator: read jobs of ``kind`` with the decorated function."""

    def decorate(function: Reader) -> Reader:
        READERS[kind] = function
        return function

    return decorate


def read_job(job: Job, blobs: BlobStore, max_bytes: int) -> bytes:
    """The bytes ``job`` stands for, at most ``max_bytes`` of them."""
    read = READERS.get(job.kind or "")
    if read is not None:
        return read(job, blobs, max_bytes)
    return read_source(job.source, max_bytes=max_bytes)


UPLOAD = "upload://"
"""The scheme of an upload's source: ``upload://<sha256>/<name>``, the blob
``uploads/<sha256>/<name>`` of whichever blob store holds it (no server path shown)."""


def upload_source(key: str) -> str:
    """The source of the upload stored at blob ``key`` (``uploads/<sha256>/<name>``)."""
    _, sha256, name = key.split("/", 2)
    return f"{UPLOAD}{sha256}/{quote(name, safe='')}"


def upload_key(source: str) -> str:
    """The blob key of an ``upload://`` source."""
    sha256, _, name = source[len(UPLOAD) :].partition("/")
    name = unquote(name)
    if not sha256.isalnum() or not name or "/" in name or name in (".", ".."):
        raise PermanentError(f"invalid upload source {safe_summary(source)!r}")
    return f"uploads/{sha256}/{name}"


def fetch_job(job: Job, blobs: BlobStore, max_bytes: int) -> tuple[Input, str, int]:
    """What to extract for ``job``, its content hash and its size in bytes. A local
    file is hashed as a stream and handed on as its path (the extraction child reads
    it, within its memory limit); anything else is read into memory, at most
    ``max_bytes``."""
    source = job.source
    if source.startswith(UPLOAD):
        key = upload_key(source)
        source = blobs.uri(key)
        if not source.startswith("file://"):
            info = blobs.stat(key)
            if info is None:
                raise SourceNotFound(f"the upload is gone from the blob store: {key}")
            if info.size > max_bytes:
                raise PermanentError(f"upload is {info.size:,} bytes, over {max_bytes:,}")
            data = blobs.get(key)
            return data, content_hash(data), len(data)
    if job.kind not in READERS and not source.startswith("s3://"):
        path = source_path(source)
        if path is not None:
            digest, size = hash_local_source(path, max_bytes=max_bytes)
            return path, digest, size
    data = read_job(job, blobs, max_bytes)
    return data, content_hash(data), len(data)


@reader("receipt")
def read_receipt(job: Job, blobs: BlobStore, limit: int) -> bytes:
    """The lines and words NDJSON a receipt message names. The bucket is a folder
    (path or file:// URI), an ``s3://bucket`` URI, or a bare name: an S3 bucket
    when the blob store is on S3, else a top-level folder of the blob store."""
    from .blobstore.s3 import S3BlobStore

    bucket = str(job.options["artifacts_bucket"])
    if "://" not in bucket and isinstance(blobs, S3BlobStore):
        bucket = f"s3://{bucket}"
    out = []
    for key in ("lines_key", "words_key"):
        name = str(job.options[key])
        parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
        if not parts or ".." in parts:
            raise PermanentError(f"receipt {key} {name[:100]!r} must stay inside the bucket")
        if bucket.startswith(("file://", "/")):
            root = source_path(bucket)
            assert root is not None
            out.append(read_source(root.joinpath(*parts).as_uri(), max_bytes=limit))
        elif bucket.startswith("s3://"):
            where = bucket[len("s3://") :].strip("/")
            if not where or ".." in where.split("/"):
                raise PermanentError(f"invalid artifacts bucket {bucket[:100]!r}")
            out.append(read_source(f"s3://{where}/{'/'.join(parts)}", max_bytes=limit))
        elif "://" in bucket:
            raise PermanentError(
                f"artifacts bucket {safe_summary(bucket)!r} is not reachable: use "
                "s3://bucket, a folder path or a file:// URI"
            )
        else:
            if not bucket.strip("/") or ".." in bucket.split("/"):
                raise PermanentError(f"invalid artifacts bucket {bucket[:100]!r}")
            blob_key = "/".join([bucket.strip("/"), *parts])
            info = blobs.stat(blob_key)
            if info is not None and info.size > limit:
                raise PermanentError(f"{key} is {info.size:,} bytes, over the limit of {limit:,}")
            out.append(blobs.get(blob_key))
    return receipt_bytes(out[0], out[1])
