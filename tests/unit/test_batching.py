"""BatchingEmbedder: merged across threads, bounded by texts and tokens, split back in order."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from support import wait_for

from conveyor.embedding.batching import BatchingEmbedder, Overloaded, token_counter
from conveyor.testing import FakeEmbedder


class Recorder(FakeEmbedder):
    """FakeEmbedder that records every model call; ``gate`` holds calls back."""

    def __init__(self) -> None:
        super().__init__(dim=64)
        self.seen: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail_on: str | None = None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.entered.set()
        assert self.gate.wait(10)
        self.seen.append(list(texts))
        if self.fail_on is not None and any(self.fail_on in t for t in texts):
            raise RuntimeError("model broke")
        return super().embed(texts)


def words(n: int, tag: str) -> str:
    return " ".join(f"{tag}{i}" for i in range(n))


def tokens_of(texts: Sequence[str]) -> int:
    return sum(token_counter(FakeEmbedder())(texts))


def held(model: Recorder, batcher: BatchingEmbedder, pool: ThreadPoolExecutor) -> None:
    """Occupy the batch thread with one call so that what follows queues up."""
    model.gate.clear()
    model.entered.clear()
    pool.submit(batcher.embed, ["occupy the model"])
    assert model.entered.wait(5)


def wait_queued(batcher: BatchingEmbedder, texts: int) -> None:
    wait_for(lambda: batcher.pending >= texts, 5, f"{texts} texts queued", every=0.005)


def test_token_counter_adds_special_tokens_and_caps() -> None:
    count = token_counter(FakeEmbedder())  # whitespace tokenizer, 254 tokens at most
    assert count(["one two three", words(1000, "w")]) == [5, 256]

    class NoTokenizer:
        model_id = "x"

    assert token_counter(NoTokenizer())(["abcdefgh"]) == [4]  # type: ignore[arg-type]


def test_concurrent_requests_merge_within_the_token_budget() -> None:
    model = Recorder()
    budget = 100
    batcher = BatchingEmbedder(model, max_batch=1000, max_tokens=budget, max_wait=0.2)
    requests = [[words(10 + i % 3, f"r{i}t{j}") for j in range(2)] for i in range(12)]
    with ThreadPoolExecutor(16) as pool:
        held(model, batcher, pool)
        futures = [pool.submit(batcher.embed, texts) for texts in requests]
        wait_queued(batcher, 1 + sum(len(r) for r in requests))
        model.gate.set()
        results = [f.result(10) for f in futures]
    batcher.close()
    calls = model.seen[1:]  # after the call that held the thread
    assert all(tokens_of(call) <= budget for call in calls), [tokens_of(c) for c in calls]
    assert max(len(call) for call in calls) > 2  # requests were merged...
    assert len(calls) >= tokens_of([t for r in requests for t in r]) // budget  # ...and bounded
    for texts, vectors in zip(requests, results, strict=True):
        assert np.allclose(vectors, FakeEmbedder(dim=64).embed(texts))
    assert batcher.batched_tokens == tokens_of(["occupy the model"]) + sum(map(tokens_of, calls))
    assert batcher.waits == 13 and batcher.waited > 0


def test_text_count_still_bounds_a_batch() -> None:
    model = Recorder()
    batcher = BatchingEmbedder(model, max_batch=3, max_tokens=10_000, max_wait=0.2)
    with ThreadPoolExecutor(8) as pool:
        held(model, batcher, pool)
        futures = [pool.submit(batcher.embed, [f"text {i}"]) for i in range(7)]
        wait_queued(batcher, 8)
        model.gate.set()
        assert [f.result(10)[0].shape for f in futures] == [(64,)] * 7
    batcher.close()
    assert [len(call) for call in model.seen[1:]] == [3, 3, 1]


def test_a_request_over_the_budget_is_split_and_comes_back_in_order() -> None:
    model = Recorder()
    batcher = BatchingEmbedder(model, max_tokens=50, max_wait=0.001)
    texts = [words(5 + (i * 7) % 20, f"t{i}x") for i in range(30)]
    vectors = batcher.embed(texts)
    batcher.close()
    assert len(model.seen) > 1
    assert all(tokens_of(call) <= 50 for call in model.seen)
    assert sorted(t for call in model.seen for t in call) == sorted(texts)
    assert np.allclose(vectors, FakeEmbedder(dim=64).embed(texts))


def test_a_text_longer_than_the_budget_goes_alone() -> None:
    model = Recorder()
    batcher = BatchingEmbedder(model, max_tokens=20, max_wait=0.001)
    texts = ["short one", words(200, "long"), "short two"]
    vectors = batcher.embed(texts)
    batcher.close()
    assert [words(200, "long")] in model.seen
    assert np.allclose(vectors, FakeEmbedder(dim=64).embed(texts))


def test_a_batch_reaches_the_model_sorted_by_length_and_returns_unsorted() -> None:
    model = Recorder()
    batcher = BatchingEmbedder(model, max_wait=0.001)
    texts = [words(n, f"s{n}x") for n in (9, 2, 30, 1, 14, 5)]
    vectors = batcher.embed(texts)
    batcher.close()
    (call,) = model.seen
    assert [len(t.split()) for t in call] == [1, 2, 5, 9, 14, 30]
    assert np.allclose(vectors, FakeEmbedder(dim=64).embed(texts))


def test_a_failed_batch_fails_its_requests_only() -> None:
    model = Recorder()
    model.fail_on = "poison"
    batcher = BatchingEmbedder(model, max_tokens=12, max_wait=0.001)
    with pytest.raises(RuntimeError, match="model broke"):
        batcher.embed(["poison pill here", *[words(8, f"after{i}x") for i in range(3)]])
    calls = len(model.seen)
    assert calls == 1  # the rest of a failed request is not embedded for nothing
    assert batcher.embed(["still fine"]).shape == (1, 64)
    batcher.close()


def test_overload_is_refused_at_once() -> None:
    model = Recorder()
    batcher = BatchingEmbedder(model, max_pending=4, max_wait=0.001)
    with ThreadPoolExecutor(2) as pool:
        held(model, batcher, pool)
        blocked = pool.submit(batcher.embed, ["a", "b", "c"])
        wait_queued(batcher, 4)
        started = time.monotonic()
        with pytest.raises(Overloaded, match="limit 4"):
            batcher.embed(["one too many"])
        assert time.monotonic() - started < 1
        model.gate.set()
        assert blocked.result(10).shape == (3, 64)
    batcher.close()
    assert batcher.pending == 0


def test_close_finishes_what_is_queued() -> None:
    model = Recorder()
    batcher = BatchingEmbedder(model, max_tokens=10, max_wait=0.001)
    with ThreadPoolExecutor(5) as pool:
        held(model, batcher, pool)
        futures = [pool.submit(batcher.embed, [words(6, f"q{i}x")] * 3) for i in range(3)]
        wait_queued(batcher, 10)
        closer = pool.submit(batcher.close)
        model.gate.set()
        closer.result(10)
        assert [f.result(1).shape for f in futures] == [(3, 64)] * 3
