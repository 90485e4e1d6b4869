"""Summary and topics: offline (extractive) and through an OpenAI-compatible endpoint."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from conveyor.summary import extractive, summarise
from conveyor.testing import FakeEmbedder

TEXT = (
    "The budget review is on Monday. The budget needs cuts in travel and hardware. "
    "Lunch will be pizza again. The budget review needs the finance team and the travel "
    "numbers. Someone parked in the wrong spot."
)


def test_extractive_picks_central_sentences_and_distinct_topics() -> None:
    s = extractive(TEXT, FakeEmbedder(dim=64), sentences=2, topics=4)
    assert s.method == "extractive"
    chosen = s.summary.split(". ")
    assert len(chosen) == 2 and all(part.rstrip(".") in TEXT for part in chosen)
    assert "budget" in s.summary.lower()
    assert 1 <= len(s.topics) <= 4 and len(set(s.topics)) == len(s.topics)
    assert all(t in TEXT.lower() for t in s.topics)


class _Chat(BaseHTTPRequestHandler):
    reply: bytes = b""

    def do_POST(self) -> None:
        length = int(self.headers["content-length"])
        body = json.loads(self.rfile.read(length))
        assert body["messages"][0]["role"] == "user"
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(self.reply)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def chat_server():
    server = HTTPServer(("127.0.0.1", 0), _Chat)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _completion(content: str) -> bytes:
    return json.dumps(
        {"choices": [{"message": {"role": "assistant", "content": content}}]}
    ).encode()


def test_llm_summary_when_configured(chat_server) -> None:
    _Chat.reply = _completion('Here: {"summary": "Budget cuts.", "topics": ["budget", "travel"]}')
    url = f"http://127.0.0.1:{chat_server.server_port}/v1"
    s = summarise([TEXT], FakeEmbedder(), llm_base_url=url, llm_model="tiny-llm", llm_timeout=5)
    assert (s.summary, s.topics, s.method) == ("Budget cuts.", ["budget", "travel"], "llm:tiny-llm")


def test_llm_garbage_or_unreachable_falls_back_to_offline(chat_server) -> None:
    _Chat.reply = _completion("I cannot help with that.")
    url = f"http://127.0.0.1:{chat_server.server_port}/v1"
    s = summarise([TEXT], FakeEmbedder(), llm_base_url=url, llm_model="m", llm_timeout=5)
    assert s.method == "extractive" and s.summary
    dead = summarise(
        [TEXT], FakeEmbedder(), llm_base_url="http://127.0.0.1:9/v1", llm_model="m", llm_timeout=2
    )
    assert dead.method == "extractive"
