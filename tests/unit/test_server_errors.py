"""One error shape for both HTTP apps (``conveyor.server.errors``): every status a route,
FastAPI or Starlette produces answers ``{"error": {"message", "type"}}``."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from conveyor.server import errors
from conveyor.server.embed import create_app
from conveyor.server.errors import HttpError
from conveyor.settings import Settings
from conveyor.testing import FakeEmbedder


def assert_shape(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type"}
    assert body["error"]["type"] == kind and body["error"]["message"]
    return body


def test_statuses_map_to_error_types() -> None:
    app = FastAPI()
    errors.install(app)

    @app.get("/fail/{status}")
    def fail(status: int) -> None:
        raise HttpError(status, f"failed with {status}")

    @app.get("/typed")
    def typed(n: int) -> int:
        return n

    @app.get("/crash")
    def crash() -> None:
        raise RuntimeError("secret=hunter2 leaked")

    with TestClient(app, raise_server_exceptions=False) as c:
        for status, kind in (
            (401, "unauthorized"),
            (404, "not_found"),
            (409, "conflict"),
            (413, "request_too_large"),
            (415, "unsupported_media_type"),
            (422, "invalid_request"),
            (429, "overloaded"),
            (503, "unavailable"),
            (418, "http_error"),
        ):
            body = assert_shape(c.get(f"/fail/{status}"), status, kind)
            assert body["error"]["message"] == f"failed with {status}"
        assert c.get("/fail/401").headers["www-authenticate"].startswith("Bearer")
        assert_shape(c.get("/no/such/path"), 404, "not_found")
        wrong_method = c.post("/typed")
        assert_shape(wrong_method, 405, "method_not_allowed")
        assert wrong_method.headers["allow"] == "GET"
        invalid = assert_shape(c.get("/typed?n=abc"), 422, "invalid_request")
        assert "query.n" in invalid["error"]["message"]
        crashed = assert_shape(c.get("/crash"), 500, "server_error")
        assert "hunter2" not in crashed["error"]["message"]  # the type only, no details


def test_the_embed_server_answers_in_the_same_shape() -> None:
    gate = threading.Event()

    class Gated(FakeEmbedder):
        def embed(self, texts: Any) -> Any:
            gate.wait(10)
            return super().embed(texts)

    with TestClient(create_app(Settings(), embedder=Gated())) as c:
        assert c.get("/health").json() == {"status": "loading"}
        assert_shape(c.post("/embed", json={"texts": ["a"]}), 503, "unavailable")
        gate.set()
        deadline = time.monotonic() + 10
        while c.get("/health").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert_shape(c.get("/no/such/path"), 404, "not_found")
        assert_shape(c.get("/embed"), 405, "method_not_allowed")
        assert_shape(c.post("/embed", json={"texts": []}), 422, "invalid_request_error")
        assert_shape(c.post("/embed", json={"text": "a"}), 422, "invalid_request_error")
        assert_shape(c.post("/embed", json={"texts": ["a"] * 513}), 413, "request_too_large")
        schema = c.get("/openapi.json").json()
        assert {"413", "422", "429", "503"} <= set(schema["paths"]["/embed"]["post"]["responses"])
        assert "ErrorResponse" in schema["components"]["schemas"]
