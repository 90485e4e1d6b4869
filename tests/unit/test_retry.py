from __future__ import annotations

import random

import pytest

from conveyor.retry import RetryDecision, RetryPolicy


def test_permanent_gives_up_at_once() -> None:
    decision = RetryPolicy().decide("permanent", receive_count=1, max_receives=5)
    assert decision == RetryDecision(delay=None)
    assert decision.give_up


@pytest.mark.parametrize("kind", ["transient", "unknown", "something-else"])
def test_retryable_kinds_give_up_at_max_receives(kind: str) -> None:
    policy = RetryPolicy(jitter=0)
    assert policy.decide(kind, receive_count=4, max_receives=5).delay == 16.0
    assert policy.decide(kind, receive_count=5, max_receives=5).give_up
    assert policy.decide(kind, receive_count=6, max_receives=5).give_up


def test_exponential_backoff_capped_without_jitter() -> None:
    policy = RetryPolicy(base=2.0, factor=3.0, max_delay=50.0, jitter=0)
    delays = [policy.decide("transient", n, max_receives=100).delay for n in range(1, 7)]
    assert delays == [2.0, 6.0, 18.0, 50.0, 50.0, 50.0]
    assert policy.decide("transient", 0, max_receives=100).delay == 2.0  # clamped to 1st
    assert policy.decide("transient", 5000, max_receives=10_000).delay == 50.0  # no overflow


def test_jitter_stays_in_bounds_and_varies() -> None:
    policy = RetryPolicy(base=10.0, factor=2.0, max_delay=1000.0, jitter=0.25)
    rng = random.Random(7)
    delays = [policy.decide("unknown", 2, max_receives=5, rng=rng).delay for _ in range(500)]
    assert all(d is not None and 15.0 <= d <= 25.0 for d in delays)
    numeric = [d for d in delays if d is not None]
    assert len({round(d, 6) for d in numeric}) > 400
    assert min(numeric) < 16.0 and max(numeric) > 24.0  # uses both sides of the range
    assert 19.0 < sum(numeric) / len(numeric) < 21.0


def test_seeded_rng_is_reproducible() -> None:
    policy = RetryPolicy()
    first = [policy.decide("transient", n, 9, rng=random.Random(1)).delay for n in range(1, 5)]
    again = [policy.decide("transient", n, 9, rng=random.Random(1)).delay for n in range(1, 5)]
    assert first == again


def test_defaults() -> None:
    policy = RetryPolicy(jitter=0)
    assert [policy.decide("transient", n, 20).delay for n in (1, 2, 3, 9, 10)] == [
        2.0,
        4.0,
        8.0,
        300.0,
        300.0,
    ]


@pytest.mark.parametrize(
    "kwargs",
    [{"base": -1.0}, {"factor": 0.5}, {"max_delay": -1.0}, {"jitter": 1.0}, {"jitter": -0.1}],
)
def test_invalid_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


def test_policy_is_frozen_data() -> None:
    policy = RetryPolicy()
    with pytest.raises(AttributeError):
        policy.base = 1.0  # type: ignore[misc]
    assert RetryPolicy(base=1.0) == RetryPolicy(base=1.0)
