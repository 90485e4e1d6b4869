"""What every remote provider shares (conveyor.embedding.remote) over a fake provider,
and how CONVEYOR_EMBEDDER is read. The providers themselves, against servers
speaking their APIs, are in tests/integration/test_embedding_providers.py."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import numpy as np
import pytest

from conveyor.components import Components
from conveyor.embedding.openai import retry_after
from conveyor.embedding.providers import open_remote, parse
from conveyor.embedding.remote import (
    Limits,
    ProviderBusy,
    RemoteEmbedder,
    RetryPolicy,
    Throttled,
    batches,
    metered,
    redact,
)
from conveyor.exceptions import ConfigurationError
from conveyor.settings import Settings
from conveyor.testing import FakeEmbedder


class FakeProvider(RemoteEmbedder):
    """Fake vectors; records the most requests it saw at once; throttles on demand."""

    backend = "fake-remote"

    def __init__(self, limits: Limits, throttle: int = 0) -> None:
        super().__init__("fake/remote", dim=32, limits=limits, retry=RetryPolicy(4, 0.001, 0.002))
        self.inner = FakeEmbedder(32)
        self.now = self.most = 0
        self.sizes: list[int] = []
        self.throttle = throttle
        self._lock = threading.Lock()

    def _request(self, texts: list[str]) -> tuple[np.ndarray, int | None]:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
            self.sizes.append(len(texts))
            throttled, self.throttle = self.throttle > 0, max(0, self.throttle - 1)
        try:
            if throttled:
                raise Throttled("HTTP 429", retry_after=0.001)
            time.sleep(0.01)
            return self.inner.embed(texts) * 3.0, None  # not normalised: the base does it
        finally:
            with self._lock:
                self.now -= 1


def test_requests_follow_the_limits_of_texts_and_tokens() -> None:
    limits = Limits(max_inputs=3, max_request_tokens=10, max_input_tokens=8)
    assert list(batches(["a"] * 7, [1] * 7, limits)) == [(0, 3), (3, 6), (6, 7)]
    assert list(batches(["a"] * 4, [4, 4, 4, 20], limits)) == [(0, 2), (2, 3), (3, 4)]
    assert list(batches([], [], limits)) == []


def test_in_flight_is_bounded_across_threads_and_usage_is_per_caller() -> None:
    provider = FakeProvider(
        Limits(max_inputs=2, max_request_tokens=100, max_input_tokens=50, in_flight=2)
    )
    usages: dict[int, dict[str, int]] = {}

    def work(n: int) -> None:
        with metered() as usage:
            vectors = provider.embed([f"text {n} {i}" for i in range(n)])
            assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        usages[n] = usage.as_dict()

    threads = [threading.Thread(target=work, args=(n,)) for n in (2, 4, 6, 8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert provider.most == 2 and max(provider.sizes) == 2
    assert {n: u["requests"] for n, u in usages.items()} == {2: 1, 4: 2, 6: 3, 8: 4}
    assert all(u["tokens"] > 0 and u["texts"] == n for n, u in usages.items())


def test_throttling_is_retried_then_given_up() -> None:
    limits = Limits(max_inputs=8, max_request_tokens=100, max_input_tokens=50)
    assert FakeProvider(limits, throttle=3).embed(["a", "b"]).shape == (2, 32)
    with pytest.raises(ProviderBusy, match="4 attempts"):
        FakeProvider(limits, throttle=4).embed(["a"])


def test_retry_after_in_seconds_milliseconds_and_dates() -> None:
    assert retry_after({"retry-after": "2"}) == 2.0
    assert retry_after({"retry-after-ms": "150", "retry-after": "9"}) == 0.15
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < (retry_after({"retry-after": later}) or 0) <= 30
    assert retry_after({}) is None
    policy = RetryPolicy(base=1.0, cap=4.0, longest=60.0)
    assert policy.wait(0, 7.5) == 7.5 and policy.wait(0, 600) == 60.0
    assert 2.0 <= policy.wait(10, None) <= 4.0


def test_redact_masks_keys() -> None:
    text = redact("bad key sk-abcdef123456 and mine: hunter2-secret", "hunter2-secret")
    assert "abcdef123456" not in text and "hunter2" not in text


def test_embedder_urls() -> None:
    url = parse("bedrock://amazon.titan-embed-text-v2:0?region=eu-west-1&dimensions=256")
    assert (url.scheme, url.name, url.params["region"], url.number("dimensions")) == (
        "bedrock",
        "amazon.titan-embed-text-v2:0",
        "eu-west-1",
        256,
    )
    for bad in ("mistral://x", "openai://", "text-embedding-3-small"):
        with pytest.raises(ConfigurationError, match="CONVEYOR_EMBEDDER"):
            parse(bad)
    with pytest.raises(ConfigurationError, match="max_inputs"):
        open_remote("openai://m?max_inputs=lots")
    with pytest.raises(ConfigurationError, match="256, 512 or 1024"):
        open_remote("bedrock://amazon.titan-embed-text-v2:0?dimensions=300&region=us-east-1")
    with pytest.raises(ConfigurationError, match="unsupported Bedrock"):
        open_remote("bedrock://meta.llama3?region=us-east-1")
    embedder = open_remote(
        "openai://text-embedding-3-small?base_url=http://127.0.0.1:1/v1&max_inputs=16"
    )
    assert (embedder.dim, embedder.limits.max_inputs, embedder.backend) == (1536, 16, "openai")
    embedder.close()


def test_settings_and_components_choose_the_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_EMBEDDER", "local://sentence-transformers/paraphrase-MiniLM-L3-v2")
    assert Settings().model == "sentence-transformers/paraphrase-MiniLM-L3-v2"
    assert Settings().remote_embedder is None
    monkeypatch.setenv("CONVEYOR_EMBEDDER", "azure://x")
    with pytest.raises(ValueError, match="CONVEYOR_EMBEDDER"):
        Settings()
    url = "openai://text-embedding-3-small?base_url=http://127.0.0.1:1/v1&max_input_tokens=500"
    components = Components(Settings(embedder=url), local_embedder=FakeEmbedder())
    assert components.query_embedder.backend == "openai"
    assert components.tokenizer.max_tokens == 500  # the provider's limit, local counts
    assert components.tokenizer.count(["two words"]) == [2]
    assert type(components.embedder).__name__ == "CachedEmbedder"  # no batcher: it batches
    components.close()
    both = Components(
        Settings(embedder=url, embedding_url="http://x"), local_embedder=FakeEmbedder()
    )
    with pytest.raises(ConfigurationError, match="keep one"):
        _ = both.query_embedder
