"""The BlobStore conformance suite (``tests/conformance/blobstore.py``) on the local
backend, and reading sources. S3 runs the same suite in
``tests/integration/test_s3.py``."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from conformance.blobstore import *  # noqa: F403 (the suite's tests and fixtures)
from conformance.blobstore import LOCAL, BlobBackend

from conveyor.blobstore import open_blobstore, read_source
from conveyor.blobstore.local import LocalBlobStore
from conveyor.exceptions import ConfigurationError, PermanentError, SourceNotFound


@pytest.fixture(params=[LOCAL.param()])
def blob_backend(request: pytest.FixtureRequest) -> BlobBackend:
    return request.param  # type: ignore[no-any-return]


def test_read_source(tmp_path: Path) -> None:
    f = tmp_path / "f.txt"
    f.write_bytes(b"data")
    assert read_source(f.as_uri()) == b"data"
    with pytest.raises(SourceNotFound, match="not found"):
        read_source((tmp_path / "missing").as_uri())
    with pytest.raises(PermanentError, match="over the limit"):
        read_source(f.as_uri(), max_bytes=2)
    with pytest.raises(PermanentError, match="directory"):
        read_source(tmp_path.as_uri())


def test_unknown_scheme_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="unsupported blob store"):
        open_blobstore("ftp://user:pw@host/x")


def test_a_local_put_replaces_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    blobs.put("a/b/c.json", b"first")  # its folders made on the way
    shutil.rmtree(tmp_path / "blobs" / "a")  # and again after they were removed
    blobs.put("a/b/c.json", b"second")
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for _ in range(50):
                blobs.put("a/b/c.json", bytes([n]) * 10_000)
        except BaseException as exc:  # pragma: no cover - the failure's detail
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    body = blobs.get("a/b/c.json")
    assert len(body) == 10_000 and len(set(body)) == 1  # one writer's whole content
    assert [p.name for p in (tmp_path / "blobs" / "a" / "b").iterdir()] == ["c.json"]
