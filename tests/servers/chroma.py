"""A real Chroma server (``chroma run`` from the chromadb package) for the session.

``chroma_server`` starts one server on a free port of 127.0.0.1 with its data
in a temporary folder, waits for its heartbeat, yields its
``chroma+http://127.0.0.1:<port>`` URL and stops it at the end. Collections on
it outlive a test, so tests that write use ``chroma_url``: the same server
with a fresh Chroma database of their own (``?database=…``), dropped after.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support import free_port, stop_processes


@contextmanager
def running_chroma(folder: Path) -> Iterator[str]:
    """``chroma run`` on a free port of 127.0.0.1, data and log in ``folder``; yields
    ``chroma+http://127.0.0.1:<port>`` once its heartbeat answers, stops it after.
    (Also what ``bench/scale.py`` runs.)"""
    import httpx

    exe = Path(sys.executable).with_name("chroma")
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    log = (folder / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            str(exe),
            "run",
            "--path",
            str(folder / "data"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"chroma run exited with {proc.returncode}: "
                    + (folder / "server.log").read_text(errors="replace")[-2000:]
                )
            try:
                if httpx.get(f"{base}/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"chroma run did not answer on {base} within 60 s")
            time.sleep(0.1)
        yield f"chroma+http://127.0.0.1:{port}"
    finally:
        stop_processes([proc], timeout=10)
        log.close()


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("httpx")
    exe = Path(sys.executable).with_name("chroma")
    if not exe.exists():
        pytest.skip(f"no Chroma server: {exe} missing (pip install 'conveyor[chroma]')")
    with running_chroma(tmp_path_factory.mktemp("chroma-server")) as url:
        yield url


@pytest.fixture
def chroma_url(chroma_server: str) -> Iterator[str]:
    """The session's Chroma server with a database for this test alone."""
    import httpx

    base = "http://" + chroma_server.split("://", 1)[1]
    databases = f"{base}/api/v2/tenants/default_tenant/databases"
    name = f"test-{uuid.uuid4().hex[:12]}"
    httpx.post(databases, json={"name": name}, timeout=10).raise_for_status()
    yield f"{chroma_server}?database={name}"
    httpx.delete(f"{databases}/{name}", timeout=10)
