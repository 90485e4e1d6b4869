"""The :class:`~conveyor.embedding.Embedder` contract, as tests every embedder runs.

``embed(texts)`` gives float32 rows of shape ``(len(texts), dim)``, L2-normalised,
in the order of ``texts``; no texts give ``(0, dim)``; ``model_id`` and
``backend`` are non-empty strings; ``close()`` releases what the embedder
started. A model in this process is also a :class:`~conveyor.embedding.LocalModel`
(a tokenizer, ``load``); wrappers and the HTTP client are not.

A test module imports everything here (``from conformance.embedder import *``)
and defines ``embedder_backend``, parametrised over :class:`EmbedderBackend`
values: the fakes (:data:`FAKES`) in ``tests/unit``; the real model on torch, ONNX
Runtime and OpenVINO, the HTTP client against a real embed server, the cache over a real
catalog and the batcher (:data:`REAL`) in ``tests/integration``. Each backend's
instance comes from a fixture, loaded once per session or module.

A text's vector may depend on the batch it was embedded in only as much as
``same_text`` allows: int8 quantises activations per batch, so its vectors move a
little with their companions; the others are exact up to float rounding.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conveyor.embedding import Embedder, is_local_model
from conveyor.testing import prose

TEXTS = [
    "The cat sat on the mat.",
    "Quarterly revenue grew by twelve percent.",
    "Basaltic lava flows slowly downhill from the erupting volcano.",
    "short",
    " ".join(prose(7, 60).split()[:60]),
]
"""Sentences of different lengths and subjects."""

LONG = prose(11, 2000)
"""About 2000 words: several times the model's window (256 tokens)."""

UNICODE = [
    "Crème brûlée, naïve façade, Straße",
    "日本語の文章を埋め込みます",
    "Ελληνικά και русский текст",
    "עברית וערבית: مرحبا بالعالم",
    "emoji 🚀🔥 and a snowman ☃",
    "zero\u200bwidth and combining e\u0301",
]
"""Accents, CJK, Greek and Cyrillic, right-to-left scripts, emoji, invisible characters."""


@dataclass(frozen=True)
class EmbedderBackend:
    """``fixture``: the fixture that gives the shared instance; ``fresh(shared)``: a new
    embedder of the same kind (sharing what is costly), for closing; ``same_text``:
    least cosine between one text's vectors from different batches; ``local_model``:
    whether it is a model in this process (a :class:`LocalModel`); ``torch_cosine``:
    least cosine to the torch model's vectors (None: a fake, not compared)."""

    name: str
    fixture: str
    fresh: Callable[[Any], Embedder]
    local_model: bool
    same_text: float = 0.99999
    torch_cosine: float | None = None

    def param(self) -> Any:
        return pytest.param(self, id=self.name)


# -- the backends ------------------------------------------------------------


def _fresh_local(shared: Any) -> Embedder:
    from conveyor.embedding.local import LocalEmbedder

    return LocalEmbedder(shared.model_id)


def _fresh_onnx(shared: Any) -> Embedder:
    from conveyor.embedding import INT8
    from conveyor.embedding.onnx import OnnxEmbedder

    return OnnxEmbedder(shared.model_id.removesuffix(INT8), shared.folder, int8=shared.int8)


def _fresh_openvino(shared: Any) -> Embedder:
    from conveyor.embedding import base_model
    from conveyor.embedding.openvino import OpenVinoEmbedder

    return OpenVinoEmbedder(base_model(shared.model_id), shared.folder)


def _fresh_http(shared: Any) -> Embedder:
    from conveyor.embedding.http import HttpEmbedder

    return HttpEmbedder(shared.url, fallback=_no_fallback)


def _fresh_cached(shared: Any) -> Embedder:
    from conveyor.embedding.cache import CachedEmbedder

    return CachedEmbedder(shared.inner, shared.store)


def _fresh_batching(shared: Any) -> Embedder:
    from conveyor.embedding.batching import BatchingEmbedder

    return BatchingEmbedder(shared.inner)


def _fresh_fake(shared: Any) -> Embedder:
    from conveyor.testing import FakeEmbedder

    return FakeEmbedder(shared.dim, shared.model_id)


