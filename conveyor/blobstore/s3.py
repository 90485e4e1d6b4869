"""Amazon S3 as a blob store, and S3 objects as job sources.

``s3://bucket/prefix/`` is a :class:`~conveyor.blobstore.BlobStore` whose keys
live under ``prefix``; ``s3://bucket/key`` names a job's source
(:func:`read_s3_source`) and ``s3://bucket/prefix/`` a bulk ingest
(:func:`list_sources`).

Where S3 is, and who we are, comes from boto3's usual chain — the environment
(``AWS_REGION``, ``AWS_ENDPOINT_URL`` for a local S3-compatible server), the
shared config files, or the role of the task or Lambda function — so there is
nothing to configure here and nothing secret in a URL.

S3 errors are translated for the worker: a missing object is
:class:`~conveyor.exceptions.SourceNotFound`, access denied a
:class:`~conveyor.exceptions.PermanentError` naming the permission that is
missing, throttling, 5xx answers and network failures a
:class:`~conveyor.exceptions.TransientError` (retried with backoff, after
botocore's own retries).

Object keys are taken literally: ``s3://bucket/a b#1?.pdf`` is the key
``a b#1?.pdf`` (S3 keys may hold ``#``, ``?`` and ``%``); nothing is URL-decoded.
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import threading
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, BinaryIO, cast

from ..exceptions import (
    ConfigurationError,
    ConveyorError,
    PermanentError,
    SourceNotFound,
    TransientError,
    safe_summary,
)
from . import BlobInfo

log = logging.getLogger(__name__)

SMALL_PUT_BYTES = 8 * 1024 * 1024
"""Bytes up to this size go up in one PutObject; larger data and streams go through
the transfer manager (multipart, a part at a time, never the whole object in memory)."""

BotoClient = Any
"""A boto3 client (boto3 ships no type information)."""

_NOT_FOUND = {"NoSuchKey", "NotFound", "404", "NoSuchBucket"}
_DENIED = {"AccessDenied", "Forbidden", "403", "AllAccessDisabled", "AccountProblem"}
_BUSY = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeoutException",
    "ServiceUnavailable",
    "InternalError",
    "OperationAborted",
}


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` → ``("bucket", "some/key")``; the key may be empty."""
    if not uri.startswith("s3://"):
        raise ConfigurationError(f"not an s3:// URI: {safe_summary(uri)!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ConfigurationError(f"no bucket in {safe_summary(uri)!r}: use s3://bucket/key")
    return bucket, key


def _boto3() -> ModuleType:
    try:
        return importlib.import_module("boto3")
    except ImportError:  # pragma: no cover - depends on the install
        raise ConfigurationError("s3:// needs boto3: pip install 'conveyor[aws]'") from None


def new_client(service: str = "s3") -> BotoClient:
    """A boto3 client configured from the environment, with standard retries.

    Clients are thread-safe once made; making them is not, hence a fresh session."""
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=10,
        read_timeout=60,
        max_pool_connections=32,
    )
    return _boto3().session.Session().client(service, config=config)


_shared: dict[tuple[str | None, ...], BotoClient] = {}
_shared_lock = threading.Lock()


def shared_client() -> BotoClient:
    """One S3 client per process (and per AWS environment) for reading sources."""
    env = tuple(
        os.environ.get(name)
        for name in (
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_PROFILE",
        )
    )
    with _shared_lock:
        if env not in _shared:
            _shared[env] = new_client("s3")
        return _shared[env]


