"""`conveyor serve` in a subprocess, and its status page in a real headless Chromium.

One server (a key, one worker) serves the module, with a small corpus uploaded through
the API: text, Markdown with a long name, a receipt photo (OCR artifacts, when
Tesseract is installed), and two files that fail. The tests drive the page as an
operator would: enter the key once, upload a file and watch it turn ``done`` (over
server-sent events, or by polling if the stream is down); look at the page at 420,
1400 and 1920 pixels wide (no sideways scrolling, no cell squeezed to a few letters, a
failure's reason in its own column, charts with legends and readable axes); open a
document's detail; redrive and delete from there; search. Screenshots go to
``$CONVEYOR_TEST_ARTIFACTS`` (else a temporary folder), whose path the tests print.
They need Debian's ``chromium`` and ``chromium-driver`` (``make test`` installs them)
and are skipped, saying so, without them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import free_port, wait_for

from conveyor.testing import prose

from .helpers import start

KEY = "browser-test-key"
H = {"x-api-key": KEY}
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WIDTHS = (420, 1400, 1920)
LONG_NAME = "quarterly-operations-review-for-the-northern-warehouses-2026.md"
REFUND = (
    "Refund policy. Customers may return any product within thirty days of delivery and "
    "get their money back in full. After thirty days we offer store credit only.\n"
)


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: ``$CONVEYOR_TEST_ARTIFACTS/status-page`` or a temporary
    folder; printed, so a person can look at them."""
    given = os.environ.get("CONVEYOR_TEST_ARTIFACTS")
    folder = Path(given) / "status-page" if given else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nstatus page screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (make test installs them)")
    root = tmp_path_factory.mktemp("serve")
    port = free_port()
    log = root / "serve.log"
    process = start(
        "serve",
        "--port",
        str(port),
        "--workers",
        "1",
        home=root / "home",
        log=log,
        CONVEYOR_API_KEYS=KEY,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: healthy(url) or process.poll() is not None, 60, "the server to start")
        assert process.poll() is None, log.read_text()
        yield {"url": url, "process": process, "log": log, "root": root}
    finally:
        if process.poll() is None:
            stop(process)


