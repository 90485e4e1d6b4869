"""Document descriptions by an LLM: a local server speaking OpenAI's chat completions
API (tests/servers/llm.py), called with the official ``openai`` client; a good answer,
a malformed one retried once, two malformed ones and a timeout (both: the offline
description), and the whole pipeline with the description stored and filterable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from servers.llm import SLEEP_S, SLOW, LlmStub

from conveyor.app import Conveyor
from conveyor.describe import LlmConfig, describe
from conveyor.filters import Filter
from conveyor.settings import Settings
from conveyor.testing import MANUAL, make_structured_pdf

pytest.importorskip("openai", reason="the official client: pip install 'conveyor[llm]'")

OUTLINE = {
    "title": "Bike Manual",
    "outline": [{"title": h, "page": 1, "level": level} for h, level, _ in MANUAL],
}
PAGES = [(n, f"{heading}\n\n{body}") for n, (heading, _, body) in enumerate(MANUAL, 1)]


def _config(stub: LlmStub, **kw: Any) -> LlmConfig:
    return LlmConfig(stub.url, "stub-model", "sk-local", **kw)


def test_one_call_with_the_outline_and_first_pages(llm: LlmStub, real_embedder: Any) -> None:
    found = describe(OUTLINE, PAGES, real_embedder, _config(llm))
    assert found.method == "llm:stub-model" and found.error is None
    assert (found.title, found.type, found.language) == (
        "Invoice 42 from Acme Bikes",
        "invoice",
        "en",
    )
    assert found.keywords == ["invoice", "bicycle service"]
    (request,) = llm.requests
    assert request["model"] == "stub-model" and request["temperature"] == 0
    prompt = request["messages"][0]["content"]
    assert "2.1 Brakes (p. 1)" in prompt and "[page 3]" in prompt and "JSON" in prompt
    assert found.usage["calls"] == 1 and found.usage["prompt_tokens"] == len(prompt.split())
    assert found.usage["completion_tokens"] > 0


def test_the_budget_cuts_the_pages(llm: LlmStub, real_embedder: Any) -> None:
    long_pages = [(n, "word " * 2000) for n in range(1, 20)]
    describe(OUTLINE, long_pages, real_embedder, _config(llm, max_input_tokens=500))
    (request,) = llm.requests
    assert len(request["messages"][0]["content"]) < 500 * 4 + 1000
    assert "[page 2]" not in request["messages"][0]["content"]


def test_a_malformed_answer_is_asked_again(llm: LlmStub, real_embedder: Any) -> None:
    llm.answer('Sure! {"title": "x", "summary": "y"}')  # fields missing
    found = describe(OUTLINE, PAGES, real_embedder, _config(llm))
    assert found.method == "llm:stub-model" and found.type == "invoice"
    assert len(llm.requests) == 2 and found.usage["calls"] == 2
    retry = llm.requests[1]["messages"]
    assert retry[1]["role"] == "assistant" and "not valid" in retry[2]["content"]


def test_two_malformed_answers_give_the_offline_description(
    llm: LlmStub, real_embedder: Any
) -> None:
    llm.answer(
        "no JSON here",
        '{"title": "t", "summary": "s", "keywords": [], "type": "x", "language": "English"}',
    )  # the language is no ISO code
    found = describe(OUTLINE, PAGES, real_embedder, _config(llm))
    assert found.method == "offline" and found.title == "Bike Manual"
    assert "Malformed" in (found.error or "") and found.usage["calls"] == 2
    assert found.summary and found.language == "en"


def test_a_timeout_gives_the_offline_description(llm: LlmStub, real_embedder: Any) -> None:
    llm.answer(SLOW)
    found = describe(OUTLINE, PAGES, real_embedder, _config(llm, timeout=0.5))
    assert found.method == "offline" and "Timeout" in (found.error or "")
    assert len(llm.requests) == 1 and found.usage["calls"] == 1  # a timeout is not asked again
    assert found.summary and found.keywords


def test_a_server_that_is_not_there(real_embedder: Any) -> None:
    config = LlmConfig("http://127.0.0.1:9/v1", "stub-model", timeout=2.0)
    found = describe(OUTLINE, PAGES, real_embedder, config)
    assert found.method == "offline" and "Connection" in (found.error or "")


def test_pipeline_with_an_llm(
    llm: LlmStub, real_embedder: Any, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    make_structured_pdf(str(docs / "invoice.pdf"))
    make_structured_pdf(str(docs / "slow.pdf"), title="Slow Manual")
    llm.answer(GOOD_FIRST := llm_good("brochure"), SLOW)  # one document each, in some order
    monkeypatch.setenv("CONVEYOR_LLM_BASE_URL", llm.url)
    monkeypatch.setenv("CONVEYOR_LLM_MODEL", "stub-model")
    monkeypatch.setenv("CONVEYOR_LLM_TIMEOUT", "0.5")
    settings = Settings(home=home, concurrency=1)
    with Conveyor(settings, embedder=real_embedder) as cv:
        summary = cv.ingest([docs], run="r1")
        assert summary.done == 2 and summary.failed == 0, summary.failures  # never fails
        by_method = {d["metadata"]["description_method"]: d for d in cv.documents()}
        assert set(by_method) == {"llm:stub-model", "offline"}
        described, fallen = by_method["llm:stub-model"], by_method["offline"]
        assert (
            described["type"] == "brochure"
            and described["title"] == json.loads(GOOD_FIRST)["title"]
        )
        assert described["metadata"]["pdf_title"] in {"Bike Manual", "Slow Manual"}
        assert described["metadata"]["llm_usage"]["calls"] == 1
        assert "Timeout" in fallen["metadata"]["llm_error"]
        assert fallen["metadata"]["llm_usage"]["calls"] == 1
        manifest = json.loads(
            cv.components.blobs.get(f"ingestion_output/r1/results/{described['id']}.json")
        )
        assert manifest["metadata"]["llm_usage"] == described["metadata"]["llm_usage"]
        hits = cv.search("brake pads", k=10, where=Filter(where=(("type", "brochure"),)))
        assert hits and {h.document_id for h in hits} == {described["id"]}
    assert SLEEP_S > 0.5


def llm_good(kind: str) -> str:
    return json.dumps(
        {
            "title": "Keeping a bicycle safe",
            "summary": "How to maintain brakes and chain.",
            "keywords": ["brakes", "chain"],
            "type": kind,
            "language": "en",
        }
    )


def test_the_api_document_view_shows_description_links_and_sections(
    real_embedder: Any, home: Path, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from conveyor.server.api import create_api

    docs = tmp_path / "docs"
    docs.mkdir()
    make_structured_pdf(str(docs / "manual.pdf"))
    settings = Settings(home=home, api_keys="k", isolate_extraction=False)
    headers = {"x-api-key": "k"}
    with Conveyor(settings, embedder=real_embedder) as cv:
        assert cv.ingest([docs]).done == 1
        (doc,) = cv.documents()
        with TestClient(create_api(conveyor=cv)) as client:
            view = client.get(f"/documents/{doc['id']}", headers=headers).json()
            details = view["details"]
            assert details["title"] == "Bike Manual" and details["language"] == "en"
            assert details["description_method"] == "offline" and details["keywords"]
            assert [link["page"] for link in details["links_with_pages"]] == [2, 2, 3]
            assert details["outline"][2] == {"title": "2.1 Brakes", "page": 2, "level": 1}
            links = client.get(
                f"/documents/{doc['id']}/artifacts/links.json", headers=headers
            ).json()
            assert links[0]["uri"] == "https://example.com/brakes"
            found = client.get(
                "/search",
                headers=headers,
                params={"q": "replace worn brake pads", "k": 1, "where": "language=en"},
            ).json()
            assert found["hits"][0]["metadata"]["section"] == "2 Maintenance › 2.1 Brakes"
