"""Client mistakes are 4xx and leave nothing behind (issue 20, items 3, 4 and 11): bad
upload metadata, deep nesting, invalid Unicode; a document is never left queued
without a job."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from conveyor.app import Conveyor
from conveyor.metadata import InvalidMetadata
from conveyor.server.api import create_api
from conveyor.server.embed import create_app
from conveyor.settings import Settings
from conveyor.testing import FakeEmbedder

KEY = "k-hardening"
H = {"x-api-key": KEY}


@pytest.fixture
def intake(tmp_path: Path) -> Iterator[Conveyor]:
    """A home with no worker: uploads are stored and queued, never processed."""
    with Conveyor(Settings(home=tmp_path / "home", api_keys=KEY), embedder=FakeEmbedder()) as cv:
        yield cv


def post(cv: Conveyor, data: bytes, **fields: str) -> httpx.Response:
    """POST /documents through httpx.ASGITransport (no lifespan, no worker)."""
    app = create_api(conveyor=cv)

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            return await c.post(
                "/documents", files={"file": ("a.txt", data)}, data=fields, headers=H
            )

    return asyncio.run(go())


def error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type"}, body
    return str(body["error"]["message"])


def nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


@pytest.mark.parametrize(
    ("metadata", "says"),
    [
        ('{"name": "\\ud800"}', "not valid Unicode"),
        ('{"\\udfff": 1}', "not valid Unicode"),
        ('{"score": NaN}', "finite"),
        ('{"score": -Infinity}', "finite"),
        (nested(900), "nested more than 32 deep"),
        ('{"a": ' + "[" * 30_000 + "]" * 30_000 + "}", "nested more than 32 deep"),
        ('{"a": [' + "[" * 40 + "]" * 40 + "]}", "nested more than 32 deep"),
        ("[1]", "must be a JSON object"),
    ],
)
def test_bad_metadata_is_422_and_stores_nothing(intake: Conveyor, metadata: str, says: str) -> None:
    message = error(post(intake, b"Otters hold hands.\n", metadata=metadata), 422)
    assert says in message
    c = intake.components
    assert c.catalog.documents() == []
    assert [b.key for b in c.blobs.list("uploads/")] == []
    assert c.queue.depth().visible == 0


def test_submit_checks_metadata_before_anything_is_stored(intake: Conveyor) -> None:
    with pytest.raises(InvalidMetadata, match="finite"):
        intake.submit("file:///tmp/x.txt", metadata={"score": float("nan")})
    assert intake.components.catalog.documents() == []


def test_a_queued_document_whose_job_was_lost_is_enqueued_again_by_its_duplicate(
    intake: Conveyor,
) -> None:
    first = post(intake, b"Otters hold hands.\n", metadata='{"k": "v"}')
    assert first.status_code == 202, first.text
    queue = intake.components.queue
    for lease in queue.receive(10, visibility_timeout=60):  # the job is lost
        queue.ack(lease)
    assert queue.depth().visible == 0
    again = post(intake, b"Otters hold hands.\n")
    assert again.status_code == 202 and again.json()["duplicate"] is True
    assert again.json()["id"] == first.json()["id"]
    assert queue.depth().visible == 1
    doc = intake.components.catalog.get(first.json()["id"])
    assert doc is not None and doc["state"] == "queued"
    assert doc["metadata"]["user"] == {"k": "v"}


@pytest.fixture(scope="module")
def embed_client() -> Iterator[TestClient]:
    with TestClient(create_app(Settings(), embedder=FakeEmbedder())) as c:
        deadline = 0
        while c.get("/health").status_code != 200 and deadline < 200:
            deadline += 1
            asyncio.run(asyncio.sleep(0.05))
        yield c


@pytest.mark.parametrize("path", ["/embed", "/v1/embeddings"])
def test_embed_server_answers_invalid_unicode_with_422(embed_client: TestClient, path: str) -> None:
    body: dict[str, Any] = (
        {"texts": ["fine", "\ud800"]} if path == "/embed" else {"input": "\ud800"}
    )
    content = json.dumps(body).encode()  # ASCII: the surrogate travels as an escape
    response = embed_client.post(
        path, content=content, headers={"content-type": "application/json"}
    )
    assert "not valid Unicode" in error(response, 422)


def test_embed_server_answers_deep_nesting_with_422(embed_client: TestClient) -> None:
    response = embed_client.post(
        "/embed",
        content=('{"texts": ' + "[" * 30_000 + "]" * 30_000 + "}").encode(),
        headers={"content-type": "application/json"},
    )
    assert response.status_code in (400, 422)
    error(response, response.status_code)


def test_an_open_api_refuses_other_hosts_and_cross_origin_writes(tmp_path: Path) -> None:
    """No keys: a hostile web page can neither post to the API (its form has an Origin)
    nor reach it by DNS rebinding (its Host is its own name)."""
    with Conveyor(Settings(home=tmp_path / "home"), embedder=FakeEmbedder()) as cv:
        app = create_api(conveyor=cv, host="192.0.2.7")
        with TestClient(app, base_url="http://127.0.0.1:8000") as c:
            upload = {"file": ("a.txt", b"Otters hold hands.\n")}
            evil = c.post("/documents", files=upload, headers={"Origin": "https://evil.example"})
            assert "another origin" in error(evil, 403)
            cross = c.post("/documents", files=upload, headers={"Sec-Fetch-Site": "cross-site"})
            assert "another origin" in error(cross, 403)
            assert cv.components.catalog.documents() == []
            own = c.post("/documents", files=upload, headers={"Origin": "http://127.0.0.1:8000"})
            assert own.status_code == 202, own.text
            assert c.post("/documents", files=upload).status_code == 202  # curl sends no Origin
            rebound = c.get("/documents", headers={"Host": "evil.example:8000"})
            assert "is not this machine" in error(rebound, 403)
            for host in ("localhost:8000", "127.0.0.1", "[::1]:8000", "192.0.2.7:8000"):
                assert c.get("/documents", headers={"Host": host}).status_code == 200, host
            page = c.get("/")
            assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
            assert page.headers["X-Frame-Options"] == "DENY"
            assert c.get("/docs").status_code == 404  # Swagger UI would load a CDN's scripts
            assert c.get("/openapi.json").status_code == 200


def test_an_api_with_keys_takes_any_host(intake: Conveyor) -> None:
    with TestClient(create_api(conveyor=intake), base_url="http://api.example") as c:
        assert c.get("/documents", headers=H).status_code == 200
        assert "Content-Security-Policy" in c.get("/health").headers
