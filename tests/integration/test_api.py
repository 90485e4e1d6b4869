"""The HTTP API in-process over httpx: auth, uploads and their limits, documents, search with
the real model, dead letters, server-sent events and metrics.

One app with one in-process worker (``workers=1``) serves the module; upload edge cases
that need no worker go through ``httpx.ASGITransport``, which streams the request body
piece by piece as a real server would.
"""

from __future__ import annotations

import asyncio
import json
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from conveyor.app import Conveyor
from conveyor.server.api import create_api, listen_address
from conveyor.server.auth import Keys, parse_keys
from conveyor.server.uploads import safe_name
from conveyor.settings import Settings
from conveyor.sources import upload_key

KEY = "k-secret-1"
OTHER_KEY = "k-secret-2"
LIMIT = 256 * 1024
H = {"x-api-key": KEY}

REFUND = (
    "Refund policy. Customers may return any product within thirty days of delivery and "
    "get their money back in full. After thirty days we offer store credit only.\n\n"
    "Shipping. Orders leave our warehouse within two business days; tracking numbers are "
    "sent by e-mail once the parcel is on its way.\n"
)


@pytest.fixture(scope="module")
def conveyor(tmp_path_factory: pytest.TempPathFactory, real_embedder: Any) -> Iterator[Conveyor]:
    settings = Settings(
        home=tmp_path_factory.mktemp("api-home"),
        api_keys=f"{KEY}, {OTHER_KEY}",
        max_upload_bytes=LIMIT,
        isolate_extraction=False,
        retry_base_seconds=0.1,
    )
    with Conveyor(settings, embedder=real_embedder) as cv:
        yield cv


@pytest.fixture(scope="module")
def intake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Conveyor]:
    """A home with no worker: uploads there are stored and queued, never processed."""
    settings = Settings(
        home=tmp_path_factory.mktemp("intake-home"), api_keys=KEY, max_upload_bytes=LIMIT
    )
    with Conveyor(settings) as cv:
        yield cv


@pytest.fixture(scope="module")
def client(conveyor: Conveyor) -> Iterator[TestClient]:
    app = create_api(conveyor=conveyor, workers=1, poll_interval=0.1)
    with TestClient(app) as c:
        yield c


def multipart(
    *parts: tuple[str, bytes | None, bytes], boundary: bytes = b"conveyor-test-boundary"
) -> tuple[bytes, dict[str, str]]:
    """A multipart body built byte by byte, so file names reach the server exactly as
    written (a client library would clean them up first)."""
    body = b""
    for name, filename, data in parts:
        disposition = b'form-data; name="' + name.encode() + b'"'
        if filename is not None:
            disposition += b'; filename="' + filename + b'"'
        body += b"--" + boundary + b"\r\nContent-Disposition: " + disposition + b"\r\n"
        body += b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n"
    body += b"--" + boundary + b"--\r\n"
    return body, {"content-type": "multipart/form-data; boundary=" + boundary.decode(), **H}


def asgi_post(conveyor: Conveyor, content: Any, headers: dict[str, str]) -> httpx.Response:
    """POST /documents through httpx.ASGITransport (no lifespan, no worker)."""
    app = create_api(conveyor=conveyor)

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            return await c.post("/documents", content=content, headers=headers)

    return asyncio.run(go())


def wait_state(client: TestClient, doc_id: str, states: tuple[str, ...], timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = client.get(f"/documents/{doc_id}", headers=H).json()
        if doc["state"] in states:
            return doc
        time.sleep(0.1)
    raise AssertionError(f"document {doc_id} never reached {states}: {doc}")


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text (parsed, so label order and number
    formatting do not matter), or None when it is not there."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def assert_error(response: httpx.Response, status: int, kind: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type"}
    if kind is not None:
        assert body["error"]["type"] == kind


# -- auth ------------------------------------------------------------------------------


