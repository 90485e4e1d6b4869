"""Uploads for ``POST /documents``: multipart streamed to disk, never held whole in memory.

The body is parsed as it arrives (python-multipart's push parser). The file part is
written to a temporary file in pieces and hashed as it goes; the size limit is
counted on the bytes actually received, so a client that lies in (or leaves out)
``Content-Length`` still gets 413 as soon as it passes the limit. The type is
sniffed from the first bytes with :func:`conveyor.extract.sniff`, never from the
name, and an unsupported type is refused (415) before anything is stored.

Storage is content-addressed: ``uploads/<sha256>/<safe name>``, plus a small
pointer ``uploads/<sha256>.key`` naming the object, so the same bytes uploaded
again, under any name, are stored once and are the same source (and so, in a
collection, the same document).
"""

from __future__ import annotations

import hashlib
import re
import tempfile
import threading
import unicodedata
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..blobstore import BlobStore
from ..exceptions import ConveyorError, EmptyDocument, SourceNotFound, UnsupportedType
from ..metadata import InvalidMetadata, parse_metadata
from .errors import HttpError

HEAD_BYTES = 64 * 1024
"""How much of the file is kept in memory for sniffing its type."""
FIELD_BYTES = 64 * 1024
"""The largest plain form field (``collection``, ``run``, ``metadata``)."""
FORM_OVERHEAD = 1 << 20
"""Body bytes allowed beyond the file's own: boundaries, part headers, small fields."""
FIELDS = ("collection", "run", "metadata")
MAX_NAME_BYTES = 200
_UNSAFE = re.compile(r'[<>:"|?*]')


class UploadError(HttpError):
    """An upload the client must change: ``status``, a message, an error type."""


def safe_name(raw: str | None) -> str:
    """A file name that cannot leave its folder: the last path component only (``/`` and
    ``\\`` both count), no NUL or control characters, no characters some file systems
    refuse, no leading dots, at most :data:`MAX_NAME_BYTES` bytes of UTF-8; ``upload``
    when nothing is left."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = unicodedata.normalize("NFC", name)
    name = "".join(ch for ch in name if ch.isprintable())
    name = " ".join(_UNSAFE.sub("_", name).split()).strip(" .")
    if not name:
        return "upload"
    stem, dot, suffix = name.rpartition(".")
    if not dot or len(suffix) > 16:
        stem, suffix = name, ""
    suffix = f".{suffix}" if suffix else ""
    while len((stem + suffix).encode()) > MAX_NAME_BYTES and stem:
        stem = stem[:-1]
    return (stem.rstrip(" .") or "upload") + suffix


@dataclass
class Upload:
    """A received file, in a temporary file until stored."""

    file: IO[bytes]
    name: str
    size: int
    sha256: str
    kind: str
    fields: dict[str, str] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any] | None:
        """The ``metadata`` field: a JSON object, or None when not sent; 422 naming the
        problem (not JSON, not finite, not valid Unicode, too deep, too large)."""
        try:
            return parse_metadata(self.fields.get("metadata", ""))
        except InvalidMetadata as exc:
            raise UploadError(422, str(exc), "invalid_request") from None

    def close(self) -> None:
        self.file.close()


class _Form:
    """python-multipart callbacks: the file into a temporary file, fields into memory."""

    def __init__(
        self,
        limit: int,
        tmp_dir: Path | None,
        files: tuple[str, ...] = ("file",),
        known: tuple[str, ...] = FIELDS,
    ) -> None:
        self.limit, self.tmp_dir = limit, tmp_dir
        self.files, self.known = files, known
        self.file: IO[bytes] | None = None
        self.name = ""
        self.size = 0
        self.hasher = hashlib.sha256()
        self.head = bytearray()
        self.fields: dict[str, str] = {}
        self.ended = False
        self._headers: list[tuple[bytes, bytes]] = []
        self._field: bytes = b""
        self._value: bytes = b""
        self._part: str | None = None  # "file", a field name
        self._buffer = bytearray()

    # header callbacks
    def on_header_begin(self) -> None:
        self._field, self._value = b"", b""

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self._headers.append((self._field.lower(), self._value))

    def on_headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        disposition = dict(self._headers).get(b"content-disposition", b"")
        self._headers = []
        _, params = parse_options_header(disposition)
        name = params.get(b"name", b"").decode("utf-8", "replace")
        if name in self.files:
            if self.file is not None:
                raise UploadError(422, "send one file per request", "invalid_request")
            filename = params.get(b"filename")
            self.name = safe_name(filename.decode("utf-8", "replace") if filename else None)
            self.file = tempfile.TemporaryFile(dir=self.tmp_dir)
            self._part = "file"
        elif name in self.known:
            if name in self.fields:
                raise UploadError(422, f"the field {name!r} is given twice", "invalid_request")
            self._part = name
            self._buffer = bytearray()
        else:
            known = ", ".join((*self.files, *self.known))
            raise UploadError(
                422, f"unknown form field {name[:40]!r} (known: {known})", "invalid_request"
            )

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        piece = data[start:end]
        if self._part == "file":
            assert self.file is not None
            self.size += len(piece)
            if self.size > self.limit:
                raise UploadError(
                    413,
                    f"the file is larger than the limit of {self.limit:,} bytes "
                    "(CONVEYOR_MAX_UPLOAD_BYTES)",
                    "request_too_large",
                )
            self.hasher.update(piece)
            if len(self.head) < HEAD_BYTES:
                self.head += piece[: HEAD_BYTES - len(self.head)]
            self.file.write(piece)
        else:
            self._buffer += piece
            if len(self._buffer) > FIELD_BYTES:
                raise UploadError(
                    413,
                    f"the field {self._part!r} is over {FIELD_BYTES:,} bytes",
                    "request_too_large",
                )

    def on_part_end(self) -> None:
        if self._part in self.known:
            try:
                self.fields[self._part] = self._buffer.decode("utf-8")
            except UnicodeDecodeError:
                raise UploadError(
                    422, f"the field {self._part!r} is not UTF-8 text", "invalid_request"
                ) from None
        self._part = None

    def on_end(self) -> None:
        self.ended = True

    def callbacks(self) -> Any:
        names = (
            "on_header_begin",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
            "on_part_data",
            "on_part_end",
            "on_end",
        )
        return {n: getattr(self, n) for n in names}


def scratch_folder(home: Path) -> Path | None:
    """Where uploads wait while they arrive: ``home/tmp`` (the data disk, not a small
    ``/tmp``), or the system's temporary folder when home cannot be written."""
    folder = home / "tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder


