"""The embed server counts what waits at the door (issue 20, item 6): past the limit it
answers 429 with Retry-After at once, however few threads the machine has; a body over
the size limit is refused before it is parsed."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
from support import serving, wait_for

from conveyor.server.embed import MAX_BODY_BYTES, MAX_PENDING, MAX_TEXTS, create_app
from conveyor.settings import Settings
from conveyor.testing import FakeEmbedder


class Gated(FakeEmbedder):
    """The fake model, held at a gate once warmed up: requests pile up behind it."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if texts != ["warm up"]:
            self.gate.wait(60)
        return super().embed(texts)


def test_sixteen_full_requests_get_429_past_the_limit_without_waiting() -> None:
    model = Gated()
    requests = 16
    admitted = MAX_PENDING // MAX_TEXTS  # 8
    answers: list[httpx.Response] = []
    with serving(create_app(Settings(), embedder=model)) as url:
        body = {"texts": [f"text {i}" for i in range(MAX_TEXTS)]}

        def post(_: int) -> httpx.Response:
            response = httpx.post(url + "/embed", json=body, timeout=120)
            answers.append(response)
            return response

        with ThreadPoolExecutor(requests) as pool:
            futures = [pool.submit(post, i) for i in range(requests)]
            try:  # the refusals come while the admitted requests still wait for the model
                wait_for(lambda: len(answers) >= requests - admitted, 60, "the 429s", 0.1)
                early = list(answers)
            finally:
                model.gate.set()
            codes = sorted(f.result().status_code for f in futures)
    assert {r.status_code for r in early} == {429}
    assert codes == [200] * admitted + [429] * (requests - admitted)
    refused = early[0]
    assert refused.headers["Retry-After"] == "1"
    assert refused.json()["error"]["type"] == "overloaded"


def test_a_body_over_the_limit_is_413_before_it_is_parsed() -> None:
    app = create_app(Settings(), embedder=FakeEmbedder())
    with serving(app) as url:
        big = b'{"texts": ["' + b"a" * (MAX_BODY_BYTES + 1) + b'"]}'
        declared = httpx.post(
            url + "/embed", content=big, headers={"content-type": "application/json"}
        )
        assert declared.status_code == 413
        assert "over the limit" in declared.json()["error"]["message"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            for start in range(0, len(big), 1 << 20):
                yield big[start : start + (1 << 20)]

        streamed = httpx.post(
            url + "/embed", content=chunks(), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413
        assert streamed.json()["error"]["type"] == "request_too_large"
