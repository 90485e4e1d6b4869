"""Retry policy as data: given a failure, retry after how long, or give up.

A worker that catches an error asks :meth:`RetryPolicy.decide` what to do:

* a :class:`RetryDecision` with a ``delay`` → ``queue.release(lease, delay=…)``;
* ``delay=None`` (give up) → ``queue.dead_letter(lease, error)``.

Errors come in three kinds (see :func:`conveyor.exceptions.classify`):
``"permanent"`` gives up at once; ``"transient"`` and ``"unknown"`` retry with
exponential backoff until the job has been received ``max_receives`` times.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["RetryDecision", "RetryPolicy"]

_RNG = random.Random()


GIVE_UP_AT_ONCE = frozenset({"permanent", "configuration"})
"""Error kinds that waiting cannot mend: the input itself, or a missing program."""


@dataclass(frozen=True)
class RetryDecision:
    """What to do with a failed job."""

    delay: float | None
    """Seconds to wait before the job is visible again; ``None`` = give up (dead-letter)."""

    @property
    def give_up(self) -> bool:
        return self.delay is None


GIVE_UP = RetryDecision(delay=None)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with multiplicative jitter.

    The n-th failed delivery (``receive_count == n``) waits
    ``min(max_delay, base * factor ** (n - 1))`` seconds, multiplied by a
    uniformly drawn factor in ``[1 - jitter, 1 + jitter]`` so that jobs that
    failed together do not come back together. ``max_delay`` caps the delay
    before jitter, so a retry may wait up to ``max_delay * (1 + jitter)``.

    With the defaults: about 2 s, 4 s, 8 s, 16 s, … up to 300 s (± 25 %).
    """

    base: float = 2.0
    """Delay after the first failed delivery, in seconds."""
    factor: float = 2.0
    """Growth of the delay per further delivery (1 = constant)."""
    max_delay: float = 300.0
    """Cap on the delay before jitter, in seconds."""
    jitter: float = 0.25
    """Fraction by which the delay may vary either way (0 = none, must be < 1)."""

    def __post_init__(self) -> None:
        if self.base < 0:
            raise ValueError(f"base must be >= 0, got {self.base!r}")
        if self.factor < 1:
            raise ValueError(f"factor must be >= 1, got {self.factor!r}")
        if self.max_delay < 0:
            raise ValueError(f"max_delay must be >= 0, got {self.max_delay!r}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter!r}")

    def backoff(self, receive_count: int) -> float:
        """The delay after delivery number ``receive_count`` fails, before jitter."""
        exponent = max(receive_count, 1) - 1
        try:
            raw = self.base * self.factor**exponent
        except OverflowError:
            return self.max_delay
        return min(self.max_delay, raw)

    def decide(
        self,
        error_kind: str,
        receive_count: int,
        max_receives: int,
        rng: random.Random | None = None,
    ) -> RetryDecision:
        """Decide the fate of a job whose delivery number ``receive_count`` failed.

        ``error_kind`` is ``"permanent"``, ``"transient"`` or ``"unknown"`` (any
        other value counts as unknown). Permanent errors give up at once; the
        others give up once ``receive_count >= max_receives`` (the queue would
        dead-letter the job on its next receive anyway, without the error),
        else retry after :meth:`backoff` with jitter drawn from ``rng`` (a
        seeded :class:`random.Random` makes it reproducible).
        """
        if error_kind in GIVE_UP_AT_ONCE or receive_count >= max_receives:
            return GIVE_UP
        delay = self.backoff(receive_count)
        if self.jitter:
            delay *= 1.0 + (rng or _RNG).uniform(-self.jitter, self.jitter)
        return RetryDecision(delay=max(0.0, delay))
