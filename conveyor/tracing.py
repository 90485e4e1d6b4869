"""OpenTelemetry traces, only when asked for: one span per job, a child per stage.

Set ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) and
install the ``otel`` extra; every job then sends a ``conveyor.job`` span with a child
per stage (``conveyor.fetch``, ``.extract``, ``.chunk``, ``.embed``) and, from the
compactor, a ``conveyor.merge`` child joined to the job's trace by the W3C
``traceparent`` the delta carries. Attributes: ``conveyor.document``, ``.collection``,
``.source``, ``.kind``, ``.bytes``, ``.chunks``, ``.tokens``, ``.status``.

Without the variable nothing of OpenTelemetry is imported and every call here is a
no-op. The standard ``OTEL_*`` variables apply (``OTEL_SERVICE_NAME``, default
``conveyor``; ``OTEL_EXPORTER_OTLP_PROTOCOL``: ``http/protobuf``, the default, or
``grpc``; headers, timeouts).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
INSTALL = "pip install 'conveyor[otel]'"

_UNSET: Any = object()
_tracer: Any = _UNSET
_provider: Any = None
_lock = threading.Lock()


def enabled() -> bool:
    return any(os.environ.get(name) for name in ENDPOINTS)


def tracer() -> Any | None:
    """The process's tracer, set up on first use; None when tracing is off."""
    global _tracer
    if _tracer is not _UNSET:
        return _tracer
    with _lock:
        if _tracer is _UNSET:
            _tracer = _setup() if enabled() else None
    return _tracer


def _setup() -> Any | None:
    global _provider
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter,
            )
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
                OTLPSpanExporter,
            )
    except ImportError as exc:
        log.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry (%s) is not installed, "
            "so no traces are sent: %s",
            exc.name or exc,
            INSTALL,
        )
        return None
    name = os.environ.get("OTEL_SERVICE_NAME") or "conveyor"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    atexit.register(provider.shutdown)
    _provider = provider
    return provider.get_tracer("conveyor")


def flush(timeout_s: float = 5.0) -> None:
    """Send what is buffered (the Lambda handler's end of an invocation: the process
    may be frozen before the batch's timer fires)."""
    if _provider is not None:
        _provider.force_flush(int(timeout_s * 1000))


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    return {
        f"conveyor.{k}": v
        for k, v in attributes.items()
        if v is not None and isinstance(v, str | int | float | bool)
    }


@contextmanager
def span(name: str, *, parent: str | None = None, **attributes: Any) -> Iterator[None]:
    """A span named ``conveyor.<name>``, the current one's child (or that of the
    ``parent`` traceparent); an exception raised inside marks it failed."""
    t = tracer()
    if t is None:
        yield
        return
    context = None
    if parent:
        from opentelemetry.trace.propagation.tracecontext import (
            TraceContextTextMapPropagator,
        )

        context = TraceContextTextMapPropagator().extract({"traceparent": parent})
    with t.start_as_current_span(
        f"conveyor.{name}", context=context, attributes=_clean(attributes)
    ):
        yield


def annotate(**attributes: Any) -> None:
    """Add attributes to the current span (the job's, outside any stage)."""
    if tracer() is None:
        return
    from opentelemetry import trace

    current = trace.get_current_span()
    if current.is_recording():
        current.set_attributes(_clean(attributes))


def past(name: str, seconds: float, **attributes: Any) -> None:
    """A child span for a stage that ran elsewhere (chunking in the extraction child)
    and took ``seconds``, ending now."""
    t = tracer()
    if t is None:
        return
    end = time.time_ns()
    started = t.start_span(
        f"conveyor.{name}", start_time=end - int(seconds * 1e9), attributes=_clean(attributes)
    )
    started.end(end_time=end)


def traceparent() -> str | None:
    """The current span as a W3C ``traceparent``, for a delta to carry to the merge."""
    if tracer() is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")
