"""The smaller findings of issue 20 (item 11), each as it is fixed."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import pytest

from conveyor.app import Conveyor
from conveyor.exceptions import DocumentTooLarge, PermanentError
from conveyor.extract import extract
from conveyor.server.api import NO_QUERY_STRINGS, create_api
from conveyor.server.auth import Keys
from conveyor.settings import Settings
from conveyor.testing import FakeEmbedder

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hostile import inflating_pdf, png_header, utf16_without_bom


def test_a_non_ascii_key_matches_as_sent() -> None:
    keys = Keys(["clé-ünïcode"])
    as_latin1_header = "clé-ünïcode".encode().decode("latin-1")  # what Starlette hands on
    assert keys.check(as_latin1_header)
    assert keys.check("clé-ünïcode")
    assert not keys.check("cle-unicode")


def test_the_access_log_drops_query_strings() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/events?token=1700000000.abcdef", "1.1", 200), None,
    )  # fmt: skip
    assert NO_QUERY_STRINGS.filter(record)
    assert "token" not in record.getMessage() and "/events" in record.getMessage()


def test_a_client_leaving_mid_upload_is_one_info_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Conveyor(Settings(home=tmp_path / "home"), embedder=FakeEmbedder()) as cv:
        app = create_api(conveyor=cv)
        boundary = b"b0undary"
        head = b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; '
        head += b'filename="a.txt"\r\n\r\nsome words'
        messages = [
            {"type": "http.request", "body": head, "more_body": True},
            {"type": "http.disconnect"},
        ]
        sent: list[dict] = []

        async def receive() -> dict:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {
            "type": "http", "method": "POST", "path": "/documents", "raw_path": b"/documents",
            "query_string": b"", "root_path": "", "scheme": "http", "http_version": "1.1",
            "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 5000),
            "headers": [
                (b"host", b"127.0.0.1:8000"),
                (b"content-type", b"multipart/form-data; boundary=" + boundary),
            ],
        }  # fmt: skip
        with caplog.at_level(logging.INFO):
            asyncio.run(app(scope, receive, send))
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == []
    assert any("disconnected" in r.getMessage() for r in caplog.records)


def test_a_huge_png_is_refused_with_our_limit_named() -> None:
    with pytest.raises(PermanentError) as caught:
        extract(png_header(20_000, 20_000), options={"max_pixels": 50_000_000})
    assert "400,000,000 pixels, over the limit of 50,000,000" in str(caught.value)
    assert "CONVEYOR_MAX_IMAGE_PIXELS" in str(caught.value)


def test_a_stream_too_large_to_inflate_is_too_large_not_damaged() -> None:
    with pytest.raises(DocumentTooLarge, match="too large to decompress"):
        extract(inflating_pdf())


def test_utf16_without_a_bom_is_text() -> None:
    assert extract(utf16_without_bom(), name="a.txt").text.startswith("Otters hold hands")
    german = "Grüße aus Köln, wo der Dom steht.\n".encode("utf-16-be")
    assert extract(german, name="a.txt").text == "Grüße aus Köln, wo der Dom steht."


def test_a_heartbeat_racing_an_ack_alarms_nobody(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The heartbeat's snapshot of the leases in flight may hold one acked a moment
    after: extending it finds it gone, which is no news (logged at debug)."""
    import threading
    import time

    settings = Settings(home=tmp_path / "home", visibility_timeout=0.3)
    with Conveyor(settings, embedder=FakeEmbedder()) as cv:
        queue = cv.components.queue
        queue.send({"source": "file:///x.txt", "collection": "default", "run": "r"})
        [lease] = queue.receive(1, visibility_timeout=30)
        queue.ack(lease)
        pool = cv.components.worker_pool(concurrency=1)
        pool._in_flight[lease.receipt] = lease  # the snapshot, taken before the ack
        busy = threading.Thread(target=time.sleep, args=(0.5,))
        busy.start()
        pool._threads = [busy]
        with caplog.at_level(logging.DEBUG, logger="conveyor.worker"):
            pool._heartbeat()  # beats every 0.1 s until the job thread ends
        busy.join()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert any("no longer ours" in r.getMessage() for r in caplog.records)
