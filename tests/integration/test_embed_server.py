"""The embed-server with the real model: in-process over httpx, the official openai
client against a running server, and ingestion that survives the server's death."""

from __future__ import annotations

import base64
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from conveyor.app import Conveyor
from conveyor.server.embed import MAX_BATCH_TOKENS, MAX_TEXTS, create_app
from conveyor.settings import Settings
from conveyor.testing import FakeEmbedder, prose


@pytest.fixture(scope="module")
def client(real_embedder):
    with TestClient(create_app(Settings(), embedder=real_embedder)) as c:
        deadline = time.monotonic() + 60
        while c.get("/health").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        yield c


def test_health_embed_and_openai_shapes(client, real_embedder) -> None:
    health = client.get("/health").json()
    assert health["model"] == "sentence-transformers/all-MiniLM-L6-v2" and health["dim"] == 384
    assert health["backend"] == "torch"  # the server's model here; named as --backend names it
    texts = ["the cat sat on the mat", "quarterly revenue grew"]
    direct = real_embedder.embed(texts)
    body = client.post("/embed", json={"texts": texts}).json()
    served = np.asarray(body["embeddings"], dtype=np.float32)
    assert body["dim"] == 384 and served.shape == (2, 384)
    assert np.allclose(np.sum(served * direct, axis=1), 1.0, atol=1e-4)

    one = client.post("/v1/embeddings", json={"input": texts[0], "model": health["model"]}).json()
    assert one["object"] == "list" and one["data"][0]["index"] == 0
    assert one["usage"]["prompt_tokens"] > 0
    b64 = client.post("/v1/embeddings", json={"input": texts, "encoding_format": "base64"})
    decoded = np.frombuffer(base64.b64decode(b64.json()["data"][1]["embedding"]), "<f4")
    assert np.allclose(decoded, served[1], atol=1e-5)


def test_limits_and_errors_have_one_shape(client) -> None:
    too_many = client.post("/embed", json={"texts": ["x"] * (MAX_TEXTS + 1)})
    too_long = client.post("/embed", json={"texts": ["x" * 40_000]})
    malformed = client.post("/embed", json={"text": "oops"})
    not_json = client.post("/embed", content=b"{", headers={"content-type": "application/json"})
    bad_format = client.post("/v1/embeddings", json={"input": "a", "encoding_format": "hex"})
    for response, status in (
        (too_many, 413),
        (too_long, 422),
        (malformed, 422),
        (not_json, 422),
        (bad_format, 422),
    ):
        assert response.status_code == status
        assert set(response.json()["error"]) == {"message", "type"}
    metrics = client.get("/metrics").text
    assert _sample(metrics, "conveyor_embed_requests_total", path="/embed", status="413") == 1
    assert _sample(metrics, "conveyor_embed_latency_seconds_bucket", le="+Inf") >= 1


def test_every_rejected_request_is_counted(client) -> None:
    """The 422s of bodies that never reach the route (FastAPI's validation) count too."""
    before = _statuses(client)
    rejected = [
        ("/embed", {"texts": []}),
        ("/embed", {"text": "x"}),
        ("/v1/embeddings", {"input": []}),
        ("/v1/embeddings", {"model": "all-MiniLM-L6-v2"}),
    ]
    for path, body in rejected:
        assert client.post(path, json=body).status_code == 422, (path, body)
    after = _statuses(client)
    assert after[("/embed", "422")] - before.get(("/embed", "422"), 0) == 2
    assert after[("/v1/embeddings", "422")] - before.get(("/v1/embeddings", "422"), 0) == 2


def test_an_unknown_model_is_404_model_not_found(client) -> None:
    unknown = client.post("/v1/embeddings", json={"input": "a", "model": "text-embedding-3-small"})
    assert unknown.status_code == 404
    error = unknown.json()["error"]
    assert error["type"] == "model_not_found"
    assert "sentence-transformers/all-MiniLM-L6-v2" in error["message"]  # what is served
    for name in ("sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2", None):
        body = {"input": "a", **({"model": name} if name else {})}
        assert client.post("/v1/embeddings", json=body).status_code == 200, name
    counted = _statuses(client)
    assert counted[("/v1/embeddings", "404")] >= 1


