"""A folder as a blob store."""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ..exceptions import ConveyorError, SourceNotFound
from . import BlobInfo


class LocalBlobStore:
    """Objects are files under ``root``; keys never escape it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        parts = [p for p in key.replace("\\", "/").split("/") if p not in ("", ".")]
        if not parts or any(p == ".." for p in parts):
            raise ConveyorError(f"invalid blob key: {key!r}")
        return self.root.joinpath(*parts)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise SourceNotFound(f"blob not found: {key}") from None

    def open(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb")
        except FileNotFoundError:
            raise SourceNotFound(f"blob not found: {key}") from None

    def put(self, key: str, data: bytes | BinaryIO) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        stream: BinaryIO = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        try:
            with os.fdopen(fd, "wb") as out:
                while block := stream.read(1 << 20):
                    out.write(block)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        # walk only the folder the prefix names, not the whole store
        head = prefix.rpartition("/")[0]
        folder = self._path(head) if head.strip("/.") else self.root
        if not folder.is_dir():
            return
        found = []
        for path in folder.rglob("*"):
            if not path.is_file() or path.name.startswith(".tmp-"):
                continue
            key = path.relative_to(self.root).as_posix()
            if key.startswith(prefix):
                found.append(key)
        for key in sorted(found):
            info = self.stat(key)
            if info is not None:
                yield info

    def stat(self, key: str) -> BlobInfo | None:
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            return None
        return BlobInfo(key=key, size=st.st_size, modified=st.st_mtime)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()