def _fresh_openai(shared: Any) -> Embedder:
    from conveyor.embedding.openai import OpenAIEmbedder

    return OpenAIEmbedder(shared.model, base_url=shared.base_url, api_key="unused")


def _fresh_bedrock(shared: Any) -> Embedder:
    from conveyor.embedding.aws import BedrockEmbedder

    return BedrockEmbedder(
        shared.model,
        region="us-east-1",
        endpoint_url=shared.endpoint_url,
        dimensions=shared.dimensions,
    )


def _fresh_sagemaker(shared: Any) -> Embedder:
    from conveyor.embedding.aws import SageMakerEmbedder

    return SageMakerEmbedder(
        shared.endpoint, region="us-east-1", endpoint_url=shared.endpoint_url, model=shared.model_id
    )


def _no_fallback() -> Embedder:
    raise AssertionError("the embed server did not answer: the client fell back to a local model")


FAKE = EmbedderBackend("fake", "fake_embedder", _fresh_fake, local_model=True)
FAKE_CACHED = EmbedderBackend("fake-cached", "fake_cached", _fresh_cached, local_model=False)
FAKE_BATCHING = EmbedderBackend("fake-batching", "fake_batching", _fresh_batching, False)
FAKES = [FAKE, FAKE_CACHED, FAKE_BATCHING]

TORCH = EmbedderBackend("torch", "real_embedder", _fresh_local, True, torch_cosine=0.9999)
ONNX_FP32 = EmbedderBackend("onnx-fp32", "onnx_fp32", _fresh_onnx, True, torch_cosine=0.98)
ONNX_INT8 = EmbedderBackend(
    "onnx-int8", "onnx_int8", _fresh_onnx, True, same_text=0.97, torch_cosine=0.97
)
"""Activations are quantised per call, so a text's vector moves with its batch: a
one-word text alone against in a batch of sentences, cosine 0.98."""
OPENVINO_INT8 = EmbedderBackend(
    "openvino-int8", "openvino_int8", _fresh_openvino, True, same_text=0.999, torch_cosine=0.97
)
"""Activations are quantised with scales fixed at calibration: a text's vector moves with
its batch only by float rounding."""
HTTP = EmbedderBackend("http", "http_embedder", _fresh_http, False, torch_cosine=0.98)
CACHED = EmbedderBackend("cached", "cached_embedder", _fresh_cached, False, torch_cosine=0.98)
BATCHING = EmbedderBackend("batching", "batching_embedder", _fresh_batching, False, 0.9999, 0.98)
REAL = [TORCH, ONNX_FP32, ONNX_INT8, OPENVINO_INT8, HTTP, CACHED, BATCHING]

OPENAI = EmbedderBackend("openai", "openai_embedder", _fresh_openai, False, torch_cosine=0.98)
"""The OpenAI provider against a real embed server's /v1/embeddings."""
TITAN = EmbedderBackend("bedrock-titan", "titan_embedder", _fresh_bedrock, False, 0.9999, 0.98)
COHERE = EmbedderBackend("bedrock-cohere", "cohere_embedder", _fresh_bedrock, False, 0.9999, 0.98)
SAGEMAKER = EmbedderBackend(
    "sagemaker", "sagemaker_embedder", _fresh_sagemaker, False, 0.9999, 0.98
)
PROVIDERS = [OPENAI, TITAN, COHERE, SAGEMAKER]
"""Remote providers through their real clients (httpx, boto3): Bedrock and SageMaker
against a local server speaking their bodies (tests/servers/providers.py), the
session's torch model behind it."""


# -- fixtures: the instances -------------------------------------------------------


@pytest.fixture
def embedder(request: pytest.FixtureRequest, embedder_backend: EmbedderBackend) -> Embedder:
    return request.getfixturevalue(embedder_backend.fixture)  # type: ignore[no-any-return]


def _catalog(folder: Path) -> Any:
    from conveyor.catalog import open_catalog

    return open_catalog(f"sqlite://{folder / 'catalog.db'}")


