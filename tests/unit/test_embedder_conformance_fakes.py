"""The embedder conformance suite (``tests/conformance/embedder.py``) on the fakes the
unit tests use: the deterministic bag-of-words embedder alone, behind the cache
(over a SQLite catalog) and behind the batcher. The real model on every backend
runs the same suite in ``tests/integration/test_embedder_conformance.py``."""

from __future__ import annotations

import pytest
from conformance.embedder import *  # noqa: F403 (the suite's tests and fixtures)
from conformance.embedder import FAKES, EmbedderBackend


@pytest.fixture(params=[backend.param() for backend in FAKES])
def embedder_backend(request: pytest.FixtureRequest) -> EmbedderBackend:
    return request.param  # type: ignore[no-any-return]
