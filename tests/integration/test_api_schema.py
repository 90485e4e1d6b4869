"""Property-based fuzzing of the HTTP API from its own OpenAPI schema (schemathesis):
whatever the parameters and bodies, never a server error, and what it answers matches
the schema it publishes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from conveyor.app import Conveyor
from conveyor.server.api import create_api
from conveyor.settings import Settings

KEY = "fuzz-key"


@pytest.fixture(scope="module")
def fuzzed_app(tmp_path_factory: pytest.TempPathFactory, real_embedder: Any) -> Iterator[Any]:
    home = tmp_path_factory.mktemp("fuzz-home")
    docs = home.parent / "fuzz-docs"
    docs.mkdir()
    (docs / "a.txt").write_text("The refund window is thirty days from delivery.\n")
    settings = Settings(
        home=home, api_keys=KEY, max_upload_bytes=64 * 1024, isolate_extraction=False
    )
    with Conveyor(settings, embedder=real_embedder) as cv:
        summary = cv.ingest([Path(docs)])  # a collection to search, a document to read
        assert summary.done == 1
        yield create_api(conveyor=cv)


@pytest.fixture(scope="module")
def api_schema(fuzzed_app: Any) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app)


OPERATIONS = [
    ("POST", "/documents"),
    ("GET", "/documents"),
    ("GET", "/documents/{document_id}"),
    ("DELETE", "/documents/{document_id}"),
    ("GET", "/documents/{document_id}/detail"),
    ("GET", "/documents/{document_id}/history"),
    ("POST", "/ingest"),
    ("GET", "/documents/{document_id}/artifacts/{name}"),
    ("GET", "/documents/{document_id}/pages/{number}"),
    ("GET", "/timings"),
    ("GET", "/search"),
    ("GET", "/queue"),
    ("GET", "/dead-letters"),
    ("POST", "/dead-letters/redrive"),
    ("POST", "/dead-letters/{job_id}/redrive"),
    ("GET", "/status"),
    ("POST", "/events/token"),
    ("GET", "/health"),
    ("GET", "/metrics"),
]
# GET /events streams until it has sent ``limit`` events; nothing changes here, so it
# would wait for ever: its parameters are covered by tests/integration/test_api.py.
NOT_FUZZED = {("GET", "/events")}
# the same examples every run: a failure is reproducible, a pass means the same
SETTINGS: dict[str, Any] = {
    "max_examples": 25,
    "deadline": None,
    "derandomize": True,
    "suppress_health_check": list(HealthCheck),
}


def test_every_operation_is_fuzzed(api_schema: Any) -> None:
    published = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert published == set(OPERATIONS) | NOT_FUZZED


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_no_server_errors_and_answers_match_the_schema(
    api_schema: Any, method: str, path: str
) -> None:
    operation = api_schema[path][method]
    headers = {"x-api-key": KEY}
    seen: dict[str, set[int]] = {"valid": set(), "invalid": set()}

    @given(case=operation.as_strategy(GenerationMode.POSITIVE))
    @settings(**SETTINGS)
    def valid(case: Any) -> None:
        response = case.call_and_validate(
            headers=headers, checks=[not_a_server_error, response_schema_conformance]
        )
        seen["valid"].add(response.status_code)

    @given(case=operation.as_strategy(GenerationMode.NEGATIVE))
    @settings(**SETTINGS)
    def invalid(case: Any) -> None:
        response = case.call_and_validate(headers=headers, checks=[not_a_server_error])
        seen["invalid"].add(response.status_code)

    valid()
    if operation.query or operation.path_parameters or operation.body:
        invalid()
    assert seen["valid"] and max(seen["valid"] | seen["invalid"]) < 500
    if "{" not in path and path not in ("/documents", "/ingest"):  # random ids, random bytes
        assert min(seen["valid"]) < 300, seen  # are rarely a readable file; the rest succeed