@pytest.fixture
def fake_embedder() -> Embedder:
    from conveyor.testing import FakeEmbedder

    return FakeEmbedder()


@pytest.fixture
def fake_cached(fake_embedder: Embedder, tmp_path: Path) -> Iterator[Embedder]:
    from conveyor.embedding.cache import CachedEmbedder

    catalog = _catalog(tmp_path)
    yield CachedEmbedder(fake_embedder, catalog)
    catalog.close()


@pytest.fixture
def fake_batching(fake_embedder: Embedder) -> Iterator[Embedder]:
    from conveyor.embedding.batching import BatchingEmbedder

    batcher = BatchingEmbedder(fake_embedder)
    yield batcher
    batcher.close()


@pytest.fixture(scope="module")
def http_embedder(real_embedder: Embedder) -> Iterator[Embedder]:
    """The client of a real embed server (serving the session's torch model from a
    thread of this process, over HTTP on 127.0.0.1)."""
    from support import serving

    from conveyor.embedding.http import HttpEmbedder
    from conveyor.server.embed import create_app
    from conveyor.settings import Settings

    with serving(create_app(Settings(), embedder=real_embedder)) as url:
        client = HttpEmbedder(url, fallback=_no_fallback)
        yield client
        assert not client.using_fallback
        client.close()


@pytest.fixture(scope="module")
def cached_embedder(
    real_embedder: Embedder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Embedder]:
    """The torch model behind the content-hash cache of a real (SQLite) catalog."""
    from conveyor.embedding.cache import CachedEmbedder

    catalog = _catalog(tmp_path_factory.mktemp("embedding-cache"))
    yield CachedEmbedder(real_embedder, catalog)
    catalog.close()


@pytest.fixture(scope="module")
def batching_embedder(real_embedder: Embedder) -> Iterator[Embedder]:
    """The torch model behind the cross-request batcher."""
    from conveyor.embedding.batching import BatchingEmbedder

    batcher = BatchingEmbedder(real_embedder)
    yield batcher
    batcher.close()


@pytest.fixture(scope="module")
def openai_embedder(real_embedder: Embedder) -> Iterator[Embedder]:
    """The OpenAI provider against a real embed server (the session's torch model)."""
    from support import serving

    from conveyor.embedding.openai import OpenAIEmbedder
    from conveyor.server.embed import create_app
    from conveyor.settings import DEFAULT_MODEL, Settings

    with serving(create_app(Settings(), embedder=real_embedder)) as url:
        client = OpenAIEmbedder(DEFAULT_MODEL, base_url=url + "/v1", api_key="unused")
        yield client
        client.close()


def _bedrock(stub: Any, model: str, dimensions: int | None = None) -> Embedder:
    from conveyor.embedding.aws import BedrockEmbedder

    embedder = BedrockEmbedder(
        model, region="us-east-1", endpoint_url=stub.url, dimensions=dimensions
    )
    embedder.endpoint_url = stub.url  # type: ignore[attr-defined]
    return embedder


@pytest.fixture(scope="module")
def titan_embedder(provider_stub: Any) -> Iterator[Embedder]:
    embedder = _bedrock(provider_stub, "amazon.titan-embed-text-v2:0", 512)
    yield embedder
    embedder.close()


@pytest.fixture(scope="module")
def cohere_embedder(provider_stub: Any) -> Iterator[Embedder]:
    embedder = _bedrock(provider_stub, "cohere.embed-english-v3")
    yield embedder
    embedder.close()


@pytest.fixture(scope="module")
def sagemaker_embedder(provider_stub: Any) -> Iterator[Embedder]:
    from conveyor.embedding.aws import SageMakerEmbedder

    embedder = SageMakerEmbedder(
        "minilm-tei", region="us-east-1", endpoint_url=provider_stub.url, model="minilm@tei"
    )
    embedder.endpoint_url = provider_stub.url  # type: ignore[attr-defined]
    yield embedder
    embedder.close()


# -- the tests ---------------------------------------------------------------------


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)  # rows are unit vectors


