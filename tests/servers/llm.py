"""A local server speaking OpenAI's chat completions API (``POST /v1/chat/completions``),
answering what a test queues: a good description, a malformed one, or nothing in time.

``LlmStub.answer(...)`` queues answers (each a content string, or :data:`SLOW` to sleep
past the client's timeout); with none queued it answers :data:`GOOD`. ``requests`` keeps
each request's body, so tests see the prompt and the retry. Usage is counted as OpenAI
does, in ``usage.prompt_tokens``/``completion_tokens`` (words here).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

try:  # the route's annotations name them (FastAPI resolves them from this module)
    from fastapi import Request
    from fastapi.responses import Response
except ImportError:  # the server extra is missing: the fixture below skips
    pass

GOOD = json.dumps(
    {
        "title": "Invoice 42 from Acme Bikes",
        "summary": "An invoice for a bicycle service.",
        "keywords": ["invoice", "bicycle service"],
        "type": "Invoice",
        "language": "en",
    }
)
SLOW = "<sleep>"
SLEEP_S = 3.0


@dataclass
class LlmStub:
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    _answers: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, *contents: str) -> None:
        with self._lock:
            self._answers += contents

    def reset(self) -> None:
        with self._lock:
            self._answers.clear()
            self.requests.clear()

    def _next(self, body: dict[str, Any]) -> str:
        with self._lock:
            self.requests.append(body)
            return self._answers.pop(0) if self._answers else GOOD


def create_llm_app(stub: LlmStub) -> Any:
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await request.json()
        content = stub._next(body)
        if content == SLOW:
            await asyncio.sleep(SLEEP_S)
            content = GOOD
        prompt = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        completion = len(content.split())
        return JSONResponse(
            {
                "id": "chatcmpl-stub",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            }
        )

    return app


@pytest.fixture(scope="module")
def llm_server() -> Iterator[LlmStub]:
    pytest.importorskip("fastapi", reason="the server extra: pip install 'conveyor[server]'")
    from support import serving

    stub = LlmStub()
    with serving(create_llm_app(stub)) as url:
        stub.url = url + "/v1"
        yield stub


@pytest.fixture
def llm(llm_server: LlmStub) -> Iterator[LlmStub]:
    """The module's chat stub with nothing queued and no requests recorded."""
    llm_server.reset()
    yield llm_server
    llm_server.reset()