def _boundary(content_type: str) -> bytes:
    from python_multipart.multipart import parse_options_header

    mime, params = parse_options_header(content_type)
    if mime != b"multipart/form-data":
        raise UploadError(
            415,
            "send the file as multipart/form-data, e.g. curl -F file=@report.pdf",
            "unsupported_media_type",
        )
    boundary = params.get(b"boundary")
    if not boundary or len(boundary) > 200:
        raise UploadError(422, "malformed multipart body: no boundary", "invalid_request")
    return boundary


async def receive(
    content_type: str,
    content_length: str | None,
    body: AsyncIterator[bytes],
    *,
    limit: int,
    tmp_dir: Path | None = None,
    files: tuple[str, ...] = ("file",),
    fields: tuple[str, ...] = FIELDS,
) -> Upload:
    """Parse a multipart upload as it streams in; the caller closes the :class:`Upload`.
    ``files``: the names the file part may have; ``fields``: the other parts allowed."""
    import anyio
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser

    boundary = _boundary(content_type)
    ceiling = limit + FORM_OVERHEAD
    if content_length is not None and content_length.isdigit() and int(content_length) > ceiling:
        raise UploadError(
            413,
            f"the body is larger than the limit of {limit:,} bytes (CONVEYOR_MAX_UPLOAD_BYTES)",
            "request_too_large",
        )
    form = _Form(limit, tmp_dir, files, fields)
    parser = MultipartParser(boundary, form.callbacks())
    received = 0
    try:
        async for chunk in body:
            received += len(chunk)
            if received > ceiling:
                raise UploadError(
                    413,
                    f"the body is larger than the limit of {limit:,} bytes "
                    "(CONVEYOR_MAX_UPLOAD_BYTES)",
                    "request_too_large",
                )
            if chunk:
                await anyio.to_thread.run_sync(parser.write, chunk)
        parser.finalize()
        if not form.ended:
            raise UploadError(
                422,
                "malformed multipart body: it ends before its closing boundary",
                "invalid_request",
            )
        if form.file is None:
            named = " or ".join(repr(f) for f in files)
            raise UploadError(422, f"no {named} part in the form", "invalid_request")
        kind = _sniff(bytes(form.head), form.size, form.name)
    except MultipartParseError as exc:
        if form.file is not None:
            form.file.close()
        raise UploadError(422, f"malformed multipart body: {exc}", "invalid_request") from None
    except BaseException:
        if form.file is not None:
            form.file.close()
        raise
    return Upload(form.file, form.name, form.size, form.hasher.hexdigest(), kind, form.fields)


def _sniff(head: bytes, size: int, name: str) -> str:
    from .. import extract

    try:
        kind = extract.sniff(head, name)
    except EmptyDocument as exc:
        if size <= len(head):
            raise UploadError(422, f"nothing to index: {exc}", "empty_document") from None
        kind = "text"  # a long run of whitespace first; the worker looks at all of it
    except UnsupportedType as exc:
        raise UploadError(415, f"unsupported file type: {exc}", "unsupported_media_type") from None
    if kind not in extract.EXTRACTORS:
        raise UploadError(
            415, f"unsupported file type: no extractor for {kind}", "unsupported_media_type"
        )
    return kind


_storing: dict[str, tuple[threading.Lock, list[int]]] = {}  # sha256 → (lock, [users])
_storing_guard = threading.Lock()


@contextmanager
def one_at_a_time(sha256: str) -> Iterator[None]:
    """Uploads of the same bytes (under any names) take turns through storing and
    enqueueing, so the second finds the first's pointer and document: one document,
    not two. (Across API replicas the pointer is written last and read first.)"""
    with _storing_guard:
        lock, users = _storing.setdefault(sha256, (threading.Lock(), [0]))
        users[0] += 1
    try:
        with lock:
            yield
    finally:
        with _storing_guard:
            users[0] -= 1
            if users[0] == 0:
                del _storing[sha256]


def store(blobs: BlobStore, upload: Upload) -> tuple[str, bool]:
    """Put the upload into the blob store unless the same bytes are there already.
    Returns ``(key, already_stored)``."""
    pointer = f"uploads/{upload.sha256}.key"
    try:
        known = blobs.get(pointer).decode("utf-8").strip()
        info = blobs.stat(known)
        if info is not None and info.size == upload.size:
            return known, True
    except (SourceNotFound, UnicodeDecodeError, ConveyorError):
        pass
    key = f"uploads/{upload.sha256}/{upload.name}"
    upload.file.seek(0)
    blobs.put(key, upload.file)  # type: ignore[arg-type]
    blobs.put(pointer, key.encode("utf-8"))
    return key, False
