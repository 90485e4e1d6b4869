"""The recorder's upload endpoint on a real ``conveyor serve`` (real Whisper, real
model), called with real ``curl`` in the issue's exact form; then searched by
device and time from the CLI and the API."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from acceptance.helpers import run, start
from support import free_port, wait_for

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("curl") is None,
    reason="needs espeak-ng and curl (make test installs them)",
)

KEY = "recorder-test-key"
H = {"x-api-key": KEY}
SAID = "The Denver invoice is owned by Maria. She will send the invoice on Friday."
OTHER = "The garden needs water every morning while the weather stays dry."


def speech(text: str, path: Path) -> Path:
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(path), text], check=True)
    return path


def curl(url: str, *fields: str) -> tuple[int, dict[str, Any]]:
    """``curl -X POST URL/ingest -H "x-api-key: …" -F …``: its status and JSON body."""
    args = ["curl", "-sS", "-X", "POST", f"{url}/ingest", "-H", f"x-api-key: {KEY}"]
    for field in fields:
        args += ["-F", field]
    out = subprocess.run(
        [*args, "-w", "\n%{http_code}"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    body, _, code = out.rpartition("\n")
    return int(code), json.loads(body)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("recorder")
    port, home, log = free_port(), root / "home", root / "serve.log"
    process = start(
        "serve", "--port", str(port), "--workers", "1", home=home, log=log, CONVEYOR_API_KEYS=KEY
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return process.poll() is not None

    try:
        wait_for(up, 60, "the server to start")
        assert process.poll() is None, log.read_text()
        yield {"url": url, "home": home, "log": log, "root": root}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def uploaded(server: dict[str, Any]) -> dict[str, Any]:
    """Two recordings from two devices on two days, processed."""
    url, root = server["url"], server["root"]
    wav = speech(SAID, root / "test.wav")
    code, first = curl(
        url,
        "deviceId=esp32-test",
        "startedAt=2025-12-10T10:00:00Z",
        "endedAt=2025-12-10T10:05:00Z",
        f"audio=@{wav}",
    )
    assert code == 202, first
    assert first["status_url"] == f"/documents/{first['id']}" and first["kind"] == "audio"
    code, again = curl(  # a device that retries: the same bytes are the same document
        url,
        "deviceId=esp32-test",
        "startedAt=2025-12-10T10:00:00Z",
        "endedAt=2025-12-10T10:05:00Z",
        f"audio=@{wav}",
    )
    assert code == 202 and again["id"] == first["id"] and again["duplicate"] is True
    code, second = curl(
        url,
        "deviceId=kitchen-2",
        "startedAt=2025-12-11T09:00:00+01:00",
        f"file=@{speech(OTHER, root / 'other.wav')}",
    )
    assert code == 202, second

    def settled() -> bool:
        states = [
            httpx.get(f"{url}/documents/{d['id']}", headers=H, timeout=10).json()["state"]
            for d in (first, second)
        ]
        assert "failed" not in states, states
        return states == ["done", "done"]

    wait_for(settled, 240, "both recordings to be transcribed and merged")
    return {"first": first["id"], "second": second["id"]}


def test_the_recorders_fields_are_kept_on_the_document(
    server: dict[str, Any], uploaded: dict[str, Any]
) -> None:
    doc = httpx.get(f"{server['url']}/documents/{uploaded['first']}", headers=H).json()
    assert doc["metadata"] == {
        "device_id": "esp32-test",
        "started_at": "2025-12-10T10:00:00+00:00",
        "ended_at": "2025-12-10T10:05:00+00:00",
    }
    other = httpx.get(f"{server['url']}/documents/{uploaded['second']}", headers=H).json()
    assert other["metadata"] == {
        "device_id": "kitchen-2",
        "started_at": "2025-12-11T09:00:00+01:00",
    }
    detail = httpx.get(f"{server['url']}/documents/{uploaded['first']}/detail", headers=H).json()
    clocks = [c["wall_clock"] for c in detail["first_chunks"]]
    assert clocks and all(re.fullmatch(r"10:0\d:\d\d–10:0\d:\d\d", c) for c in clocks), clocks


def test_search_by_device_and_time_from_the_cli(
    server: dict[str, Any], uploaded: dict[str, Any]
) -> None:
    home = server["home"]

    def ids(*filters: str) -> set[str]:
        out = run("search", "invoice", "-k", "20", "--json", *filters, home=home).stdout
        return {h["document_id"] for h in json.loads(out)}

    both = {uploaded["first"], uploaded["second"]}
    assert ids() == both
    assert ids("--where", "device_id=esp32-test", "--since", "2025-12-10T00:00:00Z") == {
        uploaded["first"]
    }
    assert ids("--where", "device_id=kitchen-2") == {uploaded["second"]}
    assert ids("--since", "2025-12-11T00:00:00Z") == {uploaded["second"]}  # 08:00 UTC
    assert ids("--until", "2025-12-10T23:59:59Z") == {uploaded["first"]}
    assert ids("--since", "2025-12-10T10:00:01Z", "--until", "2025-12-11T07:59:59Z") == set()

    text = run(
        "search", "who owns the Denver invoice?", "--where", "device_id=esp32-test", home=home
    ).stdout
    first_hit = text.splitlines()[0]
    assert re.search(r"test\.wav \(\d\d:\d\d–\d\d:\d\d · 10:0\d:\d\d–10:0\d:\d\d\)", first_hit), (
        text
    )
    bad = run("search", "x", "--since", "yesterday", home=home, check=2)
    assert "--since" in bad.stderr and "ISO 8601" in bad.stderr


def test_search_by_device_and_time_from_the_api(
    server: dict[str, Any], uploaded: dict[str, Any]
) -> None:
    url = server["url"]

    def hits(**params: Any) -> list[dict[str, Any]]:
        answer = httpx.get(f"{url}/search", headers=H, params={"q": "invoice", "k": 20, **params})
        assert answer.status_code == 200, answer.text
        return list(answer.json()["hits"])

    found = hits(where="device_id=esp32-test", since="2025-12-10T00:00:00Z")
    assert found and {h["document_id"] for h in found} == {uploaded["first"]}
    assert all(re.fullmatch(r"10:0\d:\d\d–10:0\d:\d\d", h["wall_clock"]) for h in found)
    assert {h["document_id"] for h in hits(until="2025-12-10T12:00:00Z")} == {uploaded["first"]}
    assert {h["document_id"] for h in hits(since="2025-12-11")} == {uploaded["second"]}
    late = httpx.get(f"{url}/search", headers=H, params={"q": "x", "since": "soon"})
    assert late.status_code == 422 and "since" in late.json()["error"]["message"]


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        (["startedAt=2025-12-10 at ten", "endedAt=2025-12-10T10:05:00Z"], "startedAt"),
        (["startedAt=2025-12-10T10:00:00Z", "endedAt=2025-12-10T09:59:59Z"], "endedAt"),
        (["startedAt=2025-12-10T10:00:00", "endedAt=2025-12-10T10:05:00Z"], "startedAt"),
        (["startedAt=2025-12-10T10:00:00Z", "endedAt=2025-13-10T10:05:00Z"], "endedAt"),
    ],
)
def test_bad_times_are_a_422_naming_the_field(
    server: dict[str, Any], fields: list[str], named: str
) -> None:
    wav = server["root"] / "bad-times.wav"
    if not wav.exists():
        speech("A recording sent with a bad time.", wav)
    code, body = curl(server["url"], "deviceId=esp32-test", *fields, f"audio=@{wav}")
    assert code == 422, body
    assert body["error"]["message"].startswith(f"{named}: "), body


def _stored(server: dict[str, Any]) -> tuple[int, int]:
    docs = httpx.get(f"{server['url']}/documents", headers=H, params={"limit": 1000}).json()
    blobs = server["home"] / "blobs" / "uploads"
    return len(docs), len(list(blobs.rglob("*"))) if blobs.exists() else 0


def test_a_truncated_upload_fails_with_a_reason_and_stores_nothing(
    server: dict[str, Any], uploaded: dict[str, Any]
) -> None:
    before = _stored(server)
    audio = speech("This upload never arrives whole.", server["root"] / "cut.wav").read_bytes()
    boundary = "conveyorboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="deviceId"\r\n\r\nesp32-test\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="startedAt"\r\n\r\n'
        "2025-12-10T11:00:00Z\r\n"
        f'--{boundary}\r\nContent-Disposition: form-data; name="audio"; filename="cut.wav"'
        "\r\nContent-Type: audio/wav\r\n\r\n"
    ).encode()
    whole = head + audio + f"\r\n--{boundary}--\r\n".encode()
    kind = {"content-type": f"multipart/form-data; boundary={boundary}", **H}

    # a multipart body cut short: it arrives, but without its closing boundary
    cut = httpx.post(f"{server['url']}/ingest", headers=kind, content=head + audio[:2000])
    assert cut.status_code == 422, cut.text
    assert "ends before its closing boundary" in cut.json()["error"]["message"]

    # Content-Length larger than the body: the connection closes half way
    port = int(server["url"].rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        raw.sendall(
            (
                f"POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: {KEY}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                f"Content-Length: {len(whole)}\r\n\r\n"
            ).encode()
            + whole[: len(whole) // 2]
        )
        raw.shutdown(socket.SHUT_WR)
        raw.recv(65536)  # the server closes it (or answers, if it still can)
    wait_for(lambda: "cut short" in server["log"].read_text(), 30, "the server to log it")
    said = [line for line in server["log"].read_text().splitlines() if "cut short" in line]
    assert f"of the {len(whole):,} its Content-Length announced" in said[-1], said
    assert _stored(server) == before  # no document, no blob: nothing half-stored
