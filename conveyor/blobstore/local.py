"""A folder as a blob store."""

from __future__ import annotations

import io
import itertools
import os
import threading
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
        stream: BinaryIO = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
        fd, tmp = _create_temporary(path)
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


_TEMPORARIES = itertools.count()


def _create_temporary(path: Path) -> tuple[int, str]:
    """A new file beside ``path`` (its folders made if missing), open for writing, to be
    renamed over it: named by this process, thread and a counter, so no two writers
    share one (``tempfile.mkstemp``'s random names cost more than a manifest's write)."""
    while True:
        tmp = f"{path.parent}/.tmp-{os.getpid()}-{threading.get_ident()}-{next(_TEMPORARIES)}"
        tmp += path.suffix
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), tmp
        except FileNotFoundError:  # the first blob under this prefix
            path.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # left by a process of the same id that died: the next
            continue
