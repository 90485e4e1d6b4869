"""A PostgreSQL server that stops (issue 20, item 7): the API answers 503 with
Retry-After at once instead of a 500 after the pool's 30 s, errors are transient
everywhere, and everything recovers by itself when the server is back."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from support import wait_for

from conveyor.app import Conveyor
from conveyor.exceptions import BackendUnavailable, classify
from conveyor.server.api import create_api
from conveyor.settings import Settings
from conveyor.testing import FakeEmbedder

KEY = "k-outage"
H = {"x-api-key": KEY}


def test_a_stopped_database_is_503_at_once_and_recovers(
    own_postgres_server,
    home: Path,  # type: ignore[no-untyped-def]
) -> None:
    server = own_postgres_server
    settings = Settings(home=home, queue_url=server.url, catalog_url=server.url, api_keys=KEY)
    with Conveyor(settings, embedder=FakeEmbedder()) as cv:
        app = create_api(conveyor=cv)
        with TestClient(app) as client:
            assert client.get("/documents", headers=H).status_code == 200
            server.halt()
            try:
                for path in ("/documents", "/documents", "/dead-letters", "/documents"):
                    started = time.monotonic()
                    response = client.get(path, headers=H)
                    took = time.monotonic() - started
                    assert response.status_code == 503, response.text
                    assert response.headers["Retry-After"] == "2"
                    body = response.json()
                    assert body["error"]["type"] == "unavailable"
                    assert "unreachable" in body["error"]["message"]
                    assert server.password not in body["error"]["message"]
                    assert took < 10, f"{path} took {took:.1f} s (the pool waits 30 s)"
                try:
                    cv.submit("file:///nowhere/a.txt")
                except BackendUnavailable as exc:
                    assert classify(exc) == "transient"
                else:
                    raise AssertionError("submit with the database down did not fail")
            finally:
                server.resume()

            def answers() -> bool:
                try:
                    return client.get("/documents", headers=H).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_for(answers, 60, "the API to recover once the database is back", 0.5)
            accepted = client.post(
                "/documents", headers=H, files={"file": ("a.txt", b"Otters hold hands.\n")}
            )
            assert accepted.status_code == 202, accepted.text