@pytest.fixture(scope="module")
def corpus(server: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The module's documents, uploaded through the API and finished: name → document."""
    files: dict[str, bytes] = {
        "refund-policy.txt": REFUND.encode(),
        LONG_NAME: ("# Review\n\n" + prose(7, 700)).encode(),
        "broken.pdf": b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer broken",
        "blank.html": b'<html><body><img src="chart.png"></body></html>\n',
    }
    if shutil.which("tesseract"):
        files["receipt.png"] = receipt_png()
    if shutil.which("espeak-ng"):  # two voices taking turns: the detail view lists them
        from conveyor.testing import conversation, wav

        samples, _ = conversation(["en-us+m3", "en-us+f2"], 24, seed=1)
        files["meeting.wav"] = wav(samples)
    url = server["url"]
    for name, data in files.items():
        answer = httpx.post(f"{url}/documents", headers=H, files={"file": (name, data)}, timeout=30)
        assert answer.status_code == 202, answer.text

    def finished() -> dict[str, dict[str, Any]] | None:
        docs = httpx.get(f"{url}/documents", headers=H, timeout=10).json()
        by_name = {d["name"]: d for d in docs if d["name"] in files}
        states = {d["state"] for d in by_name.values()}
        return by_name if len(by_name) == len(files) and states <= {"done", "failed"} else None

    # the model loads in the worker thread first: allow for it
    wait_for(finished, 180, "the corpus to be processed")
    docs = finished()
    assert docs is not None
    assert docs["broken.pdf"]["state"] == docs["blank.html"]["state"] == "failed"
    assert docs["refund-policy.txt"]["state"] == docs[LONG_NAME]["state"] == "done"
    return docs


def receipt_png() -> bytes:
    import io

    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=30)
    image = Image.new("L", (760, 330), 250)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(["HARBOR FISH MARKET", "12 Quay Street", "TOTAL 24.30"]):
        draw.text((40, 40 + 70 * i), line, font=font, fill=20)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def browser(server: dict[str, Any], tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def waiter(browser: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    def wait(condition: Any, timeout: float = 30) -> Any:
        return WebDriverWait(browser, timeout, poll_frequency=0.2).until(condition)

    return wait


def live_text(browser: Any, selector: str) -> str:
    """The element's text read in one step: the detail view re-renders live, so an element
    found in one WebDriver call may be replaced before the next reads it (stale)."""
    text = browser.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText : ''", selector
    )
    return str(text).strip()


def signed_in(browser: Any, server: dict[str, Any], width: int = 1400) -> Any:
    """The page at ``width`` pixels, the key already kept in this browser, live."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    browser.set_window_size(width, 1000)
    browser.get(server["url"] + "/static/style.css")  # same origin, no page script yet
    browser.execute_script(f"localStorage.setItem('conveyor.apiKey', '{KEY}')")
    browser.get(server["url"] + "/")
    wait = waiter(browser)
    wait(ec.text_to_be_present_in_element((By.ID, "mode"), "live"))
    wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#documents tbody tr"))
    return wait


def screenshot(browser: Any, path: Path) -> None:
    """The whole page, however long: the window is made as tall as the page first."""
    width = browser.execute_script("return window.innerWidth")
    height = browser.execute_script("return document.scrollingElement.scrollHeight")
    browser.set_window_size(width, height + 200)
    assert browser.save_screenshot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    browser.set_window_size(width, 1000)


def test_status_page_follows_an_upload_until_done(
    server: dict[str, Any], corpus: dict[str, Any], browser: Any, tmp_path: Path, shots: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    wait = waiter(browser)
    browser.get(server["url"] + "/")
    # the page asks for the key, which it keeps in this browser only
    wait(ec.text_to_be_present_in_element((By.ID, "message"), "API key"))
    browser.find_element(By.ID, "api-key").send_keys(KEY)
    browser.find_element(By.ID, "save-key").click()
    wait(ec.text_to_be_present_in_element((By.ID, "mode"), "live"))
    assert browser.execute_script("return localStorage.getItem('conveyor.apiKey')") == KEY

    note = tmp_path / "release-notes.txt"
    note.write_text(
        "Release notes. The export button now writes CSV files with a header row, and "
        "the import screen accepts files of up to fifty megabytes.\n"
    )
    browser.find_element(By.ID, "file").send_keys(str(note))
    browser.find_element(By.ID, "upload-button").click()
    wait(ec.text_to_be_present_in_element((By.ID, "message"), "accepted"))
    row = '#documents tr[data-name="release-notes.txt"]'
    wait(ec.presence_of_element_located((By.CSS_SELECTOR, row)))
    wait(ec.presence_of_element_located((By.CSS_SELECTOR, row + '[data-state="done"]')), 60)
    assert browser.find_element(By.CSS_SELECTOR, row + " .state").text == "done"
    assert browser.find_element(By.ID, "mode").text == "live"
    wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#workers tbody tr"), 30)
    worker_state = browser.find_element(By.CSS_SELECTOR, "#workers tbody tr .state").text
    assert worker_state == "running"
    done_bars = "return document.querySelectorAll('#chart rect.fill-done').length"
    wait(lambda d: d.execute_script(done_bars) > 0, 30)  # the minute's bar is drawn
    # the stage chart gains the new document's bar
    stage_bar = f'#stages-chart g.bar[data-id="{corpus["refund-policy.txt"]["id"]}"]'
    wait(ec.presence_of_element_located((By.CSS_SELECTOR, stage_bar)), 30)
    screenshot(browser, shots / "upload-done.png")


def test_layout_holds_at_three_widths(
    server: dict[str, Any], corpus: dict[str, Any], browser: Any, shots: Path
) -> None:
    """Issue 14, defect 6: once something fails, the tables stay full width, the reason
    sits in its own column on one line, nothing scrolls sideways, charts are legible."""
    from selenium.webdriver.common.by import By

    for width in WIDTHS:
        wait = signed_in(browser, server, width)
        wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#failures tbody tr"))
        scroll = browser.execute_script(
            "const s = document.scrollingElement; return [s.scrollWidth, s.clientWidth]"
        )
        assert scroll[0] <= scroll[1], f"{width}px: the page scrolls sideways {scroll}"
        cells = browser.execute_script(CELLS)
        assert cells, "no table cells drawn"
        for c in cells:  # a few characters wide at least, and one line high
            where = f"{width}px, {c['table']} {c['cls']} {c['text']!r}"
            assert c["w"] >= 3 * c["font"], f"{where}: {c['w']:.0f}px wide"
            assert c["h"] <= 2.8 * c["font"], f"{where}: {c['h']:.0f}px high (wraps)"
        for table in ("documents", "failures"):
            size = browser.execute_script(WIDTH_OF, f"#{table}")  # full width, and filled
            assert size["box"] >= size["main"] - 1, f"{width}px: {table} {size}"
            assert size["table"] >= size["panel"] - 1, f"{width}px: {table} {size}"
        failed = '#documents tr[data-name="broken.pdf"]'
        reason = browser.find_element(By.CSS_SELECTOR, failed + " td.c-reason")
        assert "PDF" in reason.get_attribute("title")
        stage = browser.find_element(By.CSS_SELECTOR, failed + " td.c-stage")
        assert "PDF" not in stage.get_attribute("textContent")
        wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#stages-chart g.bar"))
        fonts = browser.execute_script(CHART_FONTS)
        assert fonts and min(fonts) >= 11, f"{width}px: chart text at {min(fonts):.1f}px"
        legend = browser.find_element(By.ID, "throughput-legend").text
        assert all(s in legend for s in ("done", "unchanged", "failed")), legend
        stages = browser.find_element(By.ID, "stages-legend").text
        assert all(s in stages for s in ("fetch", "extract", "chunk", "embed", "merge")), stages
        screenshot(browser, shots / f"status-{width}.png")


CELLS = """
return [...document.querySelectorAll('table.grid td')]
  .filter(td => td.getClientRects().length)
  .map(td => { const r = td.getBoundingClientRect();
    return {table: td.closest('table').id, cls: td.className, text: td.textContent,
            w: r.width, h: r.height, font: parseFloat(getComputedStyle(td).fontSize)}; });
"""

CHART_FONTS = """
return [...document.querySelectorAll('svg.chart text')].map(t => {
  const chart = t.ownerSVGElement;  // drawn at its size: a viewBox unit is a pixel
  const scale = chart.getBoundingClientRect().width / chart.viewBox.baseVal.width;
  return parseFloat(getComputedStyle(t).fontSize) * scale; });
"""

WIDTH_OF = """
const table = document.querySelector(arguments[0]);
const panel = table.closest('.panel'), main = document.querySelector('main');
const inner = (e) => { const s = getComputedStyle(e);
  return e.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight); };
