"""Helpers every tier of the tests shares: a fake clock, free ports, waiting,
stopping child processes, an HTTP app served from a thread, and generated
documents.

Importable as ``support`` from any test (``tests/`` is on ``sys.path``, as for
``servers``); ``bench/`` puts ``tests/`` on its path too. It imports conveyor only
where a helper needs it, so the server fixtures load without it.
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

# -- environment -------------------------------------------------------------

SETTINGS_PREFIX = "CONVEYOR_"
KEPT_PREFIX = "CONVEYOR_TEST_"
"""Knobs of the test set-up itself (``CONVEYOR_TEST_PG_BIN``), not of conveyor."""
ALIASES = ("EMBEDDING_SERVICE_URL", "CHUNK_SIZE_DOC_SPLIT", "OVERLAP_FOR_DOC_SPLIT", "INPUT_JSON")
"""Variables conveyor reads besides ``CONVEYOR_*``."""


def conveyor_variables(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The names in ``environ`` that would change what conveyor does (the conftest
    clears them for every test)."""
    return sorted(
        name
        for name in environ
        if (name.startswith(SETTINGS_PREFIX) and not name.startswith(KEPT_PREFIX))
        or name in ALIASES
    )


# -- time ------------------------------------------------------------------

T0 = 1_700_000_000.0
"""Where every :class:`FakeClock` starts (November 2023)."""


class FakeClock:
    """A clock (``time.time``'s signature) that moves only when a test advances it."""

    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def wait_for(
    predicate: Callable[[], object], timeout: float, what: str, every: float = 0.3
) -> None:
    """Poll ``predicate`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


# -- processes and servers --------------------------------------------------


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (bound, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_processes(processes: Iterable[subprocess.Popen[Any]], timeout: float = 30) -> None:
    """Terminate every process, then wait for each; kill those that outlive ``timeout``."""
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def in_processes(
    target: Callable[..., None], args: tuple[Any, ...], processes: int, timeout: float = 120
) -> list[Any]:
    """Run ``target(*args, barrier, results)`` in ``processes`` new (spawned) processes,
    "hosts" that begin together once each waits on ``barrier``; returns what each put
    on ``results`` (one item each), after checking they all exited with status 0."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, barrier, results)) for _ in range(processes)]
    for proc in procs:
        proc.start()
    outs = [results.get(timeout=timeout) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    return outs


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def serving(app: Any, *, health: str = "/health", timeout: float = 60) -> Iterator[str]:
    """``app`` (ASGI) served by uvicorn from a thread on a free port of 127.0.0.1;
    yields its base URL once ``health`` answers 200, stops the server after."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: _answers(url + health) or not thread.is_alive(), timeout, url + health, 0.1
        )
        assert thread.is_alive(), f"the server on {url} stopped at start-up"
        yield url
    finally:
        server.should_exit = True
        thread.join(10)


# -- documents ---------------------------------------------------------------

TOPICS = {
    "volcano.txt": "Basaltic lava flows slowly downhill from the erupting volcano, "
    "covering the village roads in black rock.",
    "bread.md": "# Sourdough\n\nKnead the sourdough bread dough and let the starter ferment "
    "overnight in a warm kitchen.",
    "chess.html": "<html><body><h1>Openings</h1><p>The Sicilian Defence is a sharp chess "
    "opening where black answers e4 with c5.</p></body></html>",
}
"""Three documents, one distinct subject each, in three formats."""

QUERIES = {
    "lava from the erupting volcano": "volcano.txt",
    "letting sourdough starter ferment": "bread.md",
    "Sicilian Defence chess opening": "chess.html",
}
"""A query for each of :data:`TOPICS`, and the file it must find first."""

WHALES = (
    "Humpback whales sing long songs while migrating to warm breeding waters.",
    "humpback whale songs",
)
"""A PDF page's sentence and a query that finds it."""


def buried(seed: int, text: str, words: int, gap: int = 10) -> str:
    """``text`` between two paragraphs of filler prose of about ``words`` words each
    (seeds ``seed`` and ``seed + gap``): a needle the search must find in hay."""
    from conveyor.testing import prose

    return prose(seed, words) + "\n\n" + text + "\n\n" + prose(seed + gap, words)


def write_corpus(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (name → text) into a new folder ``root``; returns it."""
    root.mkdir(parents=True)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def topic_corpus(root: Path, *, filler: int, whales_pdf: bool = False) -> Path:
    """:data:`TOPICS` in ``root``, the ``.txt`` ones buried in ``filler`` words of prose;
    with ``whales_pdf``, a two-page ``whales.pdf`` whose second page holds :data:`WHALES`."""
    write_corpus(
        root,
        {
            name: buried(i, text, filler) if name.endswith(".txt") else text
            for i, (name, text) in enumerate(TOPICS.items())
        },
    )
    if whales_pdf:
        from conveyor.testing import make_pdf, prose

        make_pdf(str(root / "whales.pdf"), [prose(3, 200), WHALES[0]], title="Whales")
    return root


def receipt_rows(
    image_id: str, receipt_id: int, texts: list[str], *, words_of_line: int | None = None
) -> list[dict[str, Any]]:
    """OCR rows as a receipt producer writes them: one row per line of ``texts`` or,
    with ``words_of_line``, one per word of that line (``word_id`` added)."""
    base = {"image_id": image_id, "receipt_id": receipt_id}
    if words_of_line is None:
        return [
            {
                **base,
                "line_id": i,
                "text": text,
                "bounding_box": {"x": 0, "y": 40 * i, "width": 300, "height": 30},
                "confidence": 0.97,
            }
            for i, text in enumerate(texts)
        ]
    return [
        {
            **base,
            "line_id": words_of_line,
            "word_id": i,
            "text": word,
            "bounding_box": {"x": 90 * i, "y": 40 * words_of_line, "width": 80, "height": 30},
            "confidence": 0.95,
        }
        for i, word in enumerate(texts[words_of_line].split())
    ]


def ndjson(rows: Iterable[dict[str, Any]]) -> bytes:
    """One JSON object per line."""
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


def onnx_settings(home: Path, **fields: Any) -> Any:
    """Settings of a home whose exported ONNX models live in it (not the user's cache)."""
    from conveyor.settings import Settings

    return Settings(home=home, models_dir=home / "models", **fields)


def bench_module(filename: str) -> ModuleType:
    """A script of ``bench/`` (not a package) imported as a module, for its unit tests."""
    path = Path(__file__).resolve().parent.parent / "bench" / filename
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem.lstrip('_')}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
