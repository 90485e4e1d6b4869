"""The :class:`~conveyor.blobstore.BlobStore` contract, as tests every backend runs.

A test module imports everything here (``from conformance.blobstore import *``)
and defines ``blob_backend``, parametrised over the :class:`BlobBackend` values
it runs the suite on: :data:`LOCAL` in ``tests/unit``, :data:`S3` (the
session's moto server) in ``tests/integration``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from conveyor.blobstore import BlobStore, open_blobstore
from conveyor.exceptions import ConveyorError, SourceNotFound


@dataclass(frozen=True)
class BlobBackend:
    """``open(fixtures)`` opens a store; ``fixtures``: the fixtures it names, by name."""

    name: str
    open: Callable[[dict[str, Any]], BlobStore]
    fixtures: tuple[str, ...] = ()

    def param(self) -> Any:
        return pytest.param(self, id=self.name)


LOCAL = BlobBackend("local", lambda f: open_blobstore(f["tmp_path"] / "blobs"), ("tmp_path",))
S3 = BlobBackend(
    "s3", lambda f: open_blobstore(f"s3://{f['s3_bucket']}/some/prefix/"), ("s3_bucket",)
)


@pytest.fixture
def blobs(request: pytest.FixtureRequest, blob_backend: BlobBackend) -> Iterator[BlobStore]:
    store = blob_backend.open(
        {name: request.getfixturevalue(name) for name in blob_backend.fixtures}
    )
    yield store
    close = getattr(store, "close", None)
    if close is not None:
        close()


def test_put_get_list_stat_delete(blobs: BlobStore) -> None:
    blobs.put("a/b/one.json", b"{}")
    blobs.put("a/two.txt", io.BytesIO(b"hello"))
    assert blobs.get("a/two.txt") == b"hello"
    with blobs.open("a/b/one.json") as stream:
        assert stream.read() == b"{}"
    assert [b.key for b in blobs.list("a/")] == ["a/b/one.json", "a/two.txt"]
    info = blobs.stat("a/two.txt")
    assert info is not None and info.size == 5
    blobs.put("a/two.txt", b"replaced")
    assert blobs.get("a/two.txt") == b"replaced"
    blobs.delete("a/two.txt")
    blobs.delete("a/two.txt")
    assert blobs.stat("a/two.txt") is None
    with pytest.raises(SourceNotFound):
        blobs.get("a/two.txt")


def test_list_is_by_prefix_not_by_folder(blobs: BlobStore) -> None:
    for key in ("gen/a.json", "gen/ab/c.json", "generations/x.json", "g.txt", "other/gen/z"):
        blobs.put(key, b"x")
    assert [b.key for b in blobs.list("gen/")] == ["gen/a.json", "gen/ab/c.json"]
    assert [b.key for b in blobs.list("gen/a")] == ["gen/a.json", "gen/ab/c.json"]
    assert [b.key for b in blobs.list("generations/")] == ["generations/x.json"]
    assert [b.key for b in blobs.list("gen")] == [
        "gen/a.json",
        "gen/ab/c.json",
        "generations/x.json",
    ]
    assert [b.key for b in blobs.list("g")] == [
        "g.txt",
        "gen/a.json",
        "gen/ab/c.json",
        "generations/x.json",
    ]
    assert list(blobs.list("missing/")) == [] and list(blobs.list("missing/deeper/x")) == []
    assert len(list(blobs.list())) == 5


@pytest.mark.parametrize("key", ["../escape", "a/../../x", "", "/"])
def test_keys_cannot_escape(blobs: BlobStore, key: str) -> None:
    with pytest.raises(ConveyorError):
        blobs.put(key, b"x")


TESTS = sorted(name for name in dict(globals()) if name.startswith("test_"))
__all__ = ["blobs", *TESTS]
