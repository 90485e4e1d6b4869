"""Prometheus metrics for the API and the embed server, through ``prometheus-client``.

Each app owns a :class:`~prometheus_client.CollectorRegistry` (never the process-wide
one: several apps live in one test process, and a library must not fill its user's
registry). Counters and histograms are prometheus-client objects, fed as things
happen; what the catalog or the batcher already knows (queue depth, documents by
state, workers and their heartbeats; batches, waiting texts) is read when
Prometheus scrapes, by the custom collectors :class:`CatalogCollector` and
:class:`BatcherCollector`. prometheus-client writes the text format, label values
escaped, so a worker id or a host name cannot break it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from starlette.responses import PlainTextResponse

from ..worker import stale_after

if TYPE_CHECKING:
    from ..app import Conveyor
    from ..embedding.batching import BatchingEmbedder

STAGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
OUTCOMES = ("done", "skipped", "failed", "retried")
WORKER_STATES = ("running", "stale", "stopped")


def exposition(registry: CollectorRegistry) -> PlainTextResponse:
    """``GET /metrics``: the registry in Prometheus' text format (blocking when a custom
    collector reads a database: call it in a thread)."""
    return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_PLAIN_0_0_4)


def _uptime(registry: CollectorRegistry, name: str, help_text: str, started: float) -> None:
    gauge = Gauge(name, help_text, registry=registry)
    gauge.set_function(lambda: round(time.time() - started, 1))


# -- conveyor serve ----------------------------------------------------------------


class ApiMetrics:
    """``conveyor serve``'s metrics. The job counters count what
    :class:`~conveyor.server.live.Live` sees change in the catalog (any worker's work,
    since this server started); uploads count this server's ``POST /documents``."""

    def __init__(self, conveyor: Conveyor | None = None) -> None:
        self.registry = CollectorRegistry()
        self.started = time.time()
        if conveyor is not None:
            self.registry.register(CatalogCollector(conveyor))
            from ..scaling import ScalingCollector  # backlog age, per worker, tokens

            self.registry.register(ScalingCollector(conveyor))
        r = self.registry
        self.jobs = Counter(
            "conveyor_jobs_total",
            "Jobs finished since this server started, by outcome (any worker).",
            ["outcome"],
            registry=r,
        )
        for outcome in OUTCOMES:  # every outcome shows, 0 until it happens
            self.jobs.labels(outcome)
        self.stages = Histogram(
            "conveyor_stage_duration_seconds",
            "Seconds each stage took, for documents done since this server started.",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.embeddings = Counter(
            "conveyor_embeddings_generated_total",
            "Chunks embedded and merged since this server started.",
            registry=r,
        )
        self.errors = Counter(
            "conveyor_errors_total",
            "Failures and retries since this server started, by error kind.",
            ["kind"],
            registry=r,
        )
        self.uploads = Counter(
            "conveyor_uploads_total", "Uploads to this server by result.", ["result"], registry=r
        )
        self.upload_bytes = Counter("conveyor_upload_bytes_total", "Bytes uploaded.", registry=r)
        _uptime(
            r, "conveyor_api_uptime_seconds", "Seconds since this server started.", self.started
        )

    def finished(
        self,
        outcome: str,
        *,
        chunks: int = 0,
        timings: Mapping[str, Any] | None = None,
        error_kind: str | None = None,
    ) -> None:
        """A document reached ``outcome`` (done, skipped, failed)."""
        self.jobs.labels(outcome).inc()
        if outcome == "done":
            self.embeddings.inc(chunks)
            for stage, seconds in (timings or {}).items():
                if isinstance(seconds, int | float):
                    self.stages.labels(stage).observe(float(seconds))
        if outcome == "failed":
            self.errors.labels(error_kind or "unknown").inc()

    def retried(self, error_kind: str | None) -> None:
        """A document went back to the queue to be tried again."""
        self.jobs.labels("retried").inc()
        self.errors.labels(error_kind or "unknown").inc()

    def uploaded(self, result: str, size: int = 0) -> None:
        """An upload ``accepted``, a ``duplicate``, or ``rejected_<status>``."""
        self.uploads.labels(result).inc()
        self.upload_bytes.inc(size)


class CatalogCollector:
    """Gauges read from the queue and the catalog when Prometheus scrapes."""

    def __init__(self, conveyor: Conveyor) -> None:
        self.cv = conveyor

    def collect(self) -> Iterator[Metric]:
        c = self.cv.components
        depth = GaugeMetricFamily(
            "conveyor_queue_depth",
            "Jobs in the queue by state (visible, in_flight, delayed, dead).",
            labels=["state"],
        )
        for state, n in c.queue.depth().as_dict().items():
            depth.add_metric([state], n)
        yield depth
        documents = GaugeMetricFamily(
            "conveyor_documents", "Documents in the catalog by state.", labels=["state"]
        )
        for state, n in c.catalog.counts().items():
            documents.add_metric([state], n)
        yield documents
        workers = c.catalog.workers(stale_after=stale_after(self.cv.settings.visibility_timeout))
        ages = GaugeMetricFamily(
            "conveyor_worker_heartbeat_age_seconds",
            "Seconds since each worker's last heartbeat.",
            labels=["worker", "host", "state"],
        )
        for w in workers:
            ages.add_metric([str(w["id"]), str(w["host"]), str(w["state"])], w["heartbeat_age"])
        yield ages
        by_state = GaugeMetricFamily(
            "conveyor_workers",
            "Workers seen in the last hour by state (running, stale, stopped).",
            labels=["state"],
        )
        for state in WORKER_STATES:
            by_state.add_metric([state], sum(1 for w in workers if _worker_state(w) == state))
        yield by_state


def _worker_state(worker: Mapping[str, Any]) -> str:
    if worker.get("stale"):
        return "stale"
    return "running" if worker["state"] == "running" else "stopped"


# -- conveyor embed-server ---------------------------------------------------------


class EmbedMetrics:
    """The embed server's metrics: requests by path and status, texts embedded, request
    latency; the batcher's own numbers once the model is loaded."""

    def __init__(self, batcher: Callable[[], BatchingEmbedder | None]) -> None:
        self.registry = CollectorRegistry()
        self.started = time.time()
        r = self.registry
        self.requests = Counter(
            "conveyor_embed_requests_total",
            "Requests by path and status.",
            ["path", "status"],
            registry=r,
        )
        self.texts = Counter("conveyor_embed_texts_total", "Texts embedded.", registry=r)
        self.latency = Histogram(
            "conveyor_embed_latency_seconds",
            "Request latency.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        r.register(BatcherCollector(batcher))
        _uptime(
            r, "conveyor_embed_uptime_seconds", "Seconds since the server started.", self.started
        )

    def observe(self, path: str, status: int, seconds: float) -> None:
        """One answer on an embedding path, whatever its status."""
        self.requests.labels(path, str(status)).inc()
        self.latency.observe(seconds)

    def embedded(self, texts: int) -> None:
        self.texts.inc(texts)


class BatcherCollector:
    """The batcher's counters and gauges, read when Prometheus scrapes (none while the
    model loads)."""

    def __init__(self, batcher: Callable[[], BatchingEmbedder | None]) -> None:
        self.batcher = batcher

    def collect(self) -> Iterator[Metric]:
        batcher = self.batcher()
        if batcher is None:
            return
        batches = batcher.batches or 1
        yield CounterMetricFamily(
            "conveyor_embed_batches_total", "Model batches run.", value=batcher.batches
        )
        yield GaugeMetricFamily(
            "conveyor_embed_batch_size_mean",
            "Texts per model batch, on average.",
            value=round(batcher.batched_texts / batches, 3),
        )
        yield GaugeMetricFamily(
            "conveyor_embed_batch_tokens_mean",
            "Tokens per model batch, on average.",
            value=round(batcher.batched_tokens / batches, 1),
        )
        yield SummaryMetricFamily(
            "conveyor_embed_queue_wait_seconds",
            "Time requests waited for a batch.",
            count_value=batcher.waits,
            sum_value=batcher.waited,
        )
        yield GaugeMetricFamily(
            "conveyor_embed_queue_texts", "Texts waiting for the model.", value=batcher.pending
        )