def test_every_endpoint_but_health_and_metrics_needs_a_key(client: TestClient) -> None:
    protected = [
        ("GET", "/documents"),
        ("GET", "/documents/x"),
        ("GET", "/search?q=x"),
        ("GET", "/queue"),
        ("GET", "/status"),
        ("GET", "/dead-letters"),
        ("POST", "/dead-letters/x/redrive"),
        ("POST", "/events/token"),
        ("GET", "/events"),
        ("POST", "/documents"),
    ]
    wrong = [
        {},
        {"x-api-key": "nope"},
        {"authorization": "Bearer nope"},
        {"authorization": f"Basic {KEY}"},
        {"x-api-key": KEY[:-1]},
    ]
    for method, path in protected:
        for headers in wrong:
            response = client.request(method, path, headers=headers)
            assert_error(response, 401, "unauthorized")
            assert response.headers["www-authenticate"].startswith("Bearer")
    for headers in ({"x-api-key": KEY}, {"authorization": f"Bearer {OTHER_KEY}"}):
        assert client.get("/queue", headers=headers).status_code == 200
    assert client.get("/health").json()["auth"] is True
    assert client.get("/metrics").status_code == 200
    assert client.get("/").status_code == 200 and "conveyor" in client.get("/").text


def test_keys_and_event_tokens() -> None:
    keys = Keys(parse_keys(" a1 , ,b2,"))
    assert keys.check("a1") and keys.check("b2")
    assert not keys.check("a") and not keys.check("") and not keys.check(None)
    token, seconds = keys.event_token(now=1000.0)
    assert keys.check_event_token(token, now=1000.0 + seconds - 1)
    assert not keys.check_event_token(token, now=1000.0 + seconds + 1)  # expired
    expiry, signature = token.split(".")
    assert not keys.check_event_token(f"{int(expiry) + 60}.{signature}", now=1000.0)
    assert not Keys(["other"]).check_event_token(token, now=1000.0)  # rotated keys
    assert not keys.check_event_token("a1", now=1000.0)
    assert Keys([]).open and Keys([]).check(None)


def test_without_keys_the_server_listens_on_loopback_only() -> None:
    assert listen_address("0.0.0.0", ["k"]) == ("0.0.0.0", None)
    host, note = listen_address("0.0.0.0", [])
    assert host == "127.0.0.1" and note and "CONVEYOR_API_KEYS" in note and "0.0.0.0" in note
    for loopback in ("127.0.0.1", "localhost", "::1"):
        host, note = listen_address(loopback, [])
        assert host == loopback and note and "open" in note


def test_metrics_can_need_a_key_too(conveyor: Conveyor) -> None:
    settings = conveyor.settings.model_copy(update={"metrics_need_key": True})
    with TestClient(create_api(settings, conveyor=conveyor)) as c:
        assert_error(c.get("/metrics"), 401)
        assert c.get("/metrics", headers=H).status_code == 200
        assert c.get("/health").status_code == 200


# -- uploads ---------------------------------------------------------------------------


