"""Remote embedding providers: the embedder conformance suite over each (OpenAI's API
against a real embed server; Bedrock Titan v2 and Cohere v3 and a SageMaker TEI
endpoint through boto3 against a local server speaking their bodies), then what a
provider does when it throttles, fails or refuses, what a document is billed, and
an embed server fronting a provider."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conformance.embedder import *  # noqa: F403 (the suite's tests and fixtures)
from conformance.embedder import LONG, PROVIDERS, TEXTS, UNICODE, EmbedderBackend
from servers.providers import KEY, ProviderStub

from conveyor.app import Conveyor
from conveyor.embedding import Embedder
from conveyor.embedding.aws import BedrockEmbedder, SageMakerEmbedder
from conveyor.embedding.openai import OpenAIEmbedder
from conveyor.embedding.remote import Limits, ProviderBusy, ProviderRefused, RetryPolicy, metered
from conveyor.exceptions import PermanentError, TransientError
from conveyor.settings import DEFAULT_MODEL, Settings

FAST = RetryPolicy(attempts=3, base=0.01, cap=0.05)


@pytest.fixture(params=[backend.param() for backend in PROVIDERS])
def embedder_backend(request: pytest.FixtureRequest) -> EmbedderBackend:
    return request.param  # type: ignore[no-any-return]


def test_vectors_agree_with_torch(
    embedder: Embedder, embedder_backend: EmbedderBackend, real_embedder: Embedder
) -> None:
    texts = [*TEXTS, LONG, *UNICODE]
    vectors = embedder.embed(texts)[:, :384]  # the stub pads the model's 384 with zeros
    cosine = np.sum(vectors * real_embedder.embed(texts), axis=1)
    assert embedder_backend.torch_cosine is not None
    assert cosine.min() >= embedder_backend.torch_cosine, cosine.round(4).tolist()


def _openai(stub: ProviderStub, **kw: object) -> OpenAIEmbedder:
    kw.setdefault("api_key", KEY)
    kw.setdefault("retry", FAST)
    return OpenAIEmbedder(DEFAULT_MODEL, base_url=stub.url + "/v1", **kw)  # type: ignore[arg-type]


# -- OpenAI: throttling, transient and permanent failures ------------------------


def test_openai_honours_retry_after(stub: ProviderStub) -> None:
    client = _openai(stub, retry=RetryPolicy(attempts=3, base=5.0))  # backoff alone: 5 s
    stub.fail_next(429, "Rate limit reached", headers={"Retry-After": "0.3"})
    vectors = client.embed(TEXTS)
    assert vectors.shape == (len(TEXTS), 384)
    [(first, _, _), (second, _, _)] = stub.requests
    assert 0.28 <= second - first < 4.0  # waited what the server asked, not the backoff
    client.close()


def test_openai_retries_what_may_pass_and_gives_up_as_transient(stub: ProviderStub) -> None:
    client = _openai(stub)
    stub.fail_next(503, "overloaded", times=2)
    assert client.embed(["a", "b"]).shape == (2, 384)
    assert len(stub.requests) == 3
    stub.reset()
    stub.fail_next(429, "Rate limit reached", times=3)
    with pytest.raises(ProviderBusy) as info:
        client.embed(["a"])
    assert isinstance(info.value, TransientError) and "3 attempts" in str(info.value)
    client.close()


def test_openai_bad_key_fails_at_once_without_the_key(stub: ProviderStub) -> None:
    wrong = "sk-wrong-0123456789abcdef"
    client = _openai(stub, api_key=wrong)
    with pytest.raises(ProviderRefused) as info:
        client.embed(["a"])
    message = str(info.value)
    assert isinstance(info.value, PermanentError) and "API key" in message
    assert "OPENAI_API_KEY" in message and "89abcdef" not in message and wrong not in message
    assert len(stub.requests) == 1  # not retried
    assert wrong not in repr(client)
    client.close()


def test_openai_input_refused_with_a_redacted_reason(stub: ProviderStub) -> None:
    client = _openai(stub)
    stub.fail_next(400, f"maximum context length is 8192 tokens (key {KEY})", error_type="x")
    with pytest.raises(ProviderRefused) as info:
        client.embed(["a"])
    message = str(info.value)
    assert "HTTP 400" in message and "8192 tokens" in message and KEY not in message
    stub.fail_next(404, "The model does not exist")
    with pytest.raises(ProviderRefused, match="does not know the model"):
        client.embed(["a"])
    client.close()


def test_openai_batches_to_the_limits_and_reports_usage(stub: ProviderStub) -> None:
    client = _openai(
        stub, limits=Limits(max_inputs=3, max_request_tokens=10**6, max_input_tokens=512)
    )
    with metered() as usage:
        client.embed([f"text number {i}" for i in range(7)])
    assert [n for _, _, n in stub.requests] == [3, 3, 1]
    assert usage.as_dict() == {"tokens": 21, "requests": 3, "texts": 7}  # the server's count
    client.close()


def test_openai_dimensions(stub: ProviderStub) -> None:
    client = _openai(stub, dimensions=128)
    assert client.dim == 128 and client.model_id == f"{DEFAULT_MODEL}?dimensions=128"
    vectors = client.embed(TEXTS)
    assert vectors.shape == (len(TEXTS), 128)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    client.close()


# -- Bedrock and SageMaker through boto3 -----------------------------------------


def test_bedrock_throttling_is_retried_and_tokens_counted(stub: ProviderStub) -> None:
    titan = BedrockEmbedder(
        "amazon.titan-embed-text-v2:0", region="us-east-1", endpoint_url=stub.url, retry=FAST
    )
    stub.fail_next(429, "Too many requests, please wait", times=2)
    with metered() as usage:
        vectors = titan.embed(["one two three", "four five"])
    assert vectors.shape == (2, 1024)
    assert len(stub.requests) == 4  # one text a request; the first twice throttled
    assert usage.tokens == 5 and usage.requests == 2
    stub.fail_next(400, "Malformed input request: expected maxLength: 50000")
    with pytest.raises(ProviderRefused, match=r"refused the input.*ValidationException"):
        titan.embed(["x"])
    stub.fail_next(403, "not authorized to invoke")
    with pytest.raises(ProviderRefused, match="credentials"):
        titan.embed(["x"])
    titan.close()


def test_cohere_batches_96_texts(stub: ProviderStub) -> None:
    cohere = BedrockEmbedder("cohere.embed-english-v3", region="us-east-1", endpoint_url=stub.url)
    assert cohere.embed([f"t{i}" for i in range(100)]).shape == (100, 1024)
    assert [n for _, _, n in stub.requests] == [96, 4]
    cohere.close()


def test_sagemaker_errors(stub: ProviderStub) -> None:
    tei = SageMakerEmbedder("minilm", region="us-east-1", endpoint_url=stub.url, retry=FAST)
    stub.fail_next(429, "throttled")
    assert tei.embed(["a"]).shape == (1, 384) and len(stub.requests) == 2
    stub.fail_next(400, "Input validation error: inputs must have less than 512 tokens")
    with pytest.raises(ProviderRefused, match="SageMaker endpoint minilm refused the input"):
        tei.embed(["a"])
    stub.fail_next(503, "unavailable", times=3)
    with pytest.raises(ProviderBusy):
        tei.embed(["a"])
    tei.close()


def test_unreachable_endpoint_is_transient() -> None:
    tei = SageMakerEmbedder(
        "x", region="us-east-1", endpoint_url="http://127.0.0.1:1", retry=FAST, dim=384
    )
    with pytest.raises(ProviderBusy):
        tei.embed(["a"])
    tei.close()


# -- in the pipeline, and behind an embed server -----------------------------------


def test_ingest_with_a_provider_records_the_bill(
    stub: ProviderStub, real_embedder: Embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("a", "b", "c"):
        (docs / f"{name}.txt").write_text(f"document {name}: " + "the lava flows slowly. " * 40)
    url = f"openai://{DEFAULT_MODEL}?base_url={stub.url}/v1&max_inputs=4"
    settings = Settings(home=tmp_path / "home", embedder=url, isolate_extraction=False)
    with Conveyor(settings, embedder=real_embedder) as cv:
        summary = cv.ingest([docs])
        assert (summary.done, summary.failed) == (3, 0)
        [doc, *_] = cv.components.catalog.documents(state="done")
        usage = doc["metadata"]["usage"]
        assert usage["tokens"] > 0 and usage["requests"] >= 1
        run = doc["run"]
        total = cv._documents.usage(run)
        assert total["documents"] == 3 and total["tokens"] == sum(
            d["metadata"]["usage"]["tokens"] for d in cv.components.catalog.documents(run=run)
        )
        assert summary.tokens == total["tokens"] == summary.as_dict()["tokens"]
        manifest = json.loads(
            (settings.blobs_path / f"ingestion_output/{run}/results/{doc['id']}.json").read_text()
        )
        assert manifest["metadata"]["usage"] == usage
        assert manifest["backend"] == "openai"
        hits = cv.search("lava flows", k=1)
        assert hits and hits[0].source.endswith(".txt")


def test_a_refused_document_fails_alone_with_a_safe_reason(
    stub: ProviderStub, real_embedder: Embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("alpha " * 50)
    (docs / "b.txt").write_text("beta " * 50)
    url = f"openai://{DEFAULT_MODEL}?base_url={stub.url}/v1"
    settings = Settings(
        home=tmp_path / "home", embedder=url, isolate_extraction=False, embedding_cache=False
    )
    with Conveyor(settings, embedder=real_embedder) as cv:
        cv.components.remote.embed(["probe"])  # the dimension is known before the run
        stub.fail_next(400, f"input too long for {KEY}")
        summary = cv.ingest([docs])
        assert (summary.done, summary.failed) == (1, 1)
        [failed] = cv.components.catalog.documents(state="failed")
        assert "HTTP 400" in failed["error"] and KEY not in failed["error"]
        assert failed["error_kind"] == "permanent"


def test_embed_server_fronts_a_provider(
    stub: ProviderStub, monkeypatch: pytest.MonkeyPatch, real_embedder: Embedder
) -> None:
    from support import serving

    from conveyor.server.embed import create_app

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    settings = Settings(embedder=f"openai://{DEFAULT_MODEL}?base_url={stub.url}/v1")
    with serving(create_app(settings)) as url:
        client = OpenAIEmbedder(DEFAULT_MODEL, base_url=url + "/v1", api_key="fleet-needs-no-key")
        vectors = client.embed(TEXTS)
        assert np.allclose(vectors, real_embedder.embed(TEXTS), atol=1e-4)
        assert any(path == "/v1/embeddings" for _, path, _ in stub.requests)
        client.close()


def test_the_lambda_handler_embeds_with_a_provider_without_loading_a_model(
    stub: ProviderStub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lambda_events import LambdaContext, ids, sqs_event, sqs_record

    from conveyor.aws import lambda_handler

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    source = tmp_path / "whales.txt"
    source.write_text("Humpback whales sing long songs while migrating to warm waters.")
    settings = Settings(
        home=tmp_path / "home",
        embedder=f"openai://{DEFAULT_MODEL}?base_url={stub.url}/v1",
        embedding_backend="torch",  # the tokenizer's model, which must stay unloaded
    )
    lambda_handler.reset()
    try:
        warm = lambda_handler.warm(settings)
        job = {"source": source.as_uri(), "collection": "default", "run": "lambda"}
        assert ids(lambda_handler.handler(sqs_event(sqs_record(job)), LambdaContext())) == []
        [doc] = warm.components.catalog.documents(state="done")
        assert doc["metadata"]["usage"]["tokens"] > 0
        assert warm.components.local_embedder._model is None  # type: ignore[attr-defined]
    finally:
        lambda_handler.reset()