return {table: table.getBoundingClientRect().width, panel: inner(panel),
        box: panel.getBoundingClientRect().width, main: inner(main)};
"""


def test_detail_view_shows_a_document_and_acts_on_it(
    server: dict[str, Any], corpus: dict[str, Any], browser: Any, shots: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    section = "#detail [data-section='{}']".format
    for width in (1920, 420):
        wait = signed_in(browser, server, width)
        browser.find_element(By.CSS_SELECTOR, f'#documents tr[data-name="{LONG_NAME}"]').click()
        wait(ec.text_to_be_present_in_element((By.ID, "detail-title"), LONG_NAME))
        assert browser.execute_script("return document.querySelector('#detail').open")
        wait(lambda d: d.find_elements(By.CSS_SELECTOR, section("chunks") + " li"))
        history = browser.execute_script(  # read in one step: the view re-renders live
            "return [...document.querySelectorAll(arguments[0])].map(e => [e.innerText,"
            " e.dataset.to])",
            section("history") + " li",
        )
        assert "first submitted" in history[0][0] and "now done" in history[-1][0]
        # the real moves, written with them: queued → running by a worker, then merged
        assert [to for _, to in history] == ["queued", "running", "done"], history
        assert "queued → running: a worker took it" in history[1][0], history
        assert "(from running): merged" in history[-1][0], history
        versions = browser.execute_script(
            "return [...document.querySelectorAll(arguments[0])].map(e => e.dataset.outcome)",
            section("versions") + " tbody tr",
        )
        assert versions == ["done"], versions
        stages = [
            e.get_attribute("data-stage")
            for e in browser.find_elements(By.CSS_SELECTOR, section("time per stage") + " tr")
        ]
        assert {"fetch", "extract", "chunk", "embed", "merge"} <= set(stages)
        chunks = browser.find_elements(By.CSS_SELECTOR, section("chunks") + " li")
        assert chunks[0].get_attribute("data-index") == "0" and len(chunks) == 5
        assert prose(7, 700).split()[0] in chunks[0].text
        heading = browser.find_element(By.CSS_SELECTOR, section("chunks") + " h3")
        stored = corpus[LONG_NAME]["chunks"]
        assert heading.get_attribute("textContent") == f"Chunks: {stored} stored"
        manifest = browser.find_element(By.CSS_SELECTOR, section("result manifest") + " pre")
        assert '"EmbeddingsGenerated"' in manifest.text
        overflow = browser.execute_script(
            "const d = document.querySelector('#detail'); return [d.scrollWidth, d.clientWidth,"
            " document.scrollingElement.scrollWidth, document.scrollingElement.clientWidth]"
        )
        assert overflow[0] <= overflow[1] and overflow[2] <= overflow[3], overflow
        assert browser.execute_script("return location.hash").startswith("#doc=")
        screenshot(browser, shots / f"detail-{width}.png")
        browser.find_element(By.ID, "detail-close").click()
        assert not browser.execute_script("return document.querySelector('#detail').open")

    # delete asks once more, then calls DELETE /documents/{id}; the compactor removes it
    wait = signed_in(browser, server, 1400)
    browser.find_element(By.CSS_SELECTOR, '#documents tr[data-name="blank.html"]').click()
    wait(ec.text_to_be_present_in_element((By.ID, "detail-title"), "blank.html"))
    wait(ec.element_to_be_clickable((By.ID, "detail-delete"))).click()
    assert live_text(browser, "#detail-delete") == "delete: sure?"
    browser.execute_script("document.getElementById('detail-delete').click()")
    wait(lambda d: live_text(d, "#detail-outcome") not in ("", "delete…"))
    outcome = live_text(browser, "#detail-outcome")
    assert "deletion accepted" in outcome, outcome
    wait(ec.presence_of_element_located((By.ID, "detail-gone")), 30)  # merged: gone
    browser.find_element(By.ID, "detail-close").click()
    gone = '#documents tr[data-name="blank.html"]'
    wait(lambda d: not d.find_elements(By.CSS_SELECTOR, gone), 30)

    # a failure: its reason, kind and attempts, and the redrive button
    browser.find_element(By.CSS_SELECTOR, '#failures tr[data-name="broken.pdf"]').click()
    wait(ec.text_to_be_present_in_element((By.ID, "detail-title"), "broken.pdf"))
    error = live_text(browser, "#detail [data-section='error']")
    assert "PDF" in error and "permanent" in error and "after 1 attempt" in error, error
    screenshot(browser, shots / "detail-failed.png")
    browser.find_element(By.ID, "detail-redrive").click()
    wait(ec.text_to_be_present_in_element((By.ID, "detail-outcome"), "redriven"))

    if "meeting.wav" in corpus:  # a recording's speakers and their talk time
        browser.find_element(By.ID, "detail-close").click()
        browser.find_element(By.CSS_SELECTOR, '#documents tr[data-name="meeting.wav"]').click()
        wait(ec.text_to_be_present_in_element((By.ID, "detail-title"), "meeting.wav"))
        wait(lambda d: "SPEAKER_2" in live_text(d, "#detail [data-section='document']"))
        facts = live_text(browser, "#detail [data-section='document']")
        assert "speakers" in facts and "SPEAKER_1" in facts, facts

    if "receipt.png" in corpus:  # OCR wrote lines and words: shown from the page
        browser.find_element(By.ID, "detail-close").click()
        browser.find_element(By.CSS_SELECTOR, '#documents tr[data-name="receipt.png"]').click()
        wait(ec.text_to_be_present_in_element((By.ID, "detail-title"), "receipt.png"))
        show = '#detail button[data-artifact="lines.ndjson"]'
        wait(ec.element_to_be_clickable((By.CSS_SELECTOR, show))).click()
        preview = (By.CSS_SELECTOR, "#detail .artifact-preview")
        wait(ec.text_to_be_present_in_element(preview, "HARBOR"))


def test_search_shows_hits_and_opens_their_document(
    server: dict[str, Any], corpus: dict[str, Any], browser: Any, shots: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    for width in (420, 1400):
        wait = signed_in(browser, server, width)
        browser.find_element(By.ID, "search-query").send_keys("can I get my money back?")
        browser.find_element(By.ID, "search-button").click()
        wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#hits li"), 60)
        first = browser.find_element(By.CSS_SELECTOR, "#hits li")
        assert first.find_element(By.CSS_SELECTOR, ".hit-name").text == "refund-policy.txt"
        assert first.find_element(By.CSS_SELECTOR, ".where").text == "chunk 0"
        scores = [
            float(li.find_element(By.CSS_SELECTOR, ".score").text.split()[-1])
            for li in browser.find_elements(By.CSS_SELECTOR, "#hits li")
        ]
        assert scores[0] > 0 and scores == sorted(scores, reverse=True)  # best first
        assert "thirty days" in first.find_element(By.CSS_SELECTOR, ".hit-text").text
        scroll = browser.execute_script(
            "const s = document.scrollingElement; return [s.scrollWidth, s.clientWidth]"
        )
        assert scroll[0] <= scroll[1], scroll
        screenshot(browser, shots / f"search-{width}.png")
    first.find_element(By.CSS_SELECTOR, ".hit-name").click()
    wait(ec.text_to_be_present_in_element((By.ID, "detail-title"), "refund-policy.txt"))


def test_the_server_stops_cleanly(server: dict[str, Any]) -> None:
    assert stop(server["process"]) == 0
    assert "Application shutdown complete" in server["log"].read_text()


def test_without_keys_serve_listens_on_loopback_only_and_says_why(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    process = start("serve", "--host", "0.0.0.0", "--port", str(port), home=tmp_path, log=log)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: healthy(url) or process.poll() is not None, 60, "the server to start")
        text = log.read_text()
        assert "listens on 127.0.0.1 only, not on 0.0.0.0" in text
        assert f"running on http://127.0.0.1:{port}" in text
        assert httpx.get(f"{url}/queue").status_code == 200  # open: no keys
    finally:
        assert stop(process) == 0