def test_upload_is_processed_and_found_by_search(client: TestClient) -> None:
    metadata = {"customer": "acme", "tags": ["policy"], "n": 3}
    response = client.post(
        "/documents",
        headers=H,
        files={"file": ("refunds.md", REFUND.encode())},
        data={"collection": "policies", "metadata": json.dumps(metadata)},
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status_url"] == f"/documents/{accepted['id']}"
    assert response.headers["location"] == accepted["status_url"]
    assert accepted["name"] == "refunds.md" and accepted["kind"] == "markdown"
    assert accepted["duplicate"] is False and accepted["collection"] == "policies"

    doc = wait_state(client, accepted["id"], ("done", "failed"))
    assert doc["state"] == "done", doc
    assert doc["chunks"] >= 1 and doc["error"] is None
    assert doc["metadata"] == metadata
    assert {"fetch", "extract", "chunk", "embed", "merge"} <= set(doc["timings"])
    assert doc["kind"] == "markdown" and doc["size"] == len(REFUND.encode())

    listed = client.get("/documents", params={"state": "done", "collection": "policies"}, headers=H)
    assert accepted["id"] in [d["id"] for d in listed.json()]
    assert client.get("/documents", params={"run": "no-such-run"}, headers=H).json() == []

    found = client.get(
        "/search",
        params={"q": "can I get my money back?", "k": 3, "collection": "policies"},
        headers=H,
    )
    assert found.status_code == 200, found.text
    hits = found.json()["hits"]
    assert hits and hits[0]["document_id"] == accepted["id"]
    assert "thirty days" in hits[0]["text"] and hits[0]["name"] == "refunds.md"
    assert found.json()["mode"] == "hybrid" and found.json()["notes"] == []
    for params in (  # the uploader's metadata and the kind are filters, in every mode
        {"where": ["customer=acme", "n=3"], "mode": "lexical", "q": "thirty days"},
        {"where": "customer=acme", "kind": "markdown", "mode": "dense", "q": "money back"},
        {"source": doc["source"].rsplit("/", 1)[0], "q": "refund"},
    ):
        got = client.get("/search", params={**params, "collection": "policies"}, headers=H)
        assert got.status_code == 200, got.text
        assert [h["document_id"] for h in got.json()["hits"]][:1] == [accepted["id"]], params
    for params in ({"where": "customer=else"}, {"pages": "1-"}, {"source": "s3://elsewhere/"}):
        other = {**params, "q": "money back", "collection": "policies"}
        assert client.get("/search", params=other, headers=H).json()["hits"] == [], params


def test_identical_content_is_stored_once_and_is_one_document(
    client: TestClient, conveyor: Conveyor
) -> None:
    data = b"Quarterly numbers: revenue grew by nine percent, costs fell by two.\n"
    first = client.post(
        "/documents", headers=H, files={"file": ("q3.txt", data)}, data={"collection": "dedupe"}
    ).json()
    again = client.post(
        "/documents", headers=H, files={"file": ("q3.txt", data)}, data={"collection": "dedupe"}
    ).json()
    renamed = client.post(
        "/documents", headers=H, files={"file": ("copy.txt", data)}, data={"collection": "dedupe"}
    ).json()
    assert first["duplicate"] is False
    assert again["duplicate"] is True and renamed["duplicate"] is True
    assert first["id"] == again["id"] == renamed["id"]
    stored = conveyor.settings.blobs_path / "uploads" / first["sha256"]
    assert [p.name for p in stored.iterdir()] == ["q3.txt"]
    docs = client.get("/documents", params={"collection": "dedupe"}, headers=H).json()
    assert [d["id"] for d in docs] == [first["id"]]
    other = client.post(
        "/documents", headers=H, files={"file": ("q3.txt", data)}, data={"collection": "other"}
    ).json()
    assert other["id"] != first["id"] and other["source"] == first["source"]
    wait_state(client, other["id"], ("done",))


def test_an_upload_the_queue_refused_is_503_and_accepted_when_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue is down for the first try: the client gets 503 (not a 500, not a
    "duplicate" of a document that has no job), and its retry enqueues the job."""
    from conveyor.exceptions import TransientError

    settings = Settings(home=tmp_path / "home", api_keys=KEY, max_upload_bytes=LIMIT)
    with Conveyor(settings) as cv:
        queue = cv.components.queue
        real_send_many = queue.send_many  # uploads are routed: sent as a batch of one

        def refuse_once(bodies: list[dict[str, Any]], **kw: Any) -> list[str]:
            monkeypatch.setattr(queue, "send_many", real_send_many)
            raise TransientError("queue throttled (SlowDown)")

        monkeypatch.setattr(queue, "send_many", refuse_once)
        body, headers = multipart(("file", b"a.txt", b"Hello there, this is a small text.\n"))
        assert_error(asgi_post(cv, body, headers), 503, "unavailable")
        assert queue.depth().visible == 0
        retry = asgi_post(cv, body, headers)
        assert retry.status_code == 202, retry.text
        assert retry.json()["duplicate"] is False
        assert queue.depth().visible == 1
        assert cv.components.catalog.get(retry.json()["id"])["state"] == "queued"


def test_the_same_bytes_uploaded_at_once_under_other_names_are_one_document(
    intake: Conveyor,
) -> None:
    data = b"Eight clients upload the same minutes of the same meeting at once.\n"
    app = create_api(conveyor=intake)  # uploads are stored in the server's thread pool

    async def everyone() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            posts = []
            for n in range(8):
                body, headers = multipart(("file", f"minutes-{n}.txt".encode(), data))
                posts.append(c.post("/documents", content=body, headers=headers))
            return await asyncio.gather(*posts)

    responses = asyncio.run(everyone())
    assert all(r.status_code == 202 for r in responses), [r.text for r in responses]
    answers = [r.json() for r in responses]
    assert len({a["id"] for a in answers}) == 1
    assert sum(not a["duplicate"] for a in answers) == 1
    stored = intake.settings.blobs_path / "uploads" / answers[0]["sha256"]
    assert len(list(stored.iterdir())) == 1


def test_over_the_limit_is_413_while_streaming(intake: Conveyor) -> None:
    piece = b"x" * 16384
    pulled = 0

    async def body() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        nonlocal pulled
        head, _ = multipart(("file", b"big.txt", b""))
        yield head.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
        for _ in range(10 * LIMIT // len(piece)):
            pulled += 1
            yield piece

    _, headers = multipart()
    response = asgi_post(intake, body(), headers)
    assert_error(response, 413, "request_too_large")
    assert "CONVEYOR_MAX_UPLOAD_BYTES" in response.json()["error"]["message"]
    assert pulled < 2 * LIMIT // len(piece)  # it stopped reading soon after the limit

    exact, headers = multipart(("file", b"ok.txt", b"y" * LIMIT))
    assert asgi_post(intake, exact, headers).status_code == 202
    over, headers = multipart(("file", b"no.txt", b"z" * (LIMIT + 1)))
    assert_error(asgi_post(intake, over, headers), 413)
    declared = {**headers, "content-length": str(100 * LIMIT)}
    assert_error(asgi_post(intake, over, declared), 413)
    stored = [p.name for p in (intake.settings.blobs_path / "uploads").rglob("*")]
    assert "no.txt" not in stored and "big.txt" not in stored
    assert not list((intake.settings.home / "tmp").iterdir())  # temporary files removed


def test_upload_streams_to_disk_not_memory(intake: Conveyor, tmp_path: Path) -> None:
    settings = intake.settings.model_copy(update={"max_upload_bytes": 64 * 1024 * 1024})
    app = create_api(settings, conveyor=intake)
    size = 24 * 1024 * 1024
    line = b"the same line of text, again and again, for a big plain text file\n"

    async def body() -> AsyncIterator[bytes]:
        head, _ = multipart(("file", b"big.txt", b""))
        opening, _ = head.split(b"\r\n\r\n", 1)
        yield opening + b"\r\n\r\n"
        piece = line * (65536 // len(line))
        sent = 0
        while sent < size:
            yield piece
            sent += len(piece)
        yield b"\r\n--conveyor-test-boundary--\r\n"

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            return await c.post("/documents", content=body(), headers=multipart()[1])

    tracemalloc.start()
    try:
        response = asyncio.run(go())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 202, response.text
    assert response.json()["size"] >= size
    assert peak < 8 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.0f} MB upload"


def test_file_names_cannot_escape_the_blob_store(intake: Conveyor) -> None:
    root = intake.settings.blobs_path.resolve()
    names = {
        b"../../../etc/passwd.txt": "passwd.txt",
        b"/etc/absolute.txt": "absolute.txt",
        b"..\\..\\windows.txt": "windows.txt",
        b"C:\\Users\\x\\evil.txt": "evil.txt",
        b"..": "upload",
        b"": "upload",
        b"./.hidden.txt": "hidden.txt",
        b"nul\x00byte.txt": "nulbyte.txt",
        "caf\u00e9 \u2028notes.txt".encode(): "caf\u00e9 notes.txt",
    }
    for i, (name, expected) in enumerate(names.items()):
        body, headers = multipart(("file", name, f"escape attempt {i}\n".encode()))
        response = asgi_post(intake, body, headers)
        assert response.status_code == 202, (name, response.text)
        accepted = response.json()
        assert accepted["name"] == expected
        assert accepted["source"].startswith(f"upload://{accepted['sha256']}/")  # no path
        key = upload_key(accepted["source"])
        path = root / key
        assert path.resolve().parent.parent == root / "uploads"
        assert path.read_bytes() == f"escape attempt {i}\n".encode()
    assert safe_name("a\x00b\x07.txt") == "ab.txt"
    assert safe_name("../../x.txt") == "x.txt" and safe_name("..\\..\\y.md") == "y.md"
    assert safe_name("") == safe_name("..") == safe_name("/") == "upload"
    assert safe_name('a<b>:"c|?*.txt') == "a_b___c___.txt"
    long = safe_name("n" * 500 + ".pdf")
    assert long.endswith(".pdf") and len(long.encode()) <= 200


def test_malformed_and_unsupported_uploads_are_4xx(intake: Conveyor) -> None:
    ok_file = ("file", b"a.txt", b"some words\n")
    cases: list[tuple[bytes, dict[str, str], int, str]] = []
    body, headers = multipart(ok_file)
    cases.append((body, {**headers, "content-type": "multipart/form-data"}, 422, "no boundary"))
    cases.append((body[: len(body) // 2], headers, 422, "truncated"))
    cases.append((b"this is not multipart at all", headers, 422, "garbage"))
    cases.append((b'{"file": "x"}', {**H, "content-type": "application/json"}, 415, "json"))
    cases.append((*multipart(("collection", None, b"x")), 422, "no file"))
    cases.append((*multipart(ok_file, ("colour", None, b"blue")), 422, "unknown field"))
    cases.append((*multipart(ok_file, ok_file), 422, "two files"))
    cases.append((*multipart(ok_file, ("metadata", None, b"{not json")), 422, "bad json"))
    cases.append((*multipart(ok_file, ("metadata", None, b"[1, 2]")), 422, "not an object"))
    cases.append((*multipart(ok_file, ("collection", None, b"../up")), 422, "bad collection"))
    cases.append((*multipart(ok_file, ("run", None, b"a b")), 422, "bad run"))
    cases.append((*multipart(ok_file, ("collection", None, b"\xff\xfe")), 422, "not utf-8"))
    cases.append((*multipart(("file", b"e.txt", b"")), 422, "empty"))
    cases.append((*multipart(("file", b"s.txt", b"   \n\t ")), 422, "whitespace"))
    elf = b"\x7fELF\x02\x01\x01" + bytes(200)
    cases.append((*multipart(("file", b"notes.txt", elf)), 415, "executable"))
    zipped = b"PK\x03\x04" + bytes(100)
    cases.append((*multipart(("file", b"a.zip", zipped)), 415, "zip"))
    for content, headers, status, what in cases:
        response = asgi_post(intake, content, headers)
        assert response.status_code == status, (what, response.text)
        assert_error(response, status)
    assert "unsupported file type" in asgi_post(intake, *multipart(("file", b"x", elf))).text


# -- reading ---------------------------------------------------------------------------


def test_unknown_ids_are_404_and_bad_params_422(client: TestClient) -> None:
    assert_error(client.get("/documents/no-such-id", headers=H), 404, "not_found")
    assert_error(client.get("/documents/" + "x" * 300, headers=H), 404)
    assert_error(client.post("/dead-letters/no-such-job/redrive", headers=H), 404)
    assert_error(client.post("/dead-letters/redrive", json={"job_ids": ["nope"]}, headers=H), 404)
    missing = client.get("/search?q=x&collection=nothing-here", headers=H)
    assert_error(missing, 404)
    assert "(collections: " in missing.json()["error"]["message"]  # names what exists
    assert_error(client.get("/no/such/route", headers=H), 404)
    for path in (
        "/documents?limit=0",
        "/documents?limit=abc",
        "/documents?state=lost",
        "/search",
        "/search?q=",
        "/search?q=x&k=0",
        "/search?q=x&k=101",
        "/search?q=x&collection=../etc",
        "/search?q=%20%20",
        "/search?q=x&mode=fuzzy",
        "/search?q=x&pages=5-2",
        "/search?q=x&time=soon",
        "/search?q=x&where=novalue",
        "/search?q=x&where=a%20b=c",
        "/dead-letters?limit=-1",
        "/events?limit=0",
    ):
        assert_error(client.get(path, headers=H), 422)
    bad_body = client.post(
        "/dead-letters/redrive", content=b"{", headers={**H, "content-type": "application/json"}
    )
    assert_error(bad_body, 422)


def test_failures_are_dead_letters_with_reasons_and_can_be_redriven(client: TestClient) -> None:
    broken = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer broken beyond repair"
    accepted = client.post("/documents", headers=H, files={"file": ("broken.pdf", broken)}).json()
    assert accepted["kind"] == "pdf"
    doc = wait_state(client, accepted["id"], ("failed",))
    assert doc["error"] and doc["error_kind"]

    letters = client.get("/dead-letters", headers=H).json()
    mine = [d for d in letters if d["document_id"] == accepted["id"]]
    assert len(mine) == 1 and mine[0]["name"] == "broken.pdf" and mine[0]["error"]
    overview = client.get("/status", headers=H).json()
    assert mine[0]["job_id"] in [f["job_id"] for f in overview["failures"]]
    assert overview["queue"]["dead"] >= 1

    redriven = client.post(f"/dead-letters/{mine[0]['job_id']}/redrive", headers=H)
    assert redriven.status_code == 200 and redriven.json() == {"redriven": 1}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the worker takes it again, and it fails again
        letters = client.get("/dead-letters", headers=H).json()
        if [d for d in letters if d["document_id"] == accepted["id"]]:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the redriven job did not come back to the dead-letter queue")
    assert wait_state(client, accepted["id"], ("failed",))["attempts"] == 1


def wait_idle(client: TestClient, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = client.get("/status", headers=H).json()
        busy = counts["queue"]["visible"] + counts["queue"]["in_flight"]
        if not busy and not counts["documents"]["queued"] and not counts["documents"]["running"]:
            return
        time.sleep(0.1)
    raise AssertionError("the queue never drained")


def test_events_stream_a_state_change(client: TestClient, conveyor: Conveyor) -> None:
    accepted = client.post(
        "/documents", headers=H, files={"file": ("events.txt", b"a note about events\n")}
    ).json()
    wait_state(client, accepted["id"], ("done",))
    wait_idle(client)
    token = client.post("/events/token", headers=H).json()["token"]
    assert_error(client.get(f"/events?token={token[:-2]}xx&limit=1"), 401)
    live = client.app.state.api.live  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10  # the poller has seen it done: that is not news now
    while (live._seen.get(accepted["id"]) or (0, None))[1] != "done":
        assert time.monotonic() < deadline, "the status poller never saw the document done"
        time.sleep(0.02)
    before = len(live.subscribers)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(client.get, f"/events?token={token}&limit=1")
        deadline = time.monotonic() + 10
        while len(live.subscribers) == before and time.monotonic() < deadline:
            time.sleep(0.02)
        conveyor.components.catalog.update(accepted["id"], stage="re-check")
        response = future.result(timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [block for block in response.text.split("\n\n") if block.startswith("id:")]
    assert len(events) == 1
    fields = dict(line.split(": ", 1) for line in events[0].splitlines())
    assert fields["event"] == "document"
    data = json.loads(fields["data"])
    assert data["id"] == accepted["id"] and data["stage"] == "re-check"
    assert data["name"] == "events.txt" and data["state"] == "done"
    assert datetime.fromisoformat(data["updated_at"]).tzinfo is not None  # ISO 8601, UTC
    with_key = client.get("/events?limit=1", headers={"x-api-key": KEY, "last-event-id": "0"})
    assert with_key.status_code == 200 and "event: " in with_key.text  # replayed from the start


def test_status_and_metrics(client: TestClient) -> None:
    accepted = client.post(
        "/documents", headers=H, files={"file": ("metrics.txt", b"counting the work done\n")}
    ).json()
    wait_state(client, accepted["id"], ("done",))
    overview = client.get("/status", headers=H).json()
    assert accepted["id"] in [d["id"] for d in overview["recent"]]
    assert overview["in_process_workers"] == 1
    running = [w for w in overview["workers"] if w["state"] == "running"]
    assert len(running) == 1 and running[0]["heartbeat_age"] < 30 and not running[0]["stale"]
    assert len(overview["throughput"]) == 15
    assert sum(p["done"] for p in overview["throughput"]) >= 1
    assert client.get("/queue", headers=H).json().keys() == {
        "visible",
        "in_flight",
        "delayed",
        "dead",
    }

    deadline = time.monotonic() + 10
    while True:  # the poller counts what it has seen finish
        text = client.get("/metrics").text
        done = sample(text, "conveyor_jobs_total", outcome="done")
        if (done is not None and done >= 1) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for family, kind in (
        ("conveyor_queue_depth", "gauge"),
        ("conveyor_documents", "gauge"),
        ("conveyor_jobs_total", "counter"),
        ("conveyor_stage_duration_seconds", "histogram"),
        ("conveyor_embeddings_generated_total", "counter"),
        ("conveyor_errors_total", "counter"),
        ("conveyor_worker_heartbeat_age_seconds", "gauge"),
        ("conveyor_workers", "gauge"),
        ("conveyor_uploads_total", "counter"),
    ):
        assert f"# TYPE {family} {kind}" in text
    assert sample(text, "conveyor_queue_depth", state="in_flight") is not None
    assert done is not None and done >= 1
    for outcome in ("skipped", "failed", "retried"):  # every outcome shows, 0 or more
        assert sample(text, "conveyor_jobs_total", outcome=outcome) is not None
    embed_seconds = sample(text, "conveyor_stage_duration_seconds_bucket", stage="embed", le="+Inf")
    assert embed_seconds is not None and embed_seconds >= 1
    embeddings = sample(text, "conveyor_embeddings_generated_total")
    assert embeddings is not None and embeddings >= 1
    age = sample(text, "conveyor_worker_heartbeat_age_seconds", state="running")
    assert age is not None and 0 <= age < 30
    assert sample(text, "conveyor_workers", state="running") == 1
    accepted_uploads = sample(text, "conveyor_uploads_total", result="accepted")
    assert accepted_uploads is not None and accepted_uploads >= 1
    assert text.startswith("# HELP") and "conveyor_api_uptime_seconds" in text


def test_open_api_documents_every_endpoint(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path in (
        "/documents",
        "/documents/{document_id}",
        "/search",
        "/dead-letters",
        "/dead-letters/redrive",
        "/dead-letters/{job_id}/redrive",
        "/queue",
        "/status",
        "/events",
        "/events/token",
        "/health",
        "/metrics",
    ):
        assert path in paths, path
    upload = paths["/documents"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    assert {"202", "401", "413", "415", "422"} <= set(upload["responses"])
    assert "DocumentStatus" in schema["components"]["schemas"]
    assert client.get("/docs").status_code == 404  # no Swagger UI: its assets are a CDN's


def test_the_api_over_a_postgresql_queue_and_catalog(
    postgres_url: str, real_embedder: Any, tmp_path: Path
) -> None:
    """The one-server shape: queue and catalog in PostgreSQL, what the API shows the same."""
    settings = Settings(
        home=tmp_path / "home",
        queue_url=postgres_url,
        catalog_url=postgres_url,
        api_keys=KEY,
        isolate_extraction=False,
    )
    with Conveyor(settings, embedder=real_embedder) as cv:
        app = create_api(conveyor=cv, workers=1, poll_interval=0.1)
        with TestClient(app) as c:
            accepted = c.post(
                "/documents", headers=H, files={"file": ("pg.md", REFUND.encode())}
            ).json()
            doc = wait_state(c, accepted["id"], ("done", "failed"))
            assert doc["state"] == "done", doc
            hits = c.get("/search", params={"q": "money back"}, headers=H).json()["hits"]
            assert hits[0]["document_id"] == accepted["id"]
            overview = c.get("/status", headers=H).json()
            assert overview["documents"]["done"] == 1
            assert [w["state"] for w in overview["workers"]] == ["running"]
            deadline = time.monotonic() + 10
            while sample(c.get("/metrics").text, "conveyor_jobs_total", outcome="done") != 1:
                assert time.monotonic() < deadline, c.get("/metrics").text
                time.sleep(0.1)


def test_uploads_stream_into_an_s3_blob_store(s3_bucket: str, tmp_path: Path) -> None:
    """Uploads to ``s3://bucket/prefix/``: the object lands in the bucket (boto3's
    multipart upload reads the temporary file in pieces) and the job's source names it."""
    from servers.aws import client as aws_client

    settings = Settings(home=tmp_path / "home", blobs_url=f"s3://{s3_bucket}/data/", api_keys=KEY)
    with Conveyor(settings) as cv:
        data = b"An object in a bucket, uploaded through the API.\n"
        body, headers = multipart(("file", b"../in-s3.txt", data))
        first = asgi_post(cv, body, headers).json()
        again = asgi_post(cv, *multipart(("file", b"other.txt", data))).json()
    key = f"data/uploads/{first['sha256']}/in-s3.txt"
    assert first["source"] == f"upload://{first['sha256']}/in-s3.txt"
    assert again["duplicate"] is True and again["source"] == first["source"]
    listed = aws_client("s3").list_objects_v2(Bucket=s3_bucket, Prefix="data/uploads/")
    keys = sorted(o["Key"] for o in listed["Contents"])
    assert keys == sorted([key, f"data/uploads/{first['sha256']}.key"])  # stored once
    assert aws_client("s3").get_object(Bucket=s3_bucket, Key=key)["Body"].read() == data


def test_delete_removes_a_document_through_the_compactor(client: TestClient) -> None:
    text = b"Lighthouse keepers log every passing ship in a leather-bound book.\n"
    accepted = client.post(
        "/documents",
        headers=H,
        files={"file": ("lighthouse.txt", text)},
        data={"collection": "erasable"},
    ).json()
    assert wait_state(client, accepted["id"], ("done", "failed"))["state"] == "done"
    assert client.delete("/documents/no-such-id", headers=H).status_code == 404
    assert client.delete(f"/documents/{accepted['id']}").status_code == 401
    response = client.delete(f"/documents/{accepted['id']}", headers=H)
    assert response.status_code == 202, response.text
    assert response.json()["status_url"] == f"/documents/{accepted['id']}"
    deadline = time.monotonic() + 60
    while client.get(accepted["status_url"], headers=H).status_code != 404:
        assert time.monotonic() < deadline, "the deletion was never merged"
        time.sleep(0.1)
    hits = client.get(
        "/search", params={"q": "lighthouse keepers", "collection": "erasable"}, headers=H
    ).json()
    assert all(h["document_id"] != accepted["id"] for h in hits["hits"])
