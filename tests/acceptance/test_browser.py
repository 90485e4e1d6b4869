"""`conveyor serve` in a subprocess, and its status page in a real headless Chromium.

The browser test runs the installed command with a key and one worker, loads the page,
enters the key once, uploads a file through the page and waits for its row to turn
``done`` — the update arrives over server-sent events, or by polling if the stream is
down — then saves a screenshot. It needs Debian's ``chromium`` and ``chromium-driver``
(``make test`` installs them) and is skipped, saying so, without them.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import free_port, wait_for

from .helpers import start

KEY = "browser-test-key"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


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


@pytest.fixture
def server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    port = free_port()
    log = tmp_path / "serve.log"
    process = start(
        "serve",
        "--port",
        str(port),
        "--workers",
        "1",
        home=tmp_path / "home",
        log=log,
        CONVEYOR_API_KEYS=KEY,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: healthy(url) or process.poll() is not None, 60, "the server to start")
        assert process.poll() is None, log.read_text()
        yield {"url": url, "process": process, "log": log}
    finally:
        if process.poll() is None:
            stop(process)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (make test installs them)")
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
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_status_page_follows_an_upload_until_done(
    server: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    def wait(condition: Any, timeout: float = 30) -> Any:
        return WebDriverWait(browser, timeout, poll_frequency=0.2).until(condition)

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
    row = 'tr[data-name="release-notes.txt"]'
    wait(ec.presence_of_element_located((By.CSS_SELECTOR, row)))
    # the model loads in the worker thread first: allow for it
    wait(ec.presence_of_element_located((By.CSS_SELECTOR, row + '[data-state="done"]')), 120)
    state = browser.find_element(By.CSS_SELECTOR, row + " .state").text
    assert state == "done"
    assert browser.find_element(By.ID, "mode").text == "live"
    wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#workers tbody tr"), 30)
    worker_state = browser.find_element(By.CSS_SELECTOR, "#workers tbody tr .state").text
    assert worker_state == "running"
    bars = (
        "return [...document.querySelectorAll('#chart rect.bar-done')]"
        ".map(r => +r.getAttribute('height'))"
    )
    wait(lambda d: max(d.execute_script(bars) or [0]) > 0, 30)  # the minute's bar is drawn

    # a file that fails: its reason shows among the failures, and the button redrives it
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer broken")
    browser.find_element(By.ID, "file").send_keys(str(broken))
    browser.find_element(By.ID, "upload-button").click()
    failure = '#failures tbody tr td[title$="broken.pdf"]'
    wait(ec.presence_of_element_located((By.CSS_SELECTOR, failure)), 60)
    reason = browser.find_element(By.CSS_SELECTOR, "#failures tbody tr .reason").text
    assert "PDF" in reason, reason
    assert browser.find_element(By.ID, "q-dead").text == "1"
    browser.find_element(By.CSS_SELECTOR, "#failures button.redrive").click()
    wait(ec.text_to_be_present_in_element((By.ID, "message"), "redrove 1 job"))

    shot = tmp_path / "status-page.png"
    assert browser.save_screenshot(str(shot))
    assert shot.exists() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000

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