def translate(exc: Exception, *, doing: str, uri: str, permission: str) -> Exception:
    """An S3 failure as the error conveyor acts on; ``exc`` itself when unknown.

    ``doing`` says what failed ("reading", "writing"); ``permission`` is the IAM
    action it needs (``s3:GetObject``)."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        HTTPClientError,
        NoCredentialsError,
    )
    from botocore.exceptions import (
        ConnectionError as BotoConnectionError,
    )

    where = safe_summary(uri)
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code == "NoSuchBucket":
            return SourceNotFound(f"bucket does not exist: {where}")
        if code == "NoSuchKey":
            return SourceNotFound(f"object not found (deleted or never written?): {where}")
        if code in _NOT_FOUND or status == 404:  # HEAD answers carry no code
            return SourceNotFound(f"not found (no such object, or no such bucket): {where}")
        if code in _DENIED or status == 403:
            return PermanentError(
                f"access denied {doing} {where}: the role needs {permission} on it "
                "(without s3:ListBucket, S3 also says 'access denied' for a missing object)"
            )
        if code in _BUSY or status >= 500 or status == 429:
            return TransientError(f"S3 is busy or failing ({code or status}) {doing} {where}")
    elif isinstance(exc, NoCredentialsError):
        return ConfigurationError(
            f"no AWS credentials found {doing} {where}: set AWS_ACCESS_KEY_ID / a profile / a role"
        )
    elif isinstance(exc, BotoConnectionError | HTTPClientError | BotoCoreError):
        return TransientError(f"cannot reach S3 {doing} {where}: {safe_summary(exc)}")
    return exc  # an error of another kind, or a ClientError of a code not above


class S3BlobStore:
    """Objects under ``s3://bucket/prefix/``; keys are relative to the prefix.

    Writes are atomic (S3 shows the old object or the new one, never half), and
    large ones multipart: ``put`` of a stream never holds it whole in memory.
    """

    def __init__(self, url: str, *, client: BotoClient = None, check: bool = True) -> None:
        self.bucket, prefix = parse_s3_uri(url)
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client = client if client is not None else new_client("s3")
        if check:
            self._check()

    def __repr__(self) -> str:
        return f"S3BlobStore('s3://{self.bucket}/{self.prefix}')"

    def _check(self) -> None:
        """Fail at start-up when the bucket is missing or S3 cannot be reached."""
        from botocore.exceptions import ClientError

        where = f"s3://{self.bucket}/{self.prefix}"
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 403:  # it exists; a least-privilege role may lack s3:ListBucket
                log.info("cannot check bucket %s (no s3:ListBucket); going on", self.bucket)
                return
            if status == 404:
                raise ConfigurationError(
                    f"blob store bucket does not exist: {where} (create it, or fix "
                    "CONVEYOR_BLOBS_URL)"
                ) from None
            raise ConfigurationError(
                f"cannot open the blob store {where}: {safe_summary(exc)}"
            ) from None
        except Exception as exc:
            error = translate(exc, doing="opening", uri=where, permission="s3:ListBucket")
            raise ConfigurationError(
                f"cannot open the blob store {where}: {safe_summary(error)}"
            ) from None

    def _key(self, key: str) -> str:
        parts = [p for p in key.replace("\\", "/").split("/") if p not in ("", ".")]
        if not parts or any(p == ".." for p in parts):
            raise ConveyorError(f"invalid blob key: {key!r}")
        return self.prefix + "/".join(parts)

    def _fail(self, exc: Exception, doing: str, key: str, permission: str) -> Exception:
        return translate(exc, doing=doing, uri=f"s3://{self.bucket}/{key}", permission=permission)

    def get(self, key: str) -> bytes:
        with self.open(key) as stream:
            return stream.read()

    def open(self, key: str) -> BinaryIO:
        full = self._key(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=full)
        except Exception as exc:
            raise self._fail(exc, "reading", full, "s3:GetObject") from exc
        return cast(BinaryIO, response["Body"])

    def put(self, key: str, data: bytes | BinaryIO) -> None:
        full = self._key(key)
        try:
            if isinstance(data, bytes | bytearray) and len(data) <= SMALL_PUT_BYTES:
                self.client.put_object(Bucket=self.bucket, Key=full, Body=bytes(data))
                return
            stream = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
            self.client.upload_fileobj(stream, self.bucket, full)
        except Exception as exc:
            raise self._fail(exc, "writing", full, "s3:PutObject") from exc

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Objects under ``prefix`` in key order (S3 lists in UTF-8 byte order, which
        is code point order); "folder" placeholders (keys ending in ``/``) are left out."""
        full = self.prefix + prefix.lstrip("/")
        try:
            for info in list_objects(self.client, self.bucket, full):
                yield BlobInfo(
                    key=info.key[len(self.prefix) :], size=info.size, modified=info.modified
                )
        except ConveyorError:
            raise
        except Exception as exc:
            raise self._fail(exc, "listing", full, "s3:ListBucket") from exc

    def stat(self, key: str) -> BlobInfo | None:
        full = self._key(key)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=full)
        except Exception as exc:
            error = self._fail(exc, "reading", full, "s3:GetObject")
            if isinstance(error, SourceNotFound):
                return None
            raise error from exc
        return BlobInfo(
            key=key, size=int(head["ContentLength"]), modified=head["LastModified"].timestamp()
        )

    def delete(self, key: str) -> None:
        full = self._key(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=full)
        except Exception as exc:
            error = self._fail(exc, "deleting", full, "s3:DeleteObject")
            if not isinstance(error, SourceNotFound):
                raise error from exc

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def close(self) -> None:
        self.client.close()