def _check_rows(vectors: np.ndarray, n: int, dim: int) -> None:
    assert isinstance(vectors, np.ndarray)
    assert vectors.dtype == np.float32
    assert vectors.shape == (n, dim)
    assert np.isfinite(vectors).all()
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_names_and_dimension(embedder: Embedder, embedder_backend: EmbedderBackend) -> None:
    assert isinstance(embedder.model_id, str) and embedder.model_id
    assert isinstance(embedder.backend, str) and embedder.backend
    assert isinstance(embedder.dim, int) and embedder.dim > 0
    assert is_local_model(embedder) == embedder_backend.local_model
    if embedder_backend.local_model:
        model: Any = embedder
        model.load()  # already loaded: nothing happens
        assert model.tokenizer.max_tokens > 0
        assert model.tokenizer.count(["two words", ""]) == [2, 0]


def test_rows_are_float32_unit_vectors(embedder: Embedder) -> None:
    _check_rows(embedder.embed(TEXTS), len(TEXTS), embedder.dim)


def test_no_texts_no_rows(embedder: Embedder) -> None:
    _check_rows(embedder.embed([]), 0, embedder.dim)


def test_order_is_kept(embedder: Embedder, embedder_backend: EmbedderBackend) -> None:
    forward = embedder.embed(TEXTS)
    backward = embedder.embed(TEXTS[::-1])[::-1]
    assert _cosines(forward, backward).min() >= embedder_backend.same_text
    alone = np.vstack([embedder.embed([text]) for text in TEXTS])
    assert _cosines(forward, alone).min() >= embedder_backend.same_text
    others = forward @ forward.T - np.eye(len(TEXTS))  # each row is its own text's
    assert others.max() < embedder_backend.same_text


def test_deterministic(embedder: Embedder) -> None:
    first = embedder.embed(TEXTS)
    assert np.allclose(embedder.embed(TEXTS), first, atol=1e-6)


def test_same_text_same_vector_in_a_batch_and_across_calls(
    embedder: Embedder, embedder_backend: EmbedderBackend
) -> None:
    text = TEXTS[2]
    batch = embedder.embed([text, TEXTS[0], text, LONG, text])
    assert np.allclose(batch[0], batch[2], atol=1e-5) and np.allclose(batch[0], batch[4], atol=1e-5)
    [alone] = embedder.embed([text])
    assert float(alone @ batch[0]) >= embedder_backend.same_text


def test_a_text_longer_than_the_window(embedder: Embedder) -> None:
    vectors = embedder.embed([LONG, TEXTS[0]])
    _check_rows(vectors, 2, embedder.dim)
    assert float(vectors[0] @ vectors[1]) < 0.99


def test_unicode(embedder: Embedder) -> None:
    vectors = embedder.embed(UNICODE)
    _check_rows(vectors, len(UNICODE), embedder.dim)
    assert len({row.tobytes() for row in vectors}) == len(UNICODE)


def test_close_releases_what_it_started(
    embedder: Embedder, embedder_backend: EmbedderBackend
) -> None:
    """A new embedder of the kind embeds like the shared one, then closes: the threads
    it started (a batcher's, ONNX Runtime's pool) are gone."""
    embedder.embed(["warm up: what the shared embedder starts is not counted"])
    before = set(threading.enumerate())
    fresh = embedder_backend.fresh(embedder)
    try:
        vectors = fresh.embed(TEXTS)
        assert (fresh.model_id, fresh.backend, fresh.dim) == (
            embedder.model_id,
            embedder.backend,
            embedder.dim,
        )
        assert _cosines(vectors, embedder.embed(TEXTS)).min() >= embedder_backend.same_text
    finally:
        assert fresh.close() is None
    left = [t.name for t in threading.enumerate() if t not in before and t.is_alive()]
    assert left == []


TESTS = sorted(name for name in dict(globals()) if name.startswith("test_"))
__all__ = [
    "batching_embedder",
    "cached_embedder",
    "cohere_embedder",
    "embedder",
    "fake_batching",
    "fake_cached",
    "fake_embedder",
    "http_embedder",
    "openai_embedder",
    "sagemaker_embedder",
    "titan_embedder",
    *TESTS,
]