def _statuses(client) -> dict[tuple[str, str], float]:
    counts = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for s in family.samples:
            if s.name == "conveyor_embed_requests_total":
                counts[(s.labels["path"], s.labels["status"])] = s.value
    return counts


def test_concurrent_requests_are_merged_and_split_back(client, real_embedder) -> None:
    requests = [
        [" ".join(prose(50 + i * 4 + j, 200).split()[: 10 + 60 * j]) for j in range(4)]
        for i in range(6)
    ]
    before = _metric(client, "conveyor_embed_batches_total")
    with ThreadPoolExecutor(6) as pool:
        bodies = list(pool.map(lambda t: client.post("/embed", json={"texts": t}).json(), requests))
    for texts, body in zip(requests, bodies, strict=True):  # mixed lengths, back in order
        cosine = np.sum(np.asarray(body["embeddings"]) * real_embedder.embed(texts), axis=1)
        assert np.allclose(cosine, 1.0, atol=1e-4)
    assert _metric(client, "conveyor_embed_batches_total") - before < len(requests)  # merged
    assert 0 < _metric(client, "conveyor_embed_batch_tokens_mean") <= MAX_BATCH_TOKENS
    assert _metric(client, "conveyor_embed_queue_wait_seconds_count") >= len(requests)


def _sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise AssertionError(f"{name} {labels} not in /metrics")


def _metric(client, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


class Slow(FakeEmbedder):
    def embed(self, texts):
        time.sleep(0.3)
        return super().embed(texts)


def test_loading_is_503_and_overload_is_429() -> None:
    gate = threading.Event()

    class Gated(Slow):
        def embed(self, texts):
            gate.wait(10)
            return super().embed(texts)

    with TestClient(create_app(Settings(), embedder=Gated(), max_pending=2)) as c:
        assert c.get("/health").status_code == 503
        assert c.post("/embed", json={"texts": ["a"]}).status_code == 503
        gate.set()
        deadline = time.monotonic() + 10
        while c.get("/health").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with ThreadPoolExecutor(8) as pool:
            codes = list(
                pool.map(
                    lambda _: c.post("/embed", json={"texts": ["a", "b"]}).status_code, range(8)
                )
            )
        assert 200 in codes and 429 in codes and set(codes) <= {200, 429}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(real_embedder):
    import uvicorn

    port = free_port()
    config = uvicorn.Config(
        create_app(Settings(), embedder=real_embedder),
        host="127.0.0.1",
        port=port,
        log_level="warning",
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/health").status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline
        time.sleep(0.1)
    yield url, srv
    srv.should_exit = True
    thread.join(10)


def test_official_openai_client(server, real_embedder) -> None:
    from openai import OpenAI

    url, _ = server
    client = OpenAI(base_url=url + "/v1", api_key="unused")
    result = client.embeddings.create(model="all-MiniLM-L6-v2", input=["hello world", "bye"])
    assert [d.index for d in result.data] == [0, 1]
    from openai import NotFoundError

    with pytest.raises(NotFoundError, match="not served here") as raised:
        client.embeddings.create(model="text-embedding-3-small", input="hello")
    assert raised.value.type == "model_not_found"
    vector = np.asarray(result.data[0].embedding, dtype=np.float32)
    assert float(vector @ real_embedder.embed(["hello world"])[0]) > 0.9999
    client.close()


def test_ingest_survives_the_service_dying(
    server, real_embedder, home: Path, tmp_path: Path
) -> None:
    url, srv = server
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(16):
        (docs / f"d{i:02d}.txt").write_text(prose(100 + i, 500))
    settings = Settings(home=home, embedding_url=url, embedding_cache=False)
    with Conveyor(settings, embedder=real_embedder) as cv:
        result = {}
        thread = threading.Thread(target=lambda: result.update(s=cv.ingest([docs])))
        thread.start()
        deadline = time.monotonic() + 60
        while cv.components.catalog.counts()["done"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        srv.should_exit = True  # the service goes away mid-run
        thread.join(120)
        summary = result["s"]
        assert (summary.done, summary.failed) == (16, 0)
        assert cv.components.query_embedder.using_fallback
        hits = cv.search("billing service rotates invoices", k=1)
        assert hits and hits[0].source.startswith("file://")
