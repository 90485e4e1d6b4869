"""The BlobStore contract on the local backend and on S3 (the session's moto
server), and reading sources."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from conveyor.blobstore import open_blobstore, read_source
from conveyor.exceptions import ConfigurationError, ConveyorError, PermanentError, SourceNotFound


@pytest.fixture(params=["local", "s3"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        store = open_blobstore(f"s3://{bucket}/some/prefix/")
        yield store
        store.close()
        return
    yield open_blobstore(tmp_path / "blobs")


def test_put_get_list_stat_delete(blobs) -> None:
    blobs.put("a/b/one.json", b"{}")
    blobs.put("a/two.txt", io.BytesIO(b"hello"))
    assert blobs.get("a/two.txt") == b"hello"
    with blobs.open("a/b/one.json") as stream:
        assert stream.read() == b"{}"
    assert [b.key for b in blobs.list("a/")] == ["a/b/one.json", "a/two.txt"]
    assert blobs.stat("a/two.txt").size == 5
    blobs.put("a/two.txt", b"replaced")
    assert blobs.get("a/two.txt") == b"replaced"
    blobs.delete("a/two.txt")
    blobs.delete("a/two.txt")
    assert blobs.stat("a/two.txt") is None
    with pytest.raises(SourceNotFound):
        blobs.get("a/two.txt")


@pytest.mark.parametrize("key", ["../escape", "a/../../x", "", "/"])
def test_keys_cannot_escape(blobs, key: str) -> None:
    with pytest.raises(ConveyorError):
        blobs.put(key, b"x")


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
