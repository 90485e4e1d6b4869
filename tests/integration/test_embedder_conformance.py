"""The embedder conformance suite (``tests/conformance/embedder.py``) on every real
embedder: all-MiniLM-L6-v2 on torch, on ONNX Runtime (fp32, int8) and on OpenVINO
(int8, the default), the HTTP client against a real embed server, the
cache over a real catalog and the batcher (both in front of torch). Each model is
loaded once per session; every backend's vectors agree with torch's."""

from __future__ import annotations

import numpy as np
import pytest
from conformance.embedder import *  # noqa: F403 (the suite's tests and fixtures)
from conformance.embedder import LONG, REAL, TEXTS, UNICODE, EmbedderBackend

from conveyor.embedding import INT8, OV_INT8, Embedder, base_model
from conveyor.settings import DEFAULT_MODEL


@pytest.fixture(params=[backend.param() for backend in REAL])
def embedder_backend(request: pytest.FixtureRequest) -> EmbedderBackend:
    return request.param  # type: ignore[no-any-return]


def test_vectors_agree_with_torch(
    embedder: Embedder, embedder_backend: EmbedderBackend, real_embedder: Embedder
) -> None:
    texts = [*TEXTS, LONG, *UNICODE]
    cosine = np.sum(embedder.embed(texts) * real_embedder.embed(texts), axis=1)
    assert embedder_backend.torch_cosine is not None
    assert cosine.min() >= embedder_backend.torch_cosine, cosine.round(4).tolist()


def test_every_backend_is_the_same_model(embedder: Embedder) -> None:
    # int8 is the same model in another vector space: its id says so (never mixed)
    assert (base_model(embedder.model_id), embedder.dim) == (DEFAULT_MODEL, 384)
    assert embedder.model_id.endswith(INT8) == (embedder.backend == "onnx-int8")
    assert embedder.model_id.endswith(OV_INT8) == (embedder.backend == "openvino-int8")
