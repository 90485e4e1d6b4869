"""Tracing: with an OTLP endpoint set, each job sends a span with a child per stage to a
real OTLP/HTTP receiver (decoded with OpenTelemetry's own protobuf schema); without
one, nothing of OpenTelemetry is imported."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.helpers import run
from tests.support import write_corpus

pytest.importorskip("opentelemetry.exporter.otlp.proto.http")


class Receiver:
    """An OTLP/HTTP trace receiver: ``POST /v1/traces`` with a protobuf body."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.services: set[str] = set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = trace_service_pb2.ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.take(request, self.path)
                answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def take(self, request: Any, path: str) -> None:
        assert path == "/v1/traces", path
        for resource in request.resource_spans:
            for kv in resource.resource.attributes:
                if kv.key == "service.name":
                    self.services.add(kv.value.string_value)
            for scope in resource.scope_spans:
                for s in scope.spans:
                    attributes = {}
                    for kv in s.attributes:
                        v = kv.value
                        attributes[kv.key] = getattr(v, v.WhichOneof("value"))
                    self.spans.append(
                        {
                            "name": s.name,
                            "trace": s.trace_id.hex(),
                            "id": s.span_id.hex(),
                            "parent": s.parent_span_id.hex(),
                            "attributes": attributes,
                            "ok": s.status.code != 2,  # STATUS_CODE_ERROR
                        }
                    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    thread = threading.Thread(target=r.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()


def test_each_job_sends_a_span_with_a_child_per_stage_and_the_merge_joins_it(
    tmp_path: Path, receiver: Receiver
) -> None:
    corpus = write_corpus(
        tmp_path / "in",
        {
            "whales.md": "# Whales\n\nThe blue whale is the largest animal known to have lived.\n",
            "tides.txt": "Tides rise and fall twice a day, pulled by the moon and the sun.\n",
            "broken.pdf": "%PDF-1.7 this is not a PDF at all",
        },
    )
    result = run(
        "ingest",
        str(corpus),
        home=tmp_path / "home",
        check=None,
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
        OTEL_SERVICE_NAME="conveyor-test",
    )
    assert result.returncode in (0, 1), result.stderr  # broken.pdf fails alone
    assert receiver.services == {"conveyor-test"}

    jobs = {
        s["attributes"]["conveyor.source"].rsplit("/", 1)[-1]: s
        for s in receiver.spans
        if s["name"] == "conveyor.job" and "conveyor.source" in s["attributes"]
    }
    assert set(jobs) == {"whales.md", "tides.txt", "broken.pdf"}, receiver.spans

    whales = jobs["whales.md"]
    assert whales["attributes"]["conveyor.status"] == "merge"
    assert whales["attributes"]["conveyor.kind"] == "markdown"
    assert whales["attributes"]["conveyor.bytes"] == (corpus / "whales.md").stat().st_size
    assert whales["attributes"]["conveyor.chunks"] >= 1
    assert whales["attributes"]["conveyor.tokens"] > 5
    children = [s for s in receiver.spans if s["parent"] == whales["id"]]
    names = {s["name"] for s in children}
    assert {"conveyor.fetch", "conveyor.extract", "conveyor.chunk", "conveyor.embed"} <= names
    assert all(s["trace"] == whales["trace"] for s in children)
    merge = [s for s in children if s["name"] == "conveyor.merge"]
    assert len(merge) == 1 and merge[0]["attributes"]["conveyor.chunks"] >= 1, names

    broken = jobs["broken.pdf"]
    assert broken["attributes"]["conveyor.status"] == "failed"
    assert "PDF" in broken["attributes"]["conveyor.error"]
    extract = [s for s in receiver.spans if s["parent"] == broken["id"]]
    assert [s["ok"] for s in extract if s["name"] == "conveyor.extract"] == [False]


def test_without_an_endpoint_nothing_of_opentelemetry_is_imported(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from conveyor import tracing, worker, compactor\n"
        "with tracing.span('job', document='d'):\n"
        "    tracing.annotate(chunks=1); tracing.past('chunk', 0.1)\n"
        "    assert tracing.traceparent() is None\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
