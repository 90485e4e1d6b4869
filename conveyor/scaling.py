"""Autoscaling signals, and the fleet-wide cap on jobs in flight.

What an autoscaler needs to size the worker fleet, read from the queue and the
catalog: the jobs waiting and running, the age of the oldest visible job
(how late the backlog runs), the backlog per live worker, and the tokens the
waiting jobs will embed (estimated from the jobs measured last). ``/metrics``
exports them (:class:`ScalingCollector`), ``conveyor scale-hint`` turns them
into a worker count, and docs/DEPLOY.md wires them into KEDA and ECS target
tracking.

``CONVEYOR_MAX_IN_FLIGHT`` caps the jobs running at once across every worker of
a SQL queue (the queues count leases under their write lock or an advisory
lock, :mod:`conveyor.queue.sqlite`, :mod:`conveyor.queue.postgres`); SQS has no
such count, so there the Lambda event source mapping's maximum concurrency
does it (see docs/DEPLOY.md), and the setting is ignored with a warning.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .settings import Settings

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from .app import Conveyor

log = logging.getLogger(__name__)

SAMPLE = 200
"""Measured jobs the pending-token estimate averages over (the newest)."""
SQL_SCHEMES = ("sqlite://", "postgresql://", "postgres://")


def queue_options(url: str, settings: Settings) -> dict[str, Any]:
    """``open_queue``'s keywords for ``url``: the cap only where the queue can keep it."""
    options: dict[str, Any] = {"max_receives": settings.max_receives}
    if settings.max_in_flight:
        if url.startswith(SQL_SCHEMES) or "://" not in url:
            options["max_in_flight"] = settings.max_in_flight
        else:
            log.warning(
                "CONVEYOR_MAX_IN_FLIGHT=%d is ignored on %s: cap an SQS queue with the "
                "Lambda event source mapping's ScalingConfig MaximumConcurrency, or the "
                "number of ECS tasks × CONVEYOR_CONCURRENCY",
                settings.max_in_flight,
                url.split("://", 1)[0],
            )
    return options


@dataclass(frozen=True)
class Signals:
    """The queue and the fleet as an autoscaler sees them."""

    visible: int
    in_flight: int
    delayed: int
    oldest_visible_age: float | None
    """Seconds since the oldest visible job was sent (None: none visible, or the queue
    cannot say: SQS, whose CloudWatch metric ApproximateAgeOfOldestMessage says it)."""
    live_workers: int
    live_slots: int
    """Jobs the live workers can run at once (their concurrency summed)."""
    tokens_per_job: float | None
    """Mean tokens embedded by the jobs measured last (None: none measured)."""

    @property
    def backlog_per_worker(self) -> float:
        """Visible jobs per live worker (per one, when none is live)."""
        return self.visible / max(1, self.live_workers)

    @property
    def pending_tokens(self) -> int:
        """Tokens the waiting jobs (visible and delayed) will embed, estimated."""
        return round((self.visible + self.delayed) * (self.tokens_per_job or 0.0))

    def desired(self, per_worker: float, minimum: int = 0, maximum: int | None = None) -> int:
        """Workers for the jobs waiting and running, ``per_worker`` each."""
        if per_worker <= 0:
            raise ValueError(f"per_worker must be positive, not {per_worker:g}")
        want = math.ceil((self.visible + self.in_flight) / per_worker)
        want = max(minimum, want)
        return want if maximum is None else min(maximum, want)

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "backlog_per_worker": round(self.backlog_per_worker, 3),
            "pending_tokens": self.pending_tokens,
        }


def signals(queue: Any, catalog: Any, *, stale_after: float) -> Signals:
    """Read the signals now."""
    depth = queue.depth()
    oldest = getattr(queue, "oldest_visible_age", None)
    live = [w for w in catalog.workers(stale_after=stale_after) if w["state"] == "running"]
    live = [w for w in live if not w["stale"]]
    recent = [m["tokens"] for m in catalog.measurements(limit=SAMPLE) if m.get("tokens")]
    return Signals(
        visible=depth.visible,
        in_flight=depth.in_flight,
        delayed=depth.delayed,
        oldest_visible_age=oldest() if oldest is not None else None,
        live_workers=len(live),
        live_slots=sum(int(w["concurrency"]) for w in live),
        tokens_per_job=sum(recent) / len(recent) if recent else None,
    )


class ScalingCollector:
    """The signals as gauges, read when Prometheus scrapes ``/metrics``."""

    def __init__(self, conveyor: Conveyor) -> None:
        self.cv = conveyor

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        from .worker import stale_after

        c = self.cv.components
        now = signals(
            c.queue, c.catalog, stale_after=stale_after(self.cv.settings.visibility_timeout)
        )
        yield GaugeMetricFamily(
            "conveyor_queue_oldest_visible_age_seconds",
            "Seconds since the oldest visible job was sent (0 when none is visible).",
            value=now.oldest_visible_age or 0.0,
        )
        yield GaugeMetricFamily(
            "conveyor_backlog_per_worker",
            "Visible jobs per live worker (scale out above your target).",
            value=now.backlog_per_worker,
        )
        yield GaugeMetricFamily(
            "conveyor_pending_tokens",
            f"Tokens the waiting jobs will embed: their count times the mean of the last "
            f"{SAMPLE} measured jobs.",
            value=now.pending_tokens,
        )
        yield GaugeMetricFamily(
            "conveyor_live_workers", "Workers whose heartbeat is fresh.", value=now.live_workers
        )