def list_objects(
    client: BotoClient, bucket: str, prefix: str, *, page_size: int = 1000
) -> Iterator[BlobInfo]:
    """Every object under ``prefix`` (full keys), a page of up to ``page_size`` at a time."""
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size}
    )
    for page in pages:
        for obj in page.get("Contents", []):
            if obj["Key"].endswith("/"):  # a console "folder"
                continue
            yield BlobInfo(
                key=obj["Key"], size=int(obj["Size"]), modified=obj["LastModified"].timestamp()
            )


def read_s3_source(uri: str, *, max_bytes: int | None = None) -> bytes:
    """The bytes of ``s3://bucket/key``, its size checked against ``max_bytes`` first."""
    bucket, key = parse_s3_uri(uri)
    if not key or key.endswith("/"):
        raise PermanentError(f"{safe_summary(uri)} names a bucket or folder, not an object")
    client = shared_client()
    try:
        size = int(client.head_object(Bucket=bucket, Key=key)["ContentLength"])
        if max_bytes is not None and size > max_bytes:
            raise PermanentError(
                f"object is {size:,} bytes, over the limit of {max_bytes:,} "
                "(raise CONVEYOR_MAX_FILE_BYTES to accept it)"
            )
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        with body:
            # read one byte past the limit: the object may have grown since the HEAD
            data = cast(bytes, body.read() if max_bytes is None else body.read(max_bytes + 1))
    except ConveyorError:
        raise
    except Exception as exc:
        raise translate(exc, doing="reading", uri=uri, permission="s3:GetObject") from exc
    if max_bytes is not None and len(data) > max_bytes:
        raise PermanentError(f"object grew past the limit of {max_bytes:,} bytes while it was read")
    return data


def list_sources(
    url: str,
    *,
    progress: Callable[[int], None] | None = None,
    client: BotoClient = None,
    page_size: int = 1000,
) -> list[str]:
    """The ``s3://`` URIs an ingest of ``url`` means, in key order.

    ``s3://bucket/key`` naming an object is that object; otherwise everything
    under it as a folder (``s3://bucket/reports`` lists ``reports/…``; a bucket
    alone lists the bucket). Hidden entries (a path part starting with ``.``
    below the folder) and folder placeholders are left out, as for local folders.
    Nothing found is an error, so a typo is not silent. ``progress`` is called
    with the running count after every full page (``page_size`` objects).
    """
    bucket, key = parse_s3_uri(url)
    client = client if client is not None else shared_client()
    try:
        if key and not key.endswith("/"):
            try:
                client.head_object(Bucket=bucket, Key=key)
                return [f"s3://{bucket}/{key}"]
            except Exception as exc:
                if not isinstance(
                    translate(exc, doing="reading", uri=url, permission="s3:GetObject"),
                    SourceNotFound,
                ):
                    raise
            key += "/"
        found = []
        objects = list_objects(client, bucket, key, page_size=page_size)
        for n, info in enumerate(objects, start=1):
            rest = info.key[len(key) :]
            if not any(part.startswith(".") for part in rest.split("/")):
                found.append(f"s3://{bucket}/{info.key}")
            if progress is not None and n % page_size == 0:
                progress(n)
    except ConveyorError:
        raise
    except Exception as exc:
        error = translate(exc, doing="listing", uri=url, permission="s3:ListBucket")
        if isinstance(error, ConveyorError):
            raise ConveyorError(f"cannot list {safe_summary(url)}: {error}") from exc
        raise
    if not found:
        raise ConveyorError(f"no objects under {safe_summary(url)}")
    return found
