"""The BlobStore conformance suite (``tests/conformance/blobstore.py``) on the local
backend, and reading sources. S3 runs the same suite in
``tests/integration/test_s3.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
from conformance.blobstore import *  # noqa: F403 (the suite's tests and fixtures)
from conformance.blobstore import LOCAL, BlobBackend

from conveyor.blobstore import open_blobstore, read_source
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
