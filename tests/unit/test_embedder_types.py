"""Every embedder is an :class:`Embedder`, every model in this process a :class:`LocalModel`.

The lists below are typed: ``mypy --strict`` checks each class against the
protocols, and the tests check the same objects at run time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from conveyor.embedding import Embedder, LocalModel, Tokenizer, is_local_model
from conveyor.embedding.batching import BatchingEmbedder
from conveyor.embedding.cache import CachedEmbedder, CacheStore
from conveyor.embedding.http import HttpEmbedder
from conveyor.embedding.local import LocalEmbedder, LocalTokenizer
from conveyor.embedding.onnx import PREPROCESS_ADVICE, OnnxEmbedder, _quiet_root
from conveyor.settings import DEFAULT_MODEL
from conveyor.testing import FakeEmbedder, WhitespaceTokenizer

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing answers


class DictStore:
    """A :class:`CacheStore` in a dict."""

    def __init__(self) -> None:
        self.vectors: dict[tuple[str, str], bytes] = {}

    def cache_get(self, model_id: str, hashes: Sequence[str]) -> dict[str, bytes]:
        found = ((h, self.vectors.get((model_id, h))) for h in hashes)
        return {h: v for h, v in found if v is not None}

    def cache_put(self, model_id: str, items: Sequence[tuple[str, bytes]]) -> None:
        for h, v in items:
            self.vectors.setdefault((model_id, h), v)


def test_models_in_this_process_are_local_models(tmp_path: Path) -> None:
    tokenizers: list[Tokenizer] = [
        WhitespaceTokenizer(),
        LocalTokenizer(LocalEmbedder(DEFAULT_MODEL).folder, 256),
    ]
    models: list[LocalModel] = [
        FakeEmbedder(),
        LocalEmbedder(DEFAULT_MODEL),
        OnnxEmbedder(DEFAULT_MODEL, tmp_path / "onnx"),
    ]
    for model in models:
        assert is_local_model(model)
        assert model.backend and model.model_id
    for tokenizer in tokenizers:
        assert tokenizer.max_tokens > 0
        assert tokenizer.count(["two words"]) == [2]


def test_wrappers_and_clients_are_embedders() -> None:
    fake = FakeEmbedder(dim=8)
    store: CacheStore = DictStore()
    http = HttpEmbedder(UNREACHABLE, fallback=lambda: fake, retries=1, backoff=0.0)
    embedders: list[Embedder] = [
        fake,
        BatchingEmbedder(fake),
        CachedEmbedder(fake, store),
        http,
    ]
    try:
        for embedder in embedders:
            assert embedder.model_id == fake.model_id
            assert embedder.backend == ("http" if embedder is http else "fake")
            assert embedder.dim == 8
            vectors = embedder.embed(["a text", "another text"])
            assert vectors.shape == (2, 8) and vectors.dtype == np.float32
    finally:
        for embedder in embedders:
            embedder.close()


def test_onnx_runtimes_advice_is_dropped_while_quantising(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING), _quiet_root(PREPROCESS_ADVICE):
        logging.warning(PREPROCESS_ADVICE + ". Refer to example: …")  # as the quantiser does
        logging.warning("something else")
    logging.warning(PREPROCESS_ADVICE)  # only while quantising
    assert [r.getMessage() for r in caplog.records] == ["something else", PREPROCESS_ADVICE]
